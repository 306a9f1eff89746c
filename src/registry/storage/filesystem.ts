import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { isErrnoCode } from '../../common/errors.js';
import { alignedBuffer, type DigestHandle, receiveToFile } from '../../native/index.js';
import {
  type FileInfo,
  type FileWriter,
  PathNotFoundError,
  type SocketBody,
  type StorageDriver,
} from './driver.js';

/** Big reads and writes: blob transfers are the hot path, and 1 MiB buffers halve the syscalls of 64 KiB. */
const STREAM_BUFFER = 1 << 20;
/**
 * An upload's data is synced (fdatasync, on the pool, while more arrives) each time this much more
 * has been written: the fsync before the blob appears then waits for the last few MiB rather than for
 * the whole layer. Measured here for 40 MiB arriving at ~500 MB/s: final fsync 34 ms without,
 * 25 ms with sync_file_range hints, 0.2 ms with these syncs. The addon's receiveToFile does the same.
 */
const WRITEBACK_STEP = 8 << 20;
/**
 * Size of the writes an upload's data is gathered into. Measured in bench/registry-server: 256 KiB beat
 * both 64 KiB (a pool round trip per body piece) and 1 MiB (as large as the stream's buffer, so the
 * socket stalls while each write runs).
 */
const WRITE_BATCH = 256 << 10;
/**
 * With `directIo`, upload data is written with O_DIRECT where the file system allows it, in whole blocks
 * of this size at aligned offsets from aligned memory.
 * Off by default, as measured on these machines (200 MiB, src/native receiveToFile and node:fs): the
 * write + fsync costs the same wall time either way (the fsync waits for the host to flush, ~0.7 ms per
 * MiB), buffered writes cost little CPU once memory has been used before, and a pull right after a push
 * then reads from the page cache (10 ms) instead of the disk (240 ms, 200 ms of it CPU filling the cache).
 * Direct I/O suits a store whose blobs are rarely read back on the same host.
 */
const DIRECT_ALIGN = 4096;
/** Size of a direct write: 1 MiB halves the device round trips of 256 KiB (1.0 s vs 1.5 s per GiB). */
const DIRECT_WRITE_BATCH = 1 << 20;
/** Buffers `copyTo` cycles through: one being read ahead while the others drain into the socket. */
const COPY_BUFFERS = 4;

/** The storage driver on a local directory. Atomic replace and move are rename(2) in one file system. */
export class FilesystemDriver implements StorageDriver {
  readonly root: string;
  /** Whether upload data goes around the page cache (O_DIRECT); turned off when the file system refuses. */
  private directIo: boolean;

  constructor(root: string, options: { directIo?: boolean } = {}) {
    this.root = path.resolve(root);
    this.directIo = options.directIo ?? false;
  }

  private fullPath(logical: string): string {
    // Paths are built from validated identifiers; this guards against a bug turning into a traversal.
    if (!logical.startsWith('/') || logical.includes('\0'))
      throw new Error(`invalid storage path: ${logical}`);
    const segments = logical.split('/').slice(1);
    if (logical !== '/' && segments.some((s) => s === '' || s === '.' || s === '..')) {
      throw new Error(`invalid storage path: ${logical}`);
    }
    return path.join(this.root, logical);
  }

  async getContent(logical: string): Promise<Buffer> {
    try {
      return await fsp.readFile(this.fullPath(logical));
    } catch (err) {
      throw mapNotFound(err, logical);
    }
  }

