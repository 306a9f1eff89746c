import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { type Digest, digestHex, sha256, shortId } from '../common/digest.js';
import { Conflict, errorMessage, InvalidArgument, NotFound } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { logger } from '../common/log.js';
import type { BlobInfo, ContentStore } from '../content/store.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { Db } from '../store/db.js';
import { type OutputEntry, planLoad, readArchive, writeTar } from './archive.js';
import {
  applyChanges,
  type ContainerConfig,
  fullContainerConfig,
  type HistoryEntry,
  hostArchitecture,
  type ImageConfig,
  MediaType,
  parseGoDuration,
  parseImageConfig,
} from './config.js';
import {
  familiarMatch,
  familiarName,
  familiarString,
  fullName,
  type NamedReference,
  parseAnyReference,
  parseNormalizedNamed,
  parseReference,
  tagNameOnly,
  trimNamed,
  withTag,
} from './reference.js';
import { type ImageRow, ImageStore, type LayerRecord, type RefRow } from './store.js';
import { ByteCounter, decompress, Mutex, pipeInto, sniffCompression } from './streams.js';

export type { LayerRecord } from './store.js';
export { imagesSchema } from './store.js';

const log = logger('images');

/** An image as the rest of the engine sees it. */
export interface ImageRecord {
  /** sha256 of the config JSON. */
  id: Digest;
  config: ImageConfig;
  /** Chain id of the top layer: names the image's root file system; null for an image without layers. */
  chainId: Digest | null;
  layers: LayerRecord[];
  /** The local image this one was committed or built from. */
  parentId: Digest | null;
  /** Familiar form, e.g. `bb:latest`, `127.0.0.1:5000/x:v1`. */
  repoTags: string[];
  repoDigests: string[];
  /** RFC 3339 creation time from the config. */
  created: string;
  /** Sum of the layers' unpacked sizes. */
  size: number;
  lastTagTime: string | null;
}

/** A container that uses an image, as reported by the container part. */
export interface ImageUser {
  id: string;
  running: boolean;
}

export type DeleteItem = { Untagged: string } | { Deleted: string };

export interface ImageServiceDeps {
  db: Db;
  root: string;
  content: ContentStore;
  snapshotter: Snapshotter;
  events: EventBus;
}

export interface ImportOptions {
  repo?: string;
  tag?: string;
  changes?: readonly string[];
  message?: string;
}

export interface CreateImageOptions {
  parent: ImageRecord | null;
  /**
   * New layers on top of the parent's, bottom first: uncompressed layer tars, or a container's
   * changes, made into a layer and its blob in one pass (`Snapshotter.commitContainerDiff`).
   */
  layers: Array<{ tar: Readable } | { containerDiff: ContainerDiffSource }>;
  /** The runtime config of the new image (Env, Cmd, ...). */
  config: ContainerConfig;
  /**
   * History entries appended to the parent's; entries without `empty_layer` match `layers` in order.
   * When omitted, one entry per new layer is written.
   */
  history?: HistoryEntry[];
  author?: string;
  comment?: string;
  /** Id of the container this image was committed from. */
  container?: string;
  containerConfig?: ContainerConfig;
  /** References to tag the new image with (`name`, `name:tag`). */
  tags?: string[];
  /** RFC 3339 creation time of the config (reproducible builds pin it); default now. */
  created?: string;
}

/** A container's upper dir as a new layer (commit, RUN steps). */
export interface ContainerDiffSource {
  containerDir: string;
  /** Tar entry names to leave out (the runtime's mount points). */
  exclude?: ReadonlySet<string>;
  clampMtime?: number;
  /** Runs once the upper dir has been read (a paused container may resume). */
  onPacked?: () => void;
}

/** Held by an operation that will reference layers and blobs it is writing (see `lease`). */
export interface ImageLease {
  add(digest: Digest): void;
  release(): void;
}

/** One message of a JSON progress stream (`{"stream": …}`, `{"status": …}`). */
export type ProgressMessage = Record<string, unknown>;

