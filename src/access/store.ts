import type { Db, PartSchema } from '../store/db.js';
import type { AclEntry, ObjectAcl } from './acl.js';

/**
 * Owners and ACLs of API objects, one row per object, cached in memory (every request checks them).
 * `kind` is `container`, `image`, `network` or `volume`; images, networks and volumes only use the
 * owner. A row is written when the object is created and deleted with it.
 */
export type ObjectKind = 'container' | 'image' | 'network' | 'volume';

export const accessSchema: PartSchema = {
  part: 'access',
  migrations: [
    `CREATE TABLE object_acls (
       kind TEXT NOT NULL,
       id TEXT NOT NULL,
       owner TEXT NOT NULL,
       entries TEXT NOT NULL,
       PRIMARY KEY (kind, id)
     )`,
  ],
};

export class AclStore {
  private readonly cache = new Map<string, ObjectAcl>();
  private readonly upsertStmt;
  private readonly deleteStmt;

  constructor(db: Db) {
    this.upsertStmt = db.prepare(
      `INSERT INTO object_acls (kind, id, owner, entries) VALUES (?, ?, ?, ?)
       ON CONFLICT (kind, id) DO UPDATE SET owner = excluded.owner, entries = excluded.entries`,
    );
    this.deleteStmt = db.prepare('DELETE FROM object_acls WHERE kind = ? AND id = ?');
    const rows = db.prepare('SELECT kind, id, owner, entries FROM object_acls').all() as {
      kind: string;
      id: string;
      owner: string;
      entries: string;
    }[];
    for (const row of rows) {
      this.cache.set(`${row.kind}/${row.id}`, {
        owner: row.owner,
        entries: JSON.parse(row.entries) as AclEntry[],
      });
    }
  }

  get(kind: ObjectKind, id: string): ObjectAcl | null {
    return this.cache.get(`${kind}/${id}`) ?? null;
  }

  set(kind: ObjectKind, id: string, acl: ObjectAcl): void {
    this.upsertStmt.run(kind, id, acl.owner, JSON.stringify(acl.entries));
    this.cache.set(`${kind}/${id}`, { owner: acl.owner, entries: [...acl.entries] });
  }

  delete(kind: ObjectKind, id: string): void {
    this.deleteStmt.run(kind, id);
    this.cache.delete(`${kind}/${id}`);
  }

  /** Ids of `kind` with a record (for clean-up of objects removed while the daemon was down). */
  ids(kind: ObjectKind): string[] {
    const prefix = `${kind}/`;
    return [...this.cache.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
  }
}