  async putContent(
    logical: string,
    content: Buffer | string,
    options: { durable?: boolean } = {},
  ): Promise<void> {
    const file = this.fullPath(logical);
    const dir = path.dirname(file);
    await fsp.mkdir(dir, { recursive: true });
    const tmp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
    const handle = await fsp.open(tmp, 'wx', 0o644);
    try {
      await handle.writeFile(content);
      if (options.durable ?? true) await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  async reader(logical: string, offset = 0, length?: number): Promise<Readable> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.fullPath(logical), 'r');
    } catch (err) {
      throw mapNotFound(err, logical);
    }
    if (length === 0) {
      await handle.close();
      return Readable.from([]);
    }
    return handle.createReadStream({
      start: offset,
      end: length === undefined ? undefined : offset + length - 1,
      highWaterMark: STREAM_BUFFER,
      autoClose: true,
    });
  }

  async openFile(logical: string): Promise<fsp.FileHandle> {
    try {
      return await fsp.open(this.fullPath(logical), 'r');
    } catch (err) {
      throw mapNotFound(err, logical);
    }
  }

  /**
   * Serves a range with a few reused buffers, reading the next one while the socket sends. A read
   * stream allocates a fresh buffer per chunk, and the garbage collection that churn causes (once the
   * registry's modules fill the heap) cut single-client pulls to a quarter of this.
   */
  async copyTo(logical: string, offset: number, length: number, dest: Writable): Promise<void> {
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(this.fullPath(logical), 'r');
    } catch (err) {
      throw mapNotFound(err, logical);
    }
    const end = offset + length;
    const free = Array.from({ length: COPY_BUFFERS }, () =>
      Buffer.allocUnsafeSlow(Math.min(STREAM_BUFFER, length || 1)),
    );
    const waiting: (() => void)[] = [];
    let failure: Error | undefined;
    const wakeAll = (): void => {
      for (const wake of waiting.splice(0)) wake();
    };
    const onClose = (): void => {
      if (!dest.writableFinished) failure ??= new Error('the client went away');
      wakeAll();
    };
    dest.on('close', onClose);
    type Chunk = (typeof free)[number];
    const take = async (): Promise<Chunk> => {
      while (free.length === 0 && failure === undefined) {
        await new Promise<void>((resolve) => waiting.push(resolve));
      }
      if (failure !== undefined) throw failure;
      return free.pop() as Chunk;
    };
    const readAt = async (position: number): Promise<{ buf: Chunk; bytesRead: number }> => {
      const buf = await take();
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.length, end - position), position);
      if (bytesRead === 0) throw new Error(`${logical} is shorter than expected`);
      return { buf, bytesRead };
    };
    let next: Promise<{ buf: Chunk; bytesRead: number }> | null = null;
    try {
      let position = offset;
      const readAhead = (): Promise<{ buf: Chunk; bytesRead: number }> | null => {
        if (position >= end) return null;
        const promise = readAt(position);
        // Handled here so a failure while the loop waits on the socket is not an unhandled rejection.
        promise.catch(() => undefined);
        return promise;
      };
      next = readAhead();
      while (next !== null) {
        const { buf, bytesRead } = await next;
        position += bytesRead;
        next = readAhead();
        if (failure !== undefined) throw failure;
        const flushed = dest.write(buf.subarray(0, bytesRead), (err) => {
          if (err) failure ??= err;
          free.push(buf);
          wakeAll();
        });
        if (!flushed) await drainedOrClosed(dest);
        if (failure !== undefined) throw failure;
      }
      dest.end();
    } finally {
      // A read ahead still in flight must settle before its file handle closes.
      await next?.catch(() => undefined);
      dest.off('close', onClose);
      await handle.close();
    }
  }

  async writer(
    logical: string,
    append: boolean,
    observe?: (data: Buffer) => Promise<void>,
  ): Promise<FileWriter> {
    const file = this.fullPath(logical);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const handle = await fsp.open(file, append ? 'a' : 'w', 0o644);
    let direct: fsp.FileHandle | null = null;
    let initialSize = 0;
    try {
      initialSize = append ? (await handle.stat()).size : 0;
      direct = await this.openDirect(file, fs.constants.O_WRONLY);
    } catch (err) {
      await handle.close();
      throw err;
    }
    const stream = new AppendStream(handle, direct, initialSize, observe);
    let closed = false;
    const release = async (keepStaged: boolean): Promise<void> => {
      if (closed) return;
      closed = true;
      if (!stream.destroyed) stream.destroy();
      await stream.settled();
      try {
        if (keepStaged) await stream.writeStaged();
      } finally {
        stream.releaseBuffer();
        await direct?.close();
        await handle.close();
      }
    };
    const close = (): Promise<void> => release(true);
    return {
      stream,
      size: () => initialSize + stream.bytesWritten,
      commit: async () => {
        await stream.settled();
        await handle.sync();
        await close();
      },
      cancel: async () => {
        await release(false);
        await fsp.rm(file, { force: true });
      },
      close,
    };
  }

  async receive(
    logical: string,
    append: boolean,
    body: SocketBody,
    digest: DigestHandle | null,
  ): Promise<number> {
    if (receiveToFile === undefined) throw new Error('receive needs the native addon');
    const receive = receiveToFile;
    const file = this.fullPath(logical);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const handle = await fsp.open(file, append ? 'a' : 'w', 0o644);
    let direct: fsp.FileHandle | null = null;
    try {
      const initialSize = append ? (await handle.stat()).size : 0;
      direct = await this.openDirect(file, fs.constants.O_WRONLY);
      const prefix = body.takePrefix();
      if (body.length !== null && prefix.length > body.length)
        throw new Error('the request body is longer than its Content-Length');
      // -1: a chunked body, decoded by the addon up to its last chunk.
      const length = body.length === null ? -1 : body.length - prefix.length;
      try {
        const written = await receive(
          body.fd,
          handle.fd,
          direct?.fd ?? -1,
          initialSize,
          prefix,
          length,
          digest,
          body.idleMs,
          body.cancel,
        );
        return initialSize + written;
      } catch (err) {
        // A malformed body is refused whole: what it appended goes (an interrupted one stays, to resume).
        if (isErrnoCode(err, 'EPROTO')) await handle.truncate(initialSize);
        throw err;
      }
    } finally {
      await direct?.close();
      await handle.close();
    }
  }

  /**
   * The file opened once more with O_DIRECT, or null where that cannot work: no aligned buffers (an
   * addon without alignedBuffer), or a file system without direct I/O (tmpfs says EINVAL), remembered.
   */
  private async openDirect(file: string, flags: number): Promise<fsp.FileHandle | null> {
    if (!this.directIo || alignedBuffer === undefined) return null;
    try {
      return await fsp.open(file, flags | fs.constants.O_DIRECT);
    } catch (err) {
      if (isErrnoCode(err, 'EINVAL') || isErrnoCode(err, 'EOPNOTSUPP')) {
        this.directIo = false;
        return null;
      }
      throw err;
    }
  }

  async stat(logical: string): Promise<FileInfo> {
    try {
      const st = await fsp.stat(this.fullPath(logical));
      return { path: logical, size: st.size, modTime: st.mtime, isDir: st.isDirectory() };
    } catch (err) {
      throw mapNotFound(err, logical);
    }
  }

  async list(logical: string): Promise<string[]> {
    try {
      const names = await fsp.readdir(this.fullPath(logical));
      // Temporary files of putContent are not content.
      return names.filter((n) => !(n.startsWith('.') && n.endsWith('.tmp')));
    } catch (err) {
      throw mapNotFound(err, logical);
    }
  }

  async move(sourceLogical: string, destLogical: string): Promise<void> {
    const dest = this.fullPath(destLogical);
    await fsp.mkdir(path.dirname(dest), { recursive: true });
    try {
      await fsp.rename(this.fullPath(sourceLogical), dest);
    } catch (err) {
      throw mapNotFound(err, sourceLogical);
    }
    await fsyncDir(path.dirname(dest));
  }

  async delete(logical: string): Promise<void> {
    const file = this.fullPath(logical);
    try {
      await fsp.lstat(file);
    } catch (err) {
      throw mapNotFound(err, logical);
    }
    await fsp.rm(file, { recursive: true, force: true });
  }
}

