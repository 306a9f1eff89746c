import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { type EngineClient, escapePath } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { ApiError, CliError } from '../errors.js';
import { humanSize } from '../format.js';
import { isTerminal } from '../terminal.js';

/**
 * `strata cp`: tar archives over `GET`/`HEAD`/`PUT /containers/{id}/archive`, with docker's path
 * rules — copying into an existing directory puts the source inside it, copying to a new name
 * renames the top entry, `SRC/.` copies a directory's contents, `-` streams a raw tar.
 *
 * Extraction on the local side never writes outside the destination: entry names are
 * normalised, `..` is refused, and no file is written through a symlink (including symlinks the
 * archive itself created).
 */

export interface CpLocation {
  container?: string;
  path: string;
}

/** docker's rule: an absolute or `.`-relative path is local even if it contains a colon. */
export function splitCpArg(arg: string): CpLocation {
  if (arg === '-' || arg.startsWith('/') || arg.startsWith('.')) return { path: arg };
  const colon = arg.indexOf(':');
  if (colon > 0) return { container: arg.slice(0, colon), path: arg.slice(colon + 1) };
  return { path: arg };
}

interface PathStat {
  name: string;
  size: number;
  mode: number;
  mtime: string;
  linkTarget: string;
}

/** Go os.FileMode type bits as dockerd encodes them in X-Docker-Container-Path-Stat. */
const GO_MODE_DIR = 2 ** 31;

function isGoDir(mode: number): boolean {
  return Math.floor(mode / GO_MODE_DIR) % 2 === 1;
}

function decodeStat(header: string | string[] | undefined): PathStat | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  try {
    return JSON.parse(Buffer.from(value, 'base64').toString('utf8')) as PathStat;
  } catch {
    return undefined;
  }
}

async function statContainerPath(
  client: EngineClient,
  container: string,
  p: string,
): Promise<PathStat | undefined> {
  try {
    const res = await client.request('HEAD', `/containers/${escapePath(container)}/archive`, {
      query: { path: p },
    });
    res.resume();
    return decodeStat(res.headers['x-docker-container-path-stat']);
  } catch (err) {
    // HEAD answers carry no body, so a missing path and a missing container look alike here;
    // the following PUT reports a missing container properly.
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
}

export const cpCommand: CommandHandler = async (ctx) => {
  const [src, dst] = ctx.args.map(splitCpArg);
  if (src.container && dst.container) throw new CliError('copying between containers is not supported');
  if (!src.container && !dst.container) throw new CliError('must specify at least one container source');
  const remote = src.container ? src : dst;
  if (!remote.path) throw new CliError('filepath can not be empty');
  const client = await ctx.client();
  const opts = { archive: ctx.flags.bool('archive'), followLink: ctx.flags.bool('follow-link') };
  const copied = src.container
    ? await copyFromContainer(client, src.container, src.path, dst.path, opts)
    : await copyToContainer(client, src.path, dst.container!, dst.path, opts);
  if (!ctx.flags.bool('quiet') && isTerminal(process.stderr) && copied !== undefined) {
    process.stderr.write(`Successfully copied ${humanSize(copied)} to ${ctx.args[1]}\n`);
  }
  return 0;
};

interface CopyOptions {
  archive: boolean;
  followLink: boolean;
}

/** What to do with the archive's top-level entry when extracting or packing. */
type TopRename =
  | { kind: 'keep' }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'contents'; from: string }
  | { kind: 'prefix'; to: string };

function endsWithDot(p: string): boolean {
  return p === '.' || p.endsWith('/.');
}

