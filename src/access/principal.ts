import * as fs from 'node:fs';

/**
 * Who is calling the API. A principal is named `kind:name` — `user:alice` (a unix-socket peer, by
 * SO_PEERCRED), `cert:client1` (a TLS client certificate, by its subject CN) or `token:ci` (a bearer
 * token configured on the daemon) — and belongs to groups (`group:devs`). Root on the unix socket,
 * and any principal or group listed as an admin in the daemon's auth config, is an admin: admins may
 * do anything; everyone else is held to ownership and ACLs (acl.ts).
 */
export interface Principal {
  /** Canonical name, recorded as an object's owner: `user:alice`, `cert:client1`, `token:ci`. */
  id: string;
  /** Other names that match this principal in ACL entries (`user:1001` for `user:alice`). */
  aliases: string[];
  /** `group:<name>` (and `group:<gid>` for unix users). */
  groups: string[];
  admin: boolean;
}

interface PasswdCache {
  mtimeMs: number;
  users: Map<number, string>;
  groups: Map<number, { name: string; members: string[] }>;
}

let cache: PasswdCache | null = null;

/** /etc/passwd and /etc/group, re-read when they change (test users are added at run time). */
function accounts(): PasswdCache {
  let mtimeMs = 0;
  try {
    mtimeMs = Math.max(fs.statSync('/etc/passwd').mtimeMs, fs.statSync('/etc/group').mtimeMs);
  } catch {
    mtimeMs = 0;
  }
  if (cache && cache.mtimeMs === mtimeMs) return cache;
  const users = new Map<number, string>();
  const groups = new Map<number, { name: string; members: string[] }>();
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 3 && /^\d+$/.test(f[2])) users.set(Number(f[2]), f[0]);
    }
    for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f.length >= 4 && /^\d+$/.test(f[2]))
        groups.set(Number(f[2]), { name: f[0], members: f[3].split(',').filter(Boolean) });
    }
  } catch {
    // keep what we have
  }
  cache = { mtimeMs, users, groups };
  return cache;
}

/** A unix-socket peer (uid, primary gid, supplementary gids from SO_PEERGROUPS). */
export function unixPrincipal(
  uid: number,
  gid: number,
  supplementary: readonly number[],
  isAdmin: (p: Principal) => boolean,
): Principal {
  const a = accounts();
  const name = a.users.get(uid);
  const gids = new Set([gid, ...supplementary]);
  if (name) for (const [g, info] of a.groups) if (info.members.includes(name)) gids.add(g);
  const groups: string[] = [];
  for (const g of gids) {
    groups.push(`group:${g}`);
    const info = a.groups.get(g);
    if (info) groups.push(`group:${info.name}`);
  }
  const p: Principal = {
    id: `user:${name ?? uid}`,
    aliases: name ? [`user:${uid}`] : [],
    groups,
    admin: uid === 0,
  };
  p.admin = p.admin || isAdmin(p);
  return p;
}

export function certPrincipal(commonName: string, isAdmin: (p: Principal) => boolean): Principal {
  const p: Principal = { id: `cert:${commonName}`, aliases: [], groups: [], admin: false };
  p.admin = isAdmin(p);
  return p;
}

export function tokenPrincipal(name: string, groups: readonly string[], admin: boolean): Principal {
  return { id: `token:${name}`, aliases: [], groups: groups.map((g) => `group:${g}`), admin };
}

/** Every name the principal answers to in an ACL entry. */
export function principalNames(p: Principal): string[] {
  return [p.id, ...p.aliases, ...p.groups, '*'];
}
