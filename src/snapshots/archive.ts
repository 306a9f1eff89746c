import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidArgument, isErrnoCode, NotFound, StrataError } from '../common/errors.js';
import { consumeTar, type TarBodySink, type TarEntryHeader, TarWriter } from '../common/tar.js';
import {
  isNativeError,
  lsetxattr,
  lutimesNs,
  mknod,
  constants as native,
  openInRoot,
} from '../native/index.js';
import { entryFromStat, readArchivableXattrs, sortNamesBytewise } from './pack.js';
import {
  ContainerRoot,
  cleanRelative,
  closeQuietly,
  fdPath,
  PATH_DIR,
  pathComponents,
  READ_DIR,
  removeTreeAt,
} from './rootfs.js';

/**
 * The Engine API's file transfer on a mounted container root: `docker cp` out of a container (HEAD
 * and GET /containers/{id}/archive), into it (PUT), and `docker export`.
 *
 * Paths follow dockerd: the requested path is absolute inside the container; its directory part is
 * resolved with the container's symlinks (scoped to the root, never the host's), its last element
 * is taken as is (`/link` is the symlink, `/link/` what it points to). Archive entries are named by
 * the last element (`/etc` → `etc/…`); a path ending in `/.` gives the directory's contents
 * (`./…`). Every file-system access goes through `rootfs.ts`, so neither names in an uploaded tar
 * (`../`, absolute, hard links) nor symlinks in the container can reach outside `rootDir`.
 *
 * NotFound errors read `Could not find the file <path> in container <containerRef>`; pass the
 * name or id the client used as `containerRef`.
 */

/** Docker's `ContainerPathStat` (the `X-Docker-Container-Path-Stat` header, base64 JSON). */
export interface ContainerPathStat {
  name: string;
  size: number;
  /** A Go `os.FileMode`: permission bits plus Go's type and setuid/setgid/sticky flags. */
  mode: number;
  /** RFC 3339 with nanoseconds, UTC. */
  mtime: string;
  /** For a symlink, its target fully resolved inside the container; otherwise ''. */
  linkTarget: string;
}

export interface ExtractArchiveOptions {
  /** Refuse to replace a directory with a non-directory or the reverse (`docker cp` sets this). */
  noOverwriteDirNonDir?: boolean;
  /** Keep the archive's uid/gid (`docker cp -a`); otherwise everything is owned by root. */
  copyUIDGID?: boolean;
  /** For error messages. */
  containerRef?: string;
}

// Go os.FileMode bits
const GO_MODE_DIR = 2 ** 31;
const GO_MODE_SYMLINK = 2 ** 27;
const GO_MODE_DEVICE = 2 ** 26;
const GO_MODE_NAMED_PIPE = 2 ** 25;
const GO_MODE_SOCKET = 2 ** 24;
const GO_MODE_SETUID = 2 ** 23;
const GO_MODE_SETGID = 2 ** 22;
const GO_MODE_CHAR_DEVICE = 2 ** 21;
const GO_MODE_STICKY = 2 ** 20;

/** Converts a stat mode to Go's `os.FileMode` number, as dockerd serialises it. */
export function goFileMode(st: fs.BigIntStats): number {
  const mode = Number(st.mode);
  let out = mode & 0o777;
  if (mode & 0o4000) out += GO_MODE_SETUID;
  if (mode & 0o2000) out += GO_MODE_SETGID;
  if (mode & 0o1000) out += GO_MODE_STICKY;
  if (st.isDirectory()) out += GO_MODE_DIR;
  else if (st.isSymbolicLink()) out += GO_MODE_SYMLINK;
  else if (st.isFIFO()) out += GO_MODE_NAMED_PIPE;
  else if (st.isSocket()) out += GO_MODE_SOCKET;
  else if (st.isBlockDevice()) out += GO_MODE_DEVICE;
  else if (st.isCharacterDevice()) out += GO_MODE_DEVICE + GO_MODE_CHAR_DEVICE;
  return out;
}

