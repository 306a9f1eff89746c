import { createHash, type Hash, randomUUID } from 'node:crypto';
import { type Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, digestAlgorithm, digestHex } from '../common/digest.js';
import { isErrnoCode } from '../common/errors.js';
import { type DigestHandle, digestCreate, digestFinal, digestUpdateAsync } from '../native/index.js';
import type { BlobStore } from './blobs.js';
import { RegistryError } from './errors.js';
import { KeyedLock } from './locks.js';
import type { RepositoryName } from './names.js';
import { paths } from './paths.js';
import {
  deleteIfExists,
  getContentOrNull,
  type SocketBody,
  type StorageDriver,
  statOrNull,
} from './storage/driver.js';

/** An upload request's body: Node's request stream, or its connection (see http/socket-body.ts). */
export type UploadBody = Readable | SocketBody;

function isSocketBody(body: UploadBody): body is SocketBody {
  return (body as Partial<SocketBody>).kind === 'socket';
}

export type DigestAlgorithm = 'sha256' | 'sha512';

/** Where an upload stands: what a client needs to resume (`Range: 0-<size-1>`). */
export interface UploadStatus {
  id: string;
  name: RepositoryName;
  size: number;
  startedAt: Date;
}

/** What a request says about the chunk it carries; both optional (a streamed PATCH declares neither). */
export interface ChunkDeclaration {
  /** `Content-Range: <start>-<end>`, inclusive. */
  range?: { start: number; end: number };
  /** `Content-Length`, when the body is not chunk-encoded. */
  contentLength?: number;
}

interface HashState {
  hash: RunningDigest;
  algorithm: DigestAlgorithm;
  /** Bytes of the session's data the hash has consumed. */
  offset: number;
  lastUsed: number;
}

const UPLOAD_ID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Hash states of sessions idle this long are dropped from memory; finishing them re-reads the data. */
const HASH_STATE_IDLE_MS = 60 * 60 * 1000;

/**
 * Upload sessions: resumable, append-only, atomic. A session is `_uploads/<id>/data` plus its start time.
 * The lifecycle:
 *   create → append (PATCH, in order: a chunk must start at the current size, else 416) … → complete
 * (PUT ?digest=, optionally with the last chunk) or cancel (DELETE). The digest is computed while the
 * bytes stream in; the hash state lives in memory, so after a restart or an interrupted chunk `complete`
 * re-reads the data instead. Only verified data is moved into `blobs/` — with one rename — so a crash at
 * any moment leaves either no blob or the right one, plus a stale session for gc to remove.
 * An interrupted chunk keeps the bytes that arrived: the client asks for the status and resumes.
 */
