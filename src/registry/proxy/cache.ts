import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { pipeline, Transform, type TransformCallback, type Writable } from 'node:stream';
import { z } from 'zod';
import { type Digest, digestAlgorithm, isDigest } from '../../common/digest.js';
import { errorMessage } from '../../common/errors.js';
import type { BlobStore } from '../blobs.js';
import { RegistryError } from '../errors.js';
import { MediaType } from '../manifest-format.js';
import type { ManifestStore, StoredManifest } from '../manifests.js';
import type { ManifestReference, RepositoryName } from '../names.js';
import type { TagStore } from '../tags.js';
import type { UploadStore } from '../uploads.js';
import {
  badGateway,
  declaredLength,
  isUpstreamUnavailable,
  readUpstreamBody,
  type UpstreamClient,
  upstreamStatusError,
} from './upstream.js';

/** What a cache asks its upstream for: every manifest type it can store, indexes included. */
const MANIFEST_ACCEPT = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
].join(', ');
/** Tag lists are read whole (to check them); an upstream paginates longer ones. */
const TAG_LIST_MAX_BYTES = 16 << 20;

const tagListSchema = z.looseObject({ tags: z.array(z.string()).nullish() });

export interface CacheStores {
  blobs: BlobStore;
  uploads: UploadStore;
  manifests: ManifestStore;
  tags: TagStore;
}

export interface CacheOptions {
  manifestMaxBytes: number;
  /** A tag the upstream resolved this recently is served without asking again; 0: always ask. */
  tagTtlSeconds: number;
}

/** Where a blob being fetched goes as it arrives, besides the cache: a client's response. */
export interface BlobSink {
  /** Called once, when the upstream starts sending the blob (`size` is its Content-Length, if any). */
  start(size: number | null): void;
  readonly stream: Writable;
}

/** A page of an upstream's tag list, its `Link` pointing at this registry's next page. */
export interface TagPage {
  tags: string[];
  link?: string;
}

/**
 * The pull-through cache of proxy mode: the local stores keep what clients pulled through this
 * registry from its upstream, and serve it from then on.
 *
 * - A manifest by digest comes from the cache, else from the upstream: checked against the digest
 *   and stored without its blobs and children (each is fetched when a client asks for it).
 * - A tag is asked of the upstream each time (or once per `tagTtlSeconds`); its current manifest is
 *   served as above and the local tag moved to it. While the upstream is unavailable the cached tag
 *   is served as it was.
 * - A blob missing from the cache is streamed to the client while it is written to an upload session
 *   of the repository, and becomes a blob the way a push does (verified, synced, renamed). The client
 *   gets the last bytes only then: a blob that does not match its digest reaches a client as a
 *   broken-off download, and the cache never.
 * - Tag lists are the upstream's, or the cache's own while the upstream is unavailable.
 * Writes never reach this: the server refuses them in proxy mode.
 */
export class PullThroughCache {
  constructor(
    private readonly stores: CacheStores,
    readonly upstream: UpstreamClient,
    private readonly options: CacheOptions,
  ) {}

  async getManifest(name: RepositoryName, reference: ManifestReference): Promise<StoredManifest> {
    if (reference.kind === 'tag') return this.manifestOfTag(name, reference.tag);
    return (await this.cachedManifest(name, reference)) ?? this.fetchManifest(name, reference.digest);
  }

  /**
   * Size of a blob the repository may serve from the cache, or null. Content that another repository
   * cached is linked into this one, without a second download, once the upstream confirms that this
   * repository holds it too.
   */
  async cachedBlobSize(name: RepositoryName, digest: Digest): Promise<number | null> {
    const size = await this.stores.blobs.statInRepository(name, digest);
    if (size !== null || (await this.stores.blobs.statContent(digest)) === null) return size;
    await this.upstreamBlobSize(name, digest);
    await this.stores.blobs.link(name, digest);
    return this.stores.blobs.statInRepository(name, digest);
  }

  /** The size the upstream declares for a blob (a HEAD: nothing is cached). */
  async upstreamBlobSize(name: RepositoryName, digest: Digest): Promise<number> {
    const response = await this.upstream.send({ method: 'HEAD', path: `/v2/${name}/blobs/${digest}`, name });
    response.resume();
    if (response.statusCode !== 200) throw upstreamStatusError(response.statusCode ?? 0, blobUnknown(digest));
    const size = declaredLength(response);
    if (size === null) throw badGateway('the upstream registry did not declare the size of the blob');
    return size;
  }

