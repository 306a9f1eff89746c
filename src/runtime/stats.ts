import * as fs from 'node:fs';
import * as os from 'node:os';
import { type CgroupPaths, containerCgroupPath, containerCgroupPaths } from './cgroup-host.js';

/**
 * `docker stats` figures, read straight from a container's cgroup files (v1 or v2) and its network
 * namespace (/proc/<pid>/net/dev), in the Engine API's stats object. A sample is a handful of small
 * synchronous reads (~20 µs each), so a request for 50 containers costs a few milliseconds.
 *
 * Docker's CLI computes CPU % from two samples in one object (`cpu_stats` − `precpu_stats`, against
 * the host's total CPU time in `system_cpu_usage`), and memory as `usage − inactive_file`
 * (`total_inactive_file` on v1). `StatsSampler` keeps each container's previous sample so a one-shot
 * request can answer at once when a recent one exists.
 */
export interface CpuSample {
  totalNs: number;
  perCpuNs: number[];
  kernelNs: number;
  userNs: number;
  throttling: { periods: number; throttled_periods: number; throttled_time: number };
}

export interface StatsSample {
  read: Date;
  cpu: CpuSample;
  /** Host CPU time (all CPUs) in ns, from /proc/stat. */
  systemCpuNs: number;
  onlineCpus: number;
  memory: {
    usage: number;
    maxUsage: number;
    limit: number;
    failcnt: number;
    stats: Record<string, number>;
  };
  pids: { current: number; limit: number };
  blkio: { major: number; minor: number; op: string; value: number }[];
  blkioServiced: { major: number; minor: number; op: string; value: number }[];
  networks: Record<string, Record<string, number>> | null;
}

const USER_HZ = 100;
const NS_PER_TICK = 1e9 / USER_HZ;
/** v1 reports "no limit" as the largest page-aligned signed 64-bit value. */
const V1_UNLIMITED = 2 ** 62;

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function num(file: string, fallback = 0): number {
  const text = read(file);
  if (text === null) return fallback;
  const t = text.trim();
  if (t === 'max') return Number.POSITIVE_INFINITY;
  const n = Number(t);
  return Number.isFinite(n) ? n : fallback;
}

function keyValues(text: string | null): Record<string, number> {
  const out: Record<string, number> = {};
  if (!text) return out;
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^-?\d+$/.test(v)) out[k] = Number(v);
  }
  return out;
}

let systemCpu = { at: 0, ns: 0 };

/**
 * Sum of the CPU fields of /proc/stat's first line, in ns (dockerd's `system_cpu_usage`). Samples
 * taken within the same 10 ms (one `docker stats` asks for every container at once) share one read;
 * the counter only moves in 10 ms ticks anyway.
 */
export function systemCpuNs(): number {
  const now = performance.now();
  if (now - systemCpu.at < 10) return systemCpu.ns;
  const text = read('/proc/stat') ?? '';
  const line = text.slice(0, text.indexOf('\n'));
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  systemCpu = { at: now, ns: fields.reduce((a, b) => a + b, 0) * NS_PER_TICK };
  return systemCpu.ns;
}

function parseBlkioV1(text: string | null): StatsSample['blkio'] {
  const out: StatsSample['blkio'] = [];
  for (const line of (text ?? '').split('\n')) {
    const m = /^(\d+):(\d+) (\w+) (\d+)$/.exec(line.trim());
    if (m) out.push({ major: Number(m[1]), minor: Number(m[2]), op: m[3], value: Number(m[4]) });
  }
  return out;
}

function parseIoStatV2(text: string | null): { bytes: StatsSample['blkio']; ios: StatsSample['blkio'] } {
  const bytes: StatsSample['blkio'] = [];
  const ios: StatsSample['blkio'] = [];
  for (const line of (text ?? '').split('\n')) {
    const [dev, ...pairs] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const kv = Object.fromEntries(pairs.map((p) => p.split('=')).map(([k, v]) => [k, Number(v)]));
    const [major, minor] = [Number(m[1]), Number(m[2])];
    bytes.push(
      { major, minor, op: 'read', value: kv.rbytes ?? 0 },
      { major, minor, op: 'write', value: kv.wbytes ?? 0 },
    );
    ios.push(
      { major, minor, op: 'read', value: kv.rios ?? 0 },
      { major, minor, op: 'write', value: kv.wios ?? 0 },
    );
  }
  return { bytes, ios };
}

