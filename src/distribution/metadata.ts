import type { Digest } from '../common/digest.js';
import { type Db, migrate, type PartSchema } from '../store/db.js';

/**
 * What the daemon remembers about transfers, beyond the images themselves:
 *  - `blob_sources`: which repositories of which registry are known to hold a blob (it was pulled
 *    from or pushed to them). A push to another repository of the same registry mounts the blob
 *    from there instead of uploading it.
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
  ],
};

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

  rememberPulledLayer(blobDigest: Digest, facts: PulledLayerFacts): void {
    this.statements.addLayer.run(blobDigest, facts.diffId, facts.tarSize);
  }

  pulledLayer(blobDigest: Digest): PulledLayerFacts | null {
    const row = this.statements.layer.get(blobDigest);
    return row ? { diffId: row.diff_id as Digest, tarSize: row.tar_size } : null;
  }
}
