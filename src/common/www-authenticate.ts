/** One challenge of a `WWW-Authenticate` header: its scheme (lowercased) and its parameters. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+.^_`|~0-9A-Za-z-]+/y;
const PARAM = /([!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))/y;
const SEPARATORS = /[\s,]*/y;

/**
 * Parses `WWW-Authenticate` (RFC 9110 §11.6.1): challenges such as
 * `Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull"` or
 * `Basic realm="hub"`, several of them possibly joined by commas (Node joins repeated headers so).
 * Parameter names are lowercased; quoted values are unescaped.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let at = 0;
  while (at < header.length) {
    SEPARATORS.lastIndex = at;
    SEPARATORS.exec(header);
    at = SEPARATORS.lastIndex;
    if (at >= header.length) break;
    const current = out.at(-1);
    PARAM.lastIndex = at;
    const param = current === undefined ? null : PARAM.exec(header);
    if (param !== null && current !== undefined) {
      const name = (param[1] ?? '').toLowerCase();
      current.params[name] = param[2] === undefined ? (param[3] ?? '') : param[2].replace(/\\(.)/g, '$1');
      at = PARAM.lastIndex;
      continue;
    }
    TOKEN.lastIndex = at;
    const scheme = TOKEN.exec(header);
    if (scheme === null) break;
    out.push({ scheme: scheme[0].toLowerCase(), params: {} });
    at = TOKEN.lastIndex;
  }
  return out;
}

/** A challenge a registry client can answer. */
export interface RegistryChallenge extends Challenge {
  scheme: 'bearer' | 'basic';
}

/**
 * The challenge a registry client should answer, from one header or several: Bearer when offered
 * (the stronger), else Basic; null when neither is. Shared by the daemon's registry client and the
 * registry's pull-through cache.
 */
export function preferredChallenge(header: string | string[] | undefined): RegistryChallenge | null {
  const values = header === undefined ? [] : Array.isArray(header) ? header : [header];
  const challenges = values.flatMap(parseChallenges);
  for (const scheme of ['bearer', 'basic'] as const) {
    const found = challenges.find((c) => c.scheme === scheme);
    if (found !== undefined) return { scheme, params: found.params };
  }
  return null;
}
