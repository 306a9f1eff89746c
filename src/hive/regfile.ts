import { InvalidArgument } from '../common/errors.js';
import { checkValueName, type KeyPath, parseKeyPath } from './names.js';
import { checkData, MAX_DWORD, type RegData, type RegValue, TYPE_NUMBERS } from './values.js';

/**
 * The text `.reg` format of Windows' registry editor.
 *
 * Reading accepts `Windows Registry Editor Version 5.00` (hex string data in UTF-16 LE) and
 * `REGEDIT4` (hex string data in single bytes), in a file that is UTF-16 LE with a BOM, UTF-8 (with
 * or without BOM), or otherwise Windows-1252. Lines: `[KEY]` opens a key (creating it), `[-KEY]`
 * deletes a key and everything below it, `"name"=…` or `@=…` sets a value of the last opened key and
 * `"name"=-` deletes one; `;` starts a comment. Data: `"string"` (REG_SZ, `\\` and `\"` escaped; `\n`
 * and `\r` accepted as Wine writes them), `dword:` and up to 8 hex digits, `hex:` bytes (REG_BINARY)
 * and `hex(N):` bytes for type N (0 none, 1 sz, 2 expand_sz, 3 binary, 4 dword, 7 multi_sz, b qword),
 * comma-separated and continued over lines ending in `\`. Anything else is an error naming the
 * line; the whole file is parsed before anything is applied, so a bad file changes nothing.
 *
 * Writing produces what regedit and `reg export` produce: version 5.00, UTF-16 LE with BOM, CRLF
 * line ends, one block per key followed by a blank line, REG_SZ as a quoted string (as `hex(1):`
 * when it holds a line break), REG_DWORD as `dword:%08x`, the other types as hex wrapped before
 * column 80 with `,\` and two spaces of indent.
 */

export type RegOperation =
  | { op: 'createKey'; key: KeyPath; line: number }
  | { op: 'deleteKey'; key: KeyPath; line: number }
  | { op: 'setValue'; key: KeyPath; value: RegValue; line: number }
  | { op: 'deleteValue'; key: KeyPath; name: string; line: number };

/** One key of an export: its full path (`HKEY_…\…`) and its values, in output order. */
export interface RegFileKey {
  path: string;
  values: RegValue[];
}

export const REG_HEADER_V5 = 'Windows Registry Editor Version 5.00';
export const REG_HEADER_V4 = 'REGEDIT4';

/** Decodes the bytes of a .reg file by its BOM (UTF-16 LE, UTF-8) or, without one, as UTF-8 or ANSI. */
export function decodeRegText(bytes: Buffer): string {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe) {
    if (bytes.length % 2 !== 0) throw new InvalidArgument('invalid .reg file: truncated UTF-16 text');
    return bytes.subarray(2).toString('utf16le');
  }
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) {
    throw new InvalidArgument(
      'invalid .reg file: UTF-16 big-endian is not supported (regedit writes little-endian)',
    );
  }
  const body =
    bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf
      ? bytes.subarray(3)
      : bytes;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(body);
  } catch {
    return new TextDecoder('windows-1252').decode(body);
  }
}

class RegSyntaxError extends InvalidArgument {
  constructor(line: number, message: string) {
    super(`invalid .reg file: line ${line}: ${message}`);
  }
}

