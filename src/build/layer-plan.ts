import * as fs from 'node:fs';
import * as posixPath from 'node:path/posix';
import { Readable } from 'node:stream';
import { formatPaxTime } from '../common/tar.js';
import { lgetxattr } from '../native/index.js';
import { readArchivableXattrs } from '../snapshots/pack.js';
import type { CopySource, Identity } from './copy.js';
import { SourceError } from './sources.js';

/**
 * COPY and WORKDIR without touching a file system: the layer a step produces is computed from the
 * sources and the image's layers and written straight out as a tar, so each copied file is created
 * once (when the layer is unpacked) rather than three times (into a container, from it, into the
 * layer). The tar holds what an overlay upper dir would after the same copy: the new files and
 * directories, plus every existing directory above them with its metadata from the image (a
 * copy-up; the direct parent of a new entry gets the step's time as its mtime). Paths in the image
 * are resolved through its layers — whiteouts, opaque directories, symlinks (kept inside the root).
 */

function lstatQuiet(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}

/** The merged, read-only view of an image's layers (top first, overlay form: whiteouts are 0/0 devices). */
export class LowerView {
  constructor(private readonly layers: readonly string[]) {}

  private isOpaque(dir: string): boolean {
    try {
      return lgetxattr(dir, 'trusted.overlay.opaque')?.toString() === 'y';
    } catch {
      return false;
    }
  }

  /** The object at `rel` ('a/b', no leading slash) and the layer file holding it, or null. */
  lookup(rel: string): { stat: fs.Stats; hostPath: string } | null {
    if (rel === '') return null;
    const parts = rel.split('/');
    for (const layer of this.layers) {
      const hostPath = `${layer}/${rel}`;
      const stat = lstatQuiet(hostPath);
      if (stat) {
        if (stat.isCharacterDevice() && stat.rdev === 0) return null;
        return { stat, hostPath };
      }
      // Below this layer only if no ancestor here hides it (non-directory, whiteout, opaque).
      for (let i = 1; i < parts.length; i++) {
        const ancestor = `${layer}/${parts.slice(0, i).join('/')}`;
        const st = lstatQuiet(ancestor);
        if (!st) break;
        if (!st.isDirectory() || this.isOpaque(ancestor)) return null;
      }
    }
    return null;
  }
}

interface PlannedEntry {
  path: string;
  type: 'file' | 'directory' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  linkname: string;
  size: number;
  xattrs?: Map<string, Buffer>;
  chunks?: () => Iterable<Buffer>;
  /** An existing directory of the image, written only because something below it changed. */
  copiedUp: boolean;
}

export interface PlanOptions {
  identity: Identity;
  chmod: number | null;
}

function comparePaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    if (pa[i] !== pb[i]) return Buffer.compare(Buffer.from(pa[i]), Buffer.from(pb[i]));
  }
  return pa.length - pb.length;
}

/** The changes of one COPY/WORKDIR step, planned against the image's layers. */
export class LayerPlan {
  private readonly entries = new Map<string, PlannedEntry>();

  constructor(
    private readonly lower: LowerView,
    private readonly nowNs: bigint,
  ) {}

  get isEmpty(): boolean {
    return this.entries.size === 0;
  }

  private planned(rel: string): PlannedEntry | undefined {
    return this.entries.get(rel);
  }

  /** What is at `rel` after the changes so far: a planned entry, else the image's. */
  private kindAt(rel: string): { type: 'file' | 'directory' | 'symlink' | 'other'; linkname: string } | null {
    if (rel === '') return { type: 'directory', linkname: '' };
    const planned = this.planned(rel);
    if (planned) return { type: planned.type, linkname: planned.linkname };
    const found = this.lower.lookup(rel);
    if (!found) return null;
    const { stat } = found;
    if (stat.isDirectory()) return { type: 'directory', linkname: '' };
    if (stat.isSymbolicLink()) return { type: 'symlink', linkname: fs.readlinkSync(found.hostPath) };
    return { type: stat.isFile() ? 'file' : 'other', linkname: '' };
  }

