import * as dgram from 'node:dgram';
import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import {
  aRecord,
  buildResponse,
  CLASS_IN,
  errorFromRaw,
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

/**
 * A network's DNS server, listening on UDP port 53 of the network's gateway address (the bridge's
 * address on the host), like podman's aardvark-dns. Container names are answered from memory; any
 * other name is relayed byte-for-byte to the host's resolvers (or the container's `--dns`).
 */
export class DnsServer {
  private socket: dgram.Socket | null = null;
  private inFlight = 0;

  constructor(
    readonly networkId: string,
    readonly address: string,
    private readonly resolver: NameResolver,
    readonly port = 53,
  ) {}

  async start(): Promise<void> {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.port, this.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err) =>
      log.warn('dns socket error', { address: this.address, error: errorMessage(err) }),
    );
    socket.on('message', (msg, rinfo) => this.handle(msg, rinfo));
    this.socket = socket;
  }

  close(): void {
    this.socket?.close();
    this.socket = null;
  }

  private reply(data: Buffer, rinfo: dgram.RemoteInfo): void {
    this.socket?.send(data, rinfo.port, rinfo.address);
  }

  private handle(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    let query: ReturnType<typeof parseQuery>;
    try {
      query = parseQuery(msg);
    } catch {
      const err = errorFromRaw(msg, RCODE_FORMERR);
      if (err) this.reply(err, rinfo);
      return;
    }
    if (query.isResponse) return;
    const q = query.questions[0];
    if (query.opcode !== 0 || !q || q.class !== CLASS_IN) {
      this.forward(msg, rinfo, query);
      return;
    }
    const client = rinfo.address;
    const reverse = q.type === TYPE_PTR ? reverseName(q.name) : null;
    if (reverse) {
      const target = this.resolver.reverse(this.networkId, client, reverse);
      if (target) {
        this.reply(
          buildResponse(query, RCODE_NOERROR, [ptrRecord(q.name, target)], { authoritative: true }),
          rinfo,
        );
        return;
      }
      if (target === null) {
        this.reply(buildResponse(query, RCODE_NXDOMAIN, [], { authoritative: true }), rinfo);
        return;
      }
      this.forward(msg, rinfo, query);
      return;
    }
    const addresses = this.resolver.lookup(this.networkId, client, q.name);
    if (addresses === null) {
      this.forward(msg, rinfo, query);
      return;
    }
    // Known name: A records for A queries, an empty NOERROR for AAAA and the rest (no IPv6 here),
    // so resolvers do not go on to ask upstream.
    const answers = q.type === TYPE_A ? shuffle(addresses).map((ip) => aRecord(q.name, ip)) : [];
    this.reply(buildResponse(query, RCODE_NOERROR, answers, { authoritative: true }), rinfo);
  }

  private forward(msg: Buffer, rinfo: dgram.RemoteInfo, query: ReturnType<typeof parseQuery>): void {
    const upstreams = this.resolver.upstreams(this.networkId, rinfo.address);
    if (upstreams.length === 0) {
      this.reply(buildResponse(query, RCODE_REFUSED, []), rinfo);
      return;
    }
    if (this.inFlight >= MAX_IN_FLIGHT) {
      this.reply(buildResponse(query, RCODE_SERVFAIL, []), rinfo);
      return;
    }
    this.inFlight++;
    const tryUpstream = (index: number) => {
      const upstream = upstreams[index];
      if (!upstream) {
        this.inFlight--;
        this.reply(buildResponse(query, RCODE_SERVFAIL, []), rinfo);
        return;
      }
      const sock = dgram.createSocket('udp4');
      let settled = false;
      const finish = (answer: Buffer | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        sock.close();
        if (answer) {
          this.inFlight--;
          this.reply(answer, rinfo);
        } else tryUpstream(index + 1);
      };
      const timer = setTimeout(() => finish(null), FORWARD_TIMEOUT_MS);
      sock.on('error', () => finish(null));
      sock.on('message', (answer) => {
        if (answer.length >= 2 && answer.readUInt16BE(0) === query.id) finish(answer);
      });
      sock.send(msg, upstream.port, upstream.host, (err) => {
        if (err) finish(null);
      });
    };
    tryUpstream(0);
  }
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
