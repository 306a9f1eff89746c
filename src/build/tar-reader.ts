import type { Readable } from 'node:stream';
import { InvalidArgument } from '../common/errors.js';
import { parsePaxTime } from '../common/tar.js';

/**
 * A lean streaming reader for build contexts: ustar headers, PAX extended headers (`path`,
 * `linkpath`, `size`, `uid`, `gid`, `mtime`), GNU long names (`L`/`K`) and base-256 numbers. Bodies
 * are handed over as slices of the incoming chunks, synchronously, without per-entry streams — a
 * context of thousands of small files is dominated by per-entry overhead, which this avoids.
 * Contexts only need file, directory, symlink and hard-link entries; other types are reported with
 * their type and skipped by the caller.
 */
export type ContextTarType = 'file' | 'directory' | 'symlink' | 'link' | 'other';

export interface ContextTarHeader {
  name: string;
  type: ContextTarType;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  linkname: string;
}

export interface ContextTarSink {
  /** A new entry; return a body receiver (files), or null to skip the body. */
  entry(header: ContextTarHeader): ((chunk: Buffer) => void) | null;
  /** The current entry's body is complete. */
  end(): void;
}

const BLOCK = 512;

function cString(block: Buffer, offset: number, length: number): string {
  let end = offset;
  const limit = offset + length;
  while (end < limit && block[end] !== 0) end++;
  return block.toString('utf8', offset, end);
}

/** An octal header field, or GNU base-256 when the high bit of the first byte is set. */
function numeric(block: Buffer, offset: number, length: number): number {
  if (block[offset] & 0x80) {
    let value = block[offset] & 0x7f;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i];
    return value;
  }
  let value = 0;
  let seen = false;
  for (let i = offset; i < offset + length; i++) {
    const c = block[i];
    if (c === 0 || (c === 0x20 && seen)) break;
    if (c === 0x20) continue;
    if (c < 0x30 || c > 0x37) throw new InvalidArgument('invalid tar header: bad number');
    value = value * 8 + (c - 0x30);
    seen = true;
  }
  return value;
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i];
  return sum === numeric(block, 148, 8);
}

function parsePax(data: Buffer): Record<string, string> {
  const records: Record<string, string> = {};
  let offset = 0;
  while (offset < data.length) {
    if (data[offset] === 0) break;
    const space = data.indexOf(0x20, offset);
    if (space < 0) throw new InvalidArgument('invalid PAX header');
    const length = Number.parseInt(data.toString('ascii', offset, space), 10);
    if (!Number.isSafeInteger(length) || length <= 0 || offset + length > data.length) {
      throw new InvalidArgument('invalid PAX header');
    }
    const eq = data.indexOf(0x3d, space);
    if (eq < 0 || eq > offset + length) throw new InvalidArgument('invalid PAX header');
    records[data.toString('utf8', space + 1, eq)] = data.toString('utf8', eq + 1, offset + length - 1);
    offset += length;
  }
  return records;
}

const TYPES: Record<string, ContextTarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '5': 'directory',
  '2': 'symlink',
  '1': 'link',
};

