import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { Readable } from 'node:stream';
import type { Digest } from '../common/digest.js';
import { InvalidArgument, isErrnoCode } from '../common/errors.js';
import { logger } from '../common/log.js';
import { consumeTar, type TarBodySink, type TarEntryHeader } from '../common/tar.js';
import { TarParser } from '../common/tar-parser.js';
import { isNativeError, lsetxattr, lutimesNs, mknod, constants as native } from '../native/index.js';
import type { TarFeed } from './snapshotter.js';

/**
 * Layer tar → directory in overlay form, in one streaming pass.
 *
 * The tar is hashed (diff id) while it is unpacked with synchronous fs calls (node-syscalls.md §5:
 * async fs was 2.3× slower). Whiteouts become what overlayfs reads: `.wh.<name>` → a 0/0 char
 * device, `.wh..wh..opq` → `trusted.overlay.opaque=y` on the directory. Modes (setuid, sticky),
 * owners, nanosecond times, xattrs, devices, FIFOs and hard links are kept exactly.
 *
 * Safety: the target is a fresh private directory, so an entry can only escape through a path with
 * `..`, or through a symlink or hard link that this same tar created. Those are refused with
 * `InvalidArgument('invalid layer tar: …')`; leading `/` and `./` are stripped as tar does. The
 * caller (the store) removes the partial directory on any error.
 */

const log = logger('snapshots');

export interface ExtractedLayer {
  /** sha256 of the uncompressed tar stream, every byte of it. */
  diffId: Digest;
  /** Bytes of regular-file content plus symlink targets (hard links counted once). */
  size: number;
  /** Regular files and directories created (about: a parent made for several entries counts once). */
  filesAndDirs: number;
}

export const WHITEOUT_PREFIX = '.wh.';
export const WHITEOUT_OPAQUE = '.wh..wh..opq';
/** aufs metadata entries (`.wh..wh.plnk`, ...): meaningless for overlay, skipped as dockerd does. */
const WHITEOUT_META_PREFIX = '.wh..wh.';
export const OPAQUE_XATTR = 'trusted.overlay.opaque';

const CREATE_FILE_FLAGS =
  fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW;

function invalid(message: string): InvalidArgument {
  return new InvalidArgument(`invalid layer tar: ${message}`);
}

/**
 * Cleans an archive path into a relative path without `.` or empty components ('' is the root).
 * Leading `/` and `./` are stripped as tar does; any `..` component is refused.
 */
export function layerRelativePath(name: string, what = 'entry'): string {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') throw invalid(`${what} ${JSON.stringify(name)} escapes the layer`);
    parts.push(part);
  }
  return parts.join('/');
}

