import { InvalidArgument } from '../../common/errors.js';
import { readLog } from '../../containers/logs.js';
import { filterContainers, inspectContainer, LIST_FILTERS, listEntry } from '../../containers/present.js';
import type { ContainerService, WaitCondition } from '../../containers/service.js';
import { createBodySchema } from '../../containers/types.js';
import { hijack, muxFrame, readRequestBody } from '../hijack.js';
import {
  type ApiRequest,
  parseFilters,
  queryBool,
  queryInt,
  type RouteTable,
  readJson,
  sendEmpty,
  sendJson,
} from '../http.js';

export interface ContainerRouteDeps {
  containers: ContainerService;
  /** Image reference → image id, for the `ancestor` filter (null when unknown). */
  resolveImageId: (ref: string) => string | null;
}

function parseTime(value: string | null): bigint | undefined {
  if (value === null || value === '' || value === '0') return undefined;
  const m = /^(\d+)(?:\.(\d{1,9}))?$/.exec(value);
  if (!m) {
    const t = Date.parse(value);
    if (Number.isNaN(t)) throw new InvalidArgument(`invalid time value: ${value}`);
    return BigInt(t) * 1_000_000n;
  }
  return BigInt(m[1]) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

export function registerContainerRoutes(routes: RouteTable, deps: ContainerRouteDeps): void {
  const svc = deps.containers;

  routes.add('GET', '/containers/json', (r) => {
    const all = queryBool(r.query, 'all');
    const limit = queryInt(r.query, 'limit', -1);
    const size = queryBool(r.query, 'size');
    const filters = parseFilters(r.query, LIST_FILTERS);
    const visible = r.visibleContainer;
    const runningOnly = !all && !filters.has('status') && !filters.has('exited');
    let records = svc
      .all()
      .filter((c) => (!runningOnly || svc.isRunning(c)) && (visible === undefined || visible(c.id)));
    records = filterContainers(svc, records, filters, deps.resolveImageId);
    records.sort((a, b) => (a.created < b.created ? 1 : a.created > b.created ? -1 : 0));
    if (limit > 0) records = records.slice(0, limit);
    const now = Date.now();
    sendJson(
      r.res,
      200,
      records.map((c) => listEntry(svc, c, size, now)),
    );
  });

  routes.add('POST', '/containers/create', async (r) => {
    const body = await readJson(r.req, createBodySchema);
    const name = r.query.get('name');
    sendJson(r.res, 201, svc.create(body, name));
  });

  routes.add('POST', '/containers/prune', (r) => {
    const filters = parseFilters(r.query, ['until', 'label', 'label!']);
    const deleted: string[] = [];
    let reclaimed = 0;
    const until = filters.get('until')?.[0];
    const untilMs = until ? Number(parseTime(until) ?? 0n) / 1e6 : null;
    const work = svc
      .all()
      .filter((c) => !svc.isRunning(c) && c.state.status !== 'removing')
      .filter((c) => untilMs === null || Date.parse(c.created) < untilMs)
      .filter((c) =>
        (filters.get('label') ?? []).every((l) => {
          const [k, v] = l.split('=', 2);
          return k in c.config.Labels && (v === undefined || c.config.Labels[k] === v);
        }),
      )
      .filter((c) =>
        (filters.get('label!') ?? []).every((l) => {
          const [k, v] = l.split('=', 2);
          return !(k in c.config.Labels && (v === undefined || c.config.Labels[k] === v));
        }),
      );
    return (async () => {
      for (const c of work) {
        const size = svc.sizeRw(c);
        await svc.remove(c.id, { force: false, volumes: false });
        deleted.push(c.id);
        reclaimed += size;
      }
      sendJson(r.res, 200, {
        ContainersDeleted: deleted.length > 0 ? deleted : null,
        SpaceReclaimed: reclaimed,
      });
    })();
  });

  routes.add('GET', '/containers/:id/json', (r) => {
    const record = svc.get(r.params.id);
    sendJson(r.res, 200, inspectContainer(svc, record, queryBool(r.query, 'size')));
  });

  routes.add('POST', '/containers/:id/start', async (r) => {
    await svc.start(r.params.id);
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/stop', async (r) => {
    const t = r.query.get('t') ?? r.query.get('timeout');
    await svc.stop(
      r.params.id,
      t === null || t === '' ? null : queryInt(r.query, r.query.has('t') ? 't' : 'timeout', 10),
    );
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/restart', async (r) => {
    const t = r.query.get('t');
    await svc.restart(r.params.id, t === null || t === '' ? null : queryInt(r.query, 't', 10));
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/kill', async (r) => {
    await svc.kill(r.params.id, r.query.get('signal'));
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/pause', async (r) => {
    await svc.pause(r.params.id);
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/unpause', async (r) => {
    await svc.unpause(r.params.id);
    sendEmpty(r.res, 204);
  });

  routes.add('DELETE', '/containers/:id', async (r) => {
    await svc.remove(r.params.id, { force: queryBool(r.query, 'force'), volumes: queryBool(r.query, 'v') });
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/rename', (r) => {
    const name = r.query.get('name');
    if (!name) throw new InvalidArgument('missing name');
    svc.rename(r.params.id, name);
    sendEmpty(r.res, 204);
  });

  routes.add('POST', '/containers/:id/resize', (r) => {
    svc.resize(r.params.id, queryInt(r.query, 'h', 0), queryInt(r.query, 'w', 0));
    sendEmpty(r.res, 200);
  });

  routes.add('POST', '/containers/:id/wait', async (r) => {
    const condition = (r.query.get('condition') || 'not-running') as WaitCondition;
    if (!['not-running', 'next-exit', 'removed'].includes(condition)) {
      throw new InvalidArgument(`invalid condition: "${condition}"`);
    }
    const abort = new AbortController();
    // Registered before anything else happens: `start` follows on another connection within a ms.
    const result = svc.wait(r.params.id, condition, abort.signal);
    r.res.writeHead(200, { 'Content-Type': 'application/json' });
    r.res.flushHeaders();
    r.res.on('close', () => abort.abort());
    const value = await result;
    if (!r.res.destroyed) r.res.end(`${JSON.stringify(value)}\n`);
  });

  routes.add('GET', '/containers/:id/top', async (r) => {
    sendJson(r.res, 200, await svc.top(r.params.id, r.query.get('ps_args') ?? '-ef'));
  });

  routes.add('GET', '/containers/:id/changes', (r) => {
    sendJson(r.res, 200, svc.changes(r.params.id));
  });

  routes.add('GET', '/containers/:id/logs', (r) => logsRoute(svc, r));

  routes.add('POST', '/containers/:id/attach', async (r) => {
    const record = svc.get(r.params.id);
    const { rest } = await readRequestBody(r);
    const stream = queryBool(r.query, 'stream');
    const logs = queryBool(r.query, 'logs');
    const wantStdin = queryBool(r.query, 'stdin');
    const wantStdout = queryBool(r.query, 'stdout');
    const wantStderr = queryBool(r.query, 'stderr');
    const tty = record.config.Tty ?? false;
    const h = hijack(
      r,
      rest,
      tty ? 'application/vnd.docker.raw-stream' : 'application/vnd.docker.multiplexed-stream',
    );
    if (logs) {
      const abort = new AbortController();
      for await (const rec of readLog(svc.logPath(record.id), {
        follow: false,
        tail: -1,
        isFinished: () => true,
        onFinished: () => () => undefined,
        signal: abort.signal,
      })) {
        if ((rec.stream === 1 && !wantStdout) || (rec.stream === 2 && !wantStderr)) continue;
        h.socket.write(tty ? rec.data : muxFrame(rec.stream, rec.data));
      }
    }
    if (!stream) {
      h.socket.end();
      return;
    }
    await svc.attach(
      record.id,
      { socket: h.socket, stdin: wantStdin && h.isBidirectional, stdout: wantStdout, stderr: wantStderr },
      h.initialInput,
    );
  });
}

async function logsRoute(svc: ContainerService, r: ApiRequest): Promise<void> {
  const record = svc.get(r.params.id);
  const stdout = queryBool(r.query, 'stdout');
  const stderr = queryBool(r.query, 'stderr');
  if (!stdout && !stderr) throw new InvalidArgument('Bad parameters: you must choose at least one stream');
  const follow = queryBool(r.query, 'follow');
  const timestamps = queryBool(r.query, 'timestamps');
  const tailRaw = r.query.get('tail') ?? 'all';
  const tail = tailRaw === 'all' || tailRaw === '' ? -1 : Number(tailRaw);
  if (!Number.isInteger(tail)) throw new InvalidArgument(`invalid tail value: ${tailRaw}`);
  const sinceNs = parseTime(r.query.get('since'));
  const untilNs = parseTime(r.query.get('until'));
  const tty = record.config.Tty ?? false;
  r.res.writeHead(200, {});
  r.res.flushHeaders();
  const abort = new AbortController();
  r.res.on('close', () => abort.abort());
  for await (const rec of readLog(svc.logPath(record.id), {
    follow,
    tail,
    sinceNs,
    untilNs,
    isFinished: () => !svc.isRunning(record) || svc.find(record.id) === null,
    onFinished: (cb) => svc.onStopped(record.id, cb),
    signal: abort.signal,
  })) {
    if ((rec.stream === 1 && !stdout) || (rec.stream === 2 && !stderr)) continue;
    const payload = timestamps ? Buffer.concat([Buffer.from(`${rec.timestamp} `), rec.data]) : rec.data;
    if (!r.res.write(tty ? payload : muxFrame(rec.stream, payload))) {
      await new Promise((resolve) => r.res.once('drain', resolve));
    }
    if (abort.signal.aborted) break;
  }
  r.res.end();
}