export class UploadStore {
  private readonly hashes = new Map<string, HashState>();
  private readonly locks = new KeyedLock();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
  ) {}

  async create(name: RepositoryName, algorithm: DigestAlgorithm = 'sha256'): Promise<UploadStatus> {
    const id = randomUUID();
    const startedAt = new Date();
    // A session is bookkeeping: a crash may lose it (the client starts over), so nothing is fsynced
    // until the data is about to become a blob. Under concurrent pushes every fsync waits for the
    // journal, behind the other uploads' data.
    await this.driver.putContent(paths.uploadStartedAt(name, id), startedAt.toISOString(), {
      durable: false,
    });
    const writer = await this.driver.writer(paths.uploadData(name, id), false);
    await writer.close();
    this.pruneHashStates();
    this.hashes.set(id, { hash: startDigest(algorithm), algorithm, offset: 0, lastUsed: Date.now() });
    return { id, name, size: 0, startedAt };
  }

  async status(name: RepositoryName, id: string): Promise<UploadStatus> {
    if (!UPLOAD_ID_RE.test(id)) throw unknownUpload(id);
    const data = await statOrNull(this.driver, paths.uploadData(name, id));
    if (data === null || data.isDir) throw unknownUpload(id);
    const startedAtText = await getContentOrNull(this.driver, paths.uploadStartedAt(name, id));
    const startedAt = startedAtText === null ? data.modTime : new Date(startedAtText.toString('utf8').trim());
    return {
      id,
      name,
      size: data.size,
      startedAt: Number.isNaN(startedAt.getTime()) ? data.modTime : startedAt,
    };
  }

  /** Appends one chunk (PATCH). */
  async append(
    name: RepositoryName,
    id: string,
    body: UploadBody,
    chunk: ChunkDeclaration,
  ): Promise<UploadStatus> {
    return this.locks.run(id, async () => {
      const status = await this.status(name, id);
      const size = await this.appendLocked(status, body, chunk);
      return { ...status, size };
    });
  }

  /**
   * Finishes a session (PUT ?digest=): appends the final chunk if there is one, verifies the whole
   * content against `digest`, and makes it a blob of the repository. On a mismatch the session is
   * discarded and nothing becomes visible.
   */
  async complete(
    name: RepositoryName,
    id: string,
    digest: Digest,
    body: UploadBody | null,
    chunk: ChunkDeclaration,
  ): Promise<{ digest: Digest; size: number }> {
    return this.locks.run(id, async () => {
      const status = await this.status(name, id);
      const size = body === null ? status.size : await this.appendLocked(status, body, chunk);
      const algorithm = digestAlgorithm(digest);
      const dataPath = paths.uploadData(name, id);
      const state = this.hashes.get(id);
      let actualHex: string;
      if (state !== undefined && state.offset === size && state.algorithm === algorithm) {
        actualHex = state.hash.hex();
      } else {
        // The in-memory state is gone (restart, interrupted chunk) or hashed with another algorithm.
        const hash = createHash(algorithm);
        const reader = await this.driver.reader(dataPath);
        await pipeline(reader, new HashingPassThrough(hash, undefined), devNull());
        actualHex = hash.digest('hex');
      }
      this.hashes.delete(id);
      if (actualHex !== digestHex(digest)) {
        await this.discard(name, id);
        throw new RegistryError('DIGEST_INVALID', undefined, {
          detail: { expected: digest, actual: `${algorithm}:${actualHex}` },
        });
      }
      // Content is addressed by its digest and only ever appears whole (verified, synced, renamed):
      // when it is stored already, these verified bytes are that content, and they are dropped
      // instead of being synced and renamed over it (docker/distribution skips the move too).
      if ((await this.blobs.statContent(digest)) === null) {
        // The one fsync of the data, before the rename that makes it a blob.
        const durable = await this.driver.writer(dataPath, true);
        await durable.commit();
        await this.blobs.commitFrom(dataPath, digest);
      }
      await this.blobs.link(name, digest);
      await this.discard(name, id);
      return { digest, size };
    });
  }

  /** A whole blob in one request (POST ?digest=): a session that lives for one request. */
  async uploadWhole(
    name: RepositoryName,
    digest: Digest,
    body: UploadBody,
    chunk: ChunkDeclaration,
  ): Promise<{ digest: Digest; size: number }> {
    const session = await this.create(name, digestAlgorithm(digest));
    try {
      return await this.complete(name, session.id, digest, body, chunk);
    } catch (err) {
      await this.discard(name, session.id);
      throw err;
    }
  }

  async cancel(name: RepositoryName, id: string): Promise<void> {
    await this.locks.run(id, async () => {
      await this.status(name, id);
      await this.discard(name, id);
    });
  }

  private async discard(name: RepositoryName, id: string): Promise<void> {
    this.hashes.delete(id);
    await deleteIfExists(this.driver, paths.uploadDir(name, id));
  }

  /** Appends under the session's lock; returns the new size. */
  private async appendLocked(
    status: UploadStatus,
    body: UploadBody,
    chunk: ChunkDeclaration,
  ): Promise<number> {
    const { name, id } = status;
    let expected: number | undefined;
    if (chunk.range !== undefined) {
      const { start, end } = chunk.range;
      if (start !== status.size || end < start - 1) {
        body.resume();
        throw new RegistryError(
          'BLOB_UPLOAD_INVALID',
          'chunk out of order: it must start at the current size',
          {
            status: 416,
            detail: { size: status.size, range: `${start}-${end}` },
          },
        );
      }
      expected = end - start + 1;
      if (chunk.contentLength !== undefined && chunk.contentLength !== expected) {
        body.resume();
        throw new RegistryError('SIZE_INVALID', 'Content-Length does not match Content-Range', {
          detail: { contentLength: chunk.contentLength, range: `${start}-${end}` },
        });
      }
    }

    let state = this.hashes.get(id);
    if (state !== undefined && state.offset !== status.size) {
      this.hashes.delete(id);
      state = undefined;
    }
    if (state === undefined && status.size === 0) {
      state = { hash: startDigest('sha256'), algorithm: 'sha256', offset: 0, lastUsed: Date.now() };
      this.hashes.set(id, state);
    }
    if (isSocketBody(body)) return this.receiveLocked(status, body, state);
    const hash = state?.hash;
    const writer = await this.driver.writer(
      paths.uploadData(name, id),
      true,
      hash === undefined ? undefined : (data) => hash.update(data),
    );
    // Only a declared range needs counting on the way; otherwise the body goes straight to storage.
    const counter = expected === undefined ? null : new HashingPassThrough(undefined, expected);
    try {
      if (counter === null) await pipeline(body, writer.stream);
      else await pipeline(body, counter, writer.stream);
    } catch (err) {
      this.hashes.delete(id);
      if (counter?.exceeded) {
        // More bytes than the chunk declared: the session cannot be trusted any more.
        await writer.cancel();
        await this.discard(name, id);
        throw new RegistryError('SIZE_INVALID', 'chunk is larger than its declared range', {
          detail: { declared: expected },
        });
      }
      // The client went away mid-chunk: keep what arrived so it can resume from there.
      await writer.close();
      throw err;
    }
    if (counter !== null && counter.count !== expected) {
      await writer.cancel();
      await this.discard(name, id);
      throw new RegistryError('SIZE_INVALID', 'chunk is shorter than its declared range', {
        detail: { declared: expected, received: counter.count },
      });
    }
    // Not fsynced here: an upload's chunks become durable once, when it completes.
    await writer.close();
    const size = writer.size();
    if (state !== undefined) {
      state.offset = size;
      state.lastUsed = Date.now();
    }
    return size;
  }

  /**
   * Appends a body the driver reads from the connection itself, hashed on the way by the native digest.
   * Its length is the request's Content-Length, already checked against any Content-Range; the driver
   * reads exactly that many bytes, so a body cannot run past what it declared. A chunked body is
   * only read this way without a Content-Range, and ends where its coding ends.
   */
  private async receiveLocked(
    status: UploadStatus,
    body: SocketBody,
    hashState: HashState | undefined,
  ): Promise<number> {
    const { name, id } = status;
    if (this.driver.receive === undefined)
      throw new Error('the storage driver cannot read from a connection');
    let state = hashState;
    const handle = state?.hash.handle ?? null;
    if (handle === null) {
      // A digest without a native handle cannot be fed by the driver: complete re-reads the data.
      this.hashes.delete(id);
      state = undefined;
    }
    let size: number;
    try {
      size = await this.driver.receive(paths.uploadData(name, id), true, body, handle);
    } catch (err) {
      // What arrived stays for a resume; the digest saw bytes that may not all be in the file.
      this.hashes.delete(id);
      if (isErrnoCode(err, 'EPROTO'))
        throw new RegistryError('BLOB_UPLOAD_INVALID', 'malformed chunked request body');
      throw err;
    }
    if (state !== undefined) {
      state.offset = size;
      state.lastUsed = Date.now();
    }
    return size;
  }

  private pruneHashStates(): void {
    const cutoff = Date.now() - HASH_STATE_IDLE_MS;
    for (const [id, state] of this.hashes) {
      if (state.lastUsed < cutoff) this.hashes.delete(id);
    }
  }
}

