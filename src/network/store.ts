import type { Db, PartSchema } from '../store/db.js';

/**
 * Networks and what containers hold on them. A network row is the network's whole definition; an
 * endpoint row is one running container's interface on one network (its address lease); a sandbox
 * row is one running container's network namespace: its published ports. Endpoints and sandboxes
 * exist only while the container runs, so after a crash every row whose container is not running is
 * garbage to release.
 */
export const networksSchema: PartSchema = {
  part: 'networks',
  migrations: [
    `CREATE TABLE networks (
       id TEXT PRIMARY KEY,
       name TEXT NOT NULL UNIQUE,
       data TEXT NOT NULL
     );
     CREATE TABLE network_endpoints (
       container_id TEXT NOT NULL,
       network_id TEXT NOT NULL,
       data TEXT NOT NULL,
       PRIMARY KEY (container_id, network_id)
     );
     CREATE TABLE network_sandboxes (
       container_id TEXT PRIMARY KEY,
       data TEXT NOT NULL
     )`,
  ],
};

export interface IpamConfig {
  Subnet?: string;
  Gateway?: string;
  IPRange?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

export interface NetworkRecord {
  id: string;
  name: string;
  /** bridge | host | null */
  driver: string;
  created: string;
  internal: boolean;
  attachable: boolean;
  ingress: boolean;
  enableIPv6: boolean;
  ipam: { Driver: string; Options: Record<string, string> | null; Config: IpamConfig[] };
  /** Exactly as requested (compose compares them). */
  options: Record<string, string>;
  labels: Record<string, string>;
  /** Linux bridge name ('' for host/none). */
  bridge: string;
  subnet: string;
  gateway: string;
  ipRange: string;
  /** bridge, host, none: created by the daemon, cannot be removed. */
  predefined: boolean;
}

export interface EndpointRecord {
  containerId: string;
  networkId: string;
  endpointId: string;
  /** eth0, eth1, … inside the container. */
  ifname: string;
  hostVeth: string;
  ip: string;
  prefixLen: number;
  gateway: string;
  mac: string;
  /** Names this endpoint answers to in DNS (container name, short id, aliases), lower case. */
  dnsNames: string[];
  /** Aliases as configured (shown in inspect). */
  aliases: string[];
}

export interface PortMapping {
  protocol: 'tcp' | 'udp' | 'sctp';
  containerPort: number;
  hostIp: string;
  hostPort: number;
  containerIp: string;
}

export interface SandboxRecord {
  containerId: string;
  ports: PortMapping[];
}

export class NetworkTables {
  constructor(private readonly db: Db) {}

  networks(): NetworkRecord[] {
    return (this.db.prepare('SELECT data FROM networks').all() as { data: string }[]).map(
      (r) => JSON.parse(r.data) as NetworkRecord,
    );
  }

  saveNetwork(n: NetworkRecord): void {
    this.db
      .prepare(
        'INSERT INTO networks (id, name, data) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data',
      )
      .run(n.id, n.name, JSON.stringify(n));
  }

  deleteNetwork(id: string): void {
    this.db.prepare('DELETE FROM networks WHERE id = ?').run(id);
  }

  endpoints(): EndpointRecord[] {
    return (this.db.prepare('SELECT data FROM network_endpoints').all() as { data: string }[]).map(
      (r) => JSON.parse(r.data) as EndpointRecord,
    );
  }

  saveEndpoint(e: EndpointRecord): void {
    this.db
      .prepare(
        'INSERT INTO network_endpoints (container_id, network_id, data) VALUES (?, ?, ?) ON CONFLICT(container_id, network_id) DO UPDATE SET data = excluded.data',
      )
      .run(e.containerId, e.networkId, JSON.stringify(e));
  }

  deleteEndpoint(containerId: string, networkId: string): void {
    this.db
      .prepare('DELETE FROM network_endpoints WHERE container_id = ? AND network_id = ?')
      .run(containerId, networkId);
  }

  sandboxes(): SandboxRecord[] {
    return (this.db.prepare('SELECT data FROM network_sandboxes').all() as { data: string }[]).map(
      (r) => JSON.parse(r.data) as SandboxRecord,
    );
  }

  saveSandbox(s: SandboxRecord): void {
    this.db
      .prepare(
        'INSERT INTO network_sandboxes (container_id, data) VALUES (?, ?) ON CONFLICT(container_id) DO UPDATE SET data = excluded.data',
      )
      .run(s.containerId, JSON.stringify(s));
  }

  deleteSandbox(containerId: string): void {
    this.db.prepare('DELETE FROM network_sandboxes WHERE container_id = ?').run(containerId);
  }
}