/** Interfaces of the network namespace `pid` lives in, except loopback (as dockerd reports them). */
export function readNetworks(pid: number): Record<string, Record<string, number>> | null {
  if (pid <= 0) return null;
  const text = read(`/proc/${pid}/net/dev`);
  if (text === null) return null;
  const out: Record<string, Record<string, number>> = {};
  for (const line of text.split('\n').slice(2)) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const name = line.slice(0, i).trim();
    if (name === 'lo') continue;
    const f = line
      .slice(i + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    out[name] = {
      rx_bytes: f[0],
      rx_packets: f[1],
      rx_errors: f[2],
      rx_dropped: f[3],
      tx_bytes: f[8],
      tx_packets: f[9],
      tx_errors: f[10],
      tx_dropped: f[11],
    };
  }
  return Object.keys(out).length > 0 ? out : null;
}

function sampleV1(p: CgroupPaths): Omit<StatsSample, 'read' | 'systemCpuNs' | 'onlineCpus' | 'networks'> {
  const cpuacct = p.dir('cpuacct');
  const cpuStat = keyValues(read(`${cpuacct}/cpuacct.stat`));
  const throttle = keyValues(read(`${p.dir('cpu')}/cpu.stat`));
  const memory = p.dir('memory');
  const pids = p.dir('pids');
  const blkio = p.dir('blkio');
  let limit = num(`${memory}/memory.limit_in_bytes`, V1_UNLIMITED);
  if (limit >= V1_UNLIMITED) limit = os.totalmem();
  const pidsMax = num(`${pids}/pids.max`, 0);
  return {
    cpu: {
      totalNs: num(`${cpuacct}/cpuacct.usage`),
      perCpuNs: (read(`${cpuacct}/cpuacct.usage_percpu`) ?? '')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
      kernelNs: (cpuStat.system ?? 0) * NS_PER_TICK,
      userNs: (cpuStat.user ?? 0) * NS_PER_TICK,
      throttling: {
        periods: throttle.nr_periods ?? 0,
        throttled_periods: throttle.nr_throttled ?? 0,
        throttled_time: throttle.throttled_time ?? 0,
      },
    },
    memory: {
      usage: num(`${memory}/memory.usage_in_bytes`),
      maxUsage: num(`${memory}/memory.max_usage_in_bytes`),
      limit: Math.min(limit, os.totalmem()),
      failcnt: num(`${memory}/memory.failcnt`),
      stats: keyValues(read(`${memory}/memory.stat`)),
    },
    pids: { current: num(`${pids}/pids.current`), limit: Number.isFinite(pidsMax) ? pidsMax : 0 },
    blkio: parseBlkioV1(read(`${blkio}/blkio.throttle.io_service_bytes_recursive`)),
    blkioServiced: parseBlkioV1(read(`${blkio}/blkio.throttle.io_serviced_recursive`)),
  };
}

function sampleV2(p: CgroupPaths): Omit<StatsSample, 'read' | 'systemCpuNs' | 'onlineCpus' | 'networks'> {
  const dir = p.dir('memory');
  const cpu = keyValues(read(`${dir}/cpu.stat`));
  const max = num(`${dir}/memory.max`, Number.POSITIVE_INFINITY);
  const pidsMax = num(`${dir}/pids.max`, 0);
  const io = parseIoStatV2(read(`${dir}/io.stat`));
  return {
    cpu: {
      totalNs: (cpu.usage_usec ?? 0) * 1000,
      perCpuNs: [],
      kernelNs: (cpu.system_usec ?? 0) * 1000,
      userNs: (cpu.user_usec ?? 0) * 1000,
      throttling: {
        periods: cpu.nr_periods ?? 0,
        throttled_periods: cpu.nr_throttled ?? 0,
        throttled_time: (cpu.throttled_usec ?? 0) * 1000,
      },
    },
    memory: {
      usage: num(`${dir}/memory.current`),
      maxUsage: num(`${dir}/memory.peak`),
      limit: Number.isFinite(max) ? Math.min(max, os.totalmem()) : os.totalmem(),
      failcnt: keyValues(read(`${dir}/memory.events`)).max ?? 0,
      stats: keyValues(read(`${dir}/memory.stat`)),
    },
    pids: { current: num(`${dir}/pids.current`), limit: Number.isFinite(pidsMax) ? pidsMax : 0 },
    blkio: io.bytes,
    blkioServiced: io.ios,
  };
}

