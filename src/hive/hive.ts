import { Conflict, InvalidArgument, NotFound } from '../common/errors.js';
import {
  compareNames,
  decodeKeyName,
  decodeValueFileName,
  encodeKeyName,
  formatKeyPath,
  type KeyPath,
  MAX_FILE_NAME_BYTES,
  type RootKey,
  sameName,
  valueFileName,
} from './names.js';
import { formatRegFile, parseRegFile, type RegFileKey, type RegOperation } from './regfile.js';
import type { HiveStorage } from './storage.js';
import { decodeValueFile, encodeValueFile, MAX_DATA_BYTES, type RegValue } from './values.js';

/**
 * A registry hive: keys holding typed values, stored as files (names.ts and values.ts give the
 * layout), on top of a HiveStorage.
 *
 * Lifecycle: an image ships `/.strata/hive/…` in its layers (written by `RUN`, `COPY` of a
 * `strata reg convert` output, or a committed container); a container sees the merged view and the
 * daemon opens a Hive on its mounted root (`RootStorage`) for `strata reg add/delete/import`, while
 * applications inside change the same files directly. Every change is a whole-file replace, a
 * directory creation or a removal, so it lands in the container's own layer (copy-on-write per
 * value) and a removal of something the image has becomes a whiteout; `docker diff`, commit, build,
 * push and pull carry hive changes with no code of their own. An image's hive is read with a Hive
 * on `LayerStorage`, without a container.
 *
 * Names are matched case-insensitively and keep the case they were created with; when two entries
 * differ only in case (made by hand), the exact spelling wins, then the first in byte order.
 * Reading a key that does not exist is NotFound with reg.exe's message; root keys always exist.
 */

export const NOT_FOUND_MESSAGE = 'The system was unable to find the specified registry key or value.';

/** One key as queried: its full path (stored case) and its values and subkey names, sorted. */
export interface KeyListing {
  path: string;
  values: RegValue[];
  subkeys: string[];
}

export interface QueryOptions {
  /** Only this value (`''`: the default value); keys without it are left out. */
  value?: string;
  /** The key and every key below it, parents first. */
  recursive?: boolean;
}

export interface ImportSummary {
  /** `[KEY]` lines that created at least one key (the others named existing keys). */
  keysCreated: number;
  keysDeleted: number;
  valuesSet: number;
  valuesDeleted: number;
}

/** A key found on disk: its on-disk directory names and its names as stored. */
interface ResolvedKey {
  root: RootKey;
  dirs: string[];
  names: string[];
}

export class Hive {
  constructor(readonly storage: HiveStorage) {}

  // -------------------------------------------------------------------------------------------
  // Lookup

  /** The on-disk name in `dir` of `name` (directory for a key, file for a value), or null. */
  private match(dir: readonly string[], encoded: string, kind: 'dir' | 'file', name: string): string | null {
    if (this.storage.kind(dir, encoded) === kind) return encoded;
    const entries = this.storage.list(dir);
    if (entries === null) return null;
    const decode = kind === 'dir' ? decodeKeyName : decodeValueFileName;
    const candidates = entries
      .filter((e) => e.kind === kind)
      .map((e) => ({ file: e.name, name: decode(e.name) }))
      .filter((e): e is { file: string; name: string } => e.name !== null && sameName(e.name, name))
      .map((e) => e.file)
      .sort();
    return candidates[0] ?? null;
  }

  private findKey(key: KeyPath): ResolvedKey | null {
    const resolved: ResolvedKey = { root: key.root, dirs: [key.root], names: [] };
    for (const name of key.names) {
      const file = this.match(resolved.dirs, encodeKeyName(name), 'dir', name);
      if (file === null) return null;
      resolved.dirs.push(file);
      resolved.names.push(decodeKeyName(file)!);
    }
    return resolved;
  }

  private requireKey(key: KeyPath): ResolvedKey {
    const found = this.findKey(key);
    if (!found) throw new NotFound(NOT_FOUND_MESSAGE);
    return found;
  }

