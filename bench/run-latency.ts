import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import {
  busyboxTar,
  type Daemon,
  fmt,
  has,
  must,
  pidsByName,
  rssKb,
  type Stats,
  sh,
  startDockerd,
  startStrata,
  stats,
  timeMs,
  tmpBase,
} from './common.js';

/**
 * bench/run-latency: `run --rm <busybox> true` latency through Strata, Docker (dockerd from docker.io,
 * when installed), podman (when installed) and raw `crun run` on a prepared bundle, side by side in one
 * run; sequential create→start→wait→rm throughput; daemon idle RSS and per-container overhead with 20
 * sleeping containers. All containers use --network none (Strata's engine core has no bridge yet).
 */
const RUNS = Number(process.env.RUNS ?? 20);
const SEQ = Number(process.env.SEQ ?? 50);
const SLEEPERS = Number(process.env.SLEEPERS ?? 20);

function runLatency(env: Record<string, string>, cli = 'docker', extra: string[] = []): Stats {
  const samples: number[] = [];
  must(cli, ['run', '--rm', '--network', 'none', ...extra, 'bb:latest', 'true'], env); // warm-up
  for (let i = 0; i < RUNS; i++) {
    samples.push(
      timeMs(() => {
        const r = sh(cli, ['run', '--rm', '--network', 'none', ...extra, 'bb:latest', 'true'], env);
        if (r.code !== 0) throw new Error(`${cli} run failed: ${r.stderr}`);
      }),
    );
  }
  return stats(samples);
}

function sequential(env: Record<string, string>): number {
  const t = timeMs(() => {
    for (let i = 0; i < SEQ; i++) {
      const id = must('docker', ['create', '--network', 'none', 'bb:latest', 'true'], env);
      must('docker', ['start', id], env);
      must('docker', ['wait', id], env);
      must('docker', ['rm', id], env);
    }
  });
  return SEQ / (t / 1000);
}

