import * as fs from 'node:fs';
import { isErrnoCode } from '../common/errors.js';
import { lgetxattr } from '../native/index.js';
import { OPAQUE_XATTR } from './extract.js';
import { isWhiteoutDevice, sortNamesBytewise } from './pack.js';
import type { ContainerChange } from './snapshotter.js';

/**
 * `docker diff`: what a container's upper dir changed relative to its image's layers.
 *
 * Rules, as dockerd's overlay driver reports them: a whiteout is D (its subtree is not listed);
 * anything else in the upper dir is C when the lower layers have that path and A when they do not;
 * a parent directory of an A or D entry appears as C, so every reported path comes after its
 * changed parents (walk order, names sorted). A directory that is only in the upper dir because
 * overlay copied it up is C only if something beneath it changed or its own metadata did.
 *
 * One deliberate difference from dockerd's overlay2 code: a directory replaced in the container
 * (`rm -rf d && mkdir d`, an opaque dir) is C with D entries for the lower names that are gone,
 * as containerd reports it, rather than a bare D for a directory that still exists.
 */

const Kind = { Modified: 0, Added: 1, Deleted: 2 } as const;

/** The merged, read-only view of the lower layers (top first), enough to answer "was it there?". */
class LowerView {
  private readonly cache = new Map<string, fs.BigIntStats | null>();

  constructor(private readonly layers: readonly string[]) {}

  private lstat(abs: string): fs.BigIntStats | null {
    let st = this.cache.get(abs);
    if (st === undefined) {
      try {
        st = fs.lstatSync(abs, { bigint: true });
      } catch (err) {
        if (!isErrnoCode(err, 'ENOENT') && !isErrnoCode(err, 'ENOTDIR')) throw err;
        st = null;
      }
      this.cache.set(abs, st);
    }
    return st;
  }

  private isOpaque(abs: string): boolean {
    return lgetxattr(abs, OPAQUE_XATTR)?.toString() === 'y';
  }

  /**
   * True when `layer` hides `rel` from the layers below it without having it: an ancestor there is a
   * whiteout, a non-directory, or an opaque directory.
   */
  private hides(layer: string, rel: string): boolean {
    for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) {
      const abs = `${layer}/${rel.slice(0, i)}`;
      const st = this.lstat(abs);
      if (st === null) return false;
      if (!st.isDirectory()) return true;
      if (this.isOpaque(abs)) return true;
    }
    return false;
  }

  /** The lower layers' object at `rel`, or null when they do not have it. */
  find(rel: string): fs.BigIntStats | null {
    for (const layer of this.layers) {
      const st = this.lstat(`${layer}/${rel}`);
      if (st !== null) return isWhiteoutDevice(st) ? null : st;
      if (this.hides(layer, rel)) return null;
    }
    return null;
  }

  /** Names in the lower layers' merged directory `rel`. */
  list(rel: string): Set<string> {
    const names = new Set<string>();
    const hidden = new Set<string>();
    for (const layer of this.layers) {
      const abs = `${layer}/${rel}`;
      const st = this.lstat(abs);
      if (st === null) {
        if (this.hides(layer, rel)) break;
        continue;
      }
      if (!st.isDirectory()) break;
      for (const name of fs.readdirSync(abs)) {
        if (names.has(name) || hidden.has(name)) continue;
        const child = this.lstat(`${abs}/${name}`);
        if (child !== null && isWhiteoutDevice(child)) hidden.add(name);
        else names.add(name);
      }
      if (this.isOpaque(abs)) break;
    }
    return names;
  }
}

function sameMetadata(a: fs.BigIntStats, b: fs.BigIntStats): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtimeNs === b.mtimeNs;
}

/** The changes of `upperDir` over `lowerDirs` (top first), in walk order. */
export function listChanges(upperDir: string, lowerDirs: readonly string[]): ContainerChange[] {
  const lower = new LowerView(lowerDirs.map((d) => d.replace(/\/+$/, '')));
  const upper = upperDir.replace(/\/+$/, '');

  const walk = (rel: string): ContainerChange[] => {
    const out: ContainerChange[] = [];
    const dirAbs = rel === '' ? upper : `${upper}/${rel}`;
    const upperNames = fs.readdirSync(dirAbs);
    let names = upperNames;
    let goneFromLower = new Set<string>();
    if (rel !== '' && lgetxattr(dirAbs, OPAQUE_XATTR)?.toString() === 'y') {
      // An opaque dir hides every lower name it does not have itself: those are deleted.
      const present = new Set(upperNames);
      goneFromLower = new Set([...lower.list(rel)].filter((n) => !present.has(n)));
      names = [...upperNames, ...goneFromLower];
    }
    for (const name of sortNamesBytewise(names)) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const changePath = `/${childRel}`;
      if (goneFromLower.has(name)) {
        out.push({ path: changePath, kind: Kind.Deleted });
        continue;
      }
      const st = fs.lstatSync(`${upper}/${childRel}`, { bigint: true });
      if (isWhiteoutDevice(st)) {
        out.push({ path: changePath, kind: Kind.Deleted });
        continue;
      }
      const before = lower.find(childRel);
      if (!st.isDirectory()) {
        out.push({ path: changePath, kind: before === null ? Kind.Added : Kind.Modified });
        continue;
      }
      const beneath = walk(childRel);
      if (before === null) {
        out.push({ path: changePath, kind: Kind.Added }, ...beneath);
      } else if (beneath.length > 0 || !before.isDirectory() || !sameMetadata(st, before)) {
        out.push({ path: changePath, kind: Kind.Modified }, ...beneath);
      }
    }
    return out;
  };

  return walk('');
}
