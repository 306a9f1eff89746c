import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import type { Digest } from '../common/digest.js';
import { constants, mountIdmapped, umount2 } from '../native/index.js';
import type { DiffLayerOptions, TarSink } from './diff-layer.js';
import { isForeignMount, mountContainerOverlay } from './overlay.js';
import type { PackOptions } from './pack.js';
import type {
  ContainerChange,
  LayerInfo,
  ParentLayer,
  Snapshotter,
  TarFeed,
  UnpackOptions,
} from './snapshotter.js';

/**
 * A Snapshotter for a daemon running with `--userns-remap`: container roots are mounted with every
 * image layer seen through an idmapped mount (on-disk uid N appears as host uid `base + N`), so the
 * container's root — an unprivileged host uid — owns its image files while the layers on disk stay
 * shared and untouched (no chowned copies per remapping, no extra disk).
 *
 * How a mount goes: each layer directory is cloned with open_tree, idmapped with mount_setattr and
 * attached under `<container>/idmap/<n>`; overlayfs is mounted with those as lower dirs; then the
 * helper mounts are detached at once (overlayfs keeps private clones of its layers). The container's
 * own upper directory is not idmapped: what the container writes is stored with its host ids (the root
 * of `upper` is owned by `base`), as dockerd stores it under userns-remap. Consequence: `docker diff`
 * is unaffected, but a commit or `cp` of files the container wrote carries the shifted ids.
 * Everything else is delegated to the wrapped snapshotter.
 */
export class IdmappedSnapshotter implements Snapshotter {
  constructor(
    private readonly inner: Snapshotter,
    private readonly remap: { uid: number; gid: number },
    private readonly usernsFd: number,
    /** False for containers that opt out (`--userns=host`): they get the plain mount. */
    private readonly isRemapped: (containerDir: string) => boolean = () => true,
  ) {}

  mountContainer(containerDir: string, chainId: Digest | null): string {
    const rootfs = path.join(containerDir, 'rootfs');
    if (isForeignMount(rootfs)) return rootfs;
    if (!this.isRemapped(containerDir)) return this.inner.mountContainer(containerDir, chainId);
    this.inner.prepareContainerLayer(containerDir);
    const upper = path.join(containerDir, 'upper');
    const work = path.join(containerDir, 'work');
    // Container root must be able to reach its root file system: group traversal of the container dir.
    fs.chownSync(containerDir, 0, this.remap.gid);
    const st = fs.statSync(upper);
    if (st.uid === 0) fs.chownSync(upper, this.remap.uid, this.remap.gid);
    let layers: string[];
    if (chainId === null) {
      const empty = path.join(containerDir, 'idmap-empty');
      fs.mkdirSync(empty, { recursive: true, mode: 0o755 });
      layers = [empty];
    } else layers = this.inner.lowerDirs(chainId);
    const staging = path.join(containerDir, 'idmap');
    fs.mkdirSync(staging, { recursive: true, mode: 0o700 });
    const mapped: string[] = [];
    try {
      layers.forEach((layer, i) => {
        const target = path.join(staging, String(i));
        fs.mkdirSync(target, { recursive: true });
        mountIdmapped(layer, target, this.usernsFd);
        mapped.push(target);
      });
      mountContainerOverlay(mapped, upper, work, rootfs);
    } finally {
      for (const target of mapped) {
        try {
          umount2(target, constants.MNT_DETACH);
        } catch {
          // already gone
        }
      }
      fs.rmSync(staging, { recursive: true, force: true });
    }
    return rootfs;
  }

  getLayer(chainId: Digest): LayerInfo | null {
    return this.inner.getLayer(chainId);
  }
  hasLayer(chainId: Digest): boolean {
    return this.inner.hasLayer(chainId);
  }
  listLayers(): LayerInfo[] {
    return this.inner.listLayers();
  }
  unpackLayer(
    parentChainId: ParentLayer,
    layerTar: Readable | TarFeed,
    expectedDiffId?: Digest,
    options?: UnpackOptions,
  ): Promise<LayerInfo> {
    return this.inner.unpackLayer(parentChainId, layerTar, expectedDiffId, options);
  }
  lowerDirs(chainId: Digest): string[] {
    return this.inner.lowerDirs(chainId);
  }
  removeLayer(chainId: Digest): void {
    this.inner.removeLayer(chainId);
  }
  prepareContainerLayer(containerDir: string): void {
    this.inner.prepareContainerLayer(containerDir);
  }
  unmountContainer(containerDir: string): void {
    this.inner.unmountContainer(containerDir);
  }
  unmountContainerAsync(containerDir: string): Promise<void> {
    return this.inner.unmountContainerAsync(containerDir);
  }
  isContainerMounted(containerDir: string): boolean {
    return this.inner.isContainerMounted(containerDir);
  }
  containerChanges(containerDir: string, chainId: Digest | null): ContainerChange[] {
    return this.inner.containerChanges(containerDir, chainId);
  }
  packContainerDiff(containerDir: string, options?: PackOptions): Readable {
    return this.inner.packContainerDiff(containerDir, options);
  }
  commitContainerDiff(
    containerDir: string,
    parentChainId: Digest | null,
    sink: TarSink,
    options?: DiffLayerOptions & { onPacked?: () => void },
  ): LayerInfo & { tarSize: number } {
    return this.inner.commitContainerDiff(containerDir, parentChainId, sink, options);
  }
  removeContainerLayer(containerDir: string): void {
    this.inner.removeContainerLayer(containerDir);
  }
}
