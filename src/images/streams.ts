import { type Duplex, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { InvalidArgument } from '../common/errors.js';

/** Stream plumbing for layer data: compression sniffing, decompression, byte counting. */
export type Compression = 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 3 && head.toString('latin1', 0, 3) === 'BZh') return 'bzip2';
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) {
    return 'xz';
  }
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/**
 * Reads the first bytes of `source` to tell its compression, and returns a stream that replays them
 * followed by the rest (nothing is lost, nothing buffered beyond the first chunk).
 */
export async function sniffCompression(
  source: Readable,
): Promise<{ compression: Compression; stream: Readable }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < 6) {
    const r = await iterator.next();
    if (r.done) {
      done = true;
      break;
    }
    const chunk = typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
    chunks.push(chunk);
    length += chunk.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      if (done) return;
      for (;;) {
        const r = await iterator.next();
        if (r.done) return;
        yield typeof r.value === 'string' ? Buffer.from(r.value) : r.value;
      }
    } finally {
      // Stops (and destroys) the source when the reader gives up early.
      await iterator.return?.();
    }
  }
  return { compression: detectCompression(head), stream: Readable.from(replay(), { objectMode: false }) };
}

/**
 * `sniffCompression` without a stream stacked on `source`: the first bytes are read in flowing mode,
 * the stream paused and the bytes put back with `unshift`, so the caller reads `source` itself (on a
 * pull every stacked stream costs a hop per chunk). For byte streams only.
 */
export async function peekCompression(
  source: Readable,
): Promise<{ compression: Compression; stream: Readable }> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const finish = (err?: Error): void => {
      source.off('data', onData);
      source.off('end', onEnd);
      source.off('error', finish);
      source.pause();
      if (err) reject(err);
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= 6) finish();
    };
    const onEnd = (): void => finish();
    source.on('data', onData);
    source.on('end', onEnd);
    source.on('error', finish);
  });
  const compression = detectCompression(head);
  if (source.readableEnded) return { compression, stream: Readable.from(head.length > 0 ? [head] : []) };
  if (head.length > 0) source.unshift(head);
  return { compression, stream: source };
}

/** Connects `source` to `target` with error propagation both ways and returns `target`. */
export function pipeInto<T extends Duplex>(source: Readable, target: T): T {
  pipeline(source, target).catch(() => {
    // The error reaches whoever reads `target` (pipeline destroys it); nothing else to do here.
  });
  return target;
}

/** The uncompressed tar stream; bzip2/xz/zstd are refused with a clear 400. */
export function decompress(stream: Readable, compression: Compression): Readable {
  if (compression === 'none') return stream;
  if (compression === 'gzip') return pipeInto(stream, zlib.createGunzip());
  stream.destroy();
  throw new InvalidArgument(
    `unsupported compression: ${compression} (Strata accepts uncompressed or gzip-compressed tar archives)`,
  );
}

/** Counts the bytes passing through. */
export class ByteCounter extends Transform {
  bytes = 0;
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    callback(null, chunk);
  }
}

/** Serialises async sections (layer-changing operations) in call order. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}
