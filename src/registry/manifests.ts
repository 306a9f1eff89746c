import { createHash } from 'node:crypto';
import { type Digest, digestAlgorithm, isDigest } from '../common/digest.js';
import type { BlobStore } from './blobs.js';
import { type ErrorEntry, RegistryError } from './errors.js';
import { KeyedLock } from './locks.js';
import { type Descriptor, detectMediaType, isManifestMediaType, parseManifest } from './manifest-format.js';
import { isTag, type ManifestReference, type RepositoryName } from './names.js';
import { DIGEST_ALGORITHMS, paths } from './paths.js';
import type { ReferrersStore } from './referrers.js';
import { deleteIfExists, getContentOrNull, listOrEmpty, type StorageDriver } from './storage/driver.js';
import type { TagStore } from './tags.js';

/** The spec asks registries to accept manifests of at least 4 MiB; larger ones are refused with 413. */
export const DEFAULT_MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

export interface StoredManifest {
  digest: Digest;
  mediaType: string;
  content: Buffer;
}

export interface PutManifestResult {
  digest: Digest;
  subject?: Digest;
  tags: string[];
}

/**
 * Manifests of a repository: the exact pushed bytes stored as a blob, a revision link making them part
 * of the repository, tags pointing at revisions, and referrer entries for manifests with a `subject`.
 *
 * A push validates the manifest, checks that every blob and child manifest it names is in the
 * repository (MANIFEST_BLOB_UNKNOWN otherwise), writes content → revision → tags → referrers, and checks
 * the references once more after the revision exists: garbage collection hides content before its last
 * look for new revisions, so one of the two always sees the other and a manifest never survives with
 * content gc removed underneath it.
 */
