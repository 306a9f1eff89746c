import * as fs from 'node:fs';
import * as posixPath from 'node:path/posix';
import { isErrnoCode } from '../common/errors.js';
import { lutimesNs, constants as native, openInRoot } from '../native/index.js';
import {
  ContainerRoot,
  closeQuietly,
  fdPath,
  PATH_DIR,
  pathComponents,
  READ_DIR,
  removeTreeAt,
} from '../snapshots/rootfs.js';
import type { BuildContext, ContextEntry } from './context.js';

/**
 * Writing COPY/ADD sources into a mounted image root, the way the classic builder does it: files
 * and symlinks keep their mode and mtime, ownership becomes 0:0 (or the `--chown` identity),
 * `--chmod` replaces the mode, missing parent directories are created 0755 owned by the same
 * identity, an existing file is replaced, a source directory's *contents* are copied.
 *
 * Every path is resolved inside the root (openat2 RESOLVE_IN_ROOT through `ContainerRoot`) and
 * every change is made on one name inside an open directory fd, so neither symlinks in the image
 * nor names in the source can lead a write outside the root.
 */
export type CopySourceType = 'file' | 'directory' | 'symlink';

/** Something to copy: a context entry, a file in another stage's root, a here-document. */
export interface CopySource {
  name: string;
  type: CopySourceType;
  mode: number;
  mtimeNs: bigint;
  size: number;
  linkname: string;
  children(): CopySource[];
  /** The body of a file, in chunks (each may be reused after the next one is requested). */
  chunks(): Iterable<Buffer>;
}

const CHUNK = 1 << 20;

export function contextSource(context: BuildContext, entry: ContextEntry, name = entry.name): CopySource {
  return {
    name,
    type: entry.type,
    mode: entry.mode,
    mtimeNs: entry.mtimeNs,
    size: entry.size,
    linkname: entry.linkname,
    children: () => context.childrenOf(entry).map((child) => contextSource(context, child)),
    chunks: function* () {
      for (let position = 0; position < entry.size; ) {
        // A fresh buffer per chunk: a tar stream keeps it until its reader consumed it.
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, entry.size - position));
        const n = context.read(entry, buf, position);
        if (n === 0) break;
        position += n;
        yield n === buf.length ? buf : buf.subarray(0, n);
      }
    },
  };
}

/** A file, directory or symlink on the host (inside a mounted stage root), by lstat. */
export function fileSystemSource(hostPath: string, name = posixPath.basename(hostPath)): CopySource | null {
  const st = fs.lstatSync(hostPath, { bigint: true, throwIfNoEntry: false });
  if (!st) return null;
  const type: CopySourceType | null = st.isFile()
    ? 'file'
    : st.isDirectory()
      ? 'directory'
      : st.isSymbolicLink()
        ? 'symlink'
        : null;
  if (type === null) return null;
  return {
    name,
    type,
    mode: Number(st.mode & 0o7777n),
    mtimeNs: st.mtimeNs,
    size: Number(st.size),
    linkname: type === 'symlink' ? fs.readlinkSync(hostPath) : '',
    children: () =>
      type === 'directory'
        ? fs
            .readdirSync(hostPath)
            .sort()
            .map((child) => fileSystemSource(`${hostPath}/${child}`, child))
            .filter((s): s is CopySource => s !== null)
        : [],
    chunks: function* () {
      const src = fs.openSync(hostPath, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        for (;;) {
          const buf = Buffer.allocUnsafe(CHUNK);
          const n = fs.readSync(src, buf, 0, buf.length, null);
          if (n === 0) break;
          yield n === buf.length ? buf : buf.subarray(0, n);
        }
      } finally {
        fs.closeSync(src);
      }
    },
  };
}

export function bufferSource(name: string, data: Buffer, mode: number, mtimeNs: bigint): CopySource {
  return {
    name,
    type: 'file',
    mode,
    mtimeNs,
    size: data.length,
    linkname: '',
    children: () => [],
    chunks: () => [data],
  };
}

function writeAll(fd: number, buf: Buffer, length: number): void {
  let offset = 0;
  while (offset < length) offset += fs.writeSync(fd, buf, offset, length - offset);
}

export interface Identity {
  uid: number;
  gid: number;
}

export interface WriteOptions {
  identity: Identity;
  /** `--chmod`: replaces the mode of every copied file and directory. */
  chmod: number | null;
}

/** An open image root being written by one build step. */
export class RootWriter {
  private readonly root: ContainerRoot;

  constructor(readonly rootDir: string) {
    this.root = new ContainerRoot(rootDir);
  }

  close(): void {
    this.root.close();
  }

  /** The symlink-free form of `containerPath` (missing components kept as written). */
  resolve(containerPath: string): string {
    return this.root.resolve(containerPath);
  }