export function isUploadId(id: string): boolean {
  return UPLOAD_ID_RE.test(id);
}

function unknownUpload(id: string): RegistryError {
  return new RegistryError('BLOB_UPLOAD_UNKNOWN', undefined, { detail: { uuid: id } });
}

/** An upload's digest as its bytes are stored: on a pool thread with the addon, else node:crypto. */
interface RunningDigest {
  update(data: Buffer): Promise<void>;
  hex(): string;
  /** The addon's handle, which a driver reading from a connection feeds directly. */
  handle?: DigestHandle;
}

function startDigest(algorithm: DigestAlgorithm): RunningDigest {
  if (digestCreate !== undefined && digestUpdateAsync !== undefined && digestFinal !== undefined) {
    const handle = digestCreate(algorithm);
    const update = digestUpdateAsync;
    const final = digestFinal;
    return { update: (data) => update(handle, data), hex: () => final(handle), handle };
  }
  const hash = createHash(algorithm);
  return {
    update: async (data) => {
      hash.update(data);
    },
    hex: () => hash.digest('hex'),
  };
}

/** Counts (and optionally hashes) bytes on their way to storage; fails as soon as a limit is passed. */
class HashingPassThrough extends Transform {
  count = 0;
  exceeded = false;

  constructor(
    private readonly hash: Hash | undefined,
    private readonly limit: number | undefined,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.limit !== undefined && this.count + chunk.length > this.limit) {
      this.exceeded = true;
      callback(new Error('chunk exceeds its declared size'));
      return;
    }
    this.count += chunk.length;
    this.hash?.update(chunk);
    callback(null, chunk);
  }
}

function devNull(): Writable {
  return new Writable({
    write(_chunk, _encoding, callback) {
      callback();
    },
  });
}