/**
 * Appends to an open file in writes of up to WRITE_BATCH bytes. Request bodies arrive in pieces of at
 * most 64 KiB; handing each to the thread pool on its own costs a wake-up of a pool thread and of the
 * event loop per piece, so pieces are copied into a staging buffer and written when it is full (or at
 * the end). Two staging buffers take turns: one fills while the other is hashed and written.
 *
 * With `direct` (the file opened a second time with O_DIRECT), whole blocks bypass the page cache: see
 * DIRECT_ALIGN. A batch starts on a block boundary (the first one of a chunk appended at an odd offset
 * is cut short to reach it), so only a chunk's last partial block goes through the page cache.
 * Without it, each few MiB are synced to the disk as they arrive (WRITEBACK_STEP).
 *
 * Bytes still staged when the stream is destroyed are not written by the stream: `writeStaged` keeps
 * them (an interrupted chunk), and a resumed upload continues from the file's size.
 */
class AppendStream extends Writable {
  /** Bytes written to the file, from `startOffset`. */
  bytesWritten = 0;
  private staged: Buffer | null = null;
  private stagedBytes = 0;
  private spare: Buffer | null = null;
  /** Bytes handed to writes (finished or running), from `startOffset`: where the staged bytes go. */
  private queued = 0;
  private inFlight: Promise<void> | null = null;
  private failure: Error | null = null;
  private writebackFrom: number;
  private writeback: Promise<void> | null = null;