export interface ListOptions {
  all?: boolean;
  filters?: Map<string, string[]>;
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

/** Docker's canonical key of a reference in the reference store: tags default to `latest`, digests drop the tag. */
function refKey(ref: NamedReference): string {
  if (ref.digest !== null) return `${fullName(ref)}@${ref.digest}`;
  return `${fullName(ref)}:${ref.tag ?? 'latest'}`;
}

function unixSeconds(rfc3339: string): number {
  // Date.parse does not take nanosecond fractions: keep milliseconds.
  const ms = Date.parse(rfc3339.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(ms) ? 0 : Math.floor(ms / 1000);
}

function createdMs(rfc3339: string): number {
  const ms = Date.parse(rfc3339.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(ms) ? 0 : ms;
}

/** `until` of prune filters: unix seconds (with fraction), RFC 3339 dates, or a Go duration ago. */
function parseUntil(value: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  if (!Number.isNaN(date)) return date;
  try {
    return Date.now() - parseGoDuration(value) / 1e6;
  } catch {
    throw new InvalidArgument(`failed to parse value as time or duration: "${value}"`);
  }
}

/** Label filters: `key` or `key=value`; every one must match. */
function matchLabels(
  patterns: readonly string[],
  labels: Record<string, string> | null | undefined,
): boolean {
  return patterns.every((pattern) => {
    const eq = pattern.indexOf('=');
    if (eq === -1) return labels?.[pattern] !== undefined;
    return labels?.[pattern.slice(0, eq)] === pattern.slice(eq + 1);
  });
}

interface DeleteConflict {
  hard: boolean;
  used: boolean;
  message: string;
}

const CONFLICT_DEPENDENT_CHILD = 1;
const CONFLICT_RUNNING_CONTAINER = 2;
const CONFLICT_ACTIVE_REFERENCE = 4;
const CONFLICT_STOPPED_CONTAINER = 8;
const CONFLICT_HARD = CONFLICT_DEPENDENT_CHILD | CONFLICT_RUNNING_CONTAINER;
const CONFLICT_SOFT = CONFLICT_ACTIVE_REFERENCE | CONFLICT_STOPPED_CONTAINER;

/**
 * Images: their configs, layers, tags and digests; import, load, save, tag, remove, prune.
 *
 * An image is named by the sha256 of its config JSON. Its layers are blobs in the content store,
 * unpacked through the snapshotter, so an image's top chain id names its root file system and images
 * share every layer their chains share. Each change writes files first (add-only: blobs, layers),
 * then the database in one transaction; on failure the files it added and nothing references are
 * removed again. Operations that add or remove layers are serialised.
 */
export class ImageService {
  private readonly store: ImageStore;
  private readonly content: ContentStore;
  private readonly snapshotter: Snapshotter;
  private readonly events: EventBus;
  private readonly mutex = new Mutex();
  private readonly configCache = new Map<Digest, ImageConfig>();
  /** Layers (chain ids) and blobs an operation in progress will reference: never removed meanwhile. */
  private readonly leases = new Map<Digest, number>();
  private imageUsers: (imageId: Digest) => ImageUser[] = () => [];

  constructor(deps: ImageServiceDeps) {
    this.store = new ImageStore(deps.db);
    this.content = deps.content;
    this.snapshotter = deps.snapshotter;
    this.events = deps.events;
  }

  /** The container part tells which containers use an image (rmi conflicts, garbage collection). */
  setImageUsers(fn: (imageId: Digest) => ImageUser[]): void {
    this.imageUsers = fn;
  }

  // -------------------------------------------------------------------------------------------
  // Lookup

  /**
   * An image by `name[:tag]`, `docker.io/library/name:tag`, `repo@sha256:…`, `sha256:<hex>`, 64-hex id
   * or unique id prefix. Unknown → 404 `No such image: …`; malformed → 400.
   */
  resolve(ref: string): ImageRecord {
    return this.recordFor(this.store.get(this.resolveId(ref))!);
  }

  /** An image by id, including one removed by the user but still used by a container. */
  findById(id: Digest): ImageRecord | null {
    const row = this.store.get(id, true);
    return row ? this.recordFor(row) : null;
  }

  private resolveId(refText: string): Digest {
    const any = parseAnyReference(refText);
    if (any.kind === 'digest') {
      if (this.store.get(any.digest)) return any.digest;
      throw new NotFound(`No such image: ${any.digest}`);
    }
    const row = this.store.getRef(refKey(any.ref));
    if (row && this.store.get(row.imageId)) return row.imageId;
    const prefix = refText.startsWith('sha256:') ? refText.slice('sha256:'.length) : refText;
    if (/^[a-f0-9]{1,64}$/.test(prefix)) {
      const ids = this.store.idsWithPrefix(prefix);
      if (ids.length === 1) return ids[0];
    }
    throw new NotFound(`No such image: ${familiarString(tagNameOnly(any.ref))}`);
  }

  private configOf(row: ImageRow): ImageConfig {
    let config = this.configCache.get(row.id);
    if (!config) {
      config = parseImageConfig(row.config);
      this.configCache.set(row.id, config);
    }
    return config;
  }

  private recordFor(
    row: ImageRow,
    refs = this.store.refsOf(row.id),
    layers = this.store.layers(row.id),
  ): ImageRecord {
    const config = this.configOf(row);
    const parsed = refs.map((r) => ({ row: r, ref: parseReference(r.ref) }));
    const display = (kind: RefRow['kind']) =>
      parsed
        .filter((p) => p.row.kind === kind)
        .map((p) => familiarString(p.ref))
        .sort();
    return {
      id: row.id,
      config,
      chainId: row.chainId,
      layers,
      parentId: row.parentId,
      repoTags: display('tag'),
      repoDigests: display('digest'),
      created: config.created ?? ZERO_TIME,
      size: row.size,
      lastTagTime: row.lastTagTime,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Listing and inspecting

  /** `GET /images/json`. */
  list(options: ListOptions = {}): Record<string, unknown>[] {
    const filters = options.filters ?? new Map<string, string[]>();
    let danglingOnly = false;
    const dangling = filters.get('dangling');
    if (dangling !== undefined) {
      if (dangling.includes('true')) danglingOnly = true;
      else if (!dangling.includes('false')) {
        throw new InvalidArgument(`Invalid filter 'dangling=[${dangling.join(' ')}]'`);
      }
    }
    let beforeMs: number | null = null;
    let sinceMs: number | null = null;
    for (const value of filters.get('before') ?? []) beforeMs = createdMs(this.resolve(value).created);
    for (const value of filters.get('since') ?? []) sinceMs = createdMs(this.resolve(value).created);
    const labels = filters.get('label') ?? [];
    const patterns = filters.get('reference');

    const allLayers = this.store.allLayers();
    const refsByImage = new Map<Digest, RefRow[]>();
    for (const ref of this.store.allRefs()) {
      const list = refsByImage.get(ref.imageId) ?? [];
      list.push(ref);
      refsByImage.set(ref.imageId, list);
    }
    const rows = this.store.all();
    const hasChildren = new Set(rows.map((r) => r.parentId).filter((p): p is Digest => p !== null));

    const out: Array<{ created: number; summary: Record<string, unknown> }> = [];
    for (const row of rows) {
      if (danglingOnly && hasChildren.has(row.id)) continue;
      const image = this.recordFor(row, refsByImage.get(row.id) ?? [], allLayers.get(row.id) ?? []);
      const created = createdMs(image.created);
      if (beforeMs !== null && !(created < beforeMs)) continue;
      if (sinceMs !== null && !(created > sinceMs)) continue;
      if (labels.length > 0 && !matchLabels(labels, image.config.config?.Labels)) continue;

      let repoTags: string[] | null = null;
      let repoDigests: string[] | null = null;
      for (const refRow of (refsByImage.get(row.id) ?? [])
        .slice()
        .sort((a, b) => a.ref.localeCompare(b.ref))) {
        const ref = parseReference(refRow.ref);
        if (patterns !== undefined && !patterns.some((p) => familiarMatch(p, ref))) continue;
        if (refRow.kind === 'digest') repoDigests = [...(repoDigests ?? []), familiarString(ref)];
        else repoTags = [...(repoTags ?? []), familiarString(ref)];
      }
      if (repoTags === null && repoDigests === null) {
        if (!(options.all || !hasChildren.has(row.id))) continue;
        if (dangling !== undefined && !danglingOnly) continue;
        if (patterns !== undefined) continue;
        repoTags = ['<none>:<none>'];
        repoDigests = ['<none>@<none>'];
      } else if (danglingOnly && repoTags !== null) {
        continue;
      }
      out.push({
        created,
        summary: {
          Containers: -1,
          Created: unixSeconds(image.created),
          Id: image.id,
          Labels: image.config.config?.Labels ?? null,
          ParentId: image.parentId ?? '',
          RepoDigests: repoDigests,
          RepoTags: repoTags,
          SharedSize: -1,
          Size: image.size,
          VirtualSize: image.size,
        },
      });
    }
    out.sort((a, b) => b.created - a.created);
    return out.map((o) => o.summary);
  }

  /** `GET /images/{name}/json`. */
  inspect(ref: string): Record<string, unknown> {
    let image: ImageRecord;
    try {
      image = this.resolve(ref);
    } catch (err) {
      if (err instanceof NotFound) throw new NotFound(`no such image: ${ref}: ${err.message}`);
      throw err;
    }
    const c = image.config;
    const out: Record<string, unknown> = {
      Id: image.id,
      RepoTags: image.repoTags,
      RepoDigests: image.repoDigests,
      Parent: image.parentId ?? '',
      Comment: c.comment ?? '',
      Created: image.created,
      Container: c.container ?? '',
      ContainerConfig: fullContainerConfig(c.container_config),
      DockerVersion: c.docker_version ?? '',
      Author: c.author ?? '',
      Config: fullContainerConfig(c.config),
      Architecture: c.architecture ?? '',
    };
    if (c.variant) out.Variant = c.variant;
    out.Os = c.os ?? 'linux';
    if (c['os.version']) out.OsVersion = c['os.version'];
    Object.assign(out, {
      Size: image.size,
      VirtualSize: image.size,
      GraphDriver: { Data: this.graphDriverData(image.chainId), Name: 'overlay2' },
      RootFS:
        c.rootfs.diff_ids.length > 0 ? { Type: 'layers', Layers: c.rootfs.diff_ids } : { Type: 'layers' },
      Metadata: { LastTagTime: image.lastTagTime ?? ZERO_TIME },
    });
    return out;
  }

  private graphDriverData(chainId: Digest | null): Record<string, string> | null {
    if (chainId === null) return null;
    try {
      const [upper, ...lower] = this.snapshotter.lowerDirs(chainId);
      const data: Record<string, string> = { UpperDir: upper };
      if (lower.length > 0) data.LowerDir = lower.join(':');
      return data;
    } catch {
      return null;
    }
  }

  /** `GET /images/{name}/history`: newest first; ids and tags filled in along the local parent chain. */
  history(ref: string): Record<string, unknown>[] {
    const image = this.resolve(ref);
    const items: Array<Record<string, unknown>> = [];
    let layerIndex = 0;
    for (const entry of image.config.history ?? []) {
      let size = 0;
      if (!entry.empty_layer) {
        const layer = image.layers[layerIndex];
        if (!layer) throw new InvalidArgument('too many non-empty layers in History section');
        size = layer.size;
        layerIndex++;
      }
      items.unshift({
        Comment: entry.comment ?? '',
        Created: unixSeconds(entry.created ?? ZERO_TIME),
        CreatedBy: entry.created_by ?? '',
        Id: '<missing>',
        Size: size,
        Tags: null,
      });
    }
    let current: ImageRecord | null = image;
    for (const item of items) {
      if (current === null) break;
      item.Id = current.id;
      item.Tags = current.repoTags.length > 0 ? current.repoTags : null;
      const parentId: Digest | null = current.parentId;
      const parentRow: ImageRow | null = parentId ? this.store.get(parentId) : null;
      current = parentRow ? this.recordFor(parentRow) : null;
    }
    return items;
  }

  // -------------------------------------------------------------------------------------------
  // Tags

  /** `docker tag`: points `repo[:tag]` at the image; returns the familiar form of the new tag. */
  tag(ref: string, repo: string, tag?: string): string {
    const image = this.resolve(ref);
    let newRef = parseNormalizedNamed(repo);
    if (tag) newRef = withTag(trimNamed(newRef), tag);
    if (newRef.digest !== null) throw new InvalidArgument('refusing to create a tag with a digest reference');
    newRef = tagNameOnly(newRef);
    this.store.transaction(() => {
      this.store.setRef(refKey(newRef), image.id, 'tag');
      this.store.setLastTagTime(image.id, new Date().toISOString());
    });
    const name = familiarString(newRef);
    this.publish('tag', image.id, name);
    return name;
  }

  private publish(action: string, imageId: Digest, name: string): void {
    const row = this.store.get(imageId, true);
    const labels = row ? (this.configOf(row).config?.Labels ?? {}) : {};
    this.events.publish('image', action, imageId, { ...labels, name });
  }

  // -------------------------------------------------------------------------------------------
  // Removal

  /** `docker rmi`: untags, and deletes the image once nothing names it (dockerd's rules and messages). */
  remove(ref: string, options: { force?: boolean; noprune?: boolean } = {}): Promise<DeleteItem[]> {
    return this.mutex.run(() => this.removeLocked(ref, options.force ?? false, !(options.noprune ?? false)));
  }

  private removeLocked(refText: string, force: boolean, prune: boolean): DeleteItem[] {
    const imageId = this.resolveId(refText);
    const records: DeleteItem[] = [];
    let repoRefs = this.parsedRefs(imageId);
    const isIdPrefix = imageId.startsWith(refText) || digestHex(imageId).startsWith(refText);

    if (!isIdPrefix) {
      if (!force && isSingleReference(repoRefs)) {
        const user = this.imageUsers(imageId)[0];
        if (user) {
          throw new Conflict(
            `conflict: unable to remove repository reference "${refText}" (must force) - container ${shortId(user.id)} is using its referenced image ${shortId(imageId)}`,
          );
        }
      }
      const named = parseAnyReference(refText);
      if (named.kind !== 'named') throw new NotFound(`No such image: ${refText}`);
      const removedRef = named.ref.digest !== null ? { ...named.ref, tag: null } : tagNameOnly(named.ref);
      this.untag(imageId, removedRef, records);
      repoRefs = this.parsedRefs(imageId);
      // Removing the last tag of a repository also drops that repository's digest references.
      if (removedRef.digest === null) {
        const sameRepo = (r: NamedReference) => fullName(r) === fullName(removedRef);
        if (!repoRefs.some((r) => r.digest === null && sameRepo(r))) {
          for (const r of repoRefs.filter((r) => r.digest !== null && sameRepo(r)))
            this.untag(imageId, r, records);
          repoRefs = this.parsedRefs(imageId);
        }
      }
      if (repoRefs.length > 0) return records;
      this.deleteHelper(imageId, records, force, prune, true);
      return records;
    }

    if (isSingleReference(repoRefs)) {
      const mask = CONFLICT_HARD | (force ? 0 : CONFLICT_SOFT & ~CONFLICT_ACTIVE_REFERENCE);
      const conflict = this.checkDeleteConflict(imageId, mask);
      if (conflict) throw conflictError(imageId, conflict);
      for (const r of repoRefs) this.untag(imageId, r, records);
    }
    this.deleteHelper(imageId, records, force, prune, false);
    return records;
  }

  private parsedRefs(imageId: Digest): NamedReference[] {
    return this.store.refsOf(imageId).map((r) => parseReference(r.ref));
  }

  private untag(imageId: Digest, ref: NamedReference, records: DeleteItem[]): void {
    if (!this.store.deleteRef(refKey(ref))) throw new NotFound(`No such image: ${familiarString(ref)}`);
    records.push({ Untagged: familiarString(ref) });
    this.publish('untag', imageId, imageId);
  }

  private checkDeleteConflict(imageId: Digest, mask: number): DeleteConflict | null {
    if (mask & CONFLICT_DEPENDENT_CHILD && this.store.children(imageId).length > 0) {
      return { hard: true, used: false, message: 'image has dependent child images' };
    }
    const users =
      mask & (CONFLICT_RUNNING_CONTAINER | CONFLICT_STOPPED_CONTAINER) ? this.imageUsers(imageId) : [];
    const running = users.find((u) => u.running);
    if (mask & CONFLICT_RUNNING_CONTAINER && running) {
      return {
        hard: true,
        used: true,
        message: `image is being used by running container ${shortId(running.id)}`,
      };
    }
    if (mask & CONFLICT_ACTIVE_REFERENCE && this.store.refsOf(imageId).length > 0) {
      return { hard: false, used: false, message: 'image is referenced in multiple repositories' };
    }
    const stopped = users.find((u) => !u.running);
    if (mask & CONFLICT_STOPPED_CONTAINER && stopped) {
      return {
        hard: false,
        used: true,
        message: `image is being used by stopped container ${shortId(stopped.id)}`,
      };
    }
    return null;
  }

  private deleteHelper(
    imageId: Digest,
    records: DeleteItem[],
    force: boolean,
    prune: boolean,
    quiet: boolean,
  ): void {
    const conflict = this.checkDeleteConflict(imageId, CONFLICT_HARD | (force ? 0 : CONFLICT_SOFT));
    if (conflict) {
      const isDangling = this.store.refsOf(imageId).length === 0 && this.store.children(imageId).length === 0;
      // After an untag, a conflict only matters when it would leave a dangling, unused image behind.
      if (quiet && (!isDangling || conflict.used)) return;
      throw conflictError(imageId, conflict);
    }
    const row = this.store.get(imageId);
    if (!row) return;
    for (const r of this.parsedRefs(imageId)) this.untag(imageId, r, records);
    const removedChains = this.deleteImage(row);
    this.publish('delete', imageId, imageId);
    records.push({ Deleted: imageId });
    for (const chain of removedChains) records.push({ Deleted: chain });
    if (!prune || row.parentId === null || !this.store.get(row.parentId)) return;
    this.deleteHelper(row.parentId, records, false, true, true);
  }

  /**
   * Deletes an image's rows, then its layers and blobs that nothing else references. While a container
   * still uses it, the row is only hidden (its layers stay until `collectGarbage`). Returns the chain
   * ids of the layers removed.
   */
  private deleteImage(row: ImageRow): Digest[] {
    if (this.imageUsers(row.id).length > 0) {
      this.store.transaction(() => this.store.markRemoved(row.id));
      return [];
    }
    const layers = this.store.layers(row.id);
    this.store.transaction(() => this.store.deleteImage(row.id));
    this.configCache.delete(row.id);
    const removed = this.removeUnreferencedLayers(layers.map((l) => l.chainId));
    this.removeUnreferencedBlobs([row.id, ...layers.map((l) => l.blobDigest)]);
    return removed;
  }

  /** Removes, top down, the chains no image references; stops at the first one still in use. */
  private removeUnreferencedLayers(chainIds: readonly Digest[]): Digest[] {
    const removed: Digest[] = [];
    for (const chainId of [...chainIds].reverse()) {
      if (this.store.isChainReferenced(chainId) || this.leases.has(chainId)) break;
      if (!this.snapshotter.getLayer(chainId)) continue;
      try {
        this.snapshotter.removeLayer(chainId);
        removed.push(chainId);
      } catch (err) {
        // Another layer sits on it (e.g. one this part does not track): leave the rest in place.
        log.warn('layer kept', { chainId, reason: errorMessage(err) });
        break;
      }
    }
    return removed;
  }

  private removeUnreferencedBlobs(digests: Iterable<Digest>): void {
    for (const digest of new Set(digests)) {
      if (!this.store.isBlobReferenced(digest) && !this.leases.has(digest)) this.content.delete(digest);
    }
  }

  /**
   * Removes images that were deleted while containers used them, once no container does any more.
   * The container part calls this after removing a container; the daemon at start-up.
   */
  collectGarbage(): Promise<Digest[]> {
    return this.mutex.run(() => {
      const purged: Digest[] = [];
      for (const row of this.store.removedImages()) {
        if (this.imageUsers(row.id).length > 0) continue;
        const layers = this.store.layers(row.id);
        this.store.transaction(() => this.store.deleteImage(row.id));
        this.configCache.delete(row.id);
        this.removeUnreferencedLayers(layers.map((l) => l.chainId));
        this.removeUnreferencedBlobs([row.id, ...layers.map((l) => l.blobDigest)]);
        purged.push(row.id);
      }
      return purged;
    });
  }

  /** `POST /images/prune`: dangling images (or, with `dangling=false`, every unused one). */
  prune(options: { filters?: Map<string, string[]> } = {}): Promise<{
    ImagesDeleted: DeleteItem[] | null;
    SpaceReclaimed: number;
  }> {
    const filters = options.filters ?? new Map<string, string[]>();
    let danglingOnly = true;
    const dangling = filters.get('dangling');
    if (dangling !== undefined) {
      if (dangling.includes('false') || dangling.includes('0')) danglingOnly = false;
      else if (!dangling.includes('true') && !dangling.includes('1')) {
        throw new InvalidArgument(`Invalid filter 'dangling=[${dangling.join(' ')}]'`);
      }
    }
    let untilMs: number | null = null;
    for (const value of filters.get('until') ?? []) untilMs = parseUntil(value);
    const labels = filters.get('label') ?? [];
    const notLabels = filters.get('label!') ?? [];

    return this.mutex.run(() => {
      const deleted: DeleteItem[] = [];
      let reclaimed = 0;
      const rows = this.store.all();
      const layerSizes = new Map<Digest, number>();
      for (const layers of this.store.allLayers().values())
        for (const l of layers) layerSizes.set(l.chainId, l.size);
      for (const row of rows) {
        if (!this.store.get(row.id)) continue;
        const children = this.store.children(row.id);
        if (danglingOnly && children.length > 0) continue;
        const refs = this.parsedRefs(row.id);
        if (refs.length === 0 && children.length > 0) continue;
        const config = this.configOf(row);
        if (untilMs !== null && createdMs(config.created ?? ZERO_TIME) > untilMs) continue;
        const imageLabels = config.config?.Labels;
        if (labels.length > 0 && !matchLabels(labels, imageLabels)) continue;
        if (notLabels.length > 0 && matchLabels(notLabels, imageLabels)) continue;
        const targets: string[] = [];
        if (refs.length > 0) {
          const hasTag = refs.some((r) => r.digest === null);
          if (!danglingOnly || !hasTag) targets.push(...refs.map((r) => familiarString(r)));
        } else {
          targets.push(digestHex(row.id));
        }
        for (const target of targets) {
          try {
            deleted.push(...this.removeLocked(target, false, true));
          } catch (err) {
            if (!(err instanceof Conflict) && !(err instanceof NotFound)) throw err;
          }
        }
      }
      for (const item of deleted) {
        if ('Deleted' in item) reclaimed += layerSizes.get(item.Deleted as Digest) ?? 0;
      }
      return { ImagesDeleted: deleted.length > 0 ? deleted : null, SpaceReclaimed: reclaimed };
    });
  }

  // -------------------------------------------------------------------------------------------
  // Registry transfers (used by the distribution part)

  /**
   * Protects layers (chain ids) and blobs that an operation outside this service is about to
   * reference — a pull writes them before the image row exists — from removal as unreferenced.
   * Take the lease in the same tick as the check that the layer exists; release it when the image is
   * recorded or the operation gave up.
   */
  lease(digests: Iterable<Digest> = []): ImageLease {
    const held: Digest[] = [];
    const add = (digest: Digest): void => {
      held.push(digest);
      this.leases.set(digest, (this.leases.get(digest) ?? 0) + 1);
    };
    for (const digest of digests) add(digest);
    let released = false;
    return {
      add,
      release: () => {
        if (released) return;
        released = true;
        for (const digest of held) {
          const count = (this.leases.get(digest) ?? 1) - 1;
          if (count > 0) this.leases.set(digest, count);
          else this.leases.delete(digest);
        }
      },
    };
  }

  /** A recorded layer with this chain id whose blob is stored (any image's: the layer is the same). */
  findLayer(chainId: Digest): LayerRecord | null {
    const layer = this.store.layerByChain(chainId);
    return layer && this.content.has(layer.blobDigest) ? layer : null;
  }

  /** True when the image is stored and visible. */
  hasImage(id: Digest): boolean {
    return this.store.get(id) !== null;
  }

  /**
   * Records a pulled image whose layers are already unpacked: its config blob, the image row and its
   * references — `tag` (when pulled by tag) and `digestRef` (`repo@sha256:…`, its RepoDigest).
   * `updated` tells whether the requested reference now names another image than before (Docker's
   * "Downloaded newer image" against "Image is up to date").
   */
  registerPulledImage(params: {
    configBytes: Buffer;
    layers: readonly LayerRecord[];
    tag: NamedReference | null;
    digestRef: NamedReference;
  }): Promise<{ id: Digest; updated: boolean }> {
    return this.mutex.run(() => {
      const config = parseImageConfig(params.configBytes);
      if (config.rootfs.diff_ids.length !== params.layers.length) {
        throw new InvalidArgument('image config and layers disagree on the number of layers');
      }
      for (const [i, layer] of params.layers.entries()) {
        if (layer.diffId !== config.rootfs.diff_ids[i]) {
          throw new InvalidArgument(`layer ${i} does not match the image config's diff id`);
        }
        if (!this.snapshotter.hasLayer(layer.chainId)) throw new NotFound(`layer ${layer.chainId} not found`);
      }
      const blob = this.content.writeSmall(params.configBytes);
      const id = blob.digest;
      const requested = params.tag ?? params.digestRef;
      let updated = false;
      this.store.transaction(() => {
        const added = this.store.putImage(
          {
            id,
            config: params.configBytes.toString('utf8'),
            parentId: null,
            chainId: params.layers.at(-1)?.chainId ?? null,
            size: params.layers.reduce((sum, l) => sum + l.size, 0),
            createdAt: Date.now(),
          },
          params.layers,
        );
        updated = added || this.store.getRef(refKey(requested))?.imageId !== id;
        if (params.tag) this.store.setRef(refKey(params.tag), id, 'tag');
        this.store.setRef(refKey({ ...params.digestRef, tag: null }), id, 'digest');
        if (params.tag) this.store.setLastTagTime(id, new Date().toISOString());
      });
      const name = familiarString(requested);
      this.events.publish('image', 'pull', name, { name });
      return { id, updated };
    });
  }

  /** Adds `repo@sha256:…` to an image's RepoDigests (after a push). */
  addDigestReference(imageId: Digest, ref: NamedReference): void {
    if (ref.digest === null) throw new InvalidArgument('a digest reference needs a digest');
    this.store.transaction(() => {
      if (this.store.get(imageId)) this.store.setRef(refKey({ ...ref, tag: null }), imageId, 'digest');
    });
  }

  /** Publishes the `push` event of an image pushed as `name` (`127.0.0.1:5000/bb:v1`). */
  announcePush(imageId: Digest, name: string): void {
    this.publish('push', imageId, name);
  }

  /** The tags of one repository (`docker push repo` without a tag pushes them all), sorted. */
  repositoryTags(repository: NamedReference): Array<{ ref: NamedReference; imageId: Digest }> {
    return this.store
      .allRefs()
      .filter((r) => r.kind === 'tag')
      .map((r) => ({ ref: parseReference(r.ref), imageId: r.imageId }))
      .filter((r) => fullName(r.ref) === fullName(repository) && this.store.get(r.imageId) !== null)
      .sort((a, b) => (a.ref.tag ?? '').localeCompare(b.ref.tag ?? ''));
  }

  // -------------------------------------------------------------------------------------------
  // Adding images

  /**
   * Unpacks a stored layer blob (plain or gzip tar) on `parent`; verifies the diff id when expected.
   * `chains` collects the chain ids touched, for clean-up after a failure.
   */
  private async unpackBlob(
    parent: Digest | null,
    blob: BlobInfo,
    expectedDiffId: Digest | undefined,
    chains: Digest[],
  ): Promise<LayerRecord> {
    const { compression, stream } = await sniffCompression(this.content.openRead(blob.digest));
    const counter = pipeInto(decompress(stream, compression), new ByteCounter());
    const layer = await this.snapshotter.unpackLayer(parent, counter, expectedDiffId);
    chains.push(layer.chainId);
    return {
      blobDigest: blob.digest,
      mediaType: compression === 'gzip' ? MediaType.ociLayerGzip : MediaType.ociLayer,
      blobSize: blob.size,
      diffId: layer.diffId,
      chainId: layer.chainId,
      tarSize: counter.bytes,
      size: layer.size,
    };
  }

  /** A container's changes → layer + uncompressed blob, written in one pass, synced once. */
  private commitDiffLayer(
    parent: Digest | null,
    source: ContainerDiffSource,
    blobs: Digest[],
    chains: Digest[],
  ): LayerRecord {
    const writer = this.content.createSyncWriter();
    try {
      const layer = this.snapshotter.commitContainerDiff(source.containerDir, parent, writer, {
        exclude: source.exclude,
        clampMtime: source.clampMtime,
        onPacked: source.onPacked,
      });
      chains.push(layer.chainId);
      const blob = writer.commit({ digest: layer.diffId });
      if (blob.created) blobs.push(blob.digest);
      return {
        blobDigest: blob.digest,
        mediaType: MediaType.ociLayer,
        blobSize: blob.size,
        diffId: layer.diffId,
        chainId: layer.chainId,
        tarSize: layer.tarSize,
        size: layer.size,
      };
    } catch (err) {
      writer.abort();
      throw err;
    }
  }

  /** Removes what a failed operation added and nothing references. */
  private discard(blobs: readonly Digest[], chains: readonly Digest[]): void {
    try {
      this.removeUnreferencedLayersAll(chains);
      this.removeUnreferencedBlobs(blobs);
    } catch (err) {
      log.warn('clean-up after a failed image operation was incomplete', { reason: errorMessage(err) });
    }
  }

  private removeUnreferencedLayersAll(chains: readonly Digest[]): void {
    for (const chainId of [...chains].reverse()) {
      if (
        this.store.isChainReferenced(chainId) ||
        this.leases.has(chainId) ||
        !this.snapshotter.getLayer(chainId)
      )
        continue;
      try {
        this.snapshotter.removeLayer(chainId);
      } catch (err) {
        log.warn('layer kept', { chainId, reason: errorMessage(err) });
      }
    }
  }

  /** Stores the config blob and, in one transaction, the image row, its layers and its tags. */
  private storeImage(params: {
    configBytes: Buffer;
    layers: LayerRecord[];
    parentId: Digest | null;
    tags: NamedReference[];
    createdBlobs: Digest[];
  }): { id: Digest; moved: Array<{ tag: NamedReference; previous: Digest }> } {
    const blob = this.content.writeSmall(params.configBytes);
    if (blob.created) params.createdBlobs.push(blob.digest);
    const id = blob.digest;
    const moved: Array<{ tag: NamedReference; previous: Digest }> = [];
    this.store.transaction(() => {
      this.store.putImage(
        {
          id,
          config: params.configBytes.toString('utf8'),
          parentId: params.parentId,
          chainId: params.layers.at(-1)?.chainId ?? null,
          size: params.layers.reduce((sum, l) => sum + l.size, 0),
          createdAt: Date.now(),
        },
        params.layers,
      );
      for (const tag of params.tags) {
        const previous = this.store.setRef(refKey(tag), id, 'tag');
        if (previous) moved.push({ tag, previous });
      }
      if (params.tags.length > 0) this.store.setLastTagTime(id, new Date().toISOString());
    });
    return { id, moved };
  }

  /**
   * `docker import`: one layer from a tar (plain or gzip), a config built from `changes`, optionally
   * tagged `repo[:tag]`. Returns the new image id.
   */
  async importImage(tar: Readable, options: ImportOptions = {}): Promise<Digest> {
    let newRef: NamedReference | null = null;
    if (options.repo) {
      newRef = parseNormalizedNamed(options.repo);
      if (newRef.digest !== null) throw new InvalidArgument('cannot import digest reference');
      if (options.tag) newRef = withTag(newRef, options.tag);
      newRef = tagNameOnly(newRef);
    }
    const runtimeConfig = applyChanges({}, options.changes ?? []);
    const message = options.message || 'Imported from -';
    const { compression, stream } = await sniffCompression(tar);
    // bzip2/xz/zstd: refused (400) before anything is stored.
    if (compression !== 'none' && compression !== 'gzip') decompress(stream, compression);

    return this.mutex.run(async () => {
      const blobs: Digest[] = [];
      const chains: Digest[] = [];
      try {
        const blob = await this.content.ingest(stream);
        if (blob.created) blobs.push(blob.digest);
        const layer = await this.unpackBlob(null, blob, undefined, chains);
        const created = new Date().toISOString();
        const config = {
          architecture: hostArchitecture(),
          comment: message,
          config: fullContainerConfig(runtimeConfig),
          container_config: fullContainerConfig(null),
          created,
          history: [{ created, comment: message }],
          os: 'linux',
          rootfs: { type: 'layers', diff_ids: [layer.diffId] },
        };
        const { id } = this.storeImage({
          configBytes: Buffer.from(JSON.stringify(config)),
          layers: [layer],
          parentId: null,
          tags: newRef ? [newRef] : [],
          createdBlobs: blobs,
        });
        this.publish('import', id, id);
        if (newRef) this.publish('tag', id, familiarString(newRef));
        return id;
      } catch (err) {
        this.discard(blobs, chains);
        throw err;
      }
    });
  }

  /**
   * A new image on top of `parent` (or from scratch) with new layers and a new config: the common
   * step of `docker commit` and `docker build`. The new image references the parent's layers.
   */
  async createImage(options: CreateImageOptions): Promise<Digest> {
    const tags = (options.tags ?? []).map((t) => {
      const ref = parseNormalizedNamed(t);
      if (ref.digest !== null) throw new InvalidArgument('refusing to create a tag with a digest reference');
      return tagNameOnly(ref);
    });
    return this.mutex.run(async () => {
      const blobs: Digest[] = [];
      const chains: Digest[] = [];
      try {
        const parent = options.parent;
        const layers: LayerRecord[] = [...(parent?.layers ?? [])];
        const created = options.created ?? new Date().toISOString();
        for (const source of options.layers) {
          if ('containerDiff' in source) {
            layers.push(
              this.commitDiffLayer(layers.at(-1)?.chainId ?? null, source.containerDiff, blobs, chains),
            );
            continue;
          }
          const { tar } = source;
          const blob = await this.content.ingest(tar);
          if (blob.created) blobs.push(blob.digest);
          layers.push(await this.unpackBlob(layers.at(-1)?.chainId ?? null, blob, undefined, chains));
        }
        const history = options.history ?? options.layers.map(() => ({ created, comment: options.comment }));
        const config: Record<string, unknown> = {
          architecture: parent?.config.architecture ?? hostArchitecture(),
        };
        if (options.author) config.author = options.author;
        if (options.comment) config.comment = options.comment;
        config.config = fullContainerConfig(options.config);
        if (options.container) config.container = options.container;
        if (options.containerConfig) config.container_config = fullContainerConfig(options.containerConfig);
        config.created = created;
        config.history = [...(parent?.config.history ?? []), ...history];
        config.os = parent?.config.os ?? 'linux';
        config.rootfs = { type: 'layers', diff_ids: layers.map((l) => l.diffId) };
        const { id } = this.storeImage({
          configBytes: Buffer.from(JSON.stringify(config)),
          layers,
          parentId: parent?.id ?? null,
          tags,
          createdBlobs: blobs,
        });
        for (const tag of tags) this.publish('tag', id, familiarString(tag));
        return id;
      } catch (err) {
        this.discard(blobs, chains);
        throw err;
      }
    });
  }

  /**
   * `docker load`: a docker-archive or OCI-layout tar (optionally gzip-compressed). Every layer is
   * streamed into the content store and unpacked; all images are recorded in one transaction at the
   * end, so a malformed archive changes nothing. Progress and results go to `progress`.
   */
  async loadImages(
    tar: Readable,
    progress: (message: ProgressMessage) => void,
    options: { quiet?: boolean } = {},
  ): Promise<Digest[]> {
    return this.mutex.run(async () => {
      const blobs: Digest[] = [];
      const chains: Digest[] = [];
      try {
        const { compression, stream } = await sniffCompression(tar);
        const contents = await readArchive(decompress(stream, compression), this.content, blobs);
        const items = planLoad(contents, this.content);
        const tagLists = items.map((item) =>
          item.repoTags.map((text) => {
            const ref = parseNormalizedNamed(text);
            if (ref.tag === null || ref.digest !== null)
              throw new InvalidArgument(`invalid tag ${JSON.stringify(text)}`);
            return ref;
          }),
        );
        const loaded: Array<{ layers: LayerRecord[]; item: (typeof items)[number] }> = [];
        for (const item of items) {
          const layers: LayerRecord[] = [];
          for (const [index, layer] of item.layers.entries()) {
            const diffId = item.config.rootfs.diff_ids[index];
            if (!options.quiet) {
              progress({
                status: 'Loading layer',
                progressDetail: { current: 0, total: layer.blob.size },
                id: shortId(diffId),
              });
            }
            layers.push(await this.unpackBlob(layers.at(-1)?.chainId ?? null, layer.blob, diffId, chains));
            if (!options.quiet) {
              progress({
                status: 'Loading layer',
                progressDetail: { current: layer.blob.size, total: layer.blob.size },
                id: shortId(diffId),
              });
            }
          }
          loaded.push({ layers, item });
        }
        const results: Array<{
          id: Digest;
          tags: NamedReference[];
          moved: Array<{ tag: NamedReference; previous: Digest }>;
        }> = [];
        this.store.transaction(() => {
          loaded.forEach(({ layers, item }, i) => {
            const { id, moved } = this.storeImage({
              configBytes: item.configBytes,
              layers,
              parentId: null,
              tags: tagLists[i],
              createdBlobs: blobs,
            });
            results.push({ id, tags: tagLists[i], moved });
          });
        });
        for (const { id, tags, moved } of results) {
          for (const { tag, previous } of moved) {
            progress({
              stream: `The image ${familiarString(tag)} already exists, renaming the old one with ID ${previous} to empty string\n`,
            });
          }
          this.publish('load', id, id);
          if (tags.length === 0) progress({ stream: `Loaded image ID: ${id}\n` });
          for (const tag of tags) progress({ stream: `Loaded image: ${familiarString(tag)}\n` });
        }
        // Archive metadata (manifest.json, index.json, ...) went through the content store too.
        this.removeUnreferencedBlobs(blobs);
        return results.map((r) => r.id);
      } catch (err) {
        this.discard(blobs, chains);
        throw err;
      }
    });
  }

  /**
   * `docker save`: a docker-archive tar (legacy layout, loadable by any Docker) of the named images,
   * streamed as it is read. Unknown names fail here, before any byte is produced.
   */
  saveImages(refs: readonly string[]): Readable {
    const selected = new Map<Digest, { image: ImageRecord; tags: NamedReference[] }>();
    const add = (image: ImageRecord, tag: NamedReference | null) => {
      let entry = selected.get(image.id);
      if (!entry) {
        entry = { image, tags: [] };
        selected.set(image.id, entry);
      }
      if (tag && !entry.tags.some((t) => refKey(t) === refKey(tag))) entry.tags.push(tag);
    };
    for (const text of refs) {
      const any = parseAnyReference(text);
      if (any.kind === 'named' && any.ref.tag === null && any.ref.digest === null) {
        // A bare repository name saves every tag of that repository.
        const repoTags = this.store
          .allRefs()
          .filter((r) => r.kind === 'tag')
          .map((r) => ({ row: r, ref: parseReference(r.ref) }))
          .filter((r) => fullName(r.ref) === fullName(any.ref) && this.store.get(r.row.imageId));
        if (repoTags.length > 0) {
          for (const r of repoTags) add(this.recordFor(this.store.get(r.row.imageId)!), r.ref);
          continue;
        }
      }
      const image = this.resolve(text);
      const tag = any.kind === 'named' && any.ref.digest === null ? tagNameOnly(any.ref) : null;
      add(image, tag && this.store.getRef(refKey(tag))?.imageId === image.id ? tag : null);
    }
    for (const id of selected.keys()) this.publish('save', id, id);
    return writeTar(this.saveEntries([...selected.values()]));
  }

  private async *saveEntries(
    images: Array<{ image: ImageRecord; tags: NamedReference[] }>,
  ): AsyncGenerator<OutputEntry> {
    const writtenDirs = new Set<string>();
    const tarPathByDiffId = new Map<Digest, string>();
    const manifest: Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }> = [];
    const repositories: Record<string, Record<string, string>> = {};
    for (const { image, tags } of images) {
      const mtime = unixSeconds(image.created);
      const layerPaths: string[] = [];
      let parentDir: string | null = null;
      for (const [index, layer] of image.layers.entries()) {
        const isTop = index === image.layers.length - 1;
        const dirId = digestHex(sha256(JSON.stringify({ layer_id: layer.chainId, parent: parentDir ?? '' })));
        if (!writtenDirs.has(dirId)) {
          writtenDirs.add(dirId);
          const v1: Record<string, unknown> = { id: dirId };
          if (parentDir) v1.parent = parentDir;
          v1.created = isTop ? image.created : '1970-01-01T00:00:00Z';
          v1.container_config = fullContainerConfig(null);
          if (isTop && image.config.config) v1.config = fullContainerConfig(image.config.config);
          v1.os = image.config.os ?? 'linux';
          yield { name: dirId, type: 'directory', mtime };
          yield { name: `${dirId}/VERSION`, type: 'file', data: Buffer.from('1.0'), mtime };
          yield { name: `${dirId}/json`, type: 'file', data: Buffer.from(JSON.stringify(v1)), mtime };
          const existing = tarPathByDiffId.get(layer.diffId);
          if (existing) {
            // The same layer content at another position: a link, as dockerd writes it.
            yield { name: `${dirId}/layer.tar`, type: 'symlink', linkname: `../${existing}`, mtime };
          } else {
            tarPathByDiffId.set(layer.diffId, `${dirId}/layer.tar`);
            yield {
              name: `${dirId}/layer.tar`,
              type: 'file',
              size: layer.tarSize,
              mtime,
              open: () => this.openLayerTar(layer),
            };
          }
        }
        layerPaths.push(`${dirId}/layer.tar`);
        parentDir = dirId;
      }
      const configName = `${digestHex(image.id)}.json`;
      yield { name: configName, type: 'file', data: this.content.readSmall(image.id), mtime };
      manifest.push({
        Config: configName,
        RepoTags: tags.length > 0 ? tags.map((t) => familiarString(t)) : null,
        Layers: layerPaths,
      });
      for (const tag of tags) {
        if (parentDir === null || tag.tag === null) continue;
        const repo = familiarName(tag);
        repositories[repo] = { ...repositories[repo], [tag.tag]: parentDir };
      }
    }
    yield { name: 'manifest.json', type: 'file', data: Buffer.from(JSON.stringify(manifest)) };
    if (Object.keys(repositories).length > 0) {
      yield { name: 'repositories', type: 'file', data: Buffer.from(JSON.stringify(repositories)) };
    }
  }

  /** A layer as an uncompressed tar stream, from its blob. */
  private openLayerTar(layer: LayerRecord): Readable {
    const blob = this.content.openRead(layer.blobDigest);
    return layer.mediaType.endsWith('gzip') ? pipeInto(blob, zlib.createGunzip()) : blob;
  }
}

/** dockerd's `isSingleReference`: at most one tag, and every digest reference in that tag's repository. */
function isSingleReference(refs: readonly NamedReference[]): boolean {
  if (refs.length <= 1) return refs.length === 1;
  let single: NamedReference | null = null;
  const canonicalRepos = new Set<string>();
  for (const ref of refs) {
    if (ref.digest !== null) canonicalRepos.add(fullName(ref));
    else if (single === null) single = ref;
    else return false;
  }
  const chosen = single ?? refs[0];
  return canonicalRepos.size === 1 && canonicalRepos.has(fullName(chosen));
}

function conflictError(imageId: Digest, conflict: DeleteConflict): Conflict {
  return new Conflict(
    `conflict: unable to delete ${shortId(imageId)} (${conflict.hard ? 'cannot be forced' : 'must be forced'}) - ${conflict.message}`,
  );
}
