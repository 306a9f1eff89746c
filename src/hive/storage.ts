import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { Forbidden, InvalidArgument, isErrnoCode } from '../common/errors.js';
import { lgetxattr, constants as native, openInRoot } from '../native/index.js';
import { OPAQUE_XATTR } from '../snapshots/extract.js';
import { isWhiteoutDevice } from '../snapshots/pack.js';
import { closeQuietly, fdPath, PATH_DIR, READ_DIR, removeTreeAt } from '../snapshots/rootfs.js';

/**
 * The few file primitives the hive is built on, so one Hive works on a container's root, on an
 * image's layers and on a plain directory.
 *
 * `dir` arguments are on-disk names below the hive's directory (`[]` is the hive directory itself,
 * `['HKLM', 'Software']` a key). Only directories and regular files exist for the hive: symbolic
 * links, devices and the like are never followed or read, and a symbolic link on the way to an entry
 * is an error, so an image or a running container cannot point the daemon's reads or writes
 * elsewhere.
 */
export type EntryKind = 'dir' | 'file';

export interface HiveEntry {
  name: string;
  kind: EntryKind;
}

export interface HiveStorage {
  readonly writable: boolean;
  /** The directories and regular files in `dir`; null when `dir` is not a directory. */
  list(dir: readonly string[]): HiveEntry[] | null;
  /** What `dir/name` is, or null when it is absent or neither a directory nor a regular file. */
  kind(dir: readonly string[], name: string): EntryKind | null;
  /** The content of the regular file `dir/name` (at most `limit` bytes), or null when absent. */
  read(dir: readonly string[], name: string, limit: number): Buffer | null;
  /** Replaces `dir/name` atomically (a temporary file renamed over it); `dir` must exist. */
  write(dir: readonly string[], name: string, data: Buffer): void;
  /** Creates the directory `dir/name` (already there is fine); creates the hive directory as needed. */
  makeDir(dir: readonly string[], name: string): void;
  /** Removes `dir/name` and everything below it; absent is fine. */
  remove(dir: readonly string[], name: string): void;
  close(): void;
}

const TEMP_PREFIX = '.strata-tmp-';

function tooLarge(name: string, limit: number): InvalidArgument {
  return new InvalidArgument(`hive file ${JSON.stringify(name)} is larger than ${limit} bytes`);
}

function symlinkError(err: unknown, where: string): unknown {
  if (isErrnoCode(err, 'ELOOP') || isErrnoCode(err, 'EXDEV')) {
    return new InvalidArgument(`the hive path ${JSON.stringify(where)} goes through a symbolic link`);
  }
  return err;
}

/** Reads a regular file opened as `fd`; null when it is not a regular file. */
function readOpenFile(fd: number, name: string, limit: number): Buffer | null {
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return null;
    if (st.size > limit) throw tooLarge(name, limit);
    const buffer = Buffer.alloc(st.size);
    let offset = 0;
    while (offset < st.size) {
      const n = fs.readSync(fd, buffer, offset, st.size - offset, offset);
      if (n === 0) break;
      offset += n;
    }
    return buffer.subarray(0, offset);
  } finally {
    closeQuietly(fd);
  }
}

/**
 * The hive in a directory tree that others may be changing: a container's merged root (mounted by
 * the caller) or a plain directory (`strata reg convert`). Every lookup is openat2 with
 * RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS from the root, and every change is made on one name inside
 * an open directory fd, with calls that never follow a final symlink (rootfs.ts explains the trick).
 * New entries get the owner of the directory they are made in; a replaced value keeps its owner and
 * mode, so an application running as another user keeps access to keys its image gave it.
 */
export class RootStorage implements HiveStorage {
  readonly writable = true;
  private readonly rootFd: number;