/** Go's RFC3339Nano in UTC: `2024-05-01T12:00:00.123456789Z`, trailing zeros of the fraction dropped. */
export function formatGoTime(ns: bigint): string {
  const seconds = ns / 1_000_000_000n - (ns % 1_000_000_000n < 0n ? 1n : 0n);
  const fraction = ns - seconds * 1_000_000_000n;
  const base = new Date(Number(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, '');
  const digits = fraction.toString().padStart(9, '0').replace(/0+$/, '');
  return `${base}${digits ? `.${digits}` : ''}Z`;
}

/** Go's `filepath.Base`. */
function goBase(p: string): string {
  const trimmed = p.replace(/\/+$/, '');
  if (trimmed === '') return '/';
  return trimmed.slice(trimmed.lastIndexOf('/') + 1);
}

/**
 * dockerd's absolute form of a requested path: cleaned, but a trailing `/.` or `/` kept, because
 * they change the meaning (contents of / follow the symlink).
 */
export function containerAbsPath(requested: string): string {
  let abs = path.posix.resolve('/', requested);
  if (goBase(requested) === '.' && !abs.endsWith('/.')) abs += abs.endsWith('/') ? '.' : '/.';
  else if (requested.endsWith('/') && !abs.endsWith('/')) abs += '/';
  return abs;
}

interface ResolvedTarget {
  /** The requested path in dockerd's absolute form. */
  absPath: string;
  /** The directory part, symlinks resolved (symlink-free). */
  parentPath: string;
  /** Open O_PATH fd of the directory part. */
  parentFd: number;
  /** The last element as written; '' or '.' mean the directory itself. */
  leaf: string;
  stat: fs.BigIntStats;
}

function notFound(requested: string, containerRef?: string): NotFound {
  return new NotFound(`Could not find the file ${requested} in container ${containerRef ?? ''}`.trimEnd());
}

function joinContainerPath(dir: string, leaf: string): string {
  return dir === '/' ? `/${leaf}` : `${dir}/${leaf}`;
}

/** Resolves a requested path; the caller closes `parentFd`. */
function resolveTarget(root: ContainerRoot, requested: string, containerRef?: string): ResolvedTarget {
  const absPath = containerAbsPath(requested);
  const slash = absPath.lastIndexOf('/');
  const leaf = absPath.slice(slash + 1);
  const parentPath = root.resolve(absPath.slice(0, slash + 1));
  let parentFd: number;
  try {
    parentFd = root.open(parentPath, PATH_DIR);
  } catch (err) {
    if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) throw notFound(requested, containerRef);
    throw err;
  }
  try {
    const stat =
      leaf === '' || leaf === '.'
        ? fs.fstatSync(parentFd, { bigint: true })
        : fs.lstatSync(fdPath(parentFd, leaf), { bigint: true, throwIfNoEntry: false });
    if (!stat) throw notFound(requested, containerRef);
    return { absPath, parentPath, parentFd, leaf, stat };
  } catch (err) {
    closeQuietly(parentFd);
    throw err;
  }
}

/** HEAD /containers/{id}/archive: what is at `containerPath` (a symlink is not followed). */
export function statInRoot(rootDir: string, containerPath: string, containerRef?: string): ContainerPathStat {
  const root = new ContainerRoot(rootDir);
  try {
    const target = resolveTarget(root, containerPath, containerRef);
    closeQuietly(target.parentFd);
    const { stat } = target;
    const linkTarget = stat.isSymbolicLink()
      ? root.resolve(joinContainerPath(target.parentPath, target.leaf))
      : '';
    return {
      name: goBase(target.absPath),
      size: Number(stat.size),
      mode: goFileMode(stat),
      mtime: formatGoTime(stat.mtimeNs),
      linkTarget,
    };
  } finally {
    root.close();
  }
}

function isVanished(err: unknown): boolean {
  return isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ELOOP') || isErrnoCode(err, 'ENOTDIR');
}

/**
 * Adds `name` (inside the open directory `dirFd`) to the archive as `archiveName`, recursively.
 * Entries that vanish or change type while we read them (a running container) are skipped.
 */
