import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, digestHex, isDigest, newHash } from '../common/digest.js';
import { Conflict, InvalidArgument, isErrnoCode, NotFound } from '../common/errors.js';
import { ensureDir, fsyncDirAsync, fsyncDirSync } from '../common/fsutil.js';

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

/**
 * A blob written by synchronous calls from one producer (a layer packed in one pass): `write` copies
 * small chunks into a 1 MiB batch and writes large ones at once; `digest()` is the sha256 of what was
 * written so far (call it after the last write); `commit` fsyncs, checks and renames into place like
 * `BlobWriter.commit` (cheap when a syncfs of the same file system just ran); `abort` removes it.
 */
export interface SyncBlobWriter {
  write(chunk: Buffer): void;
  digest(): Digest;
  readonly written: number;
  commit(expected?: ExpectedBlob): CommitResult;
  abort(): void;
}

/**
 * A resumable write of one expected blob under a stable name (`ingest/<ref>`), for downloads that may
 * be cut off: the bytes on disk survive a failed attempt (and a daemon restart), and the next
 * `openIngest` of the same ref continues after them.
 *
 * Lifecycle: `openIngest(ref, expected)` re-hashes what is already on disk (`size` says where to
 * resume) → one or more `append()` sessions, each a Writable (end it when the source is done, destroy
 * it when the source failed) → `commit()`: size and digest checked, fsync, rename into place; a
 * mismatch removes the data. Or `close({ keep })` to give up, keeping the bytes for a later attempt.
 * `follow()` reads the blob from its first byte while it is being written and ends once the commit
 * has verified the digest (it fails when the ingest is closed or the digest is wrong), so a consumer
 * such as an unpack runs alongside the download, on the same bytes, in one pass; `feed()` does the
 * same synchronously, handing each appended chunk to a function without copying it.
 * A ref is open at most once at a time (Conflict otherwise).
 */
export interface Ingest {
  readonly ref: string;
  readonly expected: Required<ExpectedBlob>;
  /** Bytes on disk (and hashed) so far. */
  readonly size: number;
  append(): Writable;
  /**
   * Hashes and writes `chunk` at the end before returning (a synchronous write to the page cache):
   * for sources that hand out bytes in a buffer they reuse, such as a socket read into one buffer.
   */
  appendSync(chunk: Buffer): void;
  commit(): Promise<CommitResult>;
  follow(): Readable;
  /**
   * Hands the blob's bytes from the first, in order, to `consume`: what is on disk first, then each
   * chunk synchronously as it is appended (borrowed: valid only during the call). Resolves once every
   * byte has been handed over and the digest verified; rejects when the ingest is closed or its digest
   * is wrong, when `consume` throws (with that error; the ingest goes on without it), or on `signal`.
   */
  feed(consume: (chunk: Buffer) => void, signal?: AbortSignal): Promise<void>;
  close(options?: { keep?: boolean }): Promise<void>;
}

export interface ContentStore {
  ingest(source: Readable, expected?: ExpectedBlob): Promise<CommitResult>;
  /** A resumable ingest of a blob whose digest and size are known in advance (see `Ingest`). */
  openIngest(ref: string, expected: Required<ExpectedBlob>): Promise<Ingest>;
  /** Stores a small in-memory blob (configs, manifests). */
  writeSmall(data: Buffer, expected?: ExpectedBlob): CommitResult;
  createWriter(expected?: ExpectedBlob): BlobWriter;
  createSyncWriter(): SyncBlobWriter;
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
  private readonly openIngests = new Set<string>();

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

  /**
   * Renames a verified, fsynced ingest file into place (or drops it when the blob already exists).
   * `syncDir: false` leaves the fsync of the blob directory to the caller (`fsyncDirAsync`).
   */
  private publish(tmp: string, digest: Digest, size: number, syncDir = true): CommitResult {
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
    if (syncDir) fsyncDirSync(this.blobDir);
    return { digest, size, created: true };
  }

