import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  busyboxTar,
  type Daemon,
  fmt,
  has,
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
 * bench/build: `docker build` (classic builder, DOCKER_BUILDKIT=0) of a realistic Dockerfile through
 * Strata and through Docker's dockerd side by side, plus podman when installed: cold build (no
 * cache), warm rebuild (nothing changed), rebuild after touching one small file (mtime only), rebuild
 * after editing one small file (content), and `docker commit` of a container that wrote 10 MB.
 * The context holds a 10 MB file and a tree of 2,000 small files. Environment: RUNS (5), COLD (3),
 * SKIP_DOCKER.
 */
const RUNS = Number(process.env.RUNS ?? 5);
const COLD = Number(process.env.COLD ?? 3);

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
  cold: Stats;
  warm: Stats;
  touched: Stats;
  edited: Stats;
  commit: Stats;
}

function buildOnce(cli: string, env: Record<string, string>, ctx: string, extra: string[] = []): number {
  return timeMs(() => {
    const r = sh(cli, ['build', '-q', ...extra, '-t', 'bench:latest', ctx], { DOCKER_BUILDKIT: '0', ...env });
    if (r.code !== 0) throw new Error(`${cli} build failed: ${r.stderr}`);
  });
}

function measure(cli: string, env: Record<string, string>, ctx: string, smallFile: string): Results {
  buildOnce(cli, env, ctx); // first build: fills the cache
  const cold: number[] = [];
  for (let i = 0; i < COLD; i++) cold.push(buildOnce(cli, env, ctx, ['--no-cache']));
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
  return {
    cold: stats(cold),
    warm: stats(warm),
    touched: stats(touched),
    edited: stats(edited),
    commit: stats(commit),
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
    const strataResults = measure('docker', strata.env, ctxDir, smallFile);
    fs.writeFileSync(smallFile, 'content of 7/42\n');

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
    if (has('podman') && sh('podman', ['import', '-', 'bb:latest'], {}, tar).code === 0) {
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
    lines.push(row('cold build (--no-cache)', s.cold, d?.cold ?? null, p?.cold ?? null, '≤ 0.8'));
    lines.push(row('warm rebuild (nothing changed)', s.warm, d?.warm ?? null, p?.warm ?? null, '≤ 0.5'));
    lines.push(
      row('rebuild after touching 1 file (mtime)', s.touched, d?.touched ?? null, p?.touched ?? null, ''),
    );
    lines.push(row('rebuild after editing 1 small file', s.edited, d?.edited ?? null, p?.edited ?? null, ''));
    lines.push(
      row('commit of a container that wrote 10 MB', s.commit, d?.commit ?? null, p?.commit ?? null, '≤ 0.5'),
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
