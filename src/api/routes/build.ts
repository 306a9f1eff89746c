import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import {
  CONTEXT_MANIFEST_MEDIA_TYPE,
  MAX_MANIFEST_BYTES,
  parseContextManifest,
} from '../../build/context-manifest.js';
import { RunFailedError } from '../../build/errors.js';
import type { Builder, BuildOptions, NetworkMode } from '../../build/service.js';
import { errorMessage, InvalidArgument } from '../../common/errors.js';
import { authConfigSchema, credentialsOf, type RegistryCredentials } from '../../distribution/auth.js';
import { parseGoDuration } from '../../images/config.js';
import { parseFilters, queryBool, type RouteTable, readBody, sendJson } from '../http.js';

/** Progress kept back for a quiet build (written only if it fails). */
const MAX_HELD_BYTES = 1 << 20;

export interface BuildRouteDeps {
  builder: Builder;
}

/**
 * `POST /build` (the classic builder the docker CLI uses without buildx) and `POST /build/prune`.
 * The build answers 200 only when it has something to say: a context or Dockerfile it cannot use is
 * an HTTP error, as with dockerd; from the first progress line on, errors travel in the stream.
 */
function jsonObject(query: URLSearchParams, name: string): Record<string, unknown> {
  const raw = query.get(name);
  if (raw === null || raw === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    throw new InvalidArgument(`invalid ${name}: ${errorMessage(err)}`);
  }
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new InvalidArgument(`invalid ${name}: expected a JSON object`);
  return value as Record<string, unknown>;
}

/**
 * `X-Registry-Config`: base64 (either alphabet) of `{"<registry>": {username, password, …}}`; what
 * does not decode is no credentials, as with dockerd.
 */
export function parseRegistryConfig(
  value: string | string[] | undefined,
): Record<string, RegistryCredentials> {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return {};
  let json: unknown;
  try {
    json = JSON.parse(
      Buffer.from(text.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8'),
    );
  } catch {
    return {};
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return {};
  const out: Record<string, RegistryCredentials> = {};
  for (const [registry, config] of Object.entries(json)) {
    const parsed = authConfigSchema.safeParse(config);
    if (parsed.success) out[registry] = credentialsOf(parsed.data);
  }
  return out;
}

export function parseBuildOptions(query: URLSearchParams, registryConfig?: string | string[]): BuildOptions {
  if (query.get('remote')) {
    throw new InvalidArgument(
      'remote build contexts (git or URL) are not supported: send the context as a tar',
    );
  }
  if (query.get('version') === '2') {
    throw new InvalidArgument(
      'BuildKit (version=2) is not supported by Strata: use the classic builder (DOCKER_BUILDKIT=0)',
    );
  }
  const buildArgs = new Map<string, string | null>();
  for (const [key, value] of Object.entries(jsonObject(query, 'buildargs'))) {
    if (value !== null && typeof value !== 'string')
      throw new InvalidArgument(`invalid buildargs: ${key} is not a string`);
    buildArgs.set(key, value);
  }
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(jsonObject(query, 'labels'))) {
    if (typeof value !== 'string') throw new InvalidArgument(`invalid labels: ${key} is not a string`);
    labels[key] = value;
  }
  const network = (query.get('networkmode') ?? '').toLowerCase();
  let networkMode: NetworkMode;
  if (network === '' || network === 'default' || network === 'bridge') networkMode = 'default';
  else if (network === 'none' || network === 'host') networkMode = network;
  else
    throw new InvalidArgument(
      `network mode ${JSON.stringify(network)} is not supported for builds (use none, host or default)`,
    );
  return {
    dockerfile: query.get('dockerfile') || 'Dockerfile',
    tags: query.getAll('t').filter((t) => t !== ''),
    buildArgs,
    labels,
    noCache: queryBool(query, 'nocache'),
    pull: queryBool(query, 'pull'),
    quiet: queryBool(query, 'q'),
    removeIntermediate: queryBool(query, 'rm', true) || queryBool(query, 'forcerm'),
    target: query.get('target') || null,
    platform: query.get('platform') || null,
    networkMode,
    registryAuth: parseRegistryConfig(registryConfig),
  };
}

async function readJsonValue(req: IncomingMessage): Promise<unknown> {
  const body = await readBody(req, MAX_MANIFEST_BYTES);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new InvalidArgument(`invalid build context manifest: ${errorMessage(err)}`);
  }
}

