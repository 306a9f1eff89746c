import { InvalidArgument } from '../common/errors.js';

/**
 * IPv4 address management for bridge networks: subnets as [base, prefix], addresses as unsigned
 * 32-bit numbers. A network's pool is its subnet (or `--ip-range`) minus network, broadcast and
 * gateway addresses; leases are kept by the caller (in the endpoint table), this file only computes.
 */
export interface Subnet {
  base: number;
  prefixLen: number;
}

export function parseIPv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) {
    throw new InvalidArgument(`invalid IPv4 address: ${text}`);
  }
  return parts.reduce((n, p) => n * 256 + Number(p), 0);
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export function isIPv4(text: string): boolean {
  try {
    parseIPv4(text);
    return true;
  } catch {
    return false;
  }
}

const mask = (prefixLen: number) => (prefixLen === 0 ? 0 : (0xffffffff << (32 - prefixLen)) >>> 0);

/** `10.89.0.0/24` → subnet; the base must be the network address (as dockerd requires). */
export function parseSubnet(text: string, what = 'subnet'): Subnet {
  if (text.includes(':'))
    throw new InvalidArgument(`IPv6 ${what}s are not supported: ${text} (Strata networks are IPv4 only)`);
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text.trim());
  if (!m || Number(m[2]) > 32) throw new InvalidArgument(`invalid ${what} ${text}: not a CIDR block`);
  const base = parseIPv4(m[1]);
  const prefixLen = Number(m[2]);
  return { base: (base & mask(prefixLen)) >>> 0, prefixLen };
}

export function formatSubnet(s: Subnet): string {
  return `${formatIPv4(s.base)}/${s.prefixLen}`;
}

export function subnetSize(s: Subnet): number {
  return 2 ** (32 - s.prefixLen);
}

export function broadcastOf(s: Subnet): number {
  return s.base + subnetSize(s) - 1;
}

export function contains(s: Subnet, ip: number): boolean {
  return (ip & mask(s.prefixLen)) >>> 0 === s.base;
}

export function overlaps(a: Subnet, b: Subnet): boolean {
  const p = Math.min(a.prefixLen, b.prefixLen);
  return (a.base & mask(p)) >>> 0 === (b.base & mask(p)) >>> 0;
}

/**
 * The first free address of `range` (inside `subnet`), skipping network, broadcast, gateway and
 * `used`. Allocation starts after `after` and wraps, like dockerd's, so a just-released address is
 * not handed out again at once (a stale ARP entry or DNS answer would point at the wrong container).
 */
export function allocate(
  subnet: Subnet,
  range: Subnet,
  gateway: number,
  used: ReadonlySet<number>,
  after = 0,
): number | null {
  const first = Math.max(range.base, subnet.base + 1);
  const last = Math.min(broadcastOf(range), broadcastOf(subnet) - 1);
  if (last < first) return null;
  const count = last - first + 1;
  const start = after >= first && after < last ? after + 1 : first;
  for (let i = 0; i < count; i++) {
    const ip = first + ((start - first + i) % count);
    if (ip !== gateway && !used.has(ip)) return ip;
  }
  return null;
}

/** Docker's MAC for an address: 02:42 followed by the four address bytes. */
export function macForIPv4(ip: number): string {
  return [
    '02',
    '42',
    ...[ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].map((b) => b.toString(16).padStart(2, '0')),
  ].join(':');
}

/**
 * A free subnet from `candidates` that overlaps none of `taken` (the host's routes and the
 * networks of this and other daemons).
 */
export function pickSubnet(candidates: Iterable<Subnet>, taken: readonly Subnet[]): Subnet | null {
  for (const c of candidates) if (!taken.some((t) => overlaps(c, t))) return c;
  return null;
}

/** 10.89.0.0/24, 10.89.1.0/24, … 10.99.255.0/24: the pool for user networks without --subnet. */
export function* userSubnetPool(): Generator<Subnet> {
  for (let second = 89; second <= 99; second++) {
    for (let third = 0; third < 256; third++)
      yield { base: parseIPv4(`10.${second}.${third}.0`), prefixLen: 24 };
  }
}

/** 10.88.0.0/16, then 10.87.0.0/16 … 10.64.0.0/16: the default bridge of each daemon on a host. */
export function* defaultSubnetPool(): Generator<Subnet> {
  for (let second = 88; second >= 64; second--) yield { base: parseIPv4(`10.${second}.0.0`), prefixLen: 16 };
}

/** IPv4 routes of the host (main table), from /proc/net/route. */
/** A route of the host's main table: its destination block and the interface it goes out of. */
export interface RoutedSubnet extends Subnet {
  iface: string;
}

export function parseProcRoutes(text: string): RoutedSubnet[] {
  const out: RoutedSubnet[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const dest = Number.parseInt(f[1], 16);
    const maskLe = Number.parseInt(f[7], 16);
    if (!Number.isFinite(dest) || !Number.isFinite(maskLe)) continue;
    const swap = (n: number) =>
      (((n & 255) << 24) | (((n >>> 8) & 255) << 16) | (((n >>> 16) & 255) << 8) | (n >>> 24)) >>> 0;
    const m = swap(maskLe);
    if (m === 0) continue; // default route
    let prefixLen = 0;
    while (prefixLen < 32 && m & (0x80000000 >>> prefixLen)) prefixLen++;
    out.push({ base: swap(dest), prefixLen, iface: f[0] });
  }
  return out;
}
