import * as posixPath from 'node:path/posix';

/**
 * Path patterns of the build: COPY/ADD wildcards (Go's `filepath.Match`: `*` and `?` never cross a
 * `/`, `[…]` classes, `\` escapes) and `.dockerignore` (the same plus `**` for any number of
 * directories, `!` re-including, a pattern also excluding everything below a matched directory,
 * the last matching pattern deciding).
 */

const REGEX_SPECIAL = /[.+()|{}$^]/;

function classBody(chars: string[], start: number): { source: string; end: number } | null {
  let i = start + 1;
  let body = '';
  if (chars[i] === '!' || chars[i] === '^') {
    body += '^';
    i++;
  }
  let first = true;
  for (; i < chars.length; i++) {
    const c = chars[i];
    if (c === ']' && !first) return { source: `[${body}]`, end: i };
    first = false;
    if (c === '\\' && i + 1 < chars.length) {
      body += `\\${chars[++i]}`;
      continue;
    }
    body += c === '[' ? '\\[' : c;
  }
  return null;
}

/** A Go `filepath.Match` pattern as an anchored regular expression. */
export function goPatternRegex(pattern: string): RegExp {
  const chars = Array.from(pattern);
  let source = '';
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '*') source += '[^/]*';
    else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const cls = classBody(chars, i);
      if (cls === null) throw new Error(`syntax error in pattern ${JSON.stringify(pattern)}`);
      source += cls.source;
      i = cls.end;
    } else if (c === '\\') {
      if (i + 1 < chars.length) source += escapeChar(chars[++i]);
      else source += '\\\\';
    } else source += escapeChar(c);
  }
  return new RegExp(`^${source}$`, 'u');
}

function escapeChar(c: string): string {
  return REGEX_SPECIAL.test(c) || '*?[]\\/'.includes(c) ? `\\${c}` : c;
}

/** True when `path` has an unescaped `*`, `?` or `[`. */
export function hasWildcards(path: string): boolean {
  for (let i = 0; i < path.length; i++) {
    const c = path[i];
    if (c === '\\') i++;
    else if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

interface IgnorePattern {
  exclusion: boolean;
  regex: RegExp;
  /** Number of path segments, for matching parent directories. */
  dirs: number;
}

function dockerignoreRegex(pattern: string): RegExp {
  const chars = Array.from(pattern);
  let source = '^';
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '*') {
      if (chars[i + 1] === '*') {
        i++;
        if (chars[i + 1] === '/') i++;
        source += i + 1 >= chars.length ? '.*' : '(?:.*/)?';
      } else source += '[^/]*';
    } else if (c === '?') source += '[^/]';
    else if (c === '[') {
      const cls = classBody(chars, i);
      if (cls === null) source += '\\[';
      else {
        source += cls.source;
        i = cls.end;
      }
    } else if (c === '\\') {
      source += i + 1 < chars.length ? escapeChar(chars[++i]) : '\\\\';
    } else source += escapeChar(c);
  }
  return new RegExp(`${source}$`, 'u');
}

/** The patterns of a `.dockerignore` file. */
export class IgnoreMatcher {
  private readonly patterns: IgnorePattern[] = [];

  constructor(text: string) {
    for (const rawLine of text.split(/\r?\n/)) {
      let line = rawLine.trim();
      if (line === '' || line.startsWith('#')) continue;
      const exclusion = line.startsWith('!');
      if (exclusion) line = line.slice(1).trim();
      if (line === '') continue;
      let pattern = posixPath.normalize(line);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
      if (pattern.length > 1 && pattern.endsWith('/')) pattern = pattern.slice(0, -1);
      this.patterns.push({
        exclusion,
        regex: dockerignoreRegex(pattern),
        dirs: pattern.split('/').length,
      });
    }
  }

  get isEmpty(): boolean {
    return this.patterns.length === 0;
  }

  /** True when `relPath` (`a/b/c`, no leading slash) is excluded from the context. */
  matches(relPath: string): boolean {
    const parts = relPath.split('/');
    let matched = false;
    for (const pattern of this.patterns) {
      let match = pattern.regex.test(relPath);
      if (!match && parts.length > 1) {
        for (let i = 1; i < parts.length && !match; i++) {
          match = pattern.regex.test(parts.slice(0, i).join('/'));
        }
      }
      if (match) matched = !pattern.exclusion;
    }
    return matched;
  }
}
