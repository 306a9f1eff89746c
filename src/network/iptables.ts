import { execFile } from 'node:child_process';
import { SystemError } from '../common/errors.js';
import { logger } from '../common/log.js';

const log = logger('iptables');

/**
 * The daemon's iptables rules. Every rule lives in chains of our own whose names carry the daemon's
 * tag (`STRATA-<tag>-FWD` in filter, `-DNAT` and `-POST` in nat); the built-in chains only get one
 * jump each, marked with the comment `strata:<tag>`. The desired content of our chains is computed
 * from memory and written whole with one `iptables-restore --noflush` (which flushes the chains it
 * declares), so a crash can never leave a stale rule behind: the next write replaces everything, and
 * `removeAll` finds our jumps by their comment.
 */
export interface BridgeRules {
  bridge: string;
  subnet: string;
  internal: boolean;
  /** The bridge's address, where the network's DNS server listens ('' = none). */
  gateway?: string;
}

export interface PortRule {
  protocol: 'tcp' | 'udp' | 'sctp';
  /** '' or '0.0.0.0' = every host address. */
  hostIp: string;
  hostPort: number;
  containerIp: string;
  containerPort: number;
}

export interface RuleState {
  networks: BridgeRules[];
  ports: PortRule[];
}

/** The prefix every Strata bridge name starts with (isolation matches all of them). */
export const BRIDGE_PREFIX = 'strata';

export function chainNames(tag: string) {
  return { fwd: `STRATA-${tag}-FWD`, dnat: `STRATA-${tag}-DNAT`, post: `STRATA-${tag}-POST` };
}

/** iptables-restore input that (re)writes our chains; `withJumps` also adds the built-in jumps. */
export function renderRules(tag: string, state: RuleState, withJumps: boolean): string {
  const c = chainNames(tag);
  const comment = `-m comment --comment strata:${tag}`;
  const filter: string[] = ['*filter', `:${c.fwd} - [0:0]`];
  if (withJumps) filter.push(`-I FORWARD 1 ${comment} -j ${c.fwd}`);
  const external = state.networks.filter((n) => !n.internal);
  for (const n of external) {
    filter.push(`-A ${c.fwd} -o ${n.bridge} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`);
    filter.push(`-A ${c.fwd} -o ${n.bridge} -m conntrack --ctstate DNAT -j ACCEPT`);
  }
  for (const n of state.networks) filter.push(`-A ${c.fwd} -i ${n.bridge} -o ${n.bridge} -j ACCEPT`);
  for (const n of state.networks) {
    if (n.internal) {
      filter.push(`-A ${c.fwd} -i ${n.bridge} -j DROP`, `-A ${c.fwd} -o ${n.bridge} -j DROP`);
    } else {
      // Never into another Strata network (of this daemon or another one): isolation.
      filter.push(`-A ${c.fwd} -i ${n.bridge} -o ${BRIDGE_PREFIX}+ -j DROP`);
      filter.push(`-A ${c.fwd} -i ${n.bridge} -j ACCEPT`);
      filter.push(`-A ${c.fwd} -o ${n.bridge} -j DROP`);
    }
  }
  filter.push('COMMIT');

  const nat: string[] = ['*nat', `:${c.dnat} - [0:0]`, `:${c.post} - [0:0]`];
  if (withJumps) {
    nat.push(`-A PREROUTING -m addrtype --dst-type LOCAL ${comment} -j ${c.dnat}`);
    nat.push(`-A OUTPUT -m addrtype --dst-type LOCAL ${comment} -j ${c.dnat}`);
    nat.push(`-I POSTROUTING 1 ${comment} -j ${c.post}`);
  }
  for (const n of external) {
    nat.push(`-A ${c.post} -s ${n.subnet} ! -o ${n.bridge} -j MASQUERADE`);
    // Published ports reached from the host's loopback or from the same network (hairpin).
    nat.push(`-A ${c.post} -o ${n.bridge} -s 127.0.0.0/8 -m conntrack --ctstate DNAT -j MASQUERADE`);
    nat.push(`-A ${c.post} -o ${n.bridge} -s ${n.subnet} -m conntrack --ctstate DNAT -j MASQUERADE`);
  }
  // DNS queries to a network's own DNS server (its gateway address) are never a published port.
  for (const n of state.networks) {
    if (!n.gateway) continue;
    for (const proto of ['udp', 'tcp'])
      nat.push(`-A ${c.dnat} -d ${n.gateway}/32 -p ${proto} -m ${proto} --dport 53 -j RETURN`);
  }
  for (const p of state.ports) {
    const dst = p.hostIp && p.hostIp !== '0.0.0.0' ? ` -d ${p.hostIp}/32` : '';
    nat.push(
      `-A ${c.dnat}${dst} -p ${p.protocol} -m ${p.protocol} --dport ${p.hostPort} -j DNAT --to-destination ${p.containerIp}:${p.containerPort}`,
    );
  }
  nat.push('COMMIT');
  return `${[...filter, ...nat].join('\n')}\n`;
}

