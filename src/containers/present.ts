import * as path from 'node:path';
import { InvalidArgument } from '../common/errors.js';
import { emptyEndpoint } from '../network/present.js';
import { quoteCommand } from './config.js';
import type { ContainerService } from './service.js';
import { type ContainerRecord, NEVER } from './types.js';

/** Engine API shapes for container records (inspect and list), kept apart from the lifecycle code. */

function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  const d = Math.floor(h / 24);
  if (d < 14) return `${d} days`;
  if (d < 60) return `${Math.floor(d / 7)} weeks`;
  if (d < 730) return `${Math.floor(d / 30)} months`;
  return `${Math.floor(d / 365)} years`;
}

export function statusText(r: ContainerRecord, now = Date.now()): string {
  const st = r.state;
  switch (st.status) {
    case 'running':
      return `Up ${humanDuration(now - Date.parse(st.startedAt))}`;
    case 'paused':
      return `Up ${humanDuration(now - Date.parse(st.startedAt))} (Paused)`;
    case 'restarting':
      return `Restarting (${st.exitCode}) ${humanDuration(now - Date.parse(st.finishedAt))} ago`;
    case 'removing':
      return 'Removal In Progress';
    case 'dead':
      return 'Dead';
    case 'exited':
      if (st.finishedAt === NEVER) return 'Created';
      return `Exited (${st.exitCode}) ${humanDuration(now - Date.parse(st.finishedAt))} ago`;
    default:
      return 'Created';
  }
}

function networksOf(r: ContainerRecord): Record<string, unknown> {
  const mode = r.hostConfig.NetworkMode ?? 'default';
  const name = mode === 'default' ? 'none' : mode;
  if (name === 'host') return { host: emptyEndpoint() };
  return { [name]: emptyEndpoint() };
}

export function inspectContainer(
  svc: ContainerService,
  r: ContainerRecord,
  size = false,
): Record<string, unknown> {
  const dir = svc.containerDir(r.id);
  const started = r.hasStarted;
  const st = r.state;
  return {
    Id: r.id,
    Created: r.created,
    Path: r.path,
    Args: r.args,
    State: {
      Status: st.status,
      Running: st.status === 'running' || st.status === 'paused',
      Paused: st.status === 'paused',
      Restarting: st.status === 'restarting',
      OOMKilled: st.oomKilled,
      Dead: st.status === 'dead',
      Pid: st.pid,
      ExitCode: st.exitCode,
      Error: st.error,
      StartedAt: st.startedAt,
      FinishedAt: st.finishedAt,
      ...(svc.extensions?.healthOf(r) ? { Health: svc.extensions.healthOf(r) } : {}),
    },
    Image: r.imageId,
    ResolvConfPath: started ? path.join(dir, 'resolv.conf') : '',
    HostnamePath: started ? path.join(dir, 'hostname') : '',
    HostsPath: started ? path.join(dir, 'hosts') : '',
    LogPath: started ? svc.logPath(r.id) : '',
    Name: `/${r.name}`,
    RestartCount: r.restartCount,
    Driver: 'overlay2',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: svc.execs.idsFor(r.id).length > 0 ? svc.execs.idsFor(r.id) : null,
    HostConfig: {
      Binds: null,
      ContainerIDFile: '',
      LogConfig: { Type: 'k8s-file', Config: {} },
      NetworkMode: 'default',
      PortBindings: {},
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
      AutoRemove: false,
      VolumeDriver: '',
      VolumesFrom: null,
      CapAdd: null,
      CapDrop: null,
      CgroupnsMode: 'host',
      Dns: [],
      DnsOptions: [],
      DnsSearch: [],
      ExtraHosts: null,
      GroupAdd: null,
      IpcMode: 'private',
      Cgroup: '',
      Links: null,
      OomScoreAdj: 0,
      PidMode: '',
      Privileged: false,
      PublishAllPorts: false,
      ReadonlyRootfs: false,
      SecurityOpt: null,
      UTSMode: '',
      UsernsMode: '',
      ShmSize: 67108864,
      Runtime: r.runtime,
      ConsoleSize: [0, 0],
      Isolation: '',
      CpuShares: 0,
      Memory: 0,
      NanoCpus: 0,
      CgroupParent: '',
      BlkioWeight: 0,
      BlkioWeightDevice: [],
      BlkioDeviceReadBps: null,
      BlkioDeviceWriteBps: null,
      BlkioDeviceReadIOps: null,
      BlkioDeviceWriteIOps: null,
      CpuPeriod: 0,
      CpuQuota: 0,
      CpuRealtimePeriod: 0,
      CpuRealtimeRuntime: 0,
      CpusetCpus: '',
      CpusetMems: '',
      Devices: [],
      DeviceCgroupRules: null,
      DeviceRequests: null,
      KernelMemory: 0,
      KernelMemoryTCP: 0,
      MemoryReservation: 0,
      MemorySwap: 0,
      MemorySwappiness: null,
      OomKillDisable: false,
      PidsLimit: null,
      Ulimits: null,
      CpuCount: 0,
      CpuPercent: 0,
      IOMaximumIOps: 0,
      IOMaximumBandwidth: 0,
      MaskedPaths: [
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
      ],
      ReadonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
      ...r.hostConfig,
    },
    GraphDriver: {
      Data: {
        LowerDir: r.chainId ? svc.lowerDirsOf(r).join(':') : '',
        MergedDir: path.join(dir, 'rootfs'),
        UpperDir: path.join(dir, 'upper'),
        WorkDir: path.join(dir, 'work'),
      },
      Name: 'overlay2',
    },
    ...(size ? svc.sizes(r) : {}),
    Mounts: svc.extensions?.mountsOf(r) ?? [],
    Config: {
      Hostname: r.config.Hostname,
      Domainname: r.config.Domainname ?? '',
      User: r.config.User ?? '',
      AttachStdin: r.config.AttachStdin ?? false,
      AttachStdout: r.config.AttachStdout ?? false,
      AttachStderr: r.config.AttachStderr ?? false,
      ...(r.config.ExposedPorts ? { ExposedPorts: r.config.ExposedPorts } : {}),
      Tty: r.config.Tty ?? false,
      OpenStdin: r.config.OpenStdin ?? false,
      StdinOnce: r.config.StdinOnce ?? false,
      Env: r.config.Env,
      Cmd: r.config.Cmd,
      ...(r.config.Healthcheck ? { Healthcheck: r.config.Healthcheck } : {}),
      Image: r.imageRef,
      Volumes: r.config.Volumes ?? null,
      WorkingDir: r.config.WorkingDir ?? '',
      Entrypoint: r.config.Entrypoint,
      OnBuild: r.config.OnBuild ?? null,
      Labels: r.config.Labels,
      ...(r.config.StopSignal ? { StopSignal: r.config.StopSignal } : {}),
      ...(r.config.StopTimeout !== undefined && r.config.StopTimeout !== null
        ? { StopTimeout: r.config.StopTimeout }
        : {}),
    },
    NetworkSettings: svc.extensions?.networkSettingsOf(r, svc.isRunning(r)) ?? {
      Bridge: '',
      SandboxID: '',
      HairpinMode: false,
      LinkLocalIPv6Address: '',
      LinkLocalIPv6PrefixLen: 0,
      Ports: {},
      SandboxKey: '',
      SecondaryIPAddresses: null,
      SecondaryIPv6Addresses: null,
      EndpointID: '',
      Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      IPAddress: '',
      IPPrefixLen: 0,
      IPv6Gateway: '',
      MacAddress: '',
      Networks: networksOf(r),
    },
  };
}

