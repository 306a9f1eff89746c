import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { type Digest, sha256 } from '../../src/common/digest.js';
import { type EngineEvent, EventBus } from '../../src/common/events.js';
import { packEntries, type TarInputEntry } from '../../src/common/tar.js';
import { FileContentStore } from '../../src/content/store.js';
import { ImageService, imagesSchema } from '../../src/images/service.js';
import { OverlaySnapshotter, snapshotsSchema } from '../../src/snapshots/store.js';
import { type Db, openStore } from '../../src/store/db.js';

/** An ImageService on a temporary root with the real content store, snapshotter and SQLite. */
export interface ImageEnv {
  base: string;
  root: string;
  db: Db;
  content: FileContentStore;
  snapshotter: OverlaySnapshotter;
  images: ImageService;
  events: EngineEvent[];
  close(): void;
}

export function createImageEnv(): ImageEnv {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-images-'));
  const root = path.join(base, 'root');
  fs.mkdirSync(root);
  const db = openStore(root, [snapshotsSchema, ...imagesSchema]);
  const bus = new EventBus();
  const events: EngineEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const content = new FileContentStore(root);
  const snapshotter = new OverlaySnapshotter(db, path.join(root, 'snapshots'), { syncLayers: false });
  const images = new ImageService({ db, root, content, snapshotter, events: bus });
  return {
    base,
    root,
    db,
    content,
    snapshotter,
    images,
    events,
    close() {
      db.close();
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export function tarOf(entries: TarInputEntry[]): Promise<Buffer> {
  return collect(packEntries(entries));
}

/** A small root file system layer. */
export function sampleLayer(marker: string): Promise<Buffer> {
  return tarOf([
    { name: 'etc', type: 'directory' },
    { name: 'etc/marker', type: 'file', data: `${marker}\n` },
    { name: 'bin', type: 'directory' },
    { name: 'bin/tool', type: 'file', mode: 0o755, data: '#!/bin/sh\necho tool\n' },
  ]);
}

/** A docker-archive (`docker save` layout) holding one image made of `layers`. */
export async function dockerArchive(options: {
  layers: Buffer[];
  repoTags?: string[] | null;
  config?: Record<string, unknown>;
  gzipLayers?: boolean;
  extra?: TarInputEntry[];
  layerPaths?: string[];
  /** What manifest.json lists, when it should differ from where the layers are written. */
  manifestLayers?: string[];
  /** Write only the first occurrence of a path, the others as symlinks to it (as dockerd does). */
  linkDuplicates?: boolean;
}): Promise<{ archive: Buffer; id: Digest; diffIds: Digest[] }> {
  const diffIds = options.layers.map((l) => sha256(l));
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-02T03:04:05.123456789Z',
      config: { Cmd: ['sh'], Labels: { origin: 'archive' } },
      rootfs: { type: 'layers', diff_ids: diffIds },
      history: options.layers.map(() => ({ created: '2024-01-02T03:04:05Z', created_by: 'test' })),
      ...options.config,
    }),
  );
  const id = sha256(config);
  const entries: TarInputEntry[] = [];
  const layerPaths = options.layerPaths ?? options.layers.map((_, i) => `layer${i}/layer.tar`);
  const firstPathOf = new Map<Digest, string>();
  options.layers.forEach((layer, i) => {
    entries.push({ name: `layer${i}`, type: 'directory' });
    const first = firstPathOf.get(diffIds[i]);
    if (options.linkDuplicates && first) {
      entries.push({ name: layerPaths[i], type: 'symlink', linkname: `../${first}` });
      return;
    }
    firstPathOf.set(diffIds[i], layerPaths[i]);
    entries.push({
      name: layerPaths[i],
      type: 'file',
      data: options.gzipLayers ? zlib.gzipSync(layer) : layer,
    });
  });
  entries.push({ name: `${id.slice(7)}.json`, type: 'file', data: config });
  entries.push(...(options.extra ?? []));
  entries.push({
    name: 'manifest.json',
    type: 'file',
    data: JSON.stringify([
      {
        Config: `${id.slice(7)}.json`,
        RepoTags: options.repoTags ?? null,
        Layers: options.manifestLayers ?? layerPaths,
      },
    ]),
  });
  return { archive: await tarOf(entries), id, diffIds };
}

export function streamOf(data: Buffer): Readable {
  return Readable.from([data]);
}

/** Every file path below `dir` (for "nothing was written outside" checks). */
export function listTree(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out.push(path.relative(dir, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}
