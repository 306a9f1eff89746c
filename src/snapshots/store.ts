import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { type Digest, sha256 } from '../common/digest.js';
import { Conflict, InvalidArgument, isErrnoCode, NotFound } from '../common/errors.js';
import { ensureDir, fsyncDirAsync, fsyncDirSync } from '../common/fsutil.js';
import { logger } from '../common/log.js';
import { trace } from '../common/trace.js';
import { syncfs, syncfsAsync } from '../native/index.js';
import { type Db, migrate, type PartSchema } from '../store/db.js';
import { listChanges } from './changes.js';
import { type DiffLayerOptions, packAndUnpackDiff, type TarSink } from './diff-layer.js';
import { extractLayer } from './extract.js';
import { isForeignMount, mountContainerOverlay, unmountAll, unmountAllAsync } from './overlay.js';
import { type PackOptions, packLayer } from './pack.js';
import type {
  ContainerChange,
  LayerInfo,
  ParentLayer,
  Snapshotter,
  TarFeed,
  UnpackOptions,
} from './snapshotter.js';

const log = logger('snapshots');

/**
 * One row per committed layer. `id` names the directory (`<rootDir>/<id>/fs`): short integers keep
 * overlay's lowerdir paths short. AUTOINCREMENT so an id is never reused after a removal.
 */
export const snapshotsSchema: PartSchema = {
  part: 'snapshots',
  migrations: [
    `CREATE TABLE snapshot_layers (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      chain_id TEXT NOT NULL UNIQUE,
      diff_id TEXT NOT NULL,
      parent_chain_id TEXT REFERENCES snapshot_layers (chain_id),
      size INTEGER NOT NULL,
      created_at INTEGER NOT NULL
    );
    CREATE INDEX snapshot_layers_parent ON snapshot_layers (parent_chain_id);`,
  ],
};

interface LayerRow {
  id: number;
  chain_id: Digest;
  diff_id: Digest;
  parent_chain_id: Digest | null;
  size: number;
  created_at: number;
}

export interface OverlaySnapshotterOptions {
  /**
   * syncfs() a freshly unpacked layer before recording it, so a crash never leaves a recorded layer
   * with lost file contents. Default true; tests on tmpfs may turn it off.
   */
  syncLayers?: boolean;
}

/** The container-side directories, all under the container's own directory. */
function containerPaths(containerDir: string): { upper: string; work: string; rootfs: string } {
  return {
    upper: path.join(containerDir, 'upper'),
    work: path.join(containerDir, 'work'),
    rootfs: path.join(containerDir, 'rootfs'),
  };
}

/** Hashes a tar to its end (for a layer we already have); only drains it when `hash` is false. */
async function hashStream(tar: Readable | TarFeed, hash: boolean): Promise<Digest | null> {
  const hasher = hash ? createHash('sha256') : null;
  if (tar instanceof Readable) for await (const chunk of tar) hasher?.update(chunk as Buffer);
  else await tar.feed((chunk) => hasher?.update(chunk));
  return hasher === null ? null : `sha256:${hasher.digest('hex')}`;
}

/** Layers of up to this many files and directories are made durable one by one, not with a syncfs. */
const FSYNC_MAX_FILES = 64;

/**
 * fsync of every directory and regular file under `dir` (and `dir` itself), in parallel on the
 * pool. For a layer of a few big files this writes back only those files, where a syncfs would also
 * wait for whatever any other process left dirty on the same file system.
 */
async function fsyncTree(dir: string): Promise<void> {
  const paths = [dir];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isDirectory() || entry.isFile()) paths.push(path.join(entry.parentPath, entry.name));
  }
  await Promise.all(
    paths.map(async (file) => {
      const handle = await fs.promises.open(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    }),
  );
}

/**
 * syncfs(2) on a pool thread, shared by callers that ask at the same time: a flush asked for while
 * one runs is served by the next one, which starts once the running one ends. A pull that unpacks
 * several layers side by side so pays for about one writeback, not one per layer, and the event loop
 * goes on unpacking meanwhile.
 */
export class FileSystemFlusher {
  private running: Promise<void> | null = null;
  private queued: Promise<void> | null = null;

  constructor(
    private readonly dir: string,
    private readonly sync: (dir: string) => Promise<void> = syncfsAsync,
  ) {}

  /** Resolves once a syncfs that began after this call has completed. */
  flush(): Promise<void> {
    if (this.queued !== null) return this.queued;
    if (this.running === null) return this.start();
    const queued = this.running
      .catch(() => undefined)
      .then(() => {
        this.queued = null;
        return this.start();
      });
    this.queued = queued;
    return queued;
  }

