import * as fs from 'node:fs';
import * as path from 'node:path';
import { UsageError } from './errors.js';
import type { FlagSpec, FlagValues } from './flags.js';
import {
  type DeviceMapping,
  type HealthConfig,
  MORE_CONTAINER_FLAGS,
  type MountSpec,
  parseDevice,
  parseHealthcheck,
  parseMount,
  parseSecurityOpts,
  parseSwap,
  parseThrottleDevice,
  parseWeightDevice,
  readLabelFiles,
} from './run-options.js';

/**
 * `run`/`create` flags → the `POST /containers/create` body. The body has the exact shape the
 * docker CLI 28 sends (every HostConfig field present, zero-valued), so the daemon sees the same
 * request from `strata run` as from `docker run`.
 */

export const CONTAINER_FLAGS: FlagSpec[] = [
  { name: 'attach', short: 'a', kind: 'list', help: 'Attach to STDIN, STDOUT or STDERR' },
  { name: 'interactive', short: 'i', kind: 'bool', help: 'Keep STDIN open even if not attached' },
  { name: 'tty', short: 't', kind: 'bool', help: 'Allocate a pseudo-TTY' },
  { name: 'env', short: 'e', kind: 'list', help: 'Set environment variables' },
  { name: 'env-file', kind: 'list', help: 'Read in a file of environment variables' },
  { name: 'workdir', short: 'w', kind: 'string', help: 'Working directory inside the container' },
  { name: 'user', short: 'u', kind: 'string', help: 'Username or UID (format: <name|uid>[:<group|gid>])' },
  { name: 'name', kind: 'string', help: 'Assign a name to the container' },
  { name: 'entrypoint', kind: 'string', help: 'Overwrite the default ENTRYPOINT of the image' },
  { name: 'hostname', short: 'h', kind: 'string', help: 'Container host name' },
  { name: 'label', short: 'l', kind: 'list', help: 'Set meta data on a container' },
  { name: 'network', kind: 'string', help: 'Connect a container to a network', defaultValue: 'default' },
  { name: 'net', kind: 'string', help: 'Connect a container to a network', hidden: true },
  { name: 'network-alias', kind: 'list', help: 'Add network-scoped alias for the container' },
  { name: 'publish', short: 'p', kind: 'list', help: "Publish a container's port(s) to the host" },
  { name: 'publish-all', short: 'P', kind: 'bool', help: 'Publish all exposed ports to random ports' },
  { name: 'expose', kind: 'list', help: 'Expose a port or a range of ports' },
  { name: 'volume', short: 'v', kind: 'list', help: 'Bind mount a volume' },
  { name: 'tmpfs', kind: 'list', help: 'Mount a tmpfs directory' },
  { name: 'memory', short: 'm', kind: 'string', help: 'Memory limit' },
  { name: 'cpus', kind: 'string', help: 'Number of CPUs' },
  { name: 'cpu-shares', short: 'c', kind: 'int', help: 'CPU shares (relative weight)' },
  { name: 'pids-limit', kind: 'int', help: 'Tune container pids limit (set -1 for unlimited)' },
  {
    name: 'restart',
    kind: 'string',
    help: 'Restart policy to apply when a container exits',
    defaultValue: 'no',
  },
  { name: 'rm', kind: 'bool', help: 'Automatically remove the container and its volumes when it exits' },
  { name: 'privileged', kind: 'bool', help: 'Give extended privileges to this container' },
  { name: 'read-only', kind: 'bool', help: "Mount the container's root filesystem as read only" },
  { name: 'init', kind: 'bool', help: 'Run an init inside the container' },
  { name: 'cap-add', kind: 'list', help: 'Add Linux capabilities' },
  { name: 'cap-drop', kind: 'list', help: 'Drop Linux capabilities' },
  { name: 'add-host', kind: 'list', help: 'Add a custom host-to-IP mapping (host:ip)' },
  { name: 'dns', kind: 'list', help: 'Set custom DNS servers' },
  { name: 'shm-size', kind: 'string', help: 'Size of /dev/shm' },
  { name: 'ulimit', kind: 'list', help: 'Ulimit options' },
  { name: 'stop-signal', kind: 'string', help: 'Signal to stop the container' },
  { name: 'stop-timeout', kind: 'int', help: 'Timeout (in seconds) to stop a container' },
  { name: 'runtime', kind: 'string', help: 'Runtime to use for this container' },
  {
    name: 'pull',
    kind: 'string',
    help: 'Pull image before running ("always", "missing", "never")',
    defaultValue: 'missing',
  },
  { name: 'platform', kind: 'string', help: 'Set platform if server is multi-platform capable' },
  ...MORE_CONTAINER_FLAGS,
];

