import { z } from 'zod';
import { InvalidArgument } from '../../common/errors.js';
import { inspectNetwork } from '../../network/present.js';
import type { NetworkService } from '../../network/service.js';
import type { NetworkRecord } from '../../network/store.js';
import { parseFilters, queryBool, type RouteTable, readJson, sendEmpty, sendJson } from '../http.js';

export interface NetworkRouteDeps {
  networks: NetworkService;
  /** Container id → name without the slash (for network inspect's Containers map). */
  containerName: (id: string) => string;
}

const stringMap = z.record(z.string(), z.string()).nullish();

const createSchema = z
  .object({
    Name: z.string(),
    CheckDuplicate: z.boolean().nullish(),
    Driver: z.string().nullish(),
    Internal: z.boolean().nullish(),
    Attachable: z.boolean().nullish(),
    Ingress: z.boolean().nullish(),
    EnableIPv6: z.boolean().nullish(),
    IPAM: z
      .object({
        Driver: z.string().nullish(),
        Options: stringMap,
        Config: z
          .array(
            z
              .object({
                Subnet: z.string().optional(),
                Gateway: z.string().optional(),
                IPRange: z.string().optional(),
                AuxiliaryAddresses: z.record(z.string(), z.string()).optional(),
              })
              .loose(),
          )
          .nullish(),
      })
      .loose()
      .nullish(),
    Options: stringMap,
    Labels: stringMap,
  })
  .loose();

const endpointSchema = z
  .object({
    Aliases: z.array(z.string()).nullish(),
    IPAMConfig: z
      .object({ IPv4Address: z.string().optional(), IPv6Address: z.string().optional() })
      .loose()
      .nullish(),
    Links: z.array(z.string()).nullish(),
  })
  .loose();

const connectSchema = z
  .object({ Container: z.string(), EndpointConfig: endpointSchema.nullish(), Force: z.boolean().nullish() })
  .loose();
const disconnectSchema = z.object({ Container: z.string(), Force: z.boolean().nullish() }).loose();

const LIST_FILTERS = ['name', 'id', 'label', 'driver', 'type', 'dangling', 'scope'];

function labelMatches(labels: Record<string, string>, filter: string): boolean {
  const i = filter.indexOf('=');
  const key = i < 0 ? filter : filter.slice(0, i);
  if (!(key in labels)) return false;
  return i < 0 || labels[key] === filter.slice(i + 1);
}

function parseUntil(value: string): number {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  const m = /^(\d+)(s|m|h)$/.exec(value);
  if (m) return Date.now() - Number(m[1]) * { s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 's' | 'm' | 'h'];
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new InvalidArgument(`invalid until value: ${value}`);
  return t;
}

export function registerNetworkRoutes(routes: RouteTable, deps: NetworkRouteDeps): void {
  const svc = deps.networks;
  const show = (n: NetworkRecord, withContainers: boolean) =>
    inspectNetwork(svc, n, deps.containerName, withContainers);

  routes.add('GET', '/networks', (r) => {
    const filters = parseFilters(r.query, LIST_FILTERS);
    const list = svc.list().filter((n) => {
      const names = filters.get('name');
      if (names && !names.some((v) => n.name.includes(v))) return false;
      const ids = filters.get('id');
      if (ids && !ids.some((v) => n.id.startsWith(v))) return false;
      for (const l of filters.get('label') ?? []) if (!labelMatches(n.labels, l)) return false;
      const drivers = filters.get('driver');
      if (drivers && !drivers.includes(n.driver)) return false;
      const types = filters.get('type');
      if (
        types &&
        !types.some((t) => (t === 'builtin' ? n.predefined : t === 'custom' ? !n.predefined : false))
      )
        return false;
      const dangling = filters.get('dangling');
      if (dangling && dangling.length > 0) {
        const want = ['1', 'true'].includes(dangling[0].toLowerCase());
        const isDangling = !n.predefined && svc.activeEndpoints(n.id).length === 0;
        if (want !== isDangling) return false;
      }
      return true;
    });
    sendJson(
      r.res,
      200,
      list.map((n) => show(n, false)),
    );
  });

  routes.add('POST', '/networks/create', async (r) => {
    const body = await readJson(r.req, createSchema);
    sendJson(r.res, 201, await svc.create(body));
  });

  routes.add('POST', '/networks/prune', async (r) => {
    const filters = parseFilters(r.query, ['until', 'label', 'label!']);
    const until = filters.get('until')?.[0];
    const untilMs = until ? parseUntil(until) : null;
    const removed = await svc.prune((n) => {
      if (untilMs !== null && Date.parse(n.created) >= untilMs) return true;
      for (const l of filters.get('label') ?? []) if (!labelMatches(n.labels, l)) return true;
      for (const l of filters.get('label!') ?? []) if (labelMatches(n.labels, l)) return true;
      return false;
    });
    sendJson(r.res, 200, { NetworksDeleted: removed.length > 0 ? removed : null });
  });

  routes.add('GET', '/networks/:id', (r) => {
    const n = svc.get(r.params.id);
    queryBool(r.query, 'verbose');
    sendJson(r.res, 200, show(n, true));
  });

  routes.add('DELETE', '/networks/:id', async (r) => {
    await svc.remove(r.params.id);
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/networks/:id/connect', async (r) => {
    const body = await readJson(r.req, connectSchema);
    await svc.connect(r.params.id, body.Container, body.EndpointConfig ?? {});
    sendEmpty(r.res, 200);
  });

  routes.add('POST', '/networks/:id/disconnect', async (r) => {
    const body = await readJson(r.req, disconnectSchema);
    await svc.disconnect(r.params.id, body.Container, body.Force ?? false);
    sendEmpty(r.res, 200);
  });
}
