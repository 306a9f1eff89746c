import { InvalidArgument } from '../common/errors.js';

/**
 * Key paths and the file names keys and values are stored under.
 *
 * A key path is a root key and a list of key names: `HKLM\Software\Acme\App`. Root keys are written
 * short (`HKLM`) or long (`HKEY_LOCAL_MACHINE`), in any case; reg.exe and .reg files print the long
 * form. Names compare case-insensitively (simple Unicode upper-case folding, as Windows does) and
 * keep the case they were created with.
 *
 * On disk (below `HIVE_DIR` in the container's root file system):
 *  - a root key is a directory named by its short form: `HKLM`, `HKCU`, `HKCR`, `HKU`, `HKCC`;
 *  - a key is a directory named by its name, with `%`, `/` and a leading `.` or `@` written as
 *    `%XX` (UTF-8 bytes, upper-case hex): `Acme App`, `50%25 done`, `%2Etxt`;
 *  - a value is a regular file named `@` followed by its name, with `%` and `/` written as `%XX`:
 *    `@Version`, `@` (the default value), `@a%2Fb` (the value `a/b`);
 *  - names beginning with `.` are not part of the hive (temporary files for atomic writes), nor is
 *    any other kind of file, nor a name that is not the exact encoding of some name (`Acme%41`).
 *
 * Refused: empty key names, `.` and `..` as key names, NUL and other control characters in any name,
 * key names over 255 characters, and names whose encoding exceeds 255 bytes (the file-name limit),
 * key paths deeper than 512 levels (Windows' limit) or longer than 3072 bytes once encoded.
 */

/** Where the hive lives inside a container's root file system. */
export const HIVE_DIR = '/.strata/hive';
/** `HIVE_DIR` as path components, relative to the root. */
export const HIVE_DIR_COMPONENTS: readonly string[] = ['.strata', 'hive'];

export const MAX_KEY_NAME_CHARS = 255;
export const MAX_FILE_NAME_BYTES = 255;
export const MAX_KEY_DEPTH = 512;
export const MAX_KEY_PATH_BYTES = 3072;

export const ROOT_KEYS = {
  HKLM: 'HKEY_LOCAL_MACHINE',
  HKCU: 'HKEY_CURRENT_USER',
  HKCR: 'HKEY_CLASSES_ROOT',
  HKU: 'HKEY_USERS',
  HKCC: 'HKEY_CURRENT_CONFIG',
} as const;

export type RootKey = keyof typeof ROOT_KEYS;

/** A parsed, validated key path. `names` are as the caller wrote them (case not yet resolved). */
export interface KeyPath {
  root: RootKey;
  names: string[];
}

/** `HKEY_LOCAL_MACHINE\Software\Acme`: the form reg.exe and .reg files show. */
export function formatKeyPath(root: RootKey, names: readonly string[]): string {
  return [ROOT_KEYS[root], ...names].join('\\');
}

export function parseRootKey(text: string): RootKey | null {
  const upper = text.toUpperCase();
  for (const [short, long] of Object.entries(ROOT_KEYS) as [RootKey, string][]) {
    if (upper === short || upper === long) return short;
  }
  return null;
}

/**
 * Parses `HKLM\Software\Acme` (a trailing `\` is allowed, as reg.exe allows it). Throws
 * InvalidArgument naming the problem.
 */
export function parseKeyPath(text: string): KeyPath {
  if (text.includes('\0')) throw new InvalidArgument('invalid key path: it contains a NUL character');
  if (text.startsWith('\\\\')) {
    throw new InvalidArgument(`invalid key path "${text}": remote registries are not supported`);
  }
  const trimmed = text.replace(/\\+$/, '');
  if (trimmed === '') throw new InvalidArgument('invalid key path: it is empty');
  const [first, ...names] = trimmed.split('\\');
  const root = parseRootKey(first);
  if (root === null) {
    throw new InvalidArgument(
      `invalid key path "${text}": unknown root key "${first}" (use HKLM, HKCU, HKCR, HKU or HKCC)`,
    );
  }
  if (names.length > MAX_KEY_DEPTH) {
    throw new InvalidArgument(`invalid key path: deeper than ${MAX_KEY_DEPTH} levels`);
  }
  let encodedBytes = 0;
  for (const name of names) {
    checkKeyName(name);
    encodedBytes += Buffer.byteLength(encodeKeyName(name)) + 1;
  }
  if (encodedBytes > MAX_KEY_PATH_BYTES) {
    throw new InvalidArgument(`invalid key path: longer than ${MAX_KEY_PATH_BYTES} bytes once encoded`);
  }
  return { root, names };
}