async function addNode(
  writer: TarWriter,
  dirFd: number,
  name: string,
  archiveName: string,
  hardLinks: Map<string, string>,
): Promise<void> {
  const p = fdPath(dirFd, name);
  let st: fs.BigIntStats | undefined;
  let xattrs: Map<string, Buffer> | undefined;
  try {
    st = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
    if (!st) return;
    xattrs = readArchivableXattrs(p);
  } catch (err) {
    if (isVanished(err)) return;
    throw err;
  }
  const entry = entryFromStat(archiveName, st, {}, { xattrs });
  if (entry === null) return;
  if (entry.type === 'directory') {
    await writer.add(entry);
    let childFd: number;
    try {
      childFd = openInRoot(dirFd, name, READ_DIR | native.O_NOFOLLOW);
    } catch (err) {
      if (isVanished(err)) return;
      throw err;
    }
    try {
      await addChildren(writer, childFd, `${archiveName.replace(/\/$/, '')}/`, hardLinks);
    } finally {
      closeQuietly(childFd);
    }
    return;
  }
  if (st.nlink > 1n) {
    const key = `${st.dev}:${st.ino}`;
    const first = hardLinks.get(key);
    if (first !== undefined) {
      await writer.add({ ...entry, type: 'link', linkname: first, size: 0, xattrs: undefined });
      return;
    }
    hardLinks.set(key, archiveName);
  }
  if (entry.type === 'symlink') {
    let linkname: string;
    try {
      linkname = fs.readlinkSync(p);
    } catch (err) {
      if (isVanished(err) || isErrnoCode(err, 'EINVAL')) return;
      throw err;
    }
    await writer.add({ ...entry, linkname });
    return;
  }
  if (entry.type === 'file') {
    let fd: number;
    try {
      fd = openInRoot(dirFd, name, native.O_RDONLY | native.O_NOFOLLOW | native.O_NONBLOCK);
    } catch (err) {
      if (isVanished(err)) return;
      throw err;
    }
    try {
      const current = fs.fstatSync(fd);
      if (!current.isFile()) return;
      await writer.addFromFd({ ...entry, size: current.size }, fd);
    } finally {
      closeQuietly(fd);
    }
    return;
  }
  await writer.add(entry);
}

async function addChildren(
  writer: TarWriter,
  dirFd: number,
  prefix: string,
  hardLinks: Map<string, string>,
): Promise<void> {
  for (const name of sortNamesBytewise(fs.readdirSync(fdPath(dirFd)))) {
    await addNode(writer, dirFd, name, prefix + name, hardLinks);
  }
}

/** Runs `produce` into a new tar stream; `cleanup` runs once it ends either way. */
function tarStream(produce: (writer: TarWriter) => Promise<void>, cleanup: () => void): Readable {
  const writer = new TarWriter();
  void produce(writer)
    .then(() => writer.finalize())
    .catch((err: Error) => writer.destroy(err))
    .finally(cleanup);
  return writer.stream;
}

/**
 * GET /containers/{id}/archive: a tar of `containerPath`. Throws NotFound synchronously (before
 * any byte is streamed) when the path does not exist.
 */
export function archiveFromRoot(rootDir: string, containerPath: string, containerRef?: string): Readable {
  const root = new ContainerRoot(rootDir);
  let target: ResolvedTarget;
  try {
    target = resolveTarget(root, containerPath, containerRef);
  } catch (err) {
    root.close();
    throw err;
  }
  const { parentFd, leaf, stat, absPath } = target;
  const isSelf = leaf === '' || leaf === '.';
  // dockerd's rebase: `/` → entries `/`, `/bin`…; `/d/.` → `./`, `./x`…; otherwise the last element.
  const base = goBase(absPath);
  const topName = leaf === '.' ? '.' : base === '/' ? '' : base;
  return tarStream(
    async (writer) => {
      if (!stat.isDirectory()) {
        await addNode(writer, parentFd, leaf, topName, new Map());
        return;
      }
      const top = entryFromStat(
        topName === '' ? '/' : topName,
        stat,
        {},
        {
          xattrs: isSelf ? undefined : readArchivableXattrs(fdPath(parentFd, leaf)),
        },
      );
      await writer.add(top!);
      const dirFd = isSelf
        ? root.open(target.parentPath, READ_DIR)
        : openInRoot(parentFd, leaf, READ_DIR | native.O_NOFOLLOW);
      try {
        await addChildren(writer, dirFd, topName === '' ? '/' : `${topName}/`, new Map());
      } finally {
        closeQuietly(dirFd);
      }
    },
    () => {
      closeQuietly(parentFd);
      root.close();
    },
  );
}

/** GET /containers/{id}/export: the whole root file system, entries named without a leading `/`. */
export function exportRoot(rootDir: string): Readable {
  const root = new ContainerRoot(rootDir);
  return tarStream(
    async (writer) => {
      const dirFd = root.open('', READ_DIR);
      try {
        await addChildren(writer, dirFd, '', new Map());
      } finally {
        closeQuietly(dirFd);
      }
    },
    () => root.close(),
  );
}

// ---------------------------------------------------------------------------------------------
// PUT /containers/{id}/archive

