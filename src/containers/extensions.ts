import * as fs from 'node:fs';
import * as path from 'node:path';
import { errorMessage, InvalidArgument } from '../common/errors.js';
import { logger } from '../common/log.js';
import { containerNetworks, networkSettings, portList } from '../network/present.js';
import { endpointsConfigOf, type NetworkService } from '../network/service.js';
import type { OciMount } from '../runtime/spec.js';
import type { VolumeService } from '../volumes/service.js';
import { type HealthMonitor, type HealthState, healthSuffix } from './health.js';
import {
  anonymousVolumes,
  type MountPoint,
  ociMounts,
  resolveMounts,
  sortMounts,
  type WithMounts,
} from './mounts.js';
import type { RestartManager } from './restart.js';
import type { ContainerRecord, CreateBody } from './types.js';

const log = logger('containers');

/**
 * What the container lifecycle asks of the parts plugged into it (networks, volumes and mounts,
 * restart policies, health checks, `--init`). ContainerService calls these at fixed points:
 *
 *   create  → `created(record, body)`      may refuse (unknown network, bad mount) before the record exists
 *   start   → `prepareStart(…)`            mounts, namespace to join, argv prefix, /etc files
 *           → plan.attach(pid)             the process exists (not started): plug in its interfaces
 *           → `started(record)`            health probes, restart bookkeeping
 *   exit    → `exited(record)`             release addresses and ports (before the `die` event)
 *           → `afterExit(record)`          restart policy (once the exit bookkeeping is done)
 *   stop/kill → `stopRequested(record)`    a manual stop: no policy restart
 *   remove  → `removed(record, volumes)`   leftovers, anonymous volumes with `rm -v`
 */
export interface StartPlan {
  /** Every extra mount, /etc files included, in mount order. */
  mounts: OciMount[];
  /** A network namespace to join instead of a new one. */
  netnsPath: string | null;
  /** Put before the command (`--init`). */
  argsPrefix: string[];
  attach(pid: number): Promise<void>;
  abort(): Promise<void>;
}

export interface ContainerExtensions {
  created(record: ContainerRecord, body: CreateBody): void;
  prepareStart(
    record: ContainerRecord,
    rootfs: string,
    dir: string,
    etcMounts: OciMount[],
  ): Promise<StartPlan>;
  started(record: ContainerRecord): void;
  exited(record: ContainerRecord): Promise<void>;
  afterExit(record: ContainerRecord): void;
  stopRequested(record: ContainerRecord): void;
  removed(record: ContainerRecord, opts: { volumes: boolean }): Promise<void>;
  /** Pieces of inspect / list output these parts own. */
  mountsOf(record: ContainerRecord): Record<string, unknown>[];
  networkSettingsOf(record: ContainerRecord, running: boolean): Record<string, unknown>;
  /** `NetworkSettings.Networks` alone (what `ps` shows). */
  networksOf(record: ContainerRecord): Record<string, unknown>;
  portsOf(record: ContainerRecord, running: boolean): Record<string, unknown>[];
  healthOf(record: ContainerRecord): HealthState | undefined;
  statusSuffix(record: ContainerRecord): string;
  /** `docker ps --filter network=… / volume=… / health=…`. */
  matchesFilter(record: ContainerRecord, key: 'network' | 'volume' | 'health', value: string): boolean;
}

/** The init process for `--init` (Debian's catatonit; tini-static as a fallback). */
export function initBinary(): string | null {
  for (const candidate of ['/usr/bin/catatonit', '/usr/libexec/podman/catatonit', '/usr/bin/tini-static']) {
    if (fs.existsSync(candidate)) return candidate;
  }
  return null;
}

export interface ExtensionDeps {
  networks: NetworkService;
  volumes: VolumeService;
  restarts: RestartManager;
  health: HealthMonitor;
  /** The container part's lookup (for --volumes-from). */
  findContainer: (ref: string) => ContainerRecord | null;
}

export class EngineExtensions implements ContainerExtensions {
  constructor(private readonly deps: ExtensionDeps) {}

  created(record: ContainerRecord, body: CreateBody): void {
    this.deps.networks.validateCreate(record);
    if (record.hostConfig.Init && !initBinary())
      throw new InvalidArgument('--init: no init binary found (install catatonit)');
    const imageVolumes = record.config.Volumes ?? null;
    (record as WithMounts).mounts = resolveMounts(body, imageVolumes, this.deps.volumes, (ref) =>
      this.deps.findContainer(ref),
    );
  }

