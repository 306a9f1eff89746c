import * as fs from 'node:fs';
import * as path from 'node:path';
import { isErrnoCode } from '../common/errors.js';
import { constants, isNativeError, mountOverlay, umount2 } from '../native/index.js';

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
 * Unmounts everything stacked on `target`. A busy mount (a process still has its cwd inside) is
 * detached lazily, which is what `docker rm -f` needs. Not mounted is not an error.
 */
export function unmountAll(target: string): void {
  for (let attempt = 0; attempt < 32 && isMountPoint(target); attempt++) {
    try {
      umount2(target, constants.UMOUNT_NOFOLLOW);
    } catch (err) {
      if (isNativeError(err, 'EBUSY')) umount2(target, constants.MNT_DETACH | constants.UMOUNT_NOFOLLOW);
      else if (isNativeError(err, 'EINVAL') || isErrnoCode(err, 'ENOENT')) return;
      else throw err;
    }
  }
}