export const RUN_ONLY_FLAGS: FlagSpec[] = [
  { name: 'detach', short: 'd', kind: 'bool', help: 'Run container in background and print container ID' },
  { name: 'sig-proxy', kind: 'bool', help: 'Proxy received signals to the process', defaultValue: true },
  { name: 'detach-keys', kind: 'string', help: 'Override the key sequence for detaching a container' },
];

export interface EndpointConfig {
  IPAMConfig: { IPv4Address?: string; IPv6Address?: string } | null;
  Links: null;
  Aliases: string[] | null;
  MacAddress: string;
  DriverOpts: null;
  GwPriority: number;
  NetworkID: string;
  EndpointID: string;
  Gateway: string;
  IPAddress: string;
  IPPrefixLen: number;
  IPv6Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  DNSNames: null;
}

export interface PortBinding {
  HostIp: string;
  HostPort: string;
}

export interface CreateBody {
  Hostname: string;
  Domainname: string;
  User: string;
  AttachStdin: boolean;
  AttachStdout: boolean;
  AttachStderr: boolean;
  ExposedPorts?: Record<string, Record<string, never>>;
  Tty: boolean;
  OpenStdin: boolean;
  StdinOnce: boolean;
  Env: string[] | null;
  Cmd: string[] | null;
  Healthcheck?: HealthConfig;
  Image: string;
  Volumes: Record<string, Record<string, never>>;
  WorkingDir: string;
  Entrypoint: string[] | null;
  OnBuild: null;
  Labels: Record<string, string>;
  StopSignal?: string;
  StopTimeout?: number;
  HostConfig: Record<string, unknown> & {
    AutoRemove: boolean;
    NetworkMode: string;
    PortBindings: Record<string, PortBinding[]>;
    ConsoleSize: [number, number];
    Memory: number;
    NanoCpus: number;
  };
  NetworkingConfig: { EndpointsConfig: Record<string, EndpointConfig> };
}

export interface CreateRequest {
  name?: string;
  platform?: string;
  body: CreateBody;
}

export interface BuildOptions {
  /** [rows, cols] of the local terminal, sent for `-t` so the pty starts at the right size. */
  consoleSize?: [number, number];
  /** For `-e NAME` without a value (taken from the caller's environment). */
  env?: NodeJS.ProcessEnv;
  /** `run -d`: nothing is attached. */
  detach?: boolean;
  cwd?: string;
}

function invalidValue(value: string, label: string, reason: string): UsageError {
  return new UsageError(`invalid argument "${value}" for "${label}" flag: ${reason}`, 125);
}

/** docker's RAMInBytes: "64m" → 67108864; units b/k/m/g/t/p, optional trailing "b", powers of 1024. */
export function parseMemoryBytes(value: string, label = '-m, --memory'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$/i.exec(value.trim());
  if (!m) {
    const suffix = /^\d+(?:\.\d+)?\s*(.*)$/.exec(value.trim());
    throw invalidValue(value, label, suffix ? `invalid suffix: '${suffix[1]}'` : `invalid size: '${value}'`);
  }
  const power = ' kmgtp'.indexOf(m[2].toLowerCase() || ' ');
  return Math.floor(Number(m[1]) * 1024 ** power);
}

/** "0.5" → 500000000 NanoCpus. */
export function parseCpus(value: string): number {
  if (!/^\d+(\.\d+)?$|^\d+\/\d+$/.test(value.trim())) {
    throw invalidValue(value, '--cpus', `failed to parse ${value} as a rational number`);
  }
  const [num, den] = value.split('/').map(Number);
  const nano = Math.round((den ? num / den : num) * 1e9);
  if (!Number.isInteger(nano)) throw invalidValue(value, '--cpus', 'value is too precise');
  return nano;
}