  /**
   * Fetches a blob into the cache, copying it to `sink` on the way. Resolves once the blob is stored
   * and the sink has all of it; on any failure nothing is stored and the sink is left unfinished.
   * Should the sink's client go away, the download still completes into the cache.
   */
  async fetchBlob(name: RepositoryName, digest: Digest, sink: BlobSink | null): Promise<void> {
    const response = await this.upstream.send({ method: 'GET', path: `/v2/${name}/blobs/${digest}`, name });
    if (response.statusCode !== 200) {
      response.resume();
      throw upstreamStatusError(response.statusCode ?? 0, blobUnknown(digest));
    }
    const size = declaredLength(response);
    const { uploads } = this.stores;
    let sessionId: string | undefined;
    const tee = sink === null ? null : new HoldLastChunk(sink.stream);
    try {
      sessionId = (await uploads.create(name, digestAlgorithm(digest))).id;
      sink?.start(size);
      const body = tee === null ? response : pipeline(response, tee, () => {});
      // With a declared length the session counts: a body that runs short or long is refused.
      await uploads.append(
        name,
        sessionId,
        body,
        size === null ? {} : { range: { start: 0, end: size - 1 } },
      );
      await uploads.complete(name, sessionId, digest, null, {});
    } catch (err) {
      response.destroy();
      if (sessionId !== undefined) await uploads.cancel(name, sessionId).catch(() => undefined);
      throw blobFetchError(digest, err);
    }
    tee?.release();
  }

  /** A page of the upstream's tag list; null while the upstream is unavailable. */
  async upstreamTags(name: RepositoryName, query: URLSearchParams): Promise<TagPage | null> {
    const params = new URLSearchParams();
    for (const key of ['n', 'last']) {
      const value = query.get(key);
      if (value !== null) params.set(key, value);
    }
    const search = params.size === 0 ? '' : `?${params.toString()}`;
    try {
      const response = await this.upstream.send({
        method: 'GET',
        path: `/v2/${name}/tags/list${search}`,
        name,
      });
      if (response.statusCode !== 200) {
        response.resume();
        const unknown = new RegistryError('NAME_UNKNOWN', undefined, { detail: { name } });
        throw upstreamStatusError(response.statusCode ?? 0, unknown);
      }
      const body = await readUpstreamBody(response, TAG_LIST_MAX_BYTES, () =>
        badGateway('the upstream tag list is too large'),
      );
      const parsed = tagListSchema.safeParse(parseJson(body));
      if (!parsed.success) throw badGateway('the upstream registry sent an invalid tag list');
      return { tags: parsed.data.tags ?? [], link: nextPageLink(response) };
    } catch (err) {
      if (isUpstreamUnavailable(err)) return null;
      throw err;
    }
  }

  private async manifestOfTag(name: RepositoryName, tag: string): Promise<StoredManifest> {
    const local: ManifestReference = { kind: 'tag', tag };
    if (await this.isTagFresh(name, tag)) {
      const cached = await this.cachedManifest(name, local);
      if (cached !== null) return cached;
    }
    let manifest: StoredManifest;
    try {
      manifest = await this.upstreamManifestOfTag(name, tag);
    } catch (err) {
      if (!isUpstreamUnavailable(err)) throw err;
      const stale = await this.cachedManifest(name, local);
      if (stale !== null) return stale;
      throw new RegistryError(
        'UNAVAILABLE',
        `the upstream registry is unavailable and ${name}:${tag} is not cached`,
        {
          detail: (err as RegistryError).detail,
        },
      );
    }
    // Re-set when unchanged too if a TTL reads its time.
    if (this.options.tagTtlSeconds > 0 || (await this.stores.tags.resolve(name, tag)) !== manifest.digest) {
      await this.stores.tags.set(name, tag, manifest.digest);
    }
    return manifest;
  }

  /** The manifest the upstream's tag names now: a HEAD for its digest, and the manifest unless cached. */
  private async upstreamManifestOfTag(name: RepositoryName, tag: string): Promise<StoredManifest> {
    const response = await this.upstream.send({
      method: 'HEAD',
      path: `/v2/${name}/manifests/${tag}`,
      name,
      headers: { Accept: MANIFEST_ACCEPT },
    });
    response.resume();
    if (response.statusCode !== 200)
      throw upstreamStatusError(response.statusCode ?? 0, manifestUnknown(tag));
    const digest = response.headers['docker-content-digest'];
    // Without the header (it is optional) the manifest itself tells its digest.
    if (typeof digest !== 'string' || !isDigest(digest)) return this.fetchManifest(name, tag);
    return (await this.cachedManifest(name, { kind: 'digest', digest })) ?? this.fetchManifest(name, digest);
  }

