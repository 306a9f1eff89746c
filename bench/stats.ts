import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import {
  busyboxTar,
  type Daemon,
  fmt,
  must,
  REPO_ROOT,
  sh,
  startDockerd,
  startStrata,
  stats,
  timeMs,
  tmpBase,
} from './common.js';

/**
 * bench/stats: with CONTAINERS running containers on each daemon, Strata vs Docker (a private dockerd,
 * bench/common.ts), interleaved so both see the same load:
 *
 *  - `docker stats --no-stream` (the docker CLI on both). It costs the CLI a list + one stats request
 *    per container (concurrently) + a fixed 500 ms pause before it prints. A one-shot stats request
 *    needs two samples for CPU %: dockerd waits for its collector's next tick (~1 s); Strata takes its
 *    previous sample of the container when one is at most 5 s old ("warm", e.g. a second `docker
 *    stats` in a row) and otherwise samples twice 250 ms apart ("cold"). Cold runs wait 6 s first.
 *  - `docker ps` through the docker CLI on both: one ping + one list request, mostly the CLI's own
 *    start-up (the same binary on both sides).
 *  - `GET /containers/json` straight over each daemon's unix socket (a new connection per request, as
 *    a CLI makes): what `docker ps` and `docker ps -a -s` cost the daemon.
 *  - `strata ps` (bin/strata, Node) against Strata vs `docker ps` against dockerd, process start to
 *    exit; `node -e 0` is shown as the floor any Node CLI pays.
 *
 * Environment: CONTAINERS (50), RUNS (10), COLD_RUNS (3), API_RUNS (100), SKIP_DOCKER, SKIP_STATS.
 */
const CONTAINERS = Number(process.env.CONTAINERS ?? 50);
const RUNS = Number(process.env.RUNS ?? 10);
const COLD_RUNS = Number(process.env.COLD_RUNS ?? 3);
const API_RUNS = Number(process.env.API_RUNS ?? 100);
const SKIP_STATS = Boolean(process.env.SKIP_STATS);
const TARGET = 0.5;

/** The list queries the docker CLI sends for `docker ps` and `docker ps -a -s`. */
const PS_QUERY = '/v1.41/containers/json';
const PS_ALL_SIZE_QUERY = '/v1.41/containers/json?all=1&size=1';

interface Figures {
  statsWarm: number[];
  statsCold: number[];
  psCli: number[];
  apiPs: number[];
  apiPsAllSize: number[];
  /** `strata ps` for Strata, `docker ps` for Docker: each engine's own CLI. */
  ownCli: number[];
  nodeFloor: number[];
  dockerFloor: number[];
}

function startContainers(env: Record<string, string>): void {
  for (let i = 0; i < CONTAINERS; i++)
    must('docker', ['run', '-d', '--network', 'none', 'bb:latest', 'sleep', '3600'], env);
}

function socketOf(d: Daemon): string {
  return d.env.DOCKER_HOST.slice('unix://'.length);
}

function statsOnce(env: Record<string, string>): number {
  let lines = 0;
  const ms = timeMs(() => {
    const r = sh(
      'docker',
      ['stats', '--no-stream', '--format', '{{.ID}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}'],
      env,
    );
    if (r.code !== 0) throw new Error(`docker stats failed: ${r.stderr}`);
    lines = r.stdout.trim().split('\n').length;
  });
  if (lines !== CONTAINERS)
    throw new Error(`docker stats showed ${lines} containers, expected ${CONTAINERS}`);
  return ms;
}

/** Runs a `ps` command line and checks it printed a header + one line per container. */
function psOnce(cmd: string, args: string[], env: Record<string, string>): number {
  let out = '';
  const ms = timeMs(() => {
    const r = sh(cmd, args, env);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
    out = r.stdout;
  });
  const lines = out.trim().split('\n').length;
  if (lines !== CONTAINERS + 1)
    throw new Error(`${cmd} ps printed ${lines} lines, expected ${CONTAINERS + 1}`);
  return ms;
}

function strataPs(d: Daemon): number {
  // NODE_OPTIONS must not slow the CLI down (or speed it up) behind the bench's back.
  return psOnce(path.join(REPO_ROOT, 'bin', 'strata'), ['-H', d.env.DOCKER_HOST, 'ps'], { NODE_OPTIONS: '' });
}

/** The docker CLI starting and printing its version: no daemon involved. */
function dockerFloor(): number {
  return timeMs(() => must('docker', ['--version'], {}));
}

function nodeFloor(): number {
  return timeMs(() => must(process.execPath, ['-e', '0'], { NODE_OPTIONS: '' }));
}

