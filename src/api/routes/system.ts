import * as os from 'node:os';
import { InvalidArgument } from '../../common/errors.js';
import type { EngineEvent, EventBus } from '../../common/events.js';
import type { ContainerService } from '../../containers/service.js';
import {
  API_VERSION,
  JsonStream,
  MIN_API_VERSION,
  parseFilters,
  type RouteTable,
  sendJson,
} from '../http.js';

export const ENGINE_VERSION = '0.1.0';

export interface SystemRouteDeps {
  containers: ContainerService;
  events: EventBus;
  root: string;
  defaultRuntime: string;
  runtimes: string[];
  imageCount: () => number;
  cgroupVersion: '1' | '2';
  startedAt: number;
  /** Docker Hub mirrors (`--registry-mirror`), as URLs ending in `/`. */
  registryMirrors?: string[];
  /** Host facts that override the defaults below (cgroup capabilities, security options, …). */
  extraInfo?: () => Record<string, unknown>;
}

function parseEventTime(value: string | null): bigint | undefined {
  if (value === null || value === '') return undefined;
  const m = /^(\d+)(?:\.(\d{1,9}))?$/.exec(value);
  if (m) return BigInt(m[1]) * 1_000_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new InvalidArgument(`invalid time value: ${value}`);
  return BigInt(t) * 1_000_000n;
}

const EVENT_FILTERS = [
  'container',
  'event',
  'image',
  'label',
  'type',
  'volume',
  'network',
  'daemon',
  'plugin',
  'node',
  'service',
  'secret',
  'config',
  'scope',
];

function matchesEvent(e: EngineEvent, filters: Map<string, string[]>): boolean {
  const type = filters.get('type');
  if (type && !type.includes(e.Type)) return false;
  const action = filters.get('event');
  if (action && !action.some((a) => e.Action === a || e.Action.startsWith(`${a}:`))) return false;
  const container = filters.get('container');
  if (
    container &&
    !(
      e.Type === 'container' &&
      container.some((c) => e.Actor.ID.startsWith(c) || e.Actor.Attributes.name === c)
    )
  )
    return false;
  const image = filters.get('image');
  if (
    image &&
    !image.some(
      (i) =>
        (e.Type === 'image' &&
          (e.Actor.ID === i ||
            e.Actor.ID.replace(/^sha256:/, '').startsWith(i) ||
            e.Actor.Attributes.name === i)) ||
        (e.Type === 'container' && e.Actor.Attributes.image === i),
    )
  )
    return false;
  for (const label of filters.get('label') ?? []) {
    const i = label.indexOf('=');
    const key = i < 0 ? label : label.slice(0, i);
    if (!(key in e.Actor.Attributes)) return false;
    if (i >= 0 && e.Actor.Attributes[key] !== label.slice(i + 1)) return false;
  }
  const network = filters.get('network');
  if (
    network &&
    !(e.Type === 'network' && network.some((n) => e.Actor.ID.startsWith(n) || e.Actor.Attributes.name === n))
  )
    return false;
  const volume = filters.get('volume');
  if (volume && !(e.Type === 'volume' && volume.includes(e.Actor.ID))) return false;
  return true;
}