  constructor(
    private readonly handle: fsp.FileHandle,
    private readonly direct: fsp.FileHandle | null,
    private readonly startOffset: number,
    private readonly observe: ((data: Buffer) => Promise<void>) | undefined,
  ) {
    super({ highWaterMark: STREAM_BUFFER });
    this.writebackFrom = startOffset;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.failure !== null) {
      callback(this.failure);
      return;
    }
    let offset = 0;
    const copyRest = (): void => {
      while (offset < chunk.length) {
        this.staged ??= this.spare ?? takeStagingBuffer();
        if (this.staged === this.spare) this.spare = null;
        const limit = this.batchLimit();
        const copied = chunk.copy(
          this.staged,
          this.stagedBytes,
          offset,
          offset + Math.min(chunk.length - offset, limit - this.stagedBytes),
        );
        this.stagedBytes += copied;
        offset += copied;
        if (this.stagedBytes === limit) {
          this.writeStagedBatch().then(copyRest, callback);
          return;
        }
      }
      callback();
    };
    copyRest();
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.writeStagedBatch()
      .then(() => this.waitForWrite())
      .then(() => callback(), callback);
  }

  /** Resolves once no write or writeback request is running on the file descriptors. */
  async settled(): Promise<void> {
    for (let pending = this.inFlight ?? this.writeback; pending !== null; ) {
      await pending;
      pending = this.inFlight ?? this.writeback;
    }
  }

  /** After the stream was destroyed and settled: writes what was received but still staged. */
  async writeStaged(): Promise<void> {
    if (this.staged === null || this.stagedBytes === 0) return;
    await writeAll(this.handle, this.staged.subarray(0, this.stagedBytes), this.startOffset + this.queued);
    this.bytesWritten += this.stagedBytes;
    this.queued += this.stagedBytes;
    this.stagedBytes = 0;
  }

  /** Hands the staging buffers back for other uploads; only once nothing is in flight (`settled`). */
  releaseBuffer(): void {
    for (const buffer of [this.staged, this.spare]) if (buffer !== null) releaseStagingBuffer(buffer);
    this.staged = null;
    this.spare = null;
    this.stagedBytes = 0;
  }

  /** How many bytes the batch being staged may hold: up to the next block boundary when unaligned. */
  private batchLimit(): number {
    if (this.direct === null) return WRITE_BATCH;
    const misalignment = (this.startOffset + this.queued) % DIRECT_ALIGN;
    return misalignment === 0 ? DIRECT_WRITE_BATCH : DIRECT_ALIGN - misalignment;
  }

  /** Waits for the previous batch's write, then starts this one's without waiting for it. */
  private async writeStagedBatch(): Promise<void> {
    await this.waitForWrite();
    // Once destroyed, nothing new starts: what is staged is `writeStaged`'s to keep or drop.
    if (this.destroyed) throw new Error('the upload stream was closed');
    const buffer = this.staged;
    const length = this.stagedBytes;
    if (buffer === null || length === 0) return;
    this.staged = null;
    this.stagedBytes = 0;
    const at = this.startOffset + this.queued;
    this.queued += length;
    this.inFlight = this.writeBatch(buffer, length, at).then(
      () => {
        this.inFlight = null;
      },
      (err: Error) => {
        this.inFlight = null;
        this.failure ??= err;
      },
    );
  }

  private async waitForWrite(): Promise<void> {
    if (this.inFlight !== null) await this.inFlight;
    if (this.failure !== null) throw this.failure;
  }

  /** Hashes and writes one batch at the same time (both only read it), then recycles its buffer. */
  private async writeBatch(buffer: Buffer, length: number, at: number): Promise<void> {
    const data = buffer.subarray(0, length);
    await Promise.all([this.observe?.(data), this.writeAt(data, at)]);
    this.bytesWritten += length;
    if (this.spare === null) this.spare = buffer;
    else releaseStagingBuffer(buffer);
    this.startWriteback();
  }

  private async writeAt(data: Buffer, at: number): Promise<void> {
    const blocks =
      this.direct !== null && at % DIRECT_ALIGN === 0 ? data.length - (data.length % DIRECT_ALIGN) : 0;
    if (blocks > 0 && this.direct !== null) {
      const { bytesWritten } = await this.direct.write(data, 0, blocks, at);
      if (bytesWritten !== blocks) throw new Error(`short write: ${bytesWritten} of ${blocks} bytes`);
    }
    // The rest goes through the page cache.
    if (blocks < data.length) await writeAll(this.handle, data.subarray(blocks), at + blocks);
  }

  private startWriteback(): void {
    const end = this.startOffset + this.bytesWritten;
    if (this.direct !== null || this.writeback !== null) return;
    if (end - this.writebackFrom < WRITEBACK_STEP) return;
    this.writebackFrom = end;
    // Only a head start: a failure here is the final fsync's to report.
    this.writeback = this.handle
      .datasync()
      .catch(() => undefined)
      .finally(() => {
        this.writeback = null;
      });
  }
}

