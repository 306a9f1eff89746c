import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from './errors.js';
import type { FlagSpec, FlagValues } from './flags.js';
import { parseGoDuration } from './format.js';

/**
 * The structured `run`/`create` options beyond the basics of run-config.ts — `--mount`, the
 * healthcheck flags, devices, block-IO throttles, security options, label files — each parsed
 * the way docker CLI 28 parses it, with its error messages (exit 125).
 */

export const MORE_CONTAINER_FLAGS: FlagSpec[] = [
  { name: 'mount', kind: 'list', help: 'Attach a filesystem mount to the container' },
  { name: 'health-cmd', kind: 'string', help: 'Command to run to check health' },
  {
    name: 'health-interval',
    kind: 'string',
    valueName: 'duration',
    help: 'Time between running the check (ms|s|m|h) (default 0s)',
  },
  {
    name: 'health-timeout',
    kind: 'string',
    valueName: 'duration',
    help: 'Maximum time to allow one check to run (ms|s|m|h) (default 0s)',
  },
  { name: 'health-retries', kind: 'int', help: 'Consecutive failures needed to report unhealthy' },
  {
    name: 'health-start-period',
    kind: 'string',
    valueName: 'duration',
    help: 'Start period for the container to initialize before starting health-retries countdown (ms|s|m|h) (default 0s)',
  },
  { name: 'no-healthcheck', kind: 'bool', help: 'Disable any container-specified HEALTHCHECK' },
  { name: 'device', kind: 'list', help: 'Add a host device to the container' },
  { name: 'device-cgroup-rule', kind: 'list', help: 'Add a rule to the cgroup allowed devices list' },
  { name: 'group-add', kind: 'list', help: 'Add additional groups to join' },
  { name: 'security-opt', kind: 'list', help: 'Security Options' },
  { name: 'volumes-from', kind: 'list', help: 'Mount volumes from the specified container(s)' },
  { name: 'ip', kind: 'string', help: 'IPv4 address (e.g., 172.30.100.104)' },
  { name: 'ip6', kind: 'string', help: 'IPv6 address (e.g., 2001:db8::33)' },
  { name: 'dns-search', kind: 'list', help: 'Set custom DNS search domains' },
  { name: 'dns-option', kind: 'list', help: 'Set DNS options' },
  { name: 'domainname', kind: 'string', help: 'Container NIS domain name' },
  { name: 'cpuset-cpus', kind: 'string', help: 'CPUs in which to allow execution (0-3, 0,1)' },
  { name: 'cpuset-mems', kind: 'string', help: 'MEMs in which to allow execution (0-3, 0,1)' },
  { name: 'cpu-period', kind: 'int', help: 'Limit CPU CFS (Completely Fair Scheduler) period' },
  { name: 'cpu-quota', kind: 'int', help: 'Limit CPU CFS (Completely Fair Scheduler) quota' },
  { name: 'cpu-rt-period', kind: 'int', help: 'Limit CPU real-time period in microseconds' },
  { name: 'cpu-rt-runtime', kind: 'int', help: 'Limit CPU real-time runtime in microseconds' },
  {
    name: 'memory-swap',
    kind: 'string',
    valueName: 'bytes',
    help: "Swap limit equal to memory plus swap: '-1' to enable unlimited swap",
  },
  { name: 'memory-reservation', kind: 'string', valueName: 'bytes', help: 'Memory soft limit' },
  {
    name: 'memory-swappiness',
    kind: 'int',
    help: 'Tune container memory swappiness (0 to 100)',
    defaultValue: -1,
  },
  { name: 'kernel-memory', kind: 'string', valueName: 'bytes', help: 'Kernel memory limit', hidden: true },
  { name: 'oom-kill-disable', kind: 'bool', help: 'Disable OOM Killer' },
  { name: 'oom-score-adj', kind: 'int', help: "Tune host's OOM preferences (-1000 to 1000)" },
  {
    name: 'blkio-weight',
    kind: 'int',
    help: 'Block IO (relative weight), between 10 and 1000, or 0 to disable',
  },
  { name: 'blkio-weight-device', kind: 'list', help: 'Block IO weight (relative device weight)' },
  { name: 'device-read-bps', kind: 'list', help: 'Limit read rate (bytes per second) from a device' },
  { name: 'device-write-bps', kind: 'list', help: 'Limit write rate (bytes per second) to a device' },
  { name: 'device-read-iops', kind: 'list', help: 'Limit read rate (IO per second) from a device' },
  { name: 'device-write-iops', kind: 'list', help: 'Limit write rate (IO per second) to a device' },
  { name: 'userns', kind: 'string', help: 'User namespace to use' },
  { name: 'uts', kind: 'string', help: 'UTS namespace to use' },
  { name: 'pid', kind: 'string', help: 'PID namespace to use' },
  { name: 'ipc', kind: 'string', help: 'IPC mode to use' },
  { name: 'cgroupns', kind: 'string', help: 'Cgroup namespace to use (host|private)' },
  { name: 'cgroup-parent', kind: 'string', help: 'Optional parent cgroup for the container' },
  { name: 'sysctl', kind: 'list', valueName: 'map', help: 'Sysctl options' },
  { name: 'storage-opt', kind: 'list', help: 'Storage driver options for the container' },
  { name: 'log-driver', kind: 'string', help: 'Logging driver for the container' },
  { name: 'log-opt', kind: 'list', help: 'Log driver options' },
  { name: 'label-file', kind: 'list', help: 'Read in a line delimited file of labels' },
];

