import * as fs from 'node:fs';
import * as os from 'node:os';
import { InvalidArgument } from '../common/errors.js';
import type { ResolvedUser } from './user.js';

/**
 * OCI runtime spec (config.json) generation with Docker's defaults: capability set, masked and
 * read-only /proc and /sys paths, device cgroup rules, the standard mounts, and rlimits clamped to what
 * this host allows (hard limits cannot be raised here, not even by root, and crun fails the whole
 * create on one `setrlimit` EPERM).
 */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

export const MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

export interface OciProcess {
  terminal: boolean;
  consoleSize?: { height: number; width: number };
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: Record<'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient', string[]>;
  rlimits: { type: string; soft: number; hard: number }[];
  noNewPrivileges: boolean;
  oomScoreAdj?: number;
}

export interface OciSpec {
  ociVersion: string;
  process: OciProcess;
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: OciMount[];
  linux: Record<string, unknown>;
  /** Runtime-specific settings (crun: `run.oci.seccomp_bpf_data`, seccomp-cache.ts). */
  annotations?: Record<string, string>;
}

export interface SpecInput {
  args: string[];
  env: string[];
  cwd: string;
  user: ResolvedUser;
  tty: boolean;
  consoleSize?: [number, number] | null;
  rootfs: string;
  readonlyRootfs: boolean;
  hostname: string;
  /** Extra bind mounts (hosts, hostname, resolv.conf, volumes). */
  mounts: OciMount[];
  cgroupsPath: string;
  privileged: boolean;
  capAdd: string[];
  capDrop: string[];
  ulimits: { Name: string; Soft: number; Hard: number }[];
  shmSize: number;
  resources: Record<string, unknown>;
  /** Path of a network namespace to join; absent → a new, empty one (crun brings up lo). */
  netnsPath?: string;
  noNewPrivileges: boolean;
}

/** Current hard rlimits of this process, read from /proc/self/limits (Infinity for unlimited). */
export function hostHardLimits(): Map<string, number> {
  const out = new Map<string, number>();
  const names: Record<string, string> = {
    'Max open files': 'RLIMIT_NOFILE',
    'Max processes': 'RLIMIT_NPROC',
    'Max core file size': 'RLIMIT_CORE',
    'Max locked memory': 'RLIMIT_MEMLOCK',
    'Max stack size': 'RLIMIT_STACK',
    'Max file size': 'RLIMIT_FSIZE',
    'Max cpu time': 'RLIMIT_CPU',
    'Max data size': 'RLIMIT_DATA',
    'Max address space': 'RLIMIT_AS',
    'Max file locks': 'RLIMIT_LOCKS',
    'Max pending signals': 'RLIMIT_SIGPENDING',
    'Max msgqueue size': 'RLIMIT_MSGQUEUE',
    'Max nice priority': 'RLIMIT_NICE',
    'Max realtime priority': 'RLIMIT_RTPRIO',
    'Max realtime timeout': 'RLIMIT_RTTIME',
  };
  let text = '';
  try {
    text = fs.readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').slice(1)) {
    for (const [label, key] of Object.entries(names)) {
      if (line.startsWith(label)) {
        const fields = line.slice(label.length).trim().split(/\s+/);
        const hard = fields[1];
        out.set(key, hard === 'unlimited' ? Number.POSITIVE_INFINITY : Number(hard));
      }
    }
  }
  return out;
}

const RLIMIT_MAX = 2 ** 53;

/** The names `--ulimit` accepts (Docker's list). */
const ULIMIT_NAMES = [
  'core',
  'cpu',
  'data',
  'fsize',
  'locks',
  'memlock',
  'msgqueue',
  'nice',
  'nofile',
  'nproc',
  'rss',
  'rtprio',
  'rttime',
  'sigpending',
  'stack',
];

/**
 * Docker's ulimit names (`nofile`) → OCI types (`RLIMIT_NOFILE`). A request above the host's hard limit
 * is refused, never silently raised; Docker's implicit default (nofile 1048576) is clamped instead.
 */
export function buildRlimits(
  requested: { Name: string; Soft: number; Hard: number }[],
  hard: Map<string, number>,
) {
  const result = new Map<string, { type: string; soft: number; hard: number }>();
  const clamp = (type: string, value: number) => Math.min(value, hard.get(type) ?? value, RLIMIT_MAX);
  result.set('RLIMIT_NOFILE', {
    type: 'RLIMIT_NOFILE',
    soft: clamp('RLIMIT_NOFILE', 1048576),
    hard: clamp('RLIMIT_NOFILE', 1048576),
  });
  for (const u of requested) {
    if (!ULIMIT_NAMES.includes(u.Name.toLowerCase()))
      throw new InvalidArgument(`invalid ulimit type: ${u.Name}`);
    const type = `RLIMIT_${u.Name.toUpperCase()}`;
    const limit = hard.get(type);
    if (u.Soft > u.Hard)
      throw new InvalidArgument(
        `ulimit soft limit must be less than or equal to hard limit: ${u.Soft} > ${u.Hard}`,
      );
    const wantHard = u.Hard < 0 ? RLIMIT_MAX : u.Hard;
    if (limit !== undefined && wantHard > limit) {
      throw new InvalidArgument(
        `ulimit ${u.Name}=${u.Soft}:${u.Hard} exceeds the host's hard limit ${limit} (hard limits cannot be raised on this host)`,
      );
    }
    const wantSoft = u.Soft < 0 ? RLIMIT_MAX : u.Soft;
    if (wantSoft > wantHard)
      throw new InvalidArgument(`ulimit ${u.Name}: an unlimited soft limit needs an unlimited hard limit`);
    result.set(type, { type, soft: wantSoft, hard: wantHard });
  }
  return [...result.values()];
}

