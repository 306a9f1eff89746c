import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import { ANONYMOUS_IDENTITY } from './auth/authorizer.js';
import { CATALOG, type ResourceAccess } from './auth/scope.js';
import { RegistryError } from './errors.js';
import { deleteBlob, getBlob } from './http/blobs.js';
import type { RequestContext, Route } from './http/context.js';
import { hasBody, SOCKET_IDLE_MS, sendJson } from './http/context.js';
import { base, listCatalog, listReferrers, listTags } from './http/discovery.js';
import { deleteManifest, getManifest, putManifest } from './http/manifests.js';
import { getBlobThroughCache, getManifestThroughCache, listTagsThroughCache } from './http/proxy.js';
import { claimSocketBody } from './http/socket-body.js';
import { serveToken } from './http/token.js';
import { cancelUpload, finishUpload, patchUpload, startUpload, uploadStatus } from './http/uploads.js';
import { parseRepositoryName, type RepositoryName } from './names.js';
import type { Registry } from './registry.js';

const log = logger('registry');

/** Path of the token endpoint a challenge's realm points at. */
export const TOKEN_PATH = '/token';

function repository(ctx: RequestContext, ...actions: string[]): ResourceAccess[] {
  return [{ type: 'repository', name: ctx.name, actions }];
}

const pullOrDelete = (ctx: RequestContext): ResourceAccess[] =>
  repository(ctx, ctx.method === 'DELETE' ? 'delete' : 'pull');
const pullPushOrDelete = (ctx: RequestContext): ResourceAccess[] =>
  repository(ctx, ctx.method === 'DELETE' ? 'delete' : ctx.method === 'PUT' ? 'push' : 'pull');

/**
 * The OCI Distribution API, one route per endpoint of the spec's table. Names contain `/`, so each
 * pattern anchors on the fixed suffix after the name; the name is validated before anything else.
 */
const ROUTES: Route[] = [
  { pattern: /^\/v2\/?$/, handlers: { GET: base, HEAD: base }, access: () => [] },
  { pattern: /^\/v2\/_catalog$/, handlers: { GET: listCatalog }, access: () => [CATALOG] },
  {
    pattern: /^\/v2\/(?<name>.+)\/tags\/list$/,
    handlers: { GET: listTags },
    access: (ctx) => repository(ctx, 'pull'),
    proxyHandlers: { GET: listTagsThroughCache },
  },
  {
    pattern: /^\/v2\/(?<name>.+)\/manifests\/(?<reference>[^/]+)$/,
    handlers: { GET: getManifest, HEAD: getManifest, PUT: putManifest, DELETE: deleteManifest },
    access: pullPushOrDelete,
    proxyHandlers: { GET: getManifestThroughCache, HEAD: getManifestThroughCache },
  },
  {
    pattern: /^\/v2\/(?<name>.+)\/blobs\/uploads\/?$/,
    handlers: { POST: startUpload },
    access: (ctx) => repository(ctx, 'push'),
    proxyHandlers: {},
  },
  {
    pattern: /^\/v2\/(?<name>.+)\/blobs\/uploads\/(?<uuid>[^/]+)$/,
    handlers: { GET: uploadStatus, PATCH: patchUpload, PUT: finishUpload, DELETE: cancelUpload },
    access: (ctx) => repository(ctx, 'push'),
    proxyHandlers: {},
  },
  {
    pattern: /^\/v2\/(?<name>.+)\/blobs\/(?<digest>[^/]+)$/,
    handlers: { GET: getBlob, HEAD: getBlob, DELETE: deleteBlob },
    access: pullOrDelete,
    proxyHandlers: { GET: getBlobThroughCache, HEAD: getBlobThroughCache },
  },
  {
    pattern: /^\/v2\/(?<name>.+)\/referrers\/(?<digest>[^/]+)$/,
    handlers: { GET: listReferrers },
    access: (ctx) => repository(ctx, 'pull'),
  },
];

