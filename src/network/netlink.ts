import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * rtnetlink from TypeScript: the project's addon (src/native/netlink.c) opens a NETLINK_ROUTE socket
 * inside a network namespace and runs one request/answer exchange; the messages are built and read
 * here. This is how a container's interface is created and configured without spawning `ip` (each
 * spawn costs 10–50 ms on our hosts; a netlink request costs microseconds).
 *
 * Lifecycle of a container's interface: `NetlinkSocket.open()` (host namespace) →
 * `createVeth({name, peerName:'eth0', peerNetns, master})`; then
 * `NetlinkSocket.open('/proc/<pid>/ns/net')` → `linkIndex('eth0')` → `setLink(up)` → `addAddress` →
 * `addRoute(default)`; close both. Deleting the host end (or the namespace dying) removes the pair.
 */
interface NetlinkAddon {
  netlinkOpen(netnsPath?: string | null): number;
  netnsCreate(): number;
  netlinkTransact(fd: number, request: Buffer): Buffer;
}

function loadAddon(): NetlinkAddon {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('netlink: repository root not found');
    dir = up;
  }
  const file = path.join(dir, 'src', 'native', 'build', 'Release', 'strata_native.node');
  return createRequire(import.meta.url)(file) as NetlinkAddon;
}

let addon: NetlinkAddon | null = null;
function native(): NetlinkAddon {
  addon ??= loadAddon();
  return addon;
}

// rtnetlink constants (linux/rtnetlink.h, linux/if_link.h, linux/netlink.h)
const RTM_NEWLINK = 16;
const RTM_DELLINK = 17;
const RTM_GETLINK = 18;
const RTM_NEWADDR = 20;
const RTM_NEWROUTE = 24;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_DUMP = 0x300;
const NLM_F_REPLACE = 0x100;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const AF_UNSPEC = 0;
const AF_INET = 2;
const IFF_UP = 0x1;
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_MASTER = 10;
const IFLA_LINKINFO = 18;
const IFLA_NET_NS_PID = 19;
const IFLA_IFALIAS = 20;
const IFLA_NET_NS_FD = 28;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
const RTA_DST = 1;
const RTA_GATEWAY = 5;
const RTA_OIF = 4;
const NLA_F_NESTED = 0x8000;

/** One netlink attribute: type + payload (a Buffer) or nested attributes. */
export interface Attr {
  type: number;
  value: Buffer | Attr[];
}

const align4 = (n: number) => (n + 3) & ~3;

export function encodeAttrs(attrs: Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const nested = Array.isArray(a.value);
    const payload = Array.isArray(a.value) ? encodeAttrs(a.value) : a.value;
    const header = Buffer.alloc(4);
    header.writeUInt16LE(4 + payload.length, 0);
    header.writeUInt16LE(a.type | (nested ? NLA_F_NESTED : 0), 2);
    parts.push(header, payload, Buffer.alloc(align4(payload.length) - payload.length));
  }
  return Buffer.concat(parts);
}

/** Attributes of one level: type (flags stripped) → payload (the last one wins). */
export function decodeAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

const str = (s: string) => Buffer.from(`${s}\0`);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
};
export const ipv4Bytes = (ip: string) => Buffer.from(ip.split('.').map(Number));
export const macBytes = (mac: string) => Buffer.from(mac.split(':').map((h) => Number.parseInt(h, 16)));

function ifinfomsg(index = 0, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(AF_UNSPEC, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

/** Error from a netlink answer, shaped like Node's system errors (`code`, `errno`). */
export class NetlinkError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    operation: string,
  ) {
    super(`${operation}: ${code} (${errnoText(errno)})`);
    this.name = 'NetlinkError';
  }
}

function errnoText(errno: number): string {
  return (
    (
      {
        1: 'operation not permitted',
        2: 'no such file or directory',
        3: 'no such process',
        16: 'device or resource busy',
        17: 'file exists',
        19: 'no such device',
        22: 'invalid argument',
        99: 'cannot assign requested address',
        101: 'network is unreachable',
      } as Record<number, string>
    )[errno] ?? `errno ${errno}`
  );
}

function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) if (value === errno) return name;
  return `E${errno}`;
}

export interface LinkInfo {
  index: number;
  name: string;
  flags: number;
  alias: string;
  kind: string;
  master: number;
}

/**
 * A new, empty network namespace as an open descriptor of the daemon (no mount): reachable as
 * `/proc/<daemon pid>/fd/<fd>`, alive while the descriptor is open or a process is in it.
 */
export function createNetns(): number {
  return native().netnsCreate();
}

export class NetlinkSocket {
  private seq = Math.floor(Math.random() * 1e6);
  private closed = false;

  private constructor(private readonly fd: number) {}