/** Parses a whole .reg file into operations, or throws InvalidArgument naming the first bad line. */
export function parseRegFile(bytes: Buffer): RegOperation[] {
  const lines = decodeRegText(bytes).split(/\r\n|\n|\r/);
  let index = 0;
  while (index < lines.length && lines[index].trim() === '') index++;
  const header = (lines[index] ?? '').trim();
  let unicode: boolean;
  if (header === REG_HEADER_V5) unicode = true;
  else if (header === REG_HEADER_V4) unicode = false;
  else {
    throw new InvalidArgument(
      `invalid .reg file: the first line must be "${REG_HEADER_V5}" or "${REG_HEADER_V4}"`,
    );
  }
  index++;

  const ops: RegOperation[] = [];
  let current: KeyPath | null = null;
  while (index < lines.length) {
    const lineNo = index + 1;
    const text = lines[index].trimStart();
    index++;
    if (text === '' || text.startsWith(';') || text.startsWith('#')) continue;
    const keyPath = (inner: string): KeyPath => {
      try {
        return parseKeyPath(inner);
      } catch (err) {
        throw new RegSyntaxError(lineNo, (err as Error).message);
      }
    };
    if (text.startsWith('[')) {
      const close = text.lastIndexOf(']');
      if (close < 0) throw new RegSyntaxError(lineNo, 'key line has no closing "]"');
      if (!isTrailingEmpty(text.slice(close + 1))) {
        throw new RegSyntaxError(lineNo, 'unexpected text after "]"');
      }
      const inner = text.slice(1, close);
      if (inner.startsWith('-')) {
        const key = keyPath(inner.slice(1));
        if (key.names.length === 0) throw new RegSyntaxError(lineNo, 'a root key cannot be deleted');
        ops.push({ op: 'deleteKey', key, line: lineNo });
        current = null;
      } else {
        current = keyPath(inner);
        ops.push({ op: 'createKey', key: current, line: lineNo });
      }
      continue;
    }
    if (!text.startsWith('@') && !text.startsWith('"')) {
      throw new RegSyntaxError(
        lineNo,
        `expected "[KEY]", "\\"name\\"=…" or "@=…", got ${JSON.stringify(clip(text))}`,
      );
    }
    if (current === null) {
      throw new RegSyntaxError(lineNo, 'value outside a key (no "[KEY]" line before it, or after "[-KEY]")');
    }
    let name: string;
    let rest: string;
    if (text.startsWith('@')) {
      name = '';
      rest = text.slice(1);
    } else {
      const quoted = readQuoted(text, 1);
      if (quoted === null) throw new RegSyntaxError(lineNo, 'value name has no closing quote');
      name = quoted.text;
      rest = text.slice(quoted.end);
    }
    try {
      checkValueName(name);
    } catch (err) {
      throw new RegSyntaxError(lineNo, (err as Error).message);
    }
    rest = rest.trimStart();
    if (!rest.startsWith('=')) throw new RegSyntaxError(lineNo, 'expected "=" after the value name');
    rest = rest.slice(1).trimStart();

    if (rest.startsWith('-') && isTrailingEmpty(rest.slice(1))) {
      ops.push({ op: 'deleteValue', key: current, name, line: lineNo });
      continue;
    }
    let data: RegData;
    if (rest.startsWith('"')) {
      const quoted = readQuoted(rest, 1);
      if (quoted === null) throw new RegSyntaxError(lineNo, 'string data has no closing quote');
      if (!isTrailingEmpty(rest.slice(quoted.end))) {
        throw new RegSyntaxError(lineNo, 'unexpected text after the closing quote');
      }
      data = { type: 'REG_SZ', data: quoted.text };
    } else if (/^dword:/i.test(rest)) {
      const m = /^dword:([0-9a-f]*)(.*)$/i.exec(rest)!;
      if (m[1] === '' || !isTrailingEmpty(m[2]))
        throw new RegSyntaxError(lineNo, 'dword: needs 1 to 8 hex digits');
      if (m[1].length > 8) {
        throw new RegSyntaxError(lineNo, `REG_DWORD data out of range (0 to 0xFFFFFFFF): 0x${m[1]}`);
      }
      data = { type: 'REG_DWORD', data: Number.parseInt(m[1], 16) };
    } else {
      const m = /^hex(?:\(([0-9a-f]+)\))?:(.*)$/i.exec(rest);
      if (!m) throw new RegSyntaxError(lineNo, `unrecognised data ${JSON.stringify(clip(rest))}`);
      let hexText = m[2];
      // Continuation lines: `…,\` goes on with the next line.
      for (;;) {
        const withoutComment = stripComment(hexText).trimEnd();
        if (!withoutComment.endsWith('\\')) {
          hexText = withoutComment;
          break;
        }
        if (index >= lines.length || lines[index].trim() === '') {
          throw new RegSyntaxError(
            lineNo,
            'hex data continues past the end of the value (nothing after "\\")',
          );
        }
        hexText = withoutComment.slice(0, -1) + lines[index].trim();
        index++;
      }
      const bytes = parseHexList(hexText, lineNo);
      const typeNumber = m[1] === undefined ? TYPE_NUMBERS.REG_BINARY : Number.parseInt(m[1], 16);
      data = hexToData(typeNumber, m[1] ?? '', bytes, unicode, lineNo);
    }
    try {
      checkData(data);
    } catch (err) {
      throw new RegSyntaxError(lineNo, (err as Error).message);
    }
    ops.push({ op: 'setValue', key: current, value: { ...data, name }, line: lineNo });
  }
  return ops;
}

function clip(text: string): string {
  return text.length > 60 ? `${text.slice(0, 60)}…` : text;
}

/** True when `text` holds nothing but blanks and perhaps a `;` comment. */
function isTrailingEmpty(text: string): boolean {
  const t = text.trimStart();
  return t === '' || t.startsWith(';');
}

function stripComment(hexText: string): string {
  const at = hexText.indexOf(';');
  return at < 0 ? hexText : hexText.slice(0, at);
}

/** Reads a quoted string starting after the opening quote at `start - 1`; null without a closing quote. */
function readQuoted(text: string, start: number): { text: string; end: number } | null {
  let out = '';
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') return { text: out, end: i + 1 };
    if (ch === '\\' && i + 1 < text.length) {
      const next = text[++i];
      out += next === 'n' ? '\n' : next === 'r' ? '\r' : next;
    } else {
      out += ch;
    }
  }
  return null;
}

function parseHexList(text: string, lineNo: number): Buffer {
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length > 0 && parts.at(-1) === '') parts.pop();
  const bytes = Buffer.alloc(parts.length);
  parts.forEach((part, i) => {
    if (!/^[0-9a-f]{1,2}$/i.test(part)) {
      throw new RegSyntaxError(lineNo, `invalid hex byte ${JSON.stringify(clip(part))}`);
    }
    bytes[i] = Number.parseInt(part, 16);
  });
  return bytes;
}

