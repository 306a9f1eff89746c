import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { logger } from '../common/log.js';
import { broadcastOf, formatIPv4, parseSubnet, type Subnet } from './ipam.js';
import { type LinkInfo, NetlinkSocket } from './netlink.js';

const log = logger('bridge');

/**
 * Linux bridges on the host, one per bridge network. Each carries the network's gateway address and
 * an interface alias `strata:<tag>:<network id>` naming the daemon that owns it, so a restarted daemon
 * can tell its own leftovers from another daemon's bridges.
 */
export function bridgeAlias(tag: string, networkId: string): string {
  return `strata:${tag}:${networkId}`;
}

export function ownerOf(link: LinkInfo): { tag: string; networkId: string } | null {
  const m = /^strata:([0-9a-f]+):([0-9a-f]+)$/.exec(link.alias);
  return m ? { tag: m[1], networkId: m[2] } : null;
}

function readSys(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

/** A random unicast, locally administered MAC address. */
function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0] & 0xfc) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function writeSysctl(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (err) {
    log.debug('sysctl not written', { file, error: String(err) });
  }
}

/** Creates (or completes) the bridge: up, gateway address, alias, loopback DNAT allowed. */
export function ensureBridge(opts: {
  name: string;
  subnet: string;
  gateway: string;
  alias: string;
  mtu?: number;
}): void {
  const nl = NetlinkSocket.open();
  try {
    let index = nl.linkIndex(opts.name);
    if (index === null) {
      nl.createBridge(opts.name, { up: true, mac: randomMac(), ...(opts.mtu ? { mtu: opts.mtu } : {}) });
      index = nl.linkIndex(opts.name);
      if (index === null) throw new Error(`bridge ${opts.name} vanished after creation`);
      // No IPv6 on our bridges: router solicitations and DAD only add noise (we are IPv4 only).
      writeSysctl(`/proc/sys/net/ipv6/conf/${opts.name}/disable_ipv6`, '1');
    } else {
      nl.setLinkUp(index);
      // A bridge made before its address was pinned (addr_assign_type 3 = set by user space).
      if (readSys(`/sys/class/net/${opts.name}/addr_assign_type`) !== '3') {
        const current = readSys(`/sys/class/net/${opts.name}/address`);
        nl.setLinkAddress(index, current && current !== '00:00:00:00:00:00' ? current : randomMac());
      }
    }
    nl.setAlias(index, opts.alias);
    const subnet: Subnet = parseSubnet(opts.subnet);
    nl.addAddress(index, opts.gateway, subnet.prefixLen, formatIPv4(broadcastOf(subnet)));
    // DNAT of 127.0.0.1:<published port> to a container needs loopback sources routed out the bridge.
    writeSysctl(`/proc/sys/net/ipv4/conf/${opts.name}/route_localnet`, '1');
  } finally {
    nl.close();
  }
}

export function deleteLinks(names: string[]): void {
  if (names.length === 0) return;
  const nl = NetlinkSocket.open();
  try {
    for (const name of names) {
      try {
        nl.deleteLink(name);
      } catch (err) {
        log.warn('deleting interface failed', { name, error: String(err) });
      }
    }
  } finally {
    nl.close();
  }
}

export function listLinks(): LinkInfo[] {
  const nl = NetlinkSocket.open();
  try {
    return nl.listLinks();
  } finally {
    nl.close();
  }
}

/**
 * A host-wide lock (a directory under /run) around "look at the host's routes, pick a subnet or
 * bridge name, create it", so daemons starting side by side never pick the same one.
 */
export async function withHostLock<T>(fn: () => T | Promise<T>): Promise<T> {
  const dir = '/run/strata-network.lock';
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      fs.mkdirSync(dir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') fs.mkdirSync('/run', { recursive: true });
      else if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      try {
        // A holder that crashed leaves the directory; nobody holds it for seconds.
        if (Date.now() - fs.statSync(dir).mtimeMs > 5000) fs.rmdirSync(dir);
      } catch {
        // raced with its owner
      }
      if (Date.now() > deadline) throw new Error('timed out waiting for the host network lock');
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
