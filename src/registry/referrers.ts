import { type Digest, isDigest } from '../common/digest.js';
import type { BlobStore } from './blobs.js';
import { type Descriptor, detectMediaType, parseManifest, referrerDescriptor } from './manifest-format.js';
import type { RepositoryName } from './names.js';
import { DIGEST_ALGORITHMS, paths } from './paths.js';
import { deleteIfExists, getContentOrNull, listOrEmpty, type StorageDriver } from './storage/driver.js';

/**
 * The referrers index (distribution spec 1.1, "Listing Referrers"): for each subject digest, links to the
 * manifests of the repository whose `subject` names it. Written when such a manifest is pushed (the
 * subject itself need not exist), removed when it is deleted. A listing builds each descriptor from the
 * referring manifest itself, so the manifest stays the one source of truth.
 */
export class ReferrersStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
  ) {}

  async add(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void> {
    await this.driver.putContent(paths.referrerLink(name, subject, referrer), referrer);
  }

  async remove(name: RepositoryName, subject: Digest, referrer: Digest): Promise<void> {
    await deleteIfExists(this.driver, paths.referrerDir(name, subject, referrer));
  }

  /** Descriptors of the manifests referring to `subject`, optionally only those of one artifactType. */
  async list(name: RepositoryName, subject: Digest, artifactType?: string): Promise<Descriptor[]> {
    const out: Descriptor[] = [];
    const dir = paths.referrersDir(name, subject);
    for (const algorithm of await listOrEmpty(this.driver, dir)) {
      if (!(DIGEST_ALGORITHMS as readonly string[]).includes(algorithm)) continue;
      for (const hex of (await listOrEmpty(this.driver, `${dir}/${algorithm}`)).sort()) {
        const digest = `${algorithm}:${hex}`;
        if (!isDigest(digest)) continue;
        const descriptor = await this.describe(name, digest);
        if (descriptor === null) continue;
        // An empty filter selects referrers without an artifactType.
        if (artifactType !== undefined && (descriptor.artifactType ?? '') !== artifactType) continue;
        out.push(descriptor);
      }
    }
    return out;
  }

  private async describe(name: RepositoryName, digest: Digest): Promise<Descriptor | null> {
    // A link left behind by a crash between deleting a manifest and its referrer entry is ignored.
    const revision = await getContentOrNull(this.driver, paths.revisionLink(name, digest));
    if (revision === null) return null;
    const content = await this.blobs.readSmall(digest);
    if (content === null) return null;
    try {
      return referrerDescriptor(parseManifest(content, detectMediaType(content)), digest, content.length);
    } catch {
      return null;
    }
  }
}
