import * as fs from 'node:fs';
import type * as http from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import * as path from 'node:path';
import { AuthConfig } from '../access/config.js';
import { AccessControl, requestedAclFrom } from '../access/service.js';
import { AclStore, accessSchema } from '../access/store.js';
import { ApiAuthorizer } from '../api/auth.js';
import type { Router } from '../api/router.js';
import { registerAclRoutes } from '../api/routes/acl.js';
import { registerResourceRoutes } from '../api/routes/stats.js';
import type { ApiServerOptions } from '../api/server.js';
import type { Digest } from '../common/digest.js';
import type { EventBus } from '../common/events.js';
import { logger } from '../common/log.js';
import type { ContainerService, ContainerServiceOptions } from '../containers/service.js';
import { ContainerUpdater } from '../containers/update.js';
import type { ImageService } from '../images/service.js';
import { treeSize } from '../native/index.js';
import { type CgroupCapabilities, probeCgroupCapabilities } from '../runtime/cgroup-host.js';
import type { CgroupLayout } from '../runtime/cgroups.js';
import { hostInfoFields } from '../runtime/hostinfo.js';
import { parseSeccompProfile, type SeccompProfile } from '../runtime/seccomp.js';
import { DEFAULT_SECCOMP_PROFILE } from '../runtime/seccomp-default.js';
import { applySecurity, checkCreate, type SecurityContext } from '../runtime/security.js';
import { StatsSampler } from '../runtime/stats.js';
import { openUsernsFd, resolveUsernsRemap, type UsernsRemap } from '../runtime/userns.js';
import { IdmappedSnapshotter } from '../snapshots/idmapped.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import { type Db, migrate } from '../store/db.js';
import type { VolumeService } from '../volumes/service.js';
import { listenTls, type TlsOptions } from './tls.js';

const log = logger('daemon');

/**
 * Daemon wiring for issue 6 — resource limits, container security, access control — kept out of
 * main.ts: `prepareSecurity` runs before the services are built (cgroup capabilities, seccomp profile,
 * user namespace), `registerRoutes` once they exist (stats/update/df and ACL routes, the
 * authorization middleware), `listen` after the unix socket is up (the TLS TCP listeners).
 */
export const SECURITY_DAEMON_OPTIONS = {
  host: { type: 'string', short: 'H', multiple: true },
  tlsverify: { type: 'boolean' },
  tlscacert: { type: 'string' },
  tlscert: { type: 'string' },
  tlskey: { type: 'string' },
  'auth-config': { type: 'string' },
  'userns-remap': { type: 'string' },
  'seccomp-profile': { type: 'string' },
} as const;

export const SECURITY_USAGE = `  -H, --host tcp://ADDR:PORT  also serve the API over TCP — TLS with client certificates only:
                         --tlsverify --tlscacert CA --tlscert CERT --tlskey KEY
  --auth-config FILE     bearer tokens and admin principals (JSON, see README "Access control")
  --userns-remap SPEC    run containers in a user namespace: default | USER[:GROUP] (from /etc/subuid)
  --seccomp-profile P    daemon-wide default seccomp profile: builtin (default), unconfined, or a JSON file`;

export interface SecurityOptionValues {
  host?: string[];
  tlsverify?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
  'auth-config'?: string;
  'userns-remap'?: string;
  'seccomp-profile'?: string;
}

export interface ServiceRefs {
  containers: ContainerService;
  images: ImageService;
  snapshotter: Snapshotter;
  events: EventBus;
  db: Db;
  volumes?: VolumeService;
}

export class DaemonSecurity {
  readonly caps: CgroupCapabilities;
  private containers: ContainerService | null = null;
  private readonly sampler: StatsSampler;
  private readonly context: SecurityContext;
  private access: AccessControl | null = null;

  private constructor(
    private readonly values: SecurityOptionValues,
    private readonly root: string,
    caps: CgroupCapabilities,
    seccompProfile: SeccompProfile | null,
    private readonly seccompKind: 'builtin' | 'unconfined' | 'custom',
    private readonly userns: { remap: UsernsRemap; fd: number } | null,
    private readonly authConfig: AuthConfig,
  ) {
    this.caps = caps;
    this.sampler = new StatsSampler(caps.version);
    this.context = {
      caps,
      seccompProfile,
      userns: userns?.remap ?? null,
      containerPid: (ref) => {
        const record = this.containers?.find(ref);
        return record && this.containers?.isRunning(record) ? record.state.pid : null;
      },
    };
  }

