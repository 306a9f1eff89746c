import type { Digest } from '../../common/digest.js';
import { RegistryError } from '../errors.js';
import { parseDigestParam } from '../names.js';
import { type RequestContext, SOCKET_IDLE_MS, sendEmpty } from './context.js';
import { sendFileBody, sendFileSocket } from './socket-send.js';

/** A satisfiable byte range, inclusive, or the reason to answer 416. */
export type ByteRange = { start: number; end: number } | 'unsatisfiable';

/**
 * Parses a single-range `Range: bytes=…` header (RFC 9110 §14) against a blob of `size` bytes.
 * Returns null when the header is absent or not a single byte range: the whole blob is served then.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | null {
  if (header === undefined) return null;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) return null;
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') return null;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return 'unsatisfiable';
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** GET and HEAD /v2/<name>/blobs/<digest>: streams the blob, honouring a single Range. */
export async function getBlob(ctx: RequestContext): Promise<void> {
  const digest = parseDigestParam(ctx.params.digest ?? '');
  const size = await ctx.registry.blobs.statInRepository(ctx.name, digest);
  if (size === null) throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
  await serveStoredBlob(ctx, digest, size);
}

/** The headers of every blob download. */
export function blobHeaders(digest: Digest): Record<string, string | number> {
  return {
    'Docker-Content-Digest': digest,
    ETag: `"${digest}"`,
    'Accept-Ranges': 'bytes',
    // Content-addressed: the bytes behind this URL never change.
    'Cache-Control': 'max-age=31536000',
  };
}

/** Answers a GET or HEAD of a blob the store holds (`size` bytes), honouring a single Range. */
export async function serveStoredBlob(ctx: RequestContext, digest: Digest, size: number): Promise<void> {
  const { req, res, registry } = ctx;
  const headers = blobHeaders(digest);
  if (req.headers['if-none-match'] === `"${digest}"`) {
    res.writeHead(304, headers);
    res.end();
    return;
  }
  const range = req.method === 'HEAD' ? null : parseRange(req.headers.range, size);
  if (range === 'unsatisfiable') {
    sendEmpty(res, 416, { 'Content-Range': `bytes */${size}`, 'Docker-Content-Digest': digest });
    return;
  }
  const start = range?.start ?? 0;
  const length = range === null ? size : range.end - range.start + 1;
  headers['Content-Type'] = 'application/octet-stream';
  headers['Content-Length'] = length;
  if (range !== null) headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`;
  if (req.method === 'HEAD') {
    res.writeHead(200, headers);
    res.end();
    return;
  }
  res.writeHead(range === null ? 200 : 206, headers);
  const socketFd = sendFileSocket(res, length);
  if (socketFd !== null) {
    const file = await registry.blobs.openFile(digest);
    if (file !== null) {
      try {
        await sendFileBody(res, socketFd, file.fd, start, length, SOCKET_IDLE_MS);
      } finally {
        await file.close();
      }
      return;
    }
  }
  await registry.blobs.copyTo(digest, start, length, res);
}

/** DELETE /v2/<name>/blobs/<digest>: removes the blob from the repository (gc reclaims the bytes). */
export async function deleteBlob(ctx: RequestContext): Promise<void> {
  if (!ctx.registry.config.deleteEnabled) throw new RegistryError('UNSUPPORTED', 'deletion is disabled');
  const digest = parseDigestParam(ctx.params.digest ?? '');
  if (!(await ctx.registry.blobs.unlink(ctx.name, digest))) {
    throw new RegistryError('BLOB_UNKNOWN', undefined, { detail: { digest } });
  }
  sendEmpty(ctx.res, 202, { 'Docker-Content-Digest': digest });
}
