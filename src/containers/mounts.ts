import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidArgument, NotFound } from '../common/errors.js';
import type { OciMount } from '../runtime/spec.js';
import type { VolumeService } from '../volumes/service.js';
import type { ContainerRecord, CreateBody } from './types.js';

/**
 * A container's mounts: volumes, bind mounts and tmpfs, resolved once at create from
 * `HostConfig.Binds`, `HostConfig.Mounts`, `HostConfig.Tmpfs`, `HostConfig.VolumesFrom` and
 * `Config.Volumes` (the image's VOLUMEs and `-v /path`), and kept on the record in the Engine API's
 * `Mounts` shape. At start they become OCI bind/tmpfs mounts; a volume that is still empty is first
 * filled with what the image has at that path.
 */
export interface MountPoint {
  Type: 'bind' | 'volume' | 'tmpfs';
  Name?: string;
  Source: string;
  Destination: string;
  Driver?: string;
  Mode: string;
  RW: boolean;
  Propagation: string;
  /** Created for this container (`-v /path`, image VOLUME): removed with `rm -v`. */
  anonymous?: boolean;
  /** Volume: do not copy the image's content in (`volume-nocopy`). */
  noCopy?: boolean;
  /** tmpfs: mount options (size=, mode=, …). */
  tmpfsOptions?: string[];
}

/** Where a record keeps its resolved mounts (a field the container part stores with the record). */
export type WithMounts = ContainerRecord & { mounts?: MountPoint[] };

const PROPAGATIONS = ['shared', 'slave', 'private', 'rshared', 'rslave', 'rprivate'];

function cleanDestination(dst: string, what: string): string {
  if (!dst.startsWith('/'))
    throw new InvalidArgument(
      `invalid mount config for type "${what}": invalid mount path: '${dst}' mount path must be absolute`,
    );
  const normalized = path.posix.normalize(dst);
  if (normalized === '/') throw new InvalidArgument(`invalid specification: destination can't be '/'`);
  return normalized.replace(/\/$/, '');
}

/** `-v src:dst[:opts]` → a mount point (volume names are created later). */
export function parseBind(spec: string): MountPoint {
  const parts = spec.split(':');
  if (parts.length < 2 || parts.length > 3 || parts[0] === '' || parts[1] === '')
    throw new InvalidArgument(`invalid volume specification: '${spec}'`);
  const [source, target, opts = ''] = parts;
  const options = opts === '' ? [] : opts.split(',');
  let rw = true;
  let propagation = '';
  let noCopy = false;
  for (const o of options) {
    if (o === 'ro') rw = false;
    else if (o === 'rw') rw = true;
    else if (PROPAGATIONS.includes(o)) propagation = o;
    else if (o === 'nocopy') noCopy = true;
    else if (o !== 'z' && o !== 'Z' && o !== 'consistent' && o !== 'cached' && o !== 'delegated')
      throw new InvalidArgument(`invalid mode: ${o}`);
  }
  const destination = cleanDestination(target, 'bind');
  if (source.startsWith('/')) {
    return {
      Type: 'bind',
      Source: path.posix.normalize(source),
      Destination: destination,
      Mode: opts,
      RW: rw,
      Propagation: propagation || 'rprivate',
    };
  }
  return {
    Type: 'volume',
    Name: source,
    Source: '',
    Destination: destination,
    Driver: 'local',
    Mode: opts === '' ? 'z' : opts,
    RW: rw,
    Propagation: '',
    ...(noCopy ? { noCopy } : {}),
  };
}

interface ApiMount {
  Type?: string;
  Source?: string;
  Target?: string;
  ReadOnly?: boolean;
  BindOptions?: { Propagation?: string; CreateMountpoint?: boolean } | null;
  VolumeOptions?: {
    NoCopy?: boolean;
    Labels?: Record<string, string>;
    DriverConfig?: { Name?: string; Options?: Record<string, string> };
  } | null;
  TmpfsOptions?: { SizeBytes?: number; Mode?: number } | null;
}

function tmpfsOptions(extra: string[]): string[] {
  const base = ['nosuid', 'nodev', 'noexec'];
  const out = [...base];
  for (const o of extra) {
    if (o === '') continue;
    if (o === 'exec') out.splice(out.indexOf('noexec'), 1);
    else if (o === 'suid') out.splice(out.indexOf('nosuid'), 1);
    else if (o === 'dev') out.splice(out.indexOf('nodev'), 1);
    else if (!out.includes(o)) out.push(o);
  }
  return out;
}

/**
 * Resolves a new container's mounts and creates the volumes it names (named ones when missing,
 * anonymous ones always). Later sources win per destination: image VOLUMEs < `--volumes-from` <
 * `-v`/`--mount`/`--tmpfs`.
 */