async function copyFromContainer(
  client: EngineClient,
  container: string,
  srcPath: string,
  dest: string,
  opts: CopyOptions,
): Promise<number | undefined> {
  let requestPath = srcPath;
  if (opts.followLink) {
    const stat = await statContainerPath(client, container, srcPath);
    if (stat?.linkTarget) requestPath = path.posix.resolve(path.posix.dirname(srcPath), stat.linkTarget);
  }
  const res = await client.request('GET', `/containers/${escapePath(container)}/archive`, {
    query: { path: requestPath },
  });
  if (dest === '-') {
    await pipeline(res, process.stdout, { end: false });
    return undefined;
  }
  const stat = decodeStat(res.headers['x-docker-container-path-stat']);
  const srcIsDir = stat ? isGoDir(stat.mode) : false;
  const topName = stat?.name ?? path.posix.basename(requestPath);
  // With -L the archive holds the link target's name; the copy keeps the name the user gave.
  const wantedName = path.posix.basename(srcPath.replace(/\/+$/, '')) || topName;
  const destStat = await fsp.stat(dest).catch(() => undefined);
  let root: string;
  let rename: TopRename;
  // For `DIR/.` dockerd names the entries `./…`: the archive already holds just the contents.
  const topIsDot = topName === '.';
  if (destStat?.isDirectory()) {
    root = dest;
    if (topIsDot) rename = { kind: 'keep' };
    else if (endsWithDot(srcPath) && srcIsDir) rename = { kind: 'contents', from: topName };
    else rename = { kind: 'rename', from: topName, to: wantedName };
  } else if (destStat) {
    if (srcIsDir) throw new CliError(`cannot overwrite non-directory "${dest}" with directory "${srcPath}"`);
    root = path.dirname(dest);
    rename = { kind: 'rename', from: topName, to: path.basename(dest) };
  } else {
    if (/[/]$/.test(dest) && !srcIsDir) throw new CliError(`destination directory "${dest}" does not exist`);
    const parent = path.dirname(path.resolve(dest));
    const parentStat = await fsp.stat(parent).catch(() => undefined);
    if (!parentStat?.isDirectory()) throw new CliError(`no such directory: ${parent}`);
    root = parent;
    const newName = path.basename(path.resolve(dest));
    rename = topIsDot ? { kind: 'prefix', to: newName } : { kind: 'rename', from: topName, to: newName };
  }
  return extractArchive(res, root, rename, opts.archive);
}

/** Normalises an archive entry name to safe relative components; undefined for unsafe names. */
export function safeEntryPath(name: string): string[] | undefined {
  const parts: string[] = [];
  for (const part of name.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') return undefined;
    parts.push(part);
  }
  return parts;
}

function applyRename(parts: string[], rename: TopRename): string[] {
  if (rename.kind === 'keep') return parts;
  if (rename.kind === 'prefix') return [rename.to, ...parts];
  if (parts[0] !== rename.from) return parts;
  if (rename.kind === 'rename') return [rename.to, ...parts.slice(1)];
  return parts.slice(1);
}

/** Refuses to go through a symlink on the way from `root` to the entry's parent directory. */
async function assertNoSymlinkParents(root: string, parts: string[]): Promise<void> {
  let current = root;
  for (const part of parts.slice(0, -1)) {
    current = path.join(current, part);
    const st = await fsp.lstat(current).catch(() => undefined);
    if (st?.isSymbolicLink()) throw new CliError(`refusing to extract through symlink ${current}`);
  }
}

/** Extracts a tar stream under `root`; returns the number of file bytes written. */
export async function extractArchive(
  source: Readable,
  root: string,
  rename: TopRename,
  preserveOwner: boolean,
): Promise<number> {
  const extract = tar.extract();
  const feeding = pipeline(source, extract);
  feeding.catch(() => {});
  let bytes = 0;
  const dirTimes: [string, Date][] = [];
  try {
    for await (const entry of extract) {
      const header = entry.header;
      const safe = safeEntryPath(header.name);
      const parts = safe && applyRename(safe, rename);
      if (!parts) throw new CliError(`refusing to extract unsafe path "${header.name}"`);
      if (parts.length === 0) {
        entry.resume();
        continue;
      }
      const target = path.join(root, ...parts);
      await assertNoSymlinkParents(root, parts);
      const existing = await fsp.lstat(target).catch(() => undefined);
      const mode = (header.mode ?? 0o644) & 0o7777;
      switch (header.type) {
        case 'directory':
          if (existing && !existing.isDirectory())
            throw new CliError(`cannot overwrite non-directory "${target}" with directory`);
          await fsp.mkdir(target, { recursive: true });
          await fsp.chmod(target, mode);
          if (header.mtime) dirTimes.push([target, header.mtime]);
          entry.resume();
          break;
        case 'file':
        case 'contiguous-file':
          if (existing?.isDirectory())
            throw new CliError(`cannot overwrite directory "${target}" with non-directory`);
          // Never write through a symlink that is already there.
          if (existing?.isSymbolicLink()) await fsp.unlink(target);
          await pipeline(entry, fs.createWriteStream(target, { mode }));
          await fsp.chmod(target, mode);
          bytes += header.size ?? 0;
          break;
        case 'symlink':
          if (existing && !existing.isDirectory()) await fsp.unlink(target);
          await fsp.symlink(header.linkname ?? '', target);
          entry.resume();
          break;
        case 'link': {
          const linkParts = safeEntryPath(header.linkname ?? '');
          const renamed = linkParts && applyRename(linkParts, rename);
          if (!renamed || renamed.length === 0)
            throw new CliError(`refusing hard link to "${header.linkname}"`);
          await assertNoSymlinkParents(root, renamed);
          if (existing && !existing.isDirectory()) await fsp.unlink(target);
          await fsp.link(path.join(root, ...renamed), target);
          entry.resume();
          break;
        }
        default:
          // Devices and fifos are not recreated on the client side.
          entry.resume();
          continue;
      }
      if (preserveOwner && header.uid !== undefined && header.gid !== undefined) {
        await fsp.lchown(target, header.uid, header.gid).catch(() => {});
      }
      if (header.mtime && header.type !== 'directory' && header.type !== 'symlink') {
        await fsp.utimes(target, header.mtime, header.mtime).catch(() => {});
      }
    }
  } catch (err) {
    extract.destroy();
    throw err;
  }
  await feeding;
  // Directory times last: writing into a directory changes its mtime.
  for (const [dir, mtime] of dirTimes.reverse()) await fsp.utimes(dir, mtime, mtime).catch(() => {});
  return bytes;
}