/** One GET over a new unix-socket connection; resolves with the latency in ms. */
function apiGet(socket: string, apiPath: string, expect: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = http.get({ socketPath: socket, path: apiPath, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        const list = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown[];
        if (res.statusCode !== 200 || list.length !== expect)
          reject(new Error(`GET ${apiPath} on ${socket}: ${res.statusCode}, ${list.length} entries`));
        else resolve(ms);
      });
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/**
 * Runs each measurement on every daemon in turn, so both see the same load (this VM is shared and
 * its load varies by the minute).
 */
async function measureInterleaved(strata: Daemon, docker: Daemon | null): Promise<Map<Daemon, Figures>> {
  const daemons = docker ? [strata, docker] : [strata];
  const out = new Map<Daemon, Figures>(
    daemons.map((d) => [
      d,
      {
        statsWarm: [],
        statsCold: [],
        psCli: [],
        apiPs: [],
        apiPsAllSize: [],
        ownCli: [],
        nodeFloor: [],
        dockerFloor: [],
      },
    ]),
  );
  const fig = (d: Daemon) => out.get(d) as Figures;
  const ownCli = (d: Daemon) => (d === strata ? strataPs(d) : psOnce('docker', ['ps'], d.env));
  for (const d of daemons) {
    // Warm-up: binaries and files in the page cache, first-request paths taken.
    if (!SKIP_STATS) statsOnce(d.env);
    psOnce('docker', ['ps'], d.env);
    ownCli(d);
    await apiGet(socketOf(d), PS_ALL_SIZE_QUERY, CONTAINERS);
  }
  if (!SKIP_STATS) {
    for (let i = 0; i < RUNS; i++) for (const d of daemons) fig(d).statsWarm.push(statsOnce(d.env));
    for (let i = 0; i < COLD_RUNS; i++) {
      await new Promise((r) => setTimeout(r, 6000));
      for (const d of daemons) fig(d).statsCold.push(statsOnce(d.env));
    }
  }
  for (let i = 0; i < RUNS; i++) {
    for (const d of daemons) {
      fig(d).psCli.push(psOnce('docker', ['ps'], d.env));
      fig(d).ownCli.push(ownCli(d));
    }
    fig(strata).nodeFloor.push(nodeFloor());
    fig(strata).dockerFloor.push(dockerFloor());
  }
  for (let i = 0; i < API_RUNS; i++) {
    for (const d of daemons) {
      fig(d).apiPs.push(await apiGet(socketOf(d), PS_QUERY, CONTAINERS));
      fig(d).apiPsAllSize.push(await apiGet(socketOf(d), PS_ALL_SIZE_QUERY, CONTAINERS));
    }
  }
  return out;
}

const COLUMNS = `${'measurement (ms)'.padEnd(44)} ${'strata'.padStart(8)} ${'docker'.padStart(8)} ${'ratio'.padStart(6)} ${'target'.padStart(7)}  strata min/max, n`;

function row(name: string, s: number[], k: number[] | null, target: number | null = TARGET): string {
  if (s.length === 0) return `${name.padEnd(44)} ${'skipped'.padStart(8)}`;
  const a = stats(s);
  const b = k && k.length > 0 ? stats(k) : null;
  const ratio = b ? a.median / b.median : null;
  const verdict = ratio === null || target === null ? '' : ratio <= target ? ' met' : ' MISSED';
  return (
    `${name.padEnd(44)} ${fmt(a.median).padStart(8)} ${(b ? fmt(b.median) : 'n/a').padStart(8)} ` +
    `${(ratio === null ? '' : fmt(ratio, 2)).padStart(6)} ${(target === null ? '' : `≤ ${target}`).padStart(7)}` +
    `  ${fmt(a.min)}/${fmt(a.max)}, ${a.n}${verdict}`
  );
}

async function main(): Promise<void> {
  const base = tmpBase('strata-bench-stats-');
  const tar = busyboxTar();
  const strata = await startStrata(path.join(base, 'strata'));
  let docker: Daemon | null = null;
  const lines: string[] = [];
  try {
    must('docker', ['import', '-', 'bb:latest'], strata.env, tar);
    startContainers(strata.env);
    fs.mkdirSync(path.join(base, 'docker'), { recursive: true });
    docker = process.env.SKIP_DOCKER ? null : await startDockerd(path.join(base, 'docker'));
    if (docker) {
      must('docker', ['import', '-', 'bb:latest'], docker.env, tar);
      startContainers(docker.env);
    }
    const figures = await measureInterleaved(strata, docker);
    const s = figures.get(strata) as Figures;
    const k = docker ? (figures.get(docker) ?? null) : null;
    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    lines.push(
      `${CONTAINERS} running containers per daemon; medians in ms; ${RUNS} runs per CLI row (stats cold: ${COLD_RUNS}, ` +
        `6 s idle before each), ${API_RUNS} per API row; interleaved; load average ${load}`,
    );
    if (!docker) lines.push('dockerd not available: no comparison');
    lines.push(COLUMNS);
    lines.push(row('docker stats --no-stream (warm)', s.statsWarm, k?.statsWarm ?? null));
    lines.push(row('docker stats --no-stream (cold: 6 s idle)', s.statsCold, k?.statsCold ?? null));
    lines.push(row('docker ps (docker CLI on both)', s.psCli, k?.psCli ?? null));
    lines.push(
      row('docker --version (floor of the docker CLI) vs docker ps', s.dockerFloor, k?.psCli ?? null, null),
    );
    lines.push(row('API GET /containers/json (ps)', s.apiPs, k?.apiPs ?? null));
    lines.push(
      row('API GET /containers/json?all=1&size=1 (ps -as)', s.apiPsAllSize, k?.apiPsAllSize ?? null),
    );
    lines.push(row('strata ps vs docker ps (own CLIs)', s.ownCli, k?.ownCli ?? null));
    lines.push(row('node -e 0 (floor of any Node CLI) vs docker ps', s.nodeFloor, k?.ownCli ?? null, null));
    if (process.env.NODE_EXTRA_CA_CERTS)
      lines.push(
        'note: NODE_EXTRA_CA_CERTS is set: `node -e 0` parses that bundle at start-up; bin/strata (strata ps) starts Node without it.',
      );
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await strata.stop();
    if (docker) await docker.stop();
    sh('umount', ['-R', '-l', base]);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
