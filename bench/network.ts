import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  busyboxTar,
  type Daemon,
  fmt,
  has,
  type Stats,
  startDockerd,
  startStrata,
  stats,
  timeMs,
  tmpBase,
} from './common.js';

/**
 * bench/network: the cost of networking and the speed of a bridge, side by side with Docker (and
 * podman when installed).
 *  - run latency: `run --rm bb true` on the default bridge network minus the same with
 *    `--network none`, interleaved, medians of RUNS each;
 *  - throughput: busybox `nc` container → container over a user-defined network (SIZE_MB, bounded
 *    by a timeout), timed inside the client from /proc/uptime.
 * Docker runs on a private socket with a bridge of its own (`stbench0`, 10.199.0.0/24) and
 * iptables enabled; its chains and the bridge are removed afterwards.
 */
const RUNS = Number(process.env.RUNS ?? 15);
const SIZE_MB = Number(process.env.SIZE_MB ?? 256);
const TP_RUNS = Number(process.env.TP_RUNS ?? 3);
/** Every command is bounded: a hung engine ends the run with an error instead of blocking it. */
const COMMAND_TIMEOUT_MS = 180_000;
const LATENCY_TARGET_MS = 30;
const THROUGHPUT_TARGET = 0.9;

function sh(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  input?: Buffer,
): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    env: { ...process.env, ...env },
    input,
    maxBuffer: 256 << 20,
    timeout: COMMAND_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const timedOut = r.error && (r.error as NodeJS.ErrnoException).code === 'ETIMEDOUT';
  return {
    code: r.status ?? -1,
    stdout: r.stdout?.toString() ?? '',
    stderr: `${r.stderr?.toString() ?? ''}${timedOut ? `\n(timed out after ${COMMAND_TIMEOUT_MS} ms)` : ''}`,
  };
}

function must(cmd: string, args: string[], env: Record<string, string> = {}, input?: Buffer): string {
  const r = sh(cmd, args, env, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout.trim();
}
const DOCKER_BRIDGE = 'stbench0';
const DOCKER_BRIDGE_CIDR = '10.199.0.1/24';

interface Row {
  engine: string;
  bridge: Stats;
  none: Stats;
  paired: Stats;
  throughput: Stats | null;
}

function runOnce(env: Record<string, string>, cli: string, network: string): number {
  return timeMs(() => {
    const r = sh(cli, ['run', '--rm', '--network', network, 'bb:latest', 'true'], env);
    if (r.code !== 0) throw new Error(`${cli} run --network ${network} failed: ${r.stderr}`);
  });
}

function latency(
  env: Record<string, string>,
  cli: string,
  bridgeName: string,
): { bridge: Stats; none: Stats; paired: Stats } {
  runOnce(env, cli, bridgeName);
  runOnce(env, cli, 'none');
  const bridge: number[] = [];
  const none: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    bridge.push(runOnce(env, cli, bridgeName));
    none.push(runOnce(env, cli, 'none'));
  }
  // Each bridge run is paired with the --network none run right after it: the median of the
  // differences is steadier than the difference of the medians on a busy host.
  return { bridge: stats(bridge), none: stats(none), paired: stats(bridge.map((b, i) => b - none[i])) };
}

