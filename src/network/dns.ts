import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import {
  aRecord,
  buildResponse,
  CLASS_IN,
  errorFromRaw,
  isTruncated,
  parseQuery,
  ptrRecord,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  RCODE_SERVFAIL,
  reverseName,
  TYPE_A,
  TYPE_PTR,
  UDP_MAX_SIZE,
} from './dns-codec.js';

const log = logger('dns');

export interface Upstream {
  host: string;
  port: number;
}

/**
 * What a network's DNS server asks the network part. Names are looked up *as the client sees
 * them*: a container resolves the names of every network it shares with the owner of the name, so
 * names on other networks stay invisible.
 */
export interface NameResolver {
  /** Addresses for `name` (lower case, no trailing dot), or null when the name is not ours. */
  lookup(networkId: string, clientIp: string, name: string): string[] | null;
  /** The container name for an address of one of our networks; null = not ours. */
  reverse(networkId: string, clientIp: string, ip: string): string | null | undefined;
  /** Where to forward other names ([] = refuse, e.g. on an --internal network). */
  upstreams(networkId: string, clientIp: string): Upstream[];
}

const FORWARD_TIMEOUT_MS = 2000;
const MAX_IN_FLIGHT = 256;
const TCP_IDLE_MS = 10_000;
const MAX_TCP_CONNECTIONS = 128;

/**
 * A network's DNS server, listening on port 53 of the network's gateway address (the bridge's
 * address on the host), UDP and TCP, like Docker's embedded server or podman's aardvark-dns.
 * Container names are answered from memory; any other name is relayed byte-for-byte to the host's
 * resolvers (or the container's `--dns`): over UDP, again over TCP when the UDP answer is truncated
 * and the client asked over TCP. Over UDP an answer is at most 512 bytes; a longer one is cut and
 * carries TC, and the client asks again over TCP (2-byte length prefix, RFC 1035 §4.2.2).
 */
export class DnsServer {
  private udp: dgram.Socket | null = null;
  private tcp: net.Server | null = null;
  private readonly connections = new Set<net.Socket>();
  private inFlight = 0;

  constructor(
    readonly networkId: string,
    readonly address: string,
    private readonly resolver: NameResolver,
    readonly port = 53,
  ) {}

  async start(): Promise<void> {
    const udp = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(this.port, this.address, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    udp.on('error', (err) =>
      log.warn('dns socket error', { address: this.address, error: errorMessage(err) }),
    );
    udp.on('message', (msg, rinfo) => {
      void this.answer(msg, rinfo.address, false).then((reply) => {
        if (reply) this.udp?.send(reply, rinfo.port, rinfo.address);
      });
    });
    // Port 0 (tests): TCP on the port UDP got.
    const port = udp.address().port;
    const tcp = net.createServer((socket) => this.serveTcp(socket));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ port, host: this.address, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      udp.close();
      throw err;
    }
    tcp.on('error', (err) => log.warn('dns tcp error', { address: this.address, error: errorMessage(err) }));
    this.udp = udp;
    this.tcp = tcp;
  }

  /** The port it listens on (the one asked for, or the one picked for port 0). */
  get boundPort(): number {
    return this.udp?.address().port ?? this.port;
  }

  close(): void {
    this.udp?.close();
    this.udp = null;
    this.tcp?.close();
    this.tcp = null;
    for (const c of this.connections) c.destroy();
    this.connections.clear();
  }