  async openIngest(ref: string, expected: Required<ExpectedBlob>): Promise<Ingest> {
    checkAlgorithm(expected);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(ref)) {
      throw new InvalidArgument(`invalid ingest ref: ${JSON.stringify(ref)}`);
    }
    if (this.openIngests.has(ref)) throw new Conflict(`ingest ${ref} is in use`);
    this.openIngests.add(ref);
    try {
      return await FileIngest.open(path.join(this.ingestDir, ref), ref, expected, {
        publish: (tmp, digest, size) => this.publish(tmp, digest, size, false),
        syncBlobDir: () => fsyncDirAsync(this.blobDir),
        blobPath: (digest) => this.blobPath(digest),
        release: () => this.openIngests.delete(ref),
      });
    } catch (err) {
      this.openIngests.delete(ref);
      throw err;
    }
  }

  createWriter(expected?: ExpectedBlob): BlobWriter {
    checkAlgorithm(expected);
    const file = path.join(this.ingestDir, randomBytes(16).toString('hex'));
    return new FileBlobWriter(file, expected, (tmp, digest, size) => this.publish(tmp, digest, size));
  }

  createSyncWriter(): SyncBlobWriter {
    const file = path.join(this.ingestDir, randomBytes(16).toString('hex'));
    return new FileSyncBlobWriter(file, (tmp, digest, size) => this.publish(tmp, digest, size));
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

  /**
   * Removes partial writes untouched for `maxAgeMs`: left by a crash, or a pull that was never
   * resumed (`openIngest` keeps a failed download's bytes for the next attempt). Ingests open right
   * now are left alone. Returns how many were removed.
   */
  removeStaleIngests(maxAgeMs: number): number {
    let removed = 0;
    const cutoff = Date.now() - maxAgeMs;
    for (const name of fs.readdirSync(this.ingestDir)) {
      if (this.openIngests.has(name)) continue;
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

const BATCH = 1 << 20;

class FileSyncBlobWriter implements SyncBlobWriter {
  private fd: number | null;
  private readonly hash = newHash('sha256');
  private final: Digest | null = null;
  private size = 0;
  private readonly batch = Buffer.allocUnsafe(BATCH);
  private batched = 0;
  private settled = false;

  constructor(
    private readonly file: string,
    private readonly publish: (tmp: string, digest: Digest, size: number) => CommitResult,
  ) {
    this.fd = fs.openSync(file, 'wx', 0o644);
  }

  get written(): number {
    return this.size;
  }

  write(chunk: Buffer): void {
    if (this.settled || this.final !== null) throw new Error('blob writer already finished');
    this.hash.update(chunk);
    this.size += chunk.length;
    if (this.batched + chunk.length <= BATCH) {
      chunk.copy(this.batch, this.batched);
      this.batched += chunk.length;
      return;
    }
    this.flush();
    if (chunk.length >= BATCH / 2) this.writeAll(chunk);
    else {
      chunk.copy(this.batch, 0);
      this.batched = chunk.length;
    }
  }

  digest(): Digest {
    this.final ??= `sha256:${this.hash.digest('hex')}`;
    return this.final;
  }

  commit(expected?: ExpectedBlob): CommitResult {
    if (this.settled) throw new Error('blob writer already committed or aborted');
    const digest = this.digest();
    try {
      this.flush();
      fs.fsyncSync(this.fd!);
      fs.closeSync(this.fd!);
      this.fd = null;
      this.settled = true;
      checkExpected(expected, digest, this.size);
      return this.publish(this.file, digest, this.size);
    } catch (err) {
      this.settled = false;
      this.abort();
      throw err;
    }
  }

  abort(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.fd !== null) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = null;
    }
    fs.rmSync(this.file, { force: true });
  }

  private flush(): void {
    if (this.batched === 0) return;
    this.writeAll(this.batch.subarray(0, this.batched));
    this.batched = 0;
  }

  private writeAll(data: Buffer): void {
    let offset = 0;
    while (offset < data.length) offset += fs.writeSync(this.fd!, data, offset, data.length - offset);
  }
}

interface LiveFollower {
  /** Bytes just written at `start` (the follower's position when it is in step). */
  deliver(chunks: Buffer[], start: number): void;
  /** The ingest was committed or closed. */
  wake(): void;
}

/** A `feed` consumer that has caught up with the writer. */
interface IngestTap {
  consume(chunk: Buffer): void;
  /** Bytes handed over so far. */
  position: number;
  settle(err: Error | null): void;
}

interface IngestHooks {
  /** The rename into place, without the directory's fsync: `syncBlobDir` does it off the event loop. */
  publish(tmp: string, digest: Digest, size: number): CommitResult;
  syncBlobDir(): Promise<void>;
  blobPath(digest: Digest): string;
  release(): void;
}

const READ_CHUNK = 1 << 20;
const COPY_PIECE = 64 * 1024;

/** `Ingest` on a file under `ingest/`; appends at the end, followers read through their own fd. */
class FileIngest implements Ingest {
  private fd: number | null;
  private readonly hash = newHash('sha256');
  private bytes: number;
  private state: 'open' | 'committed' | 'closed' = 'open';
  /** The digest matched (set by `commit` before its fsync): readers may end. */
  private verified = false;
  private failure: Error | null = null;
  private appending = false;
  private committedPath: string | null = null;
  private readonly waiters = new Set<() => void>();
  /** Followers that have read all there was and take the next bytes straight from the writer. */
  private readonly live = new Set<LiveFollower>();
  private readonly taps = new Set<IngestTap>();

  private constructor(
    private readonly file: string,
    readonly ref: string,
    readonly expected: Required<ExpectedBlob>,
    private readonly hooks: IngestHooks,
    fd: number,
    size: number,
  ) {
    this.fd = fd;
    this.bytes = size;
  }

  static async open(
    file: string,
    ref: string,
    expected: Required<ExpectedBlob>,
    hooks: IngestHooks,
  ): Promise<FileIngest> {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    try {
      let size = fs.fstatSync(fd).size;
      if (size > expected.size) {
        // Longer than the blob can be: not a prefix of it. Start again.
        fs.ftruncateSync(fd, 0);
        size = 0;
      }
      const ingest = new FileIngest(file, ref, expected, hooks, fd, 0);
      await ingest.rehash(size);
      return ingest;
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** Feeds the bytes already on disk to the hash (the state of a hash cannot be saved). */
  private async rehash(size: number): Promise<void> {
    const buf = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(size, 1)));
    while (this.bytes < size) {
      const want = Math.min(buf.length, size - this.bytes);
      const n = await new Promise<number>((resolve, reject) =>
        fs.read(this.fd!, buf, 0, want, this.bytes, (err, read) => (err ? reject(err) : resolve(read))),
      );
      if (n === 0) break;
      this.hash.update(buf.subarray(0, n));
      this.bytes += n;
    }
  }

  get size(): number {
    return this.bytes;
  }

  private notify(): void {
    const waiting = [...this.waiters];
    this.waiters.clear();
    for (const wake of waiting) wake();
  }

  /** Verified, committed or closed: every follower, live or waiting, looks at the new state. */
  private settle(): void {
    const live = [...this.live];
    this.live.clear();
    for (const follower of live) follower.wake();
    const taps = [...this.taps];
    this.taps.clear();
    const failure = this.verified ? null : (this.failure ?? new Error(`ingest ${this.ref} was closed`));
    for (const tap of taps) tap.settle(failure);
    this.notify();
  }

  /** Hands `chunk`, written at `start`, to the taps (each takes only the bytes it has not had). */
  private tapChunk(chunk: Buffer, start: number): void {
    for (const tap of [...this.taps]) {
      const skip = tap.position - start;
      if (skip >= chunk.length) continue;
      try {
        if (skip < 0) throw new Error(`ingest ${this.ref}: bytes skipped by a feed`);
        tap.position += chunk.length - skip;
        tap.consume(skip === 0 ? chunk : chunk.subarray(skip));
      } catch (err) {
        this.taps.delete(tap);
        tap.settle(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  appendSync(chunk: Buffer): void {
    if (this.state !== 'open' || this.fd === null) throw new Error(`ingest ${this.ref} is ${this.state}`);
    if (this.appending) throw new Conflict(`ingest ${this.ref} already has a writer`);
    if (this.bytes + chunk.length > this.expected.size) {
      throw new InvalidArgument(`size mismatch: more than the expected ${this.expected.size} bytes`);
    }
    this.hash.update(chunk);
    const start = this.bytes;
    let offset = 0;
    while (offset < chunk.length) {
      offset += fs.writeSync(this.fd, chunk, offset, chunk.length - offset, start + offset);
    }
    this.bytes += chunk.length;
    this.notify();
    if (this.taps.size > 0) this.tapChunk(chunk, start);
    if (this.live.size > 0) {
      // The caller reuses its buffer: live followers get their own copy, in pieces of at most 64 KiB.
      // A fresh 1 MiB buffer per socket read cost a quarter of a pull's CPU time (new memory from
      // mmap, faulted in page by page, unmapped again); small ones come from malloc's reused heap.
      const pieces: Buffer[] = [];
      for (let at = 0; at < chunk.length; at += COPY_PIECE) {
        const end = Math.min(chunk.length, at + COPY_PIECE);
        const piece = Buffer.allocUnsafeSlow(end - at);
        chunk.copy(piece, 0, at, end);
        pieces.push(piece);
      }
      for (const follower of [...this.live]) follower.deliver(pieces, start);
    }
  }

  append(): Writable {
    if (this.state !== 'open') throw new Error(`ingest ${this.ref} is ${this.state}`);
    if (this.appending) throw new Conflict(`ingest ${this.ref} already has a writer`);
    this.appending = true;
    const write = (chunks: Buffer[], callback: (error?: Error | null) => void): void => {
      if (this.state !== 'open' || this.fd === null) {
        callback(new Error(`ingest ${this.ref} is ${this.state}`));
        return;
      }
      const length = chunks.reduce((sum, c) => sum + c.length, 0);
      if (this.bytes + length > this.expected.size) {
        callback(new InvalidArgument(`size mismatch: more than the expected ${this.expected.size} bytes`));
        return;
      }
      for (const chunk of chunks) this.hash.update(chunk);
      const start = this.bytes;
      this.writeAll(chunks, start, length, (err) => {
        if (!err) {
          let at = start;
          for (const chunk of chunks) {
            this.tapChunk(chunk, at);
            at += chunk.length;
          }
          for (const follower of [...this.live]) follower.deliver(chunks, start);
        }
        callback(err);
      });
    };
    return new Writable({
      highWaterMark: 1 << 20,
      write: (chunk: Buffer, _encoding, callback) => write([chunk], callback),
      writev: (chunks, callback) =>
        write(
          chunks.map((c) => c.chunk as Buffer),
          callback,
        ),
      destroy: (error, callback) => {
        this.appending = false;
        callback(error);
      },
      final: (callback) => {
        this.appending = false;
        callback();
      },
    });
  }

  private writeAll(
    chunks: Buffer[],
    position: number,
    remaining: number,
    callback: (error?: Error | null) => void,
  ): void {
    fs.writev(this.fd!, chunks, position, (err, written) => {
      if (err) return callback(err);
      this.bytes += written;
      this.notify();
      if (written >= remaining) return callback();
      // A short write: continue after what was written.
      let skip = written;
      const rest: Buffer[] = [];
      for (const chunk of chunks) {
        if (skip >= chunk.length) {
          skip -= chunk.length;
          continue;
        }
        rest.push(skip > 0 ? chunk.subarray(skip) : chunk);
        skip = 0;
      }
      this.writeAll(rest, position + written, remaining - written, callback);
    });
  }

  async commit(): Promise<CommitResult> {
    if (this.state !== 'open') throw new Error(`ingest ${this.ref} is ${this.state}`);
    if (this.appending) throw new Error(`ingest ${this.ref} still has a writer`);
    const fd = this.fd!;
    if (this.bytes !== this.expected.size) {
      const error = new InvalidArgument(
        `size mismatch: expected ${this.expected.size} bytes, got ${this.bytes}`,
      );
      this.finish(error, this.bytes < this.expected.size);
      throw error;
    }
    const digest: Digest = `sha256:${this.hash.digest('hex')}`;
    if (digest !== this.expected.digest) {
      const error = new InvalidArgument(`digest mismatch: expected ${this.expected.digest}, got ${digest}`);
      this.finish(error, false);
      throw error;
    }
    // The bytes are the blob's: readers may finish (an unpack commits only after its own flush).
    this.verified = true;
    this.settle();
    let result: CommitResult;
    try {
      await new Promise<void>((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
      result = this.hooks.publish(this.file, digest, this.bytes);
      this.committedPath = this.hooks.blobPath(digest);
      this.state = 'committed';
      this.closeFd();
      this.hooks.release();
      this.settle();
    } catch (err) {
      this.finish(err instanceof Error ? err : new Error(String(err)), false);
      throw err;
    }
    // A synchronous fsync of the directory waited up to 50 ms for the journal behind the other
    // downloads' writeback, with the event loop (and so every download) stopped.
    if (result.created) await this.hooks.syncBlobDir();
    return result;
  }

  async close(options: { keep?: boolean } = {}): Promise<void> {
    if (this.state !== 'open') return;
    this.finish(
      new Error(`ingest ${this.ref} was closed before its blob was complete`),
      options.keep ?? false,
    );
  }

  private finish(error: Error, keep: boolean): void {
    this.state = 'closed';
    this.failure = error;
    this.closeFd();
    if (!keep) fs.rmSync(this.file, { force: true });
    this.hooks.release();
    this.settle();
  }

  private closeFd(): void {
    if (this.fd === null) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // already closed
    }
    this.fd = null;
  }

  follow(): Readable {
    const file = this.state === 'committed' ? this.committedPath! : this.file;
    const fd = fs.openSync(file, 'r');
    let position = 0;
    let busy = false;
    let isLive = false;
    const ingest = this;
    const stream: Readable = new Readable({
      highWaterMark: READ_CHUNK,
      read() {
        pump();
      },
      destroy(error, callback) {
        ingest.waiters.delete(pump);
        ingest.live.delete(live);
        fs.close(fd, () => callback(error));
      },
    });
    // Caught up with the writer: new bytes are handed over as written, without reading them back.
    const live: LiveFollower = {
      deliver(chunks, start) {
        if (start !== position || stream.destroyed) {
          leaveLive();
          return;
        }
        let wantsMore = true;
        for (const chunk of chunks) {
          position += chunk.length;
          wantsMore = stream.push(chunk);
        }
        if (!wantsMore) leaveLive();
      },
      wake() {
        isLive = false;
        pump();
      },
    };
    function leaveLive(): void {
      isLive = false;
      ingest.live.delete(live);
    }
    function pump(): void {
      if (busy || isLive || stream.destroyed) return;
      const end = ingest.verified ? ingest.expected.size : ingest.bytes;
      if (position < end) {
        busy = true;
        const length = Math.min(READ_CHUNK, end - position);
        const buf = Buffer.allocUnsafe(length);
        fs.read(fd, buf, 0, length, position, (err, n) => {
          busy = false;
          if (err) {
            stream.destroy(err);
            return;
          }
          if (n === 0) {
            ingest.waiters.add(pump);
            return;
          }
          position += n;
          if (stream.push(buf.subarray(0, n))) pump();
        });
        return;
      }
      if (ingest.verified) {
        stream.push(null);
        return;
      }
      if (ingest.state === 'closed') {
        stream.destroy(ingest.failure ?? new Error(`ingest ${ingest.ref} was closed`));
        return;
      }
      isLive = true;
      ingest.live.add(live);
    }
    return stream;
  }

  async feed(consume: (chunk: Buffer) => void, signal?: AbortSignal): Promise<void> {
    if (this.state === 'closed' && !this.verified) {
      throw this.failure ?? new Error(`ingest ${this.ref} was closed`);
    }
    const file = this.state === 'committed' ? this.committedPath! : this.file;
    const fd = fs.openSync(file, 'r');
    try {
      // Catch up from disk (a resumed download, a second pull of the same blob), then go live.
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      let position = 0;
      for (;;) {
        signal?.throwIfAborted();
        const end = this.verified ? this.expected.size : this.bytes;
        if (position >= end) {
          if (this.verified) return;
          if (this.state === 'closed') throw this.failure ?? new Error(`ingest ${this.ref} was closed`);
          break;
        }
        const want = Math.min(buf.length, end - position);
        const n = await new Promise<number>((resolve, reject) =>
          fs.read(fd, buf, 0, want, position, (err, read) => (err ? reject(err) : resolve(read))),
        );
        if (n === 0) throw new Error(`ingest ${this.ref}: file shorter than its ${end} bytes`);
        position += n;
        consume(buf.subarray(0, n));
      }
    } finally {
      fs.closeSync(fd);
    }
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.taps.delete(tap);
        reject(signal?.reason ?? new Error('aborted'));
      };
      const tap: IngestTap = {
        consume,
        position: this.bytes,
        settle: (err) => {
          signal?.removeEventListener('abort', onAbort);
          if (err) reject(err);
          else resolve();
        },
      };
      this.taps.add(tap);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
