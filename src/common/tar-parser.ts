import {
  decodePaxRecords,
  normalizeTarHeader,
  type RawTarHeader,
  type TarBodySink,
  type TarEntryHeader,
} from './tar.js';

/**
 * A synchronous tar reader: `write(chunk)` parses what it is given at once and hands each entry's
 * header to `onEntry`, then the entry's body to the sink it returned, as slices of the chunk (no
 * copy: a slice is only valid during the call when the caller reuses its buffer). `end()` says the
 * input is over. There are no streams, promises or buffered bodies in between, so a layer can be
 * unpacked straight from the bytes of a socket read.
 *
 * Formats as Go's archive/tar (what dockerd reads layers with) reads them: ustar, GNU (`L`/`K` long
 * names) and V7 headers, PAX extended headers (`path`, `linkpath`, `size`; the other records go to
 * `normalizeTarHeader`), base-256 numbers, old-style directories (a regular file whose name ends with
 * `/`). Global PAX headers are skipped, as dockerd ignores them; link, symlink, device, FIFO and
 * directory entries have no body whatever their size field says; two zero blocks end the archive,
 * and what follows them is not read. Errors (bad checksum, bad numbers, an archive that ends inside
 * an entry, oversized metadata, one zero block followed by a header) are thrown as `Error`s whose
 * messages start with "invalid tar"; an exception of a sink or of `onEntry` is thrown as it is. After
 * any error the parser is failed: the open body sink has been aborted and every call throws.
 */

const BLOCK = 512;
/** Largest PAX or GNU long-name record kept in memory (Go's limit for these "special files"). */
const MAX_META_BYTES = 1 << 20;

const TYPE_NAMES: Record<string, TarEntryHeader['rawType']> = {
  '0': 'file',
  '\0': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'character-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  '7': 'contiguous-file',
};

/** Types whose size field does not announce a body (Go's isHeaderOnlyType). */
const HEADER_ONLY_TYPES: ReadonlySet<string> = new Set(['1', '2', '3', '4', '5', '6']);

type MetaKind = 'pax' | 'global' | 'long-name' | 'long-link';

const META_TYPES: Record<string, MetaKind> = { x: 'pax', g: 'global', L: 'long-name', K: 'long-link' };

function invalidTar(message: string): Error {
  return new Error(`invalid tar: ${message}`);
}

/** A numeric header field: octal text (leading spaces/NULs, ending at a space or NUL) or base-256. */
function parseNumber(block: Buffer, offset: number, length: number, field: string): number {
  const first = block[offset] as number;
  if (first === 0x80 || first === 0xff) {
    // Base-256, big-endian two's complement in the remaining bytes (GNU, star, Go).
    let value = 0;
    for (let i = offset + 1; i < offset + length; i++) {
      const byte = first === 0xff ? 0xff - (block[i] as number) : (block[i] as number);
      value = value * 256 + byte;
    }
    if (!Number.isSafeInteger(value)) throw invalidTar(`${field} out of range`);
    return first === 0xff ? -value - 1 : value;
  }
  const end = offset + length;
  let at = offset;
  while (at < end && (block[at] === 0x20 || block[at] === 0)) at++;
  let value = 0;
  for (; at < end; at++) {
    const c = block[at] as number;
    if (c === 0x20 || c === 0) break;
    if (c < 0x30 || c > 0x37) throw invalidTar(`${field} is not an octal number`);
    value = value * 8 + (c - 0x30);
  }
  for (; at < end; at++) {
    if (block[at] !== 0x20 && block[at] !== 0) throw invalidTar(`${field} is not an octal number`);
  }
  return value;
}

/** A NUL-terminated text field. */
function parseText(block: Buffer, offset: number, length: number): string {
  let end = offset;
  while (end < offset + length && block[end] !== 0) end++;
  return block.toString('utf8', offset, end);
}

