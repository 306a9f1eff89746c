import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { InvalidArgument, SystemError } from '../common/errors.js';
import type { PortMapping } from './store.js';

/**
 * Published ports. The kernel does the forwarding (DNAT rules, iptables.ts); the daemon also holds
 * every published host port open, like docker-proxy: the port cannot be taken by another program
 * or by a second daemon picking "random" ports on the same host, a conflict is reported at start
 * ("port is already allocated"), and a random port is the kernel's own ephemeral choice.
 */
export interface PortRequest {
  protocol: 'tcp' | 'udp' | 'sctp';
  containerPort: number;
  hostIp: string;
  /** 0 = pick one. */
  hostPort: number;
}

/** `80/tcp` → [80, 'tcp']. */
export function parsePortKey(key: string): { port: number; protocol: 'tcp' | 'udp' | 'sctp' } {
  const m = /^(\d+)(?:\/(tcp|udp|sctp))?$/i.exec(key.trim());
  if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535)
    throw new InvalidArgument(`invalid port specification: "${key}"`);
  return { port: Number(m[1]), protocol: (m[2]?.toLowerCase() ?? 'tcp') as 'tcp' | 'udp' | 'sctp' };
}

/** HostConfig.PortBindings (+ ExposedPorts with -P) → one request per binding. */
export function portRequests(
  bindings: Record<string, unknown> | null | undefined,
  exposed: Record<string, unknown> | null | undefined,
  publishAll: boolean,
): PortRequest[] {
  const out: PortRequest[] = [];
  const seen = new Set<string>();
  for (const [key, value] of Object.entries(bindings ?? {})) {
    const { port, protocol } = parsePortKey(key);
    const list = Array.isArray(value) && value.length > 0 ? value : [{}];
    for (const entry of list as { HostIp?: string; HostPort?: string }[]) {
      const hostPortText = (entry?.HostPort ?? '').trim();
      let hostPort = 0;
      if (hostPortText !== '') {
        // A range (8000-8010) is expanded by the CLI; take its start if one reaches us.
        const first = hostPortText.split('-')[0];
        if (!/^\d+$/.test(first) || Number(first) > 65535)
          throw new InvalidArgument(`invalid host port: "${hostPortText}"`);
        hostPort = Number(first);
      }
      const hostIp = (entry?.HostIp ?? '').trim();
      if (hostIp !== '' && hostIp !== '0.0.0.0' && !net.isIPv4(hostIp)) {
        if (hostIp === '::') continue; // IPv6 is not offered; the IPv4 binding covers the request
        throw new InvalidArgument(`invalid host IP for port ${key}: "${hostIp}" (IPv4 only)`);
      }
      out.push({ protocol, containerPort: port, hostIp: hostIp === '0.0.0.0' ? '' : hostIp, hostPort });
      seen.add(`${port}/${protocol}`);
    }
  }
  if (publishAll) {
    for (const key of Object.keys(exposed ?? {})) {
      const { port, protocol } = parsePortKey(key);
      if (seen.has(`${port}/${protocol}`)) continue;
      out.push({ protocol, containerPort: port, hostIp: '', hostPort: 0 });
    }
  }
  return out;
}

/** An open host port held for a container (closed when the container stops). */
export class PortHolder {
  private constructor(
    readonly mapping: PortMapping,
    private readonly handle: net.Server | dgram.Socket,
  ) {}

  close(): void {
    try {
      if (this.handle instanceof net.Server) this.handle.close();
      else this.handle.close();
    } catch {
      // already closed
    }
  }

  /**
   * Opens the host port of `req` (a kernel-chosen one when hostPort is 0). TCP connections that do
   * reach this socket (the DNAT rule is missing, e.g. while rules are rewritten) are relayed.
   */
  static async open(req: PortRequest, containerIp: string): Promise<PortHolder> {
    const host = req.hostIp === '' ? '0.0.0.0' : req.hostIp;
    const describe = (port: number) => `${host}:${port}`;
    if (req.protocol === 'udp') {
      const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
      // reuseAddr: the network DNS servers share port 53 on their gateway addresses (`-p 53:53/udp`).
      const port = await new Promise<number>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(req.hostPort, host, () => {
          socket.off('error', reject);
          resolve(socket.address().port);
        });
      }).catch((err: NodeJS.ErrnoException) => {
        socket.close();
        throw bindError(describe(req.hostPort), err);
      });
      socket.on('error', () => undefined);
      return new PortHolder({ ...req, hostPort: port, containerIp }, socket);
    }
    const server = net.createServer((client) => {
      const upstream = net.connect(req.containerPort, containerIp);
      client.pipe(upstream).pipe(client);
      const drop = () => {
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop);
      upstream.on('error', drop);
    });
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port: req.hostPort, host, exclusive: true }, () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    }).catch((err: NodeJS.ErrnoException) => {
      server.close();
      throw bindError(describe(req.hostPort), err);
    });
    server.on('error', () => undefined);
    return new PortHolder({ ...req, hostPort: port, containerIp }, server);
  }
}

function bindError(address: string, err: NodeJS.ErrnoException): SystemError {
  if (err.code === 'EADDRINUSE')
    return new SystemError(
      `driver failed programming external connectivity on endpoint: Bind for ${address} failed: port is already allocated`,
    );
  if (err.code === 'EADDRNOTAVAIL')
    return new SystemError(
      `driver failed programming external connectivity: listen ${address}: cannot assign requested address`,
    );
  return new SystemError(`driver failed programming external connectivity: ${address}: ${err.message}`);
}