  /** `rootDir` is opened now; `prefix` is where the hive sits below it (`['.strata', 'hive']`). */
  constructor(
    rootDir: string,
    private readonly prefix: readonly string[],
  ) {
    this.rootFd = fs.openSync(rootDir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  }

  close(): void {
    closeQuietly(this.rootFd);
  }

  private relative(dir: readonly string[]): string {
    return [...this.prefix, ...dir].join('/');
  }

  /** An fd of the directory `dir`, or null when it is absent or not a directory. */
  private openDir(dir: readonly string[], flags = PATH_DIR): number | null {
    const rel = this.relative(dir);
    try {
      return openInRoot(this.rootFd, rel, flags, 0, native.RESOLVE_NO_SYMLINKS);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return null;
      throw symlinkError(err, `/${rel}`);
    }
  }

  private requireDir(dir: readonly string[]): number {
    const fd = this.openDir(dir);
    if (fd === null) throw new InvalidArgument(`hive directory /${this.relative(dir)} is missing`);
    return fd;
  }

  list(dir: readonly string[]): HiveEntry[] | null {
    const fd = this.openDir(dir, READ_DIR);
    if (fd === null) return null;
    try {
      const out: HiveEntry[] = [];
      for (const entry of fs.readdirSync(fdPath(fd), { withFileTypes: true })) {
        if (entry.isDirectory()) out.push({ name: entry.name, kind: 'dir' });
        else if (entry.isFile()) out.push({ name: entry.name, kind: 'file' });
      }
      return out;
    } finally {
      closeQuietly(fd);
    }
  }

  kind(dir: readonly string[], name: string): EntryKind | null {
    const fd = this.openDir(dir);
    if (fd === null) return null;
    try {
      const st = fs.lstatSync(fdPath(fd, name), { throwIfNoEntry: false });
      return st?.isDirectory() ? 'dir' : st?.isFile() ? 'file' : null;
    } finally {
      closeQuietly(fd);
    }
  }

  read(dir: readonly string[], name: string, limit: number): Buffer | null {
    const dirFd = this.openDir(dir);
    if (dirFd === null) return null;
    let fd: number;
    try {
      // O_NONBLOCK: a FIFO planted under a value's name must not hang the daemon.
      fd = openInRoot(
        dirFd,
        name,
        native.O_RDONLY | native.O_NOFOLLOW | native.O_NONBLOCK,
        0,
        native.RESOLVE_NO_SYMLINKS,
      );
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ELOOP') || isErrnoCode(err, 'ENXIO')) return null;
      throw err;
    } finally {
      closeQuietly(dirFd);
    }
    return readOpenFile(fd, name, limit);
  }

  write(dir: readonly string[], name: string, data: Buffer): void {
    const dirFd = this.requireDir(dir);
    const temp = `${TEMP_PREFIX}${randomBytes(6).toString('hex')}`;
    try {
      const previous = fs.lstatSync(fdPath(dirFd, name), { throwIfNoEntry: false });
      if (previous?.isDirectory()) throw new InvalidArgument(`hive entry ${name} is a directory`);
      const owner = previous?.isFile() ? previous : fs.fstatSync(dirFd);
      const mode = previous?.isFile() ? previous.mode & 0o7777 : 0o644;
      const fd = fs.openSync(
        fdPath(dirFd, temp),
        fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
        0o600,
      );
      try {
        fs.fchownSync(fd, owner.uid, owner.gid);
        fs.fchmodSync(fd, mode);
        fs.writeSync(fd, data);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      fs.renameSync(fdPath(dirFd, temp), fdPath(dirFd, name));
    } catch (err) {
      try {
        fs.unlinkSync(fdPath(dirFd, temp));
      } catch {
        // never created, or already renamed
      }
      throw err;
    } finally {
      closeQuietly(dirFd);
    }
  }

  makeDir(dir: readonly string[], name: string): void {
    let dirFd = this.openDir(dir);
    if (dirFd === null && dir.length === 0) {
      this.makePrefix();
      dirFd = this.openDir(dir);
    }
    if (dirFd === null) throw new InvalidArgument(`hive directory /${this.relative(dir)} is missing`);
    try {
      const owner = fs.fstatSync(dirFd);
      try {
        fs.mkdirSync(fdPath(dirFd, name), 0o755);
      } catch (err) {
        if (isErrnoCode(err, 'EEXIST')) return;
        throw err;
      }
      fs.lchownSync(fdPath(dirFd, name), owner.uid, owner.gid);
    } finally {
      closeQuietly(dirFd);
    }
  }

  /** Creates the hive directory's own components, root-owned 0755, as an image would ship them. */
  private makePrefix(): void {
    for (let i = 0; i < this.prefix.length; i++) {
      const parent = this.openDirAbsolute(this.prefix.slice(0, i));
      try {
        fs.mkdirSync(fdPath(parent, this.prefix[i]), 0o755);
      } catch (err) {
        if (!isErrnoCode(err, 'EEXIST')) throw err;
      } finally {
        closeQuietly(parent);
      }
    }
  }

  private openDirAbsolute(components: readonly string[]): number {
    const rel = components.join('/');
    try {
      return openInRoot(this.rootFd, rel, PATH_DIR, 0, native.RESOLVE_NO_SYMLINKS);
    } catch (err) {
      throw symlinkError(err, `/${rel}`);
    }
  }

  remove(dir: readonly string[], name: string): void {
    const dirFd = this.openDir(dir);
    if (dirFd === null) return;
    try {
      removeTreeAt(dirFd, name);
    } finally {
      closeQuietly(dirFd);
    }
  }
}

/**
 * The hive of an image, read straight from its layer directories (top first) with overlay's rules,
 * without mounting anything: the topmost layer holding a name decides what it is; a whiteout (a 0/0
 * character device) hides it; a directory merges with the same directory in lower layers unless it
 * is opaque (`trusted.overlay.opaque=y`); a non-directory hides whatever lies below it.
 */
export class LayerStorage implements HiveStorage {
  readonly writable = false;

  constructor(
    private readonly layers: readonly string[],
    private readonly prefix: readonly string[],
  ) {}

  close(): void {}

  private lstat(abs: string): fs.BigIntStats | null {
    try {
      return fs.lstatSync(abs, { bigint: true });
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return null;
      throw err;
    }
  }

  /** The layer directories that make up the merged directory `components`, top first; null if none. */
  private mergedDir(components: readonly string[]): string[] | null {
    let visible = [...this.layers];
    for (const component of components) {
      const next: string[] = [];
      for (const base of visible) {
        const abs = `${base}/${component}`;
        const st = this.lstat(abs);
        if (st === null) continue;
        if (isWhiteoutDevice(st) || !st.isDirectory()) break;
        next.push(abs);
        if (lgetxattr(abs, OPAQUE_XATTR)?.toString() === 'y') break;
      }
      if (next.length === 0) return null;
      visible = next;
    }
    return visible;
  }

  /** The topmost layer's object named `name` in the merged directory `dir`. */
  private find(dir: readonly string[], name: string): { abs: string; st: fs.BigIntStats } | null {
    const bases = this.mergedDir([...this.prefix, ...dir]);
    if (bases === null) return null;
    for (const base of bases) {
      const abs = `${base}/${name}`;
      const st = this.lstat(abs);
      if (st === null) continue;
      return isWhiteoutDevice(st) ? null : { abs, st };
    }
    return null;
  }

  list(dir: readonly string[]): HiveEntry[] | null {
    const bases = this.mergedDir([...this.prefix, ...dir]);
    if (bases === null) return null;
    const seen = new Set<string>();
    const out: HiveEntry[] = [];
    for (const base of bases) {
      for (const name of fs.readdirSync(base)) {
        if (seen.has(name)) continue;
        seen.add(name);
        const st = this.lstat(`${base}/${name}`);
        if (st === null || isWhiteoutDevice(st)) continue;
        if (st.isDirectory()) out.push({ name, kind: 'dir' });
        else if (st.isFile()) out.push({ name, kind: 'file' });
      }
    }
    return out;
  }

  kind(dir: readonly string[], name: string): EntryKind | null {
    const found = this.find(dir, name);
    return found?.st.isDirectory() ? 'dir' : found?.st.isFile() ? 'file' : null;
  }

  read(dir: readonly string[], name: string, limit: number): Buffer | null {
    const found = this.find(dir, name);
    if (!found?.st.isFile()) return null;
    const fd = fs.openSync(
      found.abs,
      fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK,
    );
    return readOpenFile(fd, name, limit);
  }

  private readOnly(): never {
    throw new Forbidden("an image's hive is read-only; change it in a container and commit that");
  }

  write(): void {
    this.readOnly();
  }

  makeDir(): void {
    this.readOnly();
  }

  remove(): void {
    this.readOnly();
  }
}