/**
 * One sample of a container's cgroup (`id`) and network namespace (`pid`, 0 when not running).
 * `cgroupRoot` is for tests.
 */
export function sampleContainer(
  version: '1' | '2',
  id: string,
  pid: number,
  cgroupRoot?: string,
): StatsSample {
  const paths = containerCgroupPaths(version, containerCgroupPath(id), cgroupRoot);
  const part = version === '2' ? sampleV2(paths) : sampleV1(paths);
  return {
    read: new Date(),
    systemCpuNs: systemCpuNs(),
    onlineCpus: part.cpu.perCpuNs.length || os.availableParallelism(),
    networks: readNetworks(pid),
    ...part,
  };
}

const ZERO_TIME = '0001-01-01T00:00:00Z';

function cpuStats(s: StatsSample | null): Record<string, unknown> {
  if (!s) {
    return {
      cpu_usage: { total_usage: 0, usage_in_kernelmode: 0, usage_in_usermode: 0 },
      throttling_data: { periods: 0, throttled_periods: 0, throttled_time: 0 },
    };
  }
  return {
    cpu_usage: {
      total_usage: s.cpu.totalNs,
      ...(s.cpu.perCpuNs.length > 0 ? { percpu_usage: s.cpu.perCpuNs } : {}),
      usage_in_kernelmode: s.cpu.kernelNs,
      usage_in_usermode: s.cpu.userNs,
    },
    system_cpu_usage: s.systemCpuNs,
    online_cpus: s.onlineCpus,
    throttling_data: s.cpu.throttling,
  };
}

/** The Engine API stats object; `current` null gives dockerd's all-zero shape for a stopped container. */
export function statsObject(
  name: string,
  id: string,
  current: StatsSample | null,
  previous: StatsSample | null,
): Record<string, unknown> {
  const blkio = (entries: StatsSample['blkio'] | undefined) =>
    entries && entries.length > 0 ? entries : null;
  return {
    read: current ? current.read.toISOString() : ZERO_TIME,
    preread: previous ? previous.read.toISOString() : ZERO_TIME,
    pids_stats: current
      ? { current: current.pids.current, ...(current.pids.limit ? { limit: current.pids.limit } : {}) }
      : {},
    blkio_stats: {
      io_service_bytes_recursive: blkio(current?.blkio),
      io_serviced_recursive: blkio(current?.blkioServiced),
      io_queue_recursive: null,
      io_service_time_recursive: null,
      io_wait_time_recursive: null,
      io_merged_recursive: null,
      io_time_recursive: null,
      sectors_recursive: null,
    },
    num_procs: 0,
    storage_stats: {},
    cpu_stats: cpuStats(current),
    precpu_stats: cpuStats(previous),
    memory_stats: current
      ? {
          usage: current.memory.usage,
          max_usage: current.memory.maxUsage,
          stats: current.memory.stats,
          failcnt: current.memory.failcnt,
          limit: current.memory.limit,
        }
      : {},
    name: `/${name}`,
    id,
    ...(current?.networks ? { networks: current.networks } : {}),
  };
}

/**
 * Keeps the last sample per container. `previousFor` returns a sample between `minAgeMs` and
 * `maxAgeMs` old (usable as `precpu_stats`), else null: the caller then waits and samples twice.
 */
export class StatsSampler {
  private readonly last = new Map<string, StatsSample>();

  constructor(private readonly version: '1' | '2') {}

  sample(id: string, pid: number): StatsSample {
    const s = sampleContainer(this.version, id, pid);
    this.last.set(id, s);
    return s;
  }

  previousFor(id: string, minAgeMs = 100, maxAgeMs = 5000): StatsSample | null {
    const s = this.last.get(id);
    if (!s) return null;
    const age = Date.now() - s.read.getTime();
    return age >= minAgeMs && age <= maxAgeMs ? s : null;
  }

  forget(id: string): void {
    this.last.delete(id);
  }
}