/** The process umask, read without the set-and-restore race of `process.umask()`. */
export function currentUmask(): number {
  try {
    const match = /^Umask:\s+([0-7]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    if (match) return Number.parseInt(match[1], 8);
  } catch {
    // fall through
  }
  return 0o022;
}

interface DirMetadata {
  mode: number;
  atimeNs: bigint;
  mtimeNs: bigint;
}

interface OpenFile {
  fd: number;
  abs: string;
  header: TarEntryHeader;
}

const DEVICE_TYPES: Record<string, number> = {
  'character-device': native.S_IFCHR,
  'block-device': native.S_IFBLK,
  fifo: native.S_IFIFO,
};

/** Applies tar entries to a fresh directory. One instance per layer. */
export class LayerWriter {
  readonly root: string;
  size = 0;
  filesAndDirs = 0;
  private readonly umask = currentUmask();
  /** Symlinks this layer created (relative paths): nothing may be written through them. */
  private readonly symlinks = new Set<string>();
  /** Directory metadata, applied after all entries (creating children changes a dir's mtime). */
  private readonly dirs = new Map<string, DirMetadata>();
  private warnedXattrs = false;

  constructor(root: string) {
    this.root = root.replace(/\/+$/, '');
  }

  /**
   * Applies one entry. Returns an open file for `file` entries: the caller writes the body with
   * `writeBody` and then calls `finishFile`; null for everything else.
   */
  begin(header: TarEntryHeader): OpenFile | null {
    const rel = layerRelativePath(header.name);
    this.checkNotUnderSymlink(rel, header.name);
    const slash = rel.lastIndexOf('/');
    const base = rel.slice(slash + 1);
    if (base.startsWith(WHITEOUT_PREFIX)) {
      this.whiteout(rel, base, slash < 0 ? '' : rel.slice(0, slash), header);
      return null;
    }
    if (rel === '' && header.type !== 'directory')
      throw invalid(`${header.rawType} entry for the layer root`);
    const abs = this.abs(rel);
    switch (header.type) {
      case 'directory':
        this.directory(rel, abs, header);
        return null;
      case 'file': {
        this.filesAndDirs++;
        const fd = this.create(rel, () => fs.openSync(abs, CREATE_FILE_FLAGS, header.mode & 0o777));
        return { fd, abs, header };
      }
      case 'symlink':
        this.symlink(rel, abs, header);
        return null;
      case 'link':
        this.hardLink(rel, abs, header);
        return null;
      case 'character-device':
      case 'block-device':
      case 'fifo':
        this.create(rel, () =>
          mknod(abs, DEVICE_TYPES[header.type!] | (header.mode & 0o777), header.devmajor, header.devminor),
        );
        this.applyMetadata(abs, header, true);
        return null;
      default:
        throw invalid(
          `unsupported entry type ${JSON.stringify(header.rawType)} for ${JSON.stringify(header.name)}`,
        );
    }
  }

  writeBody(file: OpenFile, chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length) offset += fs.writeSync(file.fd, chunk, offset, chunk.length - offset);
  }

  finishFile(file: OpenFile): void {
    const { fd, abs, header } = file;
    try {
      // chown clears setuid/setgid and security.capability, and so does writing: both come first.
      if (header.uid !== 0 || header.gid !== 0) fs.fchownSync(fd, header.uid, header.gid);
      if (this.needsChmod(header.mode)) fs.fchmodSync(fd, header.mode);
    } finally {
      fs.closeSync(fd);
    }
    this.applyXattrs(abs, header);
    lutimesNs(abs, header.atimeNs ?? header.mtimeNs, header.mtimeNs);
    this.size += header.size;
  }

  abortFile(file: OpenFile): void {
    try {
      fs.closeSync(file.fd);
    } catch {
      // already closed
    }
  }

  /** Sets directory modes and times, once every entry is in place. */
  finish(): void {
    for (const [rel, meta] of this.dirs) {
      const abs = this.abs(rel);
      // A later entry may have replaced the directory; only a directory gets directory metadata.
      const st = fs.lstatSync(abs, { throwIfNoEntry: false });
      if (!st?.isDirectory()) continue;
      fs.chmodSync(abs, meta.mode);
      lutimesNs(abs, meta.atimeNs, meta.mtimeNs);
    }
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  private checkNotUnderSymlink(rel: string, name: string): void {
    if (this.symlinks.size === 0) return;
    for (let i = rel.indexOf('/'); i !== -1; i = rel.indexOf('/', i + 1)) {
      if (this.symlinks.has(rel.slice(0, i))) {
        throw invalid(
          `${JSON.stringify(name)} would be written through the symlink ${JSON.stringify(rel.slice(0, i))}`,
        );
      }
    }
  }

  private needsChmod(mode: number): boolean {
    return (mode & 0o7000) !== 0 || (mode & this.umask) !== 0;
  }

  /** Runs `make`; on EEXIST replaces what is there, on ENOENT creates the missing parents. */
  private create<T>(rel: string, make: () => T): T {
    try {
      return make();
    } catch (err) {
      if (isErrnoCode(err, 'EEXIST')) {
        this.removeExisting(rel);
        return make();
      }
      if (isErrnoCode(err, 'ENOENT')) {
        this.makeParents(rel);
        return make();
      }
      if (isErrnoCode(err, 'ENOTDIR')) throw invalid(`a parent of ${JSON.stringify(rel)} is not a directory`);
      throw err;
    }
  }

  private makeParents(rel: string): void {
    const slash = rel.lastIndexOf('/');
    if (slash < 0) return;
    this.filesAndDirs++;
    try {
      fs.mkdirSync(this.abs(rel.slice(0, slash)), { recursive: true, mode: 0o755 });
    } catch (err) {
      if (isErrnoCode(err, 'ENOTDIR') || isErrnoCode(err, 'EEXIST')) {
        throw invalid(`a parent of ${JSON.stringify(rel)} is not a directory`);
      }
      throw err;
    }
  }

  /** A later entry replaces an earlier one of the same name (tar semantics). */
  private removeExisting(rel: string): void {
    const abs = this.abs(rel);
    const st = fs.lstatSync(abs);
    if (st.isDirectory()) {
      fs.rmSync(abs, { recursive: true, force: true });
      const prefix = `${rel}/`;
      for (const key of this.dirs.keys()) if (key === rel || key.startsWith(prefix)) this.dirs.delete(key);
      for (const key of this.symlinks) if (key.startsWith(prefix)) this.symlinks.delete(key);
    } else {
      fs.unlinkSync(abs);
      this.symlinks.delete(rel);
    }
  }

  private directory(rel: string, abs: string, header: TarEntryHeader): void {
    this.filesAndDirs++;
    let existed = rel === '';
    if (!existed) {
      try {
        fs.mkdirSync(abs, header.mode & 0o777);
      } catch (err) {
        if (!isErrnoCode(err, 'EEXIST') && !isErrnoCode(err, 'ENOENT')) throw err;
        if (isErrnoCode(err, 'ENOENT')) {
          this.makeParents(rel);
          fs.mkdirSync(abs, header.mode & 0o777);
        } else if (fs.lstatSync(abs).isDirectory()) {
          existed = true;
        } else {
          this.removeExisting(rel);
          fs.mkdirSync(abs, header.mode & 0o777);
        }
      }
    }
    if (existed || header.uid !== 0 || header.gid !== 0) fs.lchownSync(abs, header.uid, header.gid);
    this.applyXattrs(abs, header);
    this.dirs.set(rel, {
      mode: header.mode,
      atimeNs: header.atimeNs ?? header.mtimeNs,
      mtimeNs: header.mtimeNs,
    });
  }

  private symlink(rel: string, abs: string, header: TarEntryHeader): void {
    const target = header.linkname ?? '';
    if (target === '') throw invalid(`symlink ${JSON.stringify(header.name)} has no target`);
    this.create(rel, () => fs.symlinkSync(target, abs));
    this.symlinks.add(rel);
    if (header.uid !== 0 || header.gid !== 0) fs.lchownSync(abs, header.uid, header.gid);
    this.applyXattrs(abs, header);
    lutimesNs(abs, header.atimeNs ?? header.mtimeNs, header.mtimeNs);
    this.size += Buffer.byteLength(target);
  }

  private hardLink(rel: string, abs: string, header: TarEntryHeader): void {
    const target = layerRelativePath(header.linkname ?? '', 'hard link target');
    if (target === '' || target === rel) {
      throw invalid(
        `hard link ${JSON.stringify(header.name)} has an invalid target ${JSON.stringify(header.linkname)}`,
      );
    }
    this.checkNotUnderSymlink(target, header.linkname ?? '');
    const targetAbs = this.abs(target);
    const st = fs.lstatSync(targetAbs, { throwIfNoEntry: false });
    if (!st) {
      throw invalid(
        `hard link ${JSON.stringify(header.name)} points to ${JSON.stringify(header.linkname)}, not in this layer`,
      );
    }
    if (st.isDirectory()) throw invalid(`hard link ${JSON.stringify(header.name)} points to a directory`);
    // link(2) does not follow a symlink target: linking a symlink makes another symlink.
    this.create(rel, () => fs.linkSync(targetAbs, abs));
    if (this.symlinks.has(target)) this.symlinks.add(rel);
  }

  private whiteout(rel: string, base: string, parentRel: string, header: TarEntryHeader): void {
    if (base === WHITEOUT_OPAQUE) {
      const parentAbs = this.abs(parentRel);
      if (parentRel !== '' && !fs.existsSync(parentAbs)) this.makeParents(rel);
      const st = fs.lstatSync(parentAbs);
      if (!st.isDirectory())
        throw invalid(`opaque marker ${JSON.stringify(header.name)} is not in a directory`);
      lsetxattr(parentAbs, OPAQUE_XATTR, 'y');
      return;
    }
    if (base.startsWith(WHITEOUT_META_PREFIX)) return;
    const victim = base.slice(WHITEOUT_PREFIX.length);
    if (victim === '' || victim === '.' || victim === '..') {
      throw invalid(`whiteout ${JSON.stringify(header.name)} names no file`);
    }
    const victimRel = parentRel === '' ? victim : `${parentRel}/${victim}`;
    const victimAbs = this.abs(victimRel);
    this.create(victimRel, () => mknod(victimAbs, native.S_IFCHR, 0, 0));
    if (header.uid !== 0 || header.gid !== 0) fs.lchownSync(victimAbs, header.uid, header.gid);
    // The marker's time, not the moment of unpacking: the same tar always gives the same tree.
    lutimesNs(victimAbs, header.atimeNs ?? header.mtimeNs, header.mtimeNs);
  }

  /** Owner, mode, xattrs and times of a node created by path (devices, FIFOs). */
  private applyMetadata(abs: string, header: TarEntryHeader, chmod: boolean): void {
    if (header.uid !== 0 || header.gid !== 0) fs.lchownSync(abs, header.uid, header.gid);
    if (chmod && this.needsChmod(header.mode)) fs.chmodSync(abs, header.mode);
    this.applyXattrs(abs, header);
    lutimesNs(abs, header.atimeNs ?? header.mtimeNs, header.mtimeNs);
  }

  private applyXattrs(abs: string, header: TarEntryHeader): void {
    for (const [name, value] of header.xattrs) {
      // Overlay's own attributes (redirect, origin, metacopy, opaque) come only from our conversion.
      if (name.startsWith('trusted.overlay.')) continue;
      try {
        lsetxattr(abs, name, value);
      } catch (err) {
        // As dockerd: a file system without xattr support, or user.* on a symlink, is not fatal.
        if (isNativeError(err, 'ENOTSUP') || isNativeError(err, 'EPERM')) {
          if (!this.warnedXattrs) {
            log.warn('ignored xattrs the file system does not support', {
              path: abs,
              name,
              error: err.message,
            });
            this.warnedXattrs = true;
          }
          continue;
        }
        if (isNativeError(err, 'ENOSPC') || isNativeError(err, 'E2BIG')) {
          throw new InvalidArgument(
            `xattr ${name} (${value.length} bytes) of ${JSON.stringify(header.name)} does not fit on this file system`,
            { cause: err },
          );
        }
        throw err;
      }
    }
  }
}

export interface ExtractOptions {
  /**
   * The stream's digest, already verified by whoever hands it over (an uncompressed layer blob read
   * from the content store, whose digest is the diff id): it is not hashed a second time.
   */
  knownDiffId?: Digest;
}

/**
 * Unpacks an uncompressed layer tar into `targetDir` (which must exist and be empty), hashing the
 * stream as it goes. On error the directory is left as is; the caller removes it.
 */
export async function extractLayer(
  layerTar: Readable | TarFeed,
  targetDir: string,
  options: ExtractOptions = {},
): Promise<ExtractedLayer> {
  const hash = options.knownDiffId === undefined ? createHash('sha256') : null;
  const writer = new LayerWriter(targetDir);
  const onEntry = (header: TarEntryHeader): TarBodySink | null => {
    const file = writer.begin(header);
    if (file === null) return null;
    return {
      write: (chunk) => writer.writeBody(file, chunk),
      end: () => writer.finishFile(file),
      abort: () => writer.abortFile(file),
    };
  };
  try {
    if (layerTar instanceof Readable) {
      await consumeTar(layerTar, onEntry, hash === null ? undefined : (chunk) => hash.update(chunk));
    } else {
      const parser = new TarParser(onEntry);
      try {
        await layerTar.feed((chunk) => {
          hash?.update(chunk);
          parser.write(chunk);
        });
        parser.end();
      } catch (err) {
        parser.abort();
        throw err;
      }
    }
  } catch (err) {
    if (err instanceof InvalidArgument || (err as NodeJS.ErrnoException).code !== undefined) throw err;
    // The parser's own errors ("invalid tar: header checksum mismatch", ...)
    throw invalid((err as Error).message.replace(/^invalid tar: /, ''));
  }
  writer.finish();
  const diffId = hash === null ? (options.knownDiffId as Digest) : (`sha256:${hash.digest('hex')}` as Digest);
  return { diffId, size: writer.size, filesAndDirs: writer.filesAndDirs };
}
