import { setMaxListeners } from 'node:events';
import { type Readable, Transform, type TransformCallback } from 'node:stream';
import { z } from 'zod';
import { chainIds, type Digest, digestAlgorithm, newHash } from '../common/digest.js';
import { InvalidArgument, NotFound } from '../common/errors.js';
import type { ContentStore } from '../content/store.js';
import { type Descriptor, type ImageConfig, type ImageManifest, parseImageConfig } from '../images/config.js';
import { familiarName, familiarString, type NamedReference } from '../images/reference.js';
import type { ImageLease, ImageService, LayerRecord } from '../images/service.js';
import { ByteCounter, decompress, peekCompression, pipeInto } from '../images/streams.js';
import type { Snapshotter, TarFeed } from '../snapshots/snapshotter.js';
import type { BlobDownload, DownloadEvent, DownloadManager } from './downloads.js';
import { RegistryResponseError, registryError } from './errors.js';
import {
  chooseManifest,
  formatPlatform,
  MANIFEST_ACCEPT,
  MANIFEST_MAX_BYTES,
  type Platform,
  parseManifest,
  platformMatches,
} from './manifest.js';
import type { DistributionMetadata } from './metadata.js';
import { layerId, layerStatus, type ProgressSink, ThrottledProgress } from './progress.js';
import type { RegistrySession } from './session.js';
import { readResponse } from './transport.js';

/**
 * `docker pull`, in two steps so that the HTTP status can still tell what went wrong before any
 * progress is streamed:
 *  1. `preparePull` resolves the reference: tag or digest → manifest (an index → the manifest for the
 *     wanted platform) → image config. Unreachable registry (500), unknown manifest (404), refused
 *     access and foreign platforms fail here.
 *  2. `run` streams Docker's progress while it fetches what is missing. Every layer whose chain id is
 *     already a local layer is skipped ("Already exists"); the others download in parallel, each
 *     straight into the content store with its digest checked, and each is unpacked from those same
 *     bytes as they arrive (gunzip → snapshotter), bottom layer first since a layer sits on its
 *     parent. Then the image is recorded with its tag and RepoDigest (`repo@sha256:…`).
 */
export interface PullDeps {
  images: ImageService;
  content: ContentStore;
  snapshotter: Snapshotter;
  metadata: DistributionMetadata;
  downloads: DownloadManager;
}

export interface PreparedPull {
  readonly reference: NamedReference;
  /** Digest of what the reference resolved to (the index, for a multi-platform image). */
  readonly manifestDigest: Digest;
  run(progress: ProgressSink, signal?: AbortSignal): Promise<void>;
  /** `run` without the closing status line; resolves to whether the reference changed. */
  runForAllTags(progress: ProgressSink, signal?: AbortSignal): Promise<boolean>;
}

const CONFIG_MAX_BYTES = 8 * 1024 * 1024;

export async function preparePull(
  deps: PullDeps,
  session: RegistrySession,
  ref: NamedReference,
  platform: Platform,
  signal?: AbortSignal,
): Promise<PreparedPull> {
  await session.ping(signal);
  const top = await fetchManifest(session, ref, ref.digest ?? ref.tag ?? 'latest', signal);
  let parsed = top.parsed;
  if (parsed.kind === 'index') {
    const chosen = chooseManifest(parsed.index, platform, familiarString(ref));
    parsed = (await fetchManifest(session, ref, chosen.digest, signal)).parsed;
    if (parsed.kind === 'index') throw new InvalidArgument(`nested image index in ${familiarString(ref)}`);
  }
  const manifest = parsed.manifest;
  const configBytes = await fetchSmallBlob(session, ref.path, manifest.config, signal);
  const config = parseImageConfig(configBytes);
  if ((config.architecture || config.os) && !platformMatches(config, platform)) {
    throw new NotFound(
      `image ${familiarString(ref)} is for ${formatPlatform(config)}, not ${formatPlatform(platform)}: ` +
        'no matching manifest for this platform',
    );
  }
  if (config.rootfs.diff_ids.length !== manifest.layers.length) {
    throw new InvalidArgument(
      `invalid image ${familiarString(ref)}: the manifest lists ${manifest.layers.length} layers, its config ${config.rootfs.diff_ids.length}`,
    );
  }
  const pull = new Pull(
    deps,
    session,
    ref,
    top.digest,
    manifest,
    manifest.config.digest,
    configBytes,
    config,
  );
  return {
    reference: ref,
    manifestDigest: top.digest,
    run: async (progress, runSignal) => {
      await pull.run(progress, runSignal);
    },
    runForAllTags: (progress, runSignal) => pull.run(progress, runSignal, false),
  };
}

