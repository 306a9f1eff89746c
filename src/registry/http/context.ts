import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../auth/authorizer.js';
import type { ResourceAccess } from '../auth/scope.js';
import { RegistryError } from '../errors.js';
import type { RepositoryName } from '../names.js';
import type { Registry } from '../registry.js';

/** Everything a route handler gets: the request, the parsed URL, who is asking, and the registry. */
export interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  query: URLSearchParams;
  /** Named groups of the route's pattern (`name`, `reference`, `digest`, `uuid`). */
  params: Record<string, string>;
  /** The validated repository name, for routes that have one. */
  name: RepositoryName;
  identity: Identity;
  registry: Registry;
  /** Token endpoint URL for challenges, from the Host the client used. */
  realm: string;
}

export type Handler = (ctx: RequestContext) => Promise<void>;

export interface Route {
  pattern: RegExp;
  handlers: Partial<Record<string, Handler>>;
  /** The grants a request needs (`repository:<name>:pull`, …); empty for the base endpoint. */
  access(ctx: RequestContext): ResourceAccess[];
  /**
   * In proxy mode, the handlers that replace `handlers`; a method of `handlers` missing here is a
   * write, which a cache refuses. Absent: the route is served the same in both modes.
   */
  proxyHandlers?: Partial<Record<string, Handler>>;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = 'application/json',
): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { ...headers, 'Content-Type': contentType, 'Content-Length': data.length });
  res.end(res.req.method === 'HEAD' ? undefined : data);
}

/** An idle connection (or a body transfer with nothing moving) is closed after this long. */
export const SOCKET_IDLE_MS = 10 * 60_000;

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'Content-Length': 0 });
  res.end();
}

/** Whether the request carries a body (a length above zero, or chunked transfer encoding). */
export function hasBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = Number(req.headers['content-length'] ?? '0');
  return Number.isFinite(length) && length > 0;
}

export function contentLength(req: IncomingMessage): number | undefined {
  const value = req.headers['content-length'];
  if (value === undefined) return undefined;
  const n = Number(value);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** Reads a small body whole, refusing (413) past `maxBytes` without buffering the excess. */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = contentLength(req);
  if (declared !== undefined && declared > maxBytes) throw tooLarge(maxBytes);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    const buf = chunk as Buffer;
    total += buf.length;
    if (total > maxBytes) throw tooLarge(maxBytes);
    chunks.push(buf);
  }
  return Buffer.concat(chunks, total);
}

function tooLarge(maxBytes: number): RegistryError {
  return new RegistryError('MANIFEST_INVALID', `manifest larger than ${maxBytes} bytes`, {
    status: 413,
    detail: { maxBytes },
  });
}

/** The `n`/`last` pagination of tag and catalog listings, with the `Link` to the next page. */
export function paginate(
  items: readonly string[],
  query: URLSearchParams,
  basePath: string,
): { page: string[]; link?: string } {
  const last = query.get('last');
  let rest = last === null ? [...items] : items.filter((i) => i > last);
  const nText = query.get('n');
  if (nText === null || nText === '') return { page: rest };
  const n = Number(nText);
  if (!Number.isInteger(n) || n < 0) {
    throw new RegistryError('UNSUPPORTED', 'invalid page size n', { status: 400, detail: { n: nText } });
  }
  const hasMore = rest.length > n;
  rest = rest.slice(0, n);
  const lastItem = rest.at(-1);
  if (!hasMore || n === 0 || lastItem === undefined) return { page: rest };
  const next = new URLSearchParams({ n: String(n), last: lastItem });
  return { page: rest, link: `<${basePath}?${next.toString()}>; rel="next"` };
}