function normalizeCap(c: string): string {
  const up = c.toUpperCase();
  return up.startsWith('CAP_') ? up : `CAP_${up}`;
}

export function buildCapabilities(privileged: boolean, add: string[], drop: string[]): string[] {
  if (privileged) return ALL_CAPABILITIES;
  const dropSet = new Set(drop.map(normalizeCap));
  let caps = dropSet.has('CAP_ALL') ? [] : DEFAULT_CAPABILITIES.filter((c) => !dropSet.has(c));
  const addSet = add.map(normalizeCap);
  if (addSet.includes('CAP_ALL')) caps = [...ALL_CAPABILITIES];
  for (const c of addSet) {
    if (c === 'CAP_ALL') continue;
    if (!ALL_CAPABILITIES.includes(c)) throw new InvalidArgument(`unknown capability: "${c}"`);
    if (!caps.includes(c)) caps.push(c);
  }
  return caps;
}

/** Every capability, in bit order (linux/capability.h), so index = capability number. */
export const ALL_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

export function defaultEnv(env: string[], hostname: string, tty: boolean): string[] {
  const out = [...env];
  const has = (k: string) => out.some((e) => e.startsWith(`${k}=`));
  if (!has('PATH')) out.unshift(`PATH=${DEFAULT_PATH}`);
  if (!has('HOSTNAME')) out.splice(1, 0, `HOSTNAME=${hostname}`);
  if (tty && !has('TERM')) out.push('TERM=xterm');
  if (!has('HOME')) out.push('HOME=/root');
  return out;
}

export function buildProcess(
  input: Omit<
    SpecInput,
    | 'mounts'
    | 'rootfs'
    | 'readonlyRootfs'
    | 'hostname'
    | 'cgroupsPath'
    | 'shmSize'
    | 'resources'
    | 'netnsPath'
  >,
): OciProcess {
  const caps = buildCapabilities(input.privileged, input.capAdd, input.capDrop);
  const isRoot = input.user.uid === 0;
  return {
    terminal: input.tty,
    ...(input.tty && input.consoleSize && input.consoleSize[0] > 0
      ? { consoleSize: { height: input.consoleSize[0], width: input.consoleSize[1] } }
      : {}),
    user: {
      uid: input.user.uid,
      gid: input.user.gid,
      ...(input.user.additionalGids.length > 0 ? { additionalGids: input.user.additionalGids } : {}),
    },
    args: input.args,
    env: input.env,
    cwd: input.cwd,
    capabilities: {
      bounding: caps,
      effective: isRoot ? caps : [],
      permitted: isRoot ? caps : [],
      inheritable: [],
      ambient: [],
    },
    rlimits: buildRlimits(input.ulimits, hostHardLimits()),
    noNewPrivileges: input.noNewPrivileges,
  };
}

export function buildSpec(input: SpecInput): OciSpec {
  const shm = input.shmSize > 0 ? input.shmSize : 64 * 1024 * 1024;
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    {
      destination: '/sys',
      type: 'sysfs',
      source: 'sysfs',
      options: ['nosuid', 'noexec', 'nodev', input.privileged ? 'rw' : 'ro'],
    },
    {
      destination: '/sys/fs/cgroup',
      type: 'cgroup',
      source: 'cgroup',
      options: ['nosuid', 'noexec', 'nodev', 'relatime', input.privileged ? 'rw' : 'ro'],
    },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${shm}`],
    },
    ...input.mounts,
  ];
  const namespaces: { type: string; path?: string }[] = [
    { type: 'pid' },
    input.netnsPath ? { type: 'network', path: input.netnsPath } : { type: 'network' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
  ];
  const { user, ...rest } = input;
  return {
    ociVersion: '1.0.2',
    process: buildProcess({ ...rest, user }),
    root: { path: input.rootfs, readonly: input.readonlyRootfs },
    hostname: input.hostname,
    mounts,
    linux: {
      namespaces,
      cgroupsPath: input.cgroupsPath,
      resources: {
        devices: input.privileged
          ? [{ allow: true, access: 'rwm' }]
          : [
              { allow: false, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' },
              { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' },
              { allow: true, type: 'c', major: 5, minor: 1, access: 'rwm' },
              { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' },
              { allow: true, type: 'c', major: 136, access: 'rwm' },
              { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' },
              { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' },
              { allow: false, type: 'c', major: 10, minor: 229, access: 'rwm' },
            ],
        ...input.resources,
      },
      ...(input.privileged ? {} : { maskedPaths: MASKED_PATHS, readonlyPaths: READONLY_PATHS }),
    },
  };
}

export const CPU_COUNT = os.availableParallelism();
