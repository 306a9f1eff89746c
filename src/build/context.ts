import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { InvalidArgument, StrataError } from '../common/errors.js';
import { decompress, sniffCompression } from '../images/streams.js';
import type { ContextManifest } from './context-manifest.js';
import type { ContextStore } from './context-store.js';
import type { IgnoreMatcher } from './patterns.js';
import { type ContextTarHeader, readContextTar } from './tar-reader.js';

/**
 * The build context as the client sent it: a tar (plain or gzip), or a bare Dockerfile.
 *
 * It is never unpacked into a directory tree. While the tar streams in, every file body is
 * appended to one data file and hashed (sha256 of the content); the tree of entries stays in memory
 * with each file's offset, size, mode and digest. So a rebuild that hits the cache writes one
 * sequential file and no per-file inodes, COPY reads bodies straight from the data file, and the
 * cache key of a COPY is a hash over the entries' names, modes and content digests (never their
 * mtimes or owners).
 *
 * Paths are `/`-separated and relative to the context root (`''` is the root). Tar names that climb
 * out (`../x`) are refused; symlinks are kept as links and only ever followed inside the context.
 */
export type ContextEntryType = 'file' | 'directory' | 'symlink';

export interface ContextEntry {
  name: string;
  path: string;
  type: ContextEntryType;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  size: number;
  linkname: string;
  /** Offset of the body in the data file, or in `source` (files). */
  offset: number;
  /** A file holding the body (the context store's copy), or null for the context's data file. */
  source: string | null;
  /** sha256 hex of the body (files). */
  digest: string;
  children: Map<string, ContextEntry> | null;
}

/** Largest Dockerfile or .dockerignore read into memory. */
export const MAX_SMALL_FILE = 4 * 1024 * 1024;
const WRITE_BATCH = 1 << 20;

/** Tar entry name → cleaned relative path; null for the root itself; throws when it climbs out. */
export function cleanContextPath(name: string): string | null {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (parts.length === 0)
        throw new InvalidArgument(`invalid build context: entry ${JSON.stringify(name)} leaves the context`);
      parts.pop();
    } else parts.push(part);
  }
  return parts.length === 0 ? null : parts.join('/');
}

function newDir(name: string, relPath: string): ContextEntry {
  return {
    name,
    path: relPath,
    type: 'directory',
    mode: 0o755,
    uid: 0,
    gid: 0,
    mtimeNs: 0n,
    size: 0,
    linkname: '',
    offset: 0,
    source: null,
    digest: '',
    children: new Map(),
  };
}

/** A tar header block: its checksum is right (the test dockerd's detection boils down to). */
export function looksLikeTar(head: Buffer): boolean {
  if (head.length < 512) return head.length === 0;
  if (head.subarray(0, 512).every((b) => b === 0)) return true;
  const field = head.toString('latin1', 148, 156).replace(/\0.*$/, '').trim();
  if (!/^[0-7]+$/.test(field)) return false;
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : head[i];
  return sum === Number.parseInt(field, 8);
}

/** Reads at least `n` bytes (or to the end) and returns them with a stream replaying everything. */
export async function peek(source: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const chunks: Buffer[] = [];
  let length = 0;
  let done = false;
  while (length < n) {
    const r = await iterator.next();
    if (r.done) {
      done = true;
      break;
    }
    chunks.push(r.value);
    length += r.value.length;
  }
  const head = Buffer.concat(chunks);
  async function* replay(): AsyncGenerator<Buffer> {
    try {
      if (head.length > 0) yield head;
      if (done) return;
      for (;;) {
        const r = await iterator.next();
        if (r.done) return;
        yield r.value;
      }
    } finally {
      await iterator.return?.();
    }
  }
  return { head, stream: Readable.from(replay(), { objectMode: false }) };
}