/** Handles one request: route, name check, access check, handler, and errors in the spec's format. */
export async function handleRequest(
  registry: Registry,
  req: http.IncomingMessage,
  res: http.ServerResponse,
): Promise<void> {
  res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
  const method = req.method ?? 'GET';
  const rawUrl = req.url ?? '/';
  const queryStart = rawUrl.indexOf('?');
  const pathname = queryStart === -1 ? rawUrl : rawUrl.slice(0, queryStart);
  const query = new URLSearchParams(queryStart === -1 ? '' : rawUrl.slice(queryStart + 1));
  const scheme = registry.config.tls ? 'https' : 'http';
  const realm = `${scheme}://${req.headers.host ?? `${registry.config.host}:${registry.config.port}`}${TOKEN_PATH}`;
  try {
    if (pathname === TOKEN_PATH && registry.authorizer !== null) {
      if (method !== 'GET' && method !== 'POST') throw methodNotAllowed(['GET', 'POST']);
      await serveToken(req, res, query, registry.authorizer);
      return;
    }
    let match: RegExpExecArray | null = null;
    const route = ROUTES.find((r) => {
      match = r.pattern.exec(pathname);
      return match !== null;
    });
    if (route === undefined || match === null) {
      throw new RegistryError('UNSUPPORTED', 'no such endpoint', { status: 404, detail: { path: pathname } });
    }
    const params: Record<string, string> = { ...((match as RegExpExecArray).groups ?? {}) };
    const handlers = (registry.proxy !== null && route.proxyHandlers) || route.handlers;
    const handler = handlers[method];
    if (handler === undefined) {
      // Before any access check: nobody may write to a cache, and saying so reveals nothing.
      if (route.handlers[method] !== undefined) throw readOnlyCache(Object.keys(handlers));
      throw methodNotAllowed(Object.keys(handlers));
    }
    const name = params.name === undefined ? ('' as RepositoryName) : parseRepositoryName(params.name);
    const ctx: RequestContext = {
      req,
      res,
      method,
      query,
      params,
      name,
      identity: ANONYMOUS_IDENTITY,
      registry,
      realm,
    };
    if (registry.authorizer !== null) {
      ctx.identity = await registry.authorizer.identify(req.headers.authorization, realm);
      const needed = route.access(ctx);
      if (needed.length === 0) registry.authorizer.requireCredentials(ctx.identity, realm);
      else registry.authorizer.check(ctx.identity, needed, realm);
    }
    await handler(ctx);
  } catch (err) {
    sendError(req, res, err);
  }
}

function methodNotAllowed(allowed: string[]): RegistryError {
  return new RegistryError('UNSUPPORTED', 'method not allowed', { headers: { Allow: allowed.join(', ') } });
}

function readOnlyCache(allowed: string[]): RegistryError {
  return new RegistryError(
    'UNSUPPORTED',
    'this registry is a pull-through cache: pushes and deletes are not supported',
    { headers: { Allow: allowed.join(', ') } },
  );
}

function sendError(req: http.IncomingMessage, res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) {
    // Mid-stream: the status is gone; cutting the connection is the only honest signal left.
    res.destroy();
    return;
  }
  if (!(err instanceof RegistryError) && isClientGone(req, err)) {
    res.destroy();
    return;
  }
  let error: RegistryError;
  if (err instanceof RegistryError) {
    error = err;
  } else {
    log.error('request failed', { method: req.method, url: req.url, error: errorMessage(err) });
    error = new RegistryError('UNSUPPORTED', 'internal error', { status: 500 });
  }
  const headers: Record<string, string> = { ...error.headers };
  // A body we did not read would otherwise be drained to keep the connection; close it instead.
  if (hasBody(req) && !req.complete) headers.Connection = 'close';
  sendJson(res, error.status, { errors: error.entries() }, headers);
}

function isClientGone(req: http.IncomingMessage, err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return req.destroyed || code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'EPIPE';
}

export interface RunningServer {
  server: http.Server;
  /** `http://127.0.0.1:5000` (or https), with the port actually bound. */
  url: string;
  close(): Promise<void>;
}

/** Starts the HTTP(S) server for `registry` on its configured address. */
export async function startServer(registry: Registry): Promise<RunningServer> {
  const { config } = registry;
  const listener = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    // A cache takes no uploads: their bodies are left to Node, which drops them with the 405.
    if (registry.driver.receive !== undefined && registry.proxy === null)
      claimSocketBody(req, res, SOCKET_IDLE_MS);
    void handleRequest(registry, req, res);
  };
  const server = config.tls
    ? https.createServer(
        { cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) },
        listener,
      )
    : http.createServer(listener);
  // Layer uploads over slow links take long: no overall request deadline, but idle sockets are closed.
  server.requestTimeout = 0;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 30_000;
  server.setTimeout(SOCKET_IDLE_MS);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  const url = `${config.tls ? 'https' : 'http'}://${host}:${address.port}`;
  return {
    server,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
