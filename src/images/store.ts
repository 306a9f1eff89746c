import type { Digest } from '../common/digest.js';
import type { Db, PartSchema } from '../store/db.js';

/**
 * The image metadata tables. An image row is named by its id (the sha256 of its config JSON, stored
 * here byte for byte); its layers are rows in order (blob as stored in the content store, its diff id
 * and the chain id of the unpacked layer); references (tags and repo digests) are rows pointing at an
 * image, stored in their canonical form (`docker.io/library/bb:latest`, `repo@sha256:…`).
 *
 * `removed = 1` marks an image the user deleted while a container still used it: it is hidden from
 * every query but keeps its layers until `ImageService.collectGarbage` finds it unused.
 */
export const imagesSchema: PartSchema[] = [
  {
    part: 'images',
    migrations: [
      `CREATE TABLE images (
        id TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        parent_id TEXT,
        chain_id TEXT,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        last_tag_time TEXT,
        removed INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX images_parent ON images(parent_id);
      CREATE TABLE image_layers (
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        blob_digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        blob_size INTEGER NOT NULL,
        diff_id TEXT NOT NULL,
        chain_id TEXT NOT NULL,
        tar_size INTEGER NOT NULL,
        size INTEGER NOT NULL,
        PRIMARY KEY (image_id, position)
      );
      CREATE INDEX image_layers_chain ON image_layers(chain_id);
      CREATE INDEX image_layers_blob ON image_layers(blob_digest);
      CREATE TABLE image_refs (
        ref TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'digest')),
        created_at INTEGER NOT NULL
      );
      CREATE INDEX image_refs_image ON image_refs(image_id);`,
    ],
  },
];

/** One layer of an image, bottom first. */
export interface LayerRecord {
  /** The blob in the content store (the layer tar as it arrived: gzip or plain). */
  blobDigest: Digest;
  mediaType: string;
  blobSize: number;
  /** Digest of the uncompressed tar. */
  diffId: Digest;
  /** Chain id of this layer (names its snapshot). */
  chainId: Digest;
  /** Length of the uncompressed tar (docker save writes it as `layer.tar`). */
  tarSize: number;
  /** Bytes of file content unpacked from this layer (Docker's layer size). */
  size: number;
}

export interface ImageRow {
  id: Digest;
  /** The config JSON exactly as hashed into `id`. */
  config: string;
  parentId: Digest | null;
  chainId: Digest | null;
  size: number;
  createdAt: number;
  lastTagTime: string | null;
  removed: boolean;
}

export interface RefRow {
  ref: string;
  imageId: Digest;
  kind: 'tag' | 'digest';
  createdAt: number;
}

interface ImageRowRaw {
  id: string;
  config: string;
  parent_id: string | null;
  chain_id: string | null;
  size: number;
  created_at: number;
  last_tag_time: string | null;
  removed: number;
}

interface LayerRowRaw {
  image_id: string;
  blob_digest: string;
  media_type: string;
  blob_size: number;
  diff_id: string;
  chain_id: string;
  tar_size: number;
  size: number;
}

interface RefRowRaw {
  ref: string;
  image_id: string;
  kind: 'tag' | 'digest';
  created_at: number;
}

function toImageRow(r: ImageRowRaw): ImageRow {
  return {
    id: r.id as Digest,
    config: r.config,
    parentId: r.parent_id as Digest | null,
    chainId: r.chain_id as Digest | null,
    size: r.size,
    createdAt: r.created_at,
    lastTagTime: r.last_tag_time,
    removed: r.removed !== 0,
  };
}

function toLayer(r: LayerRowRaw): LayerRecord {
  return {
    blobDigest: r.blob_digest as Digest,
    mediaType: r.media_type,
    blobSize: r.blob_size,
    diffId: r.diff_id as Digest,
    chainId: r.chain_id as Digest,
    tarSize: r.tar_size,
    size: r.size,
  };
}

function toRef(r: RefRowRaw): RefRow {
  return { ref: r.ref, imageId: r.image_id as Digest, kind: r.kind, createdAt: r.created_at };
}

/** Data access for the image tables; every method is synchronous (better-sqlite3). */
export class ImageStore {
  constructor(private readonly db: Db) {}

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  get(id: Digest, includeRemoved = false): ImageRow | null {
    const row = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRowRaw | undefined;
    if (!row) return null;
    const image = toImageRow(row);
    return image.removed && !includeRemoved ? null : image;
  }

  all(): ImageRow[] {
    return (this.db.prepare('SELECT * FROM images WHERE removed = 0').all() as ImageRowRaw[]).map(toImageRow);
  }

  removedImages(): ImageRow[] {
    return (this.db.prepare('SELECT * FROM images WHERE removed = 1').all() as ImageRowRaw[]).map(toImageRow);
  }

  /** Visible image ids whose hex part starts with `hexPrefix`. */
  idsWithPrefix(hexPrefix: string): Digest[] {
    return (
      this.db
        .prepare('SELECT id FROM images WHERE removed = 0 AND substr(id, 8, ?) = ? ORDER BY id LIMIT 2')
        .pluck()
        .all(hexPrefix.length, hexPrefix) as string[]
    ).map((id) => id as Digest);
  }

