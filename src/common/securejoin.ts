import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgument } from './errors.js';

/**
 * Resolves `unsafePath` inside `root` as if `root` were `/`: `..` stops at the root and symlinks
 * (absolute or relative) are followed relative to the root, so the result never leaves it. The final
 * component is not required to exist. Only for reads by the daemon and for paths it then opens with
 * O_NOFOLLOW; a container changing its tree concurrently can race this, so writes into a running
 * container go through openat2(RESOLVE_IN_ROOT) instead.
 */
export function secureJoin(root: string, unsafePath: string, followFinal = true): string {
  const parts = unsafePath.split('/').filter((p) => p !== '' && p !== '.');
  const resolved: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const part = parts.shift()!;
    if (part === '..') {
      resolved.pop();
      continue;
    }
    const candidate = path.join(root, ...resolved, part);
    let st: fs.Stats | null = null;
    try {
      st = fs.lstatSync(candidate);
    } catch {
      st = null;
    }
    if (st?.isSymbolicLink() && (followFinal || parts.length > 0)) {
      if (++hops > 40) throw new InvalidArgument(`too many levels of symbolic links: ${unsafePath}`);
      const target = fs.readlinkSync(candidate);
      if (target.startsWith('/')) resolved.length = 0;
      parts.unshift(...target.split('/').filter((p) => p !== '' && p !== '.'));
      continue;
    }
    resolved.push(part);
  }
  return path.join(root, ...resolved);
}

/** Reads a small file inside a root, symlinks resolved within it; null when absent. */
export function readFileInRoot(root: string, unsafePath: string, limit = 1 << 20): string | null {
  try {
    const p = secureJoin(root, unsafePath);
    const fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const st = fs.fstatSync(fd);
      if (!st.isFile() || st.size > limit) return null;
      const buf = Buffer.alloc(st.size);
      fs.readSync(fd, buf, 0, st.size, 0);
      return buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}
