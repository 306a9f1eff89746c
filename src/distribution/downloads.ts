import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, digestHex } from '../common/digest.js';
import { errorMessage, InvalidArgument } from '../common/errors.js';
import { logger } from '../common/log.js';
import { trace } from '../common/trace.js';
import type { ContentStore, Ingest } from '../content/store.js';
import { RegistryResponseError, RegistryUnreachable, registryError } from './errors.js';
import { Limiter, sleep } from './limiter.js';
import { rawGet } from './rawget.js';
import type { RegistrySession } from './session.js';
import { readResponse } from './transport.js';

const log = logger('distribution');

/**
 * Layer blob downloads, shared by the pulls that need the same blob at the same time and limited to a
 * few at once per daemon (dockerd's max-concurrent-downloads is 3).
 *
 * A download writes into a resumable ingest of the content store (`ingest/pull-<hex>`): the bytes
 * are hashed as they arrive and checked against the digest at the end before the blob becomes
 * visible. A connection that breaks is retried with `Range: bytes=<have>-`; a download that finally
 * fails keeps its bytes on disk, so the next pull of the blob continues where this one stopped.
 * `open()` gives the blob's bytes from the start while they arrive (the unpack reads them there),
 * ending only once the digest has been verified.
 */
export type DownloadEvent =
  | { type: 'started' }
  | { type: 'progress'; received: number }
  | { type: 'verifying' }
  | { type: 'complete' };

export interface BlobDescriptor {
  digest: Digest;
  size: number;
}

const MAX_ATTEMPTS = 4;
const RETRY_DELAY_MS = 250;

export class BlobDownload {
  readonly digest: Digest;
  readonly size: number;
  /** Bytes of the blob on disk so far (including what an earlier attempt left). */
  received = 0;
  status: 'waiting' | 'downloading' | 'verifying' | 'complete' | 'failed' = 'waiting';
  readonly done: Promise<void>;
  private readonly events = new EventEmitter();
  private readonly controller = new AbortController();
  private readonly opened: Promise<Ingest | null>;
  private markOpened!: (ingest: Ingest | null) => void;
  private failOpened!: (err: unknown) => void;
  private interest = 0;

  constructor(
    descriptor: BlobDescriptor,
    private readonly content: ContentStore,
    private readonly session: RegistrySession,
    private readonly repository: string,
    private readonly limiter: Limiter,
  ) {
    this.digest = descriptor.digest;
    this.size = descriptor.size;
    this.events.setMaxListeners(0);
    this.opened = new Promise<Ingest | null>((resolve, reject) => {
      this.markOpened = resolve;
      this.failOpened = reject;
    });
    this.opened.catch(() => undefined);
    this.done = this.run();
    this.done.catch(() => undefined);
  }

