import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';

/**
 * What a daemon leaves on the host, found the way the daemon finds its own: iptables lines carrying
 * its tag (`strata:<tag>`, chains `STRATA-<tag>-…`), interfaces whose alias names it, and host veths
 * plugged into those bridges.
 */
export function daemonTag(root: string): string {
  return createHash('sha256').update(root).digest('hex').slice(0, 6);
}

export function iptablesLines(tag: string): string[] {
  const saved = execFileSync('iptables-save', [], { encoding: 'utf8' });
  return saved.split('\n').filter((l) => l.includes(`strata:${tag}`) || l.includes(`STRATA-${tag}-`));
}

export function bridgesOf(tag: string): string[] {
  return fs.readdirSync('/sys/class/net').filter((name) => {
    try {
      return fs.readFileSync(`/sys/class/net/${name}/ifalias`, 'utf8').startsWith(`strata:${tag}:`);
    } catch {
      return false;
    }
  });
}

/** Removes whatever a failed test run left (rules, bridges) so the next run starts clean. */
export function sweep(tag: string): void {
  const saved = execFileSync('iptables-save', [], { encoding: 'utf8' });
  let table = '';
  const byTable = new Map<string, string[]>();
  const chains = new Map<string, string[]>();
  for (const line of saved.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.startsWith(`:STRATA-${tag}-`))
      chains.set(table, [...(chains.get(table) ?? []), line.slice(1).split(' ')[0]]);
    else if (line.startsWith('-A ') && line.includes(`strata:${tag}`))
      byTable.set(table, [...(byTable.get(table) ?? []), `-D ${line.slice(3)}`]);
  }
  let input = '';
  for (const t of new Set([...byTable.keys(), ...chains.keys()])) {
    input += `*${t}\n${(byTable.get(t) ?? []).join('\n')}\n`;
    for (const c of chains.get(t) ?? []) input += `-F ${c}\n`;
    for (const c of chains.get(t) ?? []) input += `-X ${c}\n`;
    input += 'COMMIT\n';
  }
  if (input !== '') execFileSync('iptables-restore', ['--noflush'], { input: input.replace(/\n\n/g, '\n') });
  for (const bridge of bridgesOf(tag)) execFileSync('ip', ['link', 'del', bridge]);
}
