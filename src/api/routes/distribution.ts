import type { IncomingMessage, ServerResponse } from 'node:http';
import { authConfigSchema, credentialsOf, parseRegistryAuthHeader } from '../../distribution/auth.js';
import { NotImplemented } from '../../distribution/errors.js';
import type { DistributionService } from '../../distribution/service.js';
import { JsonStream, type RouteTable, readJson, sendJson } from '../http.js';

/**
 * Registry routes: `POST /images/{name}/push`, `POST /auth`, `GET /images/search`; and the pull
 * branch of `POST /images/create` (`fromImage`), which the image routes hand over to `handlePull`.
 * Credentials arrive per request in `X-Registry-Auth`; errors found before the transfer starts are
 * HTTP statuses, later ones are in-stream `errorDetail` messages, as with dockerd.
 */
export interface DistributionRouteDeps {
  distribution: DistributionService;
}

/** Aborted when the client goes away before the response is complete (docker pull ^C). */
function clientSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) controller.abort(new Error('the client closed the connection'));
  });
  return controller.signal;
}

/** `POST /images/create?fromImage=…&tag=…[&platform=…]` */
export async function handlePull(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  distribution: DistributionService,
): Promise<void> {
  req.resume();
  const signal = clientSignal(res);
  const pull = await distribution.preparePull(
    {
      image: query.get('fromImage') ?? '',
      tag: query.get('tag'),
      platform: query.get('platform'),
      credentials: parseRegistryAuthHeader(req.headers['x-registry-auth']),
    },
    signal,
  );
  const stream = new JsonStream(res);
  try {
    await pull.run((message) => stream.write(message), signal);
  } catch (err) {
    stream.error(err);
  }
  stream.end();
}

export function registerDistributionRoutes(routes: RouteTable, deps: DistributionRouteDeps): void {
  const { distribution } = deps;

  routes.add('POST', '/images/:name+/push', async ({ req, res, params, query }) => {
    req.resume();
    const push = distribution.preparePush({
      name: params.name,
      tag: query.get('tag'),
      credentials: parseRegistryAuthHeader(req.headers['x-registry-auth']),
    });
    const signal = clientSignal(res);
    const stream = new JsonStream(res);
    try {
      await push((message) => stream.write(message), signal);
    } catch (err) {
      stream.error(err);
    }
    stream.end();
  });

  routes.add('POST', '/auth', async ({ req, res }) => {
    const body = await readJson(req, authConfigSchema);
    sendJson(
      res,
      200,
      await distribution.login({ serverAddress: body.serveraddress, credentials: credentialsOf(body) }),
    );
  });

  routes.add('GET', '/images/search', ({ req }) => {
    req.resume();
    throw new NotImplemented(
      'search is not supported: Strata talks to registries through the OCI Distribution API, which has no search (list a registry with GET /v2/_catalog)',
    );
  });
}
