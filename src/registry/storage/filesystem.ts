import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { isErrnoCode } from '../../common/errors.js';
import { syncFileRangeAsync } from '../../native/index.js';
import { type FileInfo, type FileWriter, PathNotFoundError, type StorageDriver } from './driver.js';

/** Big reads and writes: blob transfers are the hot path, and 1 MiB buffers halve the syscalls of 64 KiB. */
const STREAM_BUFFER = 1 << 20;
/**
 * An upload's data is handed to the disk each time this much more has arrived: the fsync before the
 * blob appears then waits for the last few MiB rather than for the whole layer.
 */
const WRITEBACK_STEP = 8 << 20;
/**
 * Size of the writes an upload's data is gathered into. Measured in bench/registry-server: 256 KiB beat
 * both 64 KiB (a pool round trip per body piece) and 1 MiB (as large as the stream's buffer, so the
 * socket stalls while each write runs).
 */
const WRITE_BATCH = 256 << 10;
/** Buffers `copyTo` cycles through: one being read ahead while the others drain into the socket. */
const COPY_BUFFERS = 4;

/** The storage driver on a local directory. Atomic replace and move are rename(2) in one file system. */
export class FilesystemDriver implements StorageDriver {
  readonly root: string;

  constructor(root: string) {
    this.root = path.resolve(root);
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
    const initialSize = append ? (await handle.stat()).size : 0;
    const stream = new AppendStream(handle, initialSize, observe);
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
 * Appends to an open file in writes of WRITE_BATCH bytes, and asks the kernel to start writing each
 * few MiB back as it arrives (see WRITEBACK_STEP). Request bodies arrive in pieces of at most 64 KiB;
 * handing each to the thread pool on its own costs a wake-up of a pool thread and of the event loop
 * per piece, so pieces are copied into one staging buffer and written when it is full (or at the end).
 * Bytes still staged when the stream is destroyed are not written: the file holds whole writes only,
 * and a resumed upload continues from its size.
 */
class AppendStream extends Writable {
  bytesWritten = 0;
  private staged: Buffer | null = null;
  private stagedBytes = 0;
  private writebackFrom: number;
  private writeback: Promise<void> | null = null;
  private inFlight: Promise<void> | null = null;

  constructor(
    private readonly handle: fsp.FileHandle,
    private readonly startOffset: number,
    private readonly observe: ((data: Buffer) => Promise<void>) | undefined,
  ) {
    super({ highWaterMark: STREAM_BUFFER });
    this.writebackFrom = startOffset;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.stagedBytes === 0 && chunk.length >= WRITE_BATCH) {
      this.writeOut(chunk, callback);
      return;
    }
    let offset = 0;
    this.staged ??= takeStagingBuffer();
    const staged = this.staged;
    const copyRest = (): void => {
      while (offset < chunk.length) {
        const copied = chunk.copy(staged, this.stagedBytes, offset);
        this.stagedBytes += copied;
        offset += copied;
        if (this.stagedBytes === WRITE_BATCH) {
          this.writeOut(staged, (err) => (err ? callback(err) : copyRest()));
          return;
        }
      }
      callback();
    };
    copyRest();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.staged === null || this.stagedBytes === 0) callback();
    else this.writeOut(this.staged.subarray(0, this.stagedBytes), callback);
  }

  /** Resolves once no write or writeback request is running on the file descriptor. */
  async settled(): Promise<void> {
    for (let pending = this.inFlight ?? this.writeback; pending !== null; ) {
      await pending;
      pending = this.inFlight ?? this.writeback;
    }
  }

  /** After the stream was destroyed: writes what was received but still staged (an interrupted chunk). */
  async writeStaged(): Promise<void> {
    if (this.staged === null || this.stagedBytes === 0) return;
    const { bytesWritten } = await this.handle.write(this.staged, 0, this.stagedBytes, null);
    this.bytesWritten += bytesWritten;
    this.stagedBytes = 0;
  }

  /** Hands the staging buffer back for other uploads; only once nothing is in flight (`settled`). */
  releaseBuffer(): void {
    if (this.staged !== null) releaseStagingBuffer(this.staged);
    this.staged = null;
    this.stagedBytes = 0;
  }

  private writeOut(data: Buffer, callback: (error?: Error | null) => void): void {
    const fromStage = this.staged !== null && data.buffer === this.staged.buffer;
    const observed = this.observe?.(data);
    const written =
      observed === undefined
        ? this.handle.write(data, 0, data.length, null)
        : observed.then(() => this.handle.write(data, 0, data.length, null));
    this.inFlight = written.then(
      ({ bytesWritten }) => {
        this.inFlight = null;
        this.bytesWritten += bytesWritten;
        if (fromStage) this.stagedBytes = 0;
        if (bytesWritten !== data.length) {
          callback(new Error(`short write: ${bytesWritten} of ${data.length} bytes`));
          return;
        }
        this.startWriteback();
        callback();
      },
      (err: Error) => {
        this.inFlight = null;
        callback(err);
      },
    );
  }

  private startWriteback(): void {
    const end = this.startOffset + this.bytesWritten;
    if (syncFileRangeAsync === undefined || this.writeback !== null) return;
    if (end - this.writebackFrom < WRITEBACK_STEP) return;
    const from = this.writebackFrom;
    this.writebackFrom = end;
    // Only a hint: a failure here changes nothing about durability, which the final fsync provides.
    this.writeback = syncFileRangeAsync(this.handle.fd, from, end - from)
      .catch(() => undefined)
      .finally(() => {
        this.writeback = null;
      });
  }
}

/**
 * Staging buffers of finished uploads, reused by the next ones: a fresh 1 MiB buffer per request
 * would be external memory for V8 to account for and collect, on top of the request's own chunks.
 */
const stagingBuffers: Buffer[] = [];
const STAGING_BUFFERS_KEPT = 16;

function takeStagingBuffer(): Buffer {
  return stagingBuffers.pop() ?? Buffer.allocUnsafeSlow(WRITE_BATCH);
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
