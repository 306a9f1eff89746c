import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as tls from 'node:tls';

/**
 * HTTP(S) to registries: keep-alive connection pools (one per TLS mode), redirects for GET and HEAD
 * (blob downloads are often redirected to a storage service; credentials are not sent to another
 * origin), an idle timeout, and request bodies from buffers or streams.
 */
export interface SendOptions {
  method: string;
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  /** Length of a streamed body; without it the body is sent chunked. */
  bodyLength?: number;
  signal?: AbortSignal;
  /** Skip certificate verification (insecure registries). */
  insecureTls?: boolean;
}

const MAX_REDIRECTS = 10;
const IDLE_TIMEOUT_MS = 120_000;
export const USER_AGENT = 'strata/0.1.0 (linux) docker/20.10-compatible';

/**
 * The certificate authorities registries are verified against: Node's bundled roots, plus the bundle
 * `NODE_EXTRA_CA_CERTS` named when `bin/strata` was started. bin/strata moves that variable aside to
 * `STRATA_EXTRA_CA_CERTS` so that short-lived CLI processes do not parse the bundle at start-up;
 * the daemon adds it here instead, with the same meaning. Undefined means Node's defaults.
 */
export function registryCertificateAuthorities(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const file = env.STRATA_EXTRA_CA_CERTS;
  if (!file) return undefined;
  try {
    return [...tls.rootCertificates, fs.readFileSync(file, 'utf8')];
  } catch (err) {
    // Node itself only warns when NODE_EXTRA_CA_CERTS cannot be read; so does the daemon.
    process.emitWarning(`Ignoring extra certs from \`${file}\`, load failed: ${(err as Error).message}`);
    return undefined;
  }
}

export class RegistryTransport {
  private readonly httpAgent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  private readonly httpsAgent = new https.Agent({
    keepAlive: true,
    maxSockets: 32,
    ca: registryCertificateAuthorities(),
  });
  private readonly insecureHttpsAgent = new https.Agent({
    keepAlive: true,
    maxSockets: 32,
    rejectUnauthorized: false,
  });

  /** Sends one request; resolves with the response (any status), rejects on network errors. */
  async send(url: URL, options: SendOptions): Promise<http.IncomingMessage> {
    let target = url;
    let headers = { ...options.headers };
    for (let hop = 0; ; hop++) {
      const res = await this.sendRetryingStale(target, { ...options, headers });
      const location = res.headers.location;
      const isRedirect = res.statusCode !== undefined && [301, 302, 303, 307, 308].includes(res.statusCode);
      if (!isRedirect || location === undefined || (options.method !== 'GET' && options.method !== 'HEAD')) {
        return res;
      }
      res.resume();
      if (hop >= MAX_REDIRECTS) throw new Error(`stopped after ${MAX_REDIRECTS} redirects`);
      const next = new URL(location, target);
      if (next.origin !== target.origin) {
        headers = Object.fromEntries(
          Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'),
        );
      }
      target = next;
    }
  }

  /**
   * A kept-alive connection the server closed just as it was reused fails at once: such a request
   * is sent again on a new connection (Node's documented pattern), unless its body was a stream.
   */
  private async sendRetryingStale(url: URL, options: SendOptions): Promise<http.IncomingMessage> {
    refuseOffHostInLoopbackMode(url);
    try {
      return await this.sendOnce(url, options);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const stale = (err as { reusedSocket?: boolean }).reusedSocket === true;
      const replayable = options.body === undefined || Buffer.isBuffer(options.body);
      if (!stale || !replayable || (code !== 'ECONNRESET' && code !== 'EPIPE')) throw err;
      return this.sendOnce(url, options);
    }
  }

  private sendOnce(url: URL, options: SendOptions): Promise<http.IncomingMessage> {
    const isHttps = url.protocol === 'https:';
    const agent = isHttps
      ? options.insecureTls
        ? this.insecureHttpsAgent
        : this.httpsAgent
      : this.httpAgent;
    const headers: Record<string, string | number> = { 'User-Agent': USER_AGENT, ...options.headers };
    const body = options.body;
    if (Buffer.isBuffer(body)) headers['Content-Length'] = body.length;
    else if (body !== undefined && options.bodyLength !== undefined)
      headers['Content-Length'] = options.bodyLength;
    else if (body === undefined && options.method !== 'GET' && options.method !== 'HEAD')
      headers['Content-Length'] = 0;
    const mod = isHttps ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request(
        url,
        { method: options.method, headers, agent, signal: options.signal },
        (res) => {
          resolve(res);
        },
      );
      req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no data for ${IDLE_TIMEOUT_MS / 1000}s`)));
      req.on('error', (err: NodeJS.ErrnoException & { reusedSocket?: boolean }) => {
        err.reusedSocket = req.reusedSocket;
        reject(err);
      });
      if (body === undefined || Buffer.isBuffer(body)) {
        req.end(body);
      } else {
        pipeline(body, req).catch((err: unknown) => {
          req.destroy(err instanceof Error ? err : new Error(String(err)));
        });
      }
    });
  }

  close(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
    this.insecureHttpsAgent.destroy();
  }
}

/** Reads a response body up to `limit` bytes (error bodies, manifests, tokens). */
export async function readResponse(res: http.IncomingMessage, limit = 4 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new Error(`response body larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/**
 * With STRATA_LOOPBACK_ONLY=1 (set by the test harness and the benchmarks) the daemon never resolves or
 * contacts a registry outside this machine: a pull from Docker Hub then fails at once, as it would
 * offline, without a DNS query leaving the host.
 */
function refuseOffHostInLoopbackMode(url: URL): void {
  if (process.env.STRATA_LOOPBACK_ONLY !== '1') return;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)) return;
  const err = new Error(`getaddrinfo ENOTFOUND ${host}`) as NodeJS.ErrnoException;
  err.code = 'ENOTFOUND';
  throw err;
}
