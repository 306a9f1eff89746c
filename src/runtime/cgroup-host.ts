import * as fs from 'node:fs';
import * as os from 'node:os';
import { type CgroupLayout, detectCgroupLayout } from './cgroups.js';

/**
 * What the host's cgroups can enforce, and where a container's cgroup lives in each controller.
 *
 * cgroup v1 (and the hybrid layout once its v2 mount is emptied, see cgroups.ts) has one hierarchy per
 * controller under /sys/fs/cgroup/<controller>; crun puts a container with `cgroupsPath` `/strata/<id>`
 * at /sys/fs/cgroup/<controller>/strata/<id> in each. cgroup v2 has one tree: /sys/fs/cgroup/strata/<id>.
 * Capabilities are probed from the files the kernel offers (a v1 memory hierarchy without
 * memory.memsw.* has no swap accounting; without blkio.weight / blkio.bfq.weight there is no I/O
 * weight), the same way dockerd's sysinfo does, so unsupported settings become create-time warnings.
 */
export interface CgroupCapabilities {
  version: '1' | '2';
  memoryLimit: boolean;
  swapLimit: boolean;
  memoryReservation: boolean;
  oomKillDisable: boolean;
  memorySwappiness: boolean;
  cpuShares: boolean;
  cpuCfs: boolean;
  cpuset: boolean;
  /** CPUs and memory nodes a cpuset may use (`0-1`). */
  cpusetCpus: string;
  cpusetMems: string;
  pidsLimit: boolean;
  blkioWeight: boolean;
  blkioThrottle: boolean;
}

const ROOT = '/sys/fs/cgroup';

function exists(file: string): boolean {
  return fs.existsSync(file);
}

function readTrimmed(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}

/** The daemon's own cgroup in the v2 tree (`0::/path`), where v2 interface files can be probed. */
function ownV2Cgroup(): string {
  const line = readTrimmed('/proc/self/cgroup')
    .split('\n')
    .find((l) => l.startsWith('0::'));
  return `${ROOT}${line ? line.slice(3) : '/'}`.replace(/\/$/, '');
}

export function probeCgroupCapabilities(layout: CgroupLayout = detectCgroupLayout()): CgroupCapabilities {
  const cpus = `0-${os.availableParallelism() - 1}`;
  if (layout === 'v2') {
    const controllers = readTrimmed(`${ROOT}/cgroup.controllers`).split(/\s+/);
    const has = (c: string) => controllers.includes(c);
    const own = ownV2Cgroup();
    return {
      version: '2',
      memoryLimit: has('memory'),
      swapLimit: has('memory') && (exists(`${own}/memory.swap.max`) || exists('/proc/swaps')),
      memoryReservation: has('memory'),
      oomKillDisable: false,
      memorySwappiness: false,
      cpuShares: has('cpu'),
      cpuCfs: has('cpu'),
      cpuset: has('cpuset'),
      cpusetCpus: readTrimmed(`${ROOT}/cpuset.cpus.effective`, cpus) || cpus,
      cpusetMems: readTrimmed(`${ROOT}/cpuset.mems.effective`, '0') || '0',
      pidsLimit: has('pids'),
      blkioWeight: has('io') && (exists(`${own}/io.bfq.weight`) || exists(`${own}/io.weight`)),
      blkioThrottle: has('io'),
    };
  }
  const memory = `${ROOT}/memory`;
  return {
    version: '1',
    memoryLimit: exists(`${memory}/memory.limit_in_bytes`),
    swapLimit: exists(`${memory}/memory.memsw.limit_in_bytes`),
    memoryReservation: exists(`${memory}/memory.soft_limit_in_bytes`),
    oomKillDisable: exists(`${memory}/memory.oom_control`),
    memorySwappiness: exists(`${memory}/memory.swappiness`),
    cpuShares: exists(`${ROOT}/cpu/cpu.shares`),
    cpuCfs: exists(`${ROOT}/cpu/cpu.cfs_quota_us`),
    cpuset: exists(`${ROOT}/cpuset/cpuset.cpus`),
    cpusetCpus:
      readTrimmed(`${ROOT}/cpuset/cpuset.effective_cpus`) || readTrimmed(`${ROOT}/cpuset/cpuset.cpus`, cpus),
    cpusetMems:
      readTrimmed(`${ROOT}/cpuset/cpuset.effective_mems`) || readTrimmed(`${ROOT}/cpuset/cpuset.mems`, '0'),
    pidsLimit: exists(`${ROOT}/pids`),
    blkioWeight: exists(`${ROOT}/blkio/blkio.weight`) || exists(`${ROOT}/blkio/blkio.bfq.weight`),
    blkioThrottle: exists(`${ROOT}/blkio/blkio.throttle.read_bps_device`),
  };
}

/** Where one container's cgroup files are, per controller (v1) or in the single tree (v2). */
export interface CgroupPaths {
  version: '1' | '2';
  /** v1: the directory of `controller`'s hierarchy; v2: always the one directory. */
  dir(controller: 'memory' | 'cpu' | 'cpuacct' | 'cpuset' | 'pids' | 'blkio'): string;
}

export function containerCgroupPaths(version: '1' | '2', cgroupsPath: string, root = ROOT): CgroupPaths {
  if (version === '2') return { version, dir: () => `${root}${cgroupsPath}` };
  return { version, dir: (controller) => `${root}/${controller}${cgroupsPath}` };
}

/** The cgroup path Strata gives a container (the OCI spec's `linux.cgroupsPath`). */
export function containerCgroupPath(id: string): string {
  return `/strata/${id}`;
}

/** `0-2,5` → [0,1,2,5]; null when malformed. */
export function parseCpuList(list: string): number[] | null {
  const out = new Set<number>();
  if (list.trim() === '') return [];
  for (const part of list.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return null;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (to < from || to - from > 4096) return null;
    for (let i = from; i <= to; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}
