import { once } from 'node:events';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import type * as TarStream from 'tar-stream';
import { TarParser } from './tar-parser.js';

/**
 * The project's tar layer: writing on top of tar-stream 3.2.2 (pinned: we patch one of its internal
 * files), reading with our own synchronous parser (`TarParser`, tar-parser.ts).
 *
 * Reading: `consumeTar(stream, onEntry)` streams entries to a synchronous handler with
 * back-pressure, each header normalised by `normalizeTarHeader` (PAX records: uid/gid/mtime/atime
 * beyond ustar's range, nanosecond times, xattrs as raw bytes). `readTarEntries` collects a small
 * tar in memory (tests, `docker load` manifests). `TarParser` takes pushed bytes directly (a pull
 * unpacks from the socket reads). The lower-level `createTarExtract` + `pumpInto` are there for
 * callers that need tar-stream's events (`docker load`).
 *
 * Writing: `TarWriter` wraps tar-stream's packer with the workarounds for its pack defects
 * (node-syscalls.md §4): mode 000 kept, uid/gid above 262143 and out-of-range mtimes sent as PAX
 * records, a missing mtime never replaced by "now", size-0 files always completed, xattrs as
 * `SCHILY.xattr.*` records. `packEntries` builds a whole tar from in-memory entries.
 *
 * Binary safety (appendix B): tar-stream decodes and encodes every PAX value as UTF-8, which
 * corrupts binary xattrs such as `security.capability`. This module replaces its PAX codec once, at
 * load time, so that `SCHILY.xattr.*` values travel as latin1 strings mapping 1:1 to bytes, and PAX
 * keys are written sorted (deterministic output). Import tar-stream only through this module.
 */

export type TarEntryType =
  | 'file'
  | 'link'
  | 'symlink'
  | 'character-device'
  | 'block-device'
  | 'directory'
  | 'fifo';

/** An entry to write. Times are nanoseconds since the epoch (negative before 1970). */
export interface TarEntry {
  /** Path inside the archive, `/`-separated, no leading `/`; a trailing `/` is added for directories. */
  name: string;
  type: TarEntryType;
  /** Permission bits including setuid/setgid/sticky (`0o7777`); file-type bits are ignored. */
  mode: number;
  uid: number;
  gid: number;
  /** Body length for `file` entries; ignored for other types. */
  size?: number;
  mtimeNs: bigint;
  /** Symlink target, or hard-link target (an archive path). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  /** Empty by default (deterministic layers); set for `docker cp`-style archives if wanted. */
  uname?: string;
  gname?: string;
  xattrs?: ReadonlyMap<string, Buffer>;
  /** Extra PAX records (values are UTF-8 text). */
  pax?: Readonly<Record<string, string>>;
}

/** A parsed entry header, with the PAX overrides applied. */
export interface TarEntryHeader {
  name: string;
  /** null for entry types this project does not handle (GNU sparse, volume labels, ...). */
  type: TarEntryType | null;
  /** The raw typeflag name from tar-stream, for error messages. */
  rawType: string | null;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeNs: bigint;
  /** From PAX `atime`, if present. */
  atimeNs: bigint | null;
  linkname: string | null;
  devmajor: number;
  devminor: number;
  uname: string;
  gname: string;
  /** `SCHILY.xattr.*` (and libarchive's base64 `LIBARCHIVE.xattr.*`) records, as raw bytes. */
  xattrs: Map<string, Buffer>;
  /** All PAX records of the entry (xattr values are latin1 strings), or null. */
  pax: Readonly<Record<string, string>> | null;
}

/**
 * tar-stream's header as it reaches `entry` listeners (its typings say `pax: unknown` and omit the
 * null `type` of unknown typeflags), and as we hand it to the packer.
 */
export type RawTarHeader = Omit<Partial<TarStream.Header>, 'pax' | 'type' | 'linkname'> & {
  name: string;
  type?: TarStream.Header['type'] | 'pax-header' | 'pax-global-header' | null;
  linkname?: string | null;
  pax?: Record<string, string> | null;
};

const XATTR_PREFIX = 'SCHILY.xattr.';
const LIBARCHIVE_XATTR_PREFIX = 'LIBARCHIVE.xattr.';
const PINNED_TAR_STREAM = '3.2.2';
const NS_PER_SECOND = 1_000_000_000n;
/** tar-stream writes uid/gid in 6 octal digits and silently clamps above this. */
const MAX_USTAR_ID = 0o777777;
/** tar-stream computes the ustar mtime with `| 0`, so only this range survives the header. */
const MAX_USTAR_MTIME_SECONDS = 2 ** 31 - 1;