/** The request body as a stream the builder may destroy without cutting the connection. */
function detachedBody(req: IncomingMessage): { body: Readable; finish: () => Promise<void> } {
  const body = new PassThrough({ highWaterMark: 1 << 20 });
  req.pipe(body);
  req.on('error', (err) => body.destroy(err));
  req.on('aborted', () => body.destroy(new Error('the client closed the connection')));
  body.on('close', () => req.unpipe(body));
  return {
    body,
    async finish() {
      req.unpipe(body);
      if (req.readableEnded || req.destroyed) return;
      req.resume();
      await once(req, 'end').catch(() => undefined);
    },
  };
}

/** A progress stream whose 200 goes out with the first message. */
class LazyProgressStream {
  started = false;
  private closed = false;

  constructor(private readonly res: ServerResponse) {
    res.on('close', () => {
      this.closed = true;
    });
  }

  write(message: unknown): void {
    if (this.closed) return;
    if (!this.started) {
      this.started = true;
      this.res.writeHead(200, { 'Content-Type': 'application/json' });
    }
    this.res.write(`${JSON.stringify(message)}\r\n`);
  }

  error(err: unknown, code?: number): void {
    const message = errorMessage(err);
    this.write({ errorDetail: code === undefined ? { message } : { code, message }, error: message });
  }

  end(): void {
    if (this.closed) return;
    if (!this.started) this.res.writeHead(200, { 'Content-Type': 'application/json' });
    this.res.end();
  }
}

export function registerBuildRoutes(routes: RouteTable, deps: BuildRouteDeps): void {
  routes.add('POST', '/build', async ({ req, res, query }) => {
    const options = parseBuildOptions(query, req.headers['x-registry-config']);
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    const isManifest = String(req.headers['content-type'] ?? '').startsWith(CONTEXT_MANIFEST_MEDIA_TYPE);
    const manifest = isManifest ? parseContextManifest(await readJsonValue(req)) : null;
    const { body, finish } = detachedBody(req);
    const stream = new LazyProgressStream(res);
    // With q=1 the progress is held back: only the image id is printed, or, when the build fails, the
    // progress so far and the error (as dockerd does it).
    const held: unknown[] = [];
    let heldBytes = 0;
    const emit = (message: unknown) => {
      if (!options.quiet) {
        stream.write(message);
        return;
      }
      held.push(message);
      heldBytes += JSON.stringify(message).length;
      while (heldBytes > MAX_HELD_BYTES && held.length > 1) heldBytes -= JSON.stringify(held.shift()).length;
    };
    try {
      const id = await deps.builder.build(
        manifest ? { manifest } : { tar: body },
        options,
        {
          stream: (text) => emit({ stream: text }),
          progress: (message) => emit(message),
          aux: (id) => emit({ aux: { ID: id } }),
        },
        abort.signal,
      );
      if (options.quiet) stream.write({ stream: `${id}\n` });
    } catch (err) {
      await finish();
      for (const message of held) stream.write(message);
      if (!stream.started) throw err;
      stream.error(err, err instanceof RunFailedError ? err.exitCode : undefined);
    }
    stream.end();
  });

  // Context sync (Strata extension): which bodies of a manifest the daemon lacks, and their upload.
  routes.add('POST', '/build/context/check', async ({ req, res }) => {
    const manifest = parseContextManifest(await readJsonValue(req));
    sendJson(res, 200, { Missing: deps.builder.missingContent(manifest) });
  });

  routes.add('POST', '/build/context/upload', async ({ req, res }) => {
    sendJson(res, 200, { Stored: await deps.builder.uploadContent(req) });
  });

  routes.add('POST', '/build/prune', async ({ res, query }) => {
    const filters = parseFilters(query, ['until', 'unused-for']);
    let untilMs: number | undefined;
    for (const value of [...(filters.get('until') ?? []), ...(filters.get('unused-for') ?? [])]) {
      untilMs = Date.now() - parseGoDuration(value) / 1e6;
    }
    sendJson(res, 200, await deps.builder.prune({ all: queryBool(query, 'all'), untilMs }));
  });
}