  /** Resolves symlinks in a container path inside the root; returns the symlink-free relative path. */
  resolve(containerPath: string, followFinal = true): string {
    const pending = containerPath.split('/').reverse();
    const resolved: string[] = [];
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, part].join('/');
      const kind = this.kindAt(candidate);
      if (kind?.type === 'symlink' && (followFinal || pending.length > 0)) {
        if (++hops > 255) throw new SourceError(`too many levels of symbolic links in ${containerPath}`);
        if (kind.linkname.startsWith('/')) resolved.length = 0;
        pending.push(...kind.linkname.split('/').reverse());
        continue;
      }
      resolved.push(part);
    }
    return resolved.join('/');
  }

  /** True when `containerPath` is a directory (symlinks followed). */
  isDirectory(containerPath: string): boolean {
    return this.kindAt(this.resolve(containerPath))?.type === 'directory';
  }

  /** Records a new or replaced entry, with the existing directories above it as copy-ups. */
  private add(entry: PlannedEntry): void {
    const parts = entry.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const rel = parts.slice(0, i).join('/');
      if (this.entries.has(rel)) continue;
      const found = this.lower.lookup(rel);
      if (!found?.stat.isDirectory())
        throw new SourceError(`cannot copy to /${entry.path}: /${rel} is not a directory`);
      this.entries.set(rel, {
        path: rel,
        type: 'directory',
        mode: found.stat.mode & 0o7777,
        uid: found.stat.uid,
        gid: found.stat.gid,
        mtimeNs: i === parts.length - 1 ? this.nowNs : BigInt(Math.floor(found.stat.mtimeMs)) * 1_000_000n,
        linkname: '',
        size: 0,
        xattrs: readArchivableXattrs(found.hostPath),
        copiedUp: true,
      });
    }
    const parent = parts.slice(0, -1).join('/');
    const parentEntry = this.entries.get(parent);
    if (parentEntry?.copiedUp) parentEntry.mtimeNs = this.nowNs;
    const existing = this.entries.get(entry.path);
    if (existing?.type === 'directory' && entry.type === 'directory') {
      Object.assign(existing, { ...entry, copiedUp: false });
      return;
    }
    if (existing && existing.type === 'directory') {
      // A directory planned earlier is replaced: drop what was planned below it.
      for (const key of [...this.entries.keys()])
        if (key.startsWith(`${entry.path}/`)) this.entries.delete(key);
    }
    this.entries.set(entry.path, entry);
  }

  /** `mkdir -p` (new directories 0755, owned by `identity`); returns the symlink-free path. */
  mkdirAll(containerPath: string, identity: Identity): string {
    const rel = this.resolve(containerPath);
    const parts = rel === '' ? [] : rel.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const sub = parts.slice(0, i).join('/');
      const kind = this.kindAt(sub);
      if (kind?.type === 'directory') continue;
      if (kind !== null) throw new SourceError(`cannot create directory /${sub}: a file is in the way`);
      this.add({
        path: sub,
        type: 'directory',
        mode: 0o755,
        uid: identity.uid,
        gid: identity.gid,
        mtimeNs: this.nowNs,
        linkname: '',
        size: 0,
        copiedUp: false,
      });
    }
    return rel;
  }

  /** Writes `source` at `rel` (its parent must be a directory), recursively for directories. */
  private put(rel: string, source: CopySource, options: PlanOptions): void {
    const { uid, gid } = options.identity;
    const mode = options.chmod ?? source.mode;
    if (source.type === 'directory') {
      this.add({
        path: rel,
        type: 'directory',
        mode,
        uid,
        gid,
        mtimeNs: source.mtimeNs,
        linkname: '',
        size: 0,
        copiedUp: false,
      });
      for (const child of source.children()) this.put(`${rel}/${child.name}`, child, options);
      return;
    }
    this.add({
      path: rel,
      type: source.type,
      mode,
      uid,
      gid,
      mtimeNs: source.mtimeNs,
      linkname: source.linkname,
      size: source.type === 'file' ? source.size : 0,
      chunks: source.type === 'file' ? () => source.chunks() : undefined,
      copiedUp: false,
    });
  }

  /** COPY of a file or symlink to the path `destPath` (parent directories created). */
  copyTo(source: CopySource, destPath: string, options: PlanOptions): void {
    const parent = this.mkdirAll(posixPath.dirname(destPath), options.identity);
    this.put(
      parent === '' ? posixPath.basename(destPath) : `${parent}/${posixPath.basename(destPath)}`,
      source,
      options,
    );
  }

  /** COPY of a directory's contents into `destDir` (created when missing). */
  copyDirectoryContents(source: CopySource, destDir: string, options: PlanOptions): void {
    const dir = this.mkdirAll(destDir, options.identity);
    for (const child of source.children())
      this.put(dir === '' ? child.name : `${dir}/${child.name}`, child, options);
  }

  /** The planned layer as an uncompressed tar (parents first, names sorted bytewise). */
  toTar(clampSeconds: number | null): Readable {
    const entries = [...this.entries.values()].sort((a, b) => comparePaths(a.path, b.path));
    return Readable.from(writeTar(entries, clampSeconds), { objectMode: false });
  }
}

// ---------------------------------------------------------------------------------------------
// A minimal deterministic tar writer: ustar, with PAX records only where ustar cannot hold a value.

const BLOCK = 512;
const MAX_OCTAL_7 = 0o7777777;
const MAX_OCTAL_11 = 0o77777777777;

