import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { floorSeconds, type TarEntry, type TarEntryType, TarWriter } from '../common/tar.js';
import { isNativeError, lgetxattr, llistxattr } from '../native/index.js';
import { OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from './extract.js';

/**
 * Upper dir → layer tar (the diff a commit stores), deterministic: entries in bytewise-sorted
 * depth-first order, uname/gname empty, no atime/ctime, mtimes truncated to seconds as dockerd
 * does, PAX only where ustar cannot hold a value. Overlay form becomes the OCI form: a 0/0 char
 * device → an empty `.wh.<name>` file, an opaque dir → its dir entry followed by `.wh..wh..opq`.
 */

export interface PackOptions {
  /**
   * SOURCE_DATE_EPOCH-style clamp, in seconds since the epoch: no entry gets a later mtime, so a
   * rebuild of the same content gives the same digest.
   */
  clampMtime?: number;
}

const NS_PER_SECOND = 1_000_000_000n;

/** Linux dev_t → major/minor (glibc's gnu_dev_major/minor). */
export function deviceNumbers(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

/**
 * Xattrs worth archiving: everything but overlay's own bookkeeping (`trusted.overlay.*`,
 * `user.overlay.*`) and the host's SELinux label, which describes the host, not the image.
 */
export function readArchivableXattrs(file: string): Map<string, Buffer> | undefined {
  let names: string[];
  try {
    names = llistxattr(file);
  } catch (err) {
    if (isNativeError(err, 'ENOTSUP')) return undefined;
    throw err;
  }
  if (names.length === 0) return undefined;
  const xattrs = new Map<string, Buffer>();
  for (const name of names.sort()) {
    if (
      name.startsWith('trusted.overlay.') ||
      name.startsWith('user.overlay.') ||
      name === 'security.selinux'
    ) {
      continue;
    }
    const value = lgetxattr(file, name);
    if (value !== null) xattrs.set(name, value);
  }
  return xattrs.size > 0 ? xattrs : undefined;
}

export function isWhiteoutDevice(st: fs.BigIntStats): boolean {
  return st.isCharacterDevice() && st.rdev === 0n;
}

function entryType(st: fs.BigIntStats): TarEntryType | null {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'directory';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isCharacterDevice()) return 'character-device';
  if (st.isBlockDevice()) return 'block-device';
  if (st.isFIFO()) return 'fifo';
  return null; // sockets: not archivable
}

/** Sorts names by their UTF-8 bytes (JS string order differs for astral characters). */
export function sortNamesBytewise(names: string[]): string[] {
  if (names.every((n) => /^[\x00-\x7f]*$/.test(n))) return names.sort();
  return names
    .map((name) => ({ name, key: Buffer.from(name) }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map((e) => e.name);
}

/** A tar header for a file system object (mtime to whole seconds, optionally clamped). */
export function entryFromStat(
  name: string,
  st: fs.BigIntStats,
  options: PackOptions,
  extra: Partial<TarEntry> = {},
): TarEntry | null {
  const type = entryType(st);
  if (type === null) return null;
  let seconds = floorSeconds(st.mtimeNs);
  if (options.clampMtime !== undefined && seconds > BigInt(options.clampMtime))
    seconds = BigInt(options.clampMtime);
  const entry: TarEntry = {
    name,
    type,
    mode: Number(st.mode & 0o7777n),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: type === 'file' ? Number(st.size) : 0,
    mtimeNs: seconds * NS_PER_SECOND,
    ...extra,
  };
  if (type === 'character-device' || type === 'block-device') {
    const { major, minor } = deviceNumbers(st.rdev);
    entry.devmajor = major;
    entry.devminor = minor;
  }
  return entry;
}

/** One entry of an upper dir's layer tar; `source` is the file whose body follows (regular files). */
export interface DiffEntry {
  entry: TarEntry;
  source?: string;
}

/**
 * The layer tar entries of the tree below `dir` (not `dir` itself), in archive order, names prefixed
 * by `prefix` (e.g. '' or 'name/'). `hardLinks` maps dev:ino of multiply-linked files to their first
 * name. Regular files are yielded with `entry.size` from the walk's lstat and their path.
 */
export function* walkUpperDir(
  dir: string,
  prefix: string,
  options: PackOptions,
  hardLinks: Map<string, string>,
): Generator<DiffEntry> {
  for (const name of sortNamesBytewise(fs.readdirSync(dir))) {
    const file = `${dir}/${name}`;
    const st = fs.lstatSync(file, { bigint: true });
    const archiveName = prefix + name;
    if (isWhiteoutDevice(st)) {
      // Checked before hard links: the kernel may share one whiteout inode between many names.
      const { mtimeNs, uid, gid } = entryFromStat(name, st, options)!;
      yield {
        entry: {
          name: prefix + WHITEOUT_PREFIX + name,
          type: 'file',
          mode: 0o600,
          uid,
          gid,
          mtimeNs,
          size: 0,
        },
      };
      continue;
    }
    const entry = entryFromStat(archiveName, st, options, { xattrs: readArchivableXattrs(file) });
    if (entry === null) continue;
    if (entry.type === 'directory') {
      yield { entry };
      if (lgetxattr(file, OPAQUE_XATTR)?.toString() === 'y') {
        yield {
          entry: {
            name: `${archiveName}/${WHITEOUT_OPAQUE}`,
            type: 'file',
            mode: entry.mode & 0o777,
            uid: entry.uid,
            gid: entry.gid,
            mtimeNs: entry.mtimeNs,
            size: 0,
          },
        };
      }
      yield* walkUpperDir(file, `${archiveName}/`, options, hardLinks);
      continue;
    }
    if (st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = hardLinks.get(key);
      if (first !== undefined) {
        yield { entry: { ...entry, type: 'link', linkname: first, size: 0, xattrs: undefined } };
        continue;
      }
      hardLinks.set(key, archiveName);
    }
    if (entry.type === 'symlink') yield { entry: { ...entry, linkname: fs.readlinkSync(file) } };
    else if (entry.type === 'file') yield { entry, source: file };
    else yield { entry };
  }
}

async function packTree(writer: TarWriter, dir: string, options: PackOptions): Promise<void> {
  for (const { entry, source } of walkUpperDir(dir, '', options, new Map())) {
    if (source === undefined) {
      await writer.add(entry);
      continue;
    }
    const fd = fs.openSync(source, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      await writer.addFromFd(entry, fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** The layer tar of an overlay upper dir, as a stream. Errors (e.g. a vanished dir) destroy it. */
export function packLayer(upperDir: string, options: PackOptions = {}): Readable {
  const writer = new TarWriter();
  void packTree(writer, upperDir.replace(/\/+$/, ''), options)
    .then(() => writer.finalize())
    .catch((err: Error) => writer.destroy(err));
  return writer.stream;
}