async function copyToContainer(
  client: EngineClient,
  src: string,
  container: string,
  destPath: string,
  opts: CopyOptions,
): Promise<number | undefined> {
  const put = (body: Readable, putPath: string): Promise<number> =>
    client.call('PUT', `/containers/${escapePath(container)}/archive`, {
      query: { copyUIDGID: opts.archive, noOverwriteDirNonDir: 'true', path: putPath },
      body,
      contentType: 'text/plain',
    });
  if (src === '-') {
    await put(process.stdin, destPath);
    return undefined;
  }
  const localStat = await (opts.followLink ? fsp.stat(src) : fsp.lstat(src)).catch(() => undefined);
  if (!localStat) throw new CliError(`lstat ${path.resolve(src)}: no such file or directory`);
  const srcIsDir = localStat.isDirectory();
  const destStat = await statContainerPath(client, container, destPath);
  const baseName = path.basename(path.resolve(src));
  let putPath: string;
  let topName: string;
  if (destStat && isGoDir(destStat.mode)) {
    putPath = destPath;
    topName = endsWithDot(src) && srcIsDir ? '' : baseName;
  } else if (destStat) {
    if (srcIsDir) throw new CliError(`cannot overwrite non-directory "${destPath}" with directory "${src}"`);
    putPath = path.posix.dirname(destPath);
    topName = path.posix.basename(destPath);
  } else {
    if (destPath.endsWith('/') && !srcIsDir) {
      throw new CliError(`destination "${container}:${destPath}" must be a directory`);
    }
    const trimmed = destPath.replace(/\/+$/, '') || '/';
    putPath = path.posix.dirname(trimmed);
    topName = path.posix.basename(trimmed);
  }
  const counter = { bytes: 0 };
  const pack = packPath(src, topName, opts.followLink, counter);
  await put(Readable.from(pack), putPath);
  return counter.bytes;
}

/** Streams `src` as a tar whose top entry is `topName` ('' = the directory's contents at the top). */
export function packPath(
  src: string,
  topName: string,
  followTopLink: boolean,
  counter = { bytes: 0 },
): tar.Pack {
  const pack = tar.pack();
  const add = async (abs: string, name: string, isTop: boolean): Promise<void> => {
    const st = isTop && followTopLink ? await fsp.stat(abs) : await fsp.lstat(abs);
    const base = { mode: st.mode & 0o7777, mtime: st.mtime, uid: st.uid, gid: st.gid };
    if (st.isDirectory()) {
      if (name) await addEntry({ ...base, name: `${name}/`, type: 'directory' });
      for (const child of (await fsp.readdir(abs)).sort()) {
        await add(path.join(abs, child), name ? `${name}/${child}` : child, false);
      }
    } else if (st.isSymbolicLink()) {
      await addEntry({ ...base, name, type: 'symlink', linkname: await fsp.readlink(abs) });
    } else if (st.isFile()) {
      const entry = pack.entry({ ...base, name, type: 'file', size: st.size });
      await pipeline(fs.createReadStream(abs), entry);
      counter.bytes += st.size;
    }
  };
  const addEntry = (header: tar.Header | (Partial<tar.Header> & { name: string })): Promise<void> =>
    new Promise((resolve, reject) => {
      pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  add(src, topName, true).then(
    () => pack.finalize(),
    (err: Error) => pack.destroy(err),
  );
  return pack;
}
