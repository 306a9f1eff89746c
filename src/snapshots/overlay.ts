import * as fs from 'node:fs';
import * as path from 'node:path';
import { isErrnoCode } from '../common/errors.js';
import { constants, isNativeError, mountOverlay, umount2, umount2Async } from '../native/index.js';

/**
 * Overlay mounts for container roots, through the addon's new-mount-API path (one `lowerdir+` per
 * layer, so chains of any length and any path length mount).
 *
 * `index=off,redirect_dir=off,metacopy=off` keep the upper dir a plain diff that `pack.ts` can turn
 * back into a layer: no hard-link index, no renamed-directory redirects, no metadata-only copy-ups.
 * They are this kernel's defaults too, but passed explicitly so a host setting cannot change them.
 */
export const OVERLAY_OPTIONS = 'index=off,redirect_dir=off,metacopy=off';

/** Mounts `lowerDirs` (top first) + `upperDir`/`workDir` on `target`. */
export function mountContainerOverlay(
  lowerDirs: readonly string[],
  upperDir: string,
  workDir: string,
  target: string,
): void {
  if (lowerDirs.length === 0) throw new Error('mountContainerOverlay: at least one lower dir is needed');
  mountOverlay(lowerDirs, upperDir, workDir, target, OVERLAY_OPTIONS);
}

/** Decodes the octal escapes (`\040` for a space) of /proc/self/mountinfo fields. */
function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** True when something is mounted exactly on `target` in this mount namespace. */
export function isMountPoint(target: string): boolean {
  const resolved = path.resolve(target);
  const mountinfo = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  for (const line of mountinfo.split('\n')) {
    const fields = line.split(' ');
    if (fields.length > 4 && unescapeMountField(fields[4]) === resolved) return true;
  }
  return false;
}

/**
 * True when a different file system is mounted on `target` than holds its parent directory. Two
 * stat calls instead of a mountinfo scan (the kernel formats every mount of the namespace for that, a
 * few ms per call on a busy host). Enough for container roots, where only overlayfs is ever mounted;
 * a bind mount from the same file system would not be seen (use `isMountPoint` for those).
 */
export function isForeignMount(target: string): boolean {
  try {
    return fs.statSync(target).dev !== fs.statSync(path.dirname(path.resolve(target))).dev;
  } catch {
    return false;
  }
}

/**
 * Unmounts everything stacked on `target`. A busy mount (a process still has its cwd inside) is
 * detached lazily, which is what `docker rm -f` needs. Not mounted is not an error. No mountinfo scan:
 * umount2 itself says EINVAL once nothing is mounted there any more.
 */
export function unmountAll(target: string): void {
  for (let attempt = 0; attempt < 32; attempt++) {
    try {
      umount2(target, constants.UMOUNT_NOFOLLOW);
    } catch (err) {
      if (isNativeError(err, 'EINVAL') || isNativeError(err, 'ENOENT') || isErrnoCode(err, 'ENOENT')) return;
      if (!isNativeError(err, 'EBUSY')) throw err;
      try {
        umount2(target, constants.MNT_DETACH | constants.UMOUNT_NOFOLLOW);
      } catch (detachErr) {
        if (isNativeError(detachErr, 'EINVAL') || isNativeError(detachErr, 'ENOENT')) return;
        throw detachErr;
      }
    }
  }
}

/**
 * `unmountAll` off the event loop: an overlay's last unmount syncs the whole upper file system
 * (ovl_sync_fs), tens of milliseconds or more while other processes write.
 */
export async function unmountAllAsync(target: string): Promise<void> {
  for (let attempt = 0; attempt < 32; attempt++) {
    try {
      await umount2Async(target, constants.UMOUNT_NOFOLLOW);
    } catch (err) {
      if (isNativeError(err, 'EINVAL') || isNativeError(err, 'ENOENT')) return;
      if (!isNativeError(err, 'EBUSY')) throw err;
      try {
        await umount2Async(target, constants.MNT_DETACH | constants.UMOUNT_NOFOLLOW);
      } catch (detachErr) {
        if (isNativeError(detachErr, 'EINVAL') || isNativeError(detachErr, 'ENOENT')) return;
        throw detachErr;
      }
    }
  }
}
