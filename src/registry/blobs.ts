import type { FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type Digest, isDigest } from '../common/digest.js';
import type { RepositoryName } from './names.js';
import { paths } from './paths.js';
import {
  deleteIfExists,
  type FileInfo,
  getContentOrNull,
  isPathNotFound,
  type StorageDriver,
  statOrNull,
} from './storage/driver.js';

/**
 * Blobs: content stored once under `blobs/` and made visible per repository by a link. A repository
 * serves a blob only if it holds a link to it and the content exists; deleting a blob from a repository
 * removes the link, and garbage collection later removes content that nothing links or references.
 * Content becomes visible only by `commitFrom` (a rename of verified data) or `putSmall` (atomic write).
 */
export class BlobStore {
  constructor(private readonly driver: StorageDriver) {}

  /** Size of a blob the repository may serve, or null when it has no link or the content is gone. */
  async statInRepository(name: RepositoryName, digest: Digest): Promise<number | null> {
    if (!(await this.isLinked(name, digest))) return null;
    const info = await this.statContent(digest);
    return info === null ? null : info.size;
  }

  async isLinked(name: RepositoryName, digest: Digest): Promise<boolean> {
    const link = await getContentOrNull(this.driver, paths.layerLink(name, digest));
    return link !== null && link.toString('utf8').trim() === digest;
  }

  /** The content's file info, whether or not any repository links it. */
  async statContent(digest: Digest): Promise<FileInfo | null> {
    return statOrNull(this.driver, paths.blobData(digest));
  }

  /** Streams `length` bytes from `offset`. Returns null when the content vanished meanwhile (gc). */
  async open(digest: Digest, offset = 0, length?: number): Promise<Readable | null> {
    try {
      return await this.driver.reader(paths.blobData(digest), offset, length);
    } catch (err) {
      if (isPathNotFound(err)) return null;
      throw err;
    }
  }

  /** Writes `length` bytes from `offset` into `dest` and ends it (a blob download). */
  async copyTo(digest: Digest, offset: number, length: number, dest: Writable): Promise<void> {
    if (this.driver.copyTo !== undefined) {
      await this.driver.copyTo(paths.blobData(digest), offset, length, dest);
      return;
    }
    await pipeline(await this.driver.reader(paths.blobData(digest), offset, length), dest);
  }

  /** The content's file, open for reading, when the driver is local; null if not (or gone meanwhile). */
  async openFile(digest: Digest): Promise<FileHandle | null> {
    if (this.driver.openFile === undefined) return null;
    try {
      return await this.driver.openFile(paths.blobData(digest));
    } catch (err) {
      if (isPathNotFound(err)) return null;
      throw err;
    }
  }

  /** Reads a small blob whole (manifests, configs). */
  async readSmall(digest: Digest): Promise<Buffer | null> {
    return getContentOrNull(this.driver, paths.blobData(digest));
  }

  /** Stores small, already verified content (a manifest) atomically. */
  async putSmall(digest: Digest, content: Buffer): Promise<void> {
    await this.driver.putContent(paths.blobData(digest), content);
  }

  /** Moves verified upload data into place: the single atomic step that creates the content. */
  async commitFrom(sourcePath: string, digest: Digest): Promise<void> {
    await this.driver.move(sourcePath, paths.blobData(digest));
  }

  /** Makes the blob visible in a repository (or refreshes the link's time, which gc's grace period reads). */
  async link(name: RepositoryName, digest: Digest): Promise<void> {
    await this.driver.putContent(paths.layerLink(name, digest), digest);
  }

  async unlink(name: RepositoryName, digest: Digest): Promise<boolean> {
    if (!(await this.isLinked(name, digest))) return false;
    return deleteIfExists(this.driver, paths.layerDir(name, digest));
  }

  /** Removes content (garbage collection only). */
  async deleteContent(digest: Digest): Promise<boolean> {
    return deleteIfExists(this.driver, paths.blobDir(digest));
  }

  /** Every digest whose content is stored, for garbage collection. */
  async *allContent(): AsyncGenerator<Digest> {
    for (const algorithm of await listOrEmptyDir(this.driver, paths.blobsRoot)) {
      for (const prefix of await listOrEmptyDir(this.driver, `${paths.blobsRoot}/${algorithm}`)) {
        for (const hex of await listOrEmptyDir(this.driver, `${paths.blobsRoot}/${algorithm}/${prefix}`)) {
          const digest = `${algorithm}:${hex}`;
          if (isDigest(digest)) yield digest;
        }
      }
    }
  }
}

async function listOrEmptyDir(driver: StorageDriver, dir: string): Promise<string[]> {
  try {
    return (await driver.list(dir)).sort();
  } catch (err) {
    if (isPathNotFound(err)) return [];
    throw err;
  }
}
