import type { IncomingMessage } from 'node:http';
import { Transform, type TransformCallback } from 'node:stream';
import type { Digest } from '../common/digest.js';
import { errorMessage, InvalidArgument, NotFound } from '../common/errors.js';
import type { ContentStore } from '../content/store.js';
import { familiarName, type NamedReference } from '../images/reference.js';
import type { ImageRecord, ImageService, LayerRecord } from '../images/service.js';
import { RegistryUnreachable, registryError, Unauthorized } from './errors.js';
import { type Limiter, sleep } from './limiter.js';
import { buildManifest } from './manifest.js';
import type { DistributionMetadata, LayerDescriptor } from './metadata.js';
import { layerId, layerStatus, type ProgressSink, ThrottledProgress } from './progress.js';
import { rawPut } from './rawget.js';
import type { RegistrySession } from './session.js';
import { readResponse } from './transport.js';

/**
 * `docker push`: for each tag, the image's layer blobs go up in parallel (bottom to top is not
 * needed: a manifest is only accepted once every blob it names is there), each only when the
 * registry lacks it — `HEAD` first ("Layer already exists"), then a cross-repository mount when this
 * registry is known to hold the blob in another repository ("Mounted from …"), else an upload
 * (POST, then one streamed PUT with the digest). Then the config blob and the manifest (Docker
 * schema 2 for images pulled in that format, OCI otherwise). The image gains the RepoDigest.
 */
export interface PushDeps {
  images: ImageService;
  content: ContentStore;
  metadata: DistributionMetadata;
  uploads: Limiter;
}

export interface PushItem {
  tag: string;
  image: ImageRecord;
}

const MAX_MOUNT_CANDIDATES = 3;
const UPLOAD_ATTEMPTS = 3;

/** What `docker push name[:tag]` pushes: one tag, or every tag of the repository. Nothing → 404. */
export function resolvePushItems(
  images: ImageService,
  repository: NamedReference,
  tag: string | null,
): PushItem[] {
  if (repository.digest !== null) throw new InvalidArgument('cannot push a digest reference');
  const wanted = tag ?? repository.tag;
  if (wanted) {
    try {
      return [{ tag: wanted, image: images.resolve(`${familiarName(repository)}:${wanted}`) }];
    } catch (err) {
      if (err instanceof NotFound) {
        throw new NotFound(`tag does not exist: ${familiarName(repository)}:${wanted}`);
      }
      throw err;
    }
  }
  const tags = images.repositoryTags(repository);
  if (tags.length === 0) {
    throw new NotFound(`An image does not exist locally with the tag: ${familiarName(repository)}`);
  }
  return tags.map((t) => ({
    tag: t.ref.tag ?? 'latest',
    image: images.resolve(`${familiarName(t.ref)}:${t.ref.tag}`),
  }));
}

export async function runPush(
  deps: PushDeps,
  session: RegistrySession,
  repository: NamedReference,
  items: readonly PushItem[],
  progress: ProgressSink,
  signal?: AbortSignal,
): Promise<void> {
  progress({ status: `The push refers to repository [${familiarName(repository)}]` });
  let pinged = false;
  for (const item of items) {
    const pusher = new ImagePush(deps, session, repository, item, progress, signal);
    pusher.announce();
    if (!pinged) {
      await session.ping(signal);
      pinged = true;
    }
    await pusher.run();
  }
}

class ImagePush {
  constructor(
    private readonly deps: PushDeps,
    private readonly session: RegistrySession,
    private readonly repository: NamedReference,
    private readonly item: PushItem,
    private readonly progress: ProgressSink,
    private readonly signal?: AbortSignal,
  ) {}

  private get path(): string {
    return this.repository.path;
  }

  /** One layer per blob (an image may hold the same layer twice), top first as dockerd lists them. */
  private layers(): LayerRecord[] {
    const seen = new Set<Digest>();
    return [...this.item.image.layers].reverse().filter((l) => {
      if (seen.has(l.blobDigest)) return false;
      seen.add(l.blobDigest);
      return true;
    });
  }

  announce(): void {
    for (const layer of this.layers()) this.progress(layerStatus(layerId(layer.diffId), 'Preparing'));
  }

