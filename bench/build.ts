import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  busyboxTar,
  type Daemon,
  fmt,
  has,
  must,
  REPO_ROOT,
  type Stats,
  sh,
  startDockerd,
  startStrata,
  stats,
  timeMs,
  tmpBase,
} from './common.js';

/**
 * bench/build: `docker build` (classic builder, DOCKER_BUILDKIT=0) of a realistic Dockerfile through
 * Strata and through Docker's dockerd side by side, plus podman when installed: cold build (no
 * cache), warm rebuild (nothing changed), rebuild after touching one small file (mtime only), rebuild
 * after editing one small file (content), and `docker commit` of a container that wrote 10 MB.
 * The context holds a 10 MB file and a tree of 2,000 small files. Environment: RUNS (5), COLD (3),
 * SKIP_DOCKER, SKIP_PODMAN, CASES (build,commit,cli). `strata build` rows: the strata CLI end to end
 * (process start-up included) against Strata, next to the docker CLI against dockerd. Both daemons
 * run at once and the runs of each case alternate between them, so load on the shared machine hits
 * both alike.
 */
const RUNS = Number(process.env.RUNS ?? 5);
const COLD = Number(process.env.COLD ?? 3);
/** Which groups to run: `build`, `commit`, `cli` (strata build), comma-separated; default all. */
const CASES = new Set((process.env.CASES ?? 'build,commit,cli').split(','));
const STRATA_BIN = path.join(REPO_ROOT, 'bin', 'strata');

const DOCKERFILE = `FROM bb:latest
ENV APP_HOME=/app LANG=C.UTF-8
RUN mkdir -p /app/data && for i in $(seq 1 200); do echo "line $i" >> /app/data/generated.txt; done
COPY big.bin /app/big.bin
COPY tree/ /app/tree/
RUN find /app/tree -type f | wc -l > /app/count.txt
RUN dd if=/dev/zero of=/app/zeros bs=1024 count=1024 2>/dev/null
WORKDIR /app
CMD ["cat", "/app/count.txt"]
`;

function makeContext(dir: string): { smallFile: string } {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'Dockerfile'), DOCKERFILE);
  fs.writeFileSync(path.join(dir, 'big.bin'), randomBytes(10 * 1024 * 1024));
  for (let d = 0; d < 20; d++) {
    const sub = path.join(dir, 'tree', `dir${d}`);
    fs.mkdirSync(sub, { recursive: true });
    for (let f = 0; f < 100; f++) fs.writeFileSync(path.join(sub, `file${f}.txt`), `content of ${d}/${f}\n`);
  }
  return { smallFile: path.join(dir, 'tree', 'dir7', 'file42.txt') };
}

interface Results {
  cold: Stats | null;
  warm: Stats | null;
  touched: Stats | null;
  edited: Stats | null;
  commit: Stats | null;
}

function buildOnce(cli: string, env: Record<string, string>, ctx: string, extra: string[] = []): number {
  return timeMs(() => {
    const r = sh(cli, ['build', '-q', ...extra, '-t', 'bench:latest', ctx], { DOCKER_BUILDKIT: '0', ...env });
    if (r.code !== 0) throw new Error(`${cli} build failed: ${r.stderr}`);
  });
}

/** One client/daemon pair measured; runs of all targets are interleaved (the machine is shared). */
interface Target {
  name: string;
  cli: string;
  env: Record<string, string>;
  /** Also measured for cold builds and commit (the strata CLI's cold build is the daemon's). */
  full: boolean;
  samples: Record<keyof Results, number[]>;
}

function target(name: string, cli: string, env: Record<string, string>, full: boolean): Target {
  return { name, cli, env, full, samples: { cold: [], warm: [], touched: [], edited: [], commit: [] } };
}

function measureBuilds(targets: Target[], ctx: string, smallFile: string): void {
  for (const t of targets) buildOnce(t.cli, t.env, ctx); // first build: fills the cache
  for (let i = 0; i < COLD; i++) {
    for (const t of targets) if (t.full) t.samples.cold.push(buildOnce(t.cli, t.env, ctx, ['--no-cache']));
  }
  for (const t of targets) buildOnce(t.cli, t.env, ctx);
  for (let i = 0; i < RUNS; i++) for (const t of targets) t.samples.warm.push(buildOnce(t.cli, t.env, ctx));
  for (let i = 0; i < RUNS; i++) {
    const time = new Date(Date.now() + (i + 1) * 1000);
    fs.utimesSync(smallFile, time, time);
    for (const t of targets) t.samples.touched.push(buildOnce(t.cli, t.env, ctx));
  }
  for (let i = 0; i < RUNS; i++) {
    fs.writeFileSync(smallFile, `edited ${i} ${Date.now()}\n`);
    for (const t of targets) t.samples.edited.push(buildOnce(t.cli, t.env, ctx));
  }
  fs.writeFileSync(smallFile, 'content of 7/42\n');
}

function measureCommits(targets: Target[]): void {
  for (let i = 0; i < RUNS; i++) {
    for (const t of targets) {
      if (!t.full) continue;
      const id = must(
        t.cli,
        [
          'run',
          '-d',
          '--network',
          'none',
          'bb:latest',
          'sh',
          '-c',
          'dd if=/dev/urandom of=/written bs=1M count=10 2>/dev/null',
        ],
        t.env,
      );
      must(t.cli, ['wait', id], t.env);
      t.samples.commit.push(timeMs(() => must(t.cli, ['commit', id, `bench-commit:${i}`], t.env)));
      sh(t.cli, ['rm', '-f', id], t.env);
    }
  }
}

