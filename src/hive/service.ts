import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Digest } from '../common/digest.js';
import { Hive, type ImportSummary } from './hive.js';
import { HIVE_DIR_COMPONENTS } from './names.js';
import { parseRegFile } from './regfile.js';
import { type HiveStorage, LayerStorage, RootStorage } from './storage.js';

/**
 * Opens the hive of a container or an image for the API.
 *
 * A container's hive is read and changed through its merged root, mounted for the duration of the
 * call when the container is not running (`withRootfs`), so writes land in its own layer exactly as
 * the application's own writes would. An image's hive is read from its layer directories; it
 * cannot be changed (run a container, change it, commit).
 */
export interface HiveServiceDeps {
  containers: {
    withRootfs<T>(ref: string, fn: (rootfs: string) => Promise<T>): Promise<T>;
  };
  images: { resolve(ref: string): { chainId: Digest | null } };
  snapshotter: { lowerDirs(chainId: Digest): string[] };
}

export class HiveService {
  constructor(private readonly deps: HiveServiceDeps) {}

  /** Runs `fn` on the hive of a running or stopped container. */
  withContainerHive<T>(ref: string, fn: (hive: Hive) => T): Promise<T> {
    return this.deps.containers.withRootfs(ref, async (rootfs) =>
      withHive(new RootStorage(rootfs, HIVE_DIR_COMPONENTS), fn),
    );
  }

  /** Runs `fn` on the read-only hive of an image. */
  withImageHive<T>(ref: string, fn: (hive: Hive) => T): T {
    const { chainId } = this.deps.images.resolve(ref);
    const layers = chainId === null ? [] : this.deps.snapshotter.lowerDirs(chainId);
    return withHive(new LayerStorage(layers, HIVE_DIR_COMPONENTS), fn);
  }
}

function withHive<T>(storage: HiveStorage, fn: (hive: Hive) => T): T {
  try {
    return fn(new Hive(storage));
  } finally {
    storage.close();
  }
}

/**
 * `strata reg convert`: applies a .reg file to the hive layout in `targetDir` (created if needed), the
 * directory a Dockerfile then copies to `/.strata/hive/`. Deletions apply to what `targetDir` already
 * holds; an image's inherited keys are deleted with `RUN rm -r` instead.
 */
export function convertRegFile(bytes: Buffer, targetDir: string): ImportSummary {
  const ops = parseRegFile(bytes);
  const dir = path.resolve(targetDir);
  fs.mkdirSync(dir, { recursive: true });
  return withHive(new RootStorage(dir, []), (hive) => hive.apply(ops));
}
