import type * as http from 'node:http';
import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { statusLine } from '../common/status-line.js';
import { ApiError, CliError, DaemonUnreachableError, isNodeError } from './errors.js';

/**
 * The Engine API client of the `strata` command (unix socket or TCP): streamed requests over
 * node:http (`request`), whole-body requests (`json`, `call`, `ping`), and the hijacked connection
 * used by attach and exec (an HTTP request upgraded to a raw bidirectional byte stream,
 * `101 UPGRADED`).
 *
 * Whole-body requests are one HTTP/1.1 exchange on a plain socket (`Connection: close`): the
 * commands that only make those (`ps`, `inspect`, `stop`…) never load node:http, a good part of
 * their start-up. node:http is imported on the first streamed request.
 *
 * Lifecycle: `connectToDaemon` (connect.ts) builds one client per process and pings it; commands
 * then call `request`/`json`/`call`/`hijack`; `close` drops the agent's idle sockets so the process
 * exits when the command is done.
 */

export type DaemonAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

/** `unix:///run/x.sock`, `/run/x.sock`, `tcp://host:2375`, `host:2375`. */
export function parseDaemonHost(spec: string): DaemonAddress {
  if (spec.startsWith('unix://')) {
    const path = spec.slice('unix://'.length);
    if (!path) throw new CliError(`invalid host "${spec}": no socket path`);
    return { kind: 'unix', path };
  }
  if (spec.startsWith('/')) return { kind: 'unix', path: spec };
  const tcp = /^(?:tcp:\/\/|http:\/\/)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(spec);
  if (tcp && (spec.includes('://') || tcp[2])) {
    return { kind: 'tcp', host: tcp[1].replace(/^\[|\]$/g, ''), port: Number(tcp[2] ?? 2375) };
  }
  throw new CliError(`invalid host "${spec}": use unix:///path/to.sock or tcp://host:port`);
}

export function describeAddress(addr: DaemonAddress): string {
  return addr.kind === 'unix'
    ? `unix://${addr.path}`
    : `tcp://${addr.host.includes(':') ? `[${addr.host}]` : addr.host}:${addr.port}`;
}

export type QueryValue = string | number | boolean | undefined | null | readonly string[];
export type Query = Record<string, QueryValue>;

export interface RequestOptions {
  query?: Query;
  /** JSON request body. */
  json?: unknown;
  /** Raw request body (a stream is sent chunked). */
  body?: Readable | Buffer;
  contentType?: string;
  headers?: Record<string, string>;
  /** false for `/_ping`, which the docker CLI sends without a version prefix. */
  versioned?: boolean;
}

/** Escapes a name for a URL path, keeping `/` and `:` as the docker CLI does (`/images/host:5000/bb/push`). */
export function escapePath(segment: string): string {
  return segment.replace(/[^A-Za-z0-9._~:@/+=-]/g, (c) => encodeURIComponent(c));
}

/** `true` → `1` (as the docker CLI sends), `false`/undefined omitted, arrays repeated. */
export function encodeQuery(query: Query | undefined): string {
  if (!query) return '';
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === false) continue;
    if (value === true) params.append(key, '1');
    else if (Array.isArray(value)) for (const v of value) params.append(key, v);
    else params.append(key, String(value));
  }
  const s = params.toString();
  return s ? `?${s}` : '';
}

const USER_AGENT = 'Strata-Client/0.1.0 (linux)';
const CONNECT_ERRORS = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'EACCES',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ETIMEDOUT',
]);

export interface PingResult {
  apiVersion?: string;
  osType?: string;
  /** Strata extensions the daemon offers (`Strata-Features`); empty for other daemons. */
  features: string[];
}

export class EngineClient {
  readonly address: DaemonAddress;
  apiVersion = '1.41';
  /** Strata extensions of the daemon, as its ping announced them. */
  features: string[] = [];
  private agent: http.Agent | null = null;