function parsePort(value: string, what: string): number[] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(value);
  const start = Number(m?.[1]);
  const end = m?.[2] ? Number(m[2]) : start;
  if (!m || start < 0 || end > 65535 || start > end) throw new UsageError(`invalid ${what}: ${value}`, 125);
  return Array.from({ length: end - start + 1 }, (_x, i) => start + i);
}

/** `-p [ip:][hostPort:]containerPort[/proto]` → exposed ports and bindings (ranges expand). */
export function parsePublish(spec: string): { exposed: string[]; bindings: [string, PortBinding][] } {
  let rest = spec;
  let proto = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    proto = rest.slice(slash + 1).toLowerCase();
    rest = rest.slice(0, slash);
    if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new UsageError(`invalid proto: ${proto}`, 125);
  }
  let ip = '';
  const bracket = /^\[([^\]]+)\]:(.*)$/.exec(rest);
  if (bracket) {
    ip = bracket[1];
    rest = bracket[2];
  }
  const parts = rest.split(':');
  let hostPart = '';
  let containerPart: string;
  if (bracket) {
    [hostPart, containerPart] = parts.length === 2 ? parts : ['', parts[0]];
  } else if (parts.length === 1) {
    containerPart = parts[0];
  } else if (parts.length === 2) {
    [hostPart, containerPart] = parts;
  } else if (parts.length === 3) {
    [ip, hostPart, containerPart] = parts;
  } else {
    throw new UsageError(`invalid port format: ${spec}`, 125);
  }
  if (!containerPart) throw new UsageError(`no port specified: ${spec}<empty>`, 125);
  const containerPorts = parsePort(containerPart, 'containerPort');
  const hostPorts = hostPart ? parsePort(hostPart, 'hostPort') : [];
  if (hostPorts.length > 1 && hostPorts.length !== containerPorts.length) {
    throw new UsageError(
      `invalid ranges specified for container and host Ports: ${containerPart} and ${hostPart}`,
      125,
    );
  }
  const exposed = containerPorts.map((p) => `${p}/${proto}`);
  const bindings: [string, PortBinding][] = containerPorts.map((p, i) => [
    `${p}/${proto}`,
    {
      HostIp: ip,
      HostPort: hostPorts.length === 0 ? '' : String(hostPorts.length === 1 ? hostPorts[0] : hostPorts[i]),
    },
  ]);
  return { exposed, bindings };
}

/** Lines of an --env-file: `KEY=value`, or `KEY` alone to copy the caller's value; `#` comments. */
export function parseEnvFile(text: string, env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/^\s+/, '');
    if (!line || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid environment variable: ${line}`, 125);
    if (eq > 0) out.push(line);
    else out.push(env[line.trim()] === undefined ? line.trim() : `${line.trim()}=${env[line.trim()]}`);
  }
  return out;
}

function expandEnv(entries: string[], env: NodeJS.ProcessEnv): string[] {
  const out: string[] = [];
  for (const e of entries) {
    if (e.startsWith('=')) throw new UsageError(`invalid environment variable: ${e}`, 125);
    // An unset variable is sent bare, as docker does (the daemon drops it).
    if (e.includes('=') || env[e] === undefined) out.push(e);
    else out.push(`${e}=${env[e]}`);
  }
  return out;
}

function parseLabels(entries: string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid label: ${e}`, 125);
    if (eq < 0) labels[e] = '';
    else labels[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return labels;
}

export function parseRestart(value: string): { Name: string; MaximumRetryCount: number } {
  const [name, count] = value.split(':');
  if (!['no', 'always', 'unless-stopped', 'on-failure', ''].includes(name)) {
    throw new UsageError(`invalid restart policy: ${value}`, 125);
  }
  if (count !== undefined && name !== 'on-failure') {
    throw new UsageError(
      `invalid restart policy format: maximum retry count can only be used with 'on-failure'`,
      125,
    );
  }
  const max = count === undefined ? 0 : Number(count);
  if (!Number.isInteger(max) || max < 0) throw new UsageError(`invalid restart policy format: ${value}`, 125);
  return { Name: name || 'no', MaximumRetryCount: max };
}