export function registerSystemRoutes(routes: RouteTable, deps: SystemRouteDeps): void {
  const version = () => ({
    Platform: { Name: 'Strata Engine' },
    Components: [
      {
        Name: 'Engine',
        Version: ENGINE_VERSION,
        Details: {
          ApiVersion: API_VERSION,
          Arch: 'amd64',
          BuildTime: '',
          Experimental: 'false',
          GitCommit: '',
          GoVersion: process.version,
          KernelVersion: os.release(),
          MinAPIVersion: MIN_API_VERSION,
          Os: 'linux',
        },
      },
    ],
    Version: ENGINE_VERSION,
    ApiVersion: API_VERSION,
    MinAPIVersion: MIN_API_VERSION,
    GitCommit: '',
    GoVersion: process.version,
    Os: 'linux',
    Arch: 'amd64',
    KernelVersion: os.release(),
    BuildTime: '',
  });
  routes.add('GET', '/version', (r) => sendJson(r.res, 200, version()));

  routes.add('GET', '/info', (r) => {
    const all = deps.containers.all();
    const running = all.filter((c) => c.state.status === 'running').length;
    const paused = all.filter((c) => c.state.status === 'paused').length;
    sendJson(r.res, 200, {
      ID: 'STRATA',
      Containers: all.length,
      ContainersRunning: running,
      ContainersPaused: paused,
      ContainersStopped: all.length - running - paused,
      Images: deps.imageCount(),
      Driver: 'overlay2',
      DriverStatus: [['Backing Filesystem', 'extfs']],
      Plugins: {
        Volume: ['local'],
        Network: ['bridge', 'host', 'null'],
        Authorization: null,
        Log: ['k8s-file'],
      },
      MemoryLimit: true,
      SwapLimit: true,
      KernelMemory: false,
      CpuCfsPeriod: true,
      CpuCfsQuota: true,
      CPUShares: true,
      CPUSet: true,
      PidsLimit: true,
      IPv4Forwarding: true,
      BridgeNfIptables: false,
      BridgeNfIp6tables: false,
      Debug: false,
      NFd: 0,
      OomKillDisable: true,
      NGoroutines: 0,
      SystemTime: new Date().toISOString(),
      LoggingDriver: 'k8s-file',
      CgroupDriver: 'cgroupfs',
      CgroupVersion: deps.cgroupVersion,
      NEventsListener: 0,
      KernelVersion: os.release(),
      OperatingSystem: 'Strata Engine on Linux',
      OSVersion: '',
      OSType: 'linux',
      Architecture: 'x86_64',
      IndexServerAddress: 'https://index.docker.io/v1/',
      RegistryConfig: {
        AllowNondistributableArtifactsCIDRs: [],
        AllowNondistributableArtifactsHostnames: [],
        InsecureRegistryCIDRs: ['127.0.0.0/8'],
        IndexConfigs: {
          'docker.io': {
            Name: 'docker.io',
            Mirrors: deps.registryMirrors ?? [],
            Secure: true,
            Official: true,
          },
        },
        Mirrors: deps.registryMirrors ?? [],
      },
      NCPU: os.availableParallelism(),
      MemTotal: os.totalmem(),
      GenericResources: null,
      DockerRootDir: deps.root,
      HttpProxy: '',
      HttpsProxy: '',
      NoProxy: '',
      Name: os.hostname(),
      Labels: [],
      ExperimentalBuild: false,
      ServerVersion: ENGINE_VERSION,
      Runtimes: Object.fromEntries(deps.runtimes.map((name) => [name, { path: name }])),
      DefaultRuntime: deps.defaultRuntime,
      Swarm: {
        NodeID: '',
        NodeAddr: '',
        LocalNodeState: 'inactive',
        ControlAvailable: false,
        Error: '',
        RemoteManagers: null,
      },
      LiveRestoreEnabled: true,
      Isolation: '',
      InitBinary: 'catatonit',
      ContainerdCommit: { ID: '', Expected: '' },
      RuncCommit: { ID: '', Expected: '' },
      InitCommit: { ID: '', Expected: '' },
      SecurityOptions: ['name=cgroupns'],
      Warnings: null,
      ...deps.extraInfo?.(),
    });
  });

  routes.add('GET', '/events', (r) => {
    const filters = parseFilters(r.query, EVENT_FILTERS);
    const since = parseEventTime(r.query.get('since'));
    const until = parseEventTime(r.query.get('until'));
    const stream = new JsonStream(r.res, '\n');
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    if (since !== undefined) {
      for (const e of deps.events.recent(since, until)) if (matchesEvent(e, filters)) stream.write(e);
    }
    if (until !== undefined && until <= nowNs) {
      stream.end();
      return;
    }
    const unsubscribe = deps.events.subscribe((e) => {
      if (until !== undefined && BigInt(e.timeNano) > until) {
        finish();
        return;
      }
      if (matchesEvent(e, filters)) stream.write(e);
    });
    const timer =
      until !== undefined ? setTimeout(() => finish(), Number((until - nowNs) / 1_000_000n) + 1) : null;
    const finish = () => {
      unsubscribe();
      if (timer) clearTimeout(timer);
      stream.end();
    };
    r.res.on('close', () => {
      unsubscribe();
      if (timer) clearTimeout(timer);
    });
  });
}