const DEVICE_TYPES: Record<string, number> = {
  'character-device': native.S_IFCHR,
  'block-device': native.S_IFBLK,
  fifo: native.S_IFIFO,
};

interface PendingDir {
  path: string;
  mode: number;
  uid: number;
  gid: number;
  atimeNs: bigint;
  mtimeNs: bigint;
}

function invalidEntry(header: TarEntryHeader, reason: string): InvalidArgument {
  return new InvalidArgument(`invalid tar entry ${JSON.stringify(header.name)}: ${reason}`);
}

function applyXattrs(p: string, header: TarEntryHeader): void {
  for (const [name, value] of header.xattrs) {
    if (name.startsWith('trusted.overlay.')) continue;
    try {
      lsetxattr(p, name, value);
    } catch (err) {
      if (isNativeError(err, 'ENOTSUP') || isNativeError(err, 'EPERM')) continue;
      throw err;
    }
  }
}

/**
 * PUT /containers/{id}/archive: extracts `tar` into the existing directory `containerPath`.
 * Entries may not climb out of that directory (`..` → InvalidArgument, as dockerd's breakout
 * check); symlinks met on the way are followed inside the root only.
 */
export async function extractArchiveToRoot(
  rootDir: string,
  containerPath: string,
  tar: Readable,
  options: ExtractArchiveOptions = {},
): Promise<void> {
  const root = new ContainerRoot(rootDir);
  try {
    const destPath = root.resolve(path.posix.resolve('/', containerPath));
    let destFd: number;
    try {
      destFd = root.open(destPath, native.O_PATH);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) {
        throw notFound(containerPath, options.containerRef);
      }
      throw err;
    }
    const isDir = fs.fstatSync(destFd).isDirectory();
    closeQuietly(destFd);
    if (!isDir) throw new InvalidArgument('extraction point is not a directory');

    const extractor = new ArchiveExtractor(root, pathComponents(destPath), options);
    try {
      await consumeTar(tar, (header) => extractor.begin(header));
    } catch (err) {
      if (err instanceof StrataError || (err as NodeJS.ErrnoException).code !== undefined) throw err;
      throw new InvalidArgument(`invalid tar archive: ${(err as Error).message}`);
    }
    extractor.finish();
  } finally {
    root.close();
  }
}

class ArchiveExtractor {
  private readonly dirs: PendingDir[] = [];

  constructor(
    private readonly root: ContainerRoot,
    private readonly destParts: readonly string[],
    private readonly options: ExtractArchiveOptions,
  ) {}

  /** The container path of an archive name, or an error when it leaves the destination. */
  private containerPathOf(header: TarEntryHeader, name: string): string[] {
    const parts = cleanRelative(name);
    if (parts === null) throw invalidEntry(header, 'outside of the extraction directory');
    return [...this.destParts, ...parts];
  }

  begin(header: TarEntryHeader): TarBodySink | null {
    const full = this.containerPathOf(header, header.name);
    if (full.length === this.destParts.length) {
      if (header.type === 'directory') return null; // "." is the destination itself
      throw invalidEntry(header, 'not a directory');
    }
    const leaf = full.pop()!;
    const parentPath = `/${full.join('/')}`;
    const containerPath = joinContainerPath(parentPath, leaf);
    const parentFd = this.root.openOrCreateDir(parentPath);
    let keepParent = false;
    try {
      const sink = this.apply(header, parentFd, leaf, containerPath);
      keepParent = sink !== null;
      return sink;
    } finally {
      if (!keepParent) closeQuietly(parentFd);
    }
  }

