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
 * (process start-up included) against Strata, next to the docker CLI against dockerd.
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

function measureBuilds(
  cli: string,
  env: Record<string, string>,
  ctx: string,
  smallFile: string,
  cold = COLD,
): Omit<Results, 'commit'> {
  buildOnce(cli, env, ctx); // first build: fills the cache
  const coldRuns: number[] = [];
  for (let i = 0; i < cold; i++) coldRuns.push(buildOnce(cli, env, ctx, ['--no-cache']));
  buildOnce(cli, env, ctx);
  const warm: number[] = [];
  for (let i = 0; i < RUNS; i++) warm.push(buildOnce(cli, env, ctx));
  const touched: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = new Date(Date.now() + (i + 1) * 1000);
    fs.utimesSync(smallFile, t, t);
    touched.push(buildOnce(cli, env, ctx));
  }
  const edited: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    fs.writeFileSync(smallFile, `edited ${i} ${Date.now()}\n`);
    edited.push(buildOnce(cli, env, ctx));
  }
  fs.writeFileSync(smallFile, 'content of 7/42\n');
  return {
    cold: coldRuns.length > 0 ? stats(coldRuns) : null,
    warm: stats(warm),
    touched: stats(touched),
    edited: stats(edited),
  };
}

function measureCommit(cli: string, env: Record<string, string>): Stats {
  const commit: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const id = must(
      cli,
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
      env,
    );
    must(cli, ['wait', id], env);
    commit.push(timeMs(() => must(cli, ['commit', id, `bench-commit:${i}`], env)));
    sh(cli, ['rm', '-f', id], env);
  }
  return stats(commit);
}

function measure(cli: string, env: Record<string, string>, ctx: string, smallFile: string): Results {
  const none = { cold: null, warm: null, touched: null, edited: null };
  const builds = CASES.has('build') ? measureBuilds(cli, env, ctx, smallFile) : none;
  return { ...builds, commit: CASES.has('commit') ? measureCommit(cli, env) : null };
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
    const strataResults = measure('docker', strata.env, ctxDir, smallFile);
    // The strata CLI (context sync: only changed files are sent); its cold builds are the API's.
    const strataHost = { STRATA_HOST: strata.env.DOCKER_HOST };
    const cliResults = CASES.has('cli') ? measureBuilds(STRATA_BIN, strataHost, ctxDir, smallFile, 0) : null;

    let dockerResults: Results | null = null;
    if (!process.env.SKIP_DOCKER) {
      fs.mkdirSync(path.join(base, 'docker'), { recursive: true });
      docker = await startDockerd(path.join(base, 'docker'));
      if (docker) {
        must('docker', ['import', '-', 'bb:latest'], docker.env, tar);
        dockerResults = measure('docker', docker.env, ctxDir, smallFile);
      }
    }
    let podmanResults: Results | null = null;
    if (
      !process.env.SKIP_PODMAN &&
      has('podman') &&
      sh('podman', ['import', '-', 'bb:latest'], {}, tar).code === 0
    ) {
      try {
        podmanResults = measure('podman', {}, ctxDir, smallFile);
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
      'strata rows run the docker CLI against Strata, except "strata build" (the strata CLI, end to end)',
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
