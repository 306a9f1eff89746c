import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ContextManifest, ContextManifestEntry } from '../build/context-manifest.js';
import { type ScannedEntry, scanDirectory } from '../native/index.js';
import type { EngineClient } from './client.js';
import { type ContextOptions, IgnoreMatcher } from './context-ignore.js';
import { CliError } from './errors.js';

/**
 * Context sync for `strata build` (a Strata extension; README "Strata extensions"): instead of the
 * whole context tar, the CLI describes the context — the entries `packContext` would archive, with
 * each file's sha256 — asks the daemon which contents it lacks (`POST /build/context/check`),
 * uploads only those (`POST /build/context/upload`, a tar of bodies named by digest), and sends the
 * description as the body of `POST /build`. The daemon builds from the same tree, so output and cache
 * are those of the tar.
 *
 * Digests of unchanged files come from a local cache (`~/.cache/strata/build-context/`), keyed by
 * size, mtime, ctime and inode, like git's index; a file changed less than two seconds before it was
 * hashed is not trusted from the cache (its time stamp could hide a second change in the same tick).
 */
export const CONTEXT_SYNC_FEATURE = 'build-context-sync';
const MEDIA_TYPE = 'application/vnd.strata.build-context.v1+json';
const RACY_MS = 2000;
const CHUNK = 1 << 20;

type Source = { file: string } | { data: Buffer };

export interface DescribedContext {
  manifest: ContextManifest;
  /** Where each digest's content comes from (for the upload). */
  sources: Map<string, { source: Source; size: number }>;
  bytes: number;
}

/** What the digest cache compares: the same figures from fs.Stats or from the addon's scan. */
type FileFigures = Pick<ScannedEntry, 'size' | 'mtimeMs' | 'ctimeMs' | 'ino'>;

/** [size, mtimeMs, ctimeMs, ino, sha256 hex] */
type CachedDigest = [number, number, number, number, string];

interface DigestCacheFile {
  version: 1;
  files: Record<string, CachedDigest>;
}

class DigestCache {
  private readonly file: string | null;
  private readonly old: Record<string, CachedDigest> = {};
  private readonly next: Record<string, CachedDigest> = {};
  private changed = false;

  constructor(contextDir: string) {
    const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
    const key = createHash('sha256').update(contextDir).digest('hex').slice(0, 32);
    this.file = path.join(base, 'strata', 'build-context', `${key}.json`);
    try {
      const parsed = JSON.parse(fs.readFileSync(this.file, 'utf8')) as DigestCacheFile;
      if (parsed.version === 1 && typeof parsed.files === 'object') this.old = parsed.files;
    } catch {
      // no cache yet, or unreadable: every file is hashed
    }
  }

  lookup(rel: string, st: FileFigures): string | null {
    const hit = this.old[rel];
    if (hit && hit[0] === st.size && hit[1] === st.mtimeMs && hit[2] === st.ctimeMs && hit[3] === st.ino) {
      this.next[rel] = hit;
      return hit[4];
    }
    return null;
  }

  store(rel: string, st: FileFigures, hex: string, hashedAtMs: number): void {
    this.changed = true;
    if (hashedAtMs - st.ctimeMs < RACY_MS || hashedAtMs - st.mtimeMs < RACY_MS) return;
    this.next[rel] = [st.size, st.mtimeMs, st.ctimeMs, st.ino, hex];
  }