function apiCall(
  socket: string,
  method: string,
  apiPath: string,
  body?: unknown,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        socketPath: socket,
        method,
        path: apiPath,
        headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

/** The same cycle straight through the Engine API (no CLI start-up in the figure). */
async function sequentialApi(env: Record<string, string>): Promise<number> {
  const socket = env.DOCKER_HOST.replace(/^unix:\/\//, '');
  const t0 = performance.now();
  for (let i = 0; i < SEQ; i++) {
    const created = await apiCall(socket, 'POST', '/v1.41/containers/create', {
      Image: 'bb:latest',
      Cmd: ['true'],
      HostConfig: { NetworkMode: 'none' },
    });
    if (created.status !== 201) throw new Error(`create: ${created.status} ${created.body}`);
    const id = (JSON.parse(created.body) as { Id: string }).Id;
    const wait = apiCall(socket, 'POST', `/v1.41/containers/${id}/wait?condition=next-exit`);
    const started = await apiCall(socket, 'POST', `/v1.41/containers/${id}/start`);
    if (started.status !== 204) throw new Error(`start: ${started.status} ${started.body}`);
    await wait;
    const removed = await apiCall(socket, 'DELETE', `/v1.41/containers/${id}`);
    if (removed.status !== 204) throw new Error(`rm: ${removed.status} ${removed.body}`);
  }
  return SEQ / ((performance.now() - t0) / 1000);
}

function memory(d: Daemon, shimName: string): { idleMb: number; perContainerMb: number } {
  const daemonRss = () => d.pids().reduce((a, p) => a + rssKb(p), 0);
  // Per-container helpers (conmon / containerd-shim) started by this daemon: they are re-parented to
  // PID 1, so find them by name and by a command line that mentions this daemon's root.
  const shimRss = () =>
    pidsByName(shimName)
      .filter((p) => {
        try {
          return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(d.marker);
        } catch {
          return false;
        }
      })
      .reduce((a, p) => a + rssKb(p), 0);
  const idleKb = daemonRss();
  const shimsBefore = shimRss();
  const ids: string[] = [];
  for (let i = 0; i < SLEEPERS; i++)
    ids.push(must('docker', ['run', '-d', '--network', 'none', 'bb:latest', 'sleep', '600'], d.env));
  const loadedKb = daemonRss() + shimRss() - shimsBefore;
  sh('docker', ['rm', '-f', ...ids], d.env);
  return { idleMb: idleKb / 1024, perContainerMb: (loadedKb - idleKb) / 1024 / SLEEPERS };
}

function rawCrun(base: string, tar: Buffer): Stats | null {
  if (!has('crun')) return null;
  const bundle = path.join(base, 'bundle');
  fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
  must('tar', ['-x', '-C', path.join(bundle, 'rootfs')], {}, tar);
  must('sh', ['-c', `cd '${bundle}' && crun spec`]);
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['true'];
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  const root = path.join(base, 'crun-root');
  const samples: number[] = [];
  for (let i = 0; i <= RUNS; i++) {
    const ms = timeMs(() => must('crun', ['--root', root, 'run', '--bundle', bundle, `bench-${i}`]));
    if (i > 0) samples.push(ms);
  }
  return stats(samples);
}

function row(name: string, s: Stats | null, note = ''): string {
  if (!s) return `${name.padEnd(28)} ${'n/a'.padStart(8)} ${note}`;
  return `${name.padEnd(28)} ${fmt(s.median).padStart(8)} ${fmt(s.min).padStart(8)} ${fmt(s.max).padStart(8)} ${String(s.n).padStart(4)} ${note}`;
}

async function main(): Promise<void> {
  const base = tmpBase('strata-bench-');
  const tar = busyboxTar();
  const results: Record<string, Stats | null> = {};
  const lines: string[] = [];
  const strata = await startStrata(path.join(base, 'strata'));
  let docker: Daemon | null = null;
  try {
    must('docker', ['import', '-', 'bb:latest'], strata.env, tar);
    const strataIdleMb = strata.pids().reduce((a, p) => a + rssKb(p), 0) / 1024;
    results.strata = runLatency(strata.env);
    const strataSeq = sequential(strata.env);
    const strataSeqApi = await sequentialApi(strata.env);
    const strataMem = memory(strata, 'conmon');

    fs.mkdirSync(path.join(base, 'docker'), { recursive: true });
    docker = process.env.SKIP_DOCKER ? null : await startDockerd(path.join(base, 'docker'));
    let dockerSeq: number | null = null;
    let dockerSeqApi: number | null = null;
    let dockerMem: { idleMb: number; perContainerMb: number } | null = null;
    if (docker) {
      must('docker', ['import', '-', 'bb:latest'], docker.env, tar);
      results.docker = runLatency(docker.env);
      dockerSeq = sequential(docker.env);
      dockerSeqApi = await sequentialApi(docker.env);
      dockerMem = memory(docker, 'containerd-shim-runc-v2');
    }
    results.podman = null;
    let podmanNote = 'not installed';
    if (has('podman')) {
      const imp = sh('podman', ['import', '-', 'bb:latest'], {}, tar);
      try {
        results.podman = imp.code === 0 ? runLatency({}, 'podman') : null;
        podmanNote = imp.code === 0 ? '' : `import failed: ${imp.stderr.trim().split('\n').pop()}`;
      } catch (err) {
        podmanNote = `failed: ${(err as Error).message.split('\n').slice(-2).join(' ').slice(0, 120)}`;
      }
    }
    results.crun = rawCrun(base, tar);

    lines.push(`run --rm bb true, ms over ${RUNS} runs (after one warm-up)`);
    lines.push(
      `${'path'.padEnd(28)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)} ${'n'.padStart(4)}`,
    );
    lines.push(row('strata (docker CLI)', results.strata));
    lines.push(row('docker (dockerd 20.10)', results.docker ?? null, docker ? '' : 'dockerd not available'));
    lines.push(row('podman', results.podman, podmanNote));
    lines.push(row('raw crun run', results.crun));
    const s = results.strata!.median;
    if (results.docker)
      lines.push(`ratio strata/docker: ${fmt(s / results.docker.median, 3)} (target ≤ 0.25)`);
    if (results.crun) lines.push(`strata − raw crun: ${fmt(s - results.crun.median)} ms (target ≤ 150)`);
    if (results.podman) lines.push(`ratio strata/podman: ${fmt(s / results.podman.median, 3)}`);
    lines.push('');
    lines.push(
      `sequential create→start→wait→rm of ${SEQ} containers (containers/s), through the docker CLI and straight through the API`,
    );
    lines.push(
      `API:  strata ${fmt(strataSeqApi, 2)}${dockerSeqApi ? `   docker ${fmt(dockerSeqApi, 2)}   ratio ${fmt(strataSeqApi / dockerSeqApi, 2)} (target ≥ 4)` : ''}`,
    );
    lines.push(
      `CLI:  strata ${fmt(strataSeq, 2)}${dockerSeq ? `   docker ${fmt(dockerSeq, 2)}   ratio ${fmt(strataSeq / dockerSeq, 2)} (target ≥ 4)` : ''}`,
    );
    lines.push('');
    lines.push(`memory with ${SLEEPERS} sleeping containers`);
    lines.push(
      `strata daemon idle RSS ${fmt(strataIdleMb)} MB after start-up (target ≤ 80), ${fmt(strataMem.idleMb)} MB after the runs above; per container ${fmt(strataMem.perContainerMb, 2)} MB (daemon growth + conmon; target ≤ 3)`,
    );
    if (dockerMem)
      lines.push(
        `docker dockerd+containerd idle RSS ${fmt(dockerMem.idleMb)} MB, per container ${fmt(dockerMem.perContainerMb, 2)} MB (daemons + shim)`,
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
