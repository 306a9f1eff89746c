import { z } from 'zod';
import { InvalidArgument } from '../common/errors.js';
import { type Principal, principalNames } from './principal.js';

/**
 * Access control lists. Every container has an owner (the principal that created it) and a list of
 * entries granting rights to other principals or groups:
 *
 *   view     inspect, logs, stats, top, diff, export, copy out, wait
 *   exec     exec, attach, resize, copy in
 *   control  start, stop, kill, restart, pause, unpause, update, rename
 *   remove   rm
 *
 * Every right includes `view` (each docker command that acts on a container also inspects it). The
 * owner and admins hold all rights and are the only ones who may change the ACL. Written form, as in
 * the `strata.acl` label and `strata acl set`: entries separated by `;`, each `principal=rights` with
 * rights comma-separated or `all`, e.g. `user:bob=view,exec;group:ops=all;*=view`. A principal may
 * contain `=` (certificate subjects), so the rights follow the last `=`.
 */
export const RIGHTS = ['view', 'exec', 'control', 'remove'] as const;
export type Right = (typeof RIGHTS)[number];

export interface AclEntry {
  Principal: string;
  Rights: Right[];
}

export interface ObjectAcl {
  owner: string;
  entries: AclEntry[];
}

export const aclEntrySchema = z.object({
  Principal: z.string().min(1),
  Rights: z.array(z.enum([...RIGHTS, 'all'])).min(1),
});

const PRINCIPAL_RE = /^(\*|(user|group|token|cert):[^;\s]+)$/;

export function normalizeRights(rights: readonly string[]): Right[] {
  const out = new Set<Right>();
  for (const r of rights) {
    const v = r.trim().toLowerCase();
    if (v === 'all') for (const x of RIGHTS) out.add(x);
    else if ((RIGHTS as readonly string[]).includes(v)) out.add(v as Right);
    else throw new InvalidArgument(`invalid ACL right "${r}" (valid: ${RIGHTS.join(', ')}, all)`);
  }
  return RIGHTS.filter((r) => out.has(r));
}

export function checkPrincipalName(name: string): string {
  if (!PRINCIPAL_RE.test(name))
    throw new InvalidArgument(
      `invalid ACL principal "${name}" (use user:NAME, group:NAME, token:NAME, cert:CN or *)`,
    );
  return name;
}

export function normalizeEntries(
  entries: readonly { Principal: string; Rights: readonly string[] }[],
): AclEntry[] {
  const merged = new Map<string, Set<Right>>();
  for (const e of entries) {
    const name = checkPrincipalName(e.Principal.trim());
    const set = merged.get(name) ?? new Set<Right>();
    for (const r of normalizeRights(e.Rights)) set.add(r);
    merged.set(name, set);
  }
  return [...merged].map(([Principal, set]) => ({ Principal, Rights: RIGHTS.filter((r) => set.has(r)) }));
}

/** `user:bob=view,exec;group:ops=all` → entries. */
export function parseAclText(text: string): AclEntry[] {
  const entries: { Principal: string; Rights: string[] }[] = [];
  for (const part of text.split(';')) {
    const item = part.trim();
    if (item === '') continue;
    const i = item.lastIndexOf('=');
    if (i <= 0) throw new InvalidArgument(`invalid ACL entry "${item}": expected principal=rights`);
    entries.push({ Principal: item.slice(0, i), Rights: item.slice(i + 1).split(',') });
  }
  return normalizeEntries(entries);
}

export function formatAclText(entries: readonly AclEntry[]): string {
  return entries.map((e) => `${e.Principal}=${e.Rights.join(',')}`).join(';');
}

export function isOwner(principal: Principal, acl: ObjectAcl): boolean {
  return acl.owner === principal.id || principal.aliases.includes(acl.owner);
}

/** Whether `principal` holds `right` on an object with `acl` (null: no record, admins only). */
export function allows(principal: Principal, acl: ObjectAcl | null, right: Right): boolean {
  return rightChecker(principal, right)(acl);
}

/**
 * `allows` for one principal and right over many objects (list filtering): the principal's names are
 * collected once, so each object costs a map lookup and a scan of its own entries.
 */
export function rightChecker(principal: Principal, right: Right): (acl: ObjectAcl | null) => boolean {
  if (principal.admin) return () => true;
  const names = new Set(principalNames(principal));
  return (acl) => {
    if (!acl) return false;
    if (isOwner(principal, acl)) return true;
    return acl.entries.some(
      (e) =>
        names.has(e.Principal) && (e.Rights.includes(right) || (right === 'view' && e.Rights.length > 0)),
    );
  };
}

/** Adds rights (`grant`) or takes them away (`revoke`; no rights = every right) for one principal. */
export function editEntries(
  entries: readonly AclEntry[],
  change: {
    grant?: readonly AclEntry[];
    revoke?: readonly { Principal: string; Rights?: readonly string[] }[];
  },
): AclEntry[] {
  const map = new Map<string, Set<Right>>(entries.map((e) => [e.Principal, new Set(e.Rights)]));
  for (const g of change.grant ?? []) {
    const set = map.get(g.Principal) ?? new Set<Right>();
    for (const r of g.Rights) set.add(r);
    map.set(g.Principal, set);
  }
  for (const r of change.revoke ?? []) {
    const name = checkPrincipalName(r.Principal);
    const set = map.get(name);
    if (!set) continue;
    const rights = r.Rights && r.Rights.length > 0 ? normalizeRights(r.Rights) : [...RIGHTS];
    for (const x of rights) set.delete(x);
    if (set.size === 0) map.delete(name);
  }
  return [...map].map(([Principal, set]) => ({ Principal, Rights: RIGHTS.filter((x) => set.has(x)) }));
}
