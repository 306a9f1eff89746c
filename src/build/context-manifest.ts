import { InvalidArgument } from '../common/errors.js';

/**
 * A build context described instead of sent (Strata extension, `strata build`): every entry the
 * context tar would hold, in the same form — path, type, mode, mtime in seconds, and for files the
 * size and sha256 of the content, which the daemon takes from its context store. Owners are 0:0,
 * as in the tar the CLI sends. Validated once here; everything after works on the checked form.
 */
export interface ContextManifestEntry {
  Path: string;
  Type: 'file' | 'dir' | 'symlink';
  Mode: number;
  /** Seconds since the epoch. */
  Mtime: number;
  /** Files: content length and `sha256:<hex>`. */
  Size?: number;
  Digest?: string;
  /** Symlinks: the target, kept as it is (never followed outside the context, as with the tar). */
  Linkname?: string;
}

export interface ContextManifest {
  Entries: ContextManifestEntry[];
}

export const CONTEXT_MANIFEST_MEDIA_TYPE = 'application/vnd.strata.build-context.v1+json';
/** Largest manifest body accepted. */
export const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;
const MAX_PATH = 4096;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function invalid(message: string): InvalidArgument {
  return new InvalidArgument(`invalid build context manifest: ${message}`);
}

function checkPath(value: unknown, index: number): string {
  if (typeof value !== 'string' || value === '') throw invalid(`entry ${index} has no Path`);
  const quoted = JSON.stringify(value);
  if (value.length > MAX_PATH) throw invalid(`path ${quoted.slice(0, 80)}… is too long`);
  if (value.includes('\0')) throw invalid(`path ${quoted} contains a NUL byte`);
  if (value.startsWith('/')) throw invalid(`path ${quoted} is absolute; paths are relative to the context`);
  for (const part of value.split('/')) {
    if (part === '..') throw invalid(`path ${quoted} leaves the context ("..")`);
    if (part === '' || part === '.') throw invalid(`path ${quoted} is not in clean form`);
  }
  return value;
}

function integer(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(`${what} must be an integer from ${min} to ${max}`);
  }
  return value;
}

/**
 * Checks a parsed JSON manifest: clean relative paths (no `..`, not absolute), no duplicates, nothing
 * below a symlink or a file (an entry may not be written through a link), digests of the right form.
 */
export function parseContextManifest(value: unknown): ContextManifest {
  if (typeof value !== 'object' || value === null || !Array.isArray((value as ContextManifest).Entries)) {
    throw invalid('an object with an Entries array was expected');
  }
  const raw = (value as { Entries: unknown[] }).Entries;
  const kinds = new Map<string, ContextManifestEntry['Type']>();
  const entries: ContextManifestEntry[] = [];
  raw.forEach((item, index) => {
    if (typeof item !== 'object' || item === null) throw invalid(`entry ${index} is not an object`);
    const e = item as Record<string, unknown>;
    const entryPath = checkPath(e.Path, index);
    const quoted = JSON.stringify(entryPath);
    if (kinds.has(entryPath)) throw invalid(`path ${quoted} appears twice`);
    for (let i = entryPath.indexOf('/'); i !== -1; i = entryPath.indexOf('/', i + 1)) {
      const parent = entryPath.slice(0, i);
      const kind = kinds.get(parent);
      if (kind === 'symlink') throw invalid(`path ${quoted} is below the symlink ${JSON.stringify(parent)}`);
      if (kind === 'file') throw invalid(`path ${quoted} is below the file ${JSON.stringify(parent)}`);
    }
    const type = e.Type;
    if (type !== 'file' && type !== 'dir' && type !== 'symlink') {
      throw invalid(`path ${quoted} has an unknown Type ${JSON.stringify(type)} (file, dir or symlink)`);
    }
    const entry: ContextManifestEntry = {
      Path: entryPath,
      Type: type,
      Mode: integer(e.Mode, `Mode of ${quoted}`, 0, 0o7777),
      Mtime: integer(e.Mtime, `Mtime of ${quoted}`, -(2 ** 40), 2 ** 40),
    };
    if (type === 'file') {
      entry.Size = integer(e.Size, `Size of ${quoted}`, 0, Number.MAX_SAFE_INTEGER);
      if (typeof e.Digest !== 'string' || !DIGEST.test(e.Digest)) {
        throw invalid(`file ${quoted} needs a Digest of the form sha256:<64 hex digits>`);
      }
      entry.Digest = e.Digest;
    } else if (type === 'symlink') {
      if (typeof e.Linkname !== 'string' || e.Linkname === '' || e.Linkname.includes('\0')) {
        throw invalid(`symlink ${quoted} needs a Linkname`);
      }
      entry.Linkname = e.Linkname;
    }
    kinds.set(entryPath, type);
    entries.push(entry);
  });
  return { Entries: entries };
}
