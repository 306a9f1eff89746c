import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  apiCall,
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
 * when installed), podman (when installed) and raw `crun run` on a prepared bundle; sequential
 * create→start→wait→rm throughput; daemon idle RSS and per-container overhead with 20 sleeping
 * containers. Everything is measured side by side in one run, interleaved (one run of each path per
 * round; throughput blocks in A-B-B-A order) so that the load of a shared machine weighs on all paths
 * alike. Containers use --network none on every engine (the private dockerd runs with --bridge=none).
 */
const RUNS = Number(process.env.RUNS ?? 20);
const SEQ = Number(process.env.SEQ ?? 50);
const SLEEPERS = Number(process.env.SLEEPERS ?? 20);
// --pull never: a missing image must never make an engine look for a registry (no DNS off this host).
const RUN_ARGS = ['run', '--rm', '--pull', 'never', '--network', 'none', 'bb:latest', 'true'];

function runOnce(env: Record<string, string>, cli = 'docker'): number {
  // podman's default RLIMIT_NOFILE and RLIMIT_NPROC are above this host's hard limits (crun refuses).
  const args =
    cli === 'podman'
      ? ['run', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', ...RUN_ARGS.slice(1)]
      : RUN_ARGS;
  return timeMs(() => {
    const r = sh(cli, args, env);
    if (r.code !== 0) throw new Error(`${cli} run failed: ${r.stderr}`);
  });
}

/** create → start → wait → rm through the docker CLI: 4 CLI processes per container. */
function sequentialCli(env: Record<string, string>, count: number): number {
  return timeMs(() => {
    for (let i = 0; i < count; i++) {
      const id = must('docker', ['create', '--pull', 'never', '--network', 'none', 'bb:latest', 'true'], env);
      must('docker', ['start', id], env);
      must('docker', ['wait', id], env);
      must('docker', ['rm', id], env);
    }
  });
}

/**
 * The same cycle straight through the Engine API, as the docker CLI sends it (wait registered with
 * `condition=next-exit` before start), one request at a time over a kept-alive connection; identical
 * for both daemons.
 */
async function sequentialApi(env: Record<string, string>, count: number): Promise<number> {
  const socket = env.DOCKER_HOST.replace(/^unix:\/\//, '');
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
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
    const waited = await wait;
    if (waited.status !== 200) throw new Error(`wait: ${waited.status} ${waited.body}`);
    const removed = await apiCall(socket, 'DELETE', `/v1.41/containers/${id}`);
    if (removed.status !== 204) throw new Error(`rm: ${removed.status} ${removed.body}`);
  }
  return performance.now() - t0;
}

/** Containers per second over SEQ cycles per engine, in blocks A B B A (B absent: A A). */
async function abba(
  a: Daemon,
  b: Daemon | null,
  measure: (d: Daemon, count: number) => number | Promise<number>,
): Promise<{ a: number; b: number | null }> {
  const half = Math.max(1, Math.floor(SEQ / 2));
  let ta = 0;
  let tb = 0;
  ta += await measure(a, half);
  if (b) tb += await measure(b, half);
  if (b) tb += await measure(b, SEQ - half);
  ta += await measure(a, SEQ - half);
  return { a: SEQ / (ta / 1000), b: b ? SEQ / (tb / 1000) : null };
}

function daemonRssMb(d: Daemon): number {
  return d.pids().reduce((a, p) => a + rssKb(p), 0) / 1024;
}

function memory(d: Daemon, shimName: string): { idleMb: number; perContainerMb: number } {
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
  const idleMb = daemonRssMb(d);
  const shimsBefore = shimRss();
  const ids: string[] = [];
  for (let i = 0; i < SLEEPERS; i++)
    ids.push(
      must(
        'docker',
        ['run', '-d', '--pull', 'never', '--network', 'none', 'bb:latest', 'sleep', '600'],
        d.env,
      ),
    );
  const loadedMb = daemonRssMb(d) + (shimRss() - shimsBefore) / 1024;
  sh('docker', ['rm', '-f', ...ids], d.env);
  return { idleMb, perContainerMb: (loadedMb - idleMb) / SLEEPERS };
}

function prepareCrunBundle(base: string, tar: Buffer): { bundle: string; root: string } | null {
  if (!has('crun')) return null;
  const bundle = path.join(base, 'bundle');
  fs.mkdirSync(path.join(bundle, 'rootfs'), { recursive: true });
  must('tar', ['-x', '-C', path.join(bundle, 'rootfs')], {}, tar);
  must('sh', ['-c', `cd '${bundle}' && crun spec`]);
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  spec.process.terminal = false;
  spec.process.args = ['true'];
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  return { bundle, root: path.join(base, 'crun-root') };
}

function row(name: string, s: Stats | null, note = ''): string {
  if (!s) return `${name.padEnd(28)} ${'n/a'.padStart(8)} ${note}`;
  return `${name.padEnd(28)} ${fmt(s.median).padStart(8)} ${fmt(s.min).padStart(8)} ${fmt(s.max).padStart(8)} ${String(s.n).padStart(4)} ${note}`;
}

function verdict(ok: boolean): string {
  return ok ? 'met' : 'MISSED';
}

async function main(): Promise<void> {
  const base = tmpBase('strata-bench-');
  const tar = busyboxTar();
  const lines: string[] = [];
  const loadBefore = sh('uptime', []).stdout.trim();
  const strata = await startStrata(path.join(base, 'strata'));
  let docker: Daemon | null = null;
  try {
    must('docker', ['import', '-', 'bb:latest'], strata.env, tar);
    const strataIdleMb = daemonRssMb(strata);
    fs.mkdirSync(path.join(base, 'docker'), { recursive: true });
    docker = process.env.SKIP_DOCKER ? null : await startDockerd(path.join(base, 'docker'));
    if (docker) must('docker', ['import', '-', 'bb:latest'], docker.env, tar);
    let podmanNote = 'not installed';
    let podman = false;
    if (has('podman') && !process.env.SKIP_PODMAN) {
      const imp = sh('podman', ['import', '-', 'bb:latest'], {}, tar);
      podman = imp.code === 0;
      podmanNote = podman ? '' : `import failed: ${imp.stderr.trim().split('\n').pop()}`;
    }
    const crun = prepareCrunBundle(base, tar);

    // Latency: one warm-up each, then RUNS rounds, each running every path once (order rotating).
    const paths: { name: string; run: () => number; samples: number[] }[] = [
      { name: 'strata', run: () => runOnce(strata.env), samples: [] },
    ];
    const dockerEnv = docker?.env;
    if (dockerEnv) paths.push({ name: 'docker', run: () => runOnce(dockerEnv), samples: [] });
    if (podman) paths.push({ name: 'podman', run: () => runOnce({}, 'podman'), samples: [] });
    let crunRuns = 0;
    if (crun)
      paths.push({
        name: 'crun',
        run: () =>
          timeMs(() =>
            must('crun', ['--root', crun.root, 'run', '--bundle', crun.bundle, `bench-${crunRuns++}`]),
          ),
        samples: [],
      });
    for (const p of [...paths]) {
      try {
        p.run();
      } catch (err) {
        if (p.name !== 'podman') throw err;
        podmanNote = `failed: ${(err as Error).message.split('\n').slice(-2).join(' ').slice(0, 120)}`;
        paths.splice(paths.indexOf(p), 1);
      }
    }
    for (let i = 0; i < RUNS; i++) {
      for (let j = 0; j < paths.length; j++) {
        const p = paths[(i + j) % paths.length];
        p.samples.push(p.run());
      }
    }
    const result = (name: string): Stats | null => {
      const p = paths.find((x) => x.name === name);
      return p && p.samples.length > 0 ? stats(p.samples) : null;
    };

    const seqApi = await abba(strata, docker, (d, n) => sequentialApi(d.env, n));
    const seqCli = await abba(strata, docker, (d, n) => sequentialCli(d.env, n));
    const strataMem = memory(strata, 'conmon');
    // The kernel keeps 15 characters of a command name: containerd-shim-runc-v2 is `containerd-shim`.
    const dockerMem = docker ? memory(docker, 'containerd-shim') : null;
    const loadAfter = sh('uptime', []).stdout.trim();

    const s = result('strata') as Stats;
    const d = result('docker');
    const c = result('crun');
    const pm = result('podman');
    lines.push(`bench/run-latency (RUNS=${RUNS} SEQ=${SEQ} SLEEPERS=${SLEEPERS})`);
    lines.push(`load before: ${loadBefore}`);
    lines.push(`load after:  ${loadAfter}`);
    lines.push('');
    lines.push(`${RUN_ARGS.join(' ')}, ms over ${RUNS} interleaved rounds (after one warm-up each)`);
    lines.push(
      `${'path'.padEnd(28)} ${'median'.padStart(8)} ${'min'.padStart(8)} ${'max'.padStart(8)} ${'n'.padStart(4)}`,
    );
    lines.push(row('strata (docker CLI)', s));
    lines.push(row('docker (dockerd, docker CLI)', d, docker ? '' : 'dockerd not available'));
    lines.push(row('podman', pm, podmanNote));
    lines.push(row('raw crun run', c, crun ? '(prepared bundle, no seccomp)' : 'crun not installed'));
    if (d)
      lines.push(
        `  strata / docker   = ${fmt(s.median / d.median, 3)}   target ≤ 0.25   ${verdict(s.median <= 0.25 * d.median)}`,
      );
    if (c)
      lines.push(
        `  strata − raw crun = ${fmt(s.median - c.median)} ms   target ≤ 150 ms   ${verdict(s.median - c.median <= 150)}`,
      );
    if (pm) lines.push(`  strata / podman   = ${fmt(s.median / pm.median, 3)}`);
    lines.push('');
    lines.push(
      `sequential create→start→wait→rm, ${SEQ} containers per engine (blocks A-B-B-A), containers/s`,
    );
    const ratio = (a: number, b: number | null) =>
      b ? `docker ${fmt(b, 2).padStart(6)}   ratio ${fmt(a / b, 2)}` : 'docker n/a';
    lines.push(
      `  Engine API (the figure for the target): strata ${fmt(seqApi.a, 2).padStart(6)}   ${ratio(seqApi.a, seqApi.b)}   target ≥ 4${seqApi.b ? `   ${verdict(seqApi.a >= 4 * seqApi.b)}` : ''}`,
    );
    lines.push(
      `  docker CLI (4 CLI processes per container, ~65 ms each; for reference): strata ${fmt(seqCli.a, 2)}   ${ratio(seqCli.a, seqCli.b)}`,
    );
    lines.push('');
    lines.push(`memory (RSS), ${SLEEPERS} sleeping containers`);
    lines.push(
      `  strata daemon idle ${fmt(strataIdleMb)} MB after start-up + import (target ≤ 80: ${verdict(strataIdleMb <= 80)}), ${fmt(strataMem.idleMb)} MB after the runs above`,
    );
    lines.push(
      `  strata per container ${fmt(strataMem.perContainerMb, 2)} MB (daemon growth + conmon; target ≤ 3: ${verdict(strataMem.perContainerMb <= 3)})`,
    );
    if (dockerMem)
      lines.push(
        `  docker dockerd+containerd idle ${fmt(dockerMem.idleMb)} MB, per container ${fmt(dockerMem.perContainerMb, 2)} MB (daemons + shim)`,
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