export function resolveMounts(
  body: CreateBody,
  imageVolumes: Record<string, unknown> | null | undefined,
  volumes: VolumeService,
  findContainer: (ref: string) => WithMounts | null,
): MountPoint[] {
  const host = body.HostConfig ?? {};
  const explicit: MountPoint[] = [];
  for (const spec of host.Binds ?? []) explicit.push(parseBind(spec));
  for (const m of ((host as { Mounts?: ApiMount[] | null }).Mounts ?? []) as ApiMount[]) {
    const type = m.Type ?? 'volume';
    const target = cleanDestination(m.Target ?? '', type);
    if (type === 'bind') {
      const source = m.Source ?? '';
      if (!source.startsWith('/'))
        throw new InvalidArgument(
          `invalid mount config for type "bind": invalid mount path: '${source}' mount path must be absolute`,
        );
      if (!fs.existsSync(source) && !m.BindOptions?.CreateMountpoint)
        throw new InvalidArgument(
          `invalid mount config for type "bind": bind source path does not exist: ${source}`,
        );
      explicit.push({
        Type: 'bind',
        Source: source,
        Destination: target,
        Mode: '',
        RW: !m.ReadOnly,
        Propagation: m.BindOptions?.Propagation || 'rprivate',
      });
    } else if (type === 'volume') {
      explicit.push({
        Type: 'volume',
        Name: m.Source ?? '',
        Source: '',
        Destination: target,
        Driver: m.VolumeOptions?.DriverConfig?.Name || 'local',
        Mode: 'z',
        RW: !m.ReadOnly,
        Propagation: '',
        ...(m.VolumeOptions?.NoCopy ? { noCopy: true } : {}),
        ...(m.Source ? {} : { anonymous: true }),
      });
    } else if (type === 'tmpfs') {
      const extra: string[] = [];
      if (m.TmpfsOptions?.SizeBytes) extra.push(`size=${m.TmpfsOptions.SizeBytes}`);
      if (m.TmpfsOptions?.Mode) extra.push(`mode=${m.TmpfsOptions.Mode.toString(8)}`);
      explicit.push({
        Type: 'tmpfs',
        Source: '',
        Destination: target,
        Mode: '',
        RW: !m.ReadOnly,
        Propagation: '',
        tmpfsOptions: tmpfsOptions(extra),
      });
    } else throw new InvalidArgument(`mount type unknown: "${type}"`);
  }
  for (const [dst, opts] of Object.entries(host.Tmpfs ?? {})) {
    const options = opts === '' ? [] : opts.split(',');
    const ro = options.includes('ro');
    explicit.push({
      Type: 'tmpfs',
      Source: '',
      Destination: cleanDestination(dst, 'tmpfs'),
      Mode: opts,
      RW: !ro,
      Propagation: '',
      tmpfsOptions: tmpfsOptions(options.filter((o) => o !== 'ro' && o !== 'rw')),
    });
  }
  const seen = new Set<string>();
  for (const m of explicit) {
    if (seen.has(m.Destination)) throw new InvalidArgument(`Duplicate mount point: ${m.Destination}`);
    seen.add(m.Destination);
  }
  const byDestination = new Map<string, MountPoint>();
  const anonymousFor = (dst: string): MountPoint => ({
    Type: 'volume',
    Name: '',
    Source: '',
    Destination: dst,
    Driver: 'local',
    Mode: '',
    RW: true,
    Propagation: '',
    anonymous: true,
  });
  for (const dst of Object.keys({ ...(imageVolumes ?? {}), ...(body.Volumes ?? {}) })) {
    const d = cleanDestination(dst, 'volume');
    byDestination.set(d, anonymousFor(d));
  }
  for (const spec of (host as { VolumesFrom?: string[] | null }).VolumesFrom ?? []) {
    const [ref, mode] = spec.split(':');
    const source = findContainer(ref);
    if (!source) throw new NotFound(`No such container: ${ref}`);
    for (const m of source.mounts ?? []) {
      if (m.Type === 'tmpfs') continue;
      const copy: MountPoint = {
        ...m,
        anonymous: false,
        RW: mode === 'ro' ? false : mode === 'rw' ? true : m.RW,
      };
      byDestination.set(m.Destination, copy);
    }
  }
  for (const m of explicit) byDestination.set(m.Destination, m);
  const out = [...byDestination.values()];
  for (const m of out) {
    if (m.Type !== 'volume') continue;
    const existed = m.Name ? volumes.find(m.Name) !== null : false;
    const v = volumes.create({ Name: m.Name || null }, m.anonymous === true);
    if (!existed && m.anonymous && !m.Name) m.anonymous = true;
    m.Name = v.name;
    m.Source = volumes.mountpoint(v.name);
  }
  return out;
}