function results(t: Target | null): Results | null {
  if (!t) return null;
  const of = (xs: number[]) => (xs.length > 0 ? stats(xs) : null);
  const s = t.samples;
  return {
    cold: of(s.cold),
    warm: of(s.warm),
    touched: of(s.touched),
    edited: of(s.edited),
    commit: of(s.commit),
  };
}

function row(name: string, s: Stats | null, d: Stats | null, p: Stats | null, target: string): string {
  const cell = (x: Stats | null) => (x ? fmt(x.median, 0) : 'n/a').padStart(9);
  const ratio = s && d ? fmt(s.median / d.median, 2) : 'n/a';
  return `${name.padEnd(40)}${cell(s)}${cell(d)}${cell(p)}  ${ratio.padStart(6)}  ${target}`;
}

async function main(): Promise<void> {
  const base = tmpBase('strata-bench-build-');
  const tar = busyboxTar();
  const ctxDir = path.join(base, 'ctx');
  const { smallFile } = makeContext(ctxDir);
  const strata = await startStrata(path.join(base, 'strata'));
  let docker: Daemon | null = null;
  const lines: string[] = [];
  try {
    must('docker', ['import', '-', 'bb:latest'], strata.env, tar);
    const strataApi = target('strata', 'docker', strata.env, true);
    // The strata CLI (context sync: only changed files are sent), end to end.
    const strataCli = target(
      'strata CLI',
      STRATA_BIN,
      // Its digest cache goes with the rest of the run.
      { STRATA_HOST: strata.env.DOCKER_HOST, XDG_CACHE_HOME: path.join(base, 'cache') },
      false,
    );
    let dockerTarget: Target | null = null;
    if (!process.env.SKIP_DOCKER) {
      fs.mkdirSync(path.join(base, 'docker'), { recursive: true });
      docker = await startDockerd(path.join(base, 'docker'));
      if (docker) {
        must('docker', ['import', '-', 'bb:latest'], docker.env, tar);
        dockerTarget = target('docker', 'docker', docker.env, true);
      }
    }
    const targets = [
      strataApi,
      ...(CASES.has('cli') ? [strataCli] : []),
      ...(dockerTarget ? [dockerTarget] : []),
    ];
    if (CASES.has('build')) measureBuilds(targets, ctxDir, smallFile);
    if (CASES.has('commit')) measureCommits(targets);
    const strataResults = results(strataApi)!;
    const cliResults = CASES.has('cli') ? results(strataCli) : null;
    const dockerResults = results(dockerTarget);

    let podmanResults: Results | null = null;
    if (
      !process.env.SKIP_PODMAN &&
      has('podman') &&
      sh('podman', ['import', '-', 'bb:latest'], {}, tar).code === 0
    ) {
      try {
        const podman = target('podman', 'podman', {}, true);
        if (CASES.has('build')) measureBuilds([podman], ctxDir, smallFile);
        if (CASES.has('commit')) measureCommits([podman]);
        podmanResults = results(podman);
      } catch (err) {
        lines.push(`podman: ${(err as Error).message.split('\n')[0]}`);
      }
    }

    lines.push(
      `docker build of a realistic Dockerfile (10 MB file + 2,000 small files, 3 RUNs, ENV, CMD); ms, median (cold ${COLD} runs, others ${RUNS})`,
    );
    lines.push(
      `${'case'.padEnd(40)}${'strata'.padStart(9)}${'docker'.padStart(9)}${'podman'.padStart(9)}  ${'ratio'.padStart(6)}  target`,
    );
    const s = strataResults;
    const d = dockerResults;
    const p = podmanResults;
    const c = cliResults;
    lines.push(row('cold build (--no-cache)', s.cold, d?.cold ?? null, p?.cold ?? null, '≤ 0.8'));
    lines.push(row('warm rebuild (nothing changed)', s.warm, d?.warm ?? null, p?.warm ?? null, '≤ 0.5'));
    lines.push(
      row('rebuild after touching 1 file (mtime)', s.touched, d?.touched ?? null, p?.touched ?? null, ''),
    );
    lines.push(row('rebuild after editing 1 small file', s.edited, d?.edited ?? null, p?.edited ?? null, ''));
    lines.push(row('strata build: warm rebuild', c?.warm ?? null, d?.warm ?? null, null, '≤ 0.3'));
    lines.push(row('strata build: after touching 1 file', c?.touched ?? null, d?.touched ?? null, null, ''));
    lines.push(row('strata build: after editing 1 file', c?.edited ?? null, d?.edited ?? null, null, ''));
    lines.push(
      row('commit of a container that wrote 10 MB', s.commit, d?.commit ?? null, p?.commit ?? null, '≤ 0.5'),
    );
    lines.push(
      'strata rows: the docker CLI against Strata, except "strata build" (the strata CLI, end to end); runs interleaved',
    );
    lines.push(
      `load average: ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}`,
    );
    if (!d) lines.push('docker: dockerd not available (or SKIP_DOCKER set)');
    if (!has('podman')) lines.push('podman: not installed');
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await strata.stop();
    if (docker) await docker.stop();
    sh('umount', ['-R', '-l', base]);
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
