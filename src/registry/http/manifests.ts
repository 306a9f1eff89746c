import { RegistryError } from '../errors.js';
import { baseMediaType } from '../manifest-format.js';
import type { StoredManifest } from '../manifests.js';
import { parseManifestReference } from '../names.js';
import { type RequestContext, readBody, sendEmpty } from './context.js';

/** GET and HEAD /v2/<name>/manifests/<tag-or-digest>: the exact pushed bytes and their media type. */
export async function getManifest(ctx: RequestContext): Promise<void> {
  const reference = parseManifestReference(ctx.params.reference ?? '', false);
  sendManifest(ctx, await ctx.registry.manifests.get(ctx.name, reference));
}

/** Answers a manifest GET or HEAD (304 when the client's ETag is current). */
export function sendManifest(ctx: RequestContext, manifest: StoredManifest): void {
  const { req, res } = ctx;
  const headers: Record<string, string | number> = {
    'Content-Type': manifest.mediaType,
    'Content-Length': manifest.content.length,
    'Docker-Content-Digest': manifest.digest,
    ETag: `"${manifest.digest}"`,
  };
  if (req.headers['if-none-match'] === `"${manifest.digest}"`) {
    res.writeHead(304, { ETag: headers.ETag, 'Docker-Content-Digest': manifest.digest });
    res.end();
    return;
  }
  res.writeHead(200, headers);
  res.end(req.method === 'HEAD' ? undefined : manifest.content);
}

/**
 * PUT /v2/<name>/manifests/<tag-or-digest>[?tag=…]: validates and stores a manifest (201). Answers
 * `OCI-Subject` when the manifest has a subject (the referrers API took note of it) and `OCI-Tag`
 * for tags given as query parameters.
 */
export async function putManifest(ctx: RequestContext): Promise<void> {
  const { req, registry, name, query } = ctx;
  const reference = parseManifestReference(ctx.params.reference ?? '', true);
  const extraTags = query.getAll('tag');
  if (extraTags.length > 0 && reference.kind !== 'digest') {
    req.resume();
    throw new RegistryError('MANIFEST_INVALID', 'tag parameters need a push by digest');
  }
  const content = await readBody(req, registry.config.manifestMaxBytes);
  const contentType = baseMediaType(req.headers['content-type']);
  const result = await registry.manifests.put(name, reference, content, contentType, extraTags);
  const headers: Record<string, string> = {
    Location: `/v2/${name}/manifests/${result.digest}`,
    'Docker-Content-Digest': result.digest,
  };
  if (result.subject !== undefined) headers['OCI-Subject'] = result.subject;
  if (extraTags.length > 0) headers['OCI-Tag'] = extraTags.join(', ');
  sendEmpty(ctx.res, 201, headers);
}

/** DELETE /v2/<name>/manifests/<tag-or-digest>: a tag alone, or a manifest with every tag on it (202). */
export async function deleteManifest(ctx: RequestContext): Promise<void> {
  const { registry, name } = ctx;
  if (!registry.config.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletion is disabled');
  const reference = parseManifestReference(ctx.params.reference ?? '', false);
  if (reference.kind === 'tag') {
    if (!(await registry.tags.delete(name, reference.tag))) {
      throw new RegistryError('MANIFEST_UNKNOWN', undefined, { detail: { tag: reference.tag } });
    }
  } else {
    await registry.manifests.delete(name, reference.digest);
  }
  sendEmpty(ctx.res, 202);
}