/** Volumes created for this container alone (removed by `rm -v`). */
export function anonymousVolumes(record: WithMounts): string[] {
  return (record.mounts ?? [])
    .filter((m) => m.Type === 'volume' && m.anonymous && m.Name)
    .map((m) => m.Name as string);
}

/** Sorts mounts so a parent directory is mounted before what is mounted inside it. */
export function sortMounts(mounts: OciMount[]): OciMount[] {
  const depth = (m: OciMount) => m.destination.split('/').filter(Boolean).length;
  return mounts
    .map((m, i) => ({ m, i }))
    .sort((a, b) => depth(a.m) - depth(b.m) || a.i - b.i)
    .map((x) => x.m);
}

/** OCI mounts for a starting container; empty volumes are filled from the image first. */
export function ociMounts(record: WithMounts, rootfs: string, volumes: VolumeService): OciMount[] {
  const out: OciMount[] = [];
  for (const m of record.mounts ?? []) {
    if (m.Type === 'tmpfs') {
      out.push({
        destination: m.Destination,
        type: 'tmpfs',
        source: 'tmpfs',
        options: [...(m.tmpfsOptions ?? []), m.RW ? 'rw' : 'ro'],
      });
      continue;
    }
    let source = m.Source;
    if (m.Type === 'volume' && m.Name) {
      source = volumes.prepareUse(m.Name);
      if (!m.noCopy) copyUpIfEmpty(rootfs, m.Destination, source);
    } else if (m.Type === 'bind' && !fs.existsSync(source)) {
      // `-v /host/path:/ctr` creates a missing host directory, as dockerd does.
      fs.mkdirSync(source, { recursive: true, mode: 0o755 });
    }
    const propagation =
      m.Propagation && PROPAGATIONS.includes(m.Propagation) ? [m.Propagation] : ['rprivate'];
    out.push({
      destination: m.Destination,
      type: 'bind',
      source,
      options: ['rbind', m.RW ? 'rw' : 'ro', ...propagation],
    });
  }
  return out;
}

/** Copies the image's directory at `destination` into an empty volume (owners, modes, links, times). */
export function copyUpIfEmpty(rootfs: string, destination: string, volumeDir: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(volumeDir);
  } catch {
    return;
  }
  if (entries.length > 0) return;
  const from = resolveInRoot(rootfs, destination);
  if (!from) return;
  let st: fs.Stats;
  try {
    st = fs.lstatSync(from);
  } catch {
    return;
  }
  if (!st.isDirectory()) return;
  copyTree(from, volumeDir);
  fs.chownSync(volumeDir, st.uid, st.gid);
  fs.chmodSync(volumeDir, st.mode & 0o7777);
}

/** The host path of `target` inside `rootfs`, following symlinks without leaving the root. */
function resolveInRoot(rootfs: string, target: string): string | null {
  let current = rootfs;
  const parts = target.split('/').filter(Boolean);
  for (let i = 0, hops = 0; i < parts.length; i++) {
    const part = parts[i];
    if (part === '..') {
      current = current === rootfs ? rootfs : path.dirname(current);
      continue;
    }
    const next = path.join(current, part);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(next);
    } catch {
      return null;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return null;
      const link = fs.readlinkSync(next);
      const rest = parts.slice(i + 1);
      const base = link.startsWith('/') ? [] : path.relative(rootfs, current).split('/').filter(Boolean);
      return resolveInRoot(rootfs, `/${[...base, ...link.split('/').filter(Boolean), ...rest].join('/')}`);
    }
    current = next;
  }
  return current;
}

function copyTree(src: string, dst: string): void {
  for (const entry of fs.readdirSync(src)) {
    const from = path.join(src, entry);
    const to = path.join(dst, entry);
    const st = fs.lstatSync(from);
    if (st.isDirectory()) {
      fs.mkdirSync(to, { mode: st.mode & 0o7777 });
      copyTree(from, to);
      fs.chmodSync(to, st.mode & 0o7777);
    } else if (st.isSymbolicLink()) {
      fs.symlinkSync(fs.readlinkSync(from), to);
    } else if (st.isFile()) {
      fs.copyFileSync(from, to);
      fs.chmodSync(to, st.mode & 0o7777);
    } else continue;
    fs.lchownSync(to, st.uid, st.gid);
    if (!st.isSymbolicLink()) fs.utimesSync(to, st.atime, st.mtime);
  }
}
