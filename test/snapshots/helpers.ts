import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { constants, lgetxattr, llistxattr, umount2 } from '../../src/native/index.js';
import { isMountPoint } from '../../src/snapshots/overlay.js';

/** A temporary directory that `cleanup()` unmounts anything below and removes. */
export class TempDir {
  readonly path: string;

  constructor(prefix: string) {
    this.path = fs.mkdtempSync(path.join(os.tmpdir(), `strata-${prefix}-`));
  }

  join(...parts: string[]): string {
    return path.join(this.path, ...parts);
  }

  cleanup(): void {
    const mounts = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((m): m is string => m?.startsWith(`${this.path}/`) === true)
      .sort()
      .reverse();
    for (const target of mounts) {
      while (isMountPoint(target)) {
        try {
          umount2(target, constants.MNT_DETACH);
        } catch {
          break;
        }
      }
    }
    fs.rmSync(this.path, { recursive: true, force: true });
  }
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export interface NodeDescription {
  type: string;
  mode: string;
  owner: string;
  size?: number;
  mtimeSeconds: string;
  linkTarget?: string;
  rdev?: string;
  nlink?: number;
  sha256?: string;
  xattrs: Record<string, string>;
}

function nodeType(st: fs.BigIntStats): string {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'char';
  if (st.isBlockDevice()) return 'block';
  if (st.isFIFO()) return 'fifo';
  return 'other';
}

/**
 * Everything observable about a tree (mode, owner, size, seconds of mtime, link target, device
 * numbers, nlink, content digest, xattrs in hex), keyed by relative path, root excluded. Directory
 * sizes and nlink depend on the file system, so they are left out.
 */
export function describeTree(
  root: string,
  options: { skipXattrPrefixes?: string[] } = {},
): Map<string, NodeDescription> {
  const out = new Map<string, NodeDescription>();
  const skip = options.skipXattrPrefixes ?? ['trusted.overlay.'];
  const walk = (rel: string): void => {
    const abs = rel === '' ? root : path.join(root, rel);
    for (const name of fs.readdirSync(abs).sort()) {
      const childRel = rel === '' ? name : `${rel}/${name}`;
      const childAbs = path.join(root, childRel);
      const st = fs.lstatSync(childAbs, { bigint: true });
      const xattrs: Record<string, string> = {};
      for (const key of llistxattr(childAbs).sort()) {
        if (skip.some((p) => key.startsWith(p))) continue;
        xattrs[key] = lgetxattr(childAbs, key)?.toString('hex') ?? '';
      }
      const d: NodeDescription = {
        type: nodeType(st),
        mode: (st.mode & 0o7777n).toString(8),
        owner: `${st.uid}:${st.gid}`,
        mtimeSeconds: (st.mtimeNs / 1_000_000_000n).toString(),
        xattrs,
      };
      if (!st.isDirectory()) {
        d.size = Number(st.size);
        d.nlink = Number(st.nlink);
      }
      if (st.isSymbolicLink()) d.linkTarget = fs.readlinkSync(childAbs);
      if (st.isCharacterDevice() || st.isBlockDevice()) d.rdev = st.rdev.toString();
      if (st.isFile()) d.sha256 = createHash('sha256').update(fs.readFileSync(childAbs)).digest('hex');
      out.set(childRel, d);
      if (st.isDirectory()) walk(childRel);
    }
  };
  walk('');
  return out;
}
