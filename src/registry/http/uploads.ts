import type { IncomingMessage } from 'node:http';
import { RegistryError } from '../errors.js';
import { isRepositoryName, parseDigestParam, type RepositoryName } from '../names.js';
import type { ChunkDeclaration, DigestAlgorithm, UploadStatus } from '../uploads.js';
import { contentLength, hasBody, type RequestContext, sendEmpty } from './context.js';
import { requestBody } from './socket-body.js';

export function uploadLocation(name: RepositoryName, id: string): string {
  return `/v2/${name}/blobs/uploads/${id}`;
}

/** `Range: 0-<last byte>` of an upload; docker/distribution answers `0-0` for an empty one too. */
export function uploadRange(size: number): string {
  return `0-${Math.max(0, size - 1)}`;
}

function statusHeaders(status: UploadStatus): Record<string, string> {
  return {
    Location: uploadLocation(status.name, status.id),
    Range: uploadRange(status.size),
    'Docker-Upload-UUID': status.id,
  };
}

function blobCreated(ctx: RequestContext, digest: string): void {
  sendEmpty(ctx.res, 201, { Location: `/v2/${ctx.name}/blobs/${digest}`, 'Docker-Content-Digest': digest });
}

/** `Content-Range: <start>-<end>` (the spec's form; `bytes ` prefixes and `/total` suffixes tolerated). */
export function parseContentRange(header: string | undefined): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(header.trim());
  if (!match)
    throw new RegistryError('BLOB_UPLOAD_INVALID', 'invalid Content-Range', {
      status: 416,
      detail: { header },
    });
  return { start: Number(match[1]), end: Number(match[2]) };
}

function chunkOf(req: IncomingMessage): ChunkDeclaration {
  return { range: parseContentRange(req.headers['content-range']), contentLength: contentLength(req) };
}

function digestAlgorithmParam(value: string | null): DigestAlgorithm {
  if (value === null || value === 'sha256') return 'sha256';
  if (value === 'sha512') return 'sha512';
  throw new RegistryError('DIGEST_INVALID', 'unsupported digest algorithm', { detail: { algorithm: value } });
}

/**
 * POST /v2/<name>/blobs/uploads/: a cross-repository mount (`?mount=&from=`, 201, or 202 with a
 * session when it cannot be mounted), a whole blob in one request (`?digest=`, 201), or a new session (202).
 */
export async function startUpload(ctx: RequestContext): Promise<void> {
  const { req, query, registry, name } = ctx;
  const mount = query.get('mount');
  if (mount !== null) {
    const digest = parseDigestParam(mount);
    if (await mountBlob(ctx, digest, query.get('from'))) {
      req.resume();
      blobCreated(ctx, digest);
      return;
    }
  }
  const digestParam = query.get('digest');
  if (digestParam !== null && mount === null) {
    const digest = parseDigestParam(digestParam);
    await registry.uploads.uploadWhole(name, digest, requestBody(req), chunkOf(req));
    blobCreated(ctx, digest);
    return;
  }
  req.resume();
  const algorithm = digestAlgorithmParam(query.get('digest-algorithm'));
  const status = await registry.uploads.create(name, algorithm);
  sendEmpty(ctx.res, 202, statusHeaders(status));
}

/**
 * Links a blob of another repository into this one when the caller may pull it there. Without `from`
 * any repository may serve, but only on a registry without access control (nothing is secret there).
 */
async function mountBlob(
  ctx: RequestContext,
  digest: ReturnType<typeof parseDigestParam>,
  from: string | null,
): Promise<boolean> {
  const { registry, name, identity } = ctx;
  if (from === null || from === '') {
    if (registry.authorizer !== null) return false;
    if ((await registry.blobs.statContent(digest)) === null) return false;
  } else {
    if (!isRepositoryName(from)) return false;
    if (registry.authorizer !== null && !registry.authorizer.allows(identity, 'repository', from, 'pull'))
      return false;
    if ((await registry.blobs.statInRepository(from, digest)) === null) return false;
  }
  await registry.blobs.link(name, digest);
  return true;
}

/** GET /v2/<name>/blobs/uploads/<uuid>: where the upload stands (204, `Range`). */
export async function uploadStatus(ctx: RequestContext): Promise<void> {
  const status = await ctx.registry.uploads.status(ctx.name, ctx.params.uuid ?? '');
  sendEmpty(ctx.res, 204, statusHeaders(status));
}

/** PATCH /v2/<name>/blobs/uploads/<uuid>: appends a chunk; out of order is 416 with the current `Range`. */
export async function patchUpload(ctx: RequestContext): Promise<void> {
  const id = ctx.params.uuid ?? '';
  try {
    const status = await ctx.registry.uploads.append(ctx.name, id, requestBody(ctx.req), chunkOf(ctx.req));
    sendEmpty(ctx.res, 202, statusHeaders(status));
  } catch (err) {
    throw await withUploadHeaders(ctx, id, err);
  }
}

/** PUT /v2/<name>/blobs/uploads/<uuid>?digest=: the optional last chunk, verification, the blob (201). */
export async function finishUpload(ctx: RequestContext): Promise<void> {
  const id = ctx.params.uuid ?? '';
  const digestParam = ctx.query.get('digest');
  if (digestParam === null) {
    ctx.req.resume();
    throw new RegistryError('DIGEST_INVALID', 'the digest query parameter is required');
  }
  const digest = parseDigestParam(digestParam);
  const body = hasBody(ctx.req) ? requestBody(ctx.req) : null;
  if (body === null) ctx.req.resume();
  try {
    await ctx.registry.uploads.complete(ctx.name, id, digest, body, chunkOf(ctx.req));
  } catch (err) {
    throw await withUploadHeaders(ctx, id, err);
  }
  blobCreated(ctx, digest);
}

/** DELETE /v2/<name>/blobs/uploads/<uuid>: cancels the session (204). */
export async function cancelUpload(ctx: RequestContext): Promise<void> {
  await ctx.registry.uploads.cancel(ctx.name, ctx.params.uuid ?? '');
  sendEmpty(ctx.res, 204);
}

/** A 416 tells the client where to resume: the session's `Location` and current `Range`. */
async function withUploadHeaders(ctx: RequestContext, id: string, err: unknown): Promise<unknown> {
  if (!(err instanceof RegistryError) || err.status !== 416) return err;
  try {
    const status = await ctx.registry.uploads.status(ctx.name, id);
    Object.assign(err.headers, statusHeaders(status));
  } catch {
    // the session is gone; the error stands without headers
  }
  return err;
}
