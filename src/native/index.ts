import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Typed loader for Strata's N-API addon (`strata_native.c`): the Linux calls Node's fs lacks —
 * mknod, l*xattr, mount/umount2, nanosecond utimes, overlay mounts through the new mount API,
 * openat2(RESOLVE_IN_ROOT), syncfs, a unix socket's peer credentials and idmapped mounts, plus what
 * the registry's blob transfers need (mallopt, a digest that runs on the thread pool, aligned
 * buffers, and threads that move upload bodies from a socket to a file and downloads from a file to a
 * socket with sendfile). Calls are synchronous unless named `…Async`, and throw errors shaped like Node's fs errors
 * (`code`, `errno` (negative), `syscall`, `path`).
 *
 * Typical uses: a whiteout is `mknod(p, constants.S_IFCHR, 0, 0)`; an opaque dir is
 * `lsetxattr(dir, 'trusted.overlay.opaque', 'y')`; a container root is
 * `mountOverlay([top, ..., bottom], upper, work, merged, 'index=off')`; a file inside a container
 * root is opened with `openInRoot(root, 'etc/passwd', constants.O_RDONLY)`.
 */
export interface NativeError extends Error {
  code: string;
  /** Negative errno, as in Node's fs errors. */
  errno: number;
  syscall: string;
  path?: string;
}

export type NativeConstantName =
  | 'S_IFMT'
  | 'S_IFREG'
  | 'S_IFDIR'
  | 'S_IFLNK'
  | 'S_IFCHR'
  | 'S_IFBLK'
  | 'S_IFIFO'
  | 'S_IFSOCK'
  | 'MS_RDONLY'
  | 'MS_NOSUID'
  | 'MS_NODEV'
  | 'MS_NOEXEC'
  | 'MS_REMOUNT'
  | 'MS_BIND'
  | 'MS_MOVE'
  | 'MS_REC'
  | 'MS_PRIVATE'
  | 'MS_SLAVE'
  | 'MS_SHARED'
  | 'MS_UNBINDABLE'
  | 'MS_NOATIME'
  | 'MS_RELATIME'
  | 'MS_STRICTATIME'
  | 'MNT_FORCE'
  | 'MNT_DETACH'
  | 'MNT_EXPIRE'
  | 'UMOUNT_NOFOLLOW'
  | 'XATTR_CREATE'
  | 'XATTR_REPLACE'
  | 'O_RDONLY'
  | 'O_WRONLY'
  | 'O_RDWR'
  | 'O_CREAT'
  | 'O_EXCL'
  | 'O_TRUNC'
  | 'O_APPEND'
  | 'O_DIRECTORY'
  | 'O_NOFOLLOW'
  | 'O_CLOEXEC'
  | 'O_PATH'
  | 'O_NONBLOCK'
  | 'RESOLVE_NO_XDEV'
  | 'RESOLVE_NO_MAGICLINKS'
  | 'RESOLVE_NO_SYMLINKS'
  | 'RESOLVE_BENEATH'
  | 'RESOLVE_IN_ROOT'
  | 'RESOLVE_CACHED';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
  groups: number[];
}

/** Opaque handle of a running digest (digestCreate). */
export type DigestHandle = { readonly __brand: 'DigestHandle' };

