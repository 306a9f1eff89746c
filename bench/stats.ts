import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  busyboxTar,
  type Daemon,
  fmt,
  must,
  type Stats,
  sh,
  startDockerd,
  startStrata,
  stats,
  timeMs,
  tmpBase,
} from './common.js';

/**
 * bench/stats: latency of `docker stats --no-stream` (every running container) and of `docker ps`
 * with CONTAINERS running containers, Strata vs Docker (dockerd from docker.io, when installed), both
 * driven by the same docker CLI.
 *
 * `stats --no-stream` costs, for the CLI, a list + one stats request per container (concurrently) + a
 * fixed 500 ms pause before it prints. A one-shot stats request needs two samples for CPU %: dockerd
 * waits for its collector's next tick (~1 s); Strata takes its previous sample of the container when
 * one is at most 5 s old ("warm", e.g. a second `docker stats` in a row or a running `docker stats`)
 * and otherwise samples twice 250 ms apart ("cold"). Both are reported; cold runs wait 6 s first.
 * `ps` is one list request: both figures are mostly the docker CLI's own start-up.
 */
const CONTAINERS = Number(process.env.CONTAINERS ?? 50);
const RUNS = Number(process.env.RUNS ?? 10);
const COLD_RUNS = Number(process.env.COLD_RUNS ?? 3);

interface Figures {
  statsWarm: number[];
  statsCold: number[];
  ps: number[];
}

function startContainers(env: Record<string, string>): void {
  for (let i = 0; i < CONTAINERS; i++)
    must('docker', ['run', '-d', '--network', 'none', 'bb:latest', 'sleep', '3600'], env);
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

function psOnce(env: Record<string, string>): number {
  return timeMs(() => {
    const r = sh('docker', ['ps', '-q'], env);
    if (r.stdout.trim().split('\n').length !== CONTAINERS) throw new Error('docker ps: wrong count');
  });
}

/**
 * Runs each measurement on every daemon in turn, so both see the same load (this VM is shared and
 * its load varies by the minute).
 */
async function measureInterleaved(daemons: Daemon[]): Promise<Map<Daemon, Figures>> {
  const out = new Map<Daemon, Figures>(daemons.map((d) => [d, { statsWarm: [], statsCold: [], ps: [] }]));
  for (const d of daemons) {
    statsOnce(d.env); // warm-up (CLI binary in the page cache)
    psOnce(d.env);
  }
  for (let i = 0; i < RUNS; i++) for (const d of daemons) out.get(d)?.statsWarm.push(statsOnce(d.env));
  for (let i = 0; i < COLD_RUNS; i++) {
    await new Promise((r) => setTimeout(r, 6000));
    for (const d of daemons) out.get(d)?.statsCold.push(statsOnce(d.env));
  }
  for (let i = 0; i < RUNS; i++) for (const d of daemons) out.get(d)?.ps.push(psOnce(d.env));
  return out;
}

function row(name: string, s: Stats | null): string {
  if (!s) return `${name.padEnd(34)} ${'n/a'.padStart(8)}`;
  return `${name.padEnd(34)} ${fmt(s.median).padStart(8)} ${fmt(s.min).padStart(8)} ${fmt(s.max).padStart(8)} ${String(s.n).padStart(4)}`;
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
    const figures = await measureInterleaved(docker ? [strata, docker] : [strata]);
    const s = figures.get(strata) as Figures;
    const k = docker ? (figures.get(docker) ?? null) : null;
    const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
    lines.push(
      `${CONTAINERS} running containers per daemon; ms; ${RUNS} runs (cold: ${COLD_RUNS}, 6 s idle before each), interleaved; load average ${load}`,
    );
    lines.push(
      `${'command'.padEnd(34)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)} ${'n'.padStart(4)}`,
    );
    lines.push(row('strata stats --no-stream (warm)', stats(s.statsWarm)));
    lines.push(row('docker stats --no-stream', k ? stats(k.statsWarm) : null));
    lines.push(row('strata stats --no-stream (cold)', stats(s.statsCold)));
    lines.push(row('docker stats --no-stream (6 s idle)', k ? stats(k.statsCold) : null));
    lines.push(row('strata ps', stats(s.ps)));
    lines.push(row('docker ps', k ? stats(k.ps) : null));
    if (k) {
      const ratio = (a: number[], b: number[]) => fmt(stats(a).median / stats(b).median, 2);
      lines.push(
        `ratio stats strata/docker: warm ${ratio(s.statsWarm, k.statsWarm)}, cold ${ratio(s.statsCold, k.statsCold)} (target ≤ 0.5)`,
      );
      lines.push(`ratio ps strata/docker: ${ratio(s.ps, k.ps)} (target ≤ 0.5)`);
    } else lines.push('dockerd not available: no comparison');
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await strata.stop();
    if (docker) await docker.stop();
    sh('umount', ['-R', '-l', base]);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