const CONTROL = /[\u0000-\u001f\u007f]/;

function describe(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
}

/** Throws unless `name` can be a key name. */
export function checkKeyName(name: string): void {
  if (name === '') throw new InvalidArgument('invalid key path: empty key name (two backslashes in a row)');
  if (name === '.' || name === '..') throw new InvalidArgument(`invalid key name "${name}"`);
  if (name.includes('\0')) throw new InvalidArgument('invalid key name: it contains a NUL character');
  if (CONTROL.test(name)) {
    throw new InvalidArgument(`invalid key name ${describe(name)}: control characters are not allowed`);
  }
  if (name.length > MAX_KEY_NAME_CHARS) {
    throw new InvalidArgument(
      `invalid key name ${describe(name)}: longer than ${MAX_KEY_NAME_CHARS} characters`,
    );
  }
  if (Buffer.byteLength(encodeKeyName(name)) > MAX_FILE_NAME_BYTES) {
    throw new InvalidArgument(
      `invalid key name ${describe(name)}: longer than ${MAX_FILE_NAME_BYTES} bytes once encoded`,
    );
  }
}

/** Throws unless `name` can be a value name (`''` is the default value). */
export function checkValueName(name: string): void {
  if (name.includes('\0')) throw new InvalidArgument('invalid value name: it contains a NUL character');
  if (CONTROL.test(name)) {
    throw new InvalidArgument(`invalid value name ${describe(name)}: control characters are not allowed`);
  }
  if (Buffer.byteLength(valueFileName(name)) > MAX_FILE_NAME_BYTES) {
    throw new InvalidArgument(
      `invalid value name ${describe(name)}: longer than ${MAX_FILE_NAME_BYTES - 1} bytes once encoded`,
    );
  }
}

function percent(ch: string): string {
  return [...Buffer.from(ch)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

function encodeName(name: string, escapeLeading: boolean): string {
  let out = '';
  let first = true;
  for (const ch of name) {
    if (ch === '%' || ch === '/' || (first && escapeLeading && (ch === '.' || ch === '@')))
      out += percent(ch);
    else out += ch;
    first = false;
  }
  return out;
}

function decodeName(encoded: string): string | null {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return null;
  }
}

export function encodeKeyName(name: string): string {
  return encodeName(name, true);
}

/** The key name a directory entry stands for, or null when the entry is not a key's encoding. */
export function decodeKeyName(fileName: string): string | null {
  if (fileName.startsWith('.') || fileName.startsWith('@')) return null;
  const name = decodeName(fileName);
  if (name === null || encodeKeyName(name) !== fileName) return null;
  if (name === '' || name === '.' || name === '..' || name.includes('\\') || CONTROL.test(name)) return null;
  return name;
}

export function valueFileName(name: string): string {
  return `@${encodeName(name, false)}`;
}

/** The value name a file stands for, or null when the file is not a value's encoding. */
export function decodeValueFileName(fileName: string): string | null {
  if (!fileName.startsWith('@')) return null;
  const name = decodeName(fileName.slice(1));
  if (name === null || valueFileName(name) !== fileName || CONTROL.test(name)) return null;
  return name;
}

/**
 * The form two names are compared in: each character upper-cased when that gives one character, as
 * Windows' simple case mapping does (so `ß` does not match `SS`).
 */
export function foldName(name: string): string {
  let out = '';
  for (const ch of name) {
    const upper = ch.toUpperCase();
    out += [...upper].length === 1 ? upper : ch;
  }
  return out;
}

export function sameName(a: string, b: string): boolean {
  return a === b || foldName(a) === foldName(b);
}

/** Sorts names case-insensitively (then bytewise, so the order is total), as reg.exe lists keys. */
export function compareNames(a: string, b: string): number {
  const fa = foldName(a);
  const fb = foldName(b);
  if (fa !== fb) return fa < fb ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}
