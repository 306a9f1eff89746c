import { type Digest, digestAlgorithm, digestHex } from '../common/digest.js';
import type { RepositoryName } from './names.js';

/**
 * Where everything lives in storage. The layout is docker/distribution's (`docker/registry/v2/…`), so
 * a directory written by Debian's docker-registry can be served by Strata's and the other way round:
 *
 *   blobs/<alg>/<hex[0:2]>/<hex>/data                          content, shared by all repositories
 *   repositories/<name>/_layers/<alg>/<hex>/link               the repository may serve this blob
 *   repositories/<name>/_manifests/revisions/<alg>/<hex>/link  the repository holds this manifest
 *   repositories/<name>/_manifests/tags/<tag>/current/link     tag → manifest digest
 *   repositories/<name>/_uploads/<id>/{data,startedat}         upload sessions, never served
 *   repositories/<name>/_referrers/<alg>/<hex>/<alg>/<hex>/link subject → manifests naming it (Strata's own)
 *   _gc/<alg>/<hex>                                            content gc has hidden while it re-checks
 *
 * A repository name cannot start a component with `_`, so the `_…` directories never clash with names.
 */
const ROOT = '/docker/registry/v2';

function digestPath(digest: Digest): string {
  return `${digestAlgorithm(digest)}/${digestHex(digest)}`;
}

export const paths = {
  root: ROOT,
  blobsRoot: `${ROOT}/blobs`,
  repositoriesRoot: `${ROOT}/repositories`,

  blobDir(digest: Digest): string {
    const hex = digestHex(digest);
    return `${ROOT}/blobs/${digestAlgorithm(digest)}/${hex.slice(0, 2)}/${hex}`;
  },
  blobData(digest: Digest): string {
    return `${this.blobDir(digest)}/data`;
  },

  quarantineRoot: `${ROOT}/_gc`,
  quarantine(digest: Digest): string {
    return `${ROOT}/_gc/${digestAlgorithm(digest)}/${digestHex(digest)}`;
  },

  repository(name: RepositoryName): string {
    return `${ROOT}/repositories/${name}`;
  },
  layersRoot(name: RepositoryName): string {
    return `${this.repository(name)}/_layers`;
  },
  layerDir(name: RepositoryName, digest: Digest): string {
    return `${this.layersRoot(name)}/${digestPath(digest)}`;
  },
  layerLink(name: RepositoryName, digest: Digest): string {
    return `${this.layerDir(name, digest)}/link`;
  },
  revisionsRoot(name: RepositoryName): string {
    return `${this.repository(name)}/_manifests/revisions`;
  },
  revisionDir(name: RepositoryName, digest: Digest): string {
    return `${this.revisionsRoot(name)}/${digestPath(digest)}`;
  },
  revisionLink(name: RepositoryName, digest: Digest): string {
    return `${this.revisionDir(name, digest)}/link`;
  },
  tagsRoot(name: RepositoryName): string {
    return `${this.repository(name)}/_manifests/tags`;
  },
  tagDir(name: RepositoryName, tag: string): string {
    return `${this.tagsRoot(name)}/${tag}`;
  },
  tagLink(name: RepositoryName, tag: string): string {
    return `${this.tagDir(name, tag)}/current/link`;
  },
  uploadsRoot(name: RepositoryName): string {
    return `${this.repository(name)}/_uploads`;
  },
  uploadDir(name: RepositoryName, id: string): string {
    return `${this.uploadsRoot(name)}/${id}`;
  },
  uploadData(name: RepositoryName, id: string): string {
    return `${this.uploadDir(name, id)}/data`;
  },
  uploadStartedAt(name: RepositoryName, id: string): string {
    return `${this.uploadDir(name, id)}/startedat`;
  },
  referrersRoot(name: RepositoryName): string {
    return `${this.repository(name)}/_referrers`;
  },
  referrersDir(name: RepositoryName, subject: Digest): string {
    return `${this.referrersRoot(name)}/${digestPath(subject)}`;
  },
  referrerDir(name: RepositoryName, subject: Digest, referrer: Digest): string {
    return `${this.referrersDir(name, subject)}/${digestPath(referrer)}`;
  },
  referrerLink(name: RepositoryName, subject: Digest, referrer: Digest): string {
    return `${this.referrerDir(name, subject, referrer)}/link`;
  },
};

/** Algorithms whose digests the registry accepts, in `<alg>/<hex>` directory listings. */
export const DIGEST_ALGORITHMS = ['sha256', 'sha512'] as const;
