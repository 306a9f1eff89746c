import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** Shared helpers for the benchmark scripts: timing, stats, daemons to compare against. */
export const REPO_ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
})();

export function sh(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  input?: Buffer,
): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { env: { ...process.env, ...env }, input, maxBuffer: 256 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout?.toString() ?? '', stderr: r.stderr?.toString() ?? '' };
}

export function must(cmd: string, args: string[], env: Record<string, string> = {}, input?: Buffer): string {
  const r = sh(cmd, args, env, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}

/**
 * Extra node flags for the Strata processes a bench starts (daemon, registry), e.g.
 * `BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"` to profile them (NODE_OPTIONS refuses --cpu-prof).
 */
export function benchNodeArgs(): string[] {
  return (process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
}

export function timeMs(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

export interface Stats {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return {
    median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2,
    min: s[0],
    max: s[s.length - 1],
    n: s.length,
  };
}

/** One Engine API request over a unix socket (Node 20's global agent keeps connections alive). */
export function apiCall(
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

export function has(binary: string): boolean {
  return sh('sh', ['-c', `command -v ${binary}`]).code === 0;
}

export async function waitForSocket(socket: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(socket);
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${socket}`);
}

export interface Daemon {
  name: string;
  /** A string found in the command line of this daemon's per-container helper processes. */
  marker: string;
  env: Record<string, string>;
  pids: () => number[];
  stop: () => Promise<void>;
}

export function busyboxTar(): Buffer {
  const r = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'busybox-rootfs.sh')], {
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error('busybox rootfs failed');
  return r.stdout;
}

function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function startStrata(base: string, extraEnv: Record<string, string> = {}): Promise<Daemon> {
  const socket = path.join(base, 'strata.sock');
  const child = spawn(
    process.execPath,
    [
      ...benchNodeArgs(),
      '--max-semi-space-size=1',
      path.join(REPO_ROOT, 'bin', 'strata'),
      'daemon',
      '--root',
      path.join(base, 'root'),
      '--socket',
      socket,
      '--log-level',
      'warn',
    ],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
      // STRATA_LOOPBACK_ONLY: the daemon never contacts a registry off this host.
      env: { ...process.env, ...extraEnv, STRATA_LOOPBACK_ONLY: '1' },
    },
  );
  await waitForSocket(socket);
  const env = { DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(base, 'cfg') };
  return {
    name: 'strata',
    marker: base,
    env,
    pids: () => [child.pid ?? 0],
    stop: async () => {
      const ids = sh('docker', ['ps', '-aq'], env).stdout.split('\n').filter(Boolean);
      if (ids.length) sh('docker', ['rm', '-f', ...ids], env);
      await stopChild(child);
    },
  };
}

/** Debian's dockerd on a private socket and data root (bench only; never in tests or CI). */
export async function startDockerd(
  base: string,
  opts: {
    /** dockerd's network flags; by default no bridge and no iptables. */
    networkArgs?: string[];
    /** Undoes what the caller set up on the host for this dockerd; runs after it stopped or failed. */
    cleanupHost?: () => void;
  } = {},
): Promise<Daemon | null> {
  if (!has('dockerd') || !has('containerd')) return null;
  const cleanupHost = opts.cleanupHost ?? (() => {});
  const socket = path.join(base, 'docker.sock');
  const child = spawn(
    'dockerd',
    [
      '--host',
      `unix://${socket}`,
      '--data-root',
      path.join(base, 'data'),
      '--exec-root',
      path.join(base, 'exec'),
      '--pidfile',
      path.join(base, 'docker.pid'),
      ...(opts.networkArgs ?? ['--iptables=false', '--ip6tables=false', '--bridge=none']),
      '--containerd-namespace',
      'strata-bench',
      '--containerd-plugins-namespace',
      'strata-bench-p',
    ],
    { stdio: ['ignore', 'ignore', fs.openSync(path.join(base, 'dockerd.log'), 'w')] },
  );
  try {
    await waitForSocket(socket, 60_000);
  } catch {
    child.kill('SIGKILL');
    cleanupHost();
    return null;
  }
  const env = { DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: path.join(base, 'cfg') };
  return {
    name: 'docker',
    marker: 'strata-bench',
    env,
    // dockerd and the containerd it started (not any other dockerd on the host).
    pids: () => [child.pid ?? 0, ...childPids(child.pid ?? 0).filter((p) => commName(p) === 'containerd')],
    stop: async () => {
      const ids = sh('docker', ['ps', '-aq'], env).stdout.split('\n').filter(Boolean);
      if (ids.length) sh('docker', ['rm', '-f', ...ids], env);
      await stopChild(child);
      cleanupHost();
    },
  };
}

export function childPids(pid: number): number[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/))
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

export function commName(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export function pidsByName(name: string): number[] {
  return sh('pgrep', ['-x', name]).stdout.split('\n').filter(Boolean).map(Number);
}

export function tmpBase(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function fmt(n: number, digits = 1): string {
  return n.toFixed(digits);
}