function parseUlimit(value: string): { Name: string; Hard: number; Soft: number } {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(value);
  if (!m) throw new UsageError(`invalid ulimit argument: ${value}`, 125);
  return { Name: m[1], Hard: Number(m[3] ?? m[2]), Soft: Number(m[2]) };
}

function endpoint(aliases: string[], ipv4?: string, ipv6?: string): EndpointConfig {
  const ipam =
    ipv4 || ipv6 ? { ...(ipv4 ? { IPv4Address: ipv4 } : {}), ...(ipv6 ? { IPv6Address: ipv6 } : {}) } : null;
  return {
    IPAMConfig: ipam,
    Links: null,
    Aliases: aliases.length > 0 ? aliases : null,
    MacAddress: '',
    DriverOpts: null,
    GwPriority: 0,
    NetworkID: '',
    EndpointID: '',
    Gateway: '',
    IPAddress: '',
    IPPrefixLen: 0,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    DNSNames: null,
  };
}

/** Which of stdin/stdout/stderr a foreground run attaches (`-a` narrows it). */
export function attachedStreams(
  flags: FlagValues,
  detach: boolean,
): { stdin: boolean; stdout: boolean; stderr: boolean } {
  if (detach) return { stdin: false, stdout: false, stderr: false };
  const attach = flags.list('attach').map((s) => s.toLowerCase());
  for (const a of attach) {
    if (!['stdin', 'stdout', 'stderr'].includes(a)) {
      throw new UsageError(
        `invalid argument "${a}" for "-a, --attach" flag: valid streams are STDIN, STDOUT and STDERR`,
        125,
      );
    }
  }
  if (attach.length === 0) return { stdin: flags.bool('interactive'), stdout: true, stderr: true };
  return {
    stdin: attach.includes('stdin'),
    stdout: attach.includes('stdout'),
    stderr: attach.includes('stderr'),
  };
}

