import { z } from 'zod';
import type { VolumeRecord, VolumeService } from '../../volumes/service.js';
import { parseFilters, queryBool, type RouteTable, readJson, sendEmpty, sendJson } from '../http.js';

export interface VolumeRouteDeps {
  volumes: VolumeService;
}

const createSchema = z
  .object({
    Name: z.string().nullish(),
    Driver: z.string().nullish(),
    DriverOpts: z.record(z.string(), z.string()).nullish(),
    Labels: z.record(z.string(), z.string()).nullish(),
  })
  .loose();

function labelMatches(labels: Record<string, string>, filter: string): boolean {
  const i = filter.indexOf('=');
  const key = i < 0 ? filter : filter.slice(0, i);
  if (!(key in labels)) return false;
  return i < 0 || labels[key] === filter.slice(i + 1);
}

const truthy = (v: string) => ['1', 'true'].includes(v.toLowerCase());

export function registerVolumeRoutes(routes: RouteTable, deps: VolumeRouteDeps): void {
  const svc = deps.volumes;

  routes.add('GET', '/volumes', (r) => {
    const filters = parseFilters(r.query, ['dangling', 'name', 'label', 'driver']);
    const keep = (v: VolumeRecord) => {
      const names = filters.get('name');
      if (names && !names.some((n) => v.name.includes(n))) return false;
      for (const l of filters.get('label') ?? []) if (!labelMatches(v.labels, l)) return false;
      const drivers = filters.get('driver');
      if (drivers && !drivers.includes(v.driver)) return false;
      const dangling = filters.get('dangling');
      if (dangling && dangling.length > 0 && truthy(dangling[0]) !== (svc.users(v.name).length === 0))
        return false;
      return true;
    };
    sendJson(r.res, 200, {
      Volumes: svc
        .list()
        .filter(keep)
        .map((v) => svc.inspect(v)),
      Warnings: null,
    });
  });

  routes.add('POST', '/volumes/create', async (r) => {
    const body = await readJson(r.req, createSchema);
    sendJson(r.res, 201, svc.inspect(svc.create(body)));
  });

  routes.add('POST', '/volumes/prune', async (r) => {
    const filters = parseFilters(r.query, ['label', 'label!', 'all']);
    // API ≤ 1.41 prunes every unused volume; `all` (1.42+) is honoured when sent.
    const allFilter = filters.get('all');
    const all = allFilter ? truthy(allFilter[0]) : Number(r.version.split('.')[1]) <= 41;
    const result = await svc.prune(all, (v) => {
      for (const l of filters.get('label') ?? []) if (!labelMatches(v.labels, l)) return true;
      for (const l of filters.get('label!') ?? []) if (labelMatches(v.labels, l)) return true;
      return false;
    });
    sendJson(r.res, 200, {
      VolumesDeleted: result.names.length > 0 ? result.names : null,
      SpaceReclaimed: result.reclaimed,
    });
  });

  routes.add('GET', '/volumes/:name', (r) => {
    sendJson(r.res, 200, svc.inspect(svc.get(r.params.name)));
  });

  routes.add('DELETE', '/volumes/:name', async (r) => {
    await svc.remove(r.params.name, queryBool(r.query, 'force'));
    sendEmpty(r.res, 204);
  });
}