function flagError(value: string, flag: string, reason: string): UsageError {
  return new UsageError(`invalid argument "${value}" for "${flag}" flag: ${reason}`, 125);
}

/** Go's encoding/csv for one record: commas split fields, double quotes group them. */
export function splitCsv(value: string): string[] {
  const fields: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  while (i < value.length) {
    const c = value[i];
    if (quoted) {
      if (c === '"' && value[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"' && field === '') {
      quoted = true;
    } else if (c === ',') {
      fields.push(field);
      field = '';
    } else {
      field += c;
    }
    i++;
  }
  fields.push(field);
  return fields;
}

const TRUE_WORDS = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE_WORDS = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

function parseGoBool(value: string): boolean | undefined {
  if (TRUE_WORDS.has(value)) return true;
  if (FALSE_WORDS.has(value)) return false;
  return undefined;
}

/** docker's RAMInBytes; undefined when the value is not a size. */
function ramInBytes(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(value.trim());
  if (!m) return undefined;
  return Math.floor(Number(m[1]) * 1024 ** ' kmgtp'.indexOf(m[2].toLowerCase() || ' '));
}

export interface MountSpec {
  Type: string;
  Source?: string;
  Target?: string;
  ReadOnly?: boolean;
  Consistency?: string;
  BindOptions?: {
    Propagation?: string;
    NonRecursive?: boolean;
    ReadOnlyNonRecursive?: boolean;
    ReadOnlyForceRecursive?: boolean;
  };
  VolumeOptions?: {
    NoCopy?: boolean;
    Labels?: Record<string, string>;
    Subpath?: string;
    DriverConfig: { Name?: string; Options?: Record<string, string> };
  };
  ImageOptions?: { Subpath?: string };
  TmpfsOptions?: { SizeBytes?: number; Mode?: number };
}

/** `--mount type=bind|volume|tmpfs,src=…,dst=…,readonly,…` → a HostConfig.Mounts entry. */
export function parseMount(value: string, cwd = process.cwd()): MountSpec {
  const fail = (reason: string): UsageError => flagError(value, '--mount', reason);
  const mount: MountSpec = { Type: 'volume' };
  let labels: Record<string, string> | undefined;
  const volume = (): NonNullable<MountSpec['VolumeOptions']> => {
    mount.VolumeOptions ??= { DriverConfig: {} };
    return mount.VolumeOptions;
  };
  const bind = (): NonNullable<MountSpec['BindOptions']> => {
    mount.BindOptions ??= {};
    return mount.BindOptions;
  };
  const tmpfs = (): NonNullable<MountSpec['TmpfsOptions']> => {
    mount.TmpfsOptions ??= {};
    return mount.TmpfsOptions;
  };
  const setOnMap = (target: Record<string, string>, entry: string): void => {
    const eq = entry.indexOf('=');
    const k = eq < 0 ? entry : entry.slice(0, eq);
    if (k !== '') target[k] = eq < 0 ? '' : entry.slice(eq + 1);
  };
  let recursive: string | undefined;
  for (const field of splitCsv(value)) {
    const eq = field.indexOf('=');
    if (eq < 0) {
      if (field === 'readonly' || field === 'ro') mount.ReadOnly = true;
      else if (field === 'volume-nocopy') volume().NoCopy = true;
      else if (field === 'bind-nonrecursive') bind().NonRecursive = true;
      else throw fail(`invalid field '${field}' must be a key=value pair`);
      continue;
    }
    const key = field.slice(0, eq);
    const val = field.slice(eq + 1);
    const bool = (): boolean => {
      const b = parseGoBool(val);
      if (b === undefined) throw fail(`invalid value for ${key}: ${val}`);
      return b;
    };
    switch (key) {
      case 'type':
        mount.Type = val.toLowerCase();
        break;
      case 'source':
      case 'src':
        mount.Source = val === '.' || val.startsWith('./') ? path.resolve(cwd, val) : val;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        mount.Target = val;
        break;
      case 'readonly':
      case 'ro':
        mount.ReadOnly = bool();
        break;
      case 'consistency':
        mount.Consistency = val.toLowerCase();
        break;
      case 'bind-propagation':
        bind().Propagation = val.toLowerCase();
        break;
      case 'bind-nonrecursive':
        bind().NonRecursive = bool();
        break;
      case 'bind-recursive':
        recursive = val;
        if (!['enabled', 'disabled', 'writable', 'readonly'].includes(val)) {
          throw fail(`invalid value for ${key}: ${val}`);
        }
        if (val === 'disabled') bind().NonRecursive = true;
        else if (val !== 'enabled') bind();
        break;
      case 'volume-nocopy': {
        const b = bool();
        if (b) volume().NoCopy = true;
        else volume();
        break;
      }
      case 'volume-label':
        volume();
        labels ??= {};
        setOnMap(labels, val);
        break;
      case 'volume-driver':
        volume().DriverConfig.Name = val;
        break;
      case 'volume-opt':
        volume().DriverConfig.Options ??= {};
        setOnMap(volume().DriverConfig.Options!, val);
        break;
      case 'volume-subpath':
        volume().Subpath = val;
        break;
      case 'image-subpath':
        mount.ImageOptions = { Subpath: val };
        break;
      case 'tmpfs-size': {
        const size = ramInBytes(val);
        if (size === undefined) throw fail(`invalid value for ${key}: ${val}`);
        tmpfs().SizeBytes = size;
        break;
      }
      case 'tmpfs-mode': {
        if (!/^[0-7]+$/.test(val)) throw fail(`invalid value for ${key}: ${val}`);
        tmpfs().Mode = Number.parseInt(val, 8);
        break;
      }
      default:
        throw fail(`unexpected key '${key}' in '${field}'`);
    }
  }
  if (recursive === 'writable' || recursive === 'readonly') {
    if (!mount.ReadOnly) {
      throw fail(`option 'bind-recursive=${recursive}' requires 'readonly' to be specified in conjunction`);
    }
    if (recursive === 'writable') bind().ReadOnlyNonRecursive = true;
    else bind().ReadOnlyForceRecursive = true;
  }
  if (labels && Object.keys(labels).length > 0 && mount.VolumeOptions) {
    mount.VolumeOptions = { ...mount.VolumeOptions, Labels: labels };
  }
  if (!mount.Type) throw fail('type is required');
  if (!mount.Target) throw fail('target is required');
  if (mount.VolumeOptions && mount.Type !== 'volume') {
    throw fail(`cannot mix 'volume-*' options with mount type '${mount.Type}'`);
  }
  if (mount.BindOptions && mount.Type !== 'bind') {
    throw fail(`cannot mix 'bind-*' options with mount type '${mount.Type}'`);
  }
  if (mount.TmpfsOptions && mount.Type !== 'tmpfs') {
    throw fail(`cannot mix 'tmpfs-*' options with mount type '${mount.Type}'`);
  }
  if (mount.BindOptions && Object.keys(mount.BindOptions).length === 0) delete mount.BindOptions;
  if (mount.ReadOnly === false) delete mount.ReadOnly;
  return mount;
}

export interface HealthConfig {
  Test?: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  Retries?: number;
}

/** The healthcheck flags → Config.Healthcheck (durations in nanoseconds, zero fields left out). */
export function parseHealthcheck(flags: FlagValues): HealthConfig | undefined {
  const duration = (name: string): number => {
    const raw = flags.string(name);
    if (raw === undefined) return 0;
    const ms = parseGoDuration(raw);
    if (ms === undefined) throw flagError(raw, `--${name}`, `time: invalid duration "${raw}"`);
    return Math.round(ms * 1e6);
  };
  const cmd = flags.string('health-cmd') ?? '';
  const interval = duration('health-interval');
  const timeout = duration('health-timeout');
  const startPeriod = duration('health-start-period');
  const retries = flags.int('health-retries') ?? 0;
  const any = cmd !== '' || interval !== 0 || timeout !== 0 || startPeriod !== 0 || retries !== 0;
  if (flags.bool('no-healthcheck')) {
    if (any) throw new UsageError('--no-healthcheck conflicts with --health-* options', 125);
    return { Test: ['NONE'] };
  }
  if (!any) return undefined;
  for (const [value, name] of [
    [interval, 'interval'],
    [timeout, 'timeout'],
    [retries, 'retries'],
    [startPeriod, 'start-period'],
  ] as const) {
    if (value < 0) throw new UsageError(`--health-${name} cannot be negative`, 125);
  }
  const health: HealthConfig = {};
  if (cmd) health.Test = ['CMD-SHELL', cmd];
  if (interval) health.Interval = interval;
  if (timeout) health.Timeout = timeout;
  if (startPeriod) health.StartPeriod = startPeriod;
  if (retries) health.Retries = retries;
  return health;
}

function validDeviceMode(mode: string): boolean {
  if (mode.length === 0 || mode.length > 3) return false;
  const seen = new Set<string>();
  for (const c of mode) {
    if (!'rwm'.includes(c) || seen.has(c)) return false;
    seen.add(c);
  }
  return true;
}

export interface DeviceMapping {
  PathOnHost: string;
  PathInContainer: string;
  CgroupPermissions: string;
}

/** `--device /dev/x[:/dev/y][:rwm]` → a HostConfig.Devices entry. */
export function parseDevice(value: string): DeviceMapping {
  const parts = value.split(':');
  if (parts.length > 3) throw new UsageError(`bad format for path: ${value}`, 125);
  let permissions = 'rwm';
  let dst = '';
  if (parts.length === 3) {
    permissions = parts[2];
    dst = parts[1];
  } else if (parts.length === 2) {
    if (validDeviceMode(parts[1])) permissions = parts[1];
    else dst = parts[1];
  }
  const src = parts[0];
  if (!validDeviceMode(permissions)) throw flagError(value, '--device', `bad mode specified: ${permissions}`);
  if (dst && !dst.startsWith('/')) throw flagError(value, '--device', `bad format for path: ${dst}`);
  return { PathOnHost: src, PathInContainer: dst || src, CgroupPermissions: permissions };
}

/** `--blkio-weight-device /dev/sda:100`. */
export function parseWeightDevice(value: string): { Path: string; Weight: number } {
  const colon = value.lastIndexOf(':');
  const weight = Number(value.slice(colon + 1));
  if (colon < 0 || !value.startsWith('/dev/')) {
    throw flagError(value, '--blkio-weight-device', `bad format: ${value}`);
  }
  if (!/^\d+$/.test(value.slice(colon + 1)) || (weight !== 0 && (weight < 10 || weight > 1000))) {
    throw flagError(value, '--blkio-weight-device', `invalid weight for device: ${value}`);
  }
  return { Path: value.slice(0, colon), Weight: weight };
}

/** `--device-read-bps /dev/sda:1mb` (sizes) and `--device-read-iops /dev/sda:100` (counts). */
export function parseThrottleDevice(
  value: string,
  flag: string,
  bytes: boolean,
): { Path: string; Rate: number } {
  const colon = value.lastIndexOf(':');
  if (colon < 0) throw flagError(value, flag, `bad format: ${value}`);
  const device = value.slice(0, colon);
  if (!device.startsWith('/dev/')) throw flagError(value, flag, `bad format for device path: ${value}`);
  const raw = value.slice(colon + 1);
  const rate = bytes ? ramInBytes(raw) : /^\d+$/.test(raw) ? Number(raw) : undefined;
  if (rate === undefined || rate < 0) {
    throw flagError(
      value,
      flag,
      bytes
        ? `invalid rate for device: ${value}. The correct format is <device-path>:<number>[<unit>]. Number must be a positive integer. Unit is optional and can be kb, mb, or gb`
        : `invalid rate for device: ${value}. The correct format is <device-path>:<number>. Number must be a positive integer`,
    );
  }
  return { Path: device, Rate: rate };
}

/**
 * `--security-opt`: `key=value` or `key:value` (`no-new-privileges` alone); a seccomp profile
 * given as a file is sent as its compacted JSON, as the docker CLI does.
 */
export function parseSecurityOpts(values: string[]): string[] {
  return values.map((opt) => {
    let sep = opt.indexOf('=');
    if (sep < 0 && opt !== 'no-new-privileges') sep = opt.indexOf(':');
    const key = sep < 0 ? opt : opt.slice(0, sep);
    const value = sep < 0 ? '' : opt.slice(sep + 1);
    if ((sep < 0 || value === '') && key !== 'no-new-privileges') {
      throw new UsageError(`Invalid --security-opt: "${opt}"`, 125);
    }
    if (key === 'seccomp' && value !== 'unconfined' && value !== 'builtin') {
      let text: string;
      try {
        text = fs.readFileSync(value, 'utf8');
      } catch (err) {
        throw new UsageError(
          `opening seccomp profile (${value}) failed: open ${value}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : String(err)}`,
          125,
        );
      }
      try {
        return `seccomp=${JSON.stringify(JSON.parse(text))}`;
      } catch (err) {
        throw new UsageError(
          `compacting json for seccomp profile (${value}) failed: ${(err as Error).message}`,
          125,
        );
      }
    }
    return opt;
  });
}

/** `--label-file` lines (comments and blank lines skipped), before the `-l` values. */
export function readLabelFiles(files: string[]): string[] {
  const out: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `open ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : String(err)}`,
        125,
      );
    }
    for (const raw of text.split(/\r?\n/)) {
      const line = raw.replace(/^\s+/, '');
      if (line && !line.startsWith('#')) out.push(line);
    }
  }
  return out;
}

/** docker's MemSwapBytes: "-1" is unlimited swap, anything else a size. */
export function parseSwap(value: string): number {
  if (value.trim() === '-1') return -1;
  const bytes = ramInBytes(value);
  if (bytes === undefined) {
    const suffix = /^\d+(?:\.\d+)?\s*(.*)$/.exec(value.trim());
    throw flagError(
      value,
      '--memory-swap',
      suffix ? `invalid suffix: '${suffix[1]}'` : `invalid size: '${value}'`,
    );
  }
  return bytes;
}