export function listEntry(
  svc: ContainerService,
  r: ContainerRecord,
  size: boolean,
  now: number,
): Record<string, unknown> {
  return {
    Id: r.id,
    Names: [`/${r.name}`],
    Image: r.imageRef,
    ImageID: r.imageId,
    Command: quoteCommand([r.path, ...r.args]),
    Created: Math.floor(Date.parse(r.created) / 1000),
    Ports: svc.extensions?.portsOf(r, svc.isRunning(r)) ?? [],
    Labels: r.config.Labels,
    State: r.state.status,
    Status: statusText(r, now) + (svc.extensions?.statusSuffix(r) ?? ''),
    HostConfig: { NetworkMode: r.hostConfig.NetworkMode ?? 'default' },
    NetworkSettings: { Networks: svc.extensions?.networksOf(r) ?? networksOf(r) },
    Mounts: svc.extensions?.mountsOf(r) ?? [],
    ...(size ? svc.sizes(r) : {}),
  };
}

export const LIST_FILTERS = [
  'id',
  'name',
  'label',
  'status',
  'ancestor',
  'exited',
  'before',
  'since',
  'network',
  'volume',
  'health',
  'isolation',
  'is-task',
  'publish',
  'expose',
] as const;

const STATUSES = ['created', 'running', 'paused', 'restarting', 'removing', 'exited', 'dead'];

/** `docker ps` filtering: values of one key are ORed, keys are ANDed, several `label`s are ANDed. */
export function filterContainers(
  svc: ContainerService,
  records: ContainerRecord[],
  filters: Map<string, string[]>,
  resolveImage: (ref: string) => string | null,
): ContainerRecord[] {
  for (const s of filters.get('status') ?? []) {
    if (!STATUSES.includes(s)) throw new InvalidArgument(`invalid filter 'status=${s}'`);
  }
  for (const e of filters.get('exited') ?? []) {
    if (!/^-?\d+$/.test(e)) throw new InvalidArgument(`invalid filter 'exited=${e}'`);
  }
  const boundary = (key: string): string | null => {
    const v = filters.get(key)?.[0];
    if (v === undefined) return null;
    return svc.get(v).created;
  };
  const before = boundary('before');
  const since = boundary('since');
  const ancestors = (filters.get('ancestor') ?? []).map((a) => resolveImage(a));
  return records.filter((r) => {
    const id = filters.get('id');
    if (id && !id.some((v) => r.id.startsWith(v))) return false;
    const name = filters.get('name');
    if (name && !name.some((v) => new RegExp(v.replace(/^\//, '')).test(r.name))) return false;
    for (const label of filters.get('label') ?? []) {
      const i = label.indexOf('=');
      const key = i < 0 ? label : label.slice(0, i);
      if (!(key in r.config.Labels)) return false;
      if (i >= 0 && r.config.Labels[key] !== label.slice(i + 1)) return false;
    }
    const status = filters.get('status');
    if (status && !status.includes(r.state.status)) return false;
    const exited = filters.get('exited');
    if (
      exited &&
      !(r.state.status === 'exited' && r.hasStarted && exited.map(Number).includes(r.state.exitCode))
    )
      return false;
    if (
      ancestors.length > 0 &&
      !ancestors.some((a) => a !== null && a === r.imageId) &&
      !(filters.get('ancestor') ?? []).includes(r.imageRef)
    )
      return false;
    if (before && r.created >= before) return false;
    if (since && r.created <= since) return false;
    for (const key of ['network', 'volume', 'health'] as const) {
      const values = filters.get(key);
      if (values && !values.some((v) => svc.extensions?.matchesFilter(r, key, v))) return false;
    }
    return true;
  });
}
