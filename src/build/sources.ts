import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as posixPath from 'node:path/posix';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { decompress, sniffCompression } from '../images/streams.js';
import { type BuildContext, type ContextEntry, looksLikeTar, peek } from './context.js';
import { type CopySource, contextSource, fileSystemSource } from './copy.js';
import { goPatternRegex, hasWildcards } from './patterns.js';

/**
 * COPY/ADD sources: from the build context (wildcards, symlinks followed inside it), from another
 * stage's root, from a URL (ADD). Each resolves to what to write and a hash for the cache key:
 * names, types, modes, link targets and content digests — never mtimes or owners — so touching a
 * file keeps the cache and editing it does not.
 */
export class SourceError extends Error {}

export interface ResolvedSource {
  source: CopySource;
  /** ADD of a local tar (plain or gzip): extracted into the destination instead of copied. */
  archive: (() => Promise<Readable>) | null;
  /** For the cache key and the history (`file:<hash>`). */
  hash: string;
}

/** A source path as given, checked and made relative to the context root. */
export function cleanSourcePath(raw: string, instruction: string): string {
  const normalized = posixPath.normalize(raw.replace(/^\/+/, ''));
  if (normalized === '..' || normalized.startsWith('../')) {
    throw new SourceError(`${instruction} failed: forbidden path outside the build context: ${raw} ()`);
  }
  return normalized === '.' ? '' : normalized.replace(/\/+$/, '');
}

function hashEntries(
  entries: Iterable<[string, { type: string; mode: number; linkname: string; digest: string }]>,
): string {
  const hash = createHash('sha256');
  for (const [rel, e] of entries) {
    hash.update(`${rel}\0${e.type}\0${e.mode.toString(8)}\0${e.linkname}\0${e.digest}\n`);
  }
  return hash.digest('hex');
}

export function hashContextEntry(context: BuildContext, entry: ContextEntry): string {
  if (entry.type !== 'directory') return hashEntries([['', entry]]);
  const prefix = entry.path === '' ? 0 : entry.path.length + 1;
  return hashEntries(
    (function* () {
      for (const e of context.walk(entry)) yield [e.path.slice(prefix), e] as [string, ContextEntry];
    })(),
  );
}

/** Reads the first bytes of a source to tell a tar (plain or gzip) from any other file. */
export async function isTarArchive(open: () => Readable): Promise<boolean> {
  const source = open();
  try {
    const { compression, stream } = await sniffCompression(source);
    if (compression !== 'none' && compression !== 'gzip') {
      stream.destroy();
      return false;
    }
    const { head, stream: rest } = await peek(decompress(stream, compression), 512);
    rest.on('error', () => {});
    rest.destroy();
    return head.length >= 512 && looksLikeTar(head);
  } catch {
    return false;
  } finally {
    source.destroy();
  }
}

/** The plain tar of an archive source (gzip decompressed). */
async function openArchive(source: Readable): Promise<Readable> {
  const { compression, stream } = await sniffCompression(source);
  return decompress(stream, compression);
}

function notFound(instruction: string, raw: string, rel: string): SourceError {
  return new SourceError(
    `${instruction} failed: file not found in build context or excluded by .dockerignore: stat ${rel || raw}: file does not exist`,
  );
}

/** Context sources for COPY/ADD (wildcards expanded, in walk order). */
export async function resolveContextSources(
  context: BuildContext,
  rawSources: readonly string[],
  instruction: 'COPY' | 'ADD',
): Promise<ResolvedSource[]> {
  const out: ResolvedSource[] = [];
  for (const raw of rawSources) {
    const rel = cleanSourcePath(raw, instruction);
    const entries: ContextEntry[] = [];
    if (hasWildcards(rel)) {
      let regex: RegExp;
      try {
        regex = goPatternRegex(rel);
      } catch (err) {
        throw new SourceError(`${instruction} failed: ${(err as Error).message}`);
      }
      let skipBelow: string | null = null;
      for (const entry of context.walk()) {
        if (skipBelow !== null && entry.path.startsWith(skipBelow)) continue;
        skipBelow = null;
        if (!regex.test(entry.path)) continue;
        const resolved = context.resolve(entry.path);
        if (resolved) entries.push(resolved.entry);
        if (entry.type === 'directory') skipBelow = `${entry.path}/`;
      }
    } else {
      const resolved = context.resolve(rel);
      if (!resolved) throw notFound(instruction, raw, rel);
      entries.push(resolved.entry);
    }
    for (const entry of entries) {
      const name = entry.path === '' ? '' : entry.name;
      const source = contextSource(context, entry, name);
      const archive =
        instruction === 'ADD' &&
        entry.type === 'file' &&
        (await isTarArchive(() => context.openStream(entry)))
          ? () => openArchive(context.openStream(entry))
          : null;
      out.push({ source, archive, hash: hashContextEntry(context, entry) });
    }
  }
  return out;
}

