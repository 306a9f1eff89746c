import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';

/**
 * The build context as the docker CLI sends it: an uncompressed tar of the context directory
 * minus what `.dockerignore` excludes (moby's patternmatcher rules: `*`, `?`, `**`, `!`
 * exceptions, a pattern also excluding everything below a matched directory), entries owned by
 * 0:0, in lexical walk order. Symbolic links are archived as links and never followed, and files
 * are opened with O_NOFOLLOW, so nothing outside the context directory is ever read.
 */

type HeaderArg = Partial<tar.Header> & { name: string };

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

/** Streams the context directory as a tar; `stats.bytes` counts file content as it is packed. */
export function packContext(dir: string, opts: ContextOptions, stats = { bytes: 0, files: 0 }): Readable {
  const pack = tar.pack();
  const matcher = new IgnoreMatcher(opts.excludes);
  const entry = (header: HeaderArg, content?: Buffer): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (content) pack.entry(header, content, done);
      else pack.entry(header, done);
    });
  const owner = { uid: 0, gid: 0, uname: '', gname: '' };

  const addFile = async (abs: string, name: string, st: fs.Stats): Promise<void> => {
    const replacement = opts.replace?.get(name);
    if (replacement) {
      await entry({ ...owner, name, mode: st.mode & 0o7777, mtime: st.mtime, type: 'file' }, replacement);
      stats.bytes += replacement.length;
      stats.files++;
      return;
    }
    // O_NOFOLLOW: a file swapped for a symlink after the walk saw it is refused, not followed.
    const handle = await fsp.open(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    try {
      const fst = await handle.stat();
      if (!fst.isFile()) return;
      const header: HeaderArg = {
        ...owner,
        name,
        mode: fst.mode & 0o7777,
        mtime: fst.mtime,
        size: fst.size,
        type: 'file',
      };
      if (fst.size > 0) {
        await pipeline(
          handle.createReadStream({ start: 0, end: fst.size - 1, autoClose: false }),
          pack.entry(header),
        );
      } else {
        await entry(header, Buffer.alloc(0));
      }
      stats.bytes += fst.size;
      stats.files++;
    } finally {
      await handle.close();
    }
  };

  const walk = async (absDir: string, relDir: string): Promise<void> => {
    const names = (await fsp.readdir(absDir)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const child of names) {
      const rel = relDir ? `${relDir}/${child}` : child;
      const abs = path.join(absDir, child);
      const st = await fsp.lstat(abs);
      const skip = matcher.matches(rel);
      if (st.isDirectory()) {
        if (skip && !matcher.mayIncludeBelow(rel)) continue;
        if (!skip)
          await entry({
            ...owner,
            name: `${rel}/`,
            mode: st.mode & 0o7777,
            mtime: st.mtime,
            type: 'directory',
          });
        await walk(abs, rel);
        continue;
      }
      if (skip) continue;
      if (st.isSymbolicLink()) {
        await entry({
          ...owner,
          name: rel,
          mode: st.mode & 0o7777,
          mtime: st.mtime,
          type: 'symlink',
          linkname: await fsp.readlink(abs),
        });
      } else if (st.isFile()) {
        await addFile(abs, rel, st);
      }
      // Sockets, FIFOs and devices are not part of a build context.
    }
  };

  (async () => {
    await walk(dir, '');
    for (const f of opts.extra ?? []) {
      await entry(
        { ...owner, name: f.name, mode: f.mode ?? 0o600, mtime: new Date(), type: 'file' },
        f.content,
      );
      stats.bytes += f.content.length;
    }
  })().then(
    () => pack.finalize(),
    (err: Error) => pack.destroy(err),
  );
  return Readable.from(pack);
}

/** A one-file context: `strata build - < Dockerfile`. */
export function dockerfileOnlyContext(content: Buffer): Readable {
  const pack = tar.pack();
  pack.entry({ name: 'Dockerfile', mode: 0o644, mtime: new Date(), uid: 0, gid: 0, type: 'file' }, content);
  pack.finalize();
  return Readable.from(pack);
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
