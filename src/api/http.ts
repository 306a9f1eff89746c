import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { z } from 'zod';
import { errorMessage, InvalidArgument, StrataError } from '../common/errors.js';

/**
 * Request/response helpers shared by every route file. Routes parse with these, call one service,
 * and encode with these; errors are thrown as StrataError and mapped to Docker's error JSON by the
 * server in one place.
 */
export interface ApiRequest {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  /** API version of the path prefix (`/v1.41/…`), or the server's own for unversioned paths. */
  version: string;
  /** Set for requests that asked for a hijacked connection (`Connection: Upgrade`, `Upgrade: tcp`). */
  upgrade?: { socket: Duplex; head: Buffer };
  /**
   * Set by the authorization middleware (auth.ts) for a principal that may not view every
   * container: list routes (`ps`, `system df`) keep only the containers it accepts.
   */
  visibleContainer?: (id: string) => boolean;
}

export type RouteHandler = (r: ApiRequest) => Promise<void> | void;
export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD';

/** What a route file receives to register its routes. Paths use `:name` params (find-my-way syntax). */
export interface RouteTable {
  add(method: Method, path: string, handler: RouteHandler): void;
}

export const API_VERSION = '1.41';
export const MIN_API_VERSION = '1.12';

/** Headers dockerd adds to every response (the CLI reads them from /_ping). */
export function commonHeaders(): Record<string, string> {
  return {
    'Api-Version': API_VERSION,
    'Docker-Experimental': 'false',
    Ostype: 'linux',
    Server: 'Strata/0.1.0 (linux)',
  };
}

/** Sends JSON with `Content-Type: application/json` exactly (the Go client compares it literally). */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(`${JSON.stringify(body)}\n`);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': data.length });
  res.end(data);
}

export function sendEmpty(res: ServerResponse, status: number): void {
  res.writeHead(status, { 'Content-Length': 0 });
  res.end();
}

export function sendError(res: ServerResponse, err: unknown): void {
  const status = err instanceof StrataError ? err.status : 500;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (status === 304) {
    sendEmpty(res, 304);
    return;
  }
  sendJson(res, status, { message: errorMessage(err) });
}

/** dockerd's boolean rule: empty, 0, no, false, none (any case) are false; anything else is true. */
export function queryBool(query: URLSearchParams, name: string, fallback = false): boolean {
  const value = query.get(name);
  if (value === null) return fallback;
  return !['', '0', 'no', 'false', 'none'].includes(value.toLowerCase());
}

export function queryInt(query: URLSearchParams, name: string, fallback: number): number {
  const value = query.get(name);
  if (value === null || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgument(`invalid value for ${name}: ${JSON.stringify(value)}`);
  return n;
}

/**
 * Parses `filters` in both shapes clients send: `{"status":{"running":true}}` (CLI) and
 * `{"label":["a=b"]}` (docker-py, dockerode). Keys outside `allowed` → 400 `Invalid filter 'k'`.
 */
export function parseFilters(query: URLSearchParams, allowed: readonly string[]): Map<string, string[]> {
  const raw = query.get('filters');
  const out = new Map<string, string[]>();
  if (raw === null || raw === '') return out;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new InvalidArgument(`invalid filter JSON: ${raw}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgument('invalid filter: expected a JSON object');
  }
  for (const [key, value] of Object.entries(parsed as Record<string, unknown>)) {
    if (!allowed.includes(key)) throw new InvalidArgument(`Invalid filter '${key}'`);
    let values: string[];
    if (Array.isArray(value)) values = value.map(String);
    else if (typeof value === 'object' && value !== null)
      values = Object.entries(value as Record<string, unknown>)
        .filter(([, v]) => v === true)
        .map(([k]) => k);
    else if (typeof value === 'string') values = [value];
    else throw new InvalidArgument(`invalid filter value for '${key}'`);
    out.set(key, values);
  }
  return out;
}

export async function readBody(req: IncomingMessage, limit = 4 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw new InvalidArgument(`request body larger than ${limit} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Reads a JSON body (empty body → `{}`) and validates it with a zod schema. */
export async function readJson<T>(req: IncomingMessage, schema: z.ZodType<T>): Promise<T> {
  const body = await readBody(req);
  let value: unknown = {};
  if (body.length > 0) {
    try {
      value = JSON.parse(body.toString('utf8'));
    } catch (err) {
      throw new InvalidArgument(`invalid JSON body: ${errorMessage(err)}`);
    }
  }
  if (value === null) value = {};
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new InvalidArgument(`invalid request body${where}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}

/**
 * A JSON message stream (pull/push/load/build progress, events, stats): 200, chunked, headers
 * flushed at once, one object per line. Progress streams end lines with `\r\n` as dockerd does.
 */
export class JsonStream {
  private closed = false;
  constructor(
    private readonly res: ServerResponse,
    private readonly lineEnd: '\n' | '\r\n' = '\r\n',
  ) {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    res.on('close', () => {
      this.closed = true;
    });
  }
  get isClosed(): boolean {
    return this.closed;
  }
  write(message: unknown): void {
    if (this.closed) return;
    this.res.write(JSON.stringify(message) + this.lineEnd);
  }
  /** An error after the 200 went out: Docker puts it in the stream. */
  error(err: unknown, code?: number): void {
    const message = errorMessage(err);
    this.write({ errorDetail: code === undefined ? { message } : { code, message }, error: message });
  }
  end(): void {
    if (!this.closed) this.res.end();
  }
}
