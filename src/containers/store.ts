import type { Db, PartSchema } from '../store/db.js';
import type { ContainerRecord } from './types.js';

/** Container records: one row each, the record as JSON (it is read whole and cached in memory). */
export const containersSchema: PartSchema = {
  part: 'containers',
  migrations: [
    `CREATE TABLE containers (
       id TEXT PRIMARY KEY,
       name TEXT NOT NULL UNIQUE,
       image_id TEXT NOT NULL,
       created_at TEXT NOT NULL,
       data TEXT NOT NULL
     )`,
  ],
};

export class ContainerTable {
  private readonly insertStmt;
  private readonly updateStmt;
  private readonly deleteStmt;
  private readonly allStmt;

  constructor(private readonly db: Db) {
    this.insertStmt = db.prepare(
      'INSERT INTO containers (id, name, image_id, created_at, data) VALUES (?, ?, ?, ?, ?)',
    );
    this.updateStmt = db.prepare('UPDATE containers SET name = ?, data = ? WHERE id = ?');
    this.deleteStmt = db.prepare('DELETE FROM containers WHERE id = ?');
    this.allStmt = db.prepare('SELECT data FROM containers ORDER BY created_at');
  }

  insert(record: ContainerRecord): void {
    this.insertStmt.run(record.id, record.name, record.imageId, record.created, JSON.stringify(record));
  }

  save(record: ContainerRecord): void {
    this.updateStmt.run(record.name, JSON.stringify(record), record.id);
  }

  delete(id: string): void {
    this.deleteStmt.run(id);
  }

  all(): ContainerRecord[] {
    return (this.allStmt.all() as { data: string }[]).map((row) => JSON.parse(row.data) as ContainerRecord);
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }
}