function decodeStringBytes(bytes: Buffer, unicode: boolean, lineNo: number): string {
  if (!unicode) return new TextDecoder('windows-1252').decode(bytes);
  if (bytes.length % 2 !== 0) {
    throw new RegSyntaxError(lineNo, 'string data in hex must be UTF-16 LE: an even number of bytes');
  }
  return bytes.toString('utf16le');
}

function hexToData(
  typeNumber: number,
  typeText: string,
  bytes: Buffer,
  unicode: boolean,
  lineNo: number,
): RegData {
  switch (typeNumber) {
    case TYPE_NUMBERS.REG_NONE:
      return { type: 'REG_NONE', data: bytes };
    case TYPE_NUMBERS.REG_BINARY:
      return { type: 'REG_BINARY', data: bytes };
    case TYPE_NUMBERS.REG_SZ:
    case TYPE_NUMBERS.REG_EXPAND_SZ: {
      const text = decodeStringBytes(bytes, unicode, lineNo);
      const end = text.indexOf('\0');
      return {
        type: typeNumber === TYPE_NUMBERS.REG_SZ ? 'REG_SZ' : 'REG_EXPAND_SZ',
        data: end < 0 ? text : text.slice(0, end),
      };
    }
    case TYPE_NUMBERS.REG_MULTI_SZ: {
      const items: string[] = [];
      for (const item of decodeStringBytes(bytes, unicode, lineNo).split('\0')) {
        if (item === '') break;
        items.push(item);
      }
      return { type: 'REG_MULTI_SZ', data: items };
    }
    case TYPE_NUMBERS.REG_DWORD:
      if (bytes.length !== 4)
        throw new RegSyntaxError(lineNo, `hex(4) (REG_DWORD) data must be 4 bytes, got ${bytes.length}`);
      return { type: 'REG_DWORD', data: bytes.readUInt32LE(0) };
    case TYPE_NUMBERS.REG_QWORD:
      if (bytes.length !== 8)
        throw new RegSyntaxError(lineNo, `hex(b) (REG_QWORD) data must be 8 bytes, got ${bytes.length}`);
      return { type: 'REG_QWORD', data: bytes.readBigUInt64LE(0) };
    default:
      throw new RegSyntaxError(
        lineNo,
        `unsupported value type hex(${typeText}) (supported: hex, hex(0), hex(1), hex(2), hex(3), hex(4), hex(7), hex(b))`,
      );
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

/** regedit breaks hex lines once they reach this many characters. */
const HEX_LINE_LIMIT = 77;

function escapeString(text: string): string {
  return text.replace(/[\\"]/g, (c) => `\\${c}`);
}

function utf16z(text: string): Buffer {
  return Buffer.from(`${text}\0`, 'utf16le');
}

function hexLine(prefix: string, tag: string, bytes: Buffer): string {
  let out = prefix + tag;
  let lineLength = out.length;
  for (let i = 0; i < bytes.length; i++) {
    out += bytes[i].toString(16).padStart(2, '0');
    if (i === bytes.length - 1) break;
    out += ',';
    lineLength += 3;
    if (lineLength >= HEX_LINE_LIMIT) {
      out += '\\\r\n  ';
      lineLength = 2;
    }
  }
  return out;
}

export function formatValueLine(value: RegValue): string {
  const prefix = value.name === '' ? '@=' : `"${escapeString(value.name)}"=`;
  switch (value.type) {
    case 'REG_SZ':
      if (/[\r\n]/.test(value.data)) return hexLine(prefix, 'hex(1):', utf16z(value.data));
      return `${prefix}"${escapeString(value.data)}"`;
    case 'REG_EXPAND_SZ':
      return hexLine(prefix, 'hex(2):', utf16z(value.data));
    case 'REG_MULTI_SZ':
      return hexLine(prefix, 'hex(7):', Buffer.concat([...value.data.map(utf16z), Buffer.alloc(2)]));
    case 'REG_DWORD':
      if (value.data > MAX_DWORD) throw new InvalidArgument('REG_DWORD data out of range');
      return `${prefix}dword:${value.data.toString(16).padStart(8, '0')}`;
    case 'REG_QWORD': {
      const bytes = Buffer.alloc(8);
      bytes.writeBigUInt64LE(value.data);
      return hexLine(prefix, 'hex(b):', bytes);
    }
    case 'REG_BINARY':
      return hexLine(prefix, 'hex:', value.data);
    case 'REG_NONE':
      return hexLine(prefix, 'hex(0):', value.data);
  }
}

/** A version 5.00 .reg file of `keys` (in the order given): UTF-16 LE with BOM, CRLF line ends. */
export function formatRegFile(keys: readonly RegFileKey[]): Buffer {
  const lines = [REG_HEADER_V5, ''];
  for (const key of keys) {
    lines.push(`[${key.path}]`);
    for (const value of key.values) lines.push(formatValueLine(value));
    lines.push('');
  }
  return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf16le')]);
}
