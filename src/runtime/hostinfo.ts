import * as fs from 'node:fs';
import type { CgroupCapabilities } from './cgroup-host.js';

/**
 * The host facts `GET /info` reports (what `docker info` prints): which limits the cgroups enforce,
 * the security options in force, the backing file system, the OS name, and the daemon's own
 * descriptor count. Everything is read from the host, not assumed.
 */
export interface HostInfoOptions {
  caps: CgroupCapabilities;
  root: string;
  seccomp: 'builtin' | 'unconfined' | 'custom';
  userns: boolean;
  /** Live counts the daemon knows (event listeners, listeners/sockets). */
  eventListeners?: () => number;
}

const FS_TYPES: Record<number, string> = {
  61267: 'extfs',
  1481003842: 'xfs',
  2435016766: 'btrfs',
  16914836: 'tmpfs',
  2035054128: 'overlayfs',
  801189825: 'zfs',
  26985: 'nfs',
  4076150800: 'f2fs',
};

function backingFilesystem(dir: string): string {
  try {
    const type = fs.statfsSync(dir).type;
    return FS_TYPES[type] ?? `0x${type.toString(16)}`;
  } catch {
    return 'unknown';
  }
}

function operatingSystem(): { name: string; version: string } {
  try {
    const text = fs.readFileSync('/etc/os-release', 'utf8');
    const field = (k: string) => new RegExp(`^${k}="?([^"\\n]*)"?$`, 'm').exec(text)?.[1] ?? '';
    return { name: field('PRETTY_NAME') || 'Linux', version: field('VERSION_ID') };
  } catch {
    return { name: 'Linux', version: '' };
  }
}

function openFds(): number {
  try {
    return fs.readdirSync('/proc/self/fd').length;
  } catch {
    return 0;
  }
}

export function hostInfoFields(o: HostInfoOptions): Record<string, unknown> {
  const c = o.caps;
  const warnings: string[] = [];
  if (!c.memoryLimit) warnings.push('WARNING: No memory limit support');
  if (!c.swapLimit) warnings.push('WARNING: No swap limit support');
  if (!c.cpuCfs) warnings.push('WARNING: No cpu cfs quota support');
  if (!c.cpuShares) warnings.push('WARNING: No cpu shares support');
  if (!c.cpuset) warnings.push('WARNING: No cpuset support');
  if (!c.blkioWeight)
    warnings.push('WARNING: No blkio weight support', 'WARNING: No blkio weight_device support');
  if (!c.blkioThrottle) warnings.push('WARNING: No blkio throttle support');
  if (o.seccomp === 'unconfined') warnings.push('WARNING: seccomp filtering is disabled');
  const os = operatingSystem();
  const security = [`name=seccomp,profile=${o.seccomp}`];
  if (o.userns) security.push('name=userns');
  if (c.version === '2') security.push('name=cgroupns');
  return {
    MemoryLimit: c.memoryLimit,
    SwapLimit: c.swapLimit,
    KernelMemory: false,
    KernelMemoryTCP: false,
    CpuCfsPeriod: c.cpuCfs,
    CpuCfsQuota: c.cpuCfs,
    CPUShares: c.cpuShares,
    CPUSet: c.cpuset,
    PidsLimit: c.pidsLimit,
    OomKillDisable: c.oomKillDisable,
    CgroupVersion: c.version,
    DriverStatus: [
      ['Backing Filesystem', backingFilesystem(o.root)],
      ['Supports d_type', 'true'],
      ['Native Overlay Diff', 'true'],
      ['userxattr', 'false'],
    ],
    NFd: openFds(),
    NGoroutines: process.getActiveResourcesInfo().length,
    NEventsListener: o.eventListeners?.() ?? 0,
    OperatingSystem: os.name,
    OSVersion: os.version,
    SecurityOptions: security,
    Warnings: warnings.length > 0 ? warnings : null,
  };
}
