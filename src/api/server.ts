import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import { trace } from '../common/trace.js';
import {
  API_VERSION,
  type ApiRequest,
  commonHeaders,
  MIN_API_VERSION,
  sendEmpty,
  sendError,
  sendJson,
} from './http.js';
import type { Router } from './router.js';

const log = logger('api');
const VERSION_PREFIX = /^\/v(\d+)\.(\d+)(\/.*)$/;

function compareVersions(a: string, b: string): number {
  const [am, an] = a.split('.').map(Number);
  const [bm, bn] = b.split('.').map(Number);
  return am !== bm ? am - bm : an - bn;
}

export interface ApiServerOptions {
  /** Wraps every routed request (authentication and authorization, api/auth.ts); calls `next` to run it. */
  middleware?: (r: ApiRequest, method: string, path: string, next: () => Promise<void>) => Promise<void>;
}

/**
 * The Engine API HTTP server: version prefix handling, common headers, routing, error mapping, and
 * both forms of connection hijack (attach/exec with `Upgrade: tcp`, and without it).
 */
export function createApiServer(router: Router, options: ApiServerOptions = {}): http.Server {
  const server = http.createServer({ keepAlive: true, requestTimeout: 0, headersTimeout: 60_000 });
  server.keepAliveTimeout = 60_000;

  const dispatch = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    upgrade?: { socket: Duplex; head: Buffer },
  ) => {
    for (const [k, v] of Object.entries(commonHeaders())) res.setHeader(k, v);
    const url = new URL(req.url ?? '/', 'http://localhost');
    let path = url.pathname;
    let version = API_VERSION;
    const m = VERSION_PREFIX.exec(path);
    if (m) {
      version = `${m[1]}.${m[2]}`;
      path = m[3];
      if (compareVersions(version, API_VERSION) > 0) {
        sendJson(res, 400, {
          message: `client version ${version} is too new. Maximum supported API version is ${API_VERSION}`,
        });
        return;
      }
      if (compareVersions(version, MIN_API_VERSION) < 0) {
        sendJson(res, 400, {
          message: `client version ${version} is too old. Minimum supported API version is ${MIN_API_VERSION}, please upgrade your client to a newer version`,
        });
        return;
      }
    }
    const method = req.method ?? 'GET';
    if (path === '/_ping' && (method === 'GET' || method === 'HEAD')) {
      res.writeHead(200, {
        'Content-Type': 'text/plain; charset=utf-8',
        'Cache-Control': 'no-cache, no-store, must-revalidate',
        Pragma: 'no-cache',
        'Builder-Version': '1',
        // Strata extensions a client may use (README, "Strata extensions").
        'Strata-Features': 'build-context-sync',
        Swarm: 'inactive',
        'Content-Length': 2,
      });
      res.end(method === 'HEAD' ? undefined : 'OK');
      return;
    }
    const match = router.match(method, path);
    if (!match) {
      sendJson(res, 404, { message: 'page not found' });
      return;
    }
    const apiReq: ApiRequest = { req, res, params: match.params, query: url.searchParams, version, upgrade };
    const startedAt = performance.now();
    const span = trace.span('api', match.params.id ?? '');
    try {
      const handle = async () => {
        span.mark('routed');
        return match.handler(apiReq);
      };
      await (options.middleware ? options.middleware(apiReq, method, path, handle) : handle());
      span.end(`${method} ${path} ${res.statusCode}`);
      log.debug(`${method} ${path} ${res.statusCode} ${(performance.now() - startedAt).toFixed(1)}ms`);
    } catch (err) {
      const status = (err as { status?: number }).status ?? 500;
      if (status >= 500) log.error(`${method} ${path} failed`, { error: errorMessage(err) });
      else log.debug(`${method} ${path} → ${status}`, { error: errorMessage(err) });
      if (upgrade && res.headersSent) {
        upgrade.socket.destroy();
        return;
      }
      if (!upgrade && !req.complete && !res.headersSent) {
        // Read the rest of a refused upload so the client sees our answer, not a reset.
        req.resume();
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, 5000);
          req.once('end', () => {
            clearTimeout(t);
            resolve();
          });
          req.once('error', () => resolve());
        });
      }
      sendError(res, err);
      if (upgrade) res.once('finish', () => upgrade.socket.end());
    }
  };

  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    dispatch(req, res).catch((err) => {
      log.error('request failed', { error: errorMessage(err) });
      if (!res.headersSent) sendEmpty(res, 500);
    });
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    // A ServerResponse bound to the raw socket lets routes answer errors (404, 409) normally before
    // they decide to hijack.
    const res = new http.ServerResponse(req);
    res.assignSocket(socket as unknown as import('node:net').Socket);
    socket.on('error', () => socket.destroy());
    dispatch(req, res, { socket, head }).catch((err) => {
      log.error('upgrade failed', { error: errorMessage(err) });
      socket.destroy();
    });
  });
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
  });
  return server;
}