// ---------------------------------------------------------------------------------------------
// The PAX patch

interface TarStreamHeaders {
  encode(header: PackHeader | Record<string, unknown>): Buffer | null;
  encodePax(opts: { name?: string; linkname?: string | null; pax?: Record<string, string> | null }): Buffer;
  decodePax(buf: Buffer): Record<string, string>;
}

const require = createRequire(import.meta.url);

function isBinaryPaxKey(key: string): boolean {
  return key.startsWith(XATTR_PREFIX);
}

/** One PAX record: `<len> <key>=<value>\n`, where len counts the whole record including itself. */
function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let length = body.length + String(body.length).length;
  if (String(length).length !== String(body.length).length) length = body.length + String(length).length;
  return Buffer.concat([Buffer.from(String(length), 'ascii'), body]);
}

export function encodePaxRecords(opts: {
  name?: string;
  linkname?: string | null;
  pax?: Record<string, string> | null;
}): Buffer {
  const records: Array<[string, Buffer]> = [];
  if (opts.name) records.push(['path', Buffer.from(opts.name, 'utf8')]);
  if (opts.linkname) records.push(['linkpath', Buffer.from(opts.linkname, 'utf8')]);
  for (const [key, value] of Object.entries(opts.pax ?? {})) {
    if (key === 'path' || key === 'linkpath') continue;
    records.push([key, Buffer.from(value, isBinaryPaxKey(key) ? 'latin1' : 'utf8')]);
  }
  records.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  return Buffer.concat(records.map(([key, value]) => paxRecord(key, value)));
}

export function decodePaxRecords(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let offset = 0;
  while (offset < buf.length) {
    // A NUL-padded tail is tolerated, as GNU tar does.
    if (buf[offset] === 0) break;
    const space = buf.indexOf(0x20, offset);
    if (space < 0) throw new Error('invalid PAX header: record without length');
    const length = Number.parseInt(buf.toString('ascii', offset, space), 10);
    if (!Number.isSafeInteger(length) || length <= space - offset + 1 || offset + length > buf.length) {
      throw new Error('invalid PAX header: bad record length');
    }
    const end = offset + length;
    if (buf[end - 1] !== 0x0a) throw new Error('invalid PAX header: record not terminated by a newline');
    const equals = buf.indexOf(0x3d, space + 1);
    if (equals < 0 || equals >= end) throw new Error('invalid PAX header: record without "="');
    const key = buf.toString('utf8', space + 1, equals);
    result[key] = buf.toString(isBinaryPaxKey(key) ? 'latin1' : 'utf8', equals + 1, end - 1);
    offset = end;
  }
  return result;
}

function loadPatchedTarStream(): typeof TarStream {
  const pkg = require('tar-stream/package') as { version: string };
  if (pkg.version !== PINNED_TAR_STREAM) {
    throw new Error(
      `tar-stream ${pkg.version} is installed, but src/common/tar.ts patches ${PINNED_TAR_STREAM} internals; ` +
        'pin it or re-verify the patch',
    );
  }
  const dir = path.dirname(require.resolve('tar-stream/package'));
  const headers = require(path.join(dir, 'headers.js')) as TarStreamHeaders;
  headers.encodePax = encodePaxRecords;
  headers.decodePax = decodePaxRecords;
  tarHeaders = headers;
  return require('tar-stream') as typeof TarStream;
}

let tarHeaders: TarStreamHeaders | null = null;
const tarStream = loadPatchedTarStream();

/** tar-stream's parser, with the binary-safe PAX codec. Listen to `entry`, or use `normalizeTarHeader`. */
export function createTarExtract(): TarStream.Extract {
  return tarStream.extract();
}

// ---------------------------------------------------------------------------------------------
// Reading headers

/** Parses a PAX time (`"1700000000.123456789"`, `"-1.5"`) to nanoseconds; null when malformed. */
export function parsePaxTime(value: string | undefined): bigint | null {
  if (value === undefined) return null;
  const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(value.trim());
  if (!match) return null;
  const fraction = (match[3] ?? '').slice(0, 9).padEnd(9, '0');
  const ns = BigInt(match[2]) * NS_PER_SECOND + BigInt(fraction);
  return match[1] === '-' ? -ns : ns;
}