  save(): void {
    if (this.file === null) return;
    if (!this.changed && Object.keys(this.next).length === Object.keys(this.old).length) return;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
      const tmp = `${this.file}.${process.pid}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify({ version: 1, files: this.next } satisfies DigestCacheFile));
      fs.renameSync(tmp, this.file);
    } catch {
      // a cache that cannot be written only costs hashing next time
    }
  }
}

function hashFile(fd: number, size: number): string {
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(size, 1)));
  for (let position = 0; ; ) {
    const n = fs.readSync(fd, buf, 0, buf.length, position);
    if (n === 0) break;
    hash.update(buf.subarray(0, n));
    position += n;
  }
  return hash.digest('hex');
}

/**
 * The mtime as the tar header gets it (tar-stream: `Date` → `getTime() / 1000 | 0`; a Date made
 * from mtimeMs holds it truncated to whole milliseconds).
 */
const seconds = (st: { mtimeMs: number }) => (Math.trunc(st.mtimeMs) / 1000) | 0;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/**
 * The manifest of what `packContext(dir, options)` would send: the same walk, the same
 * .dockerignore rules, symlinks never followed, files opened with O_NOFOLLOW.
 */
export function describeContext(dir: string, options: ContextOptions): DescribedContext {
  const matcher = new IgnoreMatcher(options.excludes);
  const cache = new DigestCache(fs.realpathSync(dir));
  const entries: ContextManifestEntry[] = [];
  const sources = new Map<string, { source: Source; size: number }>();
  let bytes = 0;
  const addData = (name: string, data: Buffer, mode: number, mtime: number) => {
    const hex = createHash('sha256').update(data).digest('hex');
    sources.set(hex, { source: { data }, size: data.length });
    entries.push({
      Path: name,
      Type: 'file',
      Mode: mode,
      Mtime: mtime,
      Size: data.length,
      Digest: `sha256:${hex}`,
    });
    bytes += data.length;
  };
  const now = Date.now();

  const walk = (absDir: string, relDir: string): void => {
    // One addon call per directory instead of an lstatSync per entry (the walk is most of a warm
    // `strata build` on a context of thousands of files).
    const children = scanDirectory(absDir).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const st of children) {
      const child = st.name;
      const rel = relDir ? `${relDir}/${child}` : child;
      const abs = `${absDir}/${child}`;
      const skip = matcher.matches(rel);
      const mode = st.mode & 0o7777;
      const type = st.mode & S_IFMT;
      if (type === S_IFDIR) {
        if (skip && !matcher.mayIncludeBelow(rel)) continue;
        if (!skip) entries.push({ Path: rel, Type: 'dir', Mode: mode, Mtime: seconds(st) });
        walk(abs, rel);
        continue;
      }
      if (skip) continue;
      if (type === S_IFLNK) {
        entries.push({
          Path: rel,
          Type: 'symlink',
          Mode: mode,
          Mtime: seconds(st),
          Linkname: fs.readlinkSync(abs),
        });
        continue;
      }
      if (type !== S_IFREG) continue; // sockets, FIFOs and devices are not part of a build context
      const replacement = options.replace?.get(rel);
      if (replacement) {
        addData(rel, replacement, mode, seconds(st));
        continue;
      }
      let hex = cache.lookup(rel, st);
      let fst: FileFigures & { mode: number; mtimeMs: number } = st;
      if (hex === null) {
        const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
        try {
          const opened = fs.fstatSync(fd);
          if (!opened.isFile()) continue;
          fst = opened;
          hex = hashFile(fd, opened.size);
        } finally {
          fs.closeSync(fd);
        }
        cache.store(rel, fst, hex, now);
      }
      const size = fst.size;
      sources.set(hex, { source: { file: abs }, size });
      entries.push({
        Path: rel,
        Type: 'file',
        Mode: fst.mode & 0o7777,
        Mtime: seconds(fst),
        Size: size,
        Digest: `sha256:${hex}`,
      });
      bytes += size;
    }
  };
  walk(dir, '');
  const stamp = Math.floor(Date.now() / 1000);
  for (const f of options.extra ?? []) addData(f.name, f.content, f.mode ?? 0o600, stamp);
  cache.save();
  return { manifest: { Entries: entries }, sources, bytes };
}

/** The upload body: a tar of the missing contents, each entry named by its sha256 hex. */
async function uploadTar(missing: string[], described: DescribedContext): Promise<Readable> {
  // Loaded only when something is missing: a warm build never pays for the tar code.
  const { default: tar } = await import('tar-stream');
  const pack = tar.pack();
  void (async () => {
    for (const digest of missing) {
      const hex = digest.slice('sha256:'.length);
      const found = described.sources.get(hex);
      if (!found) throw new CliError(`the daemon asked for content the context does not have: ${digest}`);
      const header = { name: hex, mode: 0o600, mtime: new Date(0), uid: 0, gid: 0, type: 'file' as const };
      if ('data' in found.source) {
        const data = found.source.data;
        await new Promise<void>((resolve, reject) =>
          pack.entry({ ...header, size: data.length }, data, (err) => (err ? reject(err) : resolve())),
        );
        continue;
      }
      // A file is streamed (a context file can be larger than memory). Its size is the one it was
      // hashed with; a file that changed since is caught by the daemon's digest check, or by tar-stream
      // when the length differs.
      const fd = fs.openSync(found.source.file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      const entry = pack.entry({ ...header, size: found.size });
      await pipeline(fs.createReadStream('', { fd, highWaterMark: CHUNK }), entry);
    }
  })().then(
    () => pack.finalize(),
    (err: Error) => pack.destroy(err),
  );
  return Readable.from(pack);
}

export interface SyncResult {
  /** The body and content type for `POST /build`. */
  body: Buffer;
  contentType: string;
  files: number;
  sentFiles: number;
  sentBytes: number;
  contextBytes: number;
}

/** Describes the context, uploads what the daemon lacks, and returns the `POST /build` body. */
export async function syncContext(
  client: EngineClient,
  dir: string,
  options: ContextOptions,
): Promise<SyncResult> {
  const described = describeContext(dir, options);
  const body = Buffer.from(JSON.stringify(described.manifest));
  const { Missing } = await client.json<{ Missing: string[] }>('POST', '/build/context/check', {
    body,
    contentType: 'application/json',
  });
  let sentBytes = 0;
  if (Missing.length > 0) {
    for (const digest of Missing) sentBytes += described.sources.get(digest.slice(7))?.size ?? 0;
    await client.json('POST', '/build/context/upload', {
      body: await uploadTar(Missing, described),
      contentType: 'application/x-tar',
    });
  }
  const files = described.manifest.Entries.filter((e) => e.Type === 'file').length;
  return {
    body,
    contentType: MEDIA_TYPE,
    files,
    sentFiles: Missing.length,
    sentBytes,
    contextBytes: described.bytes,
  };
}