  private start(): Promise<void> {
    const run = this.sync(this.dir).finally(() => {
      if (this.running === run) this.running = null;
    });
    this.running = run;
    return run;
  }
}

/**
 * `Snapshotter` on overlayfs. Layout under `rootDir` (e.g. /var/lib/strata/snapshots):
 * `<n>/fs` committed layers, `tmp/` layers being unpacked (never visible), `empty/` the lower dir
 * of containers whose image has no layers (FROM scratch). Directories that no row references
 * (a crash between unpack and commit) are removed when the snapshotter starts.
 */
export class OverlaySnapshotter implements Snapshotter {
  private readonly tmpDir: string;
  private readonly emptyDir: string;
  private readonly flusher: FileSystemFlusher | null;
  private readonly statements;
  /** Ids of directories moved into place whose rows `commitAsync` has not inserted yet. */
  private readonly reservedIds = new Set<number>();

  constructor(
    private readonly db: Db,
    readonly rootDir: string,
    options: OverlaySnapshotterOptions = {},
  ) {
    this.rootDir = path.resolve(rootDir);
    migrate(db, [snapshotsSchema]);
    ensureDir(this.rootDir, 0o700);
    this.flusher = (options.syncLayers ?? true) ? new FileSystemFlusher(this.rootDir) : null;
    this.tmpDir = ensureDir(path.join(this.rootDir, 'tmp'), 0o700);
    this.emptyDir = ensureDir(path.join(this.rootDir, 'empty'), 0o755);
    this.statements = {
      byChain: db.prepare<[string], LayerRow>('SELECT * FROM snapshot_layers WHERE chain_id = ?'),
      all: db.prepare<[], LayerRow>('SELECT * FROM snapshot_layers ORDER BY id'),
      ids: db.prepare<[], number>('SELECT id FROM snapshot_layers').pluck(),
      children: db
        .prepare<[string], number>('SELECT count(*) FROM snapshot_layers WHERE parent_chain_id = ?')
        .pluck(),
      insert: db.prepare<[number, string, string, string | null, number, number]>(
        'INSERT INTO snapshot_layers (id, chain_id, diff_id, parent_chain_id, size, created_at) VALUES (?, ?, ?, ?, ?, ?)',
      ),
      // AUTOINCREMENT's high-water mark: ids are never reused, even after a removal.
      lastId: db
        .prepare<[], number>("SELECT seq FROM sqlite_sequence WHERE name = 'snapshot_layers'")
        .pluck(),
      remove: db.prepare<[string]>('DELETE FROM snapshot_layers WHERE chain_id = ?'),
    };
    this.removeGarbage();
  }

  getLayer(chainId: Digest): LayerInfo | null {
    const row = this.statements.byChain.get(chainId);
    return row ? this.toInfo(row) : null;
  }

  hasLayer(chainId: Digest): boolean {
    return this.statements.byChain.get(chainId) !== undefined;
  }

  /** Every committed layer, oldest first (for garbage collection and `system df`). */
  listLayers(): LayerInfo[] {
    return this.statements.all.all().map((row) => this.toInfo(row));
  }