  static async prepare(
    values: SecurityOptionValues,
    root: string,
    layout: CgroupLayout,
    db: Db,
  ): Promise<DaemonSecurity> {
    migrate(db, [accessSchema]);
    const caps = probeCgroupCapabilities(layout);
    const profileOpt = values['seccomp-profile'] ?? 'builtin';
    let profile: SeccompProfile | null = DEFAULT_SECCOMP_PROFILE;
    let kind: 'builtin' | 'unconfined' | 'custom' = 'builtin';
    if (profileOpt === 'unconfined') {
      profile = null;
      kind = 'unconfined';
    } else if (profileOpt !== 'builtin' && profileOpt !== 'default') {
      profile = parseSeccompProfile(fs.readFileSync(profileOpt, 'utf8'));
      kind = 'custom';
    }
    let userns: { remap: UsernsRemap; fd: number } | null = null;
    if (values['userns-remap']) {
      const remap = resolveUsernsRemap(values['userns-remap']);
      userns = { remap, fd: await openUsernsFd(remap) };
      log.info(
        `user namespace remapping: container root is host uid ${remap.uid} (${remap.user}, ${remap.size} ids)`,
      );
    }
    if ((values.host ?? []).some((h) => h.startsWith('tcp://')) && !values.tlsverify)
      throw new Error('refusing to listen on TCP without --tlsverify (client certificates are required)');
    return new DaemonSecurity(
      values,
      root,
      caps,
      profile,
      kind,
      userns,
      AuthConfig.load(values['auth-config']),
    );
  }

  /** Options for ContainerService: create-time checks and the spec decorator. */
  containerHooks(): Pick<ContainerServiceOptions, 'checkHostConfig' | 'decorateSpec'> {
    return {
      checkHostConfig: (host) => checkCreate(host, this.context),
      decorateSpec: (spec, record) => applySecurity(spec, record.hostConfig, this.context),
    };
  }

  /** The snapshotter containers mount through (idmapped layers under --userns-remap). */
  containerSnapshotter(snapshotter: Snapshotter): Snapshotter {
    if (!this.userns) return snapshotter;
    return new IdmappedSnapshotter(snapshotter, this.userns.remap, this.userns.fd, (containerDir) => {
      const record = this.containers?.find(path.basename(containerDir));
      return record?.hostConfig.UsernsMode !== 'host';
    });
  }

  /** `/info` fields from the host. */
  readonly info = (): Record<string, unknown> =>
    hostInfoFields({
      caps: this.caps,
      root: this.root,
      seccomp: this.seccompKind,
      userns: this.userns !== null,
    });

  /** Registers the resource and ACL routes; returns the authorization middleware. */
  registerRoutes(router: Router, refs: ServiceRefs): NonNullable<ApiServerOptions['middleware']> {
    const { containers, images } = refs;
    this.containers = containers;
    registerResourceRoutes(router, {
      containers,
      updater: new ContainerUpdater({ containers, db: refs.db, events: refs.events, caps: this.caps }),
      sampler: this.sampler,
      snapshotter: refs.snapshotter,
      images: () =>
        images.list({ all: true }).map((summary) => {
          let chainId: Digest | null = null;
          try {
            chainId = images.resolve(String(summary.Id)).chainId;
          } catch {
            chainId = null;
          }
          return { summary, chainId };
        }),
      volumes: refs.volumes
        ? () => {
            const volumes = refs.volumes as VolumeService;
            return volumes.list().map((v) => ({
              ...volumes.inspect(v),
              UsageData: {
                RefCount: volumes.users(v.name).length,
                Size: treeSize(volumes.mountpoint(v.name)),
              },
            }));
          }
        : undefined,
    });
    refs.events.subscribe((e) => {
      if (e.Type === 'container' && e.Action === 'destroy') this.sampler.forget(e.Actor.ID);
    });
    const access = new AccessControl(new AclStore(refs.db), this.authConfig, {
      idOf: (ref) => {
        try {
          return containers.find(ref)?.id ?? null;
        } catch {
          return null;
        }
      },
      requestedAcl: (id) => {
        const record = containers.find(id);
        if (!record) return null;
        return requestedAclFrom(record.config.Labels, (record.config as Record<string, unknown>).StrataAcl);
      },
    });
    access.watch(refs.events);
    // Records of containers that went away while the daemon was down (a crash mid-remove).
    const live = new Set(containers.all().map((c) => c.id));
    for (const id of access.store.ids('container')) if (!live.has(id)) access.store.delete('container', id);
    this.access = access;
    registerAclRoutes(router, { containers, access });
    const authorizer = new ApiAuthorizer({
      access,
      execContainer: (execId) => {
        try {
          return containers.execs.get(execId).containerId;
        } catch {
          return null;
        }
      },
      imageId: (ref) => {
        try {
          return images.resolve(ref).id;
        } catch {
          return null;
        }
      },
    });
    return (r, method, path, next) => authorizer.handle(r, method, path, next);
  }

  /** Starts the TLS listeners of `--host tcp://…`. */
  async listen(api: http.Server): Promise<HttpsServer[]> {
    const hosts = (this.values.host ?? []).filter((h) => h.startsWith('tcp://'));
    const tls: TlsOptions | null =
      this.values.tlsverify && this.values.tlscacert && this.values.tlscert && this.values.tlskey
        ? { caFile: this.values.tlscacert, certFile: this.values.tlscert, keyFile: this.values.tlskey }
        : null;
    const servers: HttpsServer[] = [];
    for (const host of hosts) {
      servers.push(await listenTls(api, host, tls));
      log.info(`API listening on ${host} (TLS, client certificates required)`);
    }
    return servers;
  }

  get accessControl(): AccessControl | null {
    return this.access;
  }
}
