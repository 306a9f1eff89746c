import type { AclEntry } from '../config.js';

export type Action = 'pull' | 'push' | 'delete';
export const ALL_ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];

/** Who is asking: a user with groups, or nobody (no credentials). */
export interface Principal {
  user: string | null;
  groups: readonly string[];
}

/** The user name in an ACL entry that stands for requests without credentials. */
export const ANONYMOUS = 'anonymous';
/** The user name in an ACL entry that stands for every authenticated user. */
export const ANY_USER = '*';
/** In a pattern, the authenticated user's own name. */
export const USER_PLACEHOLDER = '$' + '{user}';

interface CompiledEntry {
  pattern: string;
  usesUser: boolean;
  users: ReadonlySet<string>;
  groups: ReadonlySet<string>;
  actions: readonly Action[];
}

/**
 * The access control list: entries mapping repository-name patterns to users, groups and actions.
 * A principal is granted, on a repository, the union of the actions of every entry that names it
 * and whose pattern matches the whole name. Nothing is granted by default.
 */
export class AccessControl {
  private readonly entries: CompiledEntry[];
  private readonly regexCache = new Map<string, RegExp>();

  constructor(entries: readonly AclEntry[], anonymousPull: boolean | readonly string[] = false) {
    this.entries = entries.map((e) => ({
      pattern: e.repository,
      usesUser: e.repository.includes(USER_PLACEHOLDER),
      users: new Set(e.users),
      groups: new Set(e.groups),
      actions: e.actions.includes('*') ? ALL_ACTIONS : (e.actions as Action[]),
    }));
    const anonymousPatterns = anonymousPull === true ? ['**'] : anonymousPull === false ? [] : anonymousPull;
    for (const pattern of anonymousPatterns) {
      this.entries.push({
        pattern,
        usesUser: false,
        users: new Set([ANONYMOUS]),
        groups: new Set(),
        actions: ['pull'],
      });
    }
  }

  /** The actions `principal` may perform on repository `name`. */
  permitted(principal: Principal, name: string): Set<Action> {
    const out = new Set<Action>();
    for (const entry of this.entries) {
      if (!namesPrincipal(entry, principal)) continue;
      if (entry.usesUser && principal.user === null) continue;
      if (!this.regex(entry, principal.user).test(name)) continue;
      for (const action of entry.actions) out.add(action);
    }
    return out;
  }

  isPermitted(principal: Principal, name: string, action: Action): boolean {
    return this.permitted(principal, name).has(action);
  }

  private regex(entry: CompiledEntry, user: string | null): RegExp {
    const key = entry.usesUser ? `${entry.pattern}\0${user ?? ''}` : entry.pattern;
    let re = this.regexCache.get(key);
    if (re === undefined) {
      re = patternToRegex(entry.pattern, user ?? undefined);
      if (this.regexCache.size > 10_000) this.regexCache.clear();
      this.regexCache.set(key, re);
    }
    return re;
  }
}

function namesPrincipal(entry: CompiledEntry, principal: Principal): boolean {
  if (principal.user === null) return entry.users.has(ANONYMOUS);
  if (entry.users.has(ANY_USER) || entry.users.has(principal.user)) return true;
  return principal.groups.some((g) => entry.groups.has(g));
}

/**
 * `*` matches within one path component, `**` across components, `${user}` the given user name
 * literally; everything else is literal.
 */
export function patternToRegex(pattern: string, user?: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    if (user !== undefined && pattern.startsWith(USER_PLACEHOLDER, i)) {
      source += escapeRegex(user);
      i += USER_PLACEHOLDER.length - 1;
    } else if (pattern[i] === '*') {
      if (pattern[i + 1] === '*') {
        source += '.*';
        i++;
      } else {
        source += '[^/]*';
      }
    } else {
      source += escapeRegex(pattern[i] ?? '');
    }
  }
  return new RegExp(`^${source}$`);
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