  async prepareStart(
    record: ContainerRecord,
    rootfs: string,
    dir: string,
    etcMounts: OciMount[],
  ): Promise<StartPlan> {
    const mounts = ociMounts(record as WithMounts, rootfs, this.deps.volumes);
    const net = await this.deps.networks.prepare(record);
    let etc = etcMounts;
    if (net.etcFrom) {
      const from = net.etcFrom;
      etc = etcMounts.map((m) =>
        m.destination === '/etc/hostname' ? m : { ...m, source: path.join(from, path.basename(m.source)) },
      );
    } else {
      if (net.hosts !== null) fs.writeFileSync(path.join(dir, 'hosts'), net.hosts);
      if (net.resolvConf !== null) fs.writeFileSync(path.join(dir, 'resolv.conf'), net.resolvConf);
    }
    const argsPrefix: string[] = [];
    if (record.hostConfig.Init) {
      const init = initBinary();
      if (init) {
        mounts.push({
          destination: '/dev/init',
          type: 'bind',
          source: init,
          options: ['bind', 'ro', 'rprivate'],
        });
        argsPrefix.push('/dev/init', '--');
      }
    }
    // Docker's precedence: a volume or bind on /etc/hosts (etc.) replaces the generated file.
    const explicit = new Set(mounts.map((m) => m.destination));
    const all = sortMounts([...mounts, ...etc.filter((m) => !explicit.has(m.destination))]);
    return {
      mounts: all,
      netnsPath: net.netnsPath,
      argsPrefix,
      attach: (pid) => net.attach(pid),
      abort: () => net.abort(),
    };
  }

  started(record: ContainerRecord): void {
    this.deps.restarts.started(record);
    this.deps.health.start(record);
  }

  async exited(record: ContainerRecord): Promise<void> {
    this.deps.health.stop(record.id);
    await this.deps.networks
      .release(record.id)
      .catch((err) => log.warn('network release failed', { id: record.id, error: errorMessage(err) }));
  }

  afterExit(record: ContainerRecord): void {
    this.deps.restarts.exited(record);
  }

  stopRequested(record: ContainerRecord): void {
    this.deps.restarts.stopRequested(record);
  }

  async removed(record: ContainerRecord, opts: { volumes: boolean }): Promise<void> {
    this.deps.restarts.forget(record.id);
    this.deps.health.forget(record.id);
    await this.deps.networks.release(record.id).catch(() => undefined);
    if (!opts.volumes) return;
    for (const name of anonymousVolumes(record as WithMounts)) {
      await this.deps.volumes
        .remove(name)
        .catch((err) => log.warn('anonymous volume not removed', { name, error: errorMessage(err) }));
    }
  }

  mountsOf(record: ContainerRecord): Record<string, unknown>[] {
    return ((record as WithMounts).mounts ?? []).map((m: MountPoint) => ({
      Type: m.Type,
      ...(m.Type === 'volume' ? { Name: m.Name } : {}),
      Source: m.Source,
      Destination: m.Destination,
      ...(m.Type === 'volume' ? { Driver: m.Driver ?? 'local' } : {}),
      Mode: m.Mode,
      RW: m.RW,
      Propagation: m.Propagation,
    }));
  }

  networkSettingsOf(record: ContainerRecord, running: boolean): Record<string, unknown> {
    return networkSettings(this.deps.networks, record, running);
  }

  networksOf(record: ContainerRecord): Record<string, unknown> {
    return containerNetworks(this.deps.networks, record);
  }

  portsOf(record: ContainerRecord, running: boolean): Record<string, unknown>[] {
    return portList(this.deps.networks, record, running);
  }

  healthOf(record: ContainerRecord): HealthState | undefined {
    return this.deps.health.stateOf(record.id);
  }

  statusSuffix(record: ContainerRecord): string {
    if (record.state.status !== 'running') return '';
    return healthSuffix(this.deps.health.stateOf(record.id));
  }

  matchesFilter(record: ContainerRecord, key: 'network' | 'volume' | 'health', value: string): boolean {
    if (key === 'health') return (this.deps.health.stateOf(record.id)?.Status ?? 'none') === value;
    if (key === 'volume')
      return ((record as WithMounts).mounts ?? []).some(
        (m) => m.Name === value || m.Destination === value || m.Source === value,
      );
    const settings = endpointsConfigOf(record);
    return Object.entries(settings).some(
      ([name, e]) => name === value || (e.NetworkID ?? '').startsWith(value),
    );
  }

  /** Container ids whose mounts use `volume` (for `volume rm` refusal and `dangling`). */
  static volumeUsers(containers: ContainerRecord[], volume: string): string[] {
    return containers
      .filter((c) => ((c as WithMounts).mounts ?? []).some((m) => m.Type === 'volume' && m.Name === volume))
      .map((c) => c.id);
  }
}
