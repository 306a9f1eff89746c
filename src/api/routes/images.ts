import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidArgument, NotFound } from '../../common/errors.js';
import type { EventBus } from '../../common/events.js';
import type { DistributionService } from '../../distribution/service.js';
import { familiarName, parseNormalizedNamed } from '../../images/reference.js';
import type { ImageService } from '../../images/service.js';
import { JsonStream, parseFilters, queryBool, type RouteTable, sendEmpty, sendJson } from '../http.js';
import { handlePull } from './distribution.js';

export interface ImageRouteDeps {
  images: ImageService;
  events: EventBus;
  /** The registry client; without it, pulls answer that no repository exists. */
  distribution?: DistributionService;
}

const LIST_FILTERS = ['dangling', 'label', 'before', 'since', 'reference'];
const PRUNE_FILTERS = ['dangling', 'label', 'label!', 'until'];

/**
 * The request body as a stream the service may destroy on error without closing the connection, so
 * the error can still be sent. `finish()` drains what the service left unread.
 */
function detachedBody(req: IncomingMessage): { body: Readable; finish: () => Promise<void> } {
  const body = new PassThrough({ highWaterMark: 1 << 20 });
  req.pipe(body);
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

async function sendTar(res: ServerResponse, tar: Readable): Promise<void> {
  res.writeHead(200, { 'Content-Type': 'application/x-tar' });
  try {
    await pipeline(tar, res);
  } catch {
    // The archive failed half-way (or the client left): the only signal left is a cut connection.
    res.destroy();
  }
}

export function registerImageRoutes(routes: RouteTable, deps: ImageRouteDeps): void {
  const { images } = deps;

  // docker import (fromSrc=-) and docker pull (fromImage).
  routes.add('POST', '/images/create', async ({ req, res, query }) => {
    const fromImage = query.get('fromImage');
    const fromSrc = query.get('fromSrc');
    if (fromImage) {
      if (deps.distribution) {
        await handlePull(req, res, query, deps.distribution);
        return;
      }
      req.resume();
      // Registry pulls arrive with the distribution part; until then no repository exists.
      const repo = familiarName(parseNormalizedNamed(fromImage));
      throw new NotFound(
        `pull access denied for ${repo}, repository does not exist or may require 'docker login'`,
      );
    }
    if (fromSrc === null || fromSrc === '') {
      req.resume();
      throw new InvalidArgument('fromImage or fromSrc is required');
    }
    if (fromSrc !== '-') {
      req.resume();
      throw new InvalidArgument(
        `importing from a URL is not supported (${fromSrc}): pipe the archive instead, e.g. "docker import - < file.tar"`,
      );
    }
    const { body, finish } = detachedBody(req);
    let id: string;
    try {
      id = await images.importImage(body, {
        repo: query.get('repo') ?? undefined,
        tag: query.get('tag') ?? undefined,
        changes: query.getAll('changes'),
        message: query.get('message') ?? undefined,
      });
    } catch (err) {
      await finish();
      throw err;
    }
    const stream = new JsonStream(res);
    stream.write({ status: id });
    stream.end();
  });

  routes.add('GET', '/images/json', ({ res, query }) => {
    const filters = parseFilters(query, LIST_FILTERS);
    // The legacy `filter` parameter is a reference pattern.
    const legacy = query.get('filter');
    if (legacy) filters.set('reference', [...(filters.get('reference') ?? []), legacy]);
    sendJson(res, 200, images.list({ all: queryBool(query, 'all'), filters }));
  });

  routes.add('POST', '/images/load', async ({ req, res, query }) => {
    const { body, finish } = detachedBody(req);
    // dockerd answers 200 at once and reports failures inside the stream; the CLI renders both.
    const stream = new JsonStream(res);
    try {
      await images.loadImages(body, (message) => stream.write(message), { quiet: queryBool(query, 'quiet') });
    } catch (err) {
      await finish();
      stream.error(err);
    }
    stream.end();
  });

  routes.add('GET', '/images/get', async ({ res, query }) => {
    await sendTar(res, images.saveImages(query.getAll('names')));
  });

  routes.add('POST', '/images/prune', async ({ res, query }) => {
    sendJson(res, 200, await images.prune({ filters: parseFilters(query, PRUNE_FILTERS) }));
  });

  routes.add('GET', '/images/:name+/json', ({ res, params }) => {
    sendJson(res, 200, images.inspect(params.name));
  });

  routes.add('GET', '/images/:name+/history', ({ res, params }) => {
    sendJson(res, 200, images.history(params.name));
  });

  routes.add('GET', '/images/:name+/get', async ({ res, params }) => {
    await sendTar(res, images.saveImages([params.name]));
  });

  routes.add('POST', '/images/:name+/tag', ({ res, params, query }) => {
    images.tag(params.name, query.get('repo') ?? '', query.get('tag') ?? undefined);
    sendEmpty(res, 201);
  });

  routes.add('DELETE', '/images/:name+', async ({ res, params, query }) => {
    sendJson(
      res,
      200,
      await images.remove(params.name, {
        force: queryBool(query, 'force'),
        noprune: queryBool(query, 'noprune'),
      }),
    );
  });
}
