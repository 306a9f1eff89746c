import { InvalidArgument } from '../common/errors.js';

/**
 * Typed values and the three forms they take: the value file in the hive, the data argument of
 * `reg add /d`, and the JSON of the Engine API.
 *
 * Value file (what an application reads with `cat` and writes with shell redirection): the first
 * line is the type name, the rest of the file is the data; one final newline, if present, is not
 * part of the data (the daemon always writes one, so `echo` and `printf '…\n'` both work):
 *
 *   REG_SZ, REG_EXPAND_SZ  the string as UTF-8, verbatim (it may span lines; no NUL)
 *   REG_MULTI_SZ           one string per line; empty lines are skipped when read
 *   REG_DWORD              a number, decimal (written) or 0x-prefixed hex (read): 0..4294967295
 *   REG_QWORD              the same, 0..18446744073709551615
 *   REG_BINARY, REG_NONE   hex digits, two per byte (written lower-case, one line); white space
 *                          between them is ignored when read
 *
 * So `printf 'REG_DWORD\n42\n'` and `printf 'REG_MULTI_SZ\none\ntwo\n'` are complete value files.
 * The type line is read case-insensitively and may carry surrounding blanks or a `\r`.
 */

export const VALUE_TYPES = [
  'REG_SZ',
  'REG_EXPAND_SZ',
  'REG_MULTI_SZ',
  'REG_DWORD',
  'REG_QWORD',
  'REG_BINARY',
  'REG_NONE',
] as const;

export type ValueType = (typeof VALUE_TYPES)[number];

/** Windows' numbers for the types (the `N` of `hex(N):` in .reg files). */
export const TYPE_NUMBERS: Record<ValueType, number> = {
  REG_NONE: 0,
  REG_SZ: 1,
  REG_EXPAND_SZ: 2,
  REG_BINARY: 3,
  REG_DWORD: 4,
  REG_MULTI_SZ: 7,
  REG_QWORD: 11,
};

export type RegData =
  | { type: 'REG_SZ' | 'REG_EXPAND_SZ'; data: string }
  | { type: 'REG_MULTI_SZ'; data: string[] }
  | { type: 'REG_DWORD'; data: number }
  | { type: 'REG_QWORD'; data: bigint }
  | { type: 'REG_BINARY' | 'REG_NONE'; data: Buffer };

/** A named value; `name` `''` is the key's default value, shown as `(Default)`. */
export type RegValue = RegData & { name: string };

/** Windows' limit for one value's data ("1 MB, standard format"). */
export const MAX_DATA_BYTES = 1024 * 1024;
export const MAX_DWORD = 0xffffffff;
export const MAX_QWORD = (1n << 64n) - 1n;

export function parseValueType(text: string): ValueType {
  const upper = text.trim().toUpperCase();
  const found = VALUE_TYPES.find((t) => t === upper);
  if (!found) {
    throw new InvalidArgument(`unknown value type "${text}" (expected one of ${VALUE_TYPES.join(', ')})`);
  }
  return found;
}

function dataSize(value: RegData): number {
  switch (value.type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      return (value.data.length + 1) * 2;
    case 'REG_MULTI_SZ':
      return value.data.reduce((n, s) => n + (s.length + 1) * 2, 2);
    case 'REG_DWORD':
      return 4;
    case 'REG_QWORD':
      return 8;
    default:
      return value.data.length;
  }
}

