/**
 * Access requests in Docker token auth's vocabulary: `repository:<name>:<actions>` and
 * `registry:catalog:*`. The same shape is a challenge's `scope`, a token request's `scope`
 * parameter and a token's `access` claim.
 */
export interface ResourceAccess {
  type: 'repository' | 'registry';
  name: string;
  actions: string[];
}

export const CATALOG: ResourceAccess = { type: 'registry', name: 'catalog', actions: ['*'] };

/** Parses one scope; the name may itself contain `:` (a registry host with a port), actions come last. */
export function parseScope(scope: string): ResourceAccess | null {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first) return null;
  const type = scope.slice(0, first);
  if (type !== 'repository' && type !== 'registry') return null;
  const name = scope.slice(first + 1, last);
  const actions = scope
    .slice(last + 1)
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  if (name === '') return null;
  return { type, name, actions };
}

export function formatScope(access: ResourceAccess): string {
  return `${access.type}:${access.name}:${access.actions.join(',')}`;
}

/** Token request parameters carry scopes space-separated, or repeated. */
export function parseScopes(values: readonly string[]): ResourceAccess[] {
  const out: ResourceAccess[] = [];
  for (const value of values) {
    for (const part of value.split(' ')) {
      const parsed = part === '' ? null : parseScope(part);
      if (parsed !== null) out.push(parsed);
    }
  }
  return out;
}
