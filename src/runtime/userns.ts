import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { InvalidArgument } from '../common/errors.js';

/**
 * User-namespace remapping (`strata daemon --userns-remap …`): every container's root is an
 * unprivileged host uid. The range comes from /etc/subuid and /etc/subgid, as with dockerd:
 * `default` uses (and creates on first use) the `strataremap` user with a 65536-id range; a user name
 * or uid (optionally `:group`) uses that user's ranges.
 *
 * Image layers stay as they are on disk (owned by 0..n): the daemon mounts them through idmapped
 * mounts (see snapshots/idmapped.ts), so container root sees its files as its own without chowned
 * copies. The user namespace for those mounts is made once per daemon and held open as an fd.
 */
export interface UsernsRemap {
  user: string;
  /** First host uid/gid of the range; container uid 0 is this one. */
  uid: number;
  gid: number;
  size: number;
}

const DEFAULT_REMAP_USER = 'strataremap';
const DEFAULT_RANGE = 65536;

function readRanges(file: string): { name: string; start: number; count: number }[] {
  let text = '';
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .map((l) => l.trim().split(':'))
    .filter((f) => f.length === 3 && /^\d+$/.test(f[1]) && /^\d+$/.test(f[2]))
    .map((f) => ({ name: f[0], start: Number(f[1]), count: Number(f[2]) }));
}

function passwdEntry(nameOrUid: string): { name: string; uid: number; gid: number } | null {
  const lines = fs.readFileSync('/etc/passwd', 'utf8').split('\n');
  for (const line of lines) {
    const f = line.split(':');
    if (f.length < 4) continue;
    if (f[0] === nameOrUid || f[2] === nameOrUid) return { name: f[0], uid: Number(f[2]), gid: Number(f[3]) };
  }
  return null;
}

function groupName(nameOrGid: string): string | null {
  for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f.length >= 3 && (f[0] === nameOrGid || f[2] === nameOrGid)) return f[0];
  }
  return null;
}

/** Creates the `strataremap` user and its subordinate id ranges when missing (like dockerd's `dockremap`). */
function ensureDefaultRemapUser(): void {
  if (!passwdEntry(DEFAULT_REMAP_USER)) {
    execFileSync(
      'useradd',
      ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', DEFAULT_REMAP_USER],
      {
        stdio: 'pipe',
      },
    );
  }
  for (const file of ['/etc/subuid', '/etc/subgid']) {
    const ranges = readRanges(file);
    if (ranges.some((r) => r.name === DEFAULT_REMAP_USER)) continue;
    const start = Math.max(100000, ...ranges.map((r) => r.start + r.count));
    fs.appendFileSync(file, `${DEFAULT_REMAP_USER}:${start}:${DEFAULT_RANGE}\n`);
  }
}

/** `default`, `user`, `user:group`, `uid`, `uid:gid` → the remapping range. */
export function resolveUsernsRemap(spec: string): UsernsRemap {
  let [userPart, groupPart] = spec.split(':', 2);
  if (spec === 'default') {
    ensureDefaultRemapUser();
    userPart = DEFAULT_REMAP_USER;
    groupPart = DEFAULT_REMAP_USER;
  }
  const entry = passwdEntry(userPart);
  if (!entry) throw new InvalidArgument(`userns-remap: no such user: ${userPart}`);
  const group = groupPart ? groupName(groupPart) : (groupName(String(entry.gid)) ?? entry.name);
  if (!group) throw new InvalidArgument(`userns-remap: no such group: ${groupPart}`);
  const uidRange = readRanges('/etc/subuid').find(
    (r) => r.name === entry.name || r.name === String(entry.uid),
  );
  const gidRange = readRanges('/etc/subgid').find((r) => r.name === group);
  if (!uidRange) throw new InvalidArgument(`userns-remap: no subuid range for ${entry.name} in /etc/subuid`);
  if (!gidRange) throw new InvalidArgument(`userns-remap: no subgid range for ${group} in /etc/subgid`);
  return {
    user: entry.name,
    uid: uidRange.start,
    gid: gidRange.start,
    size: Math.min(uidRange.count, gidRange.count),
  };
}

/**
 * An open fd of a user namespace with the remapping (container id 0 → host `uid`), for idmapped
 * mounts. A helper process enters a new user namespace (`unshare --user`); we write its uid and gid
 * maps ourselves (root may map any range; util-linux would go through newuidmap, which checks
 * /etc/subuid for root), open its namespace file and let the process go: the fd keeps the namespace.
 */
export async function openUsernsFd(remap: UsernsRemap): Promise<number> {
  const child = spawn('unshare', ['--user', 'sleep', '60'], { stdio: 'ignore' });
  const pid = child.pid;
  if (pid === undefined) throw new Error('userns-remap: could not start unshare');
  try {
    const ownNamespace = fs.readlinkSync('/proc/self/ns/user');
    // unshare execs sleep once it is in the new namespace: `sleep` in comm means it is there.
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`userns-remap: unshare exited with ${child.exitCode}`);
      let comm = '';
      let namespace = ownNamespace;
      try {
        comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        namespace = fs.readlinkSync(`/proc/${pid}/ns/user`);
      } catch {
        comm = '';
      }
      if (comm === 'sleep' && namespace !== ownNamespace) break;
      if (Date.now() > deadline) throw new Error('userns-remap: user namespace helper did not start');
      await new Promise((r) => setTimeout(r, 5));
    }
    fs.writeFileSync(`/proc/${pid}/uid_map`, `0 ${remap.uid} ${remap.size}\n`);
    fs.writeFileSync(`/proc/${pid}/gid_map`, `0 ${remap.gid} ${remap.size}\n`);
    return fs.openSync(`/proc/${pid}/ns/user`, 'r');
  } finally {
    child.kill('SIGKILL');
  }
}
