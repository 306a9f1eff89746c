import * as fs from 'node:fs';
import * as path from 'node:path';
import { Conflict, errorMessage, InvalidArgument, NotFound } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { newObjectId } from '../common/ids.js';
import { logger } from '../common/log.js';
import * as native from '../native/index.js';
import type { Db, PartSchema } from '../store/db.js';

const log = logger('volumes');

/**
 * Named volumes of the `local` driver: a directory `<root>/volumes/<name>/_data` that outlives
 * containers. Lifecycle: `create` (explicitly, or implicitly when a container names a volume that
 * does not exist, or anonymously for `-v /path` and an image's VOLUME) → mounted into containers
 * (binds made at start by the container part; `prepareUse` mounts the volume's own file system when
 * it has driver options) → `remove` (refused while any container refers to it) or `prune`.
 */
export const volumesSchema: PartSchema = {
  part: 'volumes',
  migrations: [
    `CREATE TABLE volumes (
       name TEXT PRIMARY KEY,
       data TEXT NOT NULL
     )`,
  ],
};

export interface VolumeRecord {
  name: string;
  driver: string;
  created: string;
  labels: Record<string, string>;
  /** Driver options exactly as given (`type`, `device`, `o` for local). */
  options: Record<string, string> | null;
  anonymous: boolean;
}

export interface CreateVolumeRequest {
  Name?: string | null;
  Driver?: string | null;
  DriverOpts?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
}

const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export class VolumeService {
  readonly dir: string;
  private readonly volumes = new Map<string, VolumeRecord>();
  /** Container ids that refer to a volume (supplied by the container part). */
  private usersOf: (name: string) => string[] = () => [];

  constructor(
    private readonly db: Db,
    root: string,
    private readonly events: EventBus,
  ) {
    this.dir = path.join(root, 'volumes');
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o701 });
    for (const row of db.prepare('SELECT data FROM volumes').all() as { data: string }[]) {
      const v = JSON.parse(row.data) as VolumeRecord;
      this.volumes.set(v.name, v);
    }
  }

  setUsers(fn: (name: string) => string[]): void {
    this.usersOf = fn;
  }

  mountpoint(name: string): string {
    return path.join(this.dir, name, '_data');
  }

  find(name: string): VolumeRecord | null {
    return this.volumes.get(name) ?? null;
  }

  get(name: string): VolumeRecord {
    const v = this.volumes.get(name);
    if (!v) throw new NotFound(`get ${name}: no such volume`);
    return v;
  }

  list(): VolumeRecord[] {
    return [...this.volumes.values()].sort((a, b) => (a.created < b.created ? -1 : 1));
  }

  users(name: string): string[] {
    return this.usersOf(name);
  }

  /** Creates a volume; an existing name returns the existing volume (as dockerd does). */
  create(req: CreateVolumeRequest, anonymous = false): VolumeRecord {
    const driver = req.Driver && req.Driver !== '' ? req.Driver : 'local';
    if (driver !== 'local')
      throw new NotFound(`error looking up volume plugin ${driver}: plugin "${driver}" not found`);
    const name = req.Name && req.Name !== '' ? req.Name : newObjectId();
    if (!NAME_RE.test(name))
      throw new InvalidArgument(
        `create ${name}: "${name}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
      );
    const existing = this.volumes.get(name);
    if (existing) return existing;
    const options = req.DriverOpts && Object.keys(req.DriverOpts).length > 0 ? { ...req.DriverOpts } : null;
    if (options) validateLocalOptions(options);
    const record: VolumeRecord = {
      name,
      driver,
      created: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      labels: { ...(req.Labels ?? {}) },
      options,
      anonymous: anonymous || !(req.Name && req.Name !== ''),
    };
    fs.mkdirSync(this.mountpoint(name), { recursive: true, mode: 0o755 });
    this.db.prepare('INSERT INTO volumes (name, data) VALUES (?, ?)').run(name, JSON.stringify(record));
    this.volumes.set(name, record);
    this.events.publish('volume', 'create', name, { driver });
    return record;
  }

  async remove(name: string, force = false): Promise<void> {
    const v = this.volumes.get(name);
    if (!v) {
      if (force) return;
      throw new NotFound(`get ${name}: no such volume`);
    }
    const users = this.usersOf(name);
    if (users.length > 0) throw new Conflict(`remove ${name}: volume is in use - [${users.join(', ')}]`);
    this.db.prepare('DELETE FROM volumes WHERE name = ?').run(name);
    this.volumes.delete(name);
    this.unmount(name);
    fs.rmSync(path.join(this.dir, name), { recursive: true, force: true });
    this.events.publish('volume', 'destroy', name, { driver: v.driver });
  }

  /** Volumes no container refers to (only anonymous ones unless `all`), filtered by `keep`. */
  async prune(
    all: boolean,
    keep: (v: VolumeRecord) => boolean,
  ): Promise<{ names: string[]; reclaimed: number }> {
    const names: string[] = [];
    let reclaimed = 0;
    for (const v of this.list()) {
      if ((!all && !v.anonymous) || keep(v) || this.usersOf(v.name).length > 0) continue;
      reclaimed += sizeOf(this.mountpoint(v.name));
      await this.remove(v.name);
      names.push(v.name);
    }
    return { names, reclaimed };
  }

  /** Before a container uses the volume: mounts its own file system when it has driver options. */
  prepareUse(name: string): string {
    const v = this.get(name);
    const target = this.mountpoint(name);
    if (v.options?.type || v.options?.device) {
      if (!isMountpoint(target)) {
        const o = v.options.o ?? '';
        const bind = o.split(',').includes('bind');
        const data = o
          .split(',')
          .filter((x) => x !== '' && x !== 'bind')
          .join(',');
        native.mount(
          v.options.device ?? v.options.type ?? 'none',
          target,
          bind ? null : (v.options.type ?? null),
          bind ? native.constants.MS_BIND : 0,
          bind || data === '' ? null : data,
        );
      }
    }
    return target;
  }

  private unmount(name: string): void {
    const target = this.mountpoint(name);
    try {
      if (isMountpoint(target)) native.umount2(target, native.constants.MNT_DETACH);
    } catch (err) {
      log.warn('unmounting volume failed', { name, error: errorMessage(err) });
    }
  }

  /** Detaches every volume file system (daemon shutdown with nothing running). */
  unmountAll(): void {
    for (const v of this.volumes.values()) if (v.options) this.unmount(v.name);
  }

  inspect(v: VolumeRecord): Record<string, unknown> {
    return {
      CreatedAt: v.created,
      Driver: v.driver,
      Labels: v.labels,
      Mountpoint: this.mountpoint(v.name),
      Name: v.name,
      Options: v.options,
      Scope: 'local',
    };
  }
}

function validateLocalOptions(options: Record<string, string>): void {
  for (const key of Object.keys(options)) {
    if (!['type', 'device', 'o', 'size'].includes(key))
      throw new InvalidArgument(`invalid option key: "${key}"`);
  }
}

function isMountpoint(dir: string): boolean {
  try {
    const text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    return text.split('\n').some((l) => l.split(' ')[4] === dir);
  } catch {
    return false;
  }
}

function sizeOf(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += fs.lstatSync(p).size;
    }
  };
  walk(dir);
  return total;
}
