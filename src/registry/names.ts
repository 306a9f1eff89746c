import { type Digest, isDigest } from '../common/digest.js';
import { RegistryError } from './errors.js';

/**
 * The identifiers that reach the storage layer: repository names, tags and digests. Each is checked
 * here, where it enters, against the distribution spec's grammar; anything that passes is a safe path
 * segment (no `..`, no `%`, no uppercase), so storage code can join them into paths without escaping.
 */

// Spec, "Pulling manifests": components of [a-z0-9]+ joined by `.`, `_`, `__` or `-+`, separated by `/`.
const NAME_RE = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const TAG_RE = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** docker/distribution's limit on a whole repository name; clients break past it anyway. */
export const MAX_NAME_LENGTH = 255;

export type RepositoryName = string & { readonly __repository: unique symbol };

export function isRepositoryName(name: string): name is RepositoryName {
  return name.length <= MAX_NAME_LENGTH && NAME_RE.test(name);
}

export function parseRepositoryName(name: string): RepositoryName {
  if (!isRepositoryName(name)) {
    const reason =
      name.length > MAX_NAME_LENGTH ? `longer than ${MAX_NAME_LENGTH} characters` : 'not a valid name';
    throw new RegistryError('NAME_INVALID', `invalid repository name: ${reason}`, { detail: { name } });
  }
  return name;
}

export function isTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

/** A digest from a URL or query; malformed or unsupported algorithms are DIGEST_INVALID (400). */
export function parseDigestParam(value: string): Digest {
  if (!isDigest(value))
    throw new RegistryError('DIGEST_INVALID', 'invalid or unsupported digest', { detail: { digest: value } });
  return value;
}

/** `<tag-or-digest>` of a manifest URL: a digest when it has an algorithm prefix, else a tag. */
export type ManifestReference = { kind: 'digest'; digest: Digest } | { kind: 'tag'; tag: string };

/**
 * Parses the reference of a manifest request. For reads an unparseable tag is simply unknown (404),
 * as the spec's conformance suite expects for `.INVALID_MANIFEST_NAME`; for writes it is invalid.
 */
export function parseManifestReference(reference: string, forWrite: boolean): ManifestReference {
  if (reference.includes(':')) return { kind: 'digest', digest: parseDigestParam(reference) };
  if (!isTag(reference)) {
    if (forWrite) throw new RegistryError('MANIFEST_INVALID', 'invalid tag', { detail: { tag: reference } });
    throw new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { tag: reference } });
  }
  return { kind: 'tag', tag: reference };
}