  async unpackLayer(
    parent: ParentLayer,
    layerTar: Readable | TarFeed,
    expectedDiffId?: Digest,
    options: UnpackOptions = {},
  ): Promise<LayerInfo> {
    const verified = options.diffIdVerified === true && expectedDiffId !== undefined;
    if (parent instanceof Promise) {
      // Failures of the parent are reported by whoever unpacks it; here they only stop the commit.
      parent.catch(() => undefined);
    } else {
      if (parent !== null && !this.hasLayer(parent)) {
        if (layerTar instanceof Readable) layerTar.destroy();
        throw new NotFound(`parent layer ${parent} not found`);
      }
      if (expectedDiffId !== undefined) {
        const existing = this.getLayer(this.chainIdOf(parent, expectedDiffId));
        if (existing) {
          const diffId = await hashStream(layerTar, !verified);
          if (diffId !== null && diffId !== expectedDiffId) throw this.mismatch(expectedDiffId, diffId);
          return existing;
        }
      }
    }

    const staging = fs.mkdtempSync(path.join(this.tmpDir, 'layer-'));
    const span = trace.span('unpack-layer', expectedDiffId?.slice(7) ?? '');
    try {
      const fsDir = path.join(staging, 'fs');
      fs.mkdirSync(fsDir, 0o755);
      const { diffId, size, filesAndDirs } = await extractLayer(
        layerTar,
        fsDir,
        verified ? { knownDiffId: expectedDiffId } : {},
      );
      if (expectedDiffId !== undefined && diffId !== expectedDiffId)
        throw this.mismatch(expectedDiffId, diffId);
      span.mark('extracted');
      // Layers of a few files (however big) are flushed file by file, big trees with one syncfs.
      const durable =
        this.flusher === null
          ? null
          : filesAndDirs <= FSYNC_MAX_FILES
            ? fsyncTree(staging)
            : this.flusher.flush();
      const [parentChainId] = await Promise.all([
        Promise.resolve(parent).then((chain) => {
          span.mark('parent');
          return chain;
        }),
        durable?.then(() => span.mark('flushed')),
      ]);
      if (parentChainId !== null && !this.hasLayer(parentChainId)) {
        throw new NotFound(`parent layer ${parentChainId} not found`);
      }
      const info = await this.commitAsync(
        staging,
        this.chainIdOf(parentChainId, diffId),
        diffId,
        parentChainId,
        size,
      );
      span.mark('committed');
      return info;
    } finally {
      span.end();
      // After a commit the staging dir has been renamed away; otherwise it is dropped here.
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }

  lowerDirs(chainId: Digest): string[] {
    const dirs: string[] = [];
    let next: Digest | null = chainId;
    while (next !== null) {
      const row = this.statements.byChain.get(next);
      if (!row) throw new NotFound(`layer ${next} not found`);
      dirs.push(this.layerDir(row.id));
      next = row.parent_chain_id;
    }
    return dirs;
  }

  removeLayer(chainId: Digest): void {
    const row = this.statements.byChain.get(chainId);
    if (!row) throw new NotFound(`layer ${chainId} not found`);
    if (this.statements.children.get(chainId)! > 0) {
      throw new Conflict(`layer ${chainId} is the parent of another layer`);
    }
    // Row first: a crash before the rm leaves an unreferenced directory, removed at the next start.
    this.statements.remove.run(chainId);
    fs.rmSync(path.join(this.rootDir, String(row.id)), { recursive: true, force: true });
  }

  prepareContainerLayer(containerDir: string): void {
    const { upper, work, rootfs } = containerPaths(containerDir);
    ensureDir(upper, 0o755);
    ensureDir(work, 0o700);
    ensureDir(rootfs, 0o755);
  }

  mountContainer(containerDir: string, chainId: Digest | null): string {
    const { upper, work, rootfs } = containerPaths(containerDir);
    if (isForeignMount(rootfs)) return rootfs;
    const lowers = chainId === null ? [this.emptyDir] : this.lowerDirs(chainId);
    this.prepareContainerLayer(containerDir);
    mountContainerOverlay(lowers, upper, work, rootfs);
    return rootfs;
  }

  unmountContainer(containerDir: string): void {
    unmountAll(containerPaths(containerDir).rootfs);
  }

  unmountContainerAsync(containerDir: string): Promise<void> {
    return unmountAllAsync(containerPaths(containerDir).rootfs);
  }

  isContainerMounted(containerDir: string): boolean {
    return isForeignMount(containerPaths(containerDir).rootfs);
  }

  containerChanges(containerDir: string, chainId: Digest | null): ContainerChange[] {
    const lowers = chainId === null ? [] : this.lowerDirs(chainId);
    return listChanges(containerPaths(containerDir).upper, lowers);
  }

  packContainerDiff(containerDir: string, options: PackOptions = {}): Readable {
    return packLayer(containerPaths(containerDir).upper, options);
  }

  commitContainerDiff(
    containerDir: string,
    parentChainId: Digest | null,
    sink: TarSink,
    options: DiffLayerOptions & { onPacked?: () => void } = {},
  ): LayerInfo & { tarSize: number } {
    if (parentChainId !== null && !this.hasLayer(parentChainId)) {
      throw new NotFound(`parent layer ${parentChainId} not found`);
    }
    const staging = fs.mkdtempSync(path.join(this.tmpDir, 'layer-'));
    try {
      const fsDir = path.join(staging, 'fs');
      fs.mkdirSync(fsDir, 0o755);
      const started = performance.now();
      const { diffId, size, tarSize } = packAndUnpackDiff(
        containerPaths(containerDir).upper,
        fsDir,
        sink,
        options,
      );
      options.onPacked?.();
      const packed = performance.now();
      if (this.flusher !== null) syncfs(fsDir);
      log.debug('container diff committed', {
        packMs: Math.round(packed - started),
        syncMs: Math.round(performance.now() - packed),
      });
      const info = this.commit(staging, this.chainIdOf(parentChainId, diffId), diffId, parentChainId, size);
      return { ...info, tarSize };
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }

  removeContainerLayer(containerDir: string): void {
    const { upper, work, rootfs } = containerPaths(containerDir);
    unmountAll(rootfs);
    for (const dir of [upper, work, rootfs]) fs.rmSync(dir, { recursive: true, force: true });
  }

  private chainIdOf(parentChainId: Digest | null, diffId: Digest): Digest {
    return parentChainId === null ? diffId : sha256(`${parentChainId} ${diffId}`);
  }

  private mismatch(expected: Digest, actual: Digest): InvalidArgument {
    return new InvalidArgument(
      `layer content does not match its diff id: expected ${expected}, got ${actual}`,
    );
  }

  private layerDir(id: number): string {
    return path.join(this.rootDir, String(id), 'fs');
  }

  private toInfo(row: LayerRow): LayerInfo {
    return {
      chainId: row.chain_id,
      diffId: row.diff_id,
      parentChainId: row.parent_chain_id,
      dir: this.layerDir(row.id),
      size: row.size,
      createdAt: row.created_at,
    };
  }

  /** The next layer id: above every id used so far and every one reserved by `commitAsync`. */
  private nextLayerId(): number {
    let id = (this.statements.lastId.get() ?? 0) + 1;
    while (this.reservedIds.has(id)) id++;
    return id;
  }

  /** Renames a staged layer to `<rootDir>/<id>`; a directory already there is a crash's leftover. */
  private moveIntoPlace(staging: string, target: string): void {
    try {
      fs.renameSync(staging, target);
    } catch (err) {
      if (!isErrnoCode(err, 'ENOTEMPTY') && !isErrnoCode(err, 'EEXIST')) throw err;
      // Left by a crash after a rename whose row was never inserted: unreferenced garbage.
      fs.rmSync(target, { recursive: true, force: true });
      fs.renameSync(staging, target);
    }
  }

  /** Moves a staged layer into place and records it, or returns the layer that won a race. */
  private commit(
    staging: string,
    chainId: Digest,
    diffId: Digest,
    parentChainId: Digest | null,
    size: number,
  ): LayerInfo {
    return this.db.transaction((): LayerInfo => {
      const existing = this.statements.byChain.get(chainId);
      if (existing) return this.toInfo(existing);
      const id = this.nextLayerId();
      this.statements.insert.run(id, chainId, diffId, parentChainId, size, Date.now());
      this.moveIntoPlace(staging, path.join(this.rootDir, String(id)));
      fsyncDirSync(this.rootDir);
      return this.toInfo(this.statements.byChain.get(chainId)!);
    })();
  }

  /**
   * `commit` with the directory's fsync on the pool: the layer is renamed into place under a reserved
   * id, the rename made durable, and only then the row inserted. A crash in between leaves a
   * directory without a row, which the next start removes. (The synchronous fsync inside the
   * transaction stopped the event loop, and every download of the pull, for up to 50 ms.)
   */
  private async commitAsync(
    staging: string,
    chainId: Digest,
    diffId: Digest,
    parentChainId: Digest | null,
    size: number,
  ): Promise<LayerInfo> {
    const existing = this.statements.byChain.get(chainId);
    if (existing) return this.toInfo(existing);
    const id = this.nextLayerId();
    const target = path.join(this.rootDir, String(id));
    this.reservedIds.add(id);
    try {
      this.moveIntoPlace(staging, target);
      try {
        await fsyncDirAsync(this.rootDir);
        return this.db.transaction((): LayerInfo => {
          const raced = this.statements.byChain.get(chainId);
          if (raced) {
            fs.rmSync(target, { recursive: true, force: true });
            return this.toInfo(raced);
          }
          this.statements.insert.run(id, chainId, diffId, parentChainId, size, Date.now());
          return this.toInfo(this.statements.byChain.get(chainId)!);
        })();
      } catch (err) {
        fs.rmSync(target, { recursive: true, force: true });
        throw err;
      }
    } finally {
      this.reservedIds.delete(id);
    }
  }

  /** Drops staging dirs and layer dirs without a row (a crash between the two steps). */
  private removeGarbage(): void {
    for (const name of fs.readdirSync(this.tmpDir)) {
      fs.rmSync(path.join(this.tmpDir, name), { recursive: true, force: true });
    }
    const known = new Set(this.statements.ids.all().map(String));
    for (const name of fs.readdirSync(this.rootDir)) {
      if (/^\d+$/.test(name) && !known.has(name)) {
        log.info('removing unreferenced layer directory', { dir: path.join(this.rootDir, name) });
        fs.rmSync(path.join(this.rootDir, name), { recursive: true, force: true });
      }
    }
  }
}