  children(id: Digest): Digest[] {
    return this.db
      .prepare('SELECT id FROM images WHERE parent_id = ? AND removed = 0')
      .pluck()
      .all(id) as Digest[];
  }

  layers(id: Digest): LayerRecord[] {
    return (
      this.db
        .prepare('SELECT * FROM image_layers WHERE image_id = ? ORDER BY position')
        .all(id) as LayerRowRaw[]
    ).map(toLayer);
  }

  allLayers(): Map<Digest, LayerRecord[]> {
    const out = new Map<Digest, LayerRecord[]>();
    const rows = this.db
      .prepare('SELECT * FROM image_layers ORDER BY image_id, position')
      .all() as LayerRowRaw[];
    for (const row of rows) {
      const id = row.image_id as Digest;
      let list = out.get(id);
      if (!list) {
        list = [];
        out.set(id, list);
      }
      list.push(toLayer(row));
    }
    return out;
  }

  /** Some image's record of the layer with this chain id (any image: the layer is the same). */
  layerByChain(chainId: Digest): LayerRecord | null {
    const row = this.db.prepare('SELECT * FROM image_layers WHERE chain_id = ? LIMIT 1').get(chainId) as
      | LayerRowRaw
      | undefined;
    return row ? toLayer(row) : null;
  }

  refsOf(id: Digest): RefRow[] {
    return (
      this.db.prepare('SELECT * FROM image_refs WHERE image_id = ? ORDER BY ref').all(id) as RefRowRaw[]
    ).map(toRef);
  }

  allRefs(): RefRow[] {
    return (this.db.prepare('SELECT * FROM image_refs ORDER BY ref').all() as RefRowRaw[]).map(toRef);
  }

  getRef(ref: string): RefRow | null {
    const row = this.db.prepare('SELECT * FROM image_refs WHERE ref = ?').get(ref) as RefRowRaw | undefined;
    return row ? toRef(row) : null;
  }

  /**
   * Inserts an image with its layers, or makes a hidden (removed) one visible again. Returns false
   * when the image was already there and visible.
   */
  putImage(row: Omit<ImageRow, 'removed' | 'lastTagTime'>, layers: readonly LayerRecord[]): boolean {
    const existing = this.get(row.id, true);
    if (existing) {
      if (!existing.removed) return false;
      this.db
        .prepare('UPDATE images SET removed = 0, created_at = ? WHERE id = ?')
        .run(row.createdAt, row.id);
      return true;
    }
    this.db
      .prepare(
        `INSERT INTO images (id, config, parent_id, chain_id, size, created_at, last_tag_time, removed)
         VALUES (?, ?, ?, ?, ?, ?, NULL, 0)`,
      )
      .run(row.id, row.config, row.parentId, row.chainId, row.size, row.createdAt);
    const insert = this.db.prepare(
      `INSERT INTO image_layers (image_id, position, blob_digest, media_type, blob_size, diff_id, chain_id, tar_size, size)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    layers.forEach((l, position) => {
      insert.run(
        row.id,
        position,
        l.blobDigest,
        l.mediaType,
        l.blobSize,
        l.diffId,
        l.chainId,
        l.tarSize,
        l.size,
      );
    });
    return true;
  }

  /** Points `ref` at `imageId`; returns the image it pointed at before, if another one. */
  setRef(ref: string, imageId: Digest, kind: 'tag' | 'digest'): Digest | null {
    const previous = this.getRef(ref);
    this.db
      .prepare(
        `INSERT INTO image_refs (ref, image_id, kind, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id, kind = excluded.kind,
         created_at = excluded.created_at`,
      )
      .run(ref, imageId, kind, Date.now());
    return previous && previous.imageId !== imageId ? previous.imageId : null;
  }

  deleteRef(ref: string): boolean {
    return this.db.prepare('DELETE FROM image_refs WHERE ref = ?').run(ref).changes > 0;
  }

  setLastTagTime(id: Digest, time: string): void {
    this.db.prepare('UPDATE images SET last_tag_time = ? WHERE id = ?').run(time, id);
  }

  markRemoved(id: Digest): void {
    this.db.prepare('DELETE FROM image_refs WHERE image_id = ?').run(id);
    this.db.prepare('UPDATE images SET removed = 1 WHERE id = ?').run(id);
  }

  deleteImage(id: Digest): void {
    this.db.prepare('DELETE FROM image_refs WHERE image_id = ?').run(id);
    this.db.prepare('DELETE FROM image_layers WHERE image_id = ?').run(id);
    this.db.prepare('DELETE FROM images WHERE id = ?').run(id);
  }

  /** True while any image row (visible or removed) has this chain among its layers. */
  isChainReferenced(chainId: Digest): boolean {
    return (
      this.db.prepare('SELECT 1 FROM image_layers WHERE chain_id = ? LIMIT 1').get(chainId) !== undefined
    );
  }

  /** True while any image row uses this blob as a layer or as its config. */
  isBlobReferenced(digest: Digest): boolean {
    if (this.db.prepare('SELECT 1 FROM images WHERE id = ?').get(digest) !== undefined) return true;
    return (
      this.db.prepare('SELECT 1 FROM image_layers WHERE blob_digest = ? LIMIT 1').get(digest) !== undefined
    );
  }
}
