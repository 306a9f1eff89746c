import { errorMessage, InvalidArgument } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { ContentStore } from '../content/store.js';
import { hostArchitecture } from '../images/config.js';
import {
  DEFAULT_DOMAIN,
  fullName,
  type NamedReference,
  parseNormalizedNamed,
  parseReference,
  tagNameOnly,
  withTag,
} from '../images/reference.js';
import type { ImageService } from '../images/service.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { Db } from '../store/db.js';
import type { RegistryCredentials } from './auth.js';
import { DownloadManager } from './downloads.js';
import { mirrorUrl, type RegistryEndpoint, RegistryHosts, serverAddressDomain } from './hosts.js';
import { Limiter } from './limiter.js';
import { type Platform, parsePlatform } from './manifest.js';
import { DistributionMetadata } from './metadata.js';
import type { ProgressSink } from './progress.js';
import { type PreparedPull, prepareAllTagsPull, preparePull } from './pull.js';
import { resolvePushItems, runPush } from './push.js';
import { RegistrySession, type SchemeCache } from './session.js';
import { RegistryTransport } from './transport.js';

const log = logger('distribution');

/**
 * The registry client of the daemon: `docker pull`, `docker push`, `docker login`.
 *
 * Each operation opens a `RegistrySession` for the reference's registry with the caller's
 * credentials (from `X-Registry-Auth`; the daemon stores none). A pull is prepared first — the
 * reference resolved down to an image config, so a missing manifest or an unreachable registry is a
 * plain HTTP error — and then run while progress streams to the client. A push resolves the local
 * tags first (404 when there are none) and reports everything after that in the stream, as dockerd
 * does. Downloads (3 at a time) and uploads (5 at a time) are limited per daemon.
 */
export interface DistributionServiceDeps {
  db: Db;
  images: ImageService;
  content: ContentStore;
  snapshotter: Snapshotter;
  /** `--insecure-registry` values: `host:port`, `host` or an IPv4 CIDR. */
  insecureRegistries?: readonly string[];
  /** `--registry-mirror` values: `http(s)://host[:port]`, tried in order for `docker.io` pulls. */
  registryMirrors?: readonly string[];
  maxConcurrentDownloads?: number;
  maxConcurrentUploads?: number;
}

export interface PullRequest {
  /** `fromImage`: `bb`, `127.0.0.1:5000/x`, possibly with `:tag` or `@digest`. */
  image: string;
  /** `tag`: a tag, or a digest (`sha256:…`) when pulling by digest. */
  tag?: string | null;
  /** `platform`: `linux/amd64`; default: this host's. */
  platform?: string | null;
  credentials: RegistryCredentials;
}

export interface PushRequest {
  /** The repository (`127.0.0.1:5000/bb`), possibly with a tag. */
  name: string;
  tag?: string | null;
  credentials: RegistryCredentials;
}

export interface LoginRequest {
  serverAddress?: string | null;
  credentials: RegistryCredentials;
}

export class DistributionService {
  readonly hosts: RegistryHosts;
  private readonly transport = new RegistryTransport();
  private readonly schemes: SchemeCache = new Map();
  private readonly metadata: DistributionMetadata;
  private readonly downloads: DownloadManager;
  private readonly uploads: Limiter;

  constructor(private readonly deps: DistributionServiceDeps) {
    this.hosts = new RegistryHosts(deps.insecureRegistries ?? [], deps.registryMirrors ?? []);
    this.metadata = new DistributionMetadata(deps.db);
    this.downloads = new DownloadManager(deps.content, deps.maxConcurrentDownloads ?? 3);
    this.uploads = new Limiter(deps.maxConcurrentUploads ?? 5);
  }

  private session(
    domain: string,
    credentials: RegistryCredentials,
    scopes: string[],
    mirror: RegistryEndpoint | null = null,
  ): RegistrySession {
    return new RegistrySession(this.transport, this.hosts, this.schemes, domain, credentials, scopes, mirror);
  }