function statusLine(updated: boolean, name: string): string {
  return `Status: ${updated ? 'Downloaded newer image' : 'Image is up to date'} for ${name}`;
}

const TAG_PAGES_MAX = 100;

/**
 * `docker pull --all-tags` (a `fromImage` without tag, and no `tag`): every tag the registry lists,
 * one after the other in one stream, with one status line for the repository at the end.
 */
export async function prepareAllTagsPull(
  deps: PullDeps,
  session: RegistrySession,
  repository: NamedReference,
  platform: Platform,
  signal?: AbortSignal,
): Promise<PreparedPull> {
  await session.ping(signal);
  const tags: string[] = [];
  let next: string | null = `/v2/${repository.path}/tags/list?n=1000`;
  for (let page = 0; next !== null && page < TAG_PAGES_MAX; page++) {
    const res = await session.request('GET', next, { signal });
    const body = await readResponse(res, MANIFEST_MAX_BYTES);
    if (res.statusCode !== 200) {
      const err = registryError(res.statusCode ?? 500, body);
      if (err.httpStatus === 404 || err.httpStatus === 401 || err.httpStatus === 403) {
        throw new NotFound(
          `pull access denied for ${familiarName(repository)}, repository does not exist or may require 'docker login': ${err.message}`,
        );
      }
      throw err;
    }
    const list = tagListSchema.safeParse(JSON.parse(body.toString('utf8')));
    if (!list.success) throw new InvalidArgument(`invalid tag list from ${session.host}`);
    tags.push(...(list.data.tags ?? []));
    const link = /<([^>]+)>;\s*rel="?next"?/.exec(String(res.headers.link ?? ''));
    next = link?.[1] ?? null;
  }
  if (tags.length === 0) throw new NotFound(`no tags found for ${familiarName(repository)}`);
  return {
    reference: repository,
    manifestDigest: '' as Digest,
    run: async (progress, runSignal) => {
      let updated = false;
      for (const tag of tags) {
        const pull = await preparePull(
          deps,
          session,
          { ...repository, tag, digest: null },
          platform,
          runSignal,
        );
        if (await pull.runForAllTags(progress, runSignal)) updated = true;
      }
      progress({ status: statusLine(updated, familiarName(repository)) });
    },
    runForAllTags: async () => false,
  };
}

const tagListSchema = z.looseObject({ name: z.string().optional(), tags: z.array(z.string()).nullish() });

async function fetchManifest(
  session: RegistrySession,
  ref: NamedReference,
  reference: string,
  signal?: AbortSignal,
): Promise<{ parsed: ReturnType<typeof parseManifest>; digest: Digest }> {
  let res: Awaited<ReturnType<RegistrySession['request']>>;
  try {
    res = await session.request('GET', `/v2/${ref.path}/manifests/${reference}`, {
      headers: { Accept: MANIFEST_ACCEPT },
      signal,
    });
  } catch (err) {
    throw accessError(err, ref);
  }
  const body = await readResponse(res, MANIFEST_MAX_BYTES);
  if (res.statusCode !== 200) throw accessError(registryError(res.statusCode ?? 500, body), ref);
  const algorithm = reference.startsWith('sha512:') ? 'sha512' : 'sha256';
  const digest = `${algorithm}:${newHash(algorithm).update(body).digest('hex')}` as Digest;
  if (reference.includes(':') && digest !== reference) {
    throw new InvalidArgument(`manifest verification failed for digest ${reference}: got ${digest}`);
  }
  return { parsed: parseManifest(body, res.headers['content-type']), digest };
}