function writeString(block: Buffer, offset: number, length: number, value: string): void {
  block.write(value, offset, length, 'utf8');
}

function writeOctal(block: Buffer, offset: number, length: number, value: number): void {
  block.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'latin1');
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let length = body.length + String(body.length).length;
  if (String(length).length !== String(body.length).length) length = body.length + String(length).length;
  return Buffer.concat([Buffer.from(String(length)), body]);
}

function splitName(name: string): { name: string; prefix: string } | null {
  if (Buffer.byteLength(name) <= 100) return { name, prefix: '' };
  for (let i = name.indexOf('/'); i !== -1; i = name.indexOf('/', i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (Buffer.byteLength(prefix) <= 155 && Buffer.byteLength(rest) <= 100 && rest !== '')
      return { name: rest, prefix };
  }
  return null;
}

function header(
  name: string,
  typeflag: string,
  fields: { mode: number; uid: number; gid: number; size: number; mtime: number; linkname: string },
  prefix = '',
): Buffer {
  const block = Buffer.alloc(BLOCK);
  writeString(block, 0, 100, name);
  writeOctal(block, 100, 8, fields.mode);
  writeOctal(block, 108, 8, Math.min(fields.uid, MAX_OCTAL_7));
  writeOctal(block, 116, 8, Math.min(fields.gid, MAX_OCTAL_7));
  writeOctal(block, 124, 12, Math.min(fields.size, MAX_OCTAL_11));
  writeOctal(block, 136, 12, Math.max(0, Math.min(fields.mtime, MAX_OCTAL_11)));
  block.fill(0x20, 148, 156);
  block.write(typeflag, 156, 1, 'latin1');
  writeString(block, 157, 100, fields.linkname);
  block.write('ustar\x0000', 257, 8, 'latin1');
  writeString(block, 345, 155, prefix);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += block[i];
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return block;
}

function* entryHeaders(entry: PlannedEntry, clampSeconds: number | null): Generator<Buffer> {
  let seconds = Number(entry.mtimeNs / 1_000_000_000n);
  if (clampSeconds !== null && seconds > clampSeconds) seconds = clampSeconds;
  const name = entry.type === 'directory' ? `${entry.path}/` : entry.path;
  const records: Array<[string, Buffer]> = [];
  const split = splitName(name);
  if (split === null) records.push(['path', Buffer.from(name)]);
  if (Buffer.byteLength(entry.linkname) > 100) records.push(['linkpath', Buffer.from(entry.linkname)]);
  if (entry.uid > MAX_OCTAL_7) records.push(['uid', Buffer.from(String(entry.uid))]);
  if (entry.gid > MAX_OCTAL_7) records.push(['gid', Buffer.from(String(entry.gid))]);
  if (entry.size > MAX_OCTAL_11) records.push(['size', Buffer.from(String(entry.size))]);
  if (seconds < 0 || seconds > MAX_OCTAL_11)
    records.push(['mtime', Buffer.from(formatPaxTime(BigInt(seconds) * 1_000_000_000n))]);
  for (const [key, value] of entry.xattrs ?? []) records.push([`SCHILY.xattr.${key}`, value]);
  records.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  if (records.length > 0) {
    const data = Buffer.concat(records.map(([k, v]) => paxRecord(k, v)));
    const paxName = `PaxHeaders.0/${posixPath.basename(entry.path)}`.slice(0, 99);
    yield header(paxName, 'x', { mode: 0o644, uid: 0, gid: 0, size: data.length, mtime: 0, linkname: '' });
    yield data;
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  const typeflag = entry.type === 'file' ? '0' : entry.type === 'directory' ? '5' : '2';
  yield header(
    split?.name ?? name.slice(0, 100),
    typeflag,
    {
      mode: entry.mode,
      uid: entry.uid,
      gid: entry.gid,
      size: entry.type === 'file' ? entry.size : 0,
      mtime: seconds,
      linkname: Buffer.byteLength(entry.linkname) > 100 ? '' : entry.linkname,
    },
    split?.prefix ?? '',
  );
}

async function* writeTar(entries: PlannedEntry[], clampSeconds: number | null): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    yield* entryHeaders(entry, clampSeconds);
    if (entry.type !== 'file' || entry.size === 0) continue;
    let written = 0;
    for (const chunk of entry.chunks?.() ?? []) {
      const part = written + chunk.length > entry.size ? chunk.subarray(0, entry.size - written) : chunk;
      if (part.length === 0) break;
      written += part.length;
      yield part;
    }
    // A source that shrank meanwhile: pad, so the archive stays well-formed.
    if (written < entry.size) yield Buffer.alloc(entry.size - written);
    const pad = (BLOCK - (entry.size % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(BLOCK * 2);
}
