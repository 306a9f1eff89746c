import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import {
  Conflict,
  errorMessage,
  Forbidden,
  InvalidArgument,
  NotFound,
  SystemError,
} from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { newObjectId } from '../common/ids.js';
import { logger } from '../common/log.js';
import type { ContainerRecord } from '../containers/types.js';
import type { Db } from '../store/db.js';
import { bridgeAlias, deleteLinks, ensureBridge, listLinks, ownerOf, withHostLock } from './bridge.js';
import { DnsServer, type NameResolver, parseResolvConf, type Upstream } from './dns.js';
import {
  allocate,
  broadcastOf,
  contains,
  defaultSubnetPool,
  formatIPv4,
  formatSubnet,
  macForIPv4,
  overlaps,
  parseIPv4,
  parseProcRoutes,
  parseSubnet,
  pickSubnet,
  type RoutedSubnet,
  type Subnet,
  userSubnetPool,
} from './ipam.js';
import { BRIDGE_PREFIX, IptablesManager, type RuleState } from './iptables.js';
import { createNetns, type LinkInfo, NetlinkSocket } from './netlink.js';
import { PortHolder, portRequests } from './ports.js';
import {
  type EndpointRecord,
  type IpamConfig,
  type NetworkRecord,
  NetworkTables,
  type SandboxRecord,
} from './store.js';

const log = logger('network');

/** What the network part needs from the container part. */
export interface ContainerAccess {
  get(ref: string): ContainerRecord;
  find(ref: string): ContainerRecord | null;
  all(): ContainerRecord[];
  isRunning(record: ContainerRecord): boolean;
  /** Writes a changed record (connect/disconnect edit its NetworkingConfig). */
  persist(record: ContainerRecord): void;
  containerDir(id: string): string;
}

/** Docker's per-network endpoint settings, as clients send them in NetworkingConfig. */
export interface EndpointSettings {
  Aliases?: string[] | null;
  IPAMConfig?: { IPv4Address?: string; IPv6Address?: string } | null;
  Links?: string[] | null;
  NetworkID?: string;
  [key: string]: unknown;
}

export interface CreateNetworkRequest {
  Name: string;
  Driver?: string | null;
  Internal?: boolean | null;
  Attachable?: boolean | null;
  Ingress?: boolean | null;
  EnableIPv6?: boolean | null;
  IPAM?: {
    Driver?: string | null;
    Options?: Record<string, string> | null;
    Config?: IpamConfig[] | null;
  } | null;
  Options?: Record<string, string> | null;
  Labels?: Record<string, string> | null;
  CheckDuplicate?: boolean | null;
}

/** What a container start gets from the network part. */
export interface NetworkPlan {
  /** Join this namespace instead of a new one (`container:<id>`'s, or the one made for a bridge network). */
  netnsPath: string | null;
  /** Bind these instead of the container's own /etc files (`container:<id>` shares its target's). */
  etcFrom: string | null;
  hosts: string | null;
  resolvConf: string | null;
  /** Runs once the container's process exists (created, not started): interfaces ready, rules, names. */
  attach(pid: number): Promise<void>;
  /** Undoes everything (the start failed). */
  abort(): Promise<void>;
}

export interface NetworkServiceOptions {
  db: Db;
  root: string;
  events: EventBus;
  containers: ContainerAccess;
  /** Resolvers for names that are not containers' (default: the host's /etc/resolv.conf). */
  dnsUpstreams?: Upstream[];
  /** Port of the networks' DNS servers (53; tests of the server itself use another). */
  dnsPort?: number;
}

const STANDARD_HOSTS =
  '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n';

type Mode =
  | { kind: 'host' }
  | { kind: 'none' }
  | { kind: 'container'; target: string }
  | { kind: 'bridge'; network: string };

/** The line of /etc/hosts naming the container itself at `ip`: `ip\tfqdn hostname` (Docker's form). */
export function selfHostsLine(record: Pick<ContainerRecord, 'id' | 'config'>, ip: string): string {
  const hostname = record.config.Hostname || record.id.slice(0, 12);
  const names = record.config.Domainname ? `${hostname}.${record.config.Domainname} ${hostname}` : hostname;
  return `${ip}\t${names}`;
}

export function networkModeOf(record: Pick<ContainerRecord, 'hostConfig'>): Mode {
  const mode = record.hostConfig.NetworkMode ?? '';
  if (mode === 'host') return { kind: 'host' };
  if (mode === 'none') return { kind: 'none' };
  if (mode.startsWith('container:')) return { kind: 'container', target: mode.slice('container:'.length) };
  return { kind: 'bridge', network: mode === '' || mode === 'default' ? 'bridge' : mode };
}

export function endpointsConfigOf(
  record: Pick<ContainerRecord, 'networkingConfig'>,
): Record<string, EndpointSettings> {
  const value = record.networkingConfig.EndpointsConfig;
  return value && typeof value === 'object' ? (value as Record<string, EndpointSettings>) : {};
}

/**
 * Networks (the `bridge` driver, plus the predefined `host` and `none`), the interfaces of running
 * containers on them, their published ports and their DNS names.
 *
 * Lifecycle: `init()` at daemon start (bridges, rules, DNS servers for the stored networks);
 * `create`/`remove` networks; a container is checked at create (`validateCreate`), gets a
 * `NetworkPlan` at start (`prepare` allocates addresses and host ports and makes the network
 * namespace the runtime joins, whose veth pairs are created through netlink while the runtime
 * creates the container; `attach` waits for them), and is released when it stops (`release`). `connect`/`disconnect` edit a container's networks, live when it runs.
 * `afterRecover()` drops whatever a crash left; `shutdown()` removes bridges and rules when no
 * container runs.
 */
export class NetworkService implements NameResolver {
  readonly tag: string;
  private readonly tables: NetworkTables;
  private readonly networks = new Map<string, NetworkRecord>();
  private readonly endpoints = new Map<string, EndpointRecord[]>();
  private readonly sandboxes = new Map<string, SandboxRecord>();
  private readonly holders = new Map<string, PortHolder[]>();
  private readonly dnsServers = new Map<string, DnsServer>();
  private readonly lastAllocated = new Map<string, number>();
  /** Networks whose bridge or subnet another daemon holds (see claimBridges), with the reason. */
  private readonly unavailable = new Map<string, string>();
  private namespaceWarned = false;
  readonly iptables: IptablesManager;

