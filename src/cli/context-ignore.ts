import * as path from 'node:path';

/**
 * What a build context holds, without the tar (so that `strata build`'s context sync never loads
 * the tar code): .dockerignore parsing and matching with moby's patternmatcher rules (`*`, `?`,
 * `**`, `!` exceptions, a pattern also excluding everything below a matched directory), the
 * exclusions the CLI always applies, and the stdin helpers.
 */

interface IgnorePattern {
  source: string;
  exclusion: boolean;
  regex?: RegExp;
}

/** Lines of a .dockerignore: comments and blanks dropped, paths cleaned, a leading `/` removed. */
export function readIgnorePatterns(text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    let line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const invert = line.startsWith('!');
    if (invert) line = line.slice(1).trim();
    if (line === '') continue;
    line = path.posix.normalize(line);
    if (line.length > 1 && line.endsWith('/')) line = line.slice(0, -1);
    if (line.length > 1 && line.startsWith('/')) line = line.slice(1);
    out.push(invert ? `!${line}` : line);
  }
  return out;
}

function compilePattern(pattern: string): RegExp {
  let re = '^';
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === '*') {
      if (chars[i + 1] === '*') {
        i++;
        if (chars[i + 1] === '/') i++;
        re += i + 1 >= chars.length ? '.*' : '(.*/)?';
      } else {
        re += '[^/]*';
      }
    } else if (ch === '?') {
      re += '[^/]';
    } else if ('.+()|{}$^'.includes(ch)) {
      re += `\\${ch}`;
    } else if (ch === '\\') {
      if (i + 1 < chars.length) {
        i++;
        re += `\\${chars[i]}`;
      } else {
        re += '\\\\';
      }
    } else {
      re += ch;
    }
  }
  return new RegExp(`${re}$`, 'u');
}

export class IgnoreMatcher {
  private readonly patterns: IgnorePattern[];

  constructor(patterns: string[]) {
    this.patterns = patterns.map((p) => {
      const exclusion = p.startsWith('!');
      const source = exclusion ? p.slice(1) : p;
      return { source, exclusion };
    });
  }

  get hasExclusions(): boolean {
    return this.patterns.some((p) => p.exclusion);
  }

  private test(p: IgnorePattern, file: string): boolean {
    p.regex ??= (() => {
      try {
        return compilePattern(p.source);
      } catch {
        return /(?!)/;
      }
    })();
    return p.regex.test(file);
  }

  /** patternmatcher.MatchesOrParentMatches for a slash-separated path relative to the context. */
  matches(file: string): boolean {
    if (this.patterns.length === 0) return false;
    let matched = false;
    const parent = path.posix.dirname(file);
    const parentDirs = parent.split('/');
    for (const p of this.patterns) {
      if (p.exclusion !== matched) continue;
      let match = this.test(p, file);
      if (!match && parent !== '.') {
        for (let i = 0; i < parentDirs.length && !match; i++) {
          match = this.test(p, parentDirs.slice(0, i + 1).join('/'));
        }
      }
      if (match) matched = !p.exclusion;
    }
    return matched;
  }

  /** Whether an excluded directory must still be walked because an exception may match below it. */
  mayIncludeBelow(dir: string): boolean {
    if (!this.hasExclusions) return false;
    const prefix = `${dir}/`;
    return this.patterns.some((p) => p.exclusion && `${p.source}/`.startsWith(prefix));
  }
}

/**
 * The exclude list the CLI actually applies: the Dockerfile and .dockerignore are always sent,
 * even when .dockerignore names them (docker's TrimBuildFilesFromExcludes).
 */
export function effectiveExcludes(patterns: string[], dockerfile: string | undefined): string[] {
  const out = [...patterns];
  if (new IgnoreMatcher(out).matches('.dockerignore')) out.push('!.dockerignore');
  if (dockerfile && new IgnoreMatcher(out).matches(dockerfile)) out.push(`!${dockerfile}`);
  return out;
}

export interface ExtraFile {
  name: string;
  content: Buffer;
  mode?: number;
}

export interface ContextOptions {
  /** .dockerignore patterns (already including the Dockerfile/.dockerignore exceptions). */
  excludes: string[];
  /** Files added after the directory's entries (a Dockerfile read from stdin or from outside). */
  extra?: ExtraFile[];
  /** Replaces the content of an archived file (the .dockerignore when a stdin Dockerfile is added). */
  replace?: Map<string, Buffer>;
}

/** Whether stdin holds an archive (tar, gzip, bzip2, xz) rather than a Dockerfile. */
export function looksLikeArchive(head: Buffer): boolean {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return true;
  if (head.length >= 3 && head.subarray(0, 3).toString('latin1') === 'BZh') return true;
  if (head.length >= 6 && head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])))
    return true;
  return head.length >= 262 && head.subarray(257, 262).toString('latin1') === 'ustar';
}

/** A stdin Dockerfile's name inside the context, as the docker CLI picks it. */
export function randomDockerfileName(): string {
  return `.dockerfile.${Buffer.from(Array.from({ length: 10 }, () => Math.floor(Math.random() * 256))).toString('hex')}`;
}