/** Docker's messages for a manifest that cannot be had. */
function accessError(err: unknown, ref: NamedReference): unknown {
  if (!(err instanceof RegistryResponseError)) return err;
  if (err.httpStatus === 404) {
    return new NotFound(`manifest for ${familiarString(ref)} not found: ${err.message}`);
  }
  if (err.httpStatus === 401 || err.httpStatus === 403) {
    return new NotFound(
      `pull access denied for ${familiarName(ref)}, repository does not exist or may require 'docker login': ${err.message}`,
    );
  }
  return err;
}

async function fetchSmallBlob(
  session: RegistrySession,
  repository: string,
  descriptor: Descriptor,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (descriptor.size > CONFIG_MAX_BYTES) {
    throw new InvalidArgument(`image config ${descriptor.digest} is ${descriptor.size} bytes, too large`);
  }
  const res = await session.request('GET', `/v2/${repository}/blobs/${descriptor.digest}`, { signal });
  const body = await readResponse(res, CONFIG_MAX_BYTES);
  if (res.statusCode !== 200) throw registryError(res.statusCode ?? 500, body);
  const algorithm = digestAlgorithm(descriptor.digest);
  const digest = `${algorithm}:${newHash(algorithm).update(body).digest('hex')}`;
  if (digest !== descriptor.digest) {
    throw new InvalidArgument(`image config verification failed for digest ${descriptor.digest}`);
  }
  return body;
}

interface LayerPlan {
  index: number;
  descriptor: Descriptor;
  id: string;
  diffId: Digest;
  chainId: Digest;
  /** The local layer when it is already here. */
  existing: LayerRecord | null;
  download: BlobDownload | null;
}

class Pull {
  constructor(
    private readonly deps: PullDeps,
    private readonly session: RegistrySession,
    private readonly ref: NamedReference,
    private readonly manifestDigest: Digest,
    private readonly manifest: ImageManifest,
    private readonly configDigest: Digest,
    private readonly configBytes: Buffer,
    private readonly config: ImageConfig,
  ) {}

  /** Pulls and records the image; returns whether the reference now names a different image. */
  async run(progress: ProgressSink, signal?: AbortSignal, reportStatus = true): Promise<boolean> {
    const { images, metadata } = this.deps;
    const ref = this.ref;
    progress({
      status: `Pulling from ${ref.path}`,
      id: ref.digest !== null ? familiarString(ref) : (ref.tag ?? 'latest'),
    });
    const lease = images.lease([this.configDigest]);
    try {
      const existing = images.findById(this.configDigest);
      const layers =
        existing && images.hasImage(this.configDigest)
          ? existing.layers
          : await this.pullLayers(progress, lease, signal);
      const digestRef: NamedReference = { ...ref, tag: null, digest: this.manifestDigest };
      const { updated } = await images.registerPulledImage({
        configBytes: this.configBytes,
        layers,
        tag: ref.digest === null ? ref : null,
        digestRef,
      });
      this.manifest.layers.forEach((layer, i) => {
        metadata.rememberSource(layer.digest, this.session.host, ref.path);
        const diffId = this.config.rootfs.diff_ids[i];
        if (diffId) {
          metadata.rememberLayerDescriptor(diffId, {
            digest: layer.digest,
            mediaType: layer.mediaType,
            size: layer.size,
          });
        }
      });
      metadata.rememberSource(this.configDigest, this.session.host, ref.path);
      progress({ status: `Digest: ${this.manifestDigest}` });
      if (reportStatus) progress({ status: statusLine(updated, familiarString(ref)) });
      return updated;
    } finally {
      lease.release();
    }
  }

