import { RegistryError } from '../errors.js';
import { parseDigestParam, parseManifestReference } from '../names.js';
import type { PullThroughCache } from '../proxy/cache.js';
import { blobHeaders, serveStoredBlob } from './blobs.js';
import { type RequestContext, sendJson } from './context.js';
import { listTags } from './discovery.js';
import { sendManifest } from './manifests.js';

/**
 * The read routes of proxy mode, served through the pull-through cache (see proxy/cache.ts); the
 * write routes answer 405 there (server.ts).
 */

function cacheOf(ctx: RequestContext): PullThroughCache {
  const cache = ctx.registry.proxy;
  if (cache === null) throw new Error('the registry is not in proxy mode');
  return cache;
}

/** GET and HEAD /v2/<name>/manifests/<tag-or-digest>: from the cache, or fetched into it. */
export async function getManifestThroughCache(ctx: RequestContext): Promise<void> {
  const reference = parseManifestReference(ctx.params.reference ?? '', false);
  sendManifest(ctx, await cacheOf(ctx).getManifest(ctx.name, reference));
}

/**
 * GET and HEAD /v2/<name>/blobs/<digest>. A cached blob is served as in a plain registry. A HEAD of
 * one not cached answers the upstream's size and fetches nothing; a GET streams it from the upstream
 * into the cache and to the client at once. A Range of a blob not cached yet is served once the whole
 * blob is in the cache: clients ask for ranges to resume, and the cache should end up with the blob.
 */
export async function getBlobThroughCache(ctx: RequestContext): Promise<void> {
  const { req, res, name } = ctx;
  const cache = cacheOf(ctx);
  const digest = parseDigestParam(ctx.params.digest ?? '');
  const cachedSize = await cache.cachedBlobSize(name, digest);
  if (cachedSize !== null) {
    await serveStoredBlob(ctx, digest, cachedSize);
    return;
  }
  const headers = { ...blobHeaders(digest), 'Content-Type': 'application/octet-stream' };
  if (req.method === 'HEAD') {
    res.writeHead(200, { ...headers, 'Content-Length': await cache.upstreamBlobSize(name, digest) });
    res.end();
    return;
  }
  if (req.headers.range !== undefined) {
    await cache.fetchBlob(name, digest, null);
    const size = await cache.cachedBlobSize(name, digest);
    if (size === null) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
    await serveStoredBlob(ctx, digest, size);
    return;
  }
  await cache.fetchBlob(name, digest, {
    stream: res,
    start: (size) => res.writeHead(200, size === null ? headers : { ...headers, 'Content-Length': size }),
  });
}

/** GET /v2/<name>/tags/list: the upstream's list, or the cache's while the upstream is unavailable. */
export async function listTagsThroughCache(ctx: RequestContext): Promise<void> {
  const page = await cacheOf(ctx).upstreamTags(ctx.name, ctx.query);
  if (page === null) {
    await listTags(ctx);
    return;
  }
  const headers: Record<string, string> = page.link === undefined ? {} : { Link: page.link };
  sendJson(ctx.res, 200, { name: ctx.name, tags: page.tags }, headers);
}
