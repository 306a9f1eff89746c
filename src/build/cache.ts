import type { Digest } from '../common/digest.js';
import type { Db, PartSchema } from '../store/db.js';

/**
 * The build cache: one row per step result, `cache_key` → the image that step produced. The key is
 * the sha256 of the parent image id, the instruction with its variables expanded, the build-arg
 * values it sees and, for COPY/ADD, the hash of the source files' names, modes and contents. The
 * image holds the result, so a hit costs one lookup and writes nothing. A row whose image is gone
 * (removed by `docker rmi` or an image prune) is a miss and is dropped.
 */
export const buildSchema: PartSchema = {
  part: 'build',
  migrations: [
    `CREATE TABLE build_cache (
      cache_key TEXT PRIMARY KEY,
      image_id TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      last_used_at INTEGER NOT NULL
    );
    CREATE INDEX build_cache_image ON build_cache (image_id);`,
  ],
};

export interface CacheRow {
  key: string;
  imageId: Digest;
  createdAt: number;
  lastUsedAt: number;
}

interface RawRow {
  cache_key: string;
  image_id: string;
  created_at: number;
  last_used_at: number;
}

export class BuildCache {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      get: db.prepare<[string], RawRow>('SELECT * FROM build_cache WHERE cache_key = ?'),
      touch: db.prepare<[number, string]>('UPDATE build_cache SET last_used_at = ? WHERE cache_key = ?'),
      put: db.prepare<[string, string, number, number]>(
        `INSERT INTO build_cache (cache_key, image_id, created_at, last_used_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (cache_key) DO UPDATE SET image_id = excluded.image_id, last_used_at = excluded.last_used_at`,
      ),
      remove: db.prepare<[string]>('DELETE FROM build_cache WHERE cache_key = ?'),
      removeImage: db.prepare<[string]>('DELETE FROM build_cache WHERE image_id = ?'),
      all: db.prepare<[], RawRow>('SELECT * FROM build_cache ORDER BY created_at'),
    };
  }

  get(key: string): Digest | null {
    const row = this.statements.get.get(key);
    if (!row) return null;
    this.statements.touch.run(Date.now(), key);
    return row.image_id as Digest;
  }

  put(key: string, imageId: Digest): void {
    const now = Date.now();
    this.statements.put.run(key, imageId, now, now);
  }

  remove(key: string): void {
    this.statements.remove.run(key);
  }

  /** Forgets every step result that is this image (it was deleted). */
  forgetImage(imageId: Digest): void {
    this.statements.removeImage.run(imageId);
  }

  all(): CacheRow[] {
    return this.statements.all.all().map((r) => ({
      key: r.cache_key,
      imageId: r.image_id as Digest,
      createdAt: r.created_at,
      lastUsedAt: r.last_used_at,
    }));
  }
}