  /** A socket in the daemon's namespace, or in the one at `netnsPath` (e.g. /proc/<pid>/ns/net). */
  static open(netnsPath?: string): NetlinkSocket {
    return new NetlinkSocket(native().netlinkOpen(netnsPath ?? null));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** Runs one request; returns the payloads of the data messages (dumps) or [] for an ack. */
  private request(type: number, flags: number, body: Buffer, operation: string): Buffer[] {
    const seq = ++this.seq;
    const header = Buffer.alloc(16);
    header.writeUInt32LE(16 + body.length, 0);
    header.writeUInt16LE(type, 4);
    header.writeUInt16LE(NLM_F_REQUEST | flags, 6);
    header.writeUInt32LE(seq, 8);
    const answer = native().netlinkTransact(this.fd, Buffer.concat([header, body]));
    const messages: Buffer[] = [];
    let off = 0;
    while (off + 16 <= answer.length) {
      const len = answer.readUInt32LE(off);
      const msgType = answer.readUInt16LE(off + 4);
      if (len < 16) break;
      const payload = answer.subarray(off + 16, off + len);
      if (msgType === NLMSG_ERROR) {
        const err = -payload.readInt32LE(0);
        if (err !== 0) throw new NetlinkError(errnoName(err), err, operation);
      } else if (msgType !== NLMSG_DONE) messages.push(payload);
      off += align4(len);
    }
    return messages;
  }

  listLinks(): LinkInfo[] {
    return this.request(RTM_GETLINK, NLM_F_DUMP, ifinfomsg(), 'list links').map(parseLink);
  }

  /** The interface index of `name`, or null when there is none. */
  linkIndex(name: string): number | null {
    try {
      const [msg] = this.request(
        RTM_GETLINK,
        NLM_F_ACK,
        Buffer.concat([ifinfomsg(), encodeAttrs([{ type: IFLA_IFNAME, value: str(name) }])]),
        `get link ${name}`,
      );
      return msg ? msg.readInt32LE(4) : null;
    } catch (err) {
      if (err instanceof NetlinkError && (err.code === 'ENODEV' || err.code === 'ENOENT')) return null;
      throw err;
    }
  }

  /**
   * A bridge. Give it `mac`: a bridge without an address of its own takes the lowest of its ports',
   * so it changes as containers come and go and their ARP caches point at a MAC that is gone.
   */
  createBridge(name: string, opts: { up: boolean; mtu?: number; mac?: string }): void {
    const attrs: Attr[] = [
      { type: IFLA_IFNAME, value: str(name) },
      { type: IFLA_LINKINFO, value: [{ type: IFLA_INFO_KIND, value: str('bridge') }] },
    ];
    if (opts.mtu) attrs.push({ type: IFLA_MTU, value: u32(opts.mtu) });
    if (opts.mac) attrs.push({ type: IFLA_ADDRESS, value: macBytes(opts.mac) });
    this.request(
      RTM_NEWLINK,
      NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
      Buffer.concat([ifinfomsg(0, opts.up ? IFF_UP : 0, IFF_UP), encodeAttrs(attrs)]),
      `create bridge ${name}`,
    );
  }

  /**
   * A veth pair: `name` stays here (attached to `master`, up), `peerName` goes into the namespace
   * `peerNetns` with `peerMac`.
   */
  createVeth(opts: {
    name: string;
    peerName: string;
    /** The peer's namespace: a process in it, or a descriptor of it (see createNetns). */
    peerNetns: { pid: number } | { fd: number };
    master?: number;
    peerMac?: string;
    mtu?: number;
  }): void {
    const peerAttrs: Attr[] = [
      { type: IFLA_IFNAME, value: str(opts.peerName) },
      'pid' in opts.peerNetns
        ? { type: IFLA_NET_NS_PID, value: u32(opts.peerNetns.pid) }
        : { type: IFLA_NET_NS_FD, value: u32(opts.peerNetns.fd) },
    ];
    if (opts.peerMac) peerAttrs.push({ type: IFLA_ADDRESS, value: macBytes(opts.peerMac) });
    if (opts.mtu) peerAttrs.push({ type: IFLA_MTU, value: u32(opts.mtu) });
    const attrs: Attr[] = [
      { type: IFLA_IFNAME, value: str(opts.name) },
      {
        type: IFLA_LINKINFO,
        value: [
          { type: IFLA_INFO_KIND, value: str('veth') },
          {
            type: IFLA_INFO_DATA,
            value: [{ type: VETH_INFO_PEER, value: Buffer.concat([ifinfomsg(), encodeAttrs(peerAttrs)]) }],
          },
        ],
      },
    ];
    if (opts.master) attrs.push({ type: IFLA_MASTER, value: u32(opts.master) });
    if (opts.mtu) attrs.push({ type: IFLA_MTU, value: u32(opts.mtu) });
    this.request(
      RTM_NEWLINK,
      NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK,
      Buffer.concat([ifinfomsg(0, IFF_UP, IFF_UP), encodeAttrs(attrs)]),
      `create veth ${opts.name}`,
    );
  }

  /** Sets the link's hardware address (which also pins a bridge's address). */
  setLinkAddress(index: number, mac: string): void {
    this.request(
      RTM_NEWLINK,
      NLM_F_ACK,
      Buffer.concat([ifinfomsg(index), encodeAttrs([{ type: IFLA_ADDRESS, value: macBytes(mac) }])]),
      `set address of ${index}`,
    );
  }

  setLinkUp(index: number, up = true): void {
    this.request(RTM_NEWLINK, NLM_F_ACK, ifinfomsg(index, up ? IFF_UP : 0, IFF_UP), `set link ${index} up`);
  }

  setAlias(index: number, alias: string): void {
    this.request(
      RTM_NEWLINK,
      NLM_F_ACK,
      Buffer.concat([ifinfomsg(index), encodeAttrs([{ type: IFLA_IFALIAS, value: Buffer.from(alias) }])]),
      `set alias of ${index}`,
    );
  }

  /** Deletes an interface by name; false when it did not exist. */
  deleteLink(name: string): boolean {
    try {
      this.request(
        RTM_DELLINK,
        NLM_F_ACK,
        Buffer.concat([ifinfomsg(), encodeAttrs([{ type: IFLA_IFNAME, value: str(name) }])]),
        `delete link ${name}`,
      );
      return true;
    } catch (err) {
      if (err instanceof NetlinkError && (err.code === 'ENODEV' || err.code === 'ENOENT')) return false;
      throw err;
    }
  }

  addAddress(index: number, ip: string, prefixLen: number, broadcast?: string): void {
    const msg = Buffer.alloc(8);
    msg.writeUInt8(AF_INET, 0);
    msg.writeUInt8(prefixLen, 1);
    msg.writeUInt32LE(index, 4);
    const attrs: Attr[] = [
      { type: IFA_LOCAL, value: ipv4Bytes(ip) },
      { type: IFA_ADDRESS, value: ipv4Bytes(ip) },
    ];
    if (broadcast) attrs.push({ type: IFA_BROADCAST, value: ipv4Bytes(broadcast) });
    this.request(
      RTM_NEWADDR,
      NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
      Buffer.concat([msg, encodeAttrs(attrs)]),
      `add address ${ip}/${prefixLen}`,
    );
  }

  /** A route in the main table; `dst` null = default route. */
  addRoute(opts: { dst: [string, number] | null; gateway?: string; oif?: number }): void {
    const msg = Buffer.alloc(12);
    msg.writeUInt8(AF_INET, 0);
    msg.writeUInt8(opts.dst ? opts.dst[1] : 0, 1);
    msg.writeUInt8(254, 4); // RT_TABLE_MAIN
    msg.writeUInt8(3, 5); // RTPROT_BOOT
    msg.writeUInt8(opts.gateway ? 0 : 253, 6); // RT_SCOPE_UNIVERSE / RT_SCOPE_LINK
    msg.writeUInt8(1, 7); // RTN_UNICAST
    const attrs: Attr[] = [];
    if (opts.dst) attrs.push({ type: RTA_DST, value: ipv4Bytes(opts.dst[0]) });
    if (opts.gateway) attrs.push({ type: RTA_GATEWAY, value: ipv4Bytes(opts.gateway) });
    if (opts.oif) attrs.push({ type: RTA_OIF, value: u32(opts.oif) });
    this.request(
      RTM_NEWROUTE,
      NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
      Buffer.concat([msg, encodeAttrs(attrs)]),
      `add route ${opts.dst ? opts.dst.join('/') : 'default'}`,
    );
  }
}

function parseLink(msg: Buffer): LinkInfo {
  const attrs = decodeAttrs(msg.subarray(16));
  const cstr = (b: Buffer | undefined) => (b ? b.toString('utf8').replace(/\0.*$/s, '') : '');
  const linkinfo = attrs.get(IFLA_LINKINFO);
  return {
    index: msg.readInt32LE(4),
    flags: msg.readUInt32LE(8),
    name: cstr(attrs.get(IFLA_IFNAME)),
    alias: cstr(attrs.get(IFLA_IFALIAS)),
    kind: linkinfo ? cstr(decodeAttrs(linkinfo).get(IFLA_INFO_KIND)) : '',
    master: attrs.get(IFLA_MASTER)?.readUInt32LE(0) ?? 0,
  };
}