/** Reads a whole tar stream into `sink`. Rejects on malformed input or a source error. */
export async function readContextTar(source: Readable, sink: ContextTarSink): Promise<void> {
  let pending: Buffer = Buffer.alloc(0);
  /** Body bytes of the current entry still to deliver, then padding to skip. */
  let bodyLeft = 0;
  let paddingLeft = 0;
  let body: ((chunk: Buffer) => void) | null = null;
  let inBody = false;
  /** Collecting an extended header body (PAX or GNU long name). */
  let meta: { kind: string; left: number; parts: Buffer[] } | null = null;
  let pax: Record<string, string> = {};
  let global: Record<string, string> = {};
  let longName: string | null = null;
  let longLink: string | null = null;
  let finished = false;

  const handleHeader = (block: Buffer): void => {
    if (!checksumOk(block)) throw new InvalidArgument('invalid tar header: checksum mismatch');
    const typeflag = String.fromCharCode(block[156]);
    const size = numeric(block, 124, 12);
    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      meta = { kind: typeflag, left: size, parts: [] };
      paddingLeft = (BLOCK - (size % BLOCK)) % BLOCK;
      return;
    }
    const records = { ...global, ...pax };
    const prefix = cString(block, 345, 155);
    const magic = block.toString('latin1', 257, 263);
    let name = cString(block, 0, 100);
    if (magic.startsWith('ustar') && prefix !== '') name = `${prefix}/${name}`;
    name = records.path ?? longName ?? name;
    const linkname = records.linkpath ?? longLink ?? cString(block, 157, 100);
    const entrySize = records.size !== undefined ? Number(records.size) : size;
    const mtime = parsePaxTime(records.mtime) ?? BigInt(numeric(block, 136, 12)) * 1_000_000_000n;
    const header: ContextTarHeader = {
      name,
      type: TYPES[typeflag] ?? 'other',
      mode: numeric(block, 100, 8) & 0o7777,
      uid: records.uid !== undefined ? Number(records.uid) : numeric(block, 108, 8),
      gid: records.gid !== undefined ? Number(records.gid) : numeric(block, 116, 8),
      size: TYPES[typeflag] === 'file' ? entrySize : 0,
      mtimeNs: mtime,
      linkname,
    };
    pax = {};
    longName = null;
    longLink = null;
    // Only regular files carry a body here (a hard link's size field, if any, is ignored).
    const dataSize = header.type === 'file' || header.type === 'other' ? entrySize : 0;
    body = sink.entry(header);
    inBody = true;
    bodyLeft = dataSize;
    paddingLeft = (BLOCK - (dataSize % BLOCK)) % BLOCK;
    if (bodyLeft === 0) {
      inBody = false;
      sink.end();
    }
  };

  const finishMeta = (): void => {
    const m = meta!;
    const data = Buffer.concat(m.parts);
    if (m.kind === 'x') pax = parsePax(data);
    else if (m.kind === 'g') global = { ...global, ...parsePax(data) };
    else if (m.kind === 'L') longName = cString(data, 0, data.length);
    else longLink = cString(data, 0, data.length);
    meta = null;
  };

  const process = (input: Buffer): void => {
    let chunk = input;
    while (chunk.length > 0 && !finished) {
      if (inBody && bodyLeft > 0) {
        const n = Math.min(bodyLeft, chunk.length);
        body?.(chunk.subarray(0, n));
        chunk = chunk.subarray(n);
        bodyLeft -= n;
        if (bodyLeft === 0) {
          inBody = false;
          sink.end();
        }
        continue;
      }
      if (meta !== null && (meta as { left: number }).left > 0) {
        const current = meta as { left: number; parts: Buffer[] };
        const n = Math.min(current.left, chunk.length);
        current.parts.push(chunk.subarray(0, n));
        chunk = chunk.subarray(n);
        current.left -= n;
        if (current.left === 0) finishMeta();
        continue;
      }
      if (meta !== null) finishMeta();
      if (paddingLeft > 0) {
        const n = Math.min(paddingLeft, chunk.length);
        chunk = chunk.subarray(n);
        paddingLeft -= n;
        continue;
      }
      // A header block, possibly split across chunks.
      if (pending.length + chunk.length < BLOCK) {
        pending = Buffer.concat([pending, chunk]);
        return;
      }
      let block: Buffer;
      if (pending.length > 0) {
        const need = BLOCK - pending.length;
        block = Buffer.concat([pending, chunk.subarray(0, need)]);
        chunk = chunk.subarray(need);
        pending = Buffer.alloc(0);
      } else {
        block = chunk.subarray(0, BLOCK);
        chunk = chunk.subarray(BLOCK);
      }
      if (block.every((b) => b === 0)) {
        finished = true;
        return;
      }
      handleHeader(block);
    }
  };

  for await (const chunk of source as AsyncIterable<Buffer>) process(chunk);
  if (meta !== null && (meta as { left: number }).left === 0) finishMeta();
  if (inBody || meta !== null || pending.length > 0)
    throw new InvalidArgument('invalid tar archive: unexpected end of data');
}
