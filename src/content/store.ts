import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, digestHex, isDigest, newHash } from '../common/digest.js';
import { InvalidArgument, isErrnoCode, NotFound } from '../common/errors.js';
import { ensureDir, fsyncDirSync } from '../common/fsutil.js';

/**
 * Content-addressable blobs: layer tars (as they arrived, compressed or not), image configs and
 * manifests, named by their digest. The store does not know what a blob means.
 *
 * Lifecycle of a blob:
 *  1. Write: `ingest(stream, expected?)`, or `createWriter(expected?)` when the bytes come out of a
 *     pipeline (`await pipeline(src, gunzip, writer)`), then `writer.commit(expected?)`. Bytes go to
 *     `ingest/<id>` while they are hashed; on commit the digest and size are checked against what the
 *     caller expected, the file is fsynced and renamed to `blobs/sha256/<hex>`. A blob that does not
 *     match never becomes visible; `abort()` (or a failed commit) removes the partial file.
 *  2. Read: `openRead(digest, { start })` streams it, `readSmall(digest)` returns a bounded JSON blob.
 *  3. Delete: `delete(digest)` once nothing references it (the callers track references).
 * Committing a blob that already exists is a no-op that reports `created: false`.
 */
export interface BlobInfo {
  digest: Digest;
  size: number;
}

export interface CommitResult extends BlobInfo {
  /** False when an identical blob was already stored (nothing new was written). */
  created: boolean;
}

export interface ExpectedBlob {
  digest?: Digest;
  size?: number;
}

/** A blob being written: a Writable for the bytes, then `commit` or `abort`. */
export interface BlobWriter extends Writable {
  /** Bytes written so far. */
  readonly written: number;
  /** Call after the stream has finished (e.g. after `pipeline` resolved). */
  commit(expected?: ExpectedBlob): Promise<CommitResult>;
  abort(): Promise<void>;
}

export interface ContentStore {
  ingest(source: Readable, expected?: ExpectedBlob): Promise<CommitResult>;
  /** Stores a small in-memory blob (configs, manifests). */
  writeSmall(data: Buffer, expected?: ExpectedBlob): CommitResult;
  createWriter(expected?: ExpectedBlob): BlobWriter;
  has(digest: Digest): boolean;
  stat(digest: Digest): BlobInfo | null;
  openRead(digest: Digest, options?: { start?: number }): Readable;
  /** The whole blob, refused (400) when larger than `limit` (default 4 MiB). */
  readSmall(digest: Digest, limit?: number): Buffer;
  /** True when a blob was removed. */
  delete(digest: Digest): boolean;
  list(): BlobInfo[];
}

export const SMALL_BLOB_LIMIT = 4 * 1024 * 1024;

function checkExpected(expected: ExpectedBlob | undefined, digest: Digest, size: number): void {
  if (expected?.size !== undefined && expected.size !== size) {
    throw new InvalidArgument(`size mismatch: expected ${expected.size} bytes, got ${size}`);
  }
  if (expected?.digest !== undefined && expected.digest !== digest) {
    throw new InvalidArgument(`digest mismatch: expected ${expected.digest}, got ${digest}`);
  }
}

function checkAlgorithm(expected: ExpectedBlob | undefined): void {
  if (expected?.digest !== undefined && !expected.digest.startsWith('sha256:')) {
    throw new InvalidArgument(`unsupported digest algorithm: ${expected.digest}`);
  }
}

/** The file-system implementation under `<root>/content`. Only sha256 blobs are written. */
export class FileContentStore implements ContentStore {
  readonly root: string;
  private readonly blobDir: string;
  private readonly ingestDir: string;

  constructor(root: string) {
    this.root = path.join(root, 'content');
    this.blobDir = ensureDir(path.join(this.root, 'blobs', 'sha256'));
    this.ingestDir = ensureDir(path.join(this.root, 'ingest'));
  }

  private blobPath(digest: Digest): string {
    if (!isDigest(digest) || !digest.startsWith('sha256:')) {
      throw new InvalidArgument(`invalid digest: ${JSON.stringify(digest)}`);
    }
    return path.join(this.blobDir, digestHex(digest));
  }

  async ingest(source: Readable, expected?: ExpectedBlob): Promise<CommitResult> {
    const writer = this.createWriter(expected);
    try {
      await pipeline(source, writer);
    } catch (err) {
      await writer.abort();
      throw err;
    }
    return writer.commit(expected);
  }