/** Sources from another stage's (or image's) root, mounted at `rootDir`. */
export function resolveRootSources(
  rootDir: string,
  resolveInRoot: (containerPath: string) => string,
  rawSources: readonly string[],
  instruction: 'COPY' | 'ADD',
): ResolvedSource[] {
  const out: ResolvedSource[] = [];
  for (const raw of rawSources) {
    const abs = posixPath.resolve('/', raw);
    const matches: string[] = [];
    if (hasWildcards(abs)) {
      const regex = goPatternRegex(abs.slice(1));
      // Walk from the deepest directory without wildcards.
      const parts = abs.slice(1).split('/');
      const fixed: string[] = [];
      for (const part of parts) {
        if (hasWildcards(part)) break;
        fixed.push(part);
      }
      const start = resolveInRoot(`/${fixed.join('/')}`);
      const walk = (containerPath: string, depth: number): void => {
        if (depth > parts.length) return;
        let names: string[];
        try {
          names = fs.readdirSync(path.join(rootDir, containerPath)).sort();
        } catch {
          return;
        }
        for (const name of names) {
          const child = containerPath === '/' ? `/${name}` : `${containerPath}/${name}`;
          if (regex.test(child.slice(1))) matches.push(child);
          else if (fs.lstatSync(path.join(rootDir, child)).isDirectory()) walk(child, depth + 1);
        }
      };
      walk(start, fixed.length + 1);
    } else matches.push(abs);
    if (matches.length === 0 && !hasWildcards(abs)) throw notFound(instruction, raw, abs);
    for (const match of matches) {
      const resolved = resolveInRoot(match);
      const source = fileSystemSource(
        path.join(rootDir, resolved),
        resolved === '/' ? '' : posixPath.basename(match),
      );
      if (!source) throw notFound(instruction, raw, match);
      out.push({ source, archive: null, hash: '' });
    }
  }
  return out;
}

/** Downloads an ADD URL into `workDir`; the file is the source (mode 0600, like dockerd). */
export async function downloadSource(
  url: string,
  workDir: string,
  signal: AbortSignal,
  checksum: string | null,
): Promise<ResolvedSource & { file: string }> {
  let response: Response;
  try {
    response = await fetch(url, { signal, redirect: 'follow' });
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message ?? (err as Error).message;
    throw new SourceError(`ADD failed: failed to GET ${url}: ${cause}`);
  }
  if (!response.ok || response.body === null) {
    throw new SourceError(
      `ADD failed: failed to GET ${url} with status ${response.status}: ${response.statusText}`,
    );
  }
  const file = fs.mkdtempSync(path.join(workDir, 'download-'));
  const target = path.join(file, 'data');
  const hash = createHash('sha256');
  const body = Readable.fromWeb(response.body as import('node:stream/web').ReadableStream<Uint8Array>);
  body.on('data', (chunk: Buffer) => hash.update(chunk));
  await pipeline(body, fs.createWriteStream(target, { mode: 0o600 }));
  const digest = hash.digest('hex');
  if (checksum !== null && checksum !== `sha256:${digest}`) {
    throw new SourceError(
      `ADD failed: checksum mismatch for ${url}: expected ${checksum}, got sha256:${digest}`,
    );
  }
  fs.chmodSync(target, 0o600);
  const lastModified = Date.parse(response.headers.get('last-modified') ?? '');
  if (!Number.isNaN(lastModified)) fs.utimesSync(target, lastModified / 1000, lastModified / 1000);
  let name = posixPath.basename(new URL(url).pathname);
  if (name === '' || name === '/') name = '__unnamed__';
  const source = fileSystemSource(target, name)!;
  return {
    source,
    archive: null,
    hash: hashEntries([['', { type: 'file', mode: 0o600, linkname: '', digest }]]),
    file,
  };
}
