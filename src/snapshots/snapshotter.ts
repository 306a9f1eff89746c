import type { Readable } from 'node:stream';
import type { Digest } from '../common/digest.js';
import type { DiffLayerOptions, TarSink } from './diff-layer.js';
import type { PackOptions } from './pack.js';

/**
 * Layers on disk, and the container file systems stacked on them.
 *
 * Terms: a *layer* is one committed, read-only directory (`snapshots/<n>/fs`) holding the unpacked
 * content of one layer tar in overlay form (whiteouts as 0/0 char devices, opaque dirs as
 * `trusted.overlay.opaque=y`). It is named by its *chain id* (the digest of its whole parent chain, OCI
 * image spec), so two images whose chains share a prefix share those directories: an image built on a
 * base only references the base's layers. A *container layer* is a container's own `upper`/`work` pair,
 * mounted with overlayfs over the layers of its image.
 *
 * Lifecycle:
 *  1. Pull/load/import: `unpackLayer(parent, tar)` for each layer, bottom up. The tar stream is hashed
 *     (diff id) while it is unpacked into a temporary directory; the chain id follows from parent + diff
 *     id; if that chain already exists the temporary copy is dropped, else it is renamed into place and
 *     recorded. Safe against crashes: a half-unpacked layer is never visible.
 *  2. Create a container: `prepareContainerLayer(dir)` makes `dir/upper`, `dir/work`, `dir/rootfs`.
 *  3. Start: `mountContainer(dir, chainId)` mounts overlay(lower = the chain's layers, top first) on
 *     `dir/rootfs`; stop/remove: `unmountContainer(dir)`.
 *  4. Inspect changes: `containerChanges(dir, chainId)` (docker diff); commit: `commitContainerDiff`
 *     turns the upper dir into a new layer and its tar in one pass (`packContainerDiff` gives only the
 *     tar, whiteouts as `.wh.` entries).
 *  5. Remove an image: `removeLayer(chainId)` once no image or container references it (the caller
 *     knows the references; this part only refuses to remove a layer that another layer sits on).
 */
export interface LayerInfo {
  chainId: Digest;
  diffId: Digest;
  parentChainId: Digest | null;
  /** Directory holding this layer's unpacked content. */
  dir: string;
  /** Bytes of file content in this layer alone. */
  size: number;
  createdAt: number;
}

export interface ContainerChange {
  /** Absolute path inside the container, e.g. `/etc/passwd`. */
  path: string;
  /** 0 = modified, 1 = added, 2 = deleted (the Engine API's Kind values). */
  kind: 0 | 1 | 2;
}

/**
 * The chain id a layer sits on (null: a base layer), or a promise of it while that parent is itself
 * still being unpacked: the tar is then unpacked into a staging directory at once and committed only
 * once the parent is (a pull unpacks its layers side by side; a failed parent fails the child).
 */
export type ParentLayer = Digest | null | Promise<Digest | null>;

/**
 * A layer tar that pushes its bytes instead of being read: `feed` hands every chunk, in order and
 * synchronously, to `consume` (a chunk is valid only during the call) and resolves after the last one,
 * or rejects, with the error `consume` threw if it did. A pull unpacks a download this way inside the
 * socket reads that bring its bytes, without a stream or a copy in between.
 */
export interface TarFeed {
  feed(consume: (chunk: Buffer) => void): Promise<void>;
}

export interface UnpackOptions {
  /**
   * The stream is verified to hash to `expectedDiffId` by the time it ends without error (the layer is
   * an uncompressed blob whose digest, the diff id, the content store checks as it reads or writes
   * it), so it is not hashed a second time.
   */
  diffIdVerified?: boolean;
}

export interface Snapshotter {
  getLayer(chainId: Digest): LayerInfo | null;
  hasLayer(chainId: Digest): boolean;
  /** Every committed layer, oldest first (garbage collection, `system df`). */
  listLayers(): LayerInfo[];
  /**
   * Unpacks an uncompressed layer tar on top of `parentChainId` (null for a base layer). When
   * `expectedDiffId` is given and the stream hashes to something else, nothing is kept and an error is
   * thrown. Idempotent: an existing chain is reused (the stream is still drained and verified).
   * A tar that tries to escape (`..`, writing through its own symlinks, hard links out of the layer) is
   * refused with InvalidArgument (`invalid layer tar: …`) and leaves nothing behind. An unknown parent
   * is NotFound.
   */
  unpackLayer(
    parentChainId: ParentLayer,
    layerTar: Readable | TarFeed,
    expectedDiffId?: Digest,
    options?: UnpackOptions,
  ): Promise<LayerInfo>;
  /** The layer directories of a chain, top first (overlay lowerdir order). */
  lowerDirs(chainId: Digest): string[];
  /** Deletes a layer's directory and record; refuses (Conflict) while another layer uses it as parent. */
  removeLayer(chainId: Digest): void;

  /** Creates `dir/upper`, `dir/work`, `dir/rootfs` (idempotent). */
  prepareContainerLayer(containerDir: string): void;
  /**
   * Mounts the container's root on `dir/rootfs` and returns that path; a no-op when already mounted.
   * `chainId` null (FROM scratch) mounts the upper dir over an empty lower dir.
   */
  mountContainer(containerDir: string, chainId: Digest | null): string;
  /** Unmounts `dir/rootfs` (lazily if busy); not mounted is not an error. */
  unmountContainer(containerDir: string): void;
  /** `unmountContainer` on a worker thread (the last unmount of an overlay syncs its upper fs). */
  unmountContainerAsync(containerDir: string): Promise<void>;
  isContainerMounted(containerDir: string): boolean;
  /** `docker diff`, in walk order: parents before children, names sorted; works mounted or not. */
  containerChanges(containerDir: string, chainId: Digest | null): ContainerChange[];
  /**
   * The container's own changes as an uncompressed layer tar (deterministic: sorted entries, whole-second
   * mtimes; `options.clampMtime` caps them for reproducible builds). Pack while unmounted or paused.
   */
  packContainerDiff(containerDir: string, options?: PackOptions): Readable;
  /**
   * The container's changes as a new layer on `parentChainId`, in one pass: the layer tar (what
   * `packContainerDiff` streams, minus `options.exclude`) goes to `sink` while the same entries are
   * written into the new layer directory; `onPacked` runs once the upper dir has been read (the
   * container may go on), then one syncfs makes the layer and whatever `sink` wrote to the same file
   * system durable before the layer is recorded. An existing chain is reused.
   */
  commitContainerDiff(
    containerDir: string,
    parentChainId: Digest | null,
    sink: TarSink,
    options?: DiffLayerOptions & { onPacked?: () => void },
  ): LayerInfo & { tarSize: number };
  /** Removes upper/work/rootfs (unmounting first if needed). */
  removeContainerLayer(containerDir: string): void;
}
