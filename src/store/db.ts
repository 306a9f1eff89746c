import * as path from 'node:path';
import Database from 'better-sqlite3';

/**
 * The metadata database (SQLite, WAL) under the daemon root.
 *
 * Each part owns its tables and declares them as an ordered list of migrations under its own name
 * (`images`, `containers`, ...), so parts evolve their schema without touching each other's. `openStore`
 * applies every pending migration of every registered part, each in its own transaction, and records it
 * in `schema_migrations`. Code changes the file system first (add-only) and the database second, in a
 * transaction; garbage collection removes files that no row references.
 */
export type Db = Database.Database;

export interface PartSchema {
  /** Stable name of the part, e.g. 'images'. */
  part: string;
  /** SQL scripts; index + 1 is the version. Never edit a published entry: append a new one. */
  migrations: readonly string[];
}

export function openStore(root: string, schemas: readonly PartSchema[], file = 'metadata.db'): Db {
  const db = new Database(path.join(root, file));
  db.pragma('journal_mode = WAL');
  // NORMAL in WAL mode keeps the database consistent after a crash; a power loss may drop the last
  // transactions but never corrupts. Container state is reconciled from the runtime on start anyway.
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  migrate(db, schemas);
  return db;
}

export function migrate(db: Db, schemas: readonly PartSchema[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    part TEXT NOT NULL, version INTEGER NOT NULL, applied_at INTEGER NOT NULL, PRIMARY KEY (part, version))`);
  const applied = db.prepare('SELECT version FROM schema_migrations WHERE part = ?').pluck();
  const record = db.prepare('INSERT INTO schema_migrations (part, version, applied_at) VALUES (?, ?, ?)');
  for (const schema of schemas) {
    const done = new Set(applied.all(schema.part) as number[]);
    schema.migrations.forEach((sql, index) => {
      const version = index + 1;
      if (done.has(version)) return;
      db.transaction(() => {
        db.exec(sql);
        record.run(schema.part, version, Date.now());
      })();
    });
  }
}