/** Writes all of `data` at `position` (explicit: the file's other descriptor moves no shared offset). */
async function writeAll(handle: fsp.FileHandle, data: Buffer, position: number): Promise<void> {
  for (let offset = 0; offset < data.length; ) {
    const { bytesWritten } = await handle.write(data, offset, data.length - offset, position + offset);
    if (bytesWritten === 0) throw new Error('write wrote nothing');
    offset += bytesWritten;
  }
}

/**
 * Staging buffers of finished uploads, reused by the next ones: a fresh buffer per request would be
 * external memory for V8 to account for and collect, on top of the request's own chunks. Aligned
 * for O_DIRECT when the addon can make them so.
 */
const stagingBuffers: Buffer[] = [];
const STAGING_BUFFERS_KEPT = 32;

function takeStagingBuffer(): Buffer {
  return (
    stagingBuffers.pop() ?? alignedBuffer?.(DIRECT_WRITE_BATCH) ?? Buffer.allocUnsafeSlow(DIRECT_WRITE_BATCH)
  );
}

function releaseStagingBuffer(buffer: Buffer): void {
  if (stagingBuffers.length < STAGING_BUFFERS_KEPT) stagingBuffers.push(buffer);
}

function drainedOrClosed(dest: Writable): Promise<void> {
  return new Promise((resolve) => {
    if (dest.destroyed) {
      resolve();
      return;
    }
    const done = (): void => {
      dest.off('drain', done);
      dest.off('close', done);
      resolve();
    };
    dest.on('drain', done);
    dest.on('close', done);
  });
}

function mapNotFound(err: unknown, logical: string): unknown {
  if (isErrnoCode(err, 'ENOENT') || isErrnoCode(err, 'ENOTDIR')) return new PathNotFoundError(logical);
  return err;
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await fsp.open(dir, fs.constants.O_RDONLY);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}
