import { type Digest, sha256 } from '../common/digest.js';
import { InvalidArgument, NotFound } from '../common/errors.js';
import {
  type Descriptor,
  type ImageIndex,
  type ImageManifest,
  imageIndexSchema,
  imageManifestSchema,
  MediaType,
  parseWith,
} from '../images/config.js';
import type { LayerRecord } from '../images/store.js';

/**
 * Manifests on the wire: what a pull accepts (Docker schema 2 manifest and manifest list, OCI
 * manifest and index), how an index entry is chosen for a platform, and the manifest a push writes.
 */
export const MANIFEST_ACCEPT = [
  MediaType.dockerManifest,
  MediaType.dockerManifestList,
  MediaType.ociManifest,
  MediaType.ociIndex,
].join(', ');

export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;

export type ParsedManifest =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }
  | { kind: 'index'; mediaType: string; index: ImageIndex };

const INDEX_TYPES = new Set<string>([MediaType.dockerManifestList, MediaType.ociIndex]);
const MANIFEST_TYPES = new Set<string>([MediaType.dockerManifest, MediaType.ociManifest]);

/** Parses manifest bytes by their Content-Type, falling back to the document's own `mediaType`. */
export function parseManifest(bytes: Buffer, contentType: string | undefined): ParsedManifest {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new InvalidArgument(`invalid manifest: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null)
    throw new InvalidArgument('invalid manifest: not an object');
  const doc = value as {
    schemaVersion?: unknown;
    mediaType?: unknown;
    manifests?: unknown;
    config?: unknown;
  };
  if (doc.schemaVersion === 1) {
    throw new InvalidArgument(
      'unsupported manifest format: Docker image manifest schema 1 is deprecated and not supported by Strata',
    );
  }
  const headerType = (contentType ?? '').split(';')[0]?.trim() ?? '';
  const docType = typeof doc.mediaType === 'string' ? doc.mediaType : '';
  let mediaType = INDEX_TYPES.has(headerType) || MANIFEST_TYPES.has(headerType) ? headerType : docType;
  if (!INDEX_TYPES.has(mediaType) && !MANIFEST_TYPES.has(mediaType)) {
    // application/json or nothing: tell by shape.
    mediaType = Array.isArray(doc.manifests) ? MediaType.ociIndex : MediaType.ociManifest;
  }
  if (INDEX_TYPES.has(mediaType)) {
    return { kind: 'index', mediaType, index: parseWith(imageIndexSchema, value, 'image index') };
  }
  return { kind: 'manifest', mediaType, manifest: parseWith(imageManifestSchema, value, 'image manifest') };
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export function formatPlatform(p: { os?: string; architecture?: string; variant?: string | null }): string {
  return [p.os ?? 'unknown', p.architecture ?? 'unknown', p.variant].filter(Boolean).join('/');
}

/** `linux/amd64`, `linux/arm64/v8` → a platform; empty → null. */
export function parsePlatform(value: string | null | undefined): Platform | null {
  if (!value) return null;
  const [os = '', architecture = '', variant] = value.toLowerCase().split('/');
  if (os === '' || architecture === '') {
    throw new InvalidArgument(`invalid platform ${JSON.stringify(value)}: want os/arch[/variant]`);
  }
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** Go's names: arm64 is aarch64, amd64 is x86_64. */
function normalizeArch(arch: string): string {
  const map: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64' };
  return map[arch] ?? arch;
}

export function platformMatches(
  candidate: { os?: string; architecture?: string; variant?: string | null },
  wanted: Platform,
): boolean {
  if ((candidate.os ?? '').toLowerCase() !== wanted.os) return false;
  if (normalizeArch((candidate.architecture ?? '').toLowerCase()) !== normalizeArch(wanted.architecture)) {
    return false;
  }
  if (wanted.variant && candidate.variant && candidate.variant !== wanted.variant) return false;
  return true;
}

/**
 * The index entry for `wanted`; an index without one is refused naming what it offers:
 * `no matching manifest for linux/amd64 in the manifest list entries (available: linux/arm64/v8)`.
 */
export function chooseManifest(index: ImageIndex, wanted: Platform, reference: string): Descriptor {
  const images = index.manifests.filter(
    (d) => MANIFEST_TYPES.has(d.mediaType) || INDEX_TYPES.has(d.mediaType),
  );
  const matching = images.filter((d) => d.platform && platformMatches(d.platform, wanted));
  // Exact variant first (arm/v7 before arm), then the first listed, as containerd's matcher orders them.
  const best = matching.find((d) => (d.platform?.variant ?? '') === (wanted.variant ?? '')) ?? matching[0];
  if (best) return best;
  const offered = [
    ...new Set(images.filter((d) => d.platform).map((d) => formatPlatform(d.platform ?? {}))),
  ].filter((p) => !p.startsWith('unknown/'));
  throw new NotFound(
    `no matching manifest for ${formatPlatform(wanted)} in the manifest list entries of ${reference}` +
      (offered.length > 0 ? ` (available: ${offered.join(', ')})` : ' (it lists no platforms)'),
  );
}

const OCI_EQUIVALENT: Record<string, string> = {
  [MediaType.dockerLayerGzip]: MediaType.ociLayerGzip,
  [MediaType.dockerLayer]: MediaType.ociLayer,
};

/**
 * The manifest a push writes for a local image: Docker schema 2 when every layer came with a Docker
 * media type (an image pulled as such), OCI otherwise (Docker layer types mapped to their OCI
 * equivalents: same bytes, same digests).
 */
export function buildManifest(
  config: { digest: Digest; size: number },
  layers: readonly Pick<LayerRecord, 'blobDigest' | 'blobSize' | 'mediaType'>[],
): { bytes: Buffer; digest: Digest; mediaType: string } {
  const docker = layers.length > 0 && layers.every((l) => l.mediaType.startsWith('application/vnd.docker.'));
  const mediaType = docker ? MediaType.dockerManifest : MediaType.ociManifest;
  const manifest = {
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: docker ? MediaType.dockerConfig : MediaType.ociConfig,
      digest: config.digest,
      size: config.size,
    },
    layers: layers.map((l) => ({
      mediaType: docker ? l.mediaType : (OCI_EQUIVALENT[l.mediaType] ?? l.mediaType),
      digest: l.blobDigest,
      size: l.blobSize,
    })),
  };
  const bytes = Buffer.from(JSON.stringify(manifest, null, 3));
  return { bytes, digest: sha256(bytes), mediaType };
}