/** Formats nanoseconds as a PAX time with the shortest exact fraction. */
export function formatPaxTime(ns: bigint): string {
  const negative = ns < 0n;
  const abs = negative ? -ns : ns;
  const seconds = abs / NS_PER_SECOND;
  const fraction = (abs % NS_PER_SECOND).toString().padStart(9, '0').replace(/0+$/, '');
  return `${negative ? '-' : ''}${seconds}${fraction ? `.${fraction}` : ''}`;
}

function paxInteger(pax: Record<string, string> | null | undefined, key: string, fallback: number): number {
  const value = pax?.[key];
  if (value === undefined || !/^\d+$/.test(value)) return fallback;
  const parsed = Number(value);
  return Number.isSafeInteger(parsed) ? parsed : fallback;
}

/** The entry's uid: PAX `uid` when present (tar-stream ignores it), else the ustar field. */
export function paxUid(header: RawTarHeader): number {
  return paxInteger(header.pax, 'uid', header.uid ?? 0);
}

export function paxGid(header: RawTarHeader): number {
  return paxInteger(header.pax, 'gid', header.gid ?? 0);
}

/** The entry's mtime in ns: PAX `mtime` when present, else the ustar seconds. `header.pax` may be null. */
export function paxMtimeNs(header: RawTarHeader): bigint {
  const fromPax = parsePaxTime(header.pax?.mtime);
  if (fromPax !== null) return fromPax;
  const ms = header.mtime?.getTime();
  return ms === undefined || Number.isNaN(ms) ? 0n : BigInt(Math.trunc(ms / 1000)) * NS_PER_SECOND;
}

export function paxAtimeNs(header: RawTarHeader): bigint | null {
  return parsePaxTime(header.pax?.atime);
}

/** The entry's xattrs as raw bytes. */
export function paxXattrs(pax: Record<string, string> | null | undefined): Map<string, Buffer> {
  const xattrs = new Map<string, Buffer>();
  if (!pax) return xattrs;
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith(XATTR_PREFIX)) {
      xattrs.set(key.slice(XATTR_PREFIX.length), Buffer.from(value, 'latin1'));
    } else if (key.startsWith(LIBARCHIVE_XATTR_PREFIX)) {
      // bsdtar: the name is URL-encoded and the value base64.
      const name = decodeURIComponent(key.slice(LIBARCHIVE_XATTR_PREFIX.length));
      if (!xattrs.has(name)) xattrs.set(name, Buffer.from(value, 'base64'));
    }
  }
  return xattrs;
}

const ENTRY_TYPES: ReadonlySet<string> = new Set<TarEntryType>([
  'file',
  'link',
  'symlink',
  'character-device',
  'block-device',
  'directory',
  'fifo',
]);

export function normalizeTarHeader(raw: RawTarHeader): TarEntryHeader {
  const rawType = raw.type ?? null;
  let type: TarEntryType | null = null;
  if (rawType === 'contiguous-file') type = 'file';
  else if (rawType !== null && ENTRY_TYPES.has(rawType)) type = rawType as TarEntryType;
  return {
    name: raw.name,
    type,
    rawType,
    mode: (raw.mode ?? 0) & 0o7777,
    uid: paxUid(raw),
    gid: paxGid(raw),
    size: raw.size ?? 0,
    mtimeNs: paxMtimeNs(raw),
    atimeNs: paxAtimeNs(raw),
    linkname: raw.linkname ?? null,
    devmajor: raw.devmajor ?? 0,
    devminor: raw.devminor ?? 0,
    uname: raw.uname ?? '',
    gname: raw.gname ?? '',
    xattrs: paxXattrs(raw.pax),
    pax: raw.pax ?? null,
  };
}

export interface TarEntryWithBody {
  header: TarEntryHeader;
  body: Buffer;
}

/**
 * Reads a whole tar into memory. For small, bounded archives only (tests, manifests): throws once the
 * bodies exceed `maxBytes` (default 64 MiB).
 */
export async function readTarEntries(
  tar: Readable,
  maxBytes = 64 * 1024 * 1024,
): Promise<TarEntryWithBody[]> {
  const entries: TarEntryWithBody[] = [];
  let total = 0;
  await consumeTar(tar, (header) => {
    const chunks: Buffer[] = [];
    return {
      write: (chunk) => {
        total += chunk.length;
        if (total > maxBytes) throw new Error(`tar larger than ${maxBytes} bytes`);
        chunks.push(chunk);
      },
      end: () => {
        entries.push({ header, body: Buffer.concat(chunks) });
      },
      abort: () => {},
    };
  });
  return entries;
}

