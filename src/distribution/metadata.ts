import type { Digest } from '../common/digest.js';
import { type Db, migrate, type PartSchema } from '../store/db.js';

/**
 * What the daemon remembers about transfers, beyond the images themselves:
 *  - `blob_sources`: which repositories of which registry are known to hold a blob (it was pulled
 *    from or pushed to them). A push to another repository of the same registry mounts the blob
 *    from there instead of uploading it.
 *  - `layer_descriptors`: the blobs (compressed or not) seen on registries for a layer's diff id.
 *    A layer that was already here when an image was pulled is stored once, in its local form; a
 *    push of that image to a registry that has the pulled form uses it, as dockerd's v2 metadata
 *    does, so the blob is neither uploaded again nor duplicated.
 *  - `pulled_layers`: for a layer blob that was downloaded and unpacked, its diff id and unpacked
 *    tar length, so a pull that was interrupted after that layer (and before the image was recorded)
 *    counts it as present when it is resumed.
 */
export const distributionSchema: PartSchema = {
  part: 'distribution',
  migrations: [
    `CREATE TABLE blob_sources (
      digest TEXT NOT NULL,
      registry TEXT NOT NULL,
      repository TEXT NOT NULL,
      seen_at INTEGER NOT NULL,
      PRIMARY KEY (digest, registry, repository)
    );
    CREATE TABLE pulled_layers (
      blob_digest TEXT PRIMARY KEY,
      diff_id TEXT NOT NULL,
      tar_size INTEGER NOT NULL
    );`,
    `CREATE TABLE layer_descriptors (
      diff_id TEXT NOT NULL,
      blob_digest TEXT NOT NULL,
      media_type TEXT NOT NULL,
      size INTEGER NOT NULL,
      seen_at INTEGER NOT NULL,
      PRIMARY KEY (diff_id, blob_digest)
    );`,
  ],
};

export interface LayerDescriptor {
  digest: Digest;
  mediaType: string;
  size: number;
}

export interface PulledLayerFacts {
  diffId: Digest;
  tarSize: number;
}

export class DistributionMetadata {
  private readonly statements;

  constructor(db: Db) {
    migrate(db, [distributionSchema]);
    this.statements = {
      addSource: db.prepare<[string, string, string, number]>(
        `INSERT INTO blob_sources (digest, registry, repository, seen_at) VALUES (?, ?, ?, ?)
         ON CONFLICT(digest, registry, repository) DO UPDATE SET seen_at = excluded.seen_at`,
      ),
      sources: db
        .prepare<[string, string], string>(
          'SELECT repository FROM blob_sources WHERE digest = ? AND registry = ? ORDER BY seen_at DESC LIMIT 8',
        )
        .pluck(),
      forget: db.prepare<[string, string, string]>(
        'DELETE FROM blob_sources WHERE digest = ? AND registry = ? AND repository = ?',
      ),
      addLayer: db.prepare<[string, string, number]>(
        `INSERT INTO pulled_layers (blob_digest, diff_id, tar_size) VALUES (?, ?, ?)
         ON CONFLICT(blob_digest) DO UPDATE SET diff_id = excluded.diff_id, tar_size = excluded.tar_size`,
      ),
      layer: db.prepare<[string], { diff_id: string; tar_size: number }>(
        'SELECT diff_id, tar_size FROM pulled_layers WHERE blob_digest = ?',
      ),
      addDescriptor: db.prepare<[string, string, string, number, number]>(
        `INSERT INTO layer_descriptors (diff_id, blob_digest, media_type, size, seen_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(diff_id, blob_digest) DO UPDATE SET media_type = excluded.media_type, seen_at = excluded.seen_at`,
      ),
      descriptors: db.prepare<[string], { blob_digest: string; media_type: string; size: number }>(
        'SELECT blob_digest, media_type, size FROM layer_descriptors WHERE diff_id = ? ORDER BY seen_at DESC LIMIT 8',
      ),
    };
  }

  /** Records that `registry` holds `digest` in `repository` (pulled from or pushed there). */
  rememberSource(digest: Digest, registry: string, repository: string): void {
    this.statements.addSource.run(digest, registry, repository, Date.now());
  }

  /** Repositories of `registry` known to hold `digest`, most recently seen first. */
  sourcesOf(digest: Digest, registry: string): string[] {
    return this.statements.sources.all(digest, registry);
  }

  forgetSource(digest: Digest, registry: string, repository: string): void {
    this.statements.forget.run(digest, registry, repository);
  }

  /** Records that `descriptor` is a form (as a registry blob) of the layer with `diffId`. */
  rememberLayerDescriptor(diffId: Digest, descriptor: LayerDescriptor): void {
    this.statements.addDescriptor.run(
      diffId,
      descriptor.digest,
      descriptor.mediaType,
      descriptor.size,
      Date.now(),
    );
  }

  /** The registry blobs known for a layer, most recently seen first. */
  layerDescriptors(diffId: Digest): LayerDescriptor[] {
    return this.statements.descriptors
      .all(diffId)
      .map((r) => ({ digest: r.blob_digest as Digest, mediaType: r.media_type, size: r.size }));
  }

  rememberPulledLayer(blobDigest: Digest, facts: PulledLayerFacts): void {
    this.statements.addLayer.run(blobDigest, facts.diffId, facts.tarSize);
  }

  pulledLayer(blobDigest: Digest): PulledLayerFacts | null {
    const row = this.statements.layer.get(blobDigest);
    return row ? { diffId: row.diff_id as Digest, tarSize: row.tar_size } : null;
  }
}
