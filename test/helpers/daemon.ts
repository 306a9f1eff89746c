import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { daemonTag, sweep } from './network-sweep.js';

/**
 * Integration-test harness: starts a real Strata daemon on a temporary root and socket and runs the
 * real docker CLI against it (DOCKER_HOST=unix://…). Each test file starts its own daemon, so files can
 * run in parallel and never see each other's containers.
 */
export const REPO_ROOT = findRepoRoot();
export const STRATA_BIN = path.join(REPO_ROOT, 'bin', 'strata');

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  input?: string | Buffer;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** Runs a command to completion, collecting output; never throws on a non-zero exit. */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...opts.env },
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : -1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export interface TestDaemon {
  root: string;
  socket: string;
  /** Environment for docker CLI invocations (DOCKER_HOST, a private DOCKER_CONFIG). */
  env: Record<string, string>;
  process: ChildProcess;
  /** Lines the daemon printed (stderr), for diagnosing failures. */
  log(): string;
  docker(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Like docker() but throws with the output unless the exit code is 0; returns trimmed stdout. */
  dockerOk(args: string[], opts?: RunOptions): Promise<string>;
  strata(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Raw Engine API request over the socket. */
  api(
    method: string,
    apiPath: string,
    body?: unknown,
  ): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }>;
  /** SIGKILL the daemon (containers must survive). */
  kill(): Promise<void>;
  /** Start the daemon again on the same root and socket. */
  restart(): Promise<void>;
  /** Stop the daemon, remove every container it knows, unmount, delete the root. */
  cleanup(): Promise<void>;
}

export interface DaemonOptions {
  extraArgs?: string[];
  /** Extra environment for the daemon (e.g. STRATA_TRACE). */
  env?: Record<string, string>;
}

export async function startDaemon(opts: DaemonOptions = {}): Promise<TestDaemon> {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-test-'));
  const root = path.join(base, 'root');
  const socket = path.join(base, 'strata.sock');
  const dockerConfig = path.join(base, 'docker-config');
  fs.mkdirSync(dockerConfig);
  let logText = '';
  let child: ChildProcess;

  const launch = async (): Promise<void> => {
    child = spawn(
      process.execPath,
      [
        '--max-semi-space-size=1',
        STRATA_BIN,
        'daemon',
        '--root',
        root,
        '--socket',
        socket,
        ...(opts.extraArgs ?? []),
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        // STRATA_LOOPBACK_ONLY: a test that pulls a missing image must not send a DNS query off the host.
        env: {
          ...process.env,
          STRATA_LOG_LEVEL: process.env.STRATA_LOG_LEVEL ?? 'info',
          ...opts.env,
          STRATA_LOOPBACK_ONLY: '1',
        },
      },
    );
    child.stdout?.on('data', (d: Buffer) => {
      logText += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      logText += d.toString();
    });
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode}:\n${logText}`);
      if (await canConnect(socket)) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`daemon did not start in time:\n${logText}`);
  };
  await launch();

  const env = { DOCKER_HOST: `unix://${socket}`, DOCKER_CONFIG: dockerConfig, DOCKER_BUILDKIT: '0' };
  const daemon: TestDaemon = {
    root,
    socket,
    env,
    get process() {
      return child;
    },
    log: () => logText,
    docker: (args, o = {}) => run('docker', args, { ...o, env: { ...env, ...o.env } }),
    async dockerOk(args, o = {}) {
      const r = await run('docker', args, { ...o, env: { ...env, ...o.env } });
      if (r.code !== 0)
        throw new Error(
          `docker ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`,
        );
      return r.stdout.trim();
    },
    strata: (args, o = {}) =>
      run(process.execPath, [STRATA_BIN, ...args], {
        ...o,
        env: { STRATA_HOST: `unix://${socket}`, ...o.env },
      }),
    api: (method, apiPath, body) => apiRequest(socket, method, apiPath, body),
    async kill() {
      child.kill('SIGKILL');
      await new Promise<void>((r) =>
        child.exitCode !== null || child.signalCode !== null ? r() : child.once('exit', () => r()),
      );
    },
    async restart() {
      await launch();
    },
    async cleanup() {
      if (child.exitCode === null && child.signalCode === null) {
        const ids = await run('docker', ['ps', '-aq'], { env });
        const list = ids.stdout.split('\n').filter(Boolean);
        if (list.length > 0) await run('docker', ['rm', '-f', ...list], { env, timeoutMs: 60_000 });
        child.kill('SIGTERM');
        await new Promise<void>((r) => {
          const t = setTimeout(() => {
            child.kill('SIGKILL');
            r();
          }, 10_000);
          child.once('exit', () => {
            clearTimeout(t);
            r();
          });
        });
      }
      // A daemon that died (SIGKILL in a test) leaves its containers running under conmon: end them.
      for (const pid of fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
        try {
          const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
          if (cmd.startsWith('/usr/bin/conmon') && cmd.includes(base)) process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }
      for (const rt of ['crun', 'runc']) {
        const stateRoot = path.join(root, 'runtime', rt);
        for (const id of fs.existsSync(stateRoot) ? fs.readdirSync(stateRoot) : []) {
          await run(rt, ['--root', stateRoot, 'delete', '--force', id]);
        }
      }
      // Anything still mounted under the root (a test that failed half-way) is detached before removal.
      const mounts = fs
        .readFileSync('/proc/self/mountinfo', 'utf8')
        .split('\n')
        .map((l) => l.split(' ')[4])
        .filter((m) => m?.startsWith(base))
        .sort((a, b) => b.length - a.length);
      for (const m of mounts) await run('umount', ['-l', m]);
      // Bridges and iptables rules of a daemon that could not stop cleanly (killed, crashed).
      try {
        sweep(daemonTag(root));
      } catch {
        // best effort: a broken iptables must not hide the test's own result
      }
      fs.rmSync(base, { recursive: true, force: true });
      await releaseHostNetworking(root);
    },
  };
  return daemon;
}

/**
 * Removes the bridges, veths and iptables chains a test daemon left on the host (a daemon keeps them
 * across restarts on purpose; a test root is gone for good). They are found by the daemon's tag, the
 * first 6 hex of sha256(root), which the network part puts in link aliases and chain names.
 */
export async function releaseHostNetworking(root: string): Promise<void> {
  const [{ createHash }, bridge, iptables] = await Promise.all([
    import('node:crypto'),
    import('../../src/network/bridge.js'),
    import('../../src/network/iptables.js'),
  ]);
  const tag = createHash('sha256').update(root).digest('hex').slice(0, 6);
  try {
    const ours = bridge.listLinks().filter((l) => bridge.ownerOf(l)?.tag === tag);
    const indexes = new Set(ours.map((l) => l.index));
    const veths = bridge.listLinks().filter((l) => l.kind === 'veth' && indexes.has(l.master));
    bridge.deleteLinks([...veths.map((l) => l.name), ...ours.map((l) => l.name)]);
  } catch {
    // best effort: a test must not fail on its own cleanup
  }
  const saved = await run('iptables-save', []);
  if (saved.code === 0 && saved.stdout.includes(`STRATA-${tag}-`)) {
    await run('iptables-restore', ['--noflush'], { input: iptables.renderRemoval(tag, saved.stdout, true) });
  }
}

export function canConnect(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function apiRequest(
  socket: string,
  method: string,
  apiPath: string,
  body?: unknown,
): Promise<{ status: number; body: string; headers: Record<string, string | string[] | undefined> }> {
  return new Promise((resolve, reject) => {
    import('node:http').then(({ request }) => {
      const data =
        body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
      const req = request(
        {
          socketPath: socket,
          method,
          path: apiPath,
          headers: data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              body: Buffer.concat(chunks).toString(),
              headers: res.headers,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(data);
    }, reject);
  });
}

/** Imports the busybox test image (scripts/busybox-rootfs.sh) as `tag` through `docker import`. */
export async function importBusybox(d: TestDaemon, tag = 'bb:latest'): Promise<string> {
  const tar = await runBuffer('bash', [path.join(REPO_ROOT, 'scripts', 'busybox-rootfs.sh')]);
  return d.dockerOk(['import', '-c', 'CMD ["sh"]', '-', tag], { input: tar });
}

function runBuffer(cmd: string, args: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} exited ${code}`)),
    );
  });
}