/**
 * Writes `source` into a tar-stream (streamx) writable with back-pressure, calls `onChunk` for each
 * chunk first (e.g. to hash it), and resolves once the writable has finished; rejects on the first
 * error of either side.
 */
export async function pumpInto(
  source: Readable,
  target: TarStream.Extract,
  onChunk?: (chunk: Buffer) => void,
): Promise<void> {
  let failure: Error | null = null;
  const failed = new Promise<never>((_, reject) => {
    target.on('error', (err: Error) => {
      failure = err;
      reject(err);
      // Unblock a `for await` that waits for the next source chunk.
      source.destroy(err);
    });
  });
  failed.catch(() => {});
  const finished = new Promise<void>((resolve, reject) => {
    target.on('finish', () => resolve());
    target.on('close', () => (failure ? reject(failure) : resolve()));
  });
  finished.catch(() => {});
  try {
    for await (const chunk of source) {
      if (failure) throw failure;
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      onChunk?.(buf);
      if (!target.write(buf)) await Promise.race([once(target, 'drain'), failed]);
    }
    if (failure) throw failure;
    target.end(undefined);
    await Promise.race([finished, failed]);
  } catch (err) {
    if (!target.destroyed) target.destroy(err as Error);
    source.destroy();
    throw failure ?? err;
  }
}

/** Receives one entry's body, synchronously, chunk by chunk. */
export interface TarBodySink {
  write(chunk: Buffer): void;
  /** The body is complete. */
  end(): void;
  /** The archive failed mid-body; release resources (the error is reported by `consumeTar`). */
  abort(): void;
}

/**
 * Streams `tar` through `onEntry`, one entry at a time, with back-pressure. `onEntry` runs
 * synchronously (sync fs calls are the fast path, node-syscalls.md §5) and returns a sink for the
 * body, or null to discard it. `onChunk` sees every input byte first (hashing). Rejects with the
 * first error thrown by a handler, the source, or the parser (`TarParser`, which also reads the
 * archive for callers that push bytes themselves).
 */