  /** True when `containerPath` is a directory, symlinks followed inside the root. */
  isDirectory(containerPath: string): boolean {
    try {
      const fd = this.root.open(containerPath, PATH_DIR);
      closeQuietly(fd);
      return true;
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return false;
      throw err;
    }
  }

  /** True when something (of any type) exists at `containerPath` (the last symlink not followed). */
  exists(containerPath: string): boolean {
    const resolved = this.resolve(posixPath.dirname(containerPath));
    const leaf = posixPath.basename(containerPath);
    try {
      const fd = this.root.open(resolved, PATH_DIR);
      try {
        return fs.lstatSync(fdPath(fd, leaf), { throwIfNoEntry: false }) !== undefined;
      } finally {
        closeQuietly(fd);
      }
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return false;
      throw err;
    }
  }

  /**
   * `mkdir -p` inside the root. Returns an O_PATH fd of the directory (close it). New directories
   * are 0755 and owned by `identity`; a non-directory in the way is an error (ENOTDIR).
   */
  mkdirAll(containerPath: string, identity: Identity): number {
    const resolved = this.resolve(containerPath);
    let fd = this.root.open('', PATH_DIR);
    const done: string[] = [];
    try {
      for (const part of pathComponents(resolved)) {
        const st = fs.lstatSync(fdPath(fd, part), { throwIfNoEntry: false });
        if (!st) {
          fs.mkdirSync(fdPath(fd, part), 0o755);
          fs.lchownSync(fdPath(fd, part), identity.uid, identity.gid);
          // mkdir obeys the umask.
          fs.chmodSync(fdPath(fd, part), 0o755);
        }
        done.push(part);
        const next = this.root.open(done.join('/'), PATH_DIR);
        closeQuietly(fd);
        fd = next;
      }
      return fd;
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }

  /** Writes `source` as `leaf` inside the directory `parentFd`, recursively for directories. */
  write(parentFd: number, leaf: string, source: CopySource, options: WriteOptions): void {
    const target = fdPath(parentFd, leaf);
    const existing = fs.lstatSync(target, { throwIfNoEntry: false });
    const { uid, gid } = options.identity;
    const mode = options.chmod ?? source.mode;
    if (existing && !(existing.isDirectory() && source.type === 'directory')) removeTreeAt(parentFd, leaf);
    switch (source.type) {
      case 'directory': {
        if (!existing?.isDirectory()) fs.mkdirSync(target, 0o700);
        const dirFd = openInRoot(parentFd, leaf, READ_DIR | native.O_NOFOLLOW);
        try {
          this.writeChildren(dirFd, source, options);
          // chown first: it clears setuid/setgid bits that the chmod then sets.
          fs.fchownSync(dirFd, uid, gid);
          fs.fchmodSync(dirFd, mode);
        } finally {
          closeQuietly(dirFd);
        }
        break;
      }
      case 'file': {
        const fd = fs.openSync(
          target,
          fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
          0o600,
        );
        try {
          for (const chunk of source.chunks()) writeAll(fd, chunk, chunk.length);
          fs.fchownSync(fd, uid, gid);
          fs.fchmodSync(fd, mode);
        } finally {
          fs.closeSync(fd);
        }
        break;
      }
      case 'symlink':
        fs.symlinkSync(source.linkname, target);
        fs.lchownSync(target, uid, gid);
        break;
    }
    lutimesNs(target, source.mtimeNs, source.mtimeNs);
  }

  /** Writes a directory source's children into the open directory `dirFd`. */
  writeChildren(dirFd: number, source: CopySource, options: WriteOptions): void {
    for (const child of source.children()) this.write(dirFd, child.name, child, options);
  }

  /** Copies the contents of the directory source into `destDir` (created when missing). */
  copyDirectoryContents(source: CopySource, destDir: string, options: WriteOptions): void {
    const fd = this.mkdirAll(destDir, options.identity);
    try {
      const dirFd = openInRoot(fd, '', READ_DIR);
      try {
        this.writeChildren(dirFd, source, options);
      } finally {
        closeQuietly(dirFd);
      }
    } finally {
      closeQuietly(fd);
    }
  }

  /** Copies a file or symlink source to the path `destPath` (its parent created when missing). */
  copyTo(source: CopySource, destPath: string, options: WriteOptions): void {
    const parent = posixPath.dirname(destPath);
    const leaf = posixPath.basename(destPath);
    const fd = this.mkdirAll(parent, options.identity);
    try {
      const dirFd = openInRoot(fd, '', READ_DIR);
      try {
        this.write(dirFd, leaf, source, options);
      } finally {
        closeQuietly(dirFd);
      }
    } finally {
      closeQuietly(fd);
    }
  }

  /** The host path of a symlink-free container directory (for extracting an archive into it). */
  hostPathOf(containerDir: string): string {
    return posixPath.join(this.rootDir, this.resolve(containerDir));
  }
}