  constructor(address: DaemonAddress) {
    this.address = address;
  }

  get hostDescription(): string {
    return describeAddress(this.address);
  }

  path(path: string, query?: Query, versioned = true): string {
    return `${versioned ? `/v${this.apiVersion}` : ''}${path}${encodeQuery(query)}`;
  }

  /** Sends a request; resolves with the response once its headers arrive (status < 400). */
  async request(method: string, path: string, opts: RequestOptions = {}): Promise<http.IncomingMessage> {
    const http = await import('node:http');
    this.agent ??= new http.Agent({ keepAlive: true });
    const agent = this.agent;
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { 'User-Agent': USER_AGENT, ...opts.headers };
      let payload: Buffer | undefined;
      if (opts.json !== undefined) {
        payload = Buffer.from(JSON.stringify(opts.json));
        headers['Content-Type'] = 'application/json';
      } else if (Buffer.isBuffer(opts.body)) {
        payload = opts.body;
      }
      if (opts.contentType) headers['Content-Type'] = opts.contentType;
      if (payload) headers['Content-Length'] = payload.length;
      else if (!opts.body && method !== 'GET' && method !== 'HEAD') headers['Content-Length'] = 0;

      const target =
        this.address.kind === 'unix'
          ? { socketPath: this.address.path, headers: { Host: 'localhost', ...headers } }
          : { host: this.address.host, port: this.address.port, headers };
      const req = http.request({
        ...target,
        method,
        path: this.path(path, opts.query, opts.versioned ?? true),
        agent,
      });
      req.on('error', (err) => reject(this.translateError(err)));
      req.on('response', (res) => {
        const status = res.statusCode ?? 0;
        if (status < 400) {
          resolve(res);
          return;
        }
        readBody(res).then(
          (body) => reject(new ApiError(status, errorMessageFromBody(status, res, body))),
          (err: unknown) => reject(err),
        );
      });
      if (opts.body && !Buffer.isBuffer(opts.body)) {
        const source = opts.body;
        source.on('error', (err) => req.destroy(err));
        source.pipe(req);
      } else {
        req.end(payload);
      }
    });
  }

  /** A request whose JSON response body is returned. */
  async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const { body } = await this.exchange(method, path, opts);
    if (body.length === 0) return undefined as T;
    try {
      return JSON.parse(body.toString('utf8')) as T;
    } catch {
      throw new CliError(`invalid JSON in the daemon's answer to ${method} ${path}`);
    }
  }

  /** A request whose body is ignored; resolves with the status (e.g. 304 for a no-op stop). */
  async call(method: string, path: string, opts: RequestOptions = {}): Promise<number> {
    return (await this.exchange(method, path, opts)).status;
  }

  async ping(): Promise<PingResult> {
    const { headers } = await this.exchange('HEAD', '/_ping', { versioned: false });
    const features = (headers.get('strata-features') ?? '')
      .split(',')
      .map((f) => f.trim())
      .filter(Boolean);
    return { apiVersion: headers.get('api-version'), osType: headers.get('ostype'), features };
  }

  /**
   * One request whose answer is read whole, on its own connection (`Connection: close`). A streamed
   * request body goes through `request` instead. Throws ApiError for a status ≥ 400.
   */
  private async exchange(
    method: string,
    path: string,
    opts: RequestOptions,
  ): Promise<{ status: number; headers: Map<string, string>; body: Buffer }> {
    if (opts.body && !Buffer.isBuffer(opts.body)) {
      const res = await this.request(method, path, opts);
      const body = await readBody(res);
      const headers = new Map<string, string>();
      for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers.set(k, String(v));
      return { status: res.statusCode ?? 0, headers, body };
    }
    let payload: Buffer | undefined;
    let contentType = opts.contentType;
    if (opts.json !== undefined) {
      payload = Buffer.from(JSON.stringify(opts.json));
      contentType ??= 'application/json';
    } else if (opts.body) {
      payload = opts.body;
    }
    const head = [
      `${method} ${this.path(path, opts.query, opts.versioned ?? true)} HTTP/1.1`,
      `Host: ${this.hostHeader()}`,
      `User-Agent: ${USER_AGENT}`,
      ...Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}`),
      ...(contentType ? [`Content-Type: ${contentType}`] : []),
      ...(payload || (method !== 'GET' && method !== 'HEAD')
        ? [`Content-Length: ${payload?.length ?? 0}`]
        : []),
      'Connection: close',
      '',
      '',
    ].join('\r\n');
    const socket = await this.connect();
    try {
      socket.write(
        payload ? Buffer.concat([Buffer.from(head, 'latin1'), payload]) : Buffer.from(head, 'latin1'),
      );
      const response = await readResponseHead(socket);
      const bodyless =
        method === 'HEAD' || response.status === 204 || response.status === 304 || response.status < 200;
      const body = bodyless ? Buffer.alloc(0) : await readRawBody(socket, response.headers, response.rest);
      if (response.status >= 400) {
        const type = response.headers.get('content-type') ?? '';
        throw new ApiError(response.status, messageFromText(response.status, type, body));
      }
      return { status: response.status, headers: response.headers, body };
    } catch (err) {
      throw err instanceof Error && !(err instanceof CliError) ? this.translateError(err) : err;
    } finally {
      socket.destroy();
    }
  }

  private hostHeader(): string {
    if (this.address.kind === 'unix') return 'localhost';
    const { host, port } = this.address;
    return `${host.includes(':') ? `[${host}]` : host}:${port}`;
  }

  private async connect(): Promise<net.Socket> {
    const socket =
      this.address.kind === 'unix'
        ? net.connect(this.address.path)
        : net.connect(this.address.port, this.address.host);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', (err) => reject(this.translateError(err)));
    });
    return socket;
  }

  /**
   * Opens a hijacked connection: sends the request with `Connection: Upgrade`/`Upgrade: tcp` on a
   * fresh socket and expects `101`. The returned socket carries the raw stream in both directions
   * (bytes the server sent after its headers are already queued on it); it is paused, so read it
   * with an async iterator, `pipe` or `resume()`.
   */
  async hijack(
    method: string,
    path: string,
    opts: { query?: Query; json?: unknown } = {},
  ): Promise<net.Socket> {
    const socket = await this.connect();
    socket.setNoDelay(true);
    const body = opts.json === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(opts.json));
    const head = [
      `${method} ${this.path(path, opts.query)} HTTP/1.1`,
      `Host: ${this.hostHeader()}`,
      `User-Agent: ${USER_AGENT}`,
      'Connection: Upgrade',
      'Upgrade: tcp',
      `Content-Type: ${opts.json === undefined ? 'text/plain' : 'application/json'}`,
      `Content-Length: ${body.length}`,
      '',
      '',
    ].join('\r\n');
    socket.write(Buffer.concat([Buffer.from(head, 'latin1'), body]));
    const response = await readResponseHead(socket);
    if (response.status === 101) {
      if (response.rest.length > 0) socket.unshift(response.rest);
      return socket;
    }
    const errBody = await readRawBody(socket, response.headers, response.rest);
    socket.destroy();
    if (response.status >= 400) {
      const contentType = response.headers.get('content-type') ?? '';
      throw new ApiError(response.status, messageFromText(response.status, contentType, errBody));
    }
    throw new CliError(`unable to upgrade to tcp, received ${response.status}`);
  }

  close(): void {
    this.agent?.destroy();
  }

  private translateError(err: Error): Error {
    if (isNodeError(err) && err.code && CONNECT_ERRORS.has(err.code)) {
      const detail = err.code === 'EACCES' ? 'permission denied' : undefined;
      const wrapped = new DaemonUnreachableError(this.hostDescription, detail);
      wrapped.cause = err;
      return wrapped;
    }
    return err;
  }
}

export function readBody(res: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => resolve(Buffer.concat(chunks)));
    res.on('error', reject);
    // A hijacked socket comes back explicitly paused; a 'data' listener alone would not start it.
    res.resume();
  });
}

function errorMessageFromBody(status: number, res: http.IncomingMessage, body: Buffer): string {
  return messageFromText(status, String(res.headers['content-type'] ?? ''), body);
}

function messageFromText(status: number, contentType: string, body: Buffer): string {
  const text = body.toString('utf8').trim();
  if (contentType.startsWith('application/json') || text.startsWith('{')) {
    try {
      const parsed = JSON.parse(text) as { message?: unknown };
      if (typeof parsed.message === 'string') return parsed.message;
    } catch {
      // fall through to the raw text
    }
  }
  return text || statusLine(status);
}

interface ResponseHead {
  status: number;
  headers: Map<string, string>;
  rest: Buffer;
}

function readResponseHead(socket: net.Socket): Promise<ResponseHead> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf('\r\n\r\n');
      if (end < 0) {
        if (buffered.length > 64 * 1024) fail(new CliError('the daemon sent an oversized response header'));
        return;
      }
      cleanup();
      socket.pause();
      const lines = buffered.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0])?.[1] ?? 0);
      const headers = new Map<string, string>();
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
      }
      resolve({ status, headers, rest: buffered.subarray(end + 4) });
    };
    const onEnd = (): void => fail(new CliError('the daemon closed the connection before answering'));
    const fail = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', fail);
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('error', fail);
  });
}

/**
 * Reads an answer's body after its head: Content-Length, chunked, or until the connection closes.
 * An answer cut short (the daemon went away mid-body) is an error, never a silently shorter body.
 */
async function readRawBody(socket: net.Socket, headers: Map<string, string>, first: Buffer): Promise<Buffer> {
  const lengthHeader = headers.get('content-length');
  const length = lengthHeader === undefined ? null : Number(lengthHeader);
  const chunked = /chunked/i.test(headers.get('transfer-encoding') ?? '');
  const chunks: Buffer[] = [first];
  let received = first.length;
  // The end of a chunked body is a `0` line and an empty one; the CRLF in front stands for the end
  // of the previous chunk (or of the head, for an empty body).
  let tail = Buffer.concat([Buffer.from('\r\n'), first]);
  const complete = (): boolean => {
    if (length !== null) return received >= length;
    return chunked && tail.includes('\r\n0\r\n\r\n');
  };
  if (!complete()) {
    socket.resume();
    await new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer): void => {
        chunks.push(c);
        received += c.length;
        tail = Buffer.concat([tail.subarray(-6), c]);
        if (complete()) finish();
      };
      const onError = (err: Error): void => {
        cleanup();
        reject(err);
      };
      const finish = (): void => {
        cleanup();
        resolve();
      };
      const cleanup = (): void => {
        socket.off('data', onData);
        socket.off('end', finish);
        socket.off('close', finish);
        socket.off('error', onError);
      };
      socket.on('data', onData);
      socket.once('end', finish);
      socket.once('close', finish);
      socket.once('error', onError);
    });
  }
  const data = Buffer.concat(chunks);
  const cut = (): CliError => new CliError('the daemon closed the connection in the middle of its answer');
  if (length !== null) {
    if (data.length < length) throw cut();
    return data.subarray(0, length);
  }
  if (!chunked) return data;
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', pos);
    if (lineEnd < 0) throw cut();
    const size = Number.parseInt(data.subarray(pos, lineEnd).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new CliError('the daemon sent a malformed chunked answer');
    if (size === 0) break;
    if (lineEnd + 2 + size > data.length) throw cut();
    parts.push(data.subarray(lineEnd + 2, lineEnd + 2 + size));
    pos = lineEnd + 2 + size + 2;
  }
  return Buffer.concat(parts);
}