  constructor(private readonly opts: NetworkServiceOptions) {
    this.tag = createHash('sha256').update(opts.root).digest('hex').slice(0, 6);
    this.tables = new NetworkTables(opts.db);
    this.iptables = new IptablesManager(this.tag);
    for (const n of this.tables.networks()) this.networks.set(n.id, n);
    for (const e of this.tables.endpoints()) this.endpointList(e.containerId).push(e);
    for (const s of this.tables.sandboxes()) this.sandboxes.set(s.containerId, s);
  }

  private endpointList(containerId: string): EndpointRecord[] {
    let list = this.endpoints.get(containerId);
    if (!list) {
      list = [];
      this.endpoints.set(containerId, list);
    }
    return list;
  }

  // ---------------------------------------------------------------------------------------------
  // start-up and shutdown

  async init(): Promise<void> {
    await this.ensurePredefined();
    await withHostLock(() => this.claimBridges());
    // Bridges of ours whose network is gone (removed while a crash interrupted us).
    const stale = listLinks()
      .filter((l) => {
        const owner = ownerOf(l);
        return owner !== null && owner.tag === this.tag && !this.networks.has(owner.networkId);
      })
      .map((l) => l.name);
    deleteLinks(stale);
    await this.iptables.install(this.ruleState());
    for (const n of this.networks.values())
      if (n.driver === 'bridge' && !this.unavailable.has(n.id)) await this.startDns(n);
  }

  private async ensurePredefined(): Promise<void> {
    const byName = (name: string) => [...this.networks.values()].find((n) => n.name === name);
    for (const [name, driver] of [
      ['host', 'host'],
      ['none', 'null'],
    ] as const) {
      if (!byName(name)) this.saveNetwork(this.newRecord({ name, driver, predefined: true }));
    }
    if (byName('bridge')) return;
    await withHostLock(() => {
      const links = new Set(listLinks().map((l) => l.name));
      let bridge = '';
      for (let i = 0; i < 100 && bridge === ''; i++)
        if (!links.has(`${BRIDGE_PREFIX}${i}`)) bridge = `${BRIDGE_PREFIX}${i}`;
      if (bridge === '') throw new SystemError('no free bridge name strata0…strata99');
      const subnet = pickSubnet(defaultSubnetPool(), this.takenSubnets());
      if (!subnet)
        throw new SystemError(
          'no free subnet for the default bridge network (10.64-10.88.0.0/16 all in use)',
        );
      const gateway = formatIPv4(subnet.base + 1);
      const record = this.newRecord({
        name: 'bridge',
        driver: 'bridge',
        predefined: true,
        bridge,
        subnet: formatSubnet(subnet),
        gateway,
        options: {
          'com.docker.network.bridge.default_bridge': 'true',
          'com.docker.network.bridge.enable_icc': 'true',
          'com.docker.network.bridge.enable_ip_masquerade': 'true',
          'com.docker.network.bridge.host_binding_ipv4': '0.0.0.0',
          'com.docker.network.bridge.name': bridge,
          'com.docker.network.driver.mtu': '1500',
        },
      });
      record.ipam.Config = [{ Subnet: record.subnet, Gateway: gateway }];
      ensureBridge({ name: bridge, subnet: record.subnet, gateway, alias: bridgeAlias(this.tag, record.id) });
      this.saveNetwork(record);
    });
  }

  /**
   * Brings up the bridges of our networks. A clean stop removes them, so while we were down another
   * daemon may have taken a bridge name or a subnet of ours (the default network's `strataN` and
   * pool subnets are first-free picks): that bridge is never taken over (adding our address to it
   * would join two daemons' networks, and our next clean stop would delete it under the other
   * daemon). The default network moves to a free name and subnet; a user network stays down and
   * its containers refuse to start, until the other daemon lets go of it.
   */
  private claimBridges(): void {
    const links = listLinks();
    for (const n of this.networks.values()) {
      if (n.driver !== 'bridge') continue;
      const conflict = this.bridgeConflict(n, links);
      if (conflict && n.predefined) {
        const reason = conflict;
        this.moveDefaultNetwork(n, links);
        log.warn('default bridge network moved: its bridge or subnet is in use by another daemon', {
          reason,
          bridge: n.bridge,
          subnet: n.subnet,
        });
      } else if (conflict) {
        this.unavailable.set(n.id, conflict);
        log.error('network left down: its bridge or subnet is in use by another daemon', {
          network: n.name,
          reason: conflict,
        });
        continue;
      }
      this.unavailable.delete(n.id);
      ensureBridge({
        name: n.bridge,
        subnet: n.subnet,
        gateway: n.gateway,
        alias: bridgeAlias(this.tag, n.id),
      });
    }
  }

  /** Why `n` cannot have its bridge now (another daemon's bridge, or its subnet routed elsewhere), or null. */
  private bridgeConflict(n: NetworkRecord, links: LinkInfo[]): string | null {
    const link = links.find((l) => l.name === n.bridge);
    if (link) {
      const owner = ownerOf(link);
      if (link.kind !== 'bridge') return `${n.bridge} exists and is not a bridge`;
      if (owner && (owner.tag !== this.tag || owner.networkId !== n.id))
        return `bridge ${n.bridge} belongs to ${link.alias}`;
    }
    const subnet = parseSubnet(n.subnet);
    const routed = this.hostRoutes().find((r) => r.iface !== n.bridge && overlaps(r, subnet));
    return routed ? `subnet ${n.subnet} is routed via ${routed.iface}` : null;
  }