function isZeroBlock(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** The header checksum, as the unsigned sum (POSIX) or the signed one some old tars wrote. */
function checksumMatches(block: Buffer): boolean {
  let stored: number;
  try {
    stored = parseNumber(block, 148, 8, 'checksum');
  } catch {
    return false;
  }
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : (block[i] as number);
    unsigned += byte;
    signed += byte > 127 ? byte - 256 : byte;
  }
  return stored === unsigned || stored === signed;
}

const USTAR_MAGIC = Buffer.from('ustar\0', 'latin1');
const GNU_MAGIC = Buffer.from('ustar  \0', 'latin1');

export class TarParser {
  /** A header block that arrived in pieces. */
  private readonly partial = Buffer.alloc(BLOCK);
  private partialFill = 0;
  /** Bytes of the current body (entry or metadata record) still to come. */
  private remaining = 0;
  /** Zero bytes after the current body, up to the next block. */
  private padding = 0;
  private sink: TarBodySink | null = null;
  private meta: { kind: MetaKind; data: Buffer; fill: number } | null = null;
  private pax: Record<string, string> | null = null;
  private longName: string | null = null;
  private longLink: string | null = null;
  /** Zero blocks just seen: one is tolerated at the very end, two end the archive. */
  private zeroBlocks = 0;
  private ended = false;
  private failure: Error | null = null;

  constructor(private readonly onEntry: (header: TarEntryHeader) => TarBodySink | null) {}

  /** True once the end-of-archive marker has been read (later bytes are ignored). */
  get isFinished(): boolean {
    return this.ended;
  }

  write(chunk: Buffer): void {
    if (this.failure !== null) throw this.failure;
    try {
      this.consume(chunk);
    } catch (err) {
      this.fail(err);
      throw err;
    }
  }

  /** The input is over: throws unless it ended between entries or after the end-of-archive marker. */
  end(): void {
    if (this.failure !== null) throw this.failure;
    if (this.ended) return;
    let problem: string | null = null;
    if (this.remaining > 0 || this.padding > 0 || this.partialFill > 0)
      problem = 'the archive ends inside an entry';
    else if (this.pax !== null || this.longName !== null || this.longLink !== null)
      problem = 'the archive ends after an extended header';
    if (problem !== null) {
      const err = invalidTar(problem);
      this.fail(err);
      throw err;
    }
    this.ended = true;
  }

  /** The input failed elsewhere (the source broke): releases the entry being written. */
  abort(): void {
    this.fail(new Error('tar input aborted'));
  }

  private fail(err: unknown): void {
    if (this.failure !== null) return;
    this.failure = err instanceof Error ? err : new Error(String(err));
    const sink = this.sink;
    this.sink = null;
    sink?.abort();
  }