  /** Subscribes to state changes; returns the unsubscribe function. */
  subscribe(listener: (event: DownloadEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  retain(): void {
    this.interest++;
  }

  /** Drops one caller's interest; the last one to leave cancels a download still running. */
  release(): void {
    this.interest--;
    if (this.interest <= 0 && this.status !== 'complete' && this.status !== 'failed') {
      this.controller.abort(new Error('pull cancelled'));
    }
  }

  /** The blob's bytes from the first, as they arrive; the stream fails if the download does. */
  async open(): Promise<Readable> {
    const ingest = await this.opened;
    if (ingest === null || this.status === 'complete') return this.content.openRead(this.digest);
    return ingest.follow();
  }

  /**
   * `open()` for a synchronous consumer: each chunk is handed to `consume` as it is written (see
   * `Ingest.feed`); resolves once the digest is verified, rejects if the download or `consume` fails.
   */
  async feed(consume: (chunk: Buffer) => void, signal?: AbortSignal): Promise<void> {
    const ingest = await this.opened;
    if (ingest !== null && this.status !== 'complete') return ingest.feed(consume, signal);
    const blob = this.content.openRead(this.digest);
    try {
      for await (const chunk of blob) {
        signal?.throwIfAborted();
        consume(chunk as Buffer);
      }
    } finally {
      blob.destroy();
    }
  }

  private emit(event: DownloadEvent): void {
    this.events.emit('event', event);
  }

  private async run(): Promise<void> {
    if (this.content.has(this.digest)) {
      this.received = this.size;
      this.markOpened(null);
      this.status = 'complete';
      this.emit({ type: 'complete' });
      return;
    }
    const signal = this.controller.signal;
    let release: (() => void) | null = null;
    let ingest: Ingest | null = null;
    const span = trace.span('pull-blob', digestHex(this.digest));
    try {
      release = await this.limiter.acquire(signal);
      span.mark('slot');
      this.status = 'downloading';
      this.emit({ type: 'started' });
      ingest = await this.content.openIngest(`pull-${digestHex(this.digest)}`, {
        digest: this.digest,
        size: this.size,
      });
      this.received = ingest.size;
      this.markOpened(ingest);
      for (let attempt = 1; ingest.size < this.size; attempt++) {
        try {
          await this.fetchRest(ingest, signal);
        } catch (err) {
          if (signal.aborted || attempt >= MAX_ATTEMPTS || !isRetryable(err)) throw err;
          log.info('blob download interrupted; resuming', {
            digest: this.digest,
            have: ingest.size,
            attempt,
            reason: errorMessage(err),
          });
          await sleep(RETRY_DELAY_MS * 2 ** (attempt - 1), signal);
        }
      }
      span.mark('received');
      // The slot limits transfers: the next download need not wait for this one's fsync.
      release?.();
      release = null;
      this.status = 'verifying';
      this.emit({ type: 'verifying' });
      try {
        await ingest.commit();
        span.mark('committed');
      } catch (err) {
        throw new InvalidArgument(`filesystem layer verification failed for digest ${this.digest}`, {
          cause: err,
        });
      }
      this.status = 'complete';
      this.emit({ type: 'complete' });
    } catch (err) {
      this.status = 'failed';
      this.failOpened(err);
      // Keep what arrived: the next pull of this blob resumes after it.
      await ingest?.close({ keep: true });
      throw signal.aborted && !(err instanceof InvalidArgument) ? (signal.reason ?? err) : err;
    } finally {
      release?.();
      span.end();
    }
  }

  /** One GET of the missing part of the blob, appended to the ingest. */
  private async fetchRest(ingest: Ingest, signal: AbortSignal): Promise<void> {
    const url = this.session.url(`/v2/${this.repository}/blobs/${this.digest}`);
    if (url.protocol === 'http:' && (await this.fetchRestRaw(url, ingest, signal))) return;
    await this.fetchRestHttp(ingest, signal);
  }

  /**
   * The plain-HTTP fast path (see rawget.ts). Returns false when the answer needs the general
   * client: a redirect, or a 401 whose challenge the session must take up.
   */
  private async fetchRestRaw(url: URL, ingest: Ingest, signal: AbortSignal): Promise<boolean> {
    const offset = ingest.size;
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const authorization = await this.session.authorizationHeader(signal);
    if (authorization) headers.Authorization = authorization;
    let skip = 0;
    const result = await rawGet(
      url,
      headers,
      {
        onHead: (head) => {
          if (head.status === 206) {
            const start = /^bytes (\d+)-/.exec(head.headers['content-range'] ?? '');
            if (!start || Number(start[1]) !== offset) {
              throw new Error(
                `registry answered range ${head.headers['content-range']} for bytes=${offset}-`,
              );
            }
            return true;
          }
          if (head.status === 200) {
            // The registry ignored the range: drop the bytes that are already on disk.
            skip = offset;
            return true;
          }
          return false;
        },
        onBody: (slice) => {
          let data = slice;
          if (skip > 0) {
            const dropped = Math.min(skip, data.length);
            skip -= dropped;
            data = data.subarray(dropped);
            if (data.length === 0) return;
          }
          ingest.appendSync(data);
          this.received += data.length;
          this.emit({ type: 'progress', received: this.received });
        },
      },
      signal,
    );
    if (result.status === 200 || result.status === 206) {
      if (ingest.size < this.size) throw new PrematureEnd(ingest.size, this.size);
      return true;
    }
    if (result.status === 401 || (result.status >= 300 && result.status < 400)) return false;
    throw registryError(result.status, result.collected);
  }

  /** The general path: Node's HTTP(S) client, with redirects and authentication retries. */
  private async fetchRestHttp(ingest: Ingest, signal: AbortSignal): Promise<void> {
    const offset = ingest.size;
    const headers: Record<string, string> = offset > 0 ? { Range: `bytes=${offset}-` } : {};
    const res = await this.session.request('GET', `/v2/${this.repository}/blobs/${this.digest}`, {
      headers,
      signal,
    });
    let skip = 0;
    if (res.statusCode === 206) {
      const start = /^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''));
      if (!start || Number(start[1]) !== offset) {
        res.destroy();
        throw new Error(`registry answered range ${res.headers['content-range']} for bytes=${offset}-`);
      }
    } else if (res.statusCode === 200) {
      // The registry ignored the range: drop the bytes that are already on disk.
      skip = offset;
    } else {
      throw registryError(
        res.statusCode ?? 500,
        await readResponse(res, 64 * 1024).catch(() => Buffer.alloc(0)),
      );
    }
    const counter = new Transform({
      transform: (chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) => {
        let data = chunk;
        if (skip > 0) {
          const dropped = Math.min(skip, data.length);
          skip -= dropped;
          data = data.subarray(dropped);
          if (data.length === 0) {
            callback();
            return;
          }
        }
        this.received += data.length;
        this.emit({ type: 'progress', received: this.received });
        callback(null, data);
      },
    });
    await pipeline(res as IncomingMessage, counter, ingest.append(), { signal });
    if (ingest.size < this.size) throw new PrematureEnd(ingest.size, this.size);
  }
}