export interface StrataNative {
  /** mknod(2). `mode` includes the file type (`S_IFCHR`, `S_IFBLK`, `S_IFIFO`, ...). */
  mknod(path: string, mode: number, major: number, minor: number): void;
  /** lsetxattr(2): never follows a final symlink. A string value is written as UTF-8. */
  lsetxattr(path: string, name: string, value: Buffer | string, flags?: number): void;
  /** lgetxattr(2): the raw value, or null when the attribute is absent (ENODATA). */
  lgetxattr(path: string, name: string): Buffer | null;
  llistxattr(path: string): string[];
  lremovexattr(path: string, name: string): void;
  mount(
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
  ): void;
  umount2(target: string, flags?: number): void;
  /** utimensat(AT_SYMLINK_NOFOLLOW) with nanosecond times since the epoch (negative before 1970). */
  lutimesNs(path: string, atimeNs: bigint, mtimeNs: bigint): void;
  /**
   * Mounts overlayfs on `target` with fsopen/fsconfig/fsmount/move_mount: one `lowerdir+` per entry
   * of `lowerDirs` (top first), so any number of long paths works. `upperDir`/`workDir` null give a
   * read-only overlay. `extraOptions` is comma-separated `key=value` or `flag` items, e.g.
   * `index=off,redirect_dir=off,metacopy=off`. The kernel's own message is appended to errors.
   */
  mountOverlay(
    lowerDirs: readonly string[],
    upperDir: string | null,
    workDir: string | null,
    target: string,
    extraOptions?: string,
  ): void;
  /**
   * openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS (plus `resolve`): `relativePath` is
   * resolved as if `root` were `/`, so `..`, absolute paths and symlinks can never leave it. `root`
   * is a directory fd or a path. `''` opens the root itself. Returns a new fd (O_CLOEXEC) that the
   * caller closes.
   */
  openInRoot(
    root: number | string,
    relativePath: string,
    flags: number,
    mode?: number,
    resolve?: number,
  ): number;
  /** syncfs(2) on the file system that holds `path`. */
  syncfs(path: string): void;
  /** syncfs(2) on a libuv pool thread; rejects with the same fs-shaped errors. */
  syncfsAsync(path: string): Promise<void>;
  /**
   * The entries of a directory (not `.`/`..`, readdir order) with their lstat figures, five per
   * entry in `stats`: mode, size, mtimeMs, ctimeMs, ino. Use `scanDirectory`.
   */
  scanDir(path: string): { names: string[]; stats: Float64Array };
  /**
   * Bytes of the regular files and symlinks below `path`, hard links counted once; unreadable or
   * vanishing entries are skipped and a missing directory is 0 (a live container's layer changes).
   */
  treeSize(path: string): number;
  /**
   * SO_PEERCRED (+ SO_PEERGROUPS) of a connected unix socket: the peer's pid, uid, gid at connect()
   * time and its supplementary groups. `fd` is the socket's descriptor (`socket._handle.fd`).
   */
  peerCredentials(fd: number): PeerCredentials;
  /**
   * A read-only idmapped bind mount of `source` on `target`: file owners are shown through the user
   * namespace `usernsFd` (an open `/proc/<pid>/ns/user`), as userns-remapped containers need.
   */
  mountIdmapped(source: string, target: string, usernsFd: number): void;
  /** pipe2(O_CLOEXEC): [readFd, writeFd]. */
  pipeCloexec(): [number, number];
  /**
   * posix_spawn (vfork-like: the daemon's memory is not copied) of `file` with `argv` (argv[0]
   * included) and `env` (`K=V`) in `cwd`, in a new session, default signal dispositions; the child's
   * fd i is `fds[i]` (-1: /dev/null). Returns the pid; the caller reaps it with `reapChild`.
   */
  spawnDetached(file: string, argv: string[], env: string[], cwd: string, fds: number[]): number;
  /** waitpid(WNOHANG): the exit status (128 + signal when killed), or -1 while the child runs. */
  reapChild(pid: number): number;
  /** umount2 on libuv's thread pool (an overlay's last unmount syncs its upper file system). */
  umount2Async(target: string, flags?: number): Promise<void>;
  /**
   * mallopt(M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD), in bytes; 0 leaves a setting alone.
   * Keeps freed heap memory for reuse instead of returning it to the kernel and faulting it back.
   */
  tuneMalloc(trimThreshold: number, topPad: number, mmapThreshold: number): void;
  /** A running SHA-256/512 (node's OpenSSL) whose updates run on a libuv pool thread. */
  digestCreate(algorithm: 'sha256' | 'sha512'): DigestHandle;
  /** Adds `data`; one update at a time per handle (a second one throws ERR_INVALID_STATE). */
  digestUpdateAsync(handle: DigestHandle, data: Buffer): Promise<void>;
  /** The digest in lowercase hex; the handle takes no more updates. */
  digestFinal(handle: DigestHandle): string;
  /** A Buffer of `size` bytes at a 4096-aligned address, as O_DIRECT reads and writes need. */
  alignedBuffer(size: number): Buffer;
  /**
   * Reads `length` bytes of a request body from (a dup of) `socketFd` on a thread of its own, after
   * `prefix` (the bytes Node already read), hashing them into `digest` and writing them at `offset`:
   * aligned whole blocks through `directFd` (O_DIRECT; -1 for none), the rest through `fileFd`.
   * Resolves to the bytes written; a non-zero `cancel[0]` stops it. A `length` of -1 reads a chunked
   * body to its end, decoding the framing (of `prefix` too). The error of a failure carries
   * `received`, the bytes that were written anyway (ECONNRESET: the body ended early; ETIMEDOUT:
   * nothing arrived for `idleMs`; ECANCELED; EPROTO: a malformed chunked coding).
   */
  receiveToFile(
    socketFd: number,
    fileFd: number,
    directFd: number,
    offset: number,
    prefix: Buffer,
    length: number,
    digest: DigestHandle | null,
    idleMs: number,
    cancel: Int32Array,
  ): Promise<number>;
  /**
   * sendfile(2) of `length` bytes from `offset` of `fileFd` into (a dup of) `socketFd`, on a thread of
   * its own; resolves to the bytes sent. A non-zero `cancel[0]` stops it; the error of a failure
   * carries `sent` (EPIPE/ECONNRESET: the peer went away; EIO: the file is shorter; ETIMEDOUT).
   */
  sendFileToSocket(
    socketFd: number,
    fileFd: number,
    offset: number,
    length: number,
    idleMs: number,
    cancel: Int32Array,
  ): Promise<number>;
  readonly constants: Readonly<Record<NativeConstantName, number>>;
}