/** Throws InvalidArgument unless `value` fits its type (ranges, NULs, empty strings, size). */
export function checkData(value: RegData): void {
  switch (value.type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      if (value.data.includes('\0')) throw new InvalidArgument(`${value.type} data cannot contain NUL`);
      break;
    case 'REG_MULTI_SZ':
      for (const item of value.data) {
        if (item === '') throw new InvalidArgument('REG_MULTI_SZ data cannot contain an empty string');
        if (item.includes('\0')) throw new InvalidArgument('REG_MULTI_SZ strings cannot contain NUL');
        if (item.includes('\n')) {
          throw new InvalidArgument('REG_MULTI_SZ strings cannot contain a line feed (one string per line)');
        }
      }
      break;
    case 'REG_DWORD':
      if (!Number.isInteger(value.data) || value.data < 0 || value.data > MAX_DWORD) {
        throw new InvalidArgument(`REG_DWORD data out of range (0 to 0xFFFFFFFF): ${value.data}`);
      }
      break;
    case 'REG_QWORD':
      if (value.data < 0n || value.data > MAX_QWORD) {
        throw new InvalidArgument(`REG_QWORD data out of range (0 to 0xFFFFFFFFFFFFFFFF): ${value.data}`);
      }
      break;
  }
  if (dataSize(value) > MAX_DATA_BYTES) {
    throw new InvalidArgument(`${value.type} data larger than ${MAX_DATA_BYTES} bytes`);
  }
}

/** Parses decimal or 0x-hex digits into a bigint; null when `text` is not such a number. */
function parseUnsigned(text: string): bigint | null {
  const t = text.trim();
  if (/^0x[0-9a-f]+$/i.test(t) || /^[0-9]+$/.test(t)) return BigInt(t);
  return null;
}

export function parseDword(text: string): number {
  const n = parseUnsigned(text);
  if (n === null) throw new InvalidArgument(`invalid REG_DWORD data "${text}": expected a number`);
  if (n > BigInt(MAX_DWORD))
    throw new InvalidArgument(`REG_DWORD data out of range (0 to 0xFFFFFFFF): ${text}`);
  return Number(n);
}

export function parseQword(text: string): bigint {
  const n = parseUnsigned(text);
  if (n === null) throw new InvalidArgument(`invalid REG_QWORD data "${text}": expected a number`);
  if (n > MAX_QWORD) {
    throw new InvalidArgument(`REG_QWORD data out of range (0 to 0xFFFFFFFFFFFFFFFF): ${text}`);
  }
  return n;
}

/** Hex digits (white space ignored) into bytes; an odd count gets a leading 0, as reg.exe does. */
export function parseHexBytes(text: string, type: string): Buffer {
  let digits = text.replace(/\s+/g, '');
  if (!/^[0-9a-f]*$/i.test(digits)) throw new InvalidArgument(`invalid ${type} data: expected hex digits`);
  if (digits.length % 2 === 1) digits = `0${digits}`;
  return Buffer.from(digits, 'hex');
}

// ---------------------------------------------------------------------------------------------
// Value files

export function encodeValueFile(value: RegData): Buffer {
  checkData(value);
  let body: string;
  switch (value.type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      body = value.data;
      break;
    case 'REG_MULTI_SZ':
      body = value.data.join('\n');
      break;
    case 'REG_DWORD':
    case 'REG_QWORD':
      body = value.data.toString();
      break;
    default:
      body = value.data.toString('hex');
  }
  return Buffer.from(`${value.type}\n${body}\n`);
}

/** Reads a value file; throws InvalidArgument (naming what is wrong) for a malformed one. */
export function decodeValueFile(file: Buffer): RegData {
  const text = file.toString('utf8');
  const newline = text.indexOf('\n');
  const typeLine = newline < 0 ? text : text.slice(0, newline);
  let body = newline < 0 ? '' : text.slice(newline + 1);
  if (body.endsWith('\n')) body = body.slice(0, -1);
  const type = parseValueType(typeLine);
  let value: RegData;
  switch (type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      value = { type, data: body };
      break;
    case 'REG_MULTI_SZ':
      value = { type, data: body.split('\n').filter((s) => s !== '') };
      break;
    case 'REG_DWORD':
      value = { type, data: body.trim() === '' ? 0 : parseDword(body) };
      break;
    case 'REG_QWORD':
      value = { type, data: body.trim() === '' ? 0n : parseQword(body) };
      break;
    default:
      value = { type, data: parseHexBytes(body, type) };
  }
  checkData(value);
  return value;
}

// ---------------------------------------------------------------------------------------------
// reg.exe: `/d` arguments and `reg query` output

/**
 * Parses the `/d` argument of `reg add` as reg.exe does: numbers in decimal or 0x-hex, REG_MULTI_SZ
 * strings separated by `separator` (default the two characters `\0`), REG_BINARY and REG_NONE as
 * hex digits. A missing `/d` gives an empty string, 0, no strings or no bytes.
 */