class PrematureEnd extends Error {
  constructor(have: number, want: number) {
    super(`connection closed after ${have} of ${want} bytes`);
  }
}

function isRetryable(err: unknown): boolean {
  if (err instanceof PrematureEnd || err instanceof RegistryUnreachable) return true;
  if (err instanceof RegistryResponseError) return err.httpStatus >= 500 || err.httpStatus === 429;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return (
    code === 'ECONNRESET' ||
    code === 'ECONNREFUSED' ||
    code === 'EPIPE' ||
    code === 'ETIMEDOUT' ||
    code === 'ERR_STREAM_PREMATURE_CLOSE' ||
    errorMessage(err) === 'aborted' ||
    /no data for \d+s/.test(errorMessage(err))
  );
}

/** The downloads in progress, one per blob. */
export class DownloadManager {
  private readonly active = new Map<Digest, BlobDownload>();
  private readonly limiter: Limiter;

  constructor(
    private readonly content: ContentStore,
    concurrency = 3,
  ) {
    this.limiter = new Limiter(concurrency);
  }

  /** True when a new download would wait for a free slot ("Waiting"). */
  get isBusy(): boolean {
    return this.limiter.isFull;
  }

  /** The download of `blob` from `repository`, shared with pulls already fetching it; retained once. */
  fetch(session: RegistrySession, repository: string, blob: BlobDescriptor): BlobDownload {
    let download = this.active.get(blob.digest);
    if (download === undefined || download.status === 'failed') {
      download = new BlobDownload(blob, this.content, session, repository, this.limiter);
      const created = download;
      this.active.set(blob.digest, created);
      const forget = (): void => {
        if (this.active.get(blob.digest) === created) this.active.delete(blob.digest);
      };
      created.done.then(forget, forget);
    }
    download.retain();
    return download;
  }
}