export async function consumeTar(
  tar: Readable,
  onEntry: (header: TarEntryHeader) => TarBodySink | null,
  onChunk?: (chunk: Buffer) => void,
): Promise<void> {
  const parser = new TarParser(onEntry);
  try {
    for await (const chunk of tar) {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      onChunk?.(buf);
      parser.write(buf);
    }
    parser.end();
  } catch (err) {
    parser.abort();
    tar.destroy();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Writing

const TYPE_BITS: Record<TarEntryType, number> = {
  file: 0o100000,
  link: 0o100000,
  symlink: 0o120000,
  'character-device': 0o020000,
  'block-device': 0o060000,
  directory: 0o040000,
  fifo: 0o010000,
};

/** What tar-stream's packer takes (its typings omit `pax`). */
export type PackHeader = Partial<TarStream.Header> & { name: string; pax?: Record<string, string> };

/** Builds tar-stream's header for `entry`, applying the pack workarounds. */
export function toPackHeader(entry: TarEntry): PackHeader {
  const pax: Record<string, string> = { ...(entry.pax ?? {}) };
  // Workaround 4: ids above 0o777777 go to PAX, the ustar field keeps the clamped value.
  if (entry.uid > MAX_USTAR_ID) pax.uid = String(entry.uid);
  if (entry.gid > MAX_USTAR_ID) pax.gid = String(entry.gid);
  // tar-stream's `| 0` breaks mtimes outside int32 seconds; Go's reader also rejects a garbled field.
  const seconds = floorSeconds(entry.mtimeNs);
  let ustarSeconds = Number(seconds);
  if (seconds < 0n || seconds > BigInt(MAX_USTAR_MTIME_SECONDS)) {
    pax.mtime = formatPaxTime(entry.mtimeNs);
    ustarSeconds = seconds < 0n ? 0 : MAX_USTAR_MTIME_SECONDS;
  } else if (entry.mtimeNs % NS_PER_SECOND !== 0n) {
    pax.mtime = formatPaxTime(entry.mtimeNs);
  }
  if (entry.xattrs) {
    for (const [key, value] of entry.xattrs) pax[XATTR_PREFIX + key] = value.toString('latin1');
  }
  const name = entry.type === 'directory' && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name;
  const header: PackHeader = {
    name,
    type: entry.type,
    // Workaround 3: a falsy mode would become 0644/0755; the type bits keep it truthy and are masked off.
    mode: (entry.mode & 0o7777) | TYPE_BITS[entry.type],
    uid: Math.min(entry.uid, MAX_USTAR_ID),
    gid: Math.min(entry.gid, MAX_USTAR_ID),
    size: entry.type === 'file' ? (entry.size ?? 0) : 0,
    // Workaround 5: always an explicit mtime.
    mtime: new Date(ustarSeconds * 1000),
    linkname: entry.linkname,
    uname: entry.uname ?? '',
    gname: entry.gname ?? '',
    devmajor: entry.devmajor ?? 0,
    devminor: entry.devminor ?? 0,
  };
  if (Object.keys(pax).length > 0) header.pax = pax;
  return header;
}

/** The two zero blocks that end an archive. */
export const TAR_TRAILER = Buffer.alloc(1024);

/** Zero bytes that pad a body of `size` bytes to a whole block (possibly empty). */
export function tarPadding(size: number): Buffer {
  const rest = size & 511;
  return rest === 0 ? EMPTY : TAR_TRAILER.subarray(0, 512 - rest);
}

const EMPTY = Buffer.alloc(0);

/**
 * The header block(s) `TarWriter` writes for `entry` (PAX header and records included), byte for
 * byte, for callers that produce a tar synchronously: header, then `entry.size` body bytes, then
 * `tarPadding(entry.size)`; `TAR_TRAILER` at the end.
 */
export function encodeTarHeader(entry: TarEntry): Buffer {
  const headers = tarHeaders!;
  const header = toPackHeader(entry);
  // What tar-stream's pack.entry() does to a header before encoding it.
  if (!header.size || header.type === 'symlink') header.size = 0;
  if (!header.pax) {
    const plain = headers.encode(header);
    if (plain) return plain;
  }
  const records = headers.encodePax({ name: header.name, linkname: header.linkname, pax: header.pax });
  const paxHeader = {
    name: 'PaxHeader',
    mode: header.mode,
    uid: header.uid,
    gid: header.gid,
    size: records.byteLength,
    mtime: header.mtime,
    type: 'pax-header',
    linkname: header.linkname && 'PaxHeader',
    uname: header.uname,
    gname: header.gname,
    devmajor: header.devmajor,
    devminor: header.devminor,
  };
  return Buffer.concat([
    headers.encode(paxHeader)!,
    records,
    tarPadding(records.byteLength),
    headers.encode({ ...paxHeader, size: header.size, type: header.type })!,
  ]);
}

interface StreamxWritable {
  write(data: Buffer): boolean;
  end(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  destroy(err?: Error): void;
}

/**
 * A tar being written, exposed as a Node `Readable` (`writer.stream`). Add entries one at a time and
 * await each call: the promise resolves once the entry is handed to the stream, and waits while the
 * reader is slow (back-pressure). Call `finalize()` after the last entry, or `destroy(err)` to abort.
 */
export class TarWriter {
  readonly stream: Readable;
  private readonly pack: TarStream.Pack;
  private failure: Error | null = null;

  constructor() {
    this.pack = tarStream.pack({ highWaterMark: 1 << 20 });
    this.pack.on('error', (err: Error) => {
      this.failure ??= err;
    });
    this.stream = Readable.from(this.pack, { objectMode: false, highWaterMark: 1 << 20 });
    this.stream.on('close', () => {
      // The reader went away before the end: stop the writer side as well.
      if (!this.stream.readableEnded && !this.pack.destroyed) {
        this.pack.destroy(this.failure ?? new Error('tar reader closed'));
      }
    });
  }

  /** Adds a non-file entry, or a file whose whole body is `body`. */
  async add(entry: TarEntry, body?: Buffer): Promise<void> {
    this.throwIfFailed();
    const header = toPackHeader(entry);
    // Workaround 6: a file entry given no body never completes; always pass a buffer for files.
    const data = entry.type === 'file' ? (body ?? Buffer.alloc(0)) : undefined;
    if (data !== undefined) header.size = data.length;
    await new Promise<void>((resolve, reject) => {
      const callback = (err?: Error | null) => (err ? reject(err) : resolve());
      if (data !== undefined) this.pack.entry(header, data, callback);
      else this.pack.entry(header, callback);
    });
  }

  /**
   * Adds a regular file read from `fd`, exactly `entry.size` bytes from offset 0: a file that grew
   * meanwhile is cut, one that shrank is padded with zeros, so the archive stays well-formed.
   */
  async addFromFd(entry: TarEntry, fd: number, chunkSize = 1 << 20): Promise<void> {
    this.throwIfFailed();
    const size = entry.size ?? 0;
    if (size <= chunkSize) {
      const body = Buffer.alloc(size);
      readFully(fd, body, 0);
      await this.add({ ...entry, size }, body);
      return;
    }
    let settled: { err: Error | null } | null = null;
    let sink: StreamxWritable | null = null;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.pack.entry(toPackHeader({ ...entry, size }), (err?: Error | null) => {
        settled = { err: err ?? null };
        if (err) reject(err);
        else resolve();
      }) as unknown as StreamxWritable;
    });
    done.catch(() => {});
    const entrySink = sink as unknown as StreamxWritable;
    try {
      for (let position = 0; position < size; ) {
        if (settled !== null)
          throw (settled as { err: Error | null }).err ?? new Error('tar entry ended early');
        // A fresh buffer per chunk: the packer keeps a reference until the reader consumes it.
        const chunk = Buffer.alloc(Math.min(chunkSize, size - position));
        readFully(fd, chunk, position);
        position += chunk.length;
        if (!entrySink.write(chunk)) await waitForDrain(entrySink, done);
      }
      entrySink.end();
    } catch (err) {
      entrySink.destroy(err as Error);
      throw err;
    }
    await done;
  }

  finalize(): void {
    this.pack.finalize();
  }

  destroy(err: Error): void {
    this.failure ??= err;
    this.pack.destroy(err);
    this.stream.destroy(err);
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
    if (this.pack.destroyed) throw new Error('tar stream destroyed');
  }
}

/** Fills `buf` from `fd` at `position`; past the end of the file the rest stays zero. */
function readFully(fd: number, buf: Buffer, position: number): void {
  let filled = 0;
  while (filled < buf.length) {
    const n = fs.readSync(fd, buf, filled, buf.length - filled, position + filled);
    if (n === 0) break;
    filled += n;
  }
}

function waitForDrain(sink: StreamxWritable, done: Promise<void>): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    sink.once('drain', () => resolve());
    sink.once('close', () => resolve());
    done.catch(reject);
  });
}

