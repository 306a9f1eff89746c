import type { Digest } from '../../common/digest.js';
import { listEntry } from '../../containers/present.js';
import type { ContainerService } from '../../containers/service.js';
import { type ContainerUpdater, updateBodySchema } from '../../containers/update.js';
import { type StatsSampler, statsObject } from '../../runtime/stats.js';
import type { Snapshotter } from '../../snapshots/snapshotter.js';
import { JsonStream, queryBool, type RouteTable, readJson, sendJson } from '../http.js';

/**
 * Resource routes: `GET /containers/{id}/stats` (one-shot and streaming), `POST /containers/{id}/update`
 * and `GET /system/df`.
 */
export interface ResourceRouteDeps {
  containers: ContainerService;
  updater: ContainerUpdater;
  sampler: StatsSampler;
  snapshotter: Snapshotter;
  /** Image summaries (`GET /images/json` entries) and each image's top chain id. */
  images: () => { summary: Record<string, unknown>; chainId: Digest | null }[];
  /** Volume entries with UsageData, when a volume part is present. */
  volumes?: () => Record<string, unknown>[];
}

/** How long a one-shot request waits between its two samples when no recent sample exists. */
export const STATS_PRIME_MS = 250;
const STREAM_INTERVAL_MS = 1000;

export function registerResourceRoutes(routes: RouteTable, deps: ResourceRouteDeps): void {
  const svc = deps.containers;

  routes.add('GET', '/containers/:id/stats', async (r) => {
    const record = svc.get(r.params.id);
    const stream = queryBool(r.query, 'stream', true);
    const oneShot = queryBool(r.query, 'one-shot');
    const sample = () => deps.sampler.sample(record.id, record.state.pid);
    if (!svc.isRunning(record)) {
      sendJson(r.res, 200, statsObject(record.name, record.id, null, null));
      return;
    }
    if (!stream) {
      let previous = oneShot ? null : deps.sampler.previousFor(record.id);
      if (!previous && !oneShot) {
        previous = sample();
        await new Promise((resolve) => setTimeout(resolve, STATS_PRIME_MS));
      }
      sendJson(r.res, 200, statsObject(record.name, record.id, sample(), previous));
      return;
    }
    const out = new JsonStream(r.res, '\n');
    let previous = deps.sampler.previousFor(record.id, 0);
    await new Promise<void>((resolve) => {
      const tick = () => {
        if (out.isClosed || !svc.isRunning(record) || svc.find(record.id) === null) {
          clearInterval(timer);
          out.end();
          resolve();
          return;
        }
        const current = sample();
        out.write(statsObject(record.name, record.id, current, previous));
        previous = current;
      };
      const timer = setInterval(tick, STREAM_INTERVAL_MS);
      r.res.on('close', () => {
        clearInterval(timer);
        resolve();
      });
      tick();
    });
  });

  routes.add('POST', '/containers/:id/update', async (r) => {
    const body = await readJson(r.req, updateBodySchema);
    sendJson(r.res, 200, await deps.updater.update(r.params.id, body));
  });

  routes.add('GET', '/system/df', (r) => {
    const now = Date.now();
    const records = svc.all();
    const layers = deps.snapshotter.listLayers();
    const layerSize = new Map(layers.map((l) => [l.chainId, l]));
    const chainOf = (top: Digest | null): Digest[] => {
      const out: Digest[] = [];
      for (let c = top; c !== null; ) {
        const layer = layerSize.get(c);
        if (!layer) break;
        out.push(c);
        c = layer.parentChainId;
      }
      return out;
    };
    const images = deps.images();
    const users = new Map<Digest, number>();
    for (const img of images) for (const c of chainOf(img.chainId)) users.set(c, (users.get(c) ?? 0) + 1);
    const imageEntries = images.map(({ summary, chainId }) => {
      const shared = chainOf(chainId)
        .filter((c) => (users.get(c) ?? 0) > 1)
        .reduce((sum, c) => sum + (layerSize.get(c)?.size ?? 0), 0);
      return {
        ...summary,
        Containers: records.filter((c) => c.imageId === summary.Id).length,
        SharedSize: shared,
      };
    });
    sendJson(r.res, 200, {
      LayersSize: layers.reduce((sum, l) => sum + l.size, 0),
      Images: imageEntries,
      Containers: records
        .filter((c) => r.visibleContainer?.(c.id) ?? true)
        .map((c) => listEntry(svc, c, true, now)),
      Volumes: deps.volumes?.() ?? [],
      BuildCache: [],
      BuilderSize: 0,
    });
  });
}
