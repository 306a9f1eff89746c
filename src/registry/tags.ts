import { type Digest, isDigest } from '../common/digest.js';
import { isTag, type RepositoryName } from './names.js';
import { paths } from './paths.js';
import {
  deleteIfExists,
  getContentOrNull,
  listOrEmpty,
  type StorageDriver,
  statOrNull,
} from './storage/driver.js';

/**
 * Tags: a name in a repository pointing at one manifest digest (`_manifests/tags/<tag>/current/link`).
 * Setting a tag replaces its link atomically; a tag exists only while its link does.
 */
export class TagStore {
  constructor(private readonly driver: StorageDriver) {}

  async resolve(name: RepositoryName, tag: string): Promise<Digest | null> {
    const link = await getContentOrNull(this.driver, paths.tagLink(name, tag));
    if (link === null) return null;
    const digest = link.toString('utf8').trim();
    return isDigest(digest) ? digest : null;
  }

  async set(name: RepositoryName, tag: string, digest: Digest): Promise<void> {
    await this.driver.putContent(paths.tagLink(name, tag), digest);
  }

  /** When the tag was last set (a pull-through cache re-sets a tag each time its upstream confirms it). */
  async setAt(name: RepositoryName, tag: string): Promise<Date | null> {
    return (await statOrNull(this.driver, paths.tagLink(name, tag)))?.modTime ?? null;
  }

  async delete(name: RepositoryName, tag: string): Promise<boolean> {
    if ((await this.resolve(name, tag)) === null) return false;
    return deleteIfExists(this.driver, paths.tagDir(name, tag));
  }

  /** All tags, in the ASCII order the spec asks for (Go's sort.Strings). */
  async list(name: RepositoryName): Promise<string[]> {
    // Directory names only: reading every link would make each page of a long list cost O(all tags).
    const names = await listOrEmpty(this.driver, paths.tagsRoot(name));
    return names.filter(isTag).sort(compareAscii);
  }

  /** Tags pointing at `digest` (deleting a manifest deletes them too). */
  async tagsOf(name: RepositoryName, digest: Digest): Promise<string[]> {
    const out: string[] = [];
    for (const tag of await listOrEmpty(this.driver, paths.tagsRoot(name))) {
      if ((await this.resolve(name, tag)) === digest) out.push(tag);
    }
    return out;
  }

  /** Every tag with its digest, for garbage collection. */
  async all(name: RepositoryName): Promise<Map<string, Digest>> {
    const out = new Map<string, Digest>();
    for (const tag of await listOrEmpty(this.driver, paths.tagsRoot(name))) {
      const digest = await this.resolve(name, tag);
      if (digest !== null) out.set(tag, digest);
    }
    return out;
  }
}

/** Byte-wise order of code units, as Go's sort.Strings (not localeCompare). */
export function compareAscii(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