  /** Decides per layer: present, or to fetch; then fetches and unpacks; returns the image's layers. */
  private async pullLayers(
    progress: ProgressSink,
    lease: ImageLease,
    signal?: AbortSignal,
  ): Promise<LayerRecord[]> {
    const diffIds = this.config.rootfs.diff_ids;
    const chains = chainIds(diffIds);
    const plans: LayerPlan[] = this.manifest.layers.map((descriptor, index) => {
      const chainId = chains[index];
      // Leased in the same tick as the check, so no removal can slip in between.
      lease.add(chainId);
      lease.add(descriptor.digest);
      const existing = this.existingLayer(descriptor, chainId);
      if (existing) lease.add(existing.blobDigest);
      return {
        index,
        descriptor,
        id: layerId(descriptor.digest),
        diffId: diffIds[index],
        chainId,
        existing,
        download: null,
      };
    });
    for (const plan of plans) {
      progress(layerStatus(plan.id, plan.existing ? 'Already exists' : 'Pulling fs layer'));
    }

    const controller = new AbortController();
    // Two listeners per layer (its download, its unpack), all layers at once.
    setMaxListeners(2 * plans.length + 10, controller.signal);
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    let firstError: unknown = null;
    const fail = (err: unknown): never => {
      firstError ??= err;
      controller.abort(err);
      throw err;
    };
    const unsubscribers: Array<() => void> = [];
    try {
      for (const plan of plans) {
        if (plan.existing) continue;
        const waiting = this.deps.downloads.isBusy;
        plan.download = this.deps.downloads.fetch(this.session, this.ref.path, plan.descriptor);
        unsubscribers.push(this.reportDownload(plan, plan.download, progress));
        if (waiting && plan.download.status === 'waiting') progress(layerStatus(plan.id, 'Waiting'));
        const download = plan.download;
        controller.signal.addEventListener('abort', () => download.release(), { once: true });
      }
      const records: Array<Promise<LayerRecord>> = [];
      let parent: Promise<Digest | null> = Promise.resolve(null);
      for (const plan of plans) {
        const below = parent;
        // Every layer unpacks as its bytes arrive, into staging; it is committed once its parent is.
        const record = (async (): Promise<LayerRecord> => {
          if (plan.existing) {
            await below;
            return plan.existing;
          }
          return this.unpack(plan, below, progress, controller.signal);
        })().catch(fail);
        records.push(record);
        parent = record.then((r) => r.chainId);
        parent.catch(() => undefined);
      }
      const settled = await Promise.allSettled(records);
      if (firstError !== null) throw firstError;
      return settled.map((s) => (s as PromiseFulfilledResult<LayerRecord>).value);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      for (const unsubscribe of unsubscribers) unsubscribe();
      for (const plan of plans) if (!controller.signal.aborted) plan.download?.release();
    }
  }

  /** A local layer for this chain, with a stored blob and the facts an image record needs. */
  private existingLayer(descriptor: Descriptor, chainId: Digest): LayerRecord | null {
    const { images, snapshotter, metadata, content } = this.deps;
    const layer = snapshotter.getLayer(chainId);
    if (layer === null) return null;
    const recorded = images.findLayer(chainId);
    if (recorded) return recorded;
    // Unpacked by a pull that stopped before recording its image: the facts were kept.
    const facts = metadata.pulledLayer(descriptor.digest);
    if (facts === null || facts.diffId !== layer.diffId || !content.has(descriptor.digest)) return null;
    return {
      blobDigest: descriptor.digest,
      mediaType: descriptor.mediaType,
      blobSize: descriptor.size,
      diffId: facts.diffId,
      chainId,
      tarSize: facts.tarSize,
      size: layer.size,
    };
  }

  /** Turns download events into Docker's per-layer status lines. */
  private reportDownload(plan: LayerPlan, download: BlobDownload, progress: ProgressSink): () => void {
    const bar = new ThrottledProgress(progress, plan.id, 'Downloading', plan.descriptor.size);
    const onEvent = (event: DownloadEvent): void => {
      if (event.type === 'progress') bar.update(event.received, event.received === plan.descriptor.size);
      else if (event.type === 'verifying') progress(layerStatus(plan.id, 'Verifying Checksum'));
      else if (event.type === 'complete') progress(layerStatus(plan.id, 'Download complete'));
    };
    if (download.status === 'complete') {
      progress(layerStatus(plan.id, 'Verifying Checksum'));
      progress(layerStatus(plan.id, 'Download complete'));
    }
    return download.subscribe(onEvent);
  }