/** MB/s container → container over a fresh user network: the median of TP_RUNS transfers. */
function throughput(env: Record<string, string>, cli: string): Stats | null {
  const net = `stbench-${process.pid}`;
  must(cli, ['network', 'create', net], env);
  try {
    // The server's stdin stays open (busybox nc closes the connection when its stdin ends).
    must(
      cli,
      [
        'run',
        '-d',
        '--name',
        'nc-server',
        '--network',
        net,
        'bb:latest',
        'sh',
        '-c',
        `for i in $(seq ${TP_RUNS}); do sleep 120 | nc -l -p 5001 > /dev/null; done`,
      ],
      env,
    );
    // One client container sends TP_RUNS times (the server takes one connection at a time: a fresh
    // listener per transfer), each timed inside the client from /proc/uptime.
    const transfers = Array.from(
      { length: TP_RUNS },
      () =>
        `s=$(cut -d" " -f1 /proc/uptime); if dd if=/dev/zero bs=64k count=${SIZE_MB * 16} 2>/dev/null | timeout 60 nc nc-server 5001; then e=$(cut -d" " -f1 /proc/uptime); echo "elapsed $s $e"; fi; sleep 0.3`,
    ).join('; ');
    const r = sh(
      cli,
      ['run', '--rm', '--network', net, 'bb:latest', 'sh', '-c', `sleep 0.5; ${transfers}`],
      env,
    );
    const rates = [...r.stdout.matchAll(/elapsed ([\d.]+) ([\d.]+)/g)]
      .map((m) => Number(m[2]) - Number(m[1]))
      .filter((seconds) => seconds > 0)
      .map((seconds) => (SIZE_MB * 1.048576) / seconds);
    if (rates.length === 0) {
      process.stderr.write(`throughput run gave no timing: ${r.stdout}${r.stderr}\n`);
      return null;
    }
    return stats(rates);
  } finally {
    sh(cli, ['rm', '-f', 'nc-server'], env);
    sh(cli, ['network', 'rm', net], env);
  }
}

