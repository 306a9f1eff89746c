import { InvalidArgument } from '../common/errors.js';
import { readFileInRoot } from '../common/securejoin.js';

/**
 * Docker's `--user` forms: `name`, `uid`, `name:group`, `uid:gid`, … resolved against the container's
 * own /etc/passwd and /etc/group (never the host's). A numeric uid absent from passwd is allowed (gid 0),
 * a name that does not exist is an error, as with Docker.
 */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  home: string;
}

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

function parsePasswd(text: string | null): PasswdEntry[] {
  if (!text) return [];
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 7 && /^\d+$/.test(f[2]) && /^\d+$/.test(f[3]))
    .map((f) => ({ name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5] }));
}

function parseGroup(text: string | null): { name: string; gid: number; members: string[] }[] {
  if (!text) return [];
  return text
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => f.length >= 4 && /^\d+$/.test(f[2]))
    .map((f) => ({ name: f[0], gid: Number(f[2]), members: f[3].split(',').filter(Boolean) }));
}

export function resolveUser(
  rootfs: string,
  spec: string | null | undefined,
  groupAdd: string[] = [],
): ResolvedUser {
  const passwd = parsePasswd(readFileInRoot(rootfs, '/etc/passwd'));
  const groups = parseGroup(readFileInRoot(rootfs, '/etc/group'));
  const [userPart, groupPart] = (spec && spec !== '' ? spec : 'root').split(':', 2);
  let uid: number;
  let gid: number;
  let home = '/';
  let name: string | null = null;
  if (/^\d+$/.test(userPart)) {
    uid = Number(userPart);
    const entry = passwd.find((p) => p.uid === uid);
    gid = entry?.gid ?? 0;
    home = entry?.home ?? '/';
    name = entry?.name ?? null;
  } else {
    const entry = passwd.find((p) => p.name === userPart);
    if (!entry) {
      if (userPart === 'root') {
        uid = 0;
        gid = 0;
        home = '/root';
      } else throw new InvalidArgument(`unable to find user ${userPart}: no matching entries in passwd file`);
    } else {
      uid = entry.uid;
      gid = entry.gid;
      home = entry.home;
    }
    name = userPart;
  }
  if (groupPart !== undefined && groupPart !== '') {
    if (/^\d+$/.test(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((x) => x.name === groupPart);
      if (!g)
        throw new InvalidArgument(`unable to find group ${groupPart}: no matching entries in group file`);
      gid = g.gid;
    }
  }
  const additional = new Set<number>();
  if (name !== null && groupPart === undefined) {
    for (const g of groups) if (g.members.includes(name) && g.gid !== gid) additional.add(g.gid);
  }
  for (const extra of groupAdd) {
    if (/^\d+$/.test(extra)) additional.add(Number(extra));
    else {
      const g = groups.find((x) => x.name === extra);
      if (!g) throw new InvalidArgument(`unable to find group ${extra}: no matching entries in group file`);
      additional.add(g.gid);
    }
  }
  return { uid, gid, additionalGids: [...additional], home };
}