export function parseDataArgument(type: ValueType, text: string | undefined, separator = '\\0'): RegData {
  const raw = text ?? '';
  let value: RegData;
  switch (type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      value = { type, data: raw };
      break;
    case 'REG_MULTI_SZ': {
      const items = raw === '' ? [] : raw.split(separator);
      if (items.length > 0 && items.at(-1) === '') items.pop();
      value = { type, data: items };
      break;
    }
    case 'REG_DWORD':
      value = { type, data: text === undefined ? 0 : parseDword(raw) };
      break;
    case 'REG_QWORD':
      value = { type, data: text === undefined ? 0n : parseQword(raw) };
      break;
    default:
      value = { type, data: parseHexBytes(raw, type) };
  }
  checkData(value);
  return value;
}

/** The data column of `reg query`: 0x-hex numbers, upper-case hex bytes, `\0`-joined strings. */
export function formatDataForDisplay(value: RegData, separator = '\\0'): string {
  switch (value.type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      return value.data;
    case 'REG_MULTI_SZ':
      return value.data.join(separator);
    case 'REG_DWORD':
    case 'REG_QWORD':
      return `0x${value.data.toString(16)}`;
    default:
      return value.data.toString('hex').toUpperCase();
  }
}

// ---------------------------------------------------------------------------------------------
// Engine API JSON

/** `{"Name": "", "Type": "REG_DWORD", "Data": 42}` and so on. */
export interface ValueJson {
  Name: string;
  Type: ValueType;
  /** REG_SZ/REG_EXPAND_SZ: string; REG_MULTI_SZ: string[]; REG_DWORD: number; REG_QWORD: decimal
   * string (it can exceed 2^53); REG_BINARY/REG_NONE: hex string. */
  Data: string | number | string[];
}

export function valueToJson(value: RegValue): ValueJson {
  const { name, type } = value;
  switch (value.type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
    case 'REG_MULTI_SZ':
    case 'REG_DWORD':
      return { Name: name, Type: type, Data: value.data };
    case 'REG_QWORD':
      return { Name: name, Type: type, Data: value.data.toString() };
    default:
      return { Name: name, Type: type, Data: value.data.toString('hex') };
  }
}

/** Validates the JSON form of one value's data (from an API request) into RegData. */
export function dataFromJson(type: ValueType, data: unknown): RegData {
  const mismatch = (expected: string) =>
    new InvalidArgument(`${type} data must be ${expected}, got ${JSON.stringify(data)}`);
  let value: RegData;
  switch (type) {
    case 'REG_SZ':
    case 'REG_EXPAND_SZ':
      if (typeof data !== 'string') throw mismatch('a string');
      value = { type, data };
      break;
    case 'REG_MULTI_SZ':
      if (!Array.isArray(data) || !data.every((s) => typeof s === 'string'))
        throw mismatch('an array of strings');
      value = { type, data: data as string[] };
      break;
    case 'REG_DWORD':
      if (typeof data === 'number') {
        if (!Number.isInteger(data) || data < 0 || data > MAX_DWORD) {
          throw new InvalidArgument(`REG_DWORD data out of range (0 to 0xFFFFFFFF): ${data}`);
        }
        value = { type, data };
      } else if (typeof data === 'string') {
        value = { type, data: parseDword(data) };
      } else {
        throw mismatch('a number');
      }
      break;
    case 'REG_QWORD':
      if (typeof data === 'number') {
        if (!Number.isSafeInteger(data) || data < 0) {
          throw new InvalidArgument(`REG_QWORD data must be a decimal string when above 2^53: ${data}`);
        }
        value = { type, data: BigInt(data) };
      } else if (typeof data === 'string') {
        value = { type, data: parseQword(data) };
      } else {
        throw mismatch('a decimal string');
      }
      break;
    default:
      if (typeof data !== 'string') throw mismatch('a hex string');
      value = { type, data: parseHexBytes(data, type) };
  }
  checkData(value);
  return value;
}