  /** Fetches a manifest by digest (checked against it) or by tag (its digest computed), and caches it. */
  private async fetchManifest(name: RepositoryName, reference: Digest | string): Promise<StoredManifest> {
    const response = await this.upstream.send({
      method: 'GET',
      path: `/v2/${name}/manifests/${reference}`,
      name,
      headers: { Accept: MANIFEST_ACCEPT },
    });
    if (response.statusCode !== 200) {
      response.resume();
      throw upstreamStatusError(response.statusCode ?? 0, manifestUnknown(reference));
    }
    const maxBytes = this.options.manifestMaxBytes;
    const content = await readUpstreamBody(response, maxBytes, () =>
      badGateway(`the upstream manifest is larger than ${maxBytes} bytes`, { maxBytes }),
    );
    const digest: Digest = isDigest(reference)
      ? reference
      : `sha256:${createHash('sha256').update(content).digest('hex')}`;
    try {
      return await this.stores.manifests.putFromUpstream(
        name,
        digest,
        content,
        response.headers['content-type'],
      );
    } catch (err) {
      if (err instanceof RegistryError && err.registryCode === 'DIGEST_INVALID')
        throw badGateway('the upstream registry sent a manifest that does not match its digest', err.detail);
      if (err instanceof RegistryError && err.registryCode === 'MANIFEST_INVALID')
        throw badGateway(`the upstream registry sent an unusable manifest: ${err.message}`, err.detail);
      throw err;
    }
  }

  private async cachedManifest(
    name: RepositoryName,
    reference: ManifestReference,
  ): Promise<StoredManifest | null> {
    try {
      return await this.stores.manifests.get(name, reference);
    } catch (err) {
      if (err instanceof RegistryError && err.registryCode === 'MANIFEST_UNKNOWN') return null;
      throw err;
    }
  }

  private async isTagFresh(name: RepositoryName, tag: string): Promise<boolean> {
    if (this.options.tagTtlSeconds === 0) return false;
    const setAt = await this.stores.tags.setAt(name, tag);
    return setAt !== null && Date.now() - setAt.getTime() < this.options.tagTtlSeconds * 1000;
  }
}

/**
 * Copies a blob on its way to the cache to a client, all but its last chunk as it passes: a client
 * that has every byte it was promised counts the download as done, so the end waits for `release`,
 * which comes once the blob is verified. A client that goes away is left behind; the blob flows on.
 */
class HoldLastChunk extends Transform {
  private held: Buffer | null = null;
  private clientGone = false;

  constructor(private readonly client: Writable) {
    super({ highWaterMark: 1 << 20 });
    client.once('close', () => {
      this.clientGone = true;
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const previous = this.held;
    this.held = chunk;
    if (previous === null || !this.isClientOpen() || this.client.write(previous)) {
      callback(null, chunk);
      return;
    }
    // The client's back-pressure paces the download (and so the cache's writes).
    const resume = (): void => {
      this.client.off('drain', resume);
      this.client.off('close', resume);
      callback(null, chunk);
    };
    this.client.on('drain', resume);
    this.client.on('close', resume);
  }

  /** The held bytes and the end of the response, once the blob is known good. */
  release(): void {
    if (this.isClientOpen()) this.client.end(this.held ?? undefined);
  }

  private isClientOpen(): boolean {
    return !this.clientGone && !this.client.destroyed;
  }
}

function blobFetchError(digest: Digest, err: unknown): RegistryError {
  if (err instanceof RegistryError) {
    if (err.registryCode === 'DIGEST_INVALID')
      return badGateway('the upstream registry sent a blob that does not match its digest', err.detail);
    if (err.registryCode === 'SIZE_INVALID')
      return badGateway('the upstream registry sent a blob of another size than it declared', { digest });
    return err;
  }
  return badGateway(`fetching the blob from the upstream registry failed: ${errorMessage(err)}`, { digest });
}

function blobUnknown(digest: Digest): RegistryError {
  return new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
}

function manifestUnknown(reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { reference } });
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** The upstream's `Link: <…>; rel="next"` with its URL cut to path and query, which this registry serves. */
function nextPageLink(response: IncomingMessage): string | undefined {
  const header = response.headers.link;
  const match = /^\s*<([^>]*)>(.*)$/.exec((Array.isArray(header) ? header[0] : header) ?? '');
  if (match === null) return undefined;
  const url = new URL(match[1] ?? '', 'http://upstream.invalid');
  return `<${url.pathname}${url.search}>${match[2] ?? ''}`;
}
