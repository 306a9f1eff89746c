import * as fs from 'node:fs';
import * as os from 'node:os';
import { z } from 'zod';
import { InvalidArgument } from '../common/errors.js';
import { type CgroupCapabilities, parseCpuList } from './cgroup-host.js';
import { buildRlimits, hostHardLimits } from './spec.js';

/**
 * Container resource limits: HostConfig (Docker's names and units) → validated, normalised HostConfig
 * → OCI `linux.resources` (what crun writes into the cgroup files).
 *
 * Lifecycle: `checkResources` runs at create (400 for impossible values, warnings for settings the
 * host cannot enforce, which are then dropped as dockerd does), `ociResources` at every start, and
 * `checkResourceUpdate` + `ociResources` for `docker update`, whose OCI document goes to
 * `crun update --resources` while the container runs. Messages are dockerd's, so scripts that grep
 * them keep working.
 */

const throttleDevice = z.object({ Path: z.string(), Rate: z.number().int().nonnegative() }).loose();
const weightDevice = z.object({ Path: z.string(), Weight: z.number().int().nonnegative() }).loose();

export const resourceFieldsSchema = z
  .object({
    Memory: z.number().int().nullish(),
    MemorySwap: z.number().int().nullish(),
    MemoryReservation: z.number().int().nullish(),
    MemorySwappiness: z.number().int().nullish(),
    OomKillDisable: z.boolean().nullish(),
    NanoCpus: z.number().int().nullish(),
    CpuShares: z.number().int().nullish(),
    CpuPeriod: z.number().int().nullish(),
    CpuQuota: z.number().int().nullish(),
    CpuRealtimePeriod: z.number().int().nullish(),
    CpuRealtimeRuntime: z.number().int().nullish(),
    CpusetCpus: z.string().nullish(),
    CpusetMems: z.string().nullish(),
    PidsLimit: z.number().int().nullish(),
    BlkioWeight: z.number().int().nullish(),
    BlkioWeightDevice: z.array(weightDevice).nullish(),
    BlkioDeviceReadBps: z.array(throttleDevice).nullish(),
    BlkioDeviceWriteBps: z.array(throttleDevice).nullish(),
    BlkioDeviceReadIOps: z.array(throttleDevice).nullish(),
    BlkioDeviceWriteIOps: z.array(throttleDevice).nullish(),
    ShmSize: z.number().int().nullish(),
    Ulimits: z.array(z.object({ Name: z.string(), Soft: z.number(), Hard: z.number() })).nullish(),
  })
  .loose();

export type ResourceFields = z.infer<typeof resourceFieldsSchema>;

export const MIN_MEMORY = 6 * 1024 * 1024;
export const DEFAULT_SHM_SIZE = 64 * 1024 * 1024;
const MIN_CPU_SHARES = 2;
const MAX_CPU_SHARES = 262144;