  /** Finds or creates each key of `key`, as RegCreateKeyEx does; returns it and whether it is new. */
  private ensureKey(key: KeyPath): { resolved: ResolvedKey; created: boolean } {
    const resolved: ResolvedKey = { root: key.root, dirs: [], names: [] };
    let created = false;
    if (this.storage.kind([], key.root) !== 'dir') this.storage.makeDir([], key.root);
    resolved.dirs.push(key.root);
    for (const name of key.names) {
      let file = this.match(resolved.dirs, encodeKeyName(name), 'dir', name);
      if (file === null) {
        file = encodeKeyName(name);
        if (this.storage.kind(resolved.dirs, file) !== null) {
          throw new Conflict(`cannot create key ${name}: a file of that name is in the way`);
        }
        this.storage.makeDir(resolved.dirs, file);
        created = true;
      }
      resolved.dirs.push(file);
      resolved.names.push(decodeKeyName(file)!);
    }
    return { resolved, created };
  }

  private readValue(dir: readonly string[], file: string): RegValue {
    const name = decodeValueFileName(file)!;
    const bytes = this.storage.read(dir, file, MAX_DATA_BYTES * 3 + 64);
    if (bytes === null) throw new NotFound(NOT_FOUND_MESSAGE);
    try {
      return { ...decodeValueFile(bytes), name };
    } catch (err) {
      throw new InvalidArgument(
        `malformed value file /${[...dir, file].join('/')}: ${(err as Error).message}`,
      );
    }
  }

  private listKey(key: ResolvedKey, only?: string): KeyListing {
    const entries = this.storage.list(key.dirs) ?? [];
    const values: RegValue[] = [];
    const subkeys: string[] = [];
    for (const entry of entries) {
      if (entry.kind === 'dir') {
        const name = decodeKeyName(entry.name);
        if (name !== null) subkeys.push(name);
      } else {
        const name = decodeValueFileName(entry.name);
        if (name === null) continue;
        if (only !== undefined && !sameName(name, only)) continue;
        values.push(this.readValue(key.dirs, entry.name));
      }
    }
    values.sort((a, b) => (a.name === '' ? -1 : b.name === '' ? 1 : compareNames(a.name, b.name)));
    if (only !== undefined && values.length > 1) {
      // Two files differing only in case: keep the one lookups pick.
      const chosen = this.match(key.dirs, valueFileName(only), 'file', only);
      values.splice(0, values.length, ...values.filter((v) => valueFileName(v.name) === chosen));
    }
    subkeys.sort(compareNames);
    return { path: formatKeyPath(key.root, key.names), values, subkeys };
  }