  private apply(
    header: TarEntryHeader,
    parentFd: number,
    leaf: string,
    containerPath: string,
  ): TarBodySink | null {
    const p = fdPath(parentFd, leaf);
    const uid = this.options.copyUIDGID ? header.uid : 0;
    const gid = this.options.copyUIDGID ? header.gid : 0;
    const atimeNs = header.atimeNs ?? header.mtimeNs;
    const wantsDir = header.type === 'directory';

    const existing = fs.lstatSync(p, { throwIfNoEntry: false });
    if (existing) {
      if (this.options.noOverwriteDirNonDir && existing.isDirectory() && !wantsDir) {
        throw new InvalidArgument(`cannot overwrite directory "${containerPath}" with non-directory`);
      }
      if (this.options.noOverwriteDirNonDir && !existing.isDirectory() && wantsDir) {
        throw new InvalidArgument(`cannot overwrite non-directory "${containerPath}" with directory`);
      }
      if (!(existing.isDirectory() && wantsDir)) removeTreeAt(parentFd, leaf);
    }

    switch (header.type) {
      case 'directory': {
        if (!existing?.isDirectory()) fs.mkdirSync(p, 0o700);
        fs.lchownSync(p, uid, gid);
        applyXattrs(p, header);
        this.dirs.push({
          path: containerPath,
          mode: header.mode,
          uid,
          gid,
          atimeNs,
          mtimeNs: header.mtimeNs,
        });
        return null;
      }
      case 'file': {
        const fd = fs.openSync(
          p,
          fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
          0o600,
        );
        return {
          write: (chunk) => {
            let offset = 0;
            while (offset < chunk.length) offset += fs.writeSync(fd, chunk, offset, chunk.length - offset);
          },
          end: () => {
            try {
              // chown first: it clears setuid/setgid, which fchmod then sets.
              fs.fchownSync(fd, uid, gid);
              fs.fchmodSync(fd, header.mode);
            } finally {
              fs.closeSync(fd);
            }
            try {
              applyXattrs(p, header);
              lutimesNs(p, atimeNs, header.mtimeNs);
            } finally {
              closeQuietly(parentFd);
            }
          },
          abort: () => {
            closeQuietly(fd);
            closeQuietly(parentFd);
          },
        };
      }
      case 'symlink': {
        if (!header.linkname) throw invalidEntry(header, 'symlink without a target');
        fs.symlinkSync(header.linkname, p);
        fs.lchownSync(p, uid, gid);
        applyXattrs(p, header);
        lutimesNs(p, atimeNs, header.mtimeNs);
        return null;
      }
      case 'link': {
        const target = this.containerPathOf(header, header.linkname ?? '');
        if (target.length === 0) throw invalidEntry(header, 'hard link without a target');
        const targetLeaf = target.pop()!;
        let targetParentFd: number;
        try {
          targetParentFd = this.root.open(`/${target.join('/')}`, PATH_DIR);
        } catch (err) {
          if (isVanished(err))
            throw invalidEntry(header, `hard link target ${JSON.stringify(header.linkname)} not found`);
          throw err;
        }
        try {
          // link(2) never follows a symlink given as its target: at worst it links the symlink.
          fs.linkSync(fdPath(targetParentFd, targetLeaf), p);
        } catch (err) {
          if (isErrnoCode(err, 'ENOENT')) {
            throw invalidEntry(header, `hard link target ${JSON.stringify(header.linkname)} not found`);
          }
          if (isErrnoCode(err, 'EPERM')) throw invalidEntry(header, 'hard link to a directory');
          throw err;
        } finally {
          closeQuietly(targetParentFd);
        }
        return null;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        const typeBits = DEVICE_TYPES[header.type];
        mknod(p, typeBits | (header.mode & 0o777), header.devmajor, header.devminor);
        fs.lchownSync(p, uid, gid);
        // chmod(2) follows symlinks, so pin the node first and chmod it through its own fd.
        const pinned = openInRoot(parentFd, leaf, native.O_PATH | native.O_NOFOLLOW);
        try {
          if ((fs.fstatSync(pinned).mode & native.S_IFMT) === typeBits)
            fs.chmodSync(fdPath(pinned), header.mode);
        } finally {
          closeQuietly(pinned);
        }
        applyXattrs(p, header);
        lutimesNs(p, atimeNs, header.mtimeNs);
        return null;
      }
      default:
        throw invalidEntry(header, `unsupported entry type ${JSON.stringify(header.rawType)}`);
    }
  }

  /** Directory owners, modes and times, after their contents (which change the mtime). */
  finish(): void {
    for (const dir of this.dirs.reverse()) {
      let fd: number;
      try {
        fd = this.root.open(dir.path, READ_DIR | native.O_NOFOLLOW);
      } catch (err) {
        if (isVanished(err)) continue;
        throw err;
      }
      try {
        fs.fchownSync(fd, dir.uid, dir.gid);
        fs.fchmodSync(fd, dir.mode);
      } finally {
        closeQuietly(fd);
      }
      const slash = dir.path.lastIndexOf('/');
      const parentFd = this.root.open(dir.path.slice(0, slash) || '/', PATH_DIR);
      try {
        lutimesNs(fdPath(parentFd, dir.path.slice(slash + 1)), dir.atimeNs, dir.mtimeNs);
      } finally {
        closeQuietly(parentFd);
      }
    }
  }
}
