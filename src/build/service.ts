import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../common/digest.js';
import { Conflict, errorMessage, InvalidArgument, NotFound } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { ensureDir } from '../common/fsutil.js';
import { logger } from '../common/log.js';
import { parseNormalizedNamed } from '../images/reference.js';
import type { DeleteItem } from '../images/service.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { Db } from '../store/db.js';
import {
  Build,
  type BuildContainers,
  type BuildImages,
  type BuildOptions,
  type BuildOutput,
  checkPlatform,
  type PullImage,
  type RegistryCredentialsLike,
} from './builder.js';
import { BuildCache } from './cache.js';
import { BuildContext } from './context.js';
import type { ContextManifest } from './context-manifest.js';
import { ContextStore } from './context-store.js';
import { parseStages } from './instructions.js';
import { IgnoreMatcher } from './patterns.js';

export type { BuildOptions, BuildOutput, NetworkMode } from './builder.js';
export { buildSchema } from './cache.js';

const log = logger('build');

/**
 * Dockerfile builds and their cache.
 *
 * Lifecycle of `build`: the options are checked (tags, platform); the context streams into a
 * private work directory (`<root>/build/tmp/<id>`: one data file, hashed on the way); the
 * Dockerfile is read from it and parsed, `.dockerignore` applied — failures up to here are plain
 * request errors, nothing has been written to the client; then the steps run, writing progress to
 * `output`, each step first asking the cache (SQLite: key → image) and otherwise producing a new
 * image from a container (RUN) or an overlay mount (COPY/ADD/WORKDIR). At the end the image is
 * tagged and the work directory removed. A client that disconnects aborts `signal`: the running
 * step's container is killed and removed, mounts are released, nothing is tagged.
 *
 * `prune` (`docker builder prune`) forgets cache entries and removes the untagged images only the
 * cache kept alive, and empties the context store (`<root>/build/context-store`, see ContextStore)
 * but for what running builds hold; images deleted by other means (`docker rmi`, `docker image
 * prune`) drop their cache entries as they go.
 *
 * Context sync (Strata extension, `strata build`): instead of a tar the client may send a manifest
 * (`missingContent` first, `uploadContent` for what is missing); `build` then assembles the same
 * context tree from the store, so the steps, cache keys and layers are those of the tar.
 */
export interface Builder {
  build(
    context: BuildContextInput,
    options: BuildOptions,
    output: BuildOutput,
    signal: AbortSignal,
  ): Promise<Digest>;
  prune(options: PruneOptions): Promise<PruneResult>;
  /** Context sync: the digests of a manifest's files the context store lacks (the manifest is checked). */
  missingContent(manifest: ContextManifest): string[];
  /** Context sync: stores uploaded bodies (a tar of entries named by their sha256 hex); returns how many were new. */
  uploadContent(tar: Readable): Promise<number>;
}

/** The context as sent: a tar (plain or gzip; or a bare Dockerfile), or a manifest of stored bodies. */
export type BuildContextInput = { tar: Readable } | { manifest: ContextManifest };

export interface PruneOptions {
  /** Forget every cache entry, not only those whose image is gone or unused. */
  all: boolean;
  /** Only entries not used since this time (ms since the epoch). */
  untilMs?: number;
}

export interface PruneResult {
  CachesDeleted: string[] | null;
  SpaceReclaimed: number;
}

/** The image operations `prune` needs on top of the build's. */
export interface BuildServiceImages extends BuildImages {
  remove(ref: string, options?: { force?: boolean; noprune?: boolean }): Promise<DeleteItem[]>;
}

export interface BuildServiceDeps {
  db: Db;
  /** The daemon root; work directories live in `<root>/build/tmp`. */
  root: string;
  images: BuildServiceImages;
  containers: BuildContainers;
  snapshotter: Snapshotter;
  events: EventBus;
  /** The registry client, for FROM images that are not here (absent: FROM needs local images). */
  registry?: PullClient;
}

/** The part of the distribution service a build uses. */
export interface PullClient {
  preparePull(
    request: { image: string; tag: null; platform: string | null; credentials: RegistryCredentialsLike },
    signal?: AbortSignal,
  ): Promise<{
    run(progress: (message: Record<string, unknown>) => void, signal?: AbortSignal): Promise<void>;
  }>;
}

const DOCKER_HUB_KEYS = [
  'https://index.docker.io/v1/',
  'index.docker.io',
  'docker.io',
  'registry-1.docker.io',
];

/** The credentials `X-Registry-Config` holds for the registry of `ref` (keys may carry a scheme). */
export function credentialsFor(auth: BuildOptions['registryAuth'], ref: string): RegistryCredentialsLike {
  const domain = parseNormalizedNamed(ref).domain;
  const host = (key: string) => key.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  for (const [key, credentials] of Object.entries(auth)) {
    if (host(key) === domain) return credentials;
    if (domain === 'docker.io' && DOCKER_HUB_KEYS.includes(key)) return credentials;
  }
  return {};
}

export class BuildService implements Builder {
  private readonly cache: BuildCache;
  private readonly tmpDir: string;
  private readonly contextStore: ContextStore;