  writeSmall(data: Buffer, expected?: ExpectedBlob): CommitResult {
    checkAlgorithm(expected);
    const digest: Digest = `sha256:${newHash('sha256').update(data).digest('hex')}`;
    checkExpected(expected, digest, data.length);
    const target = this.blobPath(digest);
    if (fs.existsSync(target)) return { digest, size: data.length, created: false };
    const tmp = path.join(this.ingestDir, `small-${randomBytes(12).toString('hex')}`);
    const fd = fs.openSync(tmp, 'wx', 0o644);
    try {
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return this.publish(tmp, digest, data.length);
  }

  /** Renames a verified, fsynced ingest file into place (or drops it when the blob already exists). */
  private publish(tmp: string, digest: Digest, size: number): CommitResult {
    const target = this.blobPath(digest);
    if (fs.existsSync(target)) {
      fs.rmSync(tmp, { force: true });
      return { digest, size, created: false };
    }
    try {
      fs.renameSync(tmp, target);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw err;
    }
    fsyncDirSync(this.blobDir);
    return { digest, size, created: true };
  }

  createWriter(expected?: ExpectedBlob): BlobWriter {
    checkAlgorithm(expected);
    const file = path.join(this.ingestDir, randomBytes(16).toString('hex'));
    return new FileBlobWriter(file, expected, (tmp, digest, size) => this.publish(tmp, digest, size));
  }

  has(digest: Digest): boolean {
    return fs.existsSync(this.blobPath(digest));
  }

  stat(digest: Digest): BlobInfo | null {
    try {
      return { digest, size: fs.statSync(this.blobPath(digest)).size };
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return null;
      throw err;
    }
  }

  openRead(digest: Digest, options: { start?: number } = {}): Readable {
    const file = this.blobPath(digest);
    // Open now so a missing blob is reported to the caller, not as a stream error later.
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) throw new NotFound(`blob ${digest} not found`);
      throw err;
    }
    return fs.createReadStream(file, { fd, start: options.start, highWaterMark: 1 << 20 });
  }

  readSmall(digest: Digest, limit = SMALL_BLOB_LIMIT): Buffer {
    const info = this.stat(digest);
    if (info === null) throw new NotFound(`blob ${digest} not found`);
    if (info.size > limit) {
      throw new InvalidArgument(`blob ${digest} is ${info.size} bytes, more than the ${limit} allowed`);
    }
    return fs.readFileSync(this.blobPath(digest));
  }

  delete(digest: Digest): boolean {
    try {
      fs.unlinkSync(this.blobPath(digest));
      return true;
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT')) return false;
      throw err;
    }
  }

  list(): BlobInfo[] {
    const out: BlobInfo[] = [];
    for (const name of fs.readdirSync(this.blobDir)) {
      const digest = `sha256:${name}`;
      if (!isDigest(digest)) continue;
      const info = this.stat(digest);
      if (info) out.push(info);
    }
    return out;
  }

  /** Removes partial writes older than `maxAgeMs` (left by a crash); returns how many. */
  removeStaleIngests(maxAgeMs: number): number {
    let removed = 0;
    const cutoff = Date.now() - maxAgeMs;
    for (const name of fs.readdirSync(this.ingestDir)) {
      const file = path.join(this.ingestDir, name);
      try {
        if (fs.statSync(file).mtimeMs < cutoff) {
          fs.rmSync(file, { force: true });
          removed++;
        }
      } catch {
        // removed concurrently
      }
    }
    return removed;
  }
}

class FileBlobWriter extends Writable implements BlobWriter {
  private fd: number | null = null;
  private readonly hash = newHash('sha256');
  private size = 0;
  private settled = false;

  constructor(
    private readonly file: string,
    private readonly expected: ExpectedBlob | undefined,
    private readonly publish: (tmp: string, digest: Digest, size: number) => CommitResult,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  get written(): number {
    return this.size;
  }

  override _construct(callback: (error?: Error | null) => void): void {
    fs.open(this.file, 'wx', 0o644, (err, fd) => {
      if (err) return callback(err);
      this.fd = fd;
      // Aborted while the file was being opened: do not leave it behind.
      if (this.settled) {
        this.closeFd();
        fs.rmSync(this.file, { force: true });
      }
      callback();
    });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    const max = this.expected?.size;
    if (max !== undefined && this.size + chunk.length > max) {
      callback(new InvalidArgument(`size mismatch: more than the expected ${max} bytes`));
      return;
    }
    this.hash.update(chunk);
    this.size += chunk.length;
    this.writeAll(chunk, 0, callback);
  }

  private writeAll(chunk: Buffer, offset: number, callback: (error?: Error | null) => void): void {
    fs.write(this.fd!, chunk, offset, chunk.length - offset, null, (err, n) => {
      if (err) return callback(err);
      if (offset + n < chunk.length) this.writeAll(chunk, offset + n, callback);
      else callback();
    });
  }

  /** Runs before 'finish': the bytes are on disk before anyone can commit them. */
  override _final(callback: (error?: Error | null) => void): void {
    const fd = this.fd!;
    fs.fsync(fd, (err) => {
      if (err) return callback(err);
      this.fd = null;
      fs.close(fd, callback);
    });
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.closeFd();
    callback(error);
  }

  private closeFd(): void {
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = null;
    }
  }

  async commit(expected?: ExpectedBlob): Promise<CommitResult> {
    if (this.settled) throw new Error('blob writer already committed or aborted');
    if (!this.writableFinished) {
      await this.abort();
      throw new Error('blob writer committed before its stream finished');
    }
    this.settled = true;
    const digest: Digest = `sha256:${this.hash.digest('hex')}`;
    try {
      checkExpected(this.expected, digest, this.size);
      checkExpected(expected, digest, this.size);
      return this.publish(this.file, digest, this.size);
    } catch (err) {
      this.closeFd();
      fs.rmSync(this.file, { force: true });
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.settled) return;
    this.settled = true;
    if (!this.closed) {
      // Destroying waits for a pending open; wait for it too, so the file is really gone after this.
      const closed = once(this, 'close').catch(() => undefined);
      if (!this.destroyed) this.destroy();
      await closed;
    }
    this.closeFd();
    fs.rmSync(this.file, { force: true });
  }
}