/** Parses the resource fields of a HostConfig (or an update body); 400 naming the bad field. */
export function parseResourceFields(value: unknown): ResourceFields {
  const parsed = resourceFieldsSchema.safeParse(value ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidArgument(
      `invalid ${issue?.path.join('.') || 'resource'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

function positive(n: number | null | undefined): n is number {
  return typeof n === 'number' && n > 0;
}

function checkCpuset(value: string | null | undefined, available: string, what: 'cpus' | 'mems'): void {
  if (!value) return;
  const requested = parseCpuList(value);
  if (requested === null) throw new InvalidArgument(`Invalid value ${value} for cpuset ${what}`);
  const allowed = new Set(parseCpuList(available) ?? []);
  if (requested.some((n) => !allowed.has(n))) {
    throw new InvalidArgument(
      `Requested ${what === 'cpus' ? 'CPUs' : 'memory nodes'} are not available - requested ${value}, available: ${available}`,
    );
  }
}

/** Major/minor of a block device path on the host, for blkio throttling rules. */
export function blockDeviceNumbers(devicePath: string): { major: number; minor: number } {
  let st: fs.Stats;
  try {
    st = fs.statSync(devicePath);
  } catch {
    throw new InvalidArgument(`invalid device path ${devicePath}: no such device`);
  }
  if (!st.isBlockDevice()) throw new InvalidArgument(`invalid device path ${devicePath}: not a block device`);
  return deviceNumbers(st.rdev);
}

/** Linux's dev_t encoding (glibc gnu_dev_major/minor). */
export function deviceNumbers(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn));
  const minor = Number((dev & 0xffn) | ((dev >> 12n) & ~0xffn));
  return { major, minor };
}

/**
 * Create-time check of a HostConfig, in place: impossible values throw 400; settings this host cannot
 * enforce are dropped with a warning; defaults are filled as dockerd fills them (swap = 2 × memory,
 * 64 MiB /dev/shm) so `inspect` shows what the container really gets.
 */
export function checkResources(host: Record<string, unknown>, caps: CgroupCapabilities): string[] {
  const r = parseResourceFields(host);
  const warnings: string[] = [];
  const set = (key: keyof ResourceFields, value: unknown) => {
    host[key] = value;
  };
  checkMemory(r, caps, warnings, set, false);
  checkCpu(r, caps, warnings, set);
  if (r.PidsLimit !== undefined && r.PidsLimit !== null && r.PidsLimit !== 0 && !caps.pidsLimit) {
    warnings.push(
      'Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.',
    );
    set('PidsLimit', null);
  }
  checkBlkio(r, caps, warnings, set);
  if (r.ShmSize !== undefined && r.ShmSize !== null && r.ShmSize < 0)
    throw new InvalidArgument('SHM size can not be less than 0');
  if (!r.ShmSize) set('ShmSize', DEFAULT_SHM_SIZE);
  // Refused here rather than at start, so `docker run` fails before anything is created.
  if (r.Ulimits && r.Ulimits.length > 0) buildRlimits(r.Ulimits, hostHardLimits());
  return warnings;
}

type Setter = (key: keyof ResourceFields, value: unknown) => void;

function checkMemory(
  r: ResourceFields,
  caps: CgroupCapabilities,
  warnings: string[],
  set: Setter,
  isUpdate: boolean,
): void {
  let memory = r.Memory ?? 0;
  let swap = r.MemorySwap ?? 0;
  if (memory !== 0 && memory < MIN_MEMORY) throw new InvalidArgument('Minimum memory limit allowed is 6MB');
  if (memory > 0 && !caps.memoryLimit) {
    warnings.push(
      'Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.',
    );
    memory = 0;
    swap = 0;
    set('Memory', 0);
    set('MemorySwap', 0);
  }
  if (memory > 0 && swap !== -1 && !caps.swapLimit) {
    warnings.push(
      'Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.',
    );
    swap = -1;
    set('MemorySwap', -1);
  }
  if (memory > 0 && swap > 0 && swap < memory)
    throw new InvalidArgument('Minimum memoryswap limit should be larger than memory limit, see usage');
  if (!isUpdate && memory === 0 && swap > 0)
    throw new InvalidArgument(
      'You should always set the Memory limit when using Memoryswap limit, see usage',
    );
  if (!isUpdate && memory > 0 && swap === 0 && caps.swapLimit) set('MemorySwap', memory * 2);
  const swappiness = r.MemorySwappiness;
  if (swappiness !== undefined && swappiness !== null && swappiness !== -1) {
    if (!caps.memorySwappiness) {
      warnings.push(
        'Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.',
      );
      set('MemorySwappiness', null);
    } else if (swappiness < 0 || swappiness > 100) {
      throw new InvalidArgument(`Invalid value: ${swappiness}, valid memory swappiness range is 0-100`);
    }
  }
  const reservation = r.MemoryReservation ?? 0;
  if (reservation > 0 && !caps.memoryReservation) {
    warnings.push(
      'Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.',
    );
    set('MemoryReservation', 0);
  } else if (reservation > 0) {
    if (memory > 0 && memory < reservation)
      throw new InvalidArgument(
        'Minimum memory limit can not be less than memory reservation limit, see usage',
      );
    if (reservation < MIN_MEMORY) throw new InvalidArgument('Minimum memory reservation allowed is 6MB');
  }
  if (r.OomKillDisable && !caps.oomKillDisable) {
    warnings.push('Your kernel does not support OomKillDisable. OomKillDisable discarded.');
    set('OomKillDisable', false);
  } else if (!isUpdate && r.OomKillDisable && memory === 0) {
    warnings.push(
      'OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.',
    );
  }
}

function checkCpu(r: ResourceFields, caps: CgroupCapabilities, warnings: string[], set: Setter): void {
  const nano = r.NanoCpus ?? 0;
  const ncpu = os.availableParallelism();
  if (nano > 0 && positive(r.CpuPeriod))
    throw new InvalidArgument('Conflicting options: Nano CPUs and CPU Period cannot both be set');
  if (nano > 0 && positive(r.CpuQuota))
    throw new InvalidArgument('Conflicting options: Nano CPUs and CPU Quota cannot both be set');
  if (nano < 0 || nano > ncpu * 1e9)
    throw new InvalidArgument(
      `Range of CPUs is from 0.01 to ${ncpu}.00, as there are only ${ncpu} CPUs available`,
    );
  if ((nano > 0 || positive(r.CpuPeriod) || positive(r.CpuQuota)) && !caps.cpuCfs) {
    warnings.push('Your kernel does not support CPU CFS scheduler. CPU period/quota/Nano CPUs discarded.');
    set('NanoCpus', 0);
    set('CpuPeriod', 0);
    set('CpuQuota', 0);
  }
  const period = r.CpuPeriod ?? 0;
  if (period !== 0 && (period < 1000 || period > 1_000_000))
    throw new InvalidArgument(
      'CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)',
    );
  const quota = r.CpuQuota ?? 0;
  if (quota > 0 && quota < 1000)
    throw new InvalidArgument('CPU cfs quota can not be less than 1ms (i.e. 1000)');
  const shares = r.CpuShares ?? 0;
  if (shares < 0) throw new InvalidArgument(`invalid CPU shares ${shares}: must not be negative`);
  if (shares > 0 && !caps.cpuShares) {
    warnings.push('Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.');
    set('CpuShares', 0);
  } else if (shares > 0 && shares < MIN_CPU_SHARES) {
    warnings.push(`Changing requested CPUShares of ${shares} to minimum allowed of ${MIN_CPU_SHARES}`);
    set('CpuShares', MIN_CPU_SHARES);
  } else if (shares > MAX_CPU_SHARES) {
    warnings.push(`Changing requested CPUShares of ${shares} to maximum allowed of ${MAX_CPU_SHARES}`);
    set('CpuShares', MAX_CPU_SHARES);
  }
  if ((r.CpusetCpus || r.CpusetMems) && !caps.cpuset) {
    warnings.push('Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded.');
    set('CpusetCpus', '');
    set('CpusetMems', '');
    return;
  }
  checkCpuset(r.CpusetCpus, caps.cpusetCpus, 'cpus');
  checkCpuset(r.CpusetMems, caps.cpusetMems, 'mems');
}

function checkBlkio(r: ResourceFields, caps: CgroupCapabilities, warnings: string[], set: Setter): void {
  const weight = r.BlkioWeight ?? 0;
  if (weight > 0 && (weight < 10 || weight > 1000))
    throw new InvalidArgument('Range of blkio weight is from 10 to 1000');
  if (weight > 0 && !caps.blkioWeight) {
    warnings.push(
      'Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.',
    );
    set('BlkioWeight', 0);
  }
  if (r.BlkioWeightDevice && r.BlkioWeightDevice.length > 0 && !caps.blkioWeight) {
    warnings.push(
      'Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.',
    );
    set('BlkioWeightDevice', []);
  }
  const throttles: [keyof ResourceFields, string][] = [
    ['BlkioDeviceReadBps', 'BPS Block I/O read limit'],
    ['BlkioDeviceWriteBps', 'BPS Block I/O write limit'],
    ['BlkioDeviceReadIOps', 'IOPS Block I/O read limit'],
    ['BlkioDeviceWriteIOps', 'IOPS Block I/O write limit'],
  ];
  for (const [key, label] of throttles) {
    const list = r[key] as { Path: string }[] | null | undefined;
    if (!list || list.length === 0) continue;
    if (!caps.blkioThrottle) {
      warnings.push(
        `Your kernel does not support ${label} or the cgroup is not mounted. Block I/O ${label.replace(/ Block I\/O /, ' ')} discarded.`,
      );
      set(key, []);
      continue;
    }
    for (const d of list) blockDeviceNumbers(d.Path);
  }
}

/**
 * `docker update`: the fields the request sets, checked against the container's current settings
 * (dockerd refuses a memory limit above the swap limit already in force). Returns the merged values to
 * store and warnings.
 */
export function checkResourceUpdate(
  current: Record<string, unknown>,
  patch: ResourceFields,
  caps: CgroupCapabilities,
  isRunning: boolean,
): { merged: Record<string, unknown>; warnings: string[] } {
  const now = parseResourceFields(current);
  const merged: Record<string, unknown> = {};
  const warnings: string[] = [];
  const changed = <K extends keyof ResourceFields>(k: K): boolean =>
    patch[k] !== undefined &&
    patch[k] !== null &&
    !(typeof patch[k] === 'number' && patch[k] === 0 && k !== 'PidsLimit');
  const keys: (keyof ResourceFields)[] = [
    'Memory',
    'MemorySwap',
    'MemoryReservation',
    'NanoCpus',
    'CpuShares',
    'CpuPeriod',
    'CpuQuota',
    'CpusetCpus',
    'CpusetMems',
    'PidsLimit',
    'BlkioWeight',
    'OomKillDisable',
  ];
  for (const k of keys) if (changed(k)) merged[k] = patch[k];
  if (typeof patch.CpusetCpus === 'string' && patch.CpusetCpus === '') delete merged.CpusetCpus;
  const memory = (merged.Memory as number | undefined) ?? now.Memory ?? 0;
  const swap = (merged.MemorySwap as number | undefined) ?? now.MemorySwap ?? 0;
  if (merged.Memory !== undefined && merged.MemorySwap === undefined && swap > 0 && memory > swap) {
    throw new InvalidArgument(
      'Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time',
    );
  }
  if (merged.OomKillDisable !== undefined && isRunning)
    throw new InvalidArgument('Cannot update OomKillDisable of a running container');
  const view: Record<string, unknown> = { ...current, ...merged };
  if (merged.NanoCpus !== undefined) {
    // --cpus replaces an explicit period/quota, and the reverse.
    view.CpuPeriod = 0;
    view.CpuQuota = 0;
    merged.CpuPeriod = 0;
    merged.CpuQuota = 0;
  } else if (merged.CpuPeriod !== undefined || merged.CpuQuota !== undefined) {
    view.NanoCpus = 0;
    merged.NanoCpus = 0;
  }
  const set: Setter = (k, v) => {
    merged[k] = v;
    view[k] = v;
  };
  const r = parseResourceFields(view);
  checkMemory(r, caps, warnings, set, true);
  checkCpu(r, caps, warnings, set);
  checkBlkio(r, caps, warnings, set);
  return { merged, warnings };
}

export interface OciBlockIO {
  weight?: number;
  weightDevice?: { major: number; minor: number; weight: number }[];
  throttleReadBpsDevice?: { major: number; minor: number; rate: number }[];
  throttleWriteBpsDevice?: { major: number; minor: number; rate: number }[];
  throttleReadIOPSDevice?: { major: number; minor: number; rate: number }[];
  throttleWriteIOPSDevice?: { major: number; minor: number; rate: number }[];
}

export interface OciResources {
  memory?: {
    limit?: number;
    reservation?: number;
    swap?: number;
    swappiness?: number;
    disableOOMKiller?: boolean;
  };
  cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
  pids?: { limit: number };
  blockIO?: OciBlockIO;
}

/**
 * OCI `linux.resources` from HostConfig. `forUpdate` writes "unlimited" for limits that are unset, so
 * an update can lift a limit again (except the CPU quota and the pids limit, which crun cannot set to
 * unlimited: see `liftLimits`); at create an unset limit is simply absent.
 */
export function ociResources(host: Record<string, unknown>, forUpdate = false): OciResources {
  const r = parseResourceFields(host);
  const out: OciResources = {};
  const memory: NonNullable<OciResources['memory']> = {};
  if (positive(r.Memory)) memory.limit = r.Memory;
  else if (forUpdate && r.Memory !== undefined) memory.limit = -1;
  if (positive(r.MemoryReservation)) memory.reservation = r.MemoryReservation;
  if (typeof r.MemorySwap === 'number' && (r.MemorySwap > 0 || r.MemorySwap === -1))
    memory.swap = r.MemorySwap;
  else if (forUpdate && memory.limit === -1) memory.swap = -1;
  if (typeof r.MemorySwappiness === 'number' && r.MemorySwappiness >= 0)
    memory.swappiness = r.MemorySwappiness;
  if (r.OomKillDisable && !forUpdate) memory.disableOOMKiller = true;
  if (Object.keys(memory).length > 0) out.memory = memory;

  const cpu: NonNullable<OciResources['cpu']> = {};
  if (positive(r.CpuShares)) cpu.shares = r.CpuShares;
  if (positive(r.NanoCpus)) {
    cpu.period = 100_000;
    cpu.quota = Math.round((r.NanoCpus * 100_000) / 1e9);
  } else {
    if (positive(r.CpuPeriod)) cpu.period = r.CpuPeriod;
    if (positive(r.CpuQuota)) cpu.quota = r.CpuQuota;
  }
  if (r.CpusetCpus) cpu.cpus = r.CpusetCpus;
  if (r.CpusetMems) cpu.mems = r.CpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  if (positive(r.PidsLimit)) out.pids = { limit: r.PidsLimit };

  const blockIO: OciBlockIO = {};
  if (positive(r.BlkioWeight)) blockIO.weight = r.BlkioWeight;
  if (r.BlkioWeightDevice?.length)
    blockIO.weightDevice = r.BlkioWeightDevice.map((d) => ({
      ...blockDeviceNumbers(d.Path),
      weight: d.Weight,
    }));
  const throttle = (list: { Path: string; Rate: number }[] | null | undefined) =>
    list?.length ? list.map((d) => ({ ...blockDeviceNumbers(d.Path), rate: d.Rate })) : undefined;
  const readBps = throttle(r.BlkioDeviceReadBps);
  const writeBps = throttle(r.BlkioDeviceWriteBps);
  const readIops = throttle(r.BlkioDeviceReadIOps);
  const writeIops = throttle(r.BlkioDeviceWriteIOps);
  if (readBps) blockIO.throttleReadBpsDevice = readBps;
  if (writeBps) blockIO.throttleWriteBpsDevice = writeBps;
  if (readIops) blockIO.throttleReadIOPSDevice = readIops;
  if (writeIops) blockIO.throttleWriteIOPSDevice = writeIops;
  if (Object.keys(blockIO).length > 0) out.blockIO = blockIO;
  return out;
}

/**
 * Lifts the CFS quota and/or the pids limit directly in a container's cgroup, when an update removed
 * them: crun 1.8 refuses -1 for both and ignores 0.
 */
export function liftLimits(
  host: Record<string, unknown>,
  version: '1' | '2',
  dir: (controller: 'cpu' | 'pids') => string,
): void {
  const r = parseResourceFields(host);
  if (!positive(r.NanoCpus) && !positive(r.CpuQuota)) {
    const cpu = dir('cpu');
    if (version === '2') {
      const period = fs.readFileSync(`${cpu}/cpu.max`, 'utf8').trim().split(/\s+/)[1] ?? '100000';
      fs.writeFileSync(`${cpu}/cpu.max`, `max ${period}`);
    } else fs.writeFileSync(`${cpu}/cpu.cfs_quota_us`, '-1');
  }
  const pidsMax = `${dir('pids')}/pids.max`;
  if (!positive(r.PidsLimit) && fs.existsSync(pidsMax)) fs.writeFileSync(pidsMax, 'max');
}