/** The repository root: the nearest directory above this module holding a package.json. */
function findRepositoryRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`strata_native: no package.json above ${start}`);
    dir = parent;
  }
}

function loadNative(): StrataNative {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const root = findRepositoryRoot(here);
  const file = path.join(root, 'src', 'native', 'build', 'Release', 'strata_native.node');
  if (!fs.existsSync(file)) {
    throw new Error(`strata_native: ${file} is missing; build it with \`node-gyp rebuild -C src/native\``);
  }
  const require = createRequire(import.meta.url);
  return require(file) as StrataNative;
}

const native = loadNative();

export const mknod = native.mknod;
export const lsetxattr = native.lsetxattr;
export const lgetxattr = native.lgetxattr;
export const llistxattr = native.llistxattr;
export const lremovexattr = native.lremovexattr;
export const mount = native.mount;
export const umount2 = native.umount2;
export const lutimesNs = native.lutimesNs;
export const mountOverlay = native.mountOverlay;
export const openInRoot = native.openInRoot;
export const syncfs = native.syncfs;
export const syncfsAsync = native.syncfsAsync;
export const treeSize = native.treeSize;
export const peerCredentials = native.peerCredentials;
export const mountIdmapped = native.mountIdmapped;
export const pipeCloexec = native.pipeCloexec;
export const spawnDetachedProcess = native.spawnDetached;
export const reapChild = native.reapChild;
export const umount2Async = native.umount2Async;
/** Undefined on an addon built before blobio.c existed; callers treat them as optimisations. */
export const tuneMalloc: StrataNative['tuneMalloc'] | undefined = native.tuneMalloc;
export const digestCreate: StrataNative['digestCreate'] | undefined = native.digestCreate;
export const digestUpdateAsync: StrataNative['digestUpdateAsync'] | undefined = native.digestUpdateAsync;
export const digestFinal: StrataNative['digestFinal'] | undefined = native.digestFinal;
export const alignedBuffer: StrataNative['alignedBuffer'] | undefined = native.alignedBuffer;
export const receiveToFile: StrataNative['receiveToFile'] | undefined = native.receiveToFile;
export const sendFileToSocket: StrataNative['sendFileToSocket'] | undefined = native.sendFileToSocket;
export const constants = native.constants;

/** One directory entry as `scanDirectory` gives it: the lstat figures, as in Node's fs.Stats. */
export interface ScannedEntry {
  name: string;
  mode: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  ino: number;
}

/**
 * The entries of `dir` with their lstat figures, from one addon call (fstatat relative to the open
 * directory): much cheaper than readdirSync plus an lstatSync per entry for thousands of files.
 */
export function scanDirectory(dir: string): ScannedEntry[] {
  const { names, stats } = native.scanDir(dir);
  const out: ScannedEntry[] = new Array(names.length);
  for (let i = 0; i < names.length; i++) {
    const f = i * 5;
    out[i] = {
      name: names[i],
      mode: stats[f],
      size: stats[f + 1],
      mtimeMs: stats[f + 2],
      ctimeMs: stats[f + 3],
      ino: stats[f + 4],
    };
  }
  return out;
}

/** True when `err` is an addon (or fs) error with the given code. */
export function isNativeError(err: unknown, code?: string): err is NativeError {
  return (
    err instanceof Error &&
    typeof (err as Partial<NativeError>).code === 'string' &&
    (code === undefined || (err as NativeError).code === code)
  );
}