  async run(): Promise<void> {
    const { images, content, metadata } = this.deps;
    const image = this.item.image;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(this.signal?.reason);
    this.signal?.addEventListener('abort', onAbort, { once: true });
    let firstError: unknown = null;
    const pushed = new Map<Digest, LayerDescriptor>();
    try {
      const tasks = this.layers().map((layer) =>
        this.pushLayer(layer, controller.signal).then(
          (descriptor) => {
            pushed.set(layer.blobDigest, descriptor);
          },
          (err: unknown) => {
            firstError ??= err;
            controller.abort(err);
          },
        ),
      );
      await Promise.all(tasks);
      if (firstError !== null) throw firstError;
    } finally {
      this.signal?.removeEventListener('abort', onAbort);
    }

    const configBytes = content.readSmall(image.id);
    if (!(await this.blobExists(image.id, this.signal))) {
      await this.upload(image.id, configBytes.length, null, this.signal);
    }
    metadata.rememberSource(image.id, this.session.host, this.path);

    const manifest = buildManifest(
      { digest: image.id, size: configBytes.length },
      image.layers.map((l) => {
        const d = pushed.get(l.blobDigest);
        return d ? { blobDigest: d.digest, blobSize: d.size, mediaType: d.mediaType } : l;
      }),
    );
    const res = await this.session.request('PUT', `/v2/${this.path}/manifests/${this.item.tag}`, {
      headers: { 'Content-Type': manifest.mediaType },
      body: manifest.bytes,
      signal: this.signal,
    });
    const body = await readResponse(res, 64 * 1024);
    if (res.statusCode !== 201 && res.statusCode !== 200) throw this.accessError(res.statusCode ?? 500, body);
    images.addDigestReference(image.id, { ...this.repository, tag: null, digest: manifest.digest });
    images.announcePush(image.id, `${familiarName(this.repository)}:${this.item.tag}`);
    this.progress({ status: `${this.item.tag}: digest: ${manifest.digest} size: ${manifest.bytes.length}` });
    this.progress({
      progressDetail: {},
      aux: { Tag: this.item.tag, Digest: manifest.digest, Size: manifest.bytes.length },
    });
  }

  /**
   * Makes the registry hold this layer and returns the blob the manifest should name: the local blob,
   * or another form of the same layer (same diff id) the registry already has, e.g. the gzip blob an
   * image was pulled as while its layer was stored here uncompressed.
   */
  private async pushLayer(layer: LayerRecord, signal: AbortSignal): Promise<LayerDescriptor> {
    const { content, metadata, uploads } = this.deps;
    const host = this.session.host;
    const id = layerId(layer.diffId);
    const local: LayerDescriptor = {
      digest: layer.blobDigest,
      mediaType: layer.mediaType,
      size: layer.blobSize,
    };
    const candidates = [
      local,
      ...metadata.layerDescriptors(layer.diffId).filter((d) => d.digest !== local.digest),
    ];
    if (uploads.isFull) this.progress(layerStatus(id, 'Waiting'));
    const release = await uploads.acquire(signal);
    const done = (descriptor: LayerDescriptor, status: string): LayerDescriptor => {
      metadata.rememberSource(descriptor.digest, host, this.path);
      metadata.rememberLayerDescriptor(layer.diffId, descriptor);
      this.progress(layerStatus(id, status));
      return descriptor;
    };
    try {
      for (const candidate of candidates) {
        const mayBeHere =
          candidate === local || metadata.sourcesOf(candidate.digest, host).includes(this.path);
        if (mayBeHere && (await this.blobExists(candidate.digest, signal))) {
          return done(candidate, 'Layer already exists');
        }
      }
      let location: string | null = null;
      for (const candidate of candidates) {
        const mount = await this.mount(candidate.digest, signal);
        if (mount.mountedFrom !== null) return done(candidate, `Mounted from ${mount.mountedFrom}`);
        location ??= mount.location;
      }
      if (!content.has(local.digest)) {
        throw new NotFound(`layer ${id}: blob ${local.digest} is not in the local content store`);
      }
      const bar = new ThrottledProgress(this.progress, id, 'Pushing', local.size);
      for (let attempt = 1; ; attempt++) {
        try {
          await this.upload(local.digest, local.size, bar, signal, location);
          break;
        } catch (err) {
          // A dropped connection: start a new upload session (the old one may be half written).
          if (!(err instanceof RegistryUnreachable) || attempt >= UPLOAD_ATTEMPTS || signal.aborted)
            throw err;
          location = null;
          await sleep(250 * attempt, signal);
        }
      }
      return done(local, 'Pushed');
    } finally {
      release();
    }
  }

  private async blobExists(digest: Digest, signal?: AbortSignal): Promise<boolean> {
    const res = await this.session.request('HEAD', `/v2/${this.path}/blobs/${digest}`, { signal });
    res.resume();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw this.accessError(res.statusCode ?? 500, Buffer.alloc(0));
  }