export function buildCreateRequest(
  flags: FlagValues,
  image: string,
  command: string[],
  opts: BuildOptions = {},
): CreateRequest {
  const env = opts.env ?? process.env;
  const detach = opts.detach ?? false;
  const tty = flags.bool('tty');
  const streams = attachedStreams(flags, detach);
  const openStdin = flags.bool('interactive');

  const envList: string[] = [];
  for (const file of flags.list('env-file')) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(
        `open ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : String(err)}`,
        125,
      );
    }
    envList.push(...parseEnvFile(text, env));
  }
  envList.push(...expandEnv(flags.list('env'), env));

  const exposed: Record<string, Record<string, never>> = {};
  const portBindings: Record<string, PortBinding[]> = {};
  for (const spec of flags.list('publish')) {
    const parsed = parsePublish(spec);
    for (const p of parsed.exposed) exposed[p] = {};
    for (const [port, binding] of parsed.bindings) {
      portBindings[port] ??= [];
      portBindings[port].push(binding);
    }
  }
  for (const spec of flags.list('expose')) {
    const [ports, proto = 'tcp'] = spec.split('/');
    for (const p of parsePort(ports, 'range for exposed ports')) exposed[`${p}/${proto}`] = {};
  }

  const binds: string[] = [];
  const volumes: Record<string, Record<string, never>> = {};
  for (const spec of flags.list('volume')) {
    const parts = spec.split(':');
    if (parts.length === 1) {
      if (!spec.startsWith('/')) throw new UsageError(`invalid volume specification: '${spec}'`, 125);
      volumes[spec] = {};
      continue;
    }
    if (parts.length > 3 || !parts[1].startsWith('/')) {
      throw new UsageError(
        `invalid volume specification: '${spec}': invalid mount config for type "bind": invalid mount path: '${parts[1]}' mount path must be absolute`,
        125,
      );
    }
    // Relative host paths are resolved here, as docker CLI 23+ does.
    if (parts[0].startsWith('.')) parts[0] = path.resolve(opts.cwd ?? process.cwd(), parts[0]);
    binds.push(parts.join(':'));
  }

  const tmpfs: Record<string, string> = {};
  for (const spec of flags.list('tmpfs')) {
    const colon = spec.indexOf(':');
    if (colon < 0) tmpfs[spec] = '';
    else tmpfs[spec.slice(0, colon)] = spec.slice(colon + 1);
  }

  const network = flags.string('net') ?? flags.string('network') ?? 'default';
  const endpoints: Record<string, EndpointConfig> = {};
  const endpointSettings = flags.has('ip') || flags.has('ip6');
  if ((network !== 'none' && network !== 'host' && !network.startsWith('container:')) || endpointSettings) {
    endpoints[network] = endpoint(flags.list('network-alias'), flags.string('ip'), flags.string('ip6'));
  }

  const restart = parseRestart(flags.string('restart') ?? 'no');
  if (flags.bool('rm') && restart.Name !== 'no') {
    throw new UsageError('conflicting options: cannot specify both --restart and --rm', 125);
  }
  const memory = flags.string('memory');
  const cpus = flags.string('cpus');
  const shmSize = flags.string('shm-size');
  const entrypoint = flags.string('entrypoint');
  const consoleSize: [number, number] = tty && opts.consoleSize ? opts.consoleSize : [0, 0];
  const healthcheck = parseHealthcheck(flags);
  const mounts: MountSpec[] = flags.list('mount').map((m) => parseMount(m, opts.cwd));
  const devices: DeviceMapping[] = flags.list('device').map(parseDevice);
  const throttle = (name: string, bytes: boolean) =>
    flags.list(name).map((v) => parseThrottleDevice(v, `--${name}`, bytes));
  const nonEmpty = (name: string): string[] | null => (flags.list(name).length > 0 ? flags.list(name) : null);
  const sysctls = keyValues(flags.list('sysctl'));
  const storageOpts = keyValues(flags.list('storage-opt'));
  const memorySwap = flags.string('memory-swap');
  const memoryReservation = flags.string('memory-reservation');
  const kernelMemory = flags.string('kernel-memory');

  const body: CreateBody = {
    Hostname: flags.string('hostname') ?? '',
    Domainname: flags.string('domainname') ?? '',
    User: flags.string('user') ?? '',
    AttachStdin: streams.stdin,
    AttachStdout: streams.stdout,
    AttachStderr: streams.stderr,
    ...(Object.keys(exposed).length > 0 ? { ExposedPorts: exposed } : {}),
    Tty: tty,
    OpenStdin: openStdin,
    StdinOnce: openStdin && streams.stdin,
    Env: envList.length > 0 ? envList : null,
    Cmd: command.length > 0 ? command : null,
    ...(healthcheck ? { Healthcheck: healthcheck } : {}),
    Image: image,
    Volumes: volumes,
    WorkingDir: flags.string('workdir') ?? '',
    Entrypoint: entrypoint === undefined ? (flags.has('entrypoint') ? [''] : null) : [entrypoint],
    OnBuild: null,
    Labels: parseLabels([...readLabelFiles(flags.list('label-file')), ...flags.list('label')]),
    ...(flags.has('stop-signal') ? { StopSignal: flags.string('stop-signal') } : {}),
    ...(flags.has('stop-timeout') ? { StopTimeout: flags.int('stop-timeout') } : {}),
    HostConfig: {
      Binds: binds.length > 0 ? binds : null,
      ContainerIDFile: '',
      LogConfig: { Type: flags.string('log-driver') ?? '', Config: keyValues(flags.list('log-opt')) },
      NetworkMode: network,
      PortBindings: portBindings,
      RestartPolicy: restart,
      AutoRemove: flags.bool('rm'),
      VolumeDriver: '',
      VolumesFrom: nonEmpty('volumes-from'),
      ConsoleSize: consoleSize,
      CapAdd: flags.list('cap-add').length > 0 ? flags.list('cap-add').map(capName) : null,
      CapDrop: flags.list('cap-drop').length > 0 ? flags.list('cap-drop').map(capName) : null,
      CgroupnsMode: flags.string('cgroupns') ?? '',
      Dns: flags.list('dns'),
      DnsOptions: flags.list('dns-option'),
      DnsSearch: flags.list('dns-search'),
      ExtraHosts: flags.list('add-host').length > 0 ? flags.list('add-host') : null,
      GroupAdd: nonEmpty('group-add'),
      IpcMode: flags.string('ipc') ?? '',
      Cgroup: '',
      Links: null,
      OomScoreAdj: flags.int('oom-score-adj') ?? 0,
      PidMode: flags.string('pid') ?? '',
      Privileged: flags.bool('privileged'),
      PublishAllPorts: flags.bool('publish-all'),
      ReadonlyRootfs: flags.bool('read-only'),
      SecurityOpt:
        flags.list('security-opt').length > 0 ? parseSecurityOpts(flags.list('security-opt')) : null,
      ...(Object.keys(storageOpts).length > 0 ? { StorageOpt: storageOpts } : {}),
      ...(Object.keys(tmpfs).length > 0 ? { Tmpfs: tmpfs } : {}),
      UTSMode: flags.string('uts') ?? '',
      UsernsMode: flags.string('userns') ?? '',
      ShmSize: shmSize ? parseMemoryBytes(shmSize, '--shm-size') : 0,
      ...(Object.keys(sysctls).length > 0 ? { Sysctls: sysctls } : {}),
      ...(flags.has('runtime') ? { Runtime: flags.string('runtime') } : {}),
      Isolation: '',
      CpuShares: flags.int('cpu-shares') ?? 0,
      Memory: memory ? parseMemoryBytes(memory) : 0,
      NanoCpus: cpus ? parseCpus(cpus) : 0,
      CgroupParent: flags.string('cgroup-parent') ?? '',
      BlkioWeight: flags.int('blkio-weight') ?? 0,
      BlkioWeightDevice: flags.list('blkio-weight-device').map(parseWeightDevice),
      BlkioDeviceReadBps: throttle('device-read-bps', true),
      BlkioDeviceWriteBps: throttle('device-write-bps', true),
      BlkioDeviceReadIOps: throttle('device-read-iops', false),
      BlkioDeviceWriteIOps: throttle('device-write-iops', false),
      CpuPeriod: flags.int('cpu-period') ?? 0,
      CpuQuota: flags.int('cpu-quota') ?? 0,
      CpuRealtimePeriod: flags.int('cpu-rt-period') ?? 0,
      CpuRealtimeRuntime: flags.int('cpu-rt-runtime') ?? 0,
      CpusetCpus: flags.string('cpuset-cpus') ?? '',
      CpusetMems: flags.string('cpuset-mems') ?? '',
      Devices: devices,
      DeviceCgroupRules: nonEmpty('device-cgroup-rule'),
      DeviceRequests: null,
      ...(kernelMemory ? { KernelMemory: parseMemoryBytes(kernelMemory, '--kernel-memory') } : {}),
      MemoryReservation: memoryReservation ? parseMemoryBytes(memoryReservation, '--memory-reservation') : 0,
      MemorySwap: memorySwap ? parseSwap(memorySwap) : 0,
      MemorySwappiness: flags.int('memory-swappiness') ?? -1,
      OomKillDisable: flags.bool('oom-kill-disable'),
      PidsLimit: flags.int('pids-limit') ?? 0,
      Ulimits: flags.list('ulimit').map(parseUlimit),
      ...(flags.bool('init') ? { Init: true } : {}),
      CpuCount: 0,
      CpuPercent: 0,
      IOMaximumIOps: 0,
      IOMaximumBandwidth: 0,
      ...(mounts.length > 0 ? { Mounts: mounts } : {}),
      MaskedPaths: null,
      ReadonlyPaths: null,
    },
    NetworkingConfig: { EndpointsConfig: endpoints },
  };
  return { name: flags.string('name'), platform: flags.string('platform'), body };
}

/** `k=v` flags into a map (`--sysctl`, `--log-opt`, `--storage-opt`). */
function keyValues(entries: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq <= 0) throw new UsageError(`invalid key=value pair: ${e}`, 125);
    out[e.slice(0, eq)] = e.slice(eq + 1);
  }
  return out;
}

function capName(cap: string): string {
  const upper = cap.toUpperCase();
  return upper === 'ALL' || upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
}