  constructor(private readonly deps: BuildServiceDeps) {
    this.cache = new BuildCache(deps.db);
    this.tmpDir = path.join(deps.root, 'build', 'tmp');
    this.contextStore = new ContextStore(path.join(deps.root, 'build', 'context-store'));
    this.sweep();
    ensureDir(this.tmpDir, 0o700);
    deps.events.subscribe((event) => {
      if (event.Type === 'image' && event.Action === 'delete' && event.Actor.ID.startsWith('sha256:')) {
        this.cache.forgetImage(event.Actor.ID as Digest);
      }
    });
  }

  /** Work directories of builds that were running when the daemon stopped: unmount and delete. */
  private sweep(): void {
    if (!fs.existsSync(this.tmpDir)) return;
    for (const build of fs.readdirSync(this.tmpDir)) {
      const buildDir = path.join(this.tmpDir, build);
      try {
        for (const entry of fs.readdirSync(buildDir)) {
          const dir = path.join(buildDir, entry);
          if (this.deps.snapshotter.isContainerMounted(dir)) this.deps.snapshotter.unmountContainer(dir);
        }
      } catch (err) {
        log.warn('cleaning a stale build directory failed', { dir: buildDir, error: errorMessage(err) });
      }
      fs.rmSync(buildDir, { recursive: true, force: true });
    }
  }

  missingContent(manifest: ContextManifest): string[] {
    return this.contextStore.missing(manifest.Entries.filter((e) => e.Type === 'file').map((e) => e.Digest!));
  }

  uploadContent(tar: Readable): Promise<number> {
    return this.contextStore.ingestTar(tar);
  }

  async build(
    input: BuildContextInput,
    options: BuildOptions,
    output: BuildOutput,
    signal: AbortSignal,
  ): Promise<Digest> {
    for (const tag of options.tags) {
      const ref = parseNormalizedNamed(tag);
      if (ref.digest !== null)
        throw new InvalidArgument(`invalid tag ${JSON.stringify(tag)}: a tag cannot name a digest`);
    }
    if (options.platform !== null && options.platform !== '') checkPlatform(options.platform);
    const workDir = fs.mkdtempSync(path.join(this.tmpDir, 'b-'));
    let context: BuildContext | null = null;
    let release = () => {};
    try {
      const receiveStarted = performance.now();
      if ('manifest' in input) {
        release = this.contextStore.hold(
          input.manifest.Entries.filter((e) => e.Type === 'file').map((e) => e.Digest!.slice(7)),
        );
        context = BuildContext.fromManifest(input.manifest, this.contextStore, workDir);
      } else context = await BuildContext.receive(input.tar, workDir, options.dockerfile);
      log.debug('context received', {
        bytes: context.bytes,
        ms: Math.round(performance.now() - receiveStarted),
      });
      const dockerfileName = options.dockerfile;
      let text = context.readSmallFile(dockerfileName);
      if (text === null && dockerfileName === 'Dockerfile') text = context.readSmallFile('dockerfile');
      if (text === null) throw new InvalidArgument(`Cannot locate specified Dockerfile: ${dockerfileName}`);
      const ignore =
        context.readSmallFile(`${dockerfileName}.dockerignore`) ?? context.readSmallFile('.dockerignore');
      if (ignore !== null) context.exclude(new IgnoreMatcher(ignore.toString('utf8')));
      const dockerfile = parseStages(text.toString('utf8'));
      const build = new Build(
        {
          images: this.deps.images,
          containers: this.deps.containers,
          snapshotter: this.deps.snapshotter,
          cache: this.cache,
          pull: this.pullFor(options),
        },
        dockerfile,
        context,
        options,
        output,
        workDir,
        signal,
      );
      const started = performance.now();
      const id = await build.run();
      log.info('image built', { id, ms: Math.round(performance.now() - started), context: context.bytes });
      return id;
    } finally {
      context?.close();
      release();
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  }

  private pullFor(options: BuildOptions): PullImage | undefined {
    const registry = this.deps.registry;
    if (!registry) return undefined;
    return async (ref, platform, progress, signal) => {
      const pull = await registry.preparePull(
        { image: ref, tag: null, platform, credentials: credentialsFor(options.registryAuth, ref) },
        signal,
      );
      await pull.run(progress, signal);
    };
  }

  async prune(options: PruneOptions): Promise<PruneResult> {
    const rows = this.cache
      .all()
      .filter((r) => options.untilMs === undefined || r.lastUsedAt < options.untilMs);
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const row of rows) {
      const image = this.deps.images.findById(row.imageId);
      if (image !== null && image.repoTags.length === 0) {
        const sizes = new Map(image.layers.map((l) => [l.chainId as string, l.size]));
        try {
          const items = await this.deps.images.remove(row.imageId);
          for (const item of items) if ('Deleted' in item) reclaimed += sizes.get(item.Deleted) ?? 0;
        } catch (err) {
          // Still the parent of another image, or used by a container: it stays, and so does its entry.
          if (!(err instanceof Conflict) && !(err instanceof NotFound)) throw err;
        }
      }
      let exists = false;
      try {
        this.deps.images.resolve(row.imageId);
        exists = true;
      } catch {
        exists = false;
      }
      if (options.all || !exists) {
        this.cache.remove(row.key);
        deleted.push(row.key);
      }
    }
    const bodies = this.contextStore.prune(options.untilMs);
    reclaimed += bodies.bytes;
    return { CachesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
  }
}