  /**
   * Tries the repositories of this registry known to hold the blob. 201: mounted. 202: the registry
   * could not mount and opened an upload session instead, which the upload then uses.
   */
  private async mount(
    digest: Digest,
    signal: AbortSignal,
  ): Promise<{ mountedFrom: string | null; location: string | null }> {
    const { metadata } = this.deps;
    const candidates = metadata
      .sourcesOf(digest, this.session.host)
      .filter((r) => r !== this.path)
      .slice(0, MAX_MOUNT_CANDIDATES);
    for (const source of candidates) {
      this.session.addScope(`repository:${source}:pull`);
      const query = new URLSearchParams({ mount: digest, from: source });
      const res = await this.session.request('POST', `/v2/${this.path}/blobs/uploads/?${query}`, { signal });
      res.resume();
      if (res.statusCode === 201) return { mountedFrom: source, location: null };
      if (res.statusCode === 202 && res.headers.location) {
        // Not mounted (the source lacks it now, or we may not read it): upload into this session.
        metadata.forgetSource(digest, this.session.host, source);
        return { mountedFrom: null, location: res.headers.location };
      }
      if (res.statusCode === 401 && !this.session.hasCredentials) {
        throw new Unauthorized('no basic auth credentials');
      }
    }
    return { mountedFrom: null, location: null };
  }

  /** POST (unless a session is open already) and one PUT carrying the whole blob and its digest. */
  private async upload(
    digest: Digest,
    size: number,
    bar: ThrottledProgress | null,
    signal?: AbortSignal,
    openLocation: string | null = null,
  ): Promise<void> {
    let location = openLocation;
    if (location === null) {
      const res = await this.session.request('POST', `/v2/${this.path}/blobs/uploads/`, { signal });
      const body = await readResponse(res, 64 * 1024);
      if (res.statusCode !== 202 || !res.headers.location) {
        throw this.accessError(res.statusCode ?? 500, body);
      }
      location = res.headers.location;
    }
    const url = this.session.url(location);
    url.searchParams.set('digest', digest);
    if (url.protocol === 'http:' && (await this.uploadRaw(url, digest, size, bar, signal))) return;
    let sent = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
        sent += chunk.length;
        bar?.update(sent);
        callback(null, chunk);
      },
    });
    const source = this.deps.content.openRead(digest);
    source.pipe(counter);
    source.on('error', (err) => counter.destroy(err));
    let res: IncomingMessage;
    try {
      res = await this.session.request('PUT', url, {
        headers: { 'Content-Type': 'application/octet-stream' },
        body: counter,
        bodyLength: size,
        signal,
      });
    } finally {
      if (!source.destroyed && !source.readableEnded) source.destroy();
    }
    const body = await readResponse(res, 64 * 1024);
    if (res.statusCode !== 201) throw this.accessError(res.statusCode ?? 500, body);
    bar?.update(size, true);
  }

  /**
   * The plain-HTTP fast path of the PUT (see rawget.ts). False when the registry wants the session
   * to authenticate again (401): the general client then sends the blob once more.
   */
  private async uploadRaw(
    url: URL,
    digest: Digest,
    size: number,
    bar: ThrottledProgress | null,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const headers: Record<string, string> = { 'Content-Type': 'application/octet-stream' };
    const authorization = await this.session.authorizationHeader(signal);
    if (authorization) headers.Authorization = authorization;
    let sent = 0;
    let result: Awaited<ReturnType<typeof rawPut>>;
    try {
      result = await rawPut(
        url,
        headers,
        this.deps.content.openRead(digest),
        size,
        (bytes) => {
          sent += bytes;
          bar?.update(sent);
        },
        signal,
      );
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new RegistryUnreachable(`Put "${url.origin}${url.pathname}": ${errorMessage(err)}`, {
        cause: err,
      });
    }
    if (result.status === 401) return false;
    if (result.status !== 201) throw this.accessError(result.status, result.collected);
    bar?.update(size, true);
    return true;
  }

  /** Docker's words for refused pushes: no credentials at all, or the registry's own error. */
  private accessError(status: number, body: Buffer): Error {
    if (status === 401 && !this.session.hasCredentials) return new Unauthorized('no basic auth credentials');
    if (body.length === 0 && status === 401) return new Unauthorized('unauthorized: authentication required');
    if (body.length === 0 && status === 403) {
      return new Unauthorized('denied: requested access to the resource is denied');
    }
    return registryError(status, body);
  }
}
