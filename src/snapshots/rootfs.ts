import * as fs from 'node:fs';
import { isErrnoCode } from '../common/errors.js';
import { constants as native, openInRoot } from '../native/index.js';

/**
 * Safe path operations inside a container root that may be changing under us (a running
 * container can swap a directory for a symlink to `/` at any moment).
 *
 * Every lookup goes through openat2(RESOLVE_IN_ROOT) (the kernel treats the root as `/`, as a
 * chroot would), and every change is made on a single name inside an already-open directory fd,
 * addressed as `/proc/self/fd/<dirfd>/<name>`: the kernel jumps straight to the open directory, so
 * only `name` is looked up, and the calls used on it (lstat, mkdir, unlink, symlink, link, mknod,
 * open with O_NOFOLLOW|O_EXCL, lchown, l*xattr, utimensat(AT_SYMLINK_NOFOLLOW)) never follow a
 * final symlink.
 */

export const PATH_DIR = native.O_PATH | native.O_DIRECTORY;
export const READ_DIR = native.O_RDONLY | native.O_DIRECTORY;

/** `/proc/self/fd/<fd>` or `/proc/self/fd/<fd>/<name>` (name: one component, never `..`). */
export function fdPath(fd: number, name?: string): string {
  return name === undefined || name === '' ? `/proc/self/fd/${fd}` : `/proc/self/fd/${fd}/${name}`;
}

export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // already closed
  }
}

/** Splits a symlink-free container path ('/a/b') into its components. */
export function pathComponents(containerPath: string): string[] {
  return containerPath.split('/').filter((c) => c !== '' && c !== '.');
}

/**
 * Lexically cleans `name` (an archive path) relative to a base: `.` and empty parts dropped, `..`
 * pops. Returns null when it would climb above the base. A leading `/` means the base itself.
 */
export function cleanRelative(name: string): string[] | null {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0) return null;
      parts.pop();
    } else {
      parts.push(part);
    }
  }
  return parts;
}

/** An open container root. Close it when done. */
export class ContainerRoot {
  readonly fd: number;

  constructor(readonly dir: string) {
    this.fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  }

  close(): void {
    closeQuietly(this.fd);
  }

  /** Opens a container path, resolving every symlink inside the root. */
  open(containerPath: string, flags: number, mode = 0): number {
    return openInRoot(this.fd, containerPath.replace(/^\/+/, ''), flags, mode);
  }

  /**
   * Resolves symlinks in `containerPath` within the root, like dockerd's FollowSymlinkInScope: the
   * result is a symlink-free absolute container path. Components that do not exist are kept as
   * written, so a dangling symlink still resolves to where it points.
   */
  resolve(containerPath: string): string {
    const pending = containerPath.split('/').reverse();
    const resolved: string[] = [];
    let hops = 0;
    let dirFd = this.open('', PATH_DIR);
    try {
      while (pending.length > 0) {
        const part = pending.pop()!;
        if (part === '' || part === '.') continue;
        if (part === '..') {
          resolved.pop();
          if (dirFd >= 0) closeQuietly(dirFd);
          dirFd = this.tryOpenDir(resolved.join('/'));
          continue;
        }
        const st = dirFd < 0 ? undefined : fs.lstatSync(fdPath(dirFd, part), { throwIfNoEntry: false });
        if (st?.isSymbolicLink()) {
          if (++hops > 255)
            throw Object.assign(new Error(`too many symlinks in ${containerPath}`), { code: 'ELOOP' });
          const target = fs.readlinkSync(fdPath(dirFd, part));
          pending.push(...target.split('/').reverse());
          if (target.startsWith('/')) {
            resolved.length = 0;
            closeQuietly(dirFd);
            dirFd = this.open('', PATH_DIR);
          }
          continue;
        }
        resolved.push(part);
        const next = st?.isDirectory() === true ? openInRoot(dirFd, part, PATH_DIR | native.O_NOFOLLOW) : -1; // -1: lexical from here on
        if (dirFd >= 0) closeQuietly(dirFd);
        dirFd = next;
      }
    } finally {
      if (dirFd >= 0) closeQuietly(dirFd);
    }
    return `/${resolved.join('/')}`;
  }

  private tryOpenDir(containerPath: string): number {
    try {
      return this.open(containerPath, PATH_DIR);
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return -1;
      throw err;
    }
  }

  /**
   * Opens the directory `containerPath` (O_PATH), creating missing components as root-owned 0755
   * directories, as dockerd does for the parents of extracted entries.
   */
  openOrCreateDir(containerPath: string): number {
    try {
      return this.open(containerPath, PATH_DIR);
    } catch (err) {
      if (!isErrnoCode(err, 'ENOENT')) throw err;
    }
    let fd = this.open('', PATH_DIR);
    const done: string[] = [];
    try {
      for (const part of pathComponents(containerPath)) {
        done.push(part);
        let next: number;
        try {
          next = this.open(done.join('/'), PATH_DIR);
        } catch (err) {
          if (!isErrnoCode(err, 'ENOENT')) throw err;
          try {
            fs.mkdirSync(fdPath(fd, part), 0o755);
          } catch (mkdirErr) {
            if (!isErrnoCode(mkdirErr, 'EEXIST')) throw mkdirErr;
          }
          next = this.open(done.join('/'), PATH_DIR);
        }
        closeQuietly(fd);
        fd = next;
      }
      return fd;
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }
}

/**
 * Removes `name` inside the open directory `parentFd`, recursively, without ever following a
 * symlink: each directory is opened with O_NOFOLLOW relative to its already-open parent.
 */
export function removeTreeAt(parentFd: number, name: string): void {
  const st = fs.lstatSync(fdPath(parentFd, name), { throwIfNoEntry: false });
  if (!st) return;
  if (!st.isDirectory()) {
    fs.unlinkSync(fdPath(parentFd, name));
    return;
  }
  let dirFd: number;
  try {
    dirFd = openInRoot(parentFd, name, READ_DIR | native.O_NOFOLLOW);
  } catch (err) {
    // Swapped for a symlink or a file since the lstat: remove that instead.
    if (isErrnoCode(err, 'ELOOP') || isErrnoCode(err, 'ENOTDIR')) {
      fs.unlinkSync(fdPath(parentFd, name));
      return;
    }
    throw err;
  }
  try {
    for (const child of fs.readdirSync(fdPath(dirFd))) removeTreeAt(dirFd, child);
  } finally {
    closeQuietly(dirFd);
  }
  fs.rmdirSync(fdPath(parentFd, name));
}
