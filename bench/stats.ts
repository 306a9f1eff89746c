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
 */
const CONTAINERS = Number(process.env.CONTAINERS ?? 50);
const RUNS = Number(process.env.RUNS ?? 10);
const COLD_RUNS = Number(process.env.COLD_RUNS ?? 3);

interface Figures {
  statsWarm: Stats;
  statsCold: Stats;
  ps: Stats;
}

function startContainers(env: Record<string, string>): string[] {
  const ids: string[] = [];
  for (let i = 0; i < CONTAINERS; i++)
    ids.push(must('docker', ['run', '-d', '--network', 'none', 'bb:latest', 'sleep', '3600'], env));
  return ids;
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

async function measure(d: Daemon): Promise<Figures> {
  const env = d.env;
  statsOnce(env); // warm-up (CLI binary in the page cache)
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) warm.push(statsOnce(env));
  const cold: number[] = [];
  for (let i = 0; i < COLD_RUNS; i++) {
    await new Promise((r) => setTimeout(r, 6000));
    cold.push(statsOnce(env));
  }
  const ps: number[] = [];
  must('docker', ['ps'], env);
  for (let i = 0; i < RUNS; i++) {
    ps.push(
      timeMs(() => {
        const r = sh('docker', ['ps', '-q'], env);
        if (r.stdout.trim().split('\n').length !== CONTAINERS) throw new Error('docker ps: wrong count');
      }),
    );
  }
  return { statsWarm: stats(warm), statsCold: stats(cold), ps: stats(ps) };
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
    const s = await measure(strata);
    sh(
      'docker',
      ['rm', '-f', ...sh('docker', ['ps', '-aq'], strata.env).stdout.split('\n').filter(Boolean)],
      strata.env,
    );

    let k: Figures | null = null;
    fs.mkdirSync(path.join(base, 'docker'), { recursive: true });
    docker = process.env.SKIP_DOCKER ? null : await startDockerd(path.join(base, 'docker'));
    if (docker) {
      must('docker', ['import', '-', 'bb:latest'], docker.env, tar);
      startContainers(docker.env);
      k = await measure(docker);
    }
    lines.push(`${CONTAINERS} running containers; ms, median of ${RUNS} (cold: ${COLD_RUNS}, 6 s apart)`);
    lines.push(
      `${'command'.padEnd(34)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)} ${'n'.padStart(4)}`,
    );
    lines.push(row('strata stats --no-stream (warm)', s.statsWarm));
    lines.push(row('strata stats --no-stream (cold)', s.statsCold));
    lines.push(row('docker stats --no-stream', k?.statsWarm ?? null));
    lines.push(row('docker stats --no-stream (6 s idle)', k?.statsCold ?? null));
    lines.push(row('strata ps', s.ps));
    lines.push(row('docker ps', k?.ps ?? null));
    if (k) {
      lines.push(
        `ratio stats strata/docker: warm ${fmt(s.statsWarm.median / k.statsWarm.median, 2)}, cold ${fmt(s.statsCold.median / k.statsCold.median, 2)} (target ≤ 0.5)`,
      );
      lines.push(`ratio ps strata/docker: ${fmt(s.ps.median / k.ps.median, 2)} (target ≤ 0.5)`);
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
