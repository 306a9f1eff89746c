import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { type ContextOptions, IgnoreMatcher } from './context-ignore.js';

export {
  type ContextOptions,
  type ExtraFile,
  effectiveExcludes,
  IgnoreMatcher,
  looksLikeArchive,
  randomDockerfileName,
  readIgnorePatterns,
} from './context-ignore.js';

/**
 * The build context as the docker CLI sends it: an uncompressed tar of the context directory
 * minus what `.dockerignore` excludes (see context-ignore.ts), entries owned by 0:0, in lexical
 * walk order. Symbolic links are archived as links and never followed, and files
 * are opened with O_NOFOLLOW, so nothing outside the context directory is ever read.
 */

type HeaderArg = Partial<tar.Header> & { name: string };

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