export class BuildContext {
  readonly root: ContextEntry = newDir('', '');
  /** Bytes of file content received. */
  bytes = 0;
  private fd: number;
  private offset = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingOffset = 0;
  private openSource: { path: string; fd: number } | null = null;

  private constructor(readonly dataFile: string) {
    this.fd = fs.openSync(dataFile, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  }

  /**
   * Receives a context into `workDir` (which must exist and belong to this build). A body that is
   * not a tar is taken as the Dockerfile itself (`dockerfileName`).
   */
  static async receive(body: Readable, workDir: string, dockerfileName: string): Promise<BuildContext> {
    const context = new BuildContext(path.join(workDir, 'context.data'));
    try {
      const { compression, stream: raw } = await sniffCompression(body);
      const { head, stream } = await peek(decompress(raw, compression), 512);
      if (looksLikeTar(head)) {
        let end: (() => void) | null = null;
        await readContextTar(stream, {
          entry: (header) => {
            const sink = context.add(header);
            end = sink?.end ?? null;
            return sink?.write ?? null;
          },
          end: () => {
            end?.();
            end = null;
          },
        });
      } else {
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > MAX_SMALL_FILE)
            throw new InvalidArgument('build context is neither a tar archive nor a Dockerfile');
          chunks.push(chunk);
        }
        context.addBuffer(dockerfileName, Buffer.concat(chunks));
      }
      context.flush();
      return context;
    } catch (err) {
      context.close();
      if (err instanceof StrataError) throw err;
      throw new InvalidArgument(`invalid build context: ${(err as Error).message}`);
    }
  }

  /**
   * A context described by a manifest (`strata build`'s context sync): the same tree the tar would
   * give, with each file's body read from the context store. Every digest must be there.
   */
  static fromManifest(manifest: ContextManifest, store: ContextStore, workDir: string): BuildContext {
    const context = new BuildContext(path.join(workDir, 'context.data'));
    try {
      const missing: string[] = [];
      for (const e of manifest.Entries) {
        const name = e.Path.slice(e.Path.lastIndexOf('/') + 1);
        const base: ContextEntry = {
          name,
          path: e.Path,
          type: 'file',
          mode: e.Mode,
          uid: 0,
          gid: 0,
          mtimeNs: BigInt(e.Mtime) * 1_000_000_000n,
          size: 0,
          linkname: '',
          offset: 0,
          source: null,
          digest: '',
          children: null,
        };
        if (e.Type === 'dir') context.insert({ ...base, type: 'directory', children: new Map() });
        else if (e.Type === 'symlink') context.insert({ ...base, type: 'symlink', linkname: e.Linkname! });
        else {
          const hex = e.Digest!.slice('sha256:'.length);
          const size = store.sizeOf(hex);
          if (size === null) {
            missing.push(`${e.Digest} (${e.Path})`);
            continue;
          }
          if (size !== e.Size) {
            throw new InvalidArgument(
              `build context: ${JSON.stringify(e.Path)} is ${e.Size} bytes in the manifest but its content ${e.Digest} has ${size}`,
            );
          }
          context.insert({ ...base, size, digest: hex, source: store.pathOf(hex) });
          context.bytes += size;
        }
      }
      if (missing.length > 0) {
        throw new InvalidArgument(
          `build context: ${missing.length} file(s) not in the daemon's context store (upload them first): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
        );
      }
      return context;
    } catch (err) {
      context.close();
      throw err;
    }
  }

  private write(chunk: Buffer): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.offset += chunk.length;
    if (this.pendingBytes >= WRITE_BATCH) this.flush();
  }

  private flush(): void {
    let position = this.pendingOffset;
    let buffers = this.pending;
    while (buffers.length > 0) {
      let written = fs.writevSync(this.fd, buffers, position);
      position += written;
      // A short write: continue with what is left.
      const rest: Buffer[] = [];
      for (const b of buffers) {
        if (written >= b.length) written -= b.length;
        else {
          rest.push(written > 0 ? b.subarray(written) : b);
          written = 0;
        }
      }
      buffers = rest;
    }
    this.pending = [];
    this.pendingBytes = 0;
    this.pendingOffset = this.offset;
  }

  private parentOf(relPath: string): ContextEntry {
    let dir = this.root;
    const parts = relPath.split('/');
    parts.pop();
    let walked = '';
    for (const part of parts) {
      walked = walked === '' ? part : `${walked}/${part}`;
      let child = dir.children!.get(part);
      if (child?.type !== 'directory') {
        child = newDir(part, walked);
        dir.children!.set(part, child);
      }
      dir = child;
    }
    return dir;
  }

  private insert(entry: ContextEntry): void {
    const parent = this.parentOf(entry.path);
    const existing = parent.children!.get(entry.name);
    if (existing?.type === 'directory' && entry.type === 'directory') {
      // Metadata of a directory that already has children (or was implied by one).
      Object.assign(existing, { ...entry, children: existing.children });
      return;
    }
    parent.children!.set(entry.name, entry);
  }

  private add(header: ContextTarHeader): { write: (chunk: Buffer) => void; end: () => void } | null {
    const relPath = cleanContextPath(header.name);
    if (relPath === null) {
      if (header.type === 'directory') {
        this.root.mode = header.mode;
        this.root.mtimeNs = header.mtimeNs;
      }
      return null;
    }
    const base: ContextEntry = {
      name: relPath.slice(relPath.lastIndexOf('/') + 1),
      path: relPath,
      type: 'file',
      mode: header.mode,
      uid: header.uid,
      gid: header.gid,
      mtimeNs: header.mtimeNs,
      size: 0,
      linkname: '',
      offset: 0,
      source: null,
      digest: '',
      children: null,
    };
    switch (header.type) {
      case 'directory':
        this.insert({ ...base, type: 'directory', children: new Map() });
        return null;
      case 'symlink':
        this.insert({ ...base, type: 'symlink', linkname: header.linkname ?? '' });
        return null;
      case 'link': {
        const targetPath = cleanContextPath(header.linkname ?? '');
        const target = targetPath === null ? null : this.lookup(targetPath);
        if (target?.type === 'file') {
          this.insert({
            ...base,
            size: target.size,
            offset: target.offset,
            source: target.source,
            digest: target.digest,
          });
        }
        return null;
      }
      case 'file': {
        const entry: ContextEntry = { ...base, size: header.size, offset: this.offset };
        const hash = createHash('sha256');
        return {
          write: (chunk) => {
            hash.update(chunk);
            this.write(chunk);
            this.bytes += chunk.length;
          },
          end: () => {
            entry.digest = hash.digest('hex');
            this.insert(entry);
          },
        };
      }
      default:
        // Devices, fifos and sockets have no place in an image built from a context.
        return null;
    }
  }

  private addBuffer(relPath: string, data: Buffer): void {
    const cleaned = cleanContextPath(relPath) ?? 'Dockerfile';
    const entry: ContextEntry = {
      name: cleaned.slice(cleaned.lastIndexOf('/') + 1),
      path: cleaned,
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      mtimeNs: 0n,
      size: data.length,
      linkname: '',
      offset: this.offset,
      source: null,
      digest: createHash('sha256').update(data).digest('hex'),
      children: null,
    };
    this.write(data);
    this.bytes += data.length;
    this.insert(entry);
  }

  /** The entry at `relPath` without following symlinks, or null. */
  lookup(relPath: string): ContextEntry | null {
    let entry: ContextEntry | undefined = this.root;
    for (const part of relPath.split('/')) {
      if (part === '' || part === '.') continue;
      if (!entry?.children) return null;
      entry = entry.children.get(part);
    }
    return entry ?? null;
  }

  /**
   * Resolves `relPath` inside the context, following symlinks (the last one too, unless
   * `followFinal` is false) as if the context root were `/`: `..` and absolute link targets never
   * leave it. Returns the entry and its symlink-free path, or null when nothing is there.
   */
  resolve(relPath: string, followFinal = true): { entry: ContextEntry; path: string } | null {
    const pending = relPath.split('/').reverse();
    const stack: ContextEntry[] = [this.root];
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length > 1) stack.pop();
        continue;
      }
      const dir = stack[stack.length - 1];
      if (dir.type !== 'directory') return null;
      const child = dir.children!.get(part);
      if (!child) return null;
      if (child.type === 'symlink' && (followFinal || pending.length > 0)) {
        if (++hops > 255) throw new InvalidArgument(`too many levels of symbolic links: ${relPath}`);
        if (child.linkname.startsWith('/')) stack.length = 1;
        pending.push(...child.linkname.split('/').reverse());
        continue;
      }
      stack.push(child);
    }
    const entry = stack[stack.length - 1];
    return { entry, path: entry.path };
  }

  /** A small file's content (Dockerfile, .dockerignore), symlinks followed inside the context. */
  readSmallFile(relPath: string): Buffer | null {
    const found = this.resolve(relPath);
    if (found?.entry.type !== 'file') return null;
    if (found.entry.size > MAX_SMALL_FILE) {
      throw new InvalidArgument(`${relPath} is larger than ${MAX_SMALL_FILE} bytes`);
    }
    const buf = Buffer.alloc(found.entry.size);
    this.read(found.entry, buf, 0);
    return buf;
  }

  /** Fills `buf` from the entry's body starting at `position`; returns the bytes read. */
  read(entry: ContextEntry, buf: Buffer, position: number): number {
    const length = Math.min(buf.length, entry.size - position);
    const fd = entry.source === null ? this.fd : this.sourceFd(entry.source);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, buf, done, length - done, entry.offset + position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  /** The open store file of the entry read last (files are read in chunks, one after another). */
  private sourceFd(source: string): number {
    if (this.openSource?.path !== source) {
      this.closeSource();
      this.openSource = { path: source, fd: fs.openSync(source, 'r') };
    }
    return this.openSource.fd;
  }

  private closeSource(): void {
    if (this.openSource) fs.closeSync(this.openSource.fd);
    this.openSource = null;
  }

  /** The body of a file entry as a stream (ADD of an archive). */
  openStream(entry: ContextEntry): Readable {
    if (entry.size === 0) return Readable.from([]);
    return fs.createReadStream(entry.source ?? this.dataFile, {
      start: entry.offset,
      end: entry.offset + entry.size - 1,
    });
  }

  /** Children of a directory, sorted by name (bytewise), as the walk order of a layer. */
  childrenOf(entry: ContextEntry): ContextEntry[] {
    if (!entry.children) return [];
    return [...entry.children.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Every entry below `entry` (not itself), parents before children. */
  *walk(entry: ContextEntry = this.root): Generator<ContextEntry> {
    for (const child of this.childrenOf(entry)) {
      yield child;
      if (child.type === 'directory') yield* this.walk(child);
    }
  }

  /**
   * Drops what `.dockerignore` excludes. A directory stays when something below it is re-included
   * (`!pattern`).
   */
  exclude(matcher: IgnoreMatcher): void {
    if (matcher.isEmpty) return;
    const prune = (dir: ContextEntry): boolean => {
      let keptAny = false;
      for (const [name, child] of [...dir.children!]) {
        const excluded = matcher.matches(child.path);
        const keptBelow = child.type === 'directory' ? prune(child) : false;
        if (excluded && !keptBelow) dir.children!.delete(name);
        else keptAny = true;
      }
      return keptAny;
    };
    prune(this.root);
  }

  close(): void {
    this.closeSource();
    if (this.fd >= 0) {
      try {
        fs.closeSync(this.fd);
      } catch {
        // already closed
      }
      this.fd = -1;
    }
    fs.rmSync(this.dataFile, { force: true });
  }
}