/** dockerd with a bridge and iptables of its own; everything it set up is removed by stop(). */
async function startDockerdWithBridge(base: string): Promise<Daemon | null> {
  if (!has('dockerd') || !has('containerd')) return null;
  fs.mkdirSync(base, { recursive: true });
  sh('ip', ['link', 'add', DOCKER_BRIDGE, 'type', 'bridge']);
  sh('ip', ['addr', 'add', DOCKER_BRIDGE_CIDR, 'dev', DOCKER_BRIDGE]);
  sh('ip', ['link', 'set', DOCKER_BRIDGE, 'up']);
  const policy = /-P FORWARD (\w+)/.exec(sh('iptables', ['-S', 'FORWARD']).stdout)?.[1] ?? 'ACCEPT';
  const cleanupHost = () => {
    for (const table of ['filter', 'nat']) {
      const rules = sh('iptables', ['-t', table, '-S']).stdout.split('\n');
      // Jumps to its chains, and the rules it writes straight into FORWARD/POSTROUTING for its bridge.
      const subnet = DOCKER_BRIDGE_CIDR.replace(/\.1\//, '.0/');
      for (const rule of rules.filter(
        (l) =>
          l.startsWith('-A ') &&
          !l.startsWith('-A DOCKER') &&
          (/ -j DOCKER/.test(l) ||
            l.includes(` ${DOCKER_BRIDGE} `) ||
            l.endsWith(` ${DOCKER_BRIDGE}`) ||
            l.includes(subnet)),
      ))
        sh('iptables', ['-t', table, '-D', ...rule.slice(3).split(' ')]);
      for (const chain of rules.filter((l) => l.startsWith('-N DOCKER')).map((l) => l.slice(3))) {
        sh('iptables', ['-t', table, '-F', chain]);
      }
      for (const chain of rules.filter((l) => l.startsWith('-N DOCKER')).map((l) => l.slice(3))) {
        sh('iptables', ['-t', table, '-X', chain]);
      }
    }
    sh('iptables', ['-P', 'FORWARD', policy]);
    sh('ip', ['link', 'del', DOCKER_BRIDGE]);
  };
  return startDockerd(base, {
    networkArgs: ['--bridge', DOCKER_BRIDGE, '--iptables=true', '--ip-forward=false', '--ip6tables=false'],
    cleanupHost,
  });
}

async function main(): Promise<void> {
  // The Strata daemon never sends a DNS query off this machine during the bench.
  process.env.STRATA_LOOPBACK_ONLY ??= '1';
  const tar = busyboxTar();
  const rows: Row[] = [];
  const base = tmpBase('strata-bench-net-');
  const engines: { start: () => Promise<Daemon | null>; cli: string; bridge: string }[] = [
    { start: () => startStrata(path.join(base, 'strata')), cli: 'docker', bridge: 'bridge' },
  ];
  if (!process.env.SKIP_DOCKER)
    engines.push({
      start: () => startDockerdWithBridge(path.join(base, 'docker')),
      cli: 'docker',
      bridge: 'bridge',
    });
  for (const engine of engines) {
    const daemon = await engine.start().catch((err) => {
      process.stderr.write(`could not start an engine: ${err}\n`);
      return null;
    });
    if (!daemon) continue;
    try {
      must('docker', ['import', '-c', 'CMD ["sh"]', '-', 'bb:latest'], daemon.env, tar);
      const lat = latency(daemon.env, engine.cli, engine.bridge);
      rows.push({ engine: daemon.name, ...lat, throughput: throughput(daemon.env, engine.cli) });
    } finally {
      await daemon.stop();
    }
  }
  const notes: string[] = [];
  if (has('podman') && !process.env.SKIP_PODMAN) {
    const env = {};
    try {
      sh('podman', ['import', '--change', 'CMD ["sh"]', '-', 'bb:latest'], env, tar);
      const lat = latency(env, 'podman', 'bridge');
      rows.push({ engine: 'podman', ...lat, throughput: throughput(env, 'podman') });
    } catch (err) {
      // e.g. a host whose limits podman's crun cannot raise (RLIMIT_NOFILE/NPROC): the other rows stand.
      const reason = (err instanceof Error ? err.message : String(err))
        .split('\n')
        .find((l) => /error/i.test(l));
      notes.push(`podman: not measured (${(reason ?? String(err)).trim()})`);
    }
  }
  fs.rmSync(base, { recursive: true, force: true });

  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const tp = (r: Row) =>
    r.throughput === null
      ? 'n/a'
      : `${fmt(r.throughput.median, 0)} MB/s [${fmt(r.throughput.min, 0)}–${fmt(r.throughput.max, 0)}]`;
  const lines = [
    `bench/network: RUNS=${RUNS} (interleaved), SIZE_MB=${SIZE_MB} × TP_RUNS=${TP_RUNS}; load average ${load}`,
    'times in ms (median [min–max]) of `run --rm bb true` through the CLI; throughput median [min–max]',
    '',
    '| engine | default bridge | --network none | networking adds (median of pairs) | nc throughput, user network |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.engine} | ${fmt(r.bridge.median)} [${fmt(r.bridge.min)}–${fmt(r.bridge.max)}] | ${fmt(r.none.median)} [${fmt(r.none.min)}–${fmt(r.none.max)}] | ${fmt(r.paired.median)} | ${tp(r)} |`,
    ),
    '',
  ];
  const strata = rows.find((r) => r.engine === 'strata');
  const docker = rows.find((r) => r.engine === 'docker');
  const verdict = (ok: boolean) => (ok ? 'MET' : 'MISSED');
  if (strata) {
    const others = rows
      .filter((r) => r !== strata)
      .map((r) => `${r.engine} ${fmt(r.paired.median)} ms`)
      .join(', ');
    lines.push(
      `networking adds to a run: strata ${fmt(strata.paired.median)} ms (target ≤ ${LATENCY_TARGET_MS} ms: ${verdict(strata.paired.median <= LATENCY_TARGET_MS)})${others ? `; ${others}` : ''}`,
    );
  }
  if (strata?.throughput && docker?.throughput) {
    const ratio = strata.throughput.median / docker.throughput.median;
    lines.push(
      `nc throughput strata/docker: ${fmt(ratio, 2)} (${fmt(strata.throughput.median, 0)} / ${fmt(docker.throughput.median, 0)} MB/s; target ≥ ${THROUGHPUT_TARGET}: ${verdict(ratio >= THROUGHPUT_TARGET)})`,
    );
  }
  lines.push(...notes);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