  /** One TCP connection: length-prefixed queries in, length-prefixed answers out, in any order. */
  private serveTcp(socket: net.Socket): void {
    if (this.connections.size >= MAX_TCP_CONNECTIONS) {
      socket.destroy();
      return;
    }
    this.connections.add(socket);
    socket.setTimeout(TCP_IDLE_MS, () => socket.destroy());
    socket.on('close', () => this.connections.delete(socket));
    socket.on('error', () => socket.destroy());
    const client = socket.remoteAddress?.replace(/^::ffff:/, '') ?? '';
    let pending: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= 2) {
        const length = pending.readUInt16BE(0);
        if (pending.length < 2 + length) break;
        const msg = pending.subarray(2, 2 + length);
        pending = pending.subarray(2 + length);
        void this.answer(Buffer.from(msg), client, true).then((reply) => {
          if (!reply || socket.destroyed) return;
          socket.write(frame(reply));
        });
      }
    });
  }

  /** The reply to one query (null: nothing to send back), cut to 512 bytes for UDP. */
  private async answer(msg: Buffer, client: string, overTcp: boolean): Promise<Buffer | null> {
    const maxSize = overTcp ? undefined : UDP_MAX_SIZE;
    let query: ReturnType<typeof parseQuery>;
    try {
      query = parseQuery(msg);
    } catch {
      return errorFromRaw(msg, RCODE_FORMERR);
    }
    if (query.isResponse) return null;
    const q = query.questions[0];
    if (query.opcode !== 0 || !q || q.class !== CLASS_IN) return this.forward(msg, client, query, overTcp);
    const reverse = q.type === TYPE_PTR ? reverseName(q.name) : null;
    if (reverse) {
      const target = this.resolver.reverse(this.networkId, client, reverse);
      if (target)
        return buildResponse(query, RCODE_NOERROR, [ptrRecord(q.name, target)], {
          authoritative: true,
          ...(maxSize ? { maxSize } : {}),
        });
      if (target === null) return buildResponse(query, RCODE_NXDOMAIN, [], { authoritative: true });
      return this.forward(msg, client, query, overTcp);
    }
    const addresses = this.resolver.lookup(this.networkId, client, q.name);
    if (addresses === null) return this.forward(msg, client, query, overTcp);
    // Known name: A records for A queries, an empty NOERROR for AAAA and the rest (no IPv6 here),
    // so resolvers do not go on to ask upstream.
    const answers = q.type === TYPE_A ? shuffle(addresses).map((ip) => aRecord(q.name, ip)) : [];
    return buildResponse(query, RCODE_NOERROR, answers, {
      authoritative: true,
      ...(maxSize ? { maxSize } : {}),
    });
  }

  private async forward(
    msg: Buffer,
    client: string,
    query: ReturnType<typeof parseQuery>,
    overTcp: boolean,
  ): Promise<Buffer> {
    const upstreams = this.resolver.upstreams(this.networkId, client);
    if (upstreams.length === 0) return buildResponse(query, RCODE_REFUSED, []);
    if (this.inFlight >= MAX_IN_FLIGHT) return buildResponse(query, RCODE_SERVFAIL, []);
    this.inFlight++;
    try {
      for (const upstream of upstreams) {
        const answer = await forwardUdp(msg, query.id, upstream);
        if (!answer) continue;
        // A UDP client gets the cut answer and asks again over TCP; a TCP client gets it whole.
        if (overTcp && isTruncated(answer)) return (await forwardTcp(msg, query.id, upstream)) ?? answer;
        return answer;
      }
      return buildResponse(query, RCODE_SERVFAIL, []);
    } finally {
      this.inFlight--;
    }
  }
}

function frame(message: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(message.length, 0);
  return Buffer.concat([length, message]);
}

/** One query to `upstream` over UDP: its answer, or null (timeout, error). */
export function forwardUdp(msg: Buffer, id: number, upstream: Upstream): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    let settled = false;
    const finish = (answer: Buffer | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(null), FORWARD_TIMEOUT_MS);
    sock.on('error', () => finish(null));
    sock.on('message', (answer) => {
      if (answer.length >= 2 && answer.readUInt16BE(0) === id) finish(answer);
    });
    sock.send(msg, upstream.port, upstream.host, (err) => {
      if (err) finish(null);
    });
  });
}

/** One query to `upstream` over TCP (a connection of its own): its answer, or null. */
export function forwardTcp(msg: Buffer, id: number, upstream: Upstream): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: upstream.host, port: upstream.port });
    let settled = false;
    let received: Buffer = Buffer.alloc(0);
    const finish = (answer: Buffer | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => finish(null), FORWARD_TIMEOUT_MS);
    sock.on('error', () => finish(null));
    sock.on('close', () => finish(null));
    sock.on('connect', () => sock.write(frame(msg)));
    sock.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 2) return;
      const length = received.readUInt16BE(0);
      if (received.length < 2 + length) return;
      const answer = received.subarray(2, 2 + length);
      finish(answer.length >= 2 && answer.readUInt16BE(0) === id ? Buffer.from(answer) : null);
    });
  });
}

function shuffle<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/** Nameservers of a resolv.conf text (IPv4 only), e.g. the host's for forwarding. */
export function parseResolvConf(text: string): {
  nameservers: string[];
  search: string[];
  options: string[];
} {
  const nameservers: string[] = [];
  let search: string[] = [];
  let options: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver' && rest[0] && /^\d+\.\d+\.\d+\.\d+$/.test(rest[0])) nameservers.push(rest[0]);
    else if (key === 'search' || key === 'domain') search = rest;
    else if (key === 'options') options = rest;
  }
  return { nameservers, search, options };
}

/** `1.2.3.4` or `1.2.3.4:5353` → upstream. */
export function parseUpstream(text: string): Upstream {
  const m = /^([\d.]+)(?::(\d+))?$/.exec(text.trim());
  if (!m) throw new Error(`invalid DNS upstream ${text} (want IPv4[:port])`);
  return { host: m[1], port: m[2] ? Number(m[2]) : 53 };
}