  private moveDefaultNetwork(n: NetworkRecord, links: LinkInfo[]): void {
    const names = new Set(links.map((l) => l.name));
    let bridge = '';
    for (let i = 0; i < 100 && bridge === ''; i++)
      if (!names.has(`${BRIDGE_PREFIX}${i}`)) bridge = `${BRIDGE_PREFIX}${i}`;
    if (bridge === '') throw new SystemError('no free bridge name strata0…strata99');
    const taken: Subnet[] = this.hostRoutes();
    for (const other of this.networks.values())
      if (other !== n && other.subnet) taken.push(parseSubnet(other.subnet));
    const subnet = pickSubnet(defaultSubnetPool(), taken);
    if (!subnet)
      throw new SystemError('no free subnet for the default bridge network (10.64-10.88.0.0/16 all in use)');
    n.bridge = bridge;
    n.subnet = formatSubnet(subnet);
    n.gateway = formatIPv4(subnet.base + 1);
    n.ipam.Config = [{ Subnet: n.subnet, Gateway: n.gateway }];
    n.options = { ...n.options, 'com.docker.network.bridge.name': bridge };
    this.saveNetwork(n);
  }

  private hostRoutes(): RoutedSubnet[] {
    try {
      return parseProcRoutes(fs.readFileSync('/proc/net/route', 'utf8'));
    } catch {
      return [];
    }
  }

  private newRecord(p: Partial<NetworkRecord> & { name: string; driver: string }): NetworkRecord {
    return {
      id: newObjectId(),
      created: new Date().toISOString(),
      internal: false,
      attachable: false,
      ingress: false,
      enableIPv6: false,
      ipam: { Driver: 'default', Options: null, Config: [] },
      options: {},
      labels: {},
      bridge: '',
      subnet: '',
      gateway: '',
      ipRange: '',
      predefined: false,
      ...p,
    };
  }

  private saveNetwork(n: NetworkRecord): void {
    this.tables.saveNetwork(n);
    this.networks.set(n.id, n);
  }

  /** Subnets in use: the host's routes plus every network of ours. */
  private takenSubnets(): Subnet[] {
    const routes: Subnet[] = this.hostRoutes();
    for (const n of this.networks.values()) if (n.subnet) routes.push(parseSubnet(n.subnet));
    return routes;
  }

  private async startDns(n: NetworkRecord): Promise<void> {
    if (this.dnsServers.has(n.id)) return;
    const server = new DnsServer(n.id, n.gateway, this, this.opts.dnsPort ?? 53);
    try {
      await server.start();
      this.dnsServers.set(n.id, server);
    } catch (err) {
      log.warn('network DNS server could not start; containers use the host resolvers', {
        network: n.name,
        address: n.gateway,
        error: errorMessage(err),
      });
    }
  }

  /** True when nothing runs on any network (then shutdown removes bridges and rules). */
  isIdle(): boolean {
    return [...this.endpoints.values()].every((l) => l.length === 0) && this.sandboxes.size === 0;
  }

  async shutdown(): Promise<void> {
    for (const s of this.dnsServers.values()) s.close();
    this.dnsServers.clear();
    for (const list of this.holders.values()) for (const h of list) h.close();
    this.holders.clear();
    if (!this.isIdle()) return;
    await this.iptables
      .removeAll()
      .catch((err) => log.warn('removing iptables rules failed', { error: errorMessage(err) }));
    // Only bridges that say they are ours: a name of ours may be another daemon's bridge now.
    deleteLinks(
      listLinks()
        .filter((l) => ownerOf(l)?.tag === this.tag)
        .map((l) => l.name),
    );
  }

  /**
   * After the container part recovered: endpoints and sandboxes of containers that are not running
   * are released, host veths nobody owns are deleted, published ports are held again.
   */
  async afterRecover(): Promise<void> {
    for (const containerId of new Set([...this.endpoints.keys(), ...this.sandboxes.keys()])) {
      const record = this.opts.containers.find(containerId);
      if (!record || !this.opts.containers.isRunning(record)) await this.release(containerId);
    }
    for (const [containerId, sandbox] of this.sandboxes) {
      const holders: PortHolder[] = [];
      for (const m of sandbox.ports) {
        try {
          holders.push(await PortHolder.open(m, m.containerIp));
        } catch (err) {
          log.warn('published port could not be held again', { port: m.hostPort, error: errorMessage(err) });
        }
      }
      this.holders.set(containerId, holders);
    }
    const known = new Set([...this.endpoints.values()].flat().map((e) => e.hostVeth));
    const ourBridges = new Set<number>();
    const links = listLinks();
    for (const l of links) {
      const owner = ownerOf(l);
      if (owner?.tag === this.tag) ourBridges.add(l.index);
    }
    deleteLinks(
      links
        .filter((l) => l.kind === 'veth' && ourBridges.has(l.master) && !known.has(l.name))
        .map((l) => l.name),
    );
    await this.applyRules();
  }

  private ruleState(): RuleState {
    const networks = [...this.networks.values()]
      .filter((n) => n.driver === 'bridge' && !this.unavailable.has(n.id))
      .map((n) => ({ bridge: n.bridge, subnet: n.subnet, internal: n.internal, gateway: n.gateway }));
    const ports = [...this.sandboxes.values()].flatMap((s) => s.ports);
    return { networks, ports };
  }

  private applyRules(): Promise<void> {
    return this.iptables.apply(() => this.ruleState());
  }

  // ---------------------------------------------------------------------------------------------
  // networks

  list(): NetworkRecord[] {
    return [...this.networks.values()].sort((a, b) => (a.created < b.created ? -1 : 1));
  }

  find(ref: string): NetworkRecord | null {
    if (ref === '') return null;
    const all = [...this.networks.values()];
    const exact = all.find((n) => n.name === ref) ?? this.networks.get(ref);
    if (exact) return exact;
    const prefixed = all.filter((n) => n.id.startsWith(ref));
    return prefixed.length === 1 ? prefixed[0] : null;
  }

  get(ref: string): NetworkRecord {
    const n = this.find(ref);
    if (!n) throw new NotFound(`network ${ref} not found`);
    return n;
  }