  /** Unpacks one downloaded layer on its parent, reading the blob while it arrives. */
  private async unpack(
    plan: LayerPlan,
    parentChain: Promise<Digest | null>,
    progress: ProgressSink,
    signal: AbortSignal,
  ): Promise<LayerRecord> {
    const download = plan.download!;
    const { snapshotter, metadata } = this.deps;
    // A blob whose digest is the diff id is the layer tar itself: unpacked inside the download's own
    // writes, and verified by the content store's digest check.
    if (plan.descriptor.digest === plan.diffId)
      return this.unpackPlainBlob(plan, parentChain, progress, signal);
    let blob: Readable;
    try {
      blob = await download.open();
    } catch (err) {
      throw await downloadFailure(download, err);
    }
    const onAbort = (): void => {
      blob.destroy(signal.reason instanceof Error ? signal.reason : new Error('pull cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const total = plan.descriptor.size;
    const bar = new ThrottledProgress(progress, plan.id, 'Extracting', total);
    let extracted = 0;
    const counted = pipeInto(
      blob,
      new Transform({
        transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
          extracted += chunk.length;
          // Docker shows extraction once the download is done; ours overlaps it, so it shows then.
          if (download.status === 'complete') bar.update(extracted);
          callback(null, chunk);
        },
      }),
    );
    try {
      const { compression, stream } = await peekCompression(counted);
      // An uncompressed blob is its own layer tar: the content store's digest check is the diff id's.
      const isPlainBlob = compression === 'none' && plan.descriptor.digest === plan.diffId;
      const counter = isPlainBlob ? null : pipeInto(decompress(stream, compression), new ByteCounter());
      const layer = await snapshotter.unpackLayer(parentChain, counter ?? stream, plan.diffId, {
        diffIdVerified: isPlainBlob,
      });
      await download.done;
      bar.update(total, true);
      const tarSize = counter?.bytes ?? plan.descriptor.size;
      metadata.rememberPulledLayer(plan.descriptor.digest, { diffId: layer.diffId, tarSize });
      progress(layerStatus(plan.id, 'Pull complete'));
      return {
        blobDigest: plan.descriptor.digest,
        mediaType: plan.descriptor.mediaType,
        blobSize: plan.descriptor.size,
        diffId: layer.diffId,
        chainId: layer.chainId,
        tarSize,
        size: layer.size,
      };
    } catch (err) {
      blob.destroy();
      throw await downloadFailure(download, err);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  /** `unpack` of an uncompressed blob, fed synchronously from the download as it is written. */
  private async unpackPlainBlob(
    plan: LayerPlan,
    parentChain: Promise<Digest | null>,
    progress: ProgressSink,
    signal: AbortSignal,
  ): Promise<LayerRecord> {
    const download = plan.download!;
    const total = plan.descriptor.size;
    const bar = new ThrottledProgress(progress, plan.id, 'Extracting', total);
    let extracted = 0;
    const feed: TarFeed = {
      feed: (consume) =>
        download.feed((chunk) => {
          consume(chunk);
          extracted += chunk.length;
          // Docker shows extraction once the download is done; ours overlaps it, so it shows then.
          if (download.status === 'complete') bar.update(extracted);
        }, signal),
    };
    try {
      const layer = await this.deps.snapshotter.unpackLayer(parentChain, feed, plan.diffId, {
        diffIdVerified: true,
      });
      await download.done;
      bar.update(total, true);
      this.deps.metadata.rememberPulledLayer(plan.descriptor.digest, {
        diffId: layer.diffId,
        tarSize: total,
      });
      progress(layerStatus(plan.id, 'Pull complete'));
      return {
        blobDigest: plan.descriptor.digest,
        mediaType: plan.descriptor.mediaType,
        blobSize: total,
        diffId: layer.diffId,
        chainId: layer.chainId,
        tarSize: total,
        size: layer.size,
      };
    } catch (err) {
      throw await downloadFailure(download, err);
    }
  }
}

/** When the download behind an unpack failed, its error is the one worth reporting. */
async function downloadFailure(download: BlobDownload, err: unknown): Promise<unknown> {
  if (download.status !== 'failed') return err;
  const [outcome] = await Promise.allSettled([download.done]);
  return outcome.status === 'rejected' ? outcome.reason : err;
}