  /**
   * Resolves a pull from the first source that can serve it: for `docker.io` images each mirror in
   * turn, then Docker Hub itself (dockerd's order; its credentials go to the mirrors too, as there).
   * A mirror that fails — unreachable, refusing, or without the image — is logged and passed over;
   * the last source's error is the one reported. Other registries have no mirrors.
   */
  private async fromMirrorsFirst<T>(
    domain: string,
    credentials: RegistryCredentials,
    scopes: string[],
    prepare: (session: RegistrySession) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    if (domain === DEFAULT_DOMAIN) {
      for (const mirror of this.hosts.mirrors) {
        try {
          return await prepare(this.session(domain, credentials, scopes, mirror));
        } catch (err) {
          if (signal?.aborted) throw err;
          log.warn('pulling from a registry mirror failed, trying the next source', {
            mirror: mirrorUrl(mirror),
            error: errorMessage(err),
          });
        }
      }
    }
    return prepare(this.session(domain, credentials, scopes));
  }

  /** Resolves what to pull; `run` on the result does the transfer. */
  async preparePull(request: PullRequest, signal?: AbortSignal): Promise<PreparedPull> {
    const platform: Platform = parsePlatform(request.platform) ?? {
      os: 'linux',
      architecture: hostArchitecture(),
    };
    const deps = {
      images: this.deps.images,
      content: this.deps.content,
      snapshotter: this.deps.snapshotter,
      metadata: this.metadata,
      downloads: this.downloads,
    };
    const named = parseNormalizedNamed(request.image);
    if (!request.tag && named.tag === null && named.digest === null) {
      // No tag anywhere: every tag (docker pull --all-tags; the CLI sends `tag=latest` otherwise).
      return this.fromMirrorsFirst(
        named.domain,
        request.credentials,
        [`repository:${named.path}:pull`],
        (session) => prepareAllTagsPull(deps, session, named, platform, signal),
        signal,
      );
    }
    const ref = pullReference(request.image, request.tag ?? null);
    return this.fromMirrorsFirst(
      ref.domain,
      request.credentials,
      [`repository:${ref.path}:pull`],
      (session) => preparePull(deps, session, ref, platform, signal),
      signal,
    );
  }

  /**
   * Resolves the local tags to push (404 when there are none); the returned function streams the
   * push's progress into `progress` (registry errors included, by throwing after the stream began).
   */
  preparePush(request: PushRequest): (progress: ProgressSink, signal?: AbortSignal) => Promise<void> {
    const named = parseNormalizedNamed(request.name);
    const repository: NamedReference = { ...named, tag: null, digest: null };
    const items = resolvePushItems(this.deps.images, named, request.tag || null);
    return async (progress, signal) => {
      const session = this.session(repository.domain, request.credentials, [
        `repository:${repository.path}:pull,push`,
      ]);
      await runPush(
        {
          images: this.deps.images,
          content: this.deps.content,
          metadata: this.metadata,
          uploads: this.uploads,
        },
        session,
        repository,
        items,
        progress,
        signal,
      );
    };
  }

  /** `docker login`: checks the credentials against the registry; the client stores them. */
  async login(
    request: LoginRequest,
    signal?: AbortSignal,
  ): Promise<{ IdentityToken: string; Status: string }> {
    const domain = serverAddressDomain(request.serverAddress);
    const session = this.session(domain, request.credentials, []);
    await session.verifyCredentials(signal);
    return { IdentityToken: '', Status: 'Login Succeeded' };
  }

  close(): void {
    this.transport.close();
  }
}

/** `fromImage` + `tag` as dockerd combines them: the tag may be a digest; no tag means `latest`. */
export function pullReference(image: string, tag: string | null): NamedReference {
  let ref = parseNormalizedNamed(image);
  if (tag) {
    // A tag never holds a colon: `sha256:…` is a digest.
    ref = tag.includes(':')
      ? { ...parseReference(`${fullName(ref)}@${tag}`), tag: null }
      : withTag({ ...ref, digest: null }, tag);
  }
  if (ref.digest !== null) return { ...ref, tag: null };
  const tagged = tagNameOnly(ref);
  if (tagged.tag === null) throw new InvalidArgument(`invalid reference ${image}`);
  return tagged;
}