  private consume(chunk: Buffer): void {
    let at = 0;
    const length = chunk.length;
    while (at < length && !this.ended) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, length - at);
        const meta = this.meta;
        if (meta !== null) {
          chunk.copy(meta.data, meta.fill, at, at + take);
          meta.fill += take;
        } else if (this.sink !== null) {
          this.sink.write(chunk.subarray(at, at + take));
        }
        at += take;
        this.remaining -= take;
        if (this.remaining === 0) this.bodyDone();
        continue;
      }
      if (this.padding > 0) {
        const skip = Math.min(this.padding, length - at);
        at += skip;
        this.padding -= skip;
        continue;
      }
      if (this.partialFill === 0 && length - at >= BLOCK) {
        this.header(chunk.subarray(at, at + BLOCK));
        at += BLOCK;
        continue;
      }
      const take = Math.min(BLOCK - this.partialFill, length - at);
      chunk.copy(this.partial, this.partialFill, at, at + take);
      this.partialFill += take;
      at += take;
      if (this.partialFill === BLOCK) {
        this.partialFill = 0;
        this.header(this.partial);
      }
    }
  }

  private header(block: Buffer): void {
    if (isZeroBlock(block)) {
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) {
        if (this.pax !== null || this.longName !== null || this.longLink !== null)
          throw invalidTar('the archive ends after an extended header');
        this.ended = true;
      }
      return;
    }
    if (this.zeroBlocks > 0) throw invalidTar('a header follows a single zero block');
    if (!checksumMatches(block)) {
      throw invalidTar('header checksum mismatch (a corrupted archive, or one that needs to be gunzipped?)');
    }
    const flag = String.fromCharCode(block[156] as number);
    const declared = parseNumber(block, 124, 12, 'size');
    if (declared < 0) throw invalidTar('negative size');
    const kind = META_TYPES[flag];
    if (kind !== undefined) {
      if (declared > MAX_META_BYTES) throw invalidTar(`extended header of ${declared} bytes`);
      this.meta = { kind, data: Buffer.allocUnsafe(declared), fill: 0 };
      this.startBody(declared);
      return;
    }
    const magic = block.subarray(257, 265);
    const isGnu = magic.equals(GNU_MAGIC);
    const isUstar = !isGnu && block.subarray(257, 263).equals(USTAR_MAGIC);
    const isV7 = !isGnu && !isUstar;
    let name = parseText(block, 0, 100);
    if (isUstar && block[345] !== 0) name = `${parseText(block, 345, 155)}/${name}`;
    let linkname: string | null = block[157] === 0 ? null : parseText(block, 157, 100);
    let size = declared;
    let pax: Record<string, string> | null = null;
    if (this.longName !== null) name = this.longName;
    if (this.longLink !== null) linkname = this.longLink;
    if (this.pax !== null) {
      pax = this.pax;
      if (pax.path !== undefined) name = pax.path;
      if (pax.linkpath !== undefined) linkname = pax.linkpath;
      if (pax.size !== undefined) {
        if (!/^\d+$/.test(pax.size) || !Number.isSafeInteger(Number(pax.size)))
          throw invalidTar(`PAX size ${JSON.stringify(pax.size)}`);
        size = Number(pax.size);
      }
    }
    this.pax = null;
    this.longName = null;
    this.longLink = null;
    let rawType = TYPE_NAMES[flag] ?? null;
    if (rawType === 'file' && name.endsWith('/')) rawType = 'directory';
    if (HEADER_ONLY_TYPES.has(flag) || rawType === 'directory') size = 0;
    const raw: RawTarHeader = {
      name,
      mode: parseNumber(block, 100, 8, 'mode'),
      uid: parseNumber(block, 108, 8, 'uid'),
      gid: parseNumber(block, 116, 8, 'gid'),
      size,
      mtime: new Date(parseNumber(block, 136, 12, 'mtime') * 1000),
      type: rawType as RawTarHeader['type'],
      linkname,
      uname: isV7 ? '' : parseText(block, 265, 32),
      gname: isV7 ? '' : parseText(block, 297, 32),
      devmajor: isV7 ? 0 : parseNumber(block, 329, 8, 'devmajor'),
      devminor: isV7 ? 0 : parseNumber(block, 337, 8, 'devminor'),
      pax,
    };
    const header = normalizeTarHeader(raw);
    if (rawType === null) header.rawType = `typeflag ${JSON.stringify(flag)}`;
    const sink = this.onEntry(header);
    this.sink = sink;
    this.startBody(size);
  }

  private startBody(size: number): void {
    this.remaining = size;
    this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
    if (size === 0) this.bodyDone();
  }

  private bodyDone(): void {
    const meta = this.meta;
    if (meta !== null) {
      this.meta = null;
      this.metaDone(meta.kind, meta.data);
      return;
    }
    const sink = this.sink;
    // end() releases what it holds when it throws: there is nothing left to abort.
    this.sink = null;
    sink?.end();
  }

  private metaDone(kind: MetaKind, data: Buffer): void {
    switch (kind) {
      case 'pax':
        try {
          this.pax = decodePaxRecords(data);
        } catch (err) {
          throw invalidTar((err as Error).message);
        }
        return;
      case 'global':
        // dockerd ignores global PAX headers; so do we.
        return;
      case 'long-name':
        this.longName = parseText(data, 0, data.length);
        return;
      case 'long-link':
        this.longLink = parseText(data, 0, data.length);
        return;
    }
  }
}