export class ManifestStore {
  private readonly locks = new KeyedLock();
  /** Stored manifests never change, so their media type (parsed from up to 4 MiB of JSON) is cached. */
  private readonly mediaTypes = new Map<Digest, string>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: BlobStore,
    private readonly tags: TagStore,
    private readonly referrers: ReferrersStore,
  ) {}

  async resolve(name: RepositoryName, reference: ManifestReference): Promise<Digest> {
    if (reference.kind === 'digest') return reference.digest;
    const digest = await this.tags.resolve(name, reference.tag);
    if (digest === null) throw unknownManifest(reference.tag);
    return digest;
  }

  async hasRevision(name: RepositoryName, digest: Digest): Promise<boolean> {
    const link = await getContentOrNull(this.driver, paths.revisionLink(name, digest));
    return link !== null && link.toString('utf8').trim() === digest;
  }

  async get(name: RepositoryName, reference: ManifestReference): Promise<StoredManifest> {
    const digest = await this.resolve(name, reference);
    const shown = reference.kind === 'tag' ? reference.tag : digest;
    if (!(await this.hasRevision(name, digest))) throw unknownManifest(shown);
    const content = await this.blobs.readSmall(digest);
    if (content === null) throw unknownManifest(shown);
    return { digest, mediaType: this.mediaTypeOf(digest, content), content };
  }

  async put(
    name: RepositoryName,
    reference: ManifestReference,
    content: Buffer,
    contentType: string | undefined,
    extraTags: readonly string[] = [],
  ): Promise<PutManifestResult> {
    const algorithm = reference.kind === 'digest' ? digestAlgorithm(reference.digest) : 'sha256';
    const digest = `${algorithm}:${createHash(algorithm).update(content).digest('hex')}` as Digest;
    if (reference.kind === 'digest' && reference.digest !== digest) {
      throw new RegistryError('DIGEST_INVALID', undefined, {
        detail: { expected: reference.digest, actual: digest },
      });
    }
    for (const tag of extraTags) {
      if (!isTag(tag)) throw new RegistryError('MANIFEST_INVALID', 'invalid tag', { detail: { tag } });
    }
    const parsed = parseManifest(content, contentType);
    await this.checkReferences(name, [...parsed.blobs, ...parsed.manifests]);
    const tags = [...(reference.kind === 'tag' ? [reference.tag] : []), ...extraTags];

    return this.locks.run(`${name}@${digest}`, async () => {
      const existed = await this.hasRevision(name, digest);
      const stored = await this.blobs.statContent(digest);
      if (stored === null || stored.size !== content.length) await this.blobs.putSmall(digest, content);
      // Rewritten even when present: its time tells gc this revision is fresh.
      await this.driver.putContent(paths.revisionLink(name, digest), digest);
      try {
        await this.checkReferences(name, [...parsed.blobs, ...parsed.manifests]);
        if ((await this.blobs.statContent(digest)) === null) throw unknownManifest(digest);
      } catch (err) {
        if (!existed) await deleteIfExists(this.driver, paths.revisionDir(name, digest));
        throw err;
      }
      for (const tag of tags) await this.tags.set(name, tag, digest);
      // `gc --delete-untagged` may have dropped the revision while it was untagged; a tag revives it.
      if (tags.length > 0 && !(await this.hasRevision(name, digest))) {
        await this.driver.putContent(paths.revisionLink(name, digest), digest);
      }
      if (parsed.subject) await this.referrers.add(name, parsed.subject.digest, digest);
      this.mediaTypes.set(digest, parsed.mediaType);
      return { digest, subject: parsed.subject?.digest, tags };
    });
  }

  /**
   * Stores a manifest a pull-through cache fetched from its upstream (proxy mode). The bytes must
   * match `digest` and be a valid manifest, but its blobs and child manifests need not be here: the
   * cache fetches each only when a client asks for it. The cache sets tags itself, once this resolved.
   */
  async putFromUpstream(
    name: RepositoryName,
    digest: Digest,
    content: Buffer,
    contentType: string | undefined,
  ): Promise<StoredManifest> {
    const algorithm = digestAlgorithm(digest);
    const actual = `${algorithm}:${createHash(algorithm).update(content).digest('hex')}`;
    if (actual !== digest) {
      throw new RegistryError('DIGEST_INVALID', undefined, { detail: { expected: digest, actual } });
    }
    const parsed = parseManifest(content, contentType);
    return this.locks.run(`${name}@${digest}`, async () => {
      const stored = await this.blobs.statContent(digest);
      if (stored === null || stored.size !== content.length) await this.blobs.putSmall(digest, content);
      await this.driver.putContent(paths.revisionLink(name, digest), digest);
      // gc may have hidden the content just before the revision appeared (see put): write it again.
      if ((await this.blobs.statContent(digest)) === null) await this.blobs.putSmall(digest, content);
      if (parsed.subject) await this.referrers.add(name, parsed.subject.digest, digest);
      this.mediaTypes.set(digest, parsed.mediaType);
      return { digest, mediaType: parsed.mediaType, content };
    });
  }

  /** Deletes a manifest revision, every tag pointing at it and its referrer entry. */
  async delete(name: RepositoryName, digest: Digest): Promise<void> {
    await this.locks.run(`${name}@${digest}`, async () => {
      if (!(await this.hasRevision(name, digest))) throw unknownManifest(digest);
      const content = await this.blobs.readSmall(digest);
      for (const tag of await this.tags.tagsOf(name, digest)) await this.tags.delete(name, tag);
      await deleteIfExists(this.driver, paths.revisionDir(name, digest));
      if (content !== null) {
        const subject = subjectOf(content);
        if (subject !== undefined) await this.referrers.remove(name, subject, digest);
      }
    });
  }

  /** Every manifest digest the repository holds, for garbage collection. */
  async revisions(name: RepositoryName): Promise<Digest[]> {
    const out: Digest[] = [];
    for (const algorithm of DIGEST_ALGORITHMS) {
      for (const hex of await listOrEmpty(this.driver, `${paths.revisionsRoot(name)}/${algorithm}`)) {
        const digest = `${algorithm}:${hex}`;
        if (isDigest(digest)) out.push(digest);
      }
    }
    return out;
  }

  mediaTypeOf(digest: Digest, content: Buffer): string {
    let mediaType = this.mediaTypes.get(digest);
    if (mediaType === undefined) {
      mediaType = detectMediaType(content);
      if (this.mediaTypes.size >= 10_000) this.mediaTypes.clear();
      this.mediaTypes.set(digest, mediaType);
    }
    return mediaType;
  }

  /**
   * Every descriptor must name something the repository holds with the size it says: child manifests
   * as revisions, everything else as blobs. Descriptors with `urls` (non-distributable layers) live
   * elsewhere and are not checked.
   */
  private async checkReferences(name: RepositoryName, descriptors: readonly Descriptor[]): Promise<void> {
    const missing: ErrorEntry[] = [];
    const seen = new Set<string>();
    for (const d of descriptors) {
      if (d.urls !== undefined || seen.has(d.digest)) continue;
      seen.add(d.digest);
      const size = await this.sizeInRepository(name, d);
      if (size === null) {
        missing.push({
          code: 'MANIFEST_BLOB_UNKNOWN',
          message: 'blob unknown to registry',
          detail: { digest: d.digest },
        });
      } else if (size !== d.size) {
        throw new RegistryError('MANIFEST_INVALID', 'descriptor size does not match the stored content', {
          detail: { digest: d.digest, declared: d.size, actual: size },
        });
      }
    }
    const [first, ...more] = missing;
    if (first !== undefined) {
      throw new RegistryError('MANIFEST_BLOB_UNKNOWN', first.message, { detail: first.detail, more });
    }
  }

  private async sizeInRepository(name: RepositoryName, d: Descriptor): Promise<number | null> {
    if (isManifestMediaType(d.mediaType)) return this.revisionSize(name, d.digest);
    return (await this.blobs.statInRepository(name, d.digest)) ?? (await this.revisionSize(name, d.digest));
  }

  private async revisionSize(name: RepositoryName, digest: Digest): Promise<number | null> {
    if (!(await this.hasRevision(name, digest))) return null;
    return (await this.blobs.statContent(digest))?.size ?? null;
  }
}

function unknownManifest(reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { reference } });
}

function subjectOf(content: Buffer): Digest | undefined {
  try {
    const json: unknown = JSON.parse(content.toString('utf8'));
    if (typeof json !== 'object' || json === null) return undefined;
    const subject = (json as { subject?: { digest?: unknown } }).subject;
    const digest = subject?.digest;
    return typeof digest === 'string' && isDigest(digest) ? digest : undefined;
  } catch {
    return undefined;
  }
}