/** An in-memory entry for `packEntries`: `data` is the body of a `file` entry. */
export interface TarInputEntry extends Omit<TarEntry, 'mtimeNs' | 'mode' | 'uid' | 'gid' | 'size'> {
  mode?: number;
  uid?: number;
  gid?: number;
  /** Default 0 (1970-01-01), never "now": output is reproducible. */
  mtimeNs?: bigint;
  data?: Buffer | string;
}

/**
 * Builds a tar from in-memory entries, in the given order. Defaults: mode 0644 (0755 for
 * directories, 0777 for symlinks), owner 0:0, mtime 0. Useful for tests and for small generated
 * archives (image configs in `docker save`, build contexts).
 */
export function packEntries(entries: Iterable<TarInputEntry> | AsyncIterable<TarInputEntry>): Readable {
  const writer = new TarWriter();
  void (async () => {
    for await (const input of entries) {
      const body = typeof input.data === 'string' ? Buffer.from(input.data, 'utf8') : input.data;
      const { data: _data, ...rest } = input;
      await writer.add(
        {
          ...rest,
          mode: input.mode ?? (input.type === 'directory' ? 0o755 : input.type === 'symlink' ? 0o777 : 0o644),
          uid: input.uid ?? 0,
          gid: input.gid ?? 0,
          mtimeNs: input.mtimeNs ?? 0n,
          size: body?.length ?? 0,
        },
        body,
      );
    }
    writer.finalize();
  })().catch((err: Error) => writer.destroy(err));
  return writer.stream;
}

/** Converts nanoseconds to whole seconds, rounding toward minus infinity (as `Math.floor`). */
export function floorSeconds(ns: bigint): bigint {
  const seconds = ns / NS_PER_SECOND;
  return ns % NS_PER_SECOND < 0n ? seconds - 1n : seconds;
}