  private walk(
    key: ResolvedKey,
    visit: (key: ResolvedKey, listing: KeyListing) => void,
    only?: string,
  ): void {
    const listing = this.listKey(key, only);
    visit(key, listing);
    for (const name of listing.subkeys) {
      const file = encodeKeyName(name);
      this.walk({ root: key.root, dirs: [...key.dirs, file], names: [...key.names, name] }, visit, only);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Verbs

  /**
   * `reg query`: the key's listing, or with `recursive` the listings of the key and all keys below
   * it. With `value`, only keys holding that value are returned, each with just that value; none is
   * NotFound.
   */
  query(key: KeyPath, options: QueryOptions = {}): KeyListing[] {
    const resolved = this.requireKey(key);
    const out: KeyListing[] = [];
    if (options.recursive) {
      this.walk(resolved, (_, listing) => out.push(listing), options.value);
    } else {
      out.push(this.listKey(resolved, options.value));
    }
    if (options.value === undefined) return out;
    const holding = out.filter((k) => k.values.length > 0).map((k) => ({ ...k, subkeys: [] }));
    if (holding.length === 0) throw new NotFound(NOT_FOUND_MESSAGE);
    return holding;
  }

  /** `reg add KEY`: creates the key and any missing parents; true when something was created. */
  createKey(key: KeyPath): boolean {
    return this.ensureKey(key).created;
  }

  /**
   * `reg add KEY /v NAME /t TYPE /d DATA`: creates missing keys, then writes the value. An existing
   * value (matched case-insensitively, keeping its stored name) is replaced only with `overwrite`,
   * else Conflict. Returns true when the value is new.
   */
  setValue(key: KeyPath, value: RegValue, options: { overwrite: boolean }): boolean {
    const encoded = encodeValueFile(value);
    if (Buffer.byteLength(valueFileName(value.name)) > MAX_FILE_NAME_BYTES) {
      throw new InvalidArgument('value name too long');
    }
    const existingKey = this.findKey(key);
    const existing = existingKey
      ? this.match(existingKey.dirs, valueFileName(value.name), 'file', value.name)
      : null;
    if (existing !== null && !options.overwrite) {
      throw new Conflict(
        `value ${value.name === '' ? '(Default)' : value.name} already exists in ${formatKeyPath(existingKey!.root, existingKey!.names)}`,
      );
    }
    const { resolved } = existingKey ? { resolved: existingKey } : this.ensureKey(key);
    const file = existing ?? valueFileName(value.name);
    if (this.storage.kind(resolved.dirs, file) === 'dir') {
      throw new Conflict(`cannot write value ${value.name}: a directory of that name is in the way`);
    }
    this.storage.write(resolved.dirs, file, encoded);
    return existing === null;
  }

  /** `reg delete KEY /v NAME` (`''` for /ve). NotFound when the key or value does not exist. */
  deleteValue(key: KeyPath, name: string): void {
    const resolved = this.requireKey(key);
    const file = this.match(resolved.dirs, valueFileName(name), 'file', name);
    if (file === null) throw new NotFound(NOT_FOUND_MESSAGE);
    this.storage.remove(resolved.dirs, file);
  }

  /** `reg delete KEY /va`: removes every value of the key (not its subkeys); returns how many. */
  deleteAllValues(key: KeyPath): number {
    const resolved = this.requireKey(key);
    let count = 0;
    for (const entry of this.storage.list(resolved.dirs) ?? []) {
      if (entry.kind !== 'file' || decodeValueFileName(entry.name) === null) continue;
      this.storage.remove(resolved.dirs, entry.name);
      count++;
    }
    return count;
  }

  /** `reg delete KEY`: removes the key and everything below it. Root keys cannot be deleted. */
  deleteKey(key: KeyPath): void {
    if (key.names.length === 0)
      throw new InvalidArgument(`cannot delete the root key ${formatKeyPath(key.root, [])}`);
    const resolved = this.requireKey(key);
    this.storage.remove(resolved.dirs.slice(0, -1), resolved.dirs.at(-1)!);
  }

  /** `reg export KEY`: the key and everything below it as a .reg file (UTF-16 LE with BOM). */
  exportKey(key: KeyPath): Buffer {
    const keys: RegFileKey[] = [];
    this.walk(this.requireKey(key), (_, listing) =>
      keys.push({ path: listing.path, values: listing.values }),
    );
    return formatRegFile(keys);
  }

  /**
   * `reg import FILE`: parses the whole file first (a malformed one changes nothing), then applies
   * it in order: `[KEY]` creates, `[-KEY]` deletes (absent is fine), values are set or deleted.
   */
  importRegFile(bytes: Buffer): ImportSummary {
    return this.apply(parseRegFile(bytes));
  }

  apply(ops: readonly RegOperation[]): ImportSummary {
    const summary: ImportSummary = { keysCreated: 0, keysDeleted: 0, valuesSet: 0, valuesDeleted: 0 };
    for (const op of ops) {
      switch (op.op) {
        case 'createKey':
          if (this.createKey(op.key)) summary.keysCreated++;
          break;
        case 'deleteKey': {
          const found = this.findKey(op.key);
          if (found) {
            this.storage.remove(found.dirs.slice(0, -1), found.dirs.at(-1)!);
            summary.keysDeleted++;
          }
          break;
        }
        case 'setValue':
          this.setValue(op.key, op.value, { overwrite: true });
          summary.valuesSet++;
          break;
        case 'deleteValue': {
          const found = this.findKey(op.key);
          const file = found ? this.match(found.dirs, valueFileName(op.name), 'file', op.name) : null;
          if (found && file !== null) {
            this.storage.remove(found.dirs, file);
            summary.valuesDeleted++;
          }
          break;
        }
      }
    }
    return summary;
  }
}