  async create(req: CreateNetworkRequest): Promise<{ Id: string; Warning: string }> {
    const name = req.Name?.trim() ?? '';
    if (name === '') throw new InvalidArgument('network name is required');
    if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(name))
      throw new InvalidArgument(`invalid network name "${name}"`);
    if ([...this.networks.values()].some((n) => n.name === name))
      throw new Conflict(`network with name ${name} already exists`);
    const driver = req.Driver && req.Driver !== '' ? req.Driver : 'bridge';
    if (driver !== 'bridge') {
      if (driver === 'host' || driver === 'null')
        throw new Forbidden(`only one instance of "${driver}" network is allowed`);
      throw new NotFound(`plugin "${driver}" not found`);
    }
    if (req.EnableIPv6)
      throw new InvalidArgument('IPv6 is not supported (--ipv6): Strata networks are IPv4 only');
    const options = { ...(req.Options ?? {}) };
    const configs = req.IPAM?.Config ?? [];
    if (configs.length > 1)
      throw new InvalidArgument('only one IPAM config (one IPv4 subnet) per network is supported');
    const requested = configs[0] ?? {};
    const record = this.newRecord({
      name,
      driver,
      internal: req.Internal ?? false,
      attachable: req.Attachable ?? false,
      ingress: req.Ingress ?? false,
      options,
      labels: { ...(req.Labels ?? {}) },
      ipam: { Driver: req.IPAM?.Driver || 'default', Options: req.IPAM?.Options ?? null, Config: [] },
    });
    const bridgeName =
      options['com.docker.network.bridge.name'] || `${BRIDGE_PREFIX}-${record.id.slice(0, 8)}`;
    if (bridgeName.length > 15 || !/^[a-zA-Z0-9_.-]+$/.test(bridgeName))
      throw new InvalidArgument(`invalid bridge name "${bridgeName}"`);
    const mtu = Number(options['com.docker.network.driver.mtu'] ?? 0) || undefined;
    await withHostLock(() => {
      if (listLinks().some((l) => l.name === bridgeName))
        throw new Conflict(`bridge ${bridgeName} already exists on this host`);
      let subnet: Subnet;
      if (requested.Subnet) {
        subnet = parseSubnet(requested.Subnet);
        if (formatSubnet(subnet) !== requested.Subnet.trim())
          throw new InvalidArgument(
            `invalid subnet ${requested.Subnet}: it is not the network address of the block`,
          );
        for (const n of this.networks.values()) {
          if (n.subnet && overlaps(parseSubnet(n.subnet), subnet))
            throw new Forbidden('Pool overlaps with other one on this address space');
        }
      } else {
        const picked = pickSubnet(userSubnetPool(), this.takenSubnets());
        if (!picked) throw new SystemError('could not find an available, non-overlapping IPv4 address pool');
        subnet = picked;
      }
      let gateway = subnet.base + 1;
      if (requested.Gateway) {
        gateway = parseIPv4(requested.Gateway);
        if (!contains(subnet, gateway))
          throw new InvalidArgument(`no matching subnet for gateway ${requested.Gateway}`);
      }
      if (requested.IPRange) {
        const range = parseSubnet(requested.IPRange, 'ip-range');
        if (!contains(subnet, range.base) || range.prefixLen < subnet.prefixLen)
          throw new InvalidArgument(
            `ip-range ${requested.IPRange} is not inside subnet ${formatSubnet(subnet)}`,
          );
        record.ipRange = formatSubnet(range);
      }
      record.bridge = bridgeName;
      record.subnet = formatSubnet(subnet);
      record.gateway = formatIPv4(gateway);
      record.ipam.Config = [
        {
          Subnet: record.subnet,
          ...(record.ipRange ? { IPRange: record.ipRange } : {}),
          Gateway: record.gateway,
          ...(requested.AuxiliaryAddresses ? { AuxiliaryAddresses: requested.AuxiliaryAddresses } : {}),
        },
      ];
      ensureBridge({
        name: bridgeName,
        subnet: record.subnet,
        gateway: record.gateway,
        alias: bridgeAlias(this.tag, record.id),
        ...(mtu ? { mtu } : {}),
      });
      this.saveNetwork(record);
    });
    try {
      await this.applyRules();
    } catch (err) {
      this.tables.deleteNetwork(record.id);
      this.networks.delete(record.id);
      deleteLinks([record.bridge]);
      throw err;
    }
    await this.startDns(record);
    this.opts.events.publish('network', 'create', record.id, { name: record.name, type: record.driver });
    return { Id: record.id, Warning: '' };
  }

  /** Running containers with an interface on `networkId`. */
  activeEndpoints(networkId: string): EndpointRecord[] {
    return [...this.endpoints.values()].flat().filter((e) => e.networkId === networkId);
  }

  async remove(ref: string): Promise<void> {
    const n = this.get(ref);
    if (n.predefined) throw new Forbidden(`${n.name} is a pre-defined network and cannot be removed`);
    if (this.activeEndpoints(n.id).length > 0)
      throw new Forbidden(`error while removing network: network ${n.name} id ${n.id} has active endpoints`);
    this.tables.deleteNetwork(n.id);
    this.networks.delete(n.id);
    this.dnsServers.get(n.id)?.close();
    this.dnsServers.delete(n.id);
    this.lastAllocated.delete(n.id);
    const wasDown = this.unavailable.delete(n.id);
    await this.applyRules().catch((err) => log.warn('iptables update failed', { error: errorMessage(err) }));
    if (!wasDown) deleteLinks([n.bridge]);
    this.opts.events.publish('network', 'destroy', n.id, { name: n.name, type: n.driver });
  }

  /** Networks no container refers to (user-defined only), optionally filtered. */
  async prune(keep: (n: NetworkRecord) => boolean): Promise<string[]> {
    const referenced = new Set<string>();
    for (const c of this.opts.containers.all()) {
      const mode = networkModeOf(c);
      if (mode.kind === 'bridge') referenced.add(mode.network);
      for (const key of Object.keys(endpointsConfigOf(c))) referenced.add(key);
    }
    const removed: string[] = [];
    for (const n of this.list()) {
      if (n.predefined || keep(n)) continue;
      if (referenced.has(n.name) || referenced.has(n.id) || this.activeEndpoints(n.id).length > 0) continue;
      await this.remove(n.id);
      removed.push(n.name);
    }
    return removed;
  }

  // ---------------------------------------------------------------------------------------------
  // containers: create-time checks

  /** Normalises and checks a new container's networks (NetworkMode + EndpointsConfig). */
  validateCreate(record: ContainerRecord): void {
    const mode = networkModeOf(record);
    const configs = endpointsConfigOf(record);
    if (mode.kind === 'container') {
      const target = this.opts.containers.find(mode.target);
      if (!target) throw new NotFound(`No such container: ${mode.target}`);
      if (record.hostConfig.PortBindings && Object.keys(record.hostConfig.PortBindings).length > 0)
        throw new InvalidArgument('conflicting options: port publishing and the container type network mode');
      record.hostConfig.NetworkMode = `container:${target.id}`;
      record.networkingConfig = {};
      return;
    }
    if (mode.kind === 'host' || mode.kind === 'none') {
      const settings = configs[mode.kind] ?? configs.default ?? {};
      record.networkingConfig = {
        EndpointsConfig: { [mode.kind]: { ...settings, NetworkID: this.get(mode.kind).id } },
      };
      return;
    }
    const primary = this.get(mode.network);
    const normalized: Record<string, EndpointSettings> = {};
    const primarySettings =
      configs[mode.network] ?? configs.default ?? configs[primary.name] ?? configs[primary.id] ?? {};
    normalized[primary.name] = { ...primarySettings, NetworkID: primary.id };
    for (const [key, settings] of Object.entries(configs)) {
      if (key === 'default' || key === mode.network || key === primary.name || key === primary.id) continue;
      const n = this.get(key);
      normalized[n.name] = { ...settings, NetworkID: n.id };
    }
    for (const [name, settings] of Object.entries(normalized)) {
      const n = this.get(name);
      this.checkEndpointSettings(n, settings);
    }
    portRequests(
      record.hostConfig.PortBindings,
      record.config.ExposedPorts,
      record.hostConfig.PublishAllPorts === true,
    );
    record.networkingConfig = { ...record.networkingConfig, EndpointsConfig: normalized };
  }

  private checkAvailable(n: NetworkRecord): void {
    const reason = this.unavailable.get(n.id);
    if (reason) throw new SystemError(`network ${n.name} is unavailable: ${reason}`);
  }

  private checkEndpointSettings(n: NetworkRecord, settings: EndpointSettings): void {
    if (n.driver !== 'bridge') return;
    const aliases = settings.Aliases ?? [];
    if (aliases.length > 0 && n.predefined)
      throw new InvalidArgument(
        'network-scoped alias is supported only for containers in user defined networks',
      );
    if (settings.IPAMConfig?.IPv6Address)
      throw new InvalidArgument(
        `IPv6 addresses are not supported (--ip6 ${settings.IPAMConfig.IPv6Address}): Strata networks are IPv4 only`,
      );
    const ip = settings.IPAMConfig?.IPv4Address;
    if (ip) {
      if (n.predefined)
        throw new InvalidArgument('user specified IP address is supported on user defined networks only');
      if (!contains(parseSubnet(n.subnet), parseIPv4(ip)))
        throw new InvalidArgument(`no configured subnet contains IP address ${ip}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // containers: start, stop

  /** Allocates a starting container's addresses and host ports; `attach` plugs it in. */
  async prepare(record: ContainerRecord): Promise<NetworkPlan> {
    const mode = networkModeOf(record);
    const noop = async () => undefined;
    if (mode.kind === 'container') {
      const target = this.opts.containers.get(mode.target);
      if (!this.opts.containers.isRunning(target))
        throw new Conflict(`cannot join network of a non running container: ${target.id}`);
      return {
        netnsPath: `/proc/${target.state.pid}/ns/net`,
        etcFrom: this.opts.containers.containerDir(target.id),
        hosts: null,
        resolvConf: null,
        attach: noop,
        abort: noop,
      };
    }
    const extraHosts = this.extraHosts(record, null);
    if (mode.kind === 'host') {
      let hosts = STANDARD_HOSTS;
      try {
        hosts = fs.readFileSync('/etc/hosts', 'utf8');
        if (!hosts.endsWith('\n')) hosts += '\n';
      } catch {
        // keep the standard file
      }
      return {
        netnsPath: null,
        etcFrom: null,
        hosts: hosts + extraHosts,
        resolvConf: this.resolvConf(record, null),
        attach: noop,
        abort: noop,
      };
    }
    if (mode.kind === 'none') {
      return {
        netnsPath: null,
        etcFrom: null,
        hosts: STANDARD_HOSTS + extraHosts,
        resolvConf: this.resolvConf(record, null),
        attach: noop,
        abort: noop,
      };
    }
    await this.release(record.id);
    // Records made before networks existed say `default` (or nothing) for the default bridge.
    const configs: Record<string, EndpointSettings> = {};
    for (const [key, value] of Object.entries(endpointsConfigOf(record)))
      configs[key === 'default' ? 'bridge' : key] = value;
    const primaryName = this.get(mode.network).name;
    if (record.networkingConfig.EndpointsConfig === undefined) configs[primaryName] = {};
    const names = Object.keys(configs);
    names.sort((a, b) => (a === primaryName ? -1 : b === primaryName ? 1 : 0));
    const endpoints: EndpointRecord[] = [];
    let holders: PortHolder[] = [];
    try {
      for (const name of names) {
        const n = this.get(name);
        if (n.driver !== 'bridge') continue;
        this.checkAvailable(n);
        endpoints.push(this.allocateEndpoint(record, n, configs[name], `eth${endpoints.length}`));
      }
      const primary = endpoints[0];
      const primaryNetwork = primary ? this.networks.get(primary.networkId) : undefined;
      const requests =
        primaryNetwork && !primaryNetwork.internal
          ? portRequests(
              record.hostConfig.PortBindings,
              record.config.ExposedPorts,
              record.hostConfig.PublishAllPorts === true,
            )
          : [];
      for (const req of requests) holders.push(await PortHolder.open(req, primary.ip));
      const sandbox: SandboxRecord = { containerId: record.id, ports: holders.map((h) => h.mapping) };
      for (const e of endpoints) {
        this.tables.saveEndpoint(e);
      }
      this.endpoints.set(record.id, endpoints);
      this.sandboxes.set(record.id, sandbox);
      this.tables.saveSandbox(sandbox);
      this.holders.set(record.id, holders);
      holders = [];
      const rules = requests.length > 0 ? this.applyRules() : Promise.resolve();
      rules.catch(() => undefined);
      // Docker's file: one line per network the container is on, its own address and names.
      const hosts =
        STANDARD_HOSTS +
        extraHosts +
        this.linkHosts(record, endpoints) +
        endpoints.map((e) => `${selfHostsLine(record, e.ip)}\n`).join('');
      const resolvConf = this.resolvConf(record, primaryNetwork ?? null);
      // The namespace is made here and the runtime joins it: the interfaces are plugged in while
      // the runtime creates the container, off the start's critical path (creating a veth pair
      // costs the kernel 5-25 ms; `crun create` far more). Without the addon's netnsCreate (an
      // addon built before it), the runtime makes the namespace and `attach` plugs in.
      let nsFd = this.createNamespace();
      const plugged =
        nsFd === null
          ? null
          : new Promise<Error | null>((resolve) => {
              const ns = { fd: nsFd ?? -1, path: `/proc/self/fd/${nsFd}` };
              setImmediate(() => {
                try {
                  this.plugIn(ns, endpoints);
                  resolve(null);
                } catch (err) {
                  resolve(err instanceof Error ? err : new Error(String(err)));
                }
              });
            });
      const closeNs = () => {
        if (nsFd !== null) fs.closeSync(nsFd);
        nsFd = null;
      };
      return {
        netnsPath: nsFd === null ? null : `/proc/${process.pid}/fd/${nsFd}`,
        etcFrom: null,
        hosts,
        resolvConf,
        attach: async (pid) => {
          try {
            if (plugged === null) this.plugIn({ pid }, endpoints);
            else {
              const failed = await plugged;
              if (failed) throw failed;
            }
          } finally {
            closeNs();
          }
          await rules;
          for (const e of endpoints) this.connectEvent('connect', e);
        },
        abort: async () => {
          await plugged;
          closeNs();
          await this.release(record.id);
        },
      };
    } catch (err) {
      for (const h of holders) h.close();
      await this.release(record.id);
      throw err;
    }
  }

  private createNamespace(): number | null {
    try {
      return createNetns();
    } catch (err) {
      if (!this.namespaceWarned)
        log.warn('network namespaces are made by the runtime (slower starts)', { error: errorMessage(err) });
      this.namespaceWarned = true;
      return null;
    }
  }

  private allocateEndpoint(
    record: ContainerRecord,
    n: NetworkRecord,
    settings: EndpointSettings | undefined,
    ifname: string,
  ): EndpointRecord {
    const subnet = parseSubnet(n.subnet);
    const used = new Set<number>();
    for (const e of this.activeEndpoints(n.id)) used.add(parseIPv4(e.ip));
    for (const aux of Object.values(n.ipam.Config[0]?.AuxiliaryAddresses ?? {})) used.add(parseIPv4(aux));
    const gateway = parseIPv4(n.gateway);
    let ip: number;
    const wanted = settings?.IPAMConfig?.IPv4Address;
    if (wanted) {
      ip = parseIPv4(wanted);
      if (!contains(subnet, ip) || ip === gateway || ip === subnet.base || ip === broadcastOf(subnet))
        throw new InvalidArgument(`invalid address ${wanted} for network ${n.name}`);
      if (used.has(ip)) throw new Forbidden('Address already in use');
    } else {
      const range = n.ipRange ? parseSubnet(n.ipRange) : subnet;
      const picked = allocate(subnet, range, gateway, used, this.lastAllocated.get(n.id) ?? 0);
      if (picked === null) throw new SystemError(`no available IPv4 addresses on network ${n.name}`);
      ip = picked;
      this.lastAllocated.set(n.id, ip);
    }
    const aliases = settings?.Aliases ?? [];
    const shortId = record.id.slice(0, 12);
    const dnsNames = n.predefined
      ? []
      : [...new Set([record.name, shortId, ...aliases].map((a) => a.toLowerCase()))];
    return {
      containerId: record.id,
      networkId: n.id,
      endpointId: newObjectId(),
      ifname,
      hostVeth: `vst${randomBytes(6).toString('hex')}`,
      ip: formatIPv4(ip),
      prefixLen: subnet.prefixLen,
      gateway: n.gateway,
      mac: macForIPv4(ip),
      dnsNames,
      aliases,
    };
  }

  /**
   * Creates and configures the veth pairs of `endpoints` in a container's namespace: that of the
   * process `pid`, or the descriptor `fd` (netlink, no spawn).
   */
  private plugIn(ns: { pid: number } | { fd: number; path: string }, endpoints: EndpointRecord[]): void {
    if (endpoints.length === 0) return;
    const host = NetlinkSocket.open();
    let inside: NetlinkSocket | null = null;
    try {
      inside = NetlinkSocket.open('pid' in ns ? `/proc/${ns.pid}/ns/net` : ns.path);
      const lo = inside.linkIndex('lo');
      if (lo !== null) inside.setLinkUp(lo);
      endpoints.forEach((e, i) => {
        const n = this.networks.get(e.networkId);
        if (!n) throw new NotFound(`network ${e.networkId} not found`);
        // Looked up every time: an index kept from an earlier start goes stale when the bridge is
        // deleted and made again, and the kernel answers a veth whose master is gone with EINVAL.
        let master = host.linkIndex(n.bridge);
        if (master === null) {
          ensureBridge({
            name: n.bridge,
            subnet: n.subnet,
            gateway: n.gateway,
            alias: bridgeAlias(this.tag, n.id),
          });
          master = host.linkIndex(n.bridge);
        }
        if (master === null) throw new SystemError(`bridge ${n.bridge} of network ${n.name} is missing`);
        host.createVeth({
          name: e.hostVeth,
          peerName: e.ifname,
          peerNetns: 'pid' in ns ? { pid: ns.pid } : { fd: ns.fd },
          master,
          peerMac: e.mac,
        });
        const index = inside?.linkIndex(e.ifname);
        if (index === null || index === undefined)
          throw new SystemError(`interface ${e.ifname} did not appear in the container`);
        inside?.setLinkUp(index);
        const subnet = parseSubnet(n.subnet);
        inside?.addAddress(index, e.ip, e.prefixLen, formatIPv4(broadcastOf(subnet)));
        if (i === 0 && !n.internal) inside?.addRoute({ dst: null, gateway: e.gateway });
      });
    } finally {
      host.close();
      inside?.close();
    }
  }

  private connectEvent(action: 'connect' | 'disconnect', e: EndpointRecord): void {
    const n = this.networks.get(e.networkId);
    if (!n) return;
    this.opts.events.publish('network', action, n.id, {
      container: e.containerId,
      name: n.name,
      type: n.driver,
    });
  }

  /** Releases a container's interfaces, addresses and ports (it stopped, or its start failed). */
  async release(containerId: string): Promise<void> {
    const endpoints = this.endpoints.get(containerId) ?? [];
    const sandbox = this.sandboxes.get(containerId);
    if (endpoints.length === 0 && !sandbox) return;
    this.endpoints.delete(containerId);
    this.sandboxes.delete(containerId);
    for (const h of this.holders.get(containerId) ?? []) h.close();
    this.holders.delete(containerId);
    for (const e of endpoints) this.tables.deleteEndpoint(containerId, e.networkId);
    this.tables.deleteSandbox(containerId);
    // Usually gone with the namespace already; a failed start may have left one.
    try {
      deleteLinks(endpoints.map((e) => e.hostVeth).filter((name) => this.linkExists(name)));
    } catch (err) {
      log.warn('deleting veths failed', { error: errorMessage(err) });
    }
    for (const e of endpoints) this.connectEvent('disconnect', e);
    if (sandbox && sandbox.ports.length > 0)
      await this.applyRules().catch((err) =>
        log.warn('iptables update failed', { error: errorMessage(err) }),
      );
  }

  private linkExists(name: string): boolean {
    return fs.existsSync(`/sys/class/net/${name}`);
  }

  // ---------------------------------------------------------------------------------------------
  // connect / disconnect

  async connect(ref: string, containerRef: string, settings: EndpointSettings, force = false): Promise<void> {
    const n = this.get(ref);
    const record = this.opts.containers.get(containerRef);
    const mode = networkModeOf(record);
    if (n.driver !== 'bridge' || mode.kind !== 'bridge') {
      if (mode.kind === 'host' || n.driver === 'host')
        throw new Forbidden(
          'container cannot be disconnected from host network or connected to host network',
        );
      if (mode.kind === 'container')
        throw new Forbidden(
          'container sharing network namespace with another container or host cannot be connected to any other network',
        );
      throw new Forbidden(
        'container cannot be connected to multiple networks with one of the networks in private (none) mode',
      );
    }
    const configs = { ...endpointsConfigOf(record) };
    if (configs[n.name]) {
      if (!force)
        throw new Forbidden(`endpoint with name ${record.name} already exists in network ${n.name}`);
    }
    const full: EndpointSettings = { ...settings, NetworkID: n.id };
    this.checkEndpointSettings(n, full);
    if (this.opts.containers.isRunning(record)) {
      this.checkAvailable(n);
      const list = this.endpointList(record.id);
      if (list.some((e) => e.networkId === n.id))
        throw new Forbidden(`container ${record.id} is already connected to network ${n.name}`);
      const used = new Set(list.map((e) => e.ifname));
      let i = 0;
      while (used.has(`eth${i}`)) i++;
      const e = this.allocateEndpoint(record, n, full, `eth${i}`);
      list.push(e);
      this.tables.saveEndpoint(e);
      try {
        this.plugIn({ pid: record.state.pid }, [e]);
      } catch (err) {
        this.endpoints.set(
          record.id,
          list.filter((x) => x !== e),
        );
        this.tables.deleteEndpoint(record.id, n.id);
        deleteLinks([e.hostVeth].filter((name) => this.linkExists(name)));
        throw err;
      }
      this.editHosts(record, (lines) => [...lines, selfHostsLine(record, e.ip)]);
      this.connectEvent('connect', e);
    }
    configs[n.name] = full;
    record.networkingConfig = { ...record.networkingConfig, EndpointsConfig: configs };
    this.opts.containers.persist(record);
  }

  async disconnect(ref: string, containerRef: string, force = false): Promise<void> {
    const n = this.get(ref);
    const record = force ? this.opts.containers.find(containerRef) : this.opts.containers.get(containerRef);
    if (!record) return;
    if (n.driver === 'host')
      throw new Forbidden('container cannot be disconnected from host network or connected to host network');
    const configs = { ...endpointsConfigOf(record) };
    const key = Object.keys(configs).find((k) => k === n.name || configs[k]?.NetworkID === n.id);
    const list = this.endpoints.get(record.id) ?? [];
    const live = list.find((e) => e.networkId === n.id);
    if (!key && !live) {
      if (force) return;
      throw new Forbidden(`container ${record.id} is not connected to network ${n.name}`);
    }
    if (live) {
      this.endpoints.set(
        record.id,
        list.filter((e) => e !== live),
      );
      this.tables.deleteEndpoint(record.id, n.id);
      deleteLinks([live.hostVeth].filter((name) => this.linkExists(name)));
      const line = selfHostsLine(record, live.ip);
      this.editHosts(record, (lines) => lines.filter((l) => l !== line));
      this.connectEvent('disconnect', live);
    }
    if (key) delete configs[key];
    record.networkingConfig = { ...record.networkingConfig, EndpointsConfig: configs };
    this.opts.containers.persist(record);
  }

  // ---------------------------------------------------------------------------------------------
  // /etc files

  /**
   * Rewrites a running container's generated /etc/hosts in place (same inode: the file is
   * bind-mounted into the container, a rename would not be seen there).
   */
  private editHosts(record: ContainerRecord, edit: (lines: string[]) => string[]): void {
    const file = `${this.opts.containers.containerDir(record.id)}/hosts`;
    try {
      const lines = fs.readFileSync(file, 'utf8').split('\n');
      if (lines[lines.length - 1] === '') lines.pop();
      const edited = edit(lines);
      fs.writeFileSync(file, edited.length > 0 ? `${edited.join('\n')}\n` : '');
    } catch (err) {
      log.warn('could not update the container hosts file', { id: record.id, error: errorMessage(err) });
    }
  }

  private extraHosts(record: ContainerRecord, gateway: string | null): string {
    return (record.hostConfig.ExtraHosts ?? [])
      .map((h) => {
        const i = h.lastIndexOf(':');
        if (i <= 0) return '';
        let ip = h.slice(i + 1);
        if (ip === 'host-gateway') ip = gateway ?? this.find('bridge')?.gateway ?? '127.0.0.1';
        return `${ip}\t${h.slice(0, i)}\n`;
      })
      .join('');
  }

  /** `--link name:alias` (compose `run` sends them): lines for linked containers on a shared network. */
  private linkHosts(record: ContainerRecord, endpoints: EndpointRecord[]): string {
    const links = (record.hostConfig as { Links?: string[] | null }).Links ?? [];
    let out = '';
    for (const link of links) {
      const [name, alias] = link.replace(/^\//, '').split(':');
      const target = this.opts.containers.find(name);
      if (!target) continue;
      const theirs = this.endpoints.get(target.id) ?? [];
      const shared = theirs.find((t) => endpoints.some((e) => e.networkId === t.networkId));
      if (shared) out += `${shared.ip}\t${alias ? `${alias.split('/').pop()} ` : ''}${target.name}\n`;
    }
    return out;
  }

  private hostResolv(): ReturnType<typeof parseResolvConf> & { text: string } {
    let text = '';
    try {
      text = fs.readFileSync('/etc/resolv.conf', 'utf8');
    } catch {
      text = '';
    }
    return { ...parseResolvConf(text), text };
  }

  private resolvConf(record: ContainerRecord, primary: NetworkRecord | null): string {
    const host = this.hostResolv();
    const dns = record.hostConfig.Dns ?? [];
    const hc = record.hostConfig as { DnsSearch?: string[] | null; DnsOptions?: string[] | null };
    const search = hc.DnsSearch && hc.DnsSearch.length > 0 ? hc.DnsSearch : host.search;
    const options = hc.DnsOptions && hc.DnsOptions.length > 0 ? hc.DnsOptions : host.options;
    const lines: string[] = [];
    if (search.length > 0) lines.push(`search ${search.join(' ')}`);
    if (primary && !primary.predefined && this.dnsServers.has(primary.id)) {
      // User networks: the network's own DNS server, which forwards to --dns or the host's resolvers.
      lines.push(`nameserver ${primary.gateway}`);
      lines.push(`options ${[...options.filter((o) => !o.startsWith('ndots:')), 'ndots:0'].join(' ')}`);
      return `${lines.join('\n')}\n`;
    }
    const isHostNet = networkModeOf(record).kind === 'host';
    let servers = dns.length > 0 ? dns : host.nameservers.filter((s) => isHostNet || !s.startsWith('127.'));
    if (servers.length === 0 && primary && this.dnsServers.has(primary.id)) servers = [primary.gateway];
    for (const s of servers) lines.push(`nameserver ${s}`);
    if (options.length > 0) lines.push(`options ${options.join(' ')}`);
    return `${lines.join('\n')}\n`;
  }

  // ---------------------------------------------------------------------------------------------
  // DNS (NameResolver)

  /** The networks whose names `clientIp` (on `networkId`) can see. */
  private visibleNetworks(networkId: string, clientIp: string): Set<string> {
    const all = [...this.endpoints.values()].flat();
    const client = all.find((e) => e.networkId === networkId && e.ip === clientIp);
    if (!client) return new Set([networkId]);
    return new Set(all.filter((e) => e.containerId === client.containerId).map((e) => e.networkId));
  }

  lookup(networkId: string, clientIp: string, name: string): string[] | null {
    const visible = this.visibleNetworks(networkId, clientIp);
    const wanted = name.replace(/\.$/, '').toLowerCase();
    const out: string[] = [];
    for (const list of this.endpoints.values()) {
      for (const e of list) {
        if (!visible.has(e.networkId) || !e.dnsNames.includes(wanted)) continue;
        const n = this.networks.get(e.networkId);
        if (!n || n.predefined) continue;
        out.push(e.ip);
      }
    }
    return out.length > 0 ? [...new Set(out)] : null;
  }

  reverse(networkId: string, clientIp: string, ip: string): string | null | undefined {
    const visible = this.visibleNetworks(networkId, clientIp);
    for (const list of this.endpoints.values()) {
      for (const e of list) {
        if (e.ip !== ip || !visible.has(e.networkId)) continue;
        const record = this.opts.containers.find(e.containerId);
        const n = this.networks.get(e.networkId);
        if (record && n && !n.predefined) return `${record.name}.${n.name}`;
      }
    }
    const ours = [...this.networks.values()].some(
      (n) => n.subnet && contains(parseSubnet(n.subnet), parseIPv4(ip)),
    );
    return ours ? null : undefined;
  }

  upstreams(networkId: string, clientIp: string): Upstream[] {
    const n = this.networks.get(networkId);
    if (!n || n.internal) return [];
    const chosen = this.chooseUpstreams(networkId, clientIp);
    if (process.env.STRATA_LOOPBACK_ONLY !== '1') return chosen;
    // Tests and benchmarks: never a query off this machine (only loopback and our own networks).
    const subnets = [...this.networks.values()].filter((x) => x.subnet).map((x) => parseSubnet(x.subnet));
    return chosen.filter(
      (u) => u.host.startsWith('127.') || subnets.some((s) => contains(s, parseIPv4(u.host))),
    );
  }

  private chooseUpstreams(networkId: string, clientIp: string): Upstream[] {
    const client = [...this.endpoints.values()]
      .flat()
      .find((e) => e.networkId === networkId && e.ip === clientIp);
    const record = client ? this.opts.containers.find(client.containerId) : null;
    const dns = record?.hostConfig.Dns ?? [];
    if (dns.length > 0)
      return dns.filter((d) => /^\d+\.\d+\.\d+\.\d+$/.test(d)).map((host) => ({ host, port: 53 }));
    if (this.opts.dnsUpstreams && this.opts.dnsUpstreams.length > 0) return this.opts.dnsUpstreams;
    const gateways = new Set([...this.networks.values()].map((x) => x.gateway));
    return this.hostResolv()
      .nameservers.filter((s) => !gateways.has(s))
      .map((host) => ({ host, port: 53 }));
  }

  // ---------------------------------------------------------------------------------------------
  // presentation

  endpointsOf(containerId: string): EndpointRecord[] {
    return this.endpoints.get(containerId) ?? [];
  }

  portsOf(containerId: string): SandboxRecord['ports'] {
    return this.sandboxes.get(containerId)?.ports ?? [];
  }

  networkById(id: string): NetworkRecord | undefined {
    return this.networks.get(id);
  }
}
