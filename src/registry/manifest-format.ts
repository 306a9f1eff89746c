import { z } from 'zod';
import { type Digest, isDigest } from '../common/digest.js';
import { RegistryError } from './errors.js';

/**
 * The manifest formats the registry accepts, parsed and validated once as they are pushed: OCI image
 * manifest and index, Docker schema 2 manifest and manifest list. Unknown fields are kept (the registry
 * stores the exact bytes) and ignored; missing or malformed required fields are MANIFEST_INVALID.
 */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

const IMAGE_TYPES: ReadonlySet<string> = new Set([MediaType.ociManifest, MediaType.dockerManifest]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerManifestList]);

export function isManifestMediaType(mediaType: string): boolean {
  return IMAGE_TYPES.has(mediaType) || INDEX_TYPES.has(mediaType);
}

const annotationsSchema = z.record(z.string(), z.string());

const descriptorSchema = z.looseObject({
  mediaType: z.string().min(1),
  digest: z.string().refine(isDigest, 'invalid or unsupported digest'),
  size: z.number().int().nonnegative(),
  urls: z.array(z.string()).nullish(),
  annotations: annotationsSchema.nullish(),
  artifactType: z.string().nullish(),
});

const imageManifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().nullish(),
  config: descriptorSchema,
  // Go clients marshal an empty layer list as null.
  layers: z.array(descriptorSchema).nullish(),
  subject: descriptorSchema.nullish(),
  annotations: annotationsSchema.nullish(),
});

const indexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  artifactType: z.string().nullish(),
  manifests: z.array(descriptorSchema).nullable(),
  subject: descriptorSchema.nullish(),
  annotations: annotationsSchema.nullish(),
});

export interface Descriptor {
  mediaType: string;
  digest: Digest;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  artifactType?: string;
}

export interface ParsedManifest {
  mediaType: string;
  kind: 'image' | 'index';
  /** Config and layers of an image manifest. */
  blobs: Descriptor[];
  /** Children of an index. */
  manifests: Descriptor[];
  subject?: Descriptor;
  artifactType?: string;
  configMediaType?: string;
  annotations?: Record<string, string>;
}

/** The media type without parameters, lowercased; undefined when absent. */
export function baseMediaType(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const base = contentType.split(';')[0]?.trim().toLowerCase();
  return base === '' ? undefined : base;
}

/**
 * Validates a pushed manifest. Its type is its `mediaType` field, else the request's Content-Type,
 * else guessed from its shape; a `mediaType` that contradicts a manifest Content-Type is refused.
 */
export function parseManifest(content: Buffer, contentType: string | undefined): ParsedManifest {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch (err) {
    throw invalid('manifest is not valid JSON', { cause: err });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw invalid('manifest is not a JSON object');
  const fieldType = (json as { mediaType?: unknown }).mediaType;
  if (fieldType !== undefined && typeof fieldType !== 'string') throw invalid('mediaType must be a string');
  const headerType = baseMediaType(contentType);
  const headerIsManifest =
    headerType !== undefined && (isManifestMediaType(headerType) || isSchema1(headerType));
  if (fieldType !== undefined && headerIsManifest && fieldType !== headerType) {
    throw invalid(`mediaType ${fieldType} does not match Content-Type ${headerType}`);
  }
  const mediaType = fieldType ?? (headerIsManifest ? headerType : guessMediaType(json));
  if (isSchema1(mediaType)) throw invalid('Docker schema 1 manifests are not supported');
  if (IMAGE_TYPES.has(mediaType)) return parseImage(json, mediaType);
  if (INDEX_TYPES.has(mediaType)) return parseIndex(json, mediaType);
  throw invalid(`unsupported manifest media type ${mediaType}`);
}

function parseImage(json: unknown, mediaType: string): ParsedManifest {
  const result = imageManifestSchema.safeParse(json);
  if (!result.success) throw invalid('invalid image manifest', { detail: z.flattenError(result.error) });
  const m = result.data;
  if (mediaType === MediaType.dockerManifest && m.mediaType !== MediaType.dockerManifest) {
    throw invalid('Docker schema 2 manifests must carry their mediaType');
  }
  return {
    mediaType,
    kind: 'image',
    blobs: [toDescriptor(m.config), ...(m.layers ?? []).map(toDescriptor)],
    manifests: [],
    subject: m.subject ? toDescriptor(m.subject) : undefined,
    artifactType: m.artifactType ?? undefined,
    configMediaType: m.config.mediaType,
    annotations: m.annotations ?? undefined,
  };
}

function parseIndex(json: unknown, mediaType: string): ParsedManifest {
  const result = indexSchema.safeParse(json);
  if (!result.success) throw invalid('invalid image index', { detail: z.flattenError(result.error) });
  const m = result.data;
  return {
    mediaType,
    kind: 'index',
    blobs: [],
    manifests: (m.manifests ?? []).map(toDescriptor),
    subject: m.subject ? toDescriptor(m.subject) : undefined,
    artifactType: m.artifactType ?? undefined,
    annotations: m.annotations ?? undefined,
  };
}

/** The media type of stored manifest bytes (what GET answers as Content-Type). */
export function detectMediaType(content: Buffer): string {
  try {
    const json: unknown = JSON.parse(content.toString('utf8'));
    if (typeof json === 'object' && json !== null) {
      const fieldType = (json as { mediaType?: unknown }).mediaType;
      if (typeof fieldType === 'string' && fieldType !== '') return fieldType;
      return guessMediaType(json);
    }
  } catch {
    // stored manifests were validated on push; fall through for foreign data
  }
  return MediaType.ociManifest;
}

function guessMediaType(json: object): string {
  if ('manifests' in json) return MediaType.ociIndex;
  if ('signatures' in json || 'fsLayers' in json) return MediaType.dockerSchema1;
  return MediaType.ociManifest;
}

function isSchema1(mediaType: string): boolean {
  return mediaType === MediaType.dockerSchema1 || mediaType === MediaType.dockerSchema1Signed;
}

function toDescriptor(d: z.infer<typeof descriptorSchema>): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest as Digest, size: d.size };
  if (d.urls && d.urls.length > 0) out.urls = d.urls;
  if (d.annotations) out.annotations = d.annotations;
  if (d.artifactType) out.artifactType = d.artifactType;
  return out;
}

function invalid(message: string, options: { detail?: unknown; cause?: unknown } = {}): RegistryError {
  return new RegistryError('MANIFEST_INVALID', message, options);
}

/**
 * The descriptor of a manifest in a referrers list (spec, "Listing Referrers"): `artifactType` from
 * the manifest, else for image manifests the config's media type; annotations copied.
 */
export function referrerDescriptor(parsed: ParsedManifest, digest: Digest, size: number): Descriptor {
  const out: Descriptor = { mediaType: parsed.mediaType, digest, size };
  const artifactType = parsed.artifactType ?? (parsed.kind === 'image' ? parsed.configMediaType : undefined);
  if (artifactType) out.artifactType = artifactType;
  if (parsed.annotations) out.annotations = parsed.annotations;
  return out;
}
