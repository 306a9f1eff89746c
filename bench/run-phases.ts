import * as fs from 'node:fs';
import * as path from 'node:path';
import { apiCall, busyboxTar, fmt, must, sh, startStrata, stats, timeMs, tmpBase } from './common.js';

/**
 * bench/run-phases: where the milliseconds of a container's life go inside the Strata daemon. Starts a
 * daemon with `STRATA_TRACE` (src/common/trace.ts), runs create→start→wait→rm cycles straight through
 * the Engine API and `docker run --rm` through the docker CLI, then prints the median of every traced
 * phase (ms since the span began, so each phase's own cost is the difference to the one before) and the
 * gaps between the spans of one `docker run` (exit file written → seen → wait answered).
 */
const RUNS = Number(process.env.RUNS ?? 20);

interface TraceLine {
  at: number;
  kind: string;
  id: string;
  fields: Map<string, number>;
  extra: string;
}

function parseTrace(file: string): TraceLine[] {
  const out: TraceLine[] = [];
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const parts = line.split(' ');
    if (parts[0] !== 'TRACE' || parts.length < 4) continue;
    const fields = new Map<string, number>();
    const extra: string[] = [];
    for (const p of parts.slice(4)) {
      const m = /^([a-z-]+)=([\d.]+)$/.exec(p);
      if (m && extra.length === 0) fields.set(m[1], Number(m[2]));
      else extra.push(p);
    }
    out.push({ at: Number(parts[1]), kind: parts[2], id: parts[3], fields, extra: extra.join(' ') });
  }
  return out;
}

function keyOf(l: TraceLine): string {
  if (l.kind !== 'api') return l.kind;
  const [method, route] = l.extra.split(' ');
  return `api ${method} ${route.replace(/[a-f0-9]{64}|[a-f0-9]{12}/g, ':id').replace(/\?.*$/, '')}`;
}

function summarise(lines: TraceLine[], title: string): string[] {
  const groups = new Map<string, TraceLine[]>();
  for (const l of lines) {
    const k = keyOf(l);
    if (k === 'exit-seen') continue;
    groups.set(k, [...(groups.get(k) ?? []), l]);
  }
  const out = [`${title} (median ms since the span began; n = spans)`];
  for (const [k, group] of groups) {
    const names = [...new Set(group.flatMap((l) => [...l.fields.keys()]))];
    const cells = names.map((n) => {
      const values = group.map((l) => l.fields.get(n)).filter((v): v is number => v !== undefined);
      return `${n}=${fmt(stats(values).median, 1)}`;
    });
    out.push(`  ${k.padEnd(34)} n=${String(group.length).padEnd(3)} ${cells.join(' ')}`);
  }
  return out;
}

/** exit file written (conmon, file mtime) → seen by the daemon (fs.watch). */
function exitLatency(lines: TraceLine[]): string {
  const gaps: number[] = [];
  for (const l of lines) {
    if (l.kind !== 'exit-seen') continue;
    const written = l.fields.get('written');
    if (written !== undefined) gaps.push(l.at - written);
  }
  return gaps.length > 0
    ? `exit file written → seen: median ${fmt(stats(gaps).median, 2)} ms (max ${fmt(stats(gaps).max, 2)}, n ${gaps.length})`
    : 'exit file written → seen: no data';
}

async function main(): Promise<void> {
  const base = tmpBase('strata-phases-');
  const traceFile = path.join(base, 'trace.log');
  const strata = await startStrata(path.join(base, 'strata'), { STRATA_TRACE: traceFile });
  const lines: string[] = [];
  try {
    must('docker', ['import', '-', 'bb:latest'], strata.env, busyboxTar());
    const socket = strata.env.DOCKER_HOST.replace(/^unix:\/\//, '');
    const cycle = async () => {
      const created = await apiCall(socket, 'POST', '/v1.41/containers/create', {
        Image: 'bb:latest',
        Cmd: ['true'],
        HostConfig: { NetworkMode: 'none' },
      });
      const id = (JSON.parse(created.body) as { Id: string }).Id;
      const wait = apiCall(socket, 'POST', `/v1.41/containers/${id}/wait?condition=next-exit`);
      await apiCall(socket, 'POST', `/v1.41/containers/${id}/start`);
      await wait;
      await apiCall(socket, 'DELETE', `/v1.41/containers/${id}`);
    };
    await cycle(); // warm-up
    fs.truncateSync(traceFile);
    const apiMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t0 = performance.now();
      await cycle();
      apiMs.push(performance.now() - t0);
    }
    const apiTrace = parseTrace(traceFile);
    fs.truncateSync(traceFile);
    const runMs: number[] = [];
    for (let i = 0; i < RUNS; i++)
      runMs.push(
        timeMs(() =>
          must(
            'docker',
            ['run', '--rm', '--pull', 'never', '--network', 'none', 'bb:latest', 'true'],
            strata.env,
          ),
        ),
      );
    const runTrace = parseTrace(traceFile);
    const load = sh('uptime', []).stdout.trim();
    lines.push(`load: ${load}`);
    lines.push(
      `API create→start→wait→rm cycle: median ${fmt(stats(apiMs).median)} ms (min ${fmt(stats(apiMs).min)}, n ${RUNS})`,
    );
    lines.push(...summarise(apiTrace, 'API cycle, daemon side'));
    lines.push(exitLatency(apiTrace));
    lines.push('');
    lines.push(
      `docker run --rm --pull never --network none bb:latest true: median ${fmt(stats(runMs).median)} ms (min ${fmt(stats(runMs).min)}, n ${RUNS})`,
    );
    lines.push(...summarise(runTrace, 'docker run, daemon side'));
    lines.push(exitLatency(runTrace));
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await strata.stop();
    sh('umount', ['-R', '-l', base]);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