/** iptables-restore input removing our jumps (found in `saved`, an iptables-save dump) and chains. */
export function renderRemoval(tag: string, saved: string, dropChains: boolean): string {
  const c = chainNames(tag);
  const ours = new Set([c.fwd, c.dnat, c.post]);
  const tables = new Map<string, string[]>();
  let table = '';
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) {
      table = line.slice(1).trim();
      continue;
    }
    if (!line.startsWith('-A ')) continue;
    const [, chain] = line.split(' ');
    if (ours.has(chain)) continue;
    const target = /-j (\S+)/.exec(line)?.[1] ?? '';
    if (line.includes(`strata:${tag}`) || ours.has(target)) {
      const list = tables.get(table) ?? [];
      list.push(`-D ${line.slice(3)}`);
      tables.set(table, list);
    }
  }
  const present = (name: string) => saved.includes(`:${name} `);
  const out: string[] = [];
  for (const t of ['filter', 'nat']) {
    const chains = t === 'filter' ? [c.fwd] : [c.dnat, c.post];
    const deletes = tables.get(t) ?? [];
    const existing = chains.filter(present);
    if (deletes.length === 0 && (!dropChains || existing.length === 0)) continue;
    out.push(`*${t}`, ...deletes);
    if (dropChains) {
      for (const ch of existing) out.push(`-F ${ch}`);
      for (const ch of existing) out.push(`-X ${ch}`);
    }
    out.push('COMMIT');
  }
  return out.length > 0 ? `${out.join('\n')}\n` : '';
}

function run(cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new SystemError(`${cmd} failed: ${(stderr || err.message).trim()}`));
      else resolve(stdout);
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}

/**
 * Serialises writes: while one `iptables-restore` runs, further requests wait and the latest state
 * is written once after it (every write is the whole state, so intermediate ones can be skipped).
 */
export class IptablesManager {
  private running: Promise<void> | null = null;
  private pending: {
    state: () => RuleState;
    waiters: { resolve: () => void; reject: (e: unknown) => void }[];
  } | null = null;
  private installed = false;

  constructor(readonly tag: string) {}

  /** Start-up: drop whatever an earlier run of this daemon left, then install jumps and chains. */
  async install(state: RuleState): Promise<void> {
    const saved = await run('iptables-save', []);
    const removal = renderRemoval(this.tag, saved, false);
    if (removal) await run('iptables-restore', ['--noflush', '--wait'], removal);
    await run('iptables-restore', ['--noflush', '--wait'], renderRules(this.tag, state, true));
    this.installed = true;
  }

  /** Rewrites our chains with `state()` (evaluated when the write actually happens). */
  apply(state: () => RuleState): Promise<void> {
    if (!this.installed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      if (this.pending) {
        this.pending.state = state;
        this.pending.waiters.push({ resolve, reject });
        return;
      }
      this.pending = { state, waiters: [{ resolve, reject }] };
      if (!this.running) this.drain();
    });
  }

  private drain(): void {
    const job = this.pending;
    if (!job) {
      this.running = null;
      return;
    }
    this.pending = null;
    this.running = run('iptables-restore', ['--noflush', '--wait'], renderRules(this.tag, job.state(), false))
      .then(
        () => {
          for (const w of job.waiters) w.resolve();
        },
        (err) => {
          log.warn('iptables-restore failed', { error: String(err) });
          for (const w of job.waiters) w.reject(err);
        },
      )
      .finally(() => this.drain());
  }

  /** Removes every jump and chain of this daemon (shutdown with nothing running, tests). */
  async removeAll(): Promise<void> {
    await this.running;
    const saved = await run('iptables-save', []);
    const removal = renderRemoval(this.tag, saved, true);
    if (removal) await run('iptables-restore', ['--noflush', '--wait'], removal);
    this.installed = false;
  }
}
