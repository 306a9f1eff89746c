import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { isErrnoCode } from '../../common/errors.js';
import { type FileInfo, type FileWriter, PathNotFoundError, type StorageDriver } from './driver.js';

/** Big reads and writes: blob transfers are the hot path, and 1 MiB buffers halve the syscalls of 64 KiB. */
const STREAM_BUFFER = 1 << 20;
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

  async writer(logical: string, append: boolean): Promise<FileWriter> {
    const file = this.fullPath(logical);
    await fsp.mkdir(path.dirname(file), { recursive: true });
    const handle = await fsp.open(file, append ? 'a' : 'w', 0o644);
    const initialSize = append ? (await handle.stat()).size : 0;
    const stream = handle.createWriteStream({ autoClose: false, highWaterMark: STREAM_BUFFER });
    let closed = false;
    const close = async (): Promise<void> => {
      if (closed) return;
      closed = true;
      if (!stream.destroyed) stream.destroy();
      await handle.close();
    };
    return {
      stream,
      size: () => initialSize + stream.bytesWritten,
      commit: async () => {
        await handle.sync();
        await close();
      },
      cancel: async () => {
        await close();
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
