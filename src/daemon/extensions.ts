import type { RouteTable } from '../api/http.js';
import { registerNetworkRoutes } from '../api/routes/networks.js';
import { registerVolumeRoutes } from '../api/routes/volumes.js';
import { errorMessage } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { logger } from '../common/log.js';
import { EngineExtensions } from '../containers/extensions.js';
import { HealthMonitor } from '../containers/health.js';
import { RestartManager, restartSchema } from '../containers/restart.js';
import type { ContainerService } from '../containers/service.js';
import { parseUpstream } from '../network/dns.js';
import { NetworkService } from '../network/service.js';
import { networksSchema } from '../network/store.js';
import type { Db, PartSchema } from '../store/db.js';
import { VolumeService, volumesSchema } from '../volumes/service.js';

const log = logger('daemon');

/** Tables of the parts wired here (added to the daemon's openStore list). */
export const extensionSchemas: readonly PartSchema[] = [networksSchema, volumesSchema, restartSchema];

/**
 * Wires networks, volumes, restart policies and health checks into the container service and the
 * API. Start-up order: `init()` (bridges, rules, DNS servers) before `containers.recover()` (which
 * reports exits that happened while the daemon was down), then `afterRecover()`.
 */
export class DaemonExtensions {
  readonly networks: NetworkService;
  readonly volumes: VolumeService;
  readonly restarts: RestartManager;
  readonly health: HealthMonitor;

  constructor(opts: {
    db: Db;
    root: string;
    events: EventBus;
    containers: ContainerService;
    dnsUpstreams?: string[];
  }) {
    const { db, root, events, containers } = opts;
    this.volumes = new VolumeService(db, root, events);
    this.networks = new NetworkService({
      db,
      root,
      events,
      containers,
      ...(opts.dnsUpstreams && opts.dnsUpstreams.length > 0
        ? {
            dnsUpstreams: opts.dnsUpstreams
              .flatMap((s) => s.split(','))
              .filter(Boolean)
              .map(parseUpstream),
          }
        : {}),
    });
    this.restarts = new RestartManager(db, containers);
    this.health = new HealthMonitor(containers, events);
    this.volumes.setUsers((name) => EngineExtensions.volumeUsers(containers.all(), name));
    containers.extensions = new EngineExtensions({
      networks: this.networks,
      volumes: this.volumes,
      restarts: this.restarts,
      health: this.health,
      findContainer: (ref) => containers.find(ref),
    });
    this.containers = containers;
  }

  private readonly containers: ContainerService;

  async init(): Promise<void> {
    await this.networks.init();
  }

  async afterRecover(): Promise<void> {
    await this.networks.afterRecover();
    this.restarts.resume();
    for (const c of this.containers.all()) if (c.state.status === 'running') this.health.start(c);
  }

  registerRoutes(router: RouteTable): void {
    registerNetworkRoutes(router, {
      networks: this.networks,
      containerName: (id) => this.containers.find(id)?.name ?? '',
    });
    registerVolumeRoutes(router, { volumes: this.volumes });
  }

  /** Daemon stop: timers off; bridges and rules go away when no container runs on them. */
  async shutdown(): Promise<void> {
    this.restarts.close();
    this.health.close();
    try {
      await this.networks.shutdown();
      if (this.containers.all().every((c) => !this.containers.isRunning(c))) this.volumes.unmountAll();
    } catch (err) {
      log.warn('network shutdown incomplete', { error: errorMessage(err) });
    }
  }
}
