import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { InvalidArgument } from '../common/errors.js';
import type { CgroupCapabilities } from './cgroup-host.js';
import { checkResources, deviceNumbers, ociResources } from './resources.js';
import { containerSeccomp, type SeccompProfile, seccompChoice } from './seccomp.js';
import { ALL_CAPABILITIES, MASKED_PATHS, type OciMount, type OciSpec, READONLY_PATHS } from './spec.js';
import type { UsernsRemap } from './userns.js';

/**
 * The security and resource part of a container's OCI spec, applied on top of `buildSpec`'s base
 * (which already has Docker's capability set, masked paths, device allowlist and rlimits):
 *
 *  - seccomp (Docker's default profile, a custom one, or none), no-new-privileges, `systempaths`;
 *  - devices: `--device` nodes and their cgroup rules, `--device-cgroup-rule`, every host device
 *    for `--privileged`;
 *  - namespace modes: `--pid`, `--ipc`, `--uts` (host or another container), `--cgroupns`;
 *  - the daemon's user-namespace remapping (`--userns-remap`) unless `--userns=host`;
 *  - cgroup resources (resources.ts).
 *
 * `checkCreate` validates the same HostConfig fields when the container is created, so mistakes are
 * reported by `docker run`/`create` (400 → exit 125) instead of at start.
 */
export interface SecurityContext {
  caps: CgroupCapabilities;
  /** null when seccomp filtering is disabled daemon-wide (`--seccomp-profile unconfined`). */
  seccompProfile: SeccompProfile | null;
  userns: UsernsRemap | null;
  /** pid of a running container (for `--pid container:<name>`), or null when it is not running. */
  containerPid(ref: string): number | null;
}

const deviceSchema = z
  .object({
    PathOnHost: z.string(),
    PathInContainer: z.string().nullish(),
    CgroupPermissions: z.string().nullish(),
  })
  .loose();

const securityFieldsSchema = z
  .object({
    Privileged: z.boolean().nullish(),
    SecurityOpt: z.array(z.string()).nullish(),
    Devices: z.array(deviceSchema).nullish(),
    DeviceCgroupRules: z.array(z.string()).nullish(),
    PidMode: z.string().nullish(),
    IpcMode: z.string().nullish(),
    UTSMode: z.string().nullish(),
    UsernsMode: z.string().nullish(),
    CgroupnsMode: z.string().nullish(),
    NetworkMode: z.string().nullish(),
    MaskedPaths: z.array(z.string()).nullish(),
    ReadonlyPaths: z.array(z.string()).nullish(),
  })
  .loose();

type SecurityFields = z.infer<typeof securityFieldsSchema>;

function parseSecurityFields(host: Record<string, unknown>): SecurityFields {
  const parsed = securityFieldsSchema.safeParse(host);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidArgument(
      `invalid HostConfig.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

const SECURITY_OPT_KEYS = ['seccomp', 'no-new-privileges', 'apparmor', 'label', 'systempaths'];

/** `no-new-privileges`, `no-new-privileges:true`, `=false`, … → the last one given. */
export function noNewPrivileges(securityOpt: readonly string[]): boolean {
  let value = false;
  for (const opt of securityOpt) {
    const m = /^no-new-privileges(?:[:=](.*))?$/.exec(opt);
    if (!m) continue;
    const v = (m[1] ?? 'true').toLowerCase();
    if (v !== 'true' && v !== 'false')
      throw new InvalidArgument(`invalid --security-opt: ${JSON.stringify(opt)}`);
    value = v === 'true';
  }
  return value;
}

function checkSecurityOpts(opts: readonly string[]): void {
  opts.forEach((opt, i) => {
    const key = /^([a-z-]+)(?:[=:]|$)/.exec(opt)?.[1];
    if (!key || !SECURITY_OPT_KEYS.includes(key))
      throw new InvalidArgument(`invalid --security-opt ${i + 1}: ${JSON.stringify(opt)}`);
    if (key === 'systempaths' && !/^systempaths[=:]unconfined$/.test(opt))
      throw new InvalidArgument(
        `invalid --security-opt: ${JSON.stringify(opt)}, only systempaths=unconfined is supported`,
      );
  });
  noNewPrivileges(opts);
  seccompChoice(opts);
}

function checkNamespaceMode(kind: string, mode: string | null | undefined, allowed: string[]): void {
  if (!mode) return;
  if (allowed.includes(mode) || (mode.startsWith('container:') && mode.length > 'container:'.length)) return;
  throw new InvalidArgument(`invalid ${kind} mode: ${mode}`);
}

/** Create-time validation and normalisation of a HostConfig (in place); returns warnings. */
export function checkCreate(
  host: Record<string, unknown>,
  ctx: Pick<SecurityContext, 'caps' | 'userns'>,
): string[] {
  const warnings = checkResources(host, ctx.caps);
  const s = parseSecurityFields(host);
  checkSecurityOpts(s.SecurityOpt ?? []);
  for (const d of s.Devices ?? []) parseDevice(d);
  for (const rule of s.DeviceCgroupRules ?? []) parseDeviceCgroupRule(rule);
  checkNamespaceMode('PID', s.PidMode, ['', 'host']);
  checkNamespaceMode('IPC', s.IpcMode, ['', 'host', 'private', 'shareable', 'none']);
  checkNamespaceMode('UTS', s.UTSMode, ['', 'host']);
  if (s.UsernsMode && s.UsernsMode !== 'host')
    throw new InvalidArgument(`invalid USER mode: ${s.UsernsMode}`);
  if (s.CgroupnsMode && !['host', 'private'].includes(s.CgroupnsMode))
    throw new InvalidArgument(`invalid cgroup namespace mode: ${s.CgroupnsMode}`);
  // dockerd records the paths it masks at create, so inspect shows them.
  const unconfinedPaths =
    s.Privileged || (s.SecurityOpt ?? []).some((o) => /^systempaths[=:]unconfined$/.test(o));
  if (!Array.isArray(host.MaskedPaths)) host.MaskedPaths = unconfinedPaths ? [] : [...MASKED_PATHS];
  if (!Array.isArray(host.ReadonlyPaths)) host.ReadonlyPaths = unconfinedPaths ? [] : [...READONLY_PATHS];
  if (ctx.userns && s.Privileged && s.UsernsMode !== 'host')
    throw new InvalidArgument(
      'privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode',
    );
  return warnings;
}

interface DeviceNode {
  path: string;
  type: 'c' | 'b';
  major: number;
  minor: number;
  fileMode: number;
  uid: number;
  gid: number;
}

/** A `--device` entry → the device nodes to create (a directory gives every device below it). */
function parseDevice(d: z.infer<typeof deviceSchema>): { nodes: DeviceNode[]; access: string } {
  const access = d.CgroupPermissions || 'rwm';
  if (!/^[rwm]{1,3}$/.test(access)) throw new InvalidArgument(`invalid device cgroup permissions: ${access}`);
  const target = d.PathInContainer || d.PathOnHost;
  if (!path.isAbsolute(d.PathOnHost) || !path.isAbsolute(target))
    throw new InvalidArgument(`invalid device path: ${d.PathOnHost}:${target}`);
  let st: fs.Stats;
  try {
    st = fs.statSync(d.PathOnHost);
  } catch {
    throw new InvalidArgument(
      `error gathering device information while adding custom device "${d.PathOnHost}": no such file or directory`,
    );
  }
  if (st.isDirectory()) {
    const nodes = hostDevices(d.PathOnHost).map((n) => ({
      ...n,
      path: path.join(target, path.relative(d.PathOnHost, n.path)),
    }));
    return { nodes, access };
  }
  const node = deviceNode(d.PathOnHost, st);
  if (!node)
    throw new InvalidArgument(
      `error gathering device information while adding custom device "${d.PathOnHost}": not a device node`,
    );
  return { nodes: [{ ...node, path: target }], access };
}

function deviceNode(file: string, st: fs.Stats): DeviceNode | null {
  if (!st.isCharacterDevice() && !st.isBlockDevice()) return null;
  return {
    path: file,
    type: st.isCharacterDevice() ? 'c' : 'b',
    ...deviceNumbers(st.rdev),
    fileMode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
  };
}

/** Every device node under `dir` (what `--privileged` gets), skipping the container's own mounts. */
export function hostDevices(dir = '/dev'): DeviceNode[] {
  const out: DeviceNode[] = [];
  const walk = (d: string, depth: number) => {
    if (depth > 8) return;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (['/dev/pts', '/dev/shm', '/dev/mqueue', '/dev/.lxc', '/dev/.udev'].includes(p)) continue;
        walk(p, depth + 1);
      } else if (e.isCharacterDevice() || e.isBlockDevice()) {
        if (p === '/dev/console' || p === '/dev/ptmx') continue;
        try {
          const node = deviceNode(p, fs.statSync(p));
          if (node) out.push(node);
        } catch {
          // vanished
        }
      }
    }
  };
  walk(dir, 0);
  return out;
}

/** `c 1:3 mr`, `b *:* rwm` → an OCI device cgroup rule. */
function parseDeviceCgroupRule(rule: string): {
  allow: true;
  type: string;
  major?: number;
  minor?: number;
  access: string;
} {
  const m = /^([abc]) (\d+|\*):(\d+|\*) ([rwm]{1,3})$/.exec(rule.trim());
  if (!m) throw new InvalidArgument(`invalid device cgroup rule format: '${rule}'`);
  return {
    allow: true,
    type: m[1],
    ...(m[2] === '*' ? {} : { major: Number(m[2]) }),
    ...(m[3] === '*' ? {} : { minor: Number(m[3]) }),
    access: m[4],
  };
}

function namespacePath(kind: string, mode: string, ctx: SecurityContext): string {
  const ref = mode.slice('container:'.length);
  const pid = ctx.containerPid(ref);
  if (pid === null)
    throw new InvalidArgument(`cannot join ${kind} namespace of container ${ref}: it is not running`);
  return `/proc/${pid}/ns/${kind}`;
}

type Namespace = { type: string; path?: string };

let hostBounding: Set<string> | null = null;

/**
 * The daemon's own capability bounding set: a container cannot hold more (crun's capset fails), so
 * `--privileged` means "everything this host allows", as with dockerd.
 */
export function hostBoundingSet(allNames: readonly string[]): Set<string> {
  if (hostBounding) return hostBounding;
  let mask = BigInt(-1);
  try {
    const hex = /CapBnd:\s*([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
    if (hex) mask = BigInt(`0x${hex}`);
  } catch {
    // keep "all"
  }
  hostBounding = new Set(allNames.filter((_, bit) => ((mask >> BigInt(bit)) & 1n) === 1n));
  return hostBounding;
}

/** Applies HostConfig's security and resource settings to a freshly built spec. */
export function applySecurity(spec: OciSpec, host: Record<string, unknown>, ctx: SecurityContext): void {
  const s = parseSecurityFields(host);
  const privileged = s.Privileged ?? false;
  const securityOpt = s.SecurityOpt ?? [];
  const linux = spec.linux as {
    namespaces: Namespace[];
    resources: { devices?: unknown[] } & Record<string, unknown>;
    devices?: DeviceNode[];
    maskedPaths?: string[];
    readonlyPaths?: string[];
    seccomp?: unknown;
    uidMappings?: unknown[];
    gidMappings?: unknown[];
  };

  const bounding = hostBoundingSet(ALL_CAPABILITIES);
  const caps = spec.process.capabilities;
  for (const set of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const)
    caps[set] = caps[set].filter((c) => bounding.has(c));
  spec.process.noNewPrivileges = noNewPrivileges(securityOpt);
  const seccomp = containerSeccomp(
    securityOpt,
    privileged,
    spec.process.capabilities.bounding,
    ctx.seccompProfile,
  );
  if (seccomp) linux.seccomp = seccomp;
  else delete linux.seccomp;
  if (securityOpt.some((o) => /^systempaths[=:]unconfined$/.test(o))) {
    delete linux.maskedPaths;
    delete linux.readonlyPaths;
  } else if (!privileged) {
    // Paths given at create (API clients may set them; inspect shows them) replace the defaults.
    if (s.MaskedPaths) linux.maskedPaths = s.MaskedPaths;
    if (s.ReadonlyPaths) linux.readonlyPaths = s.ReadonlyPaths;
  }

  // Devices and their cgroup rules.
  const devices: DeviceNode[] = privileged ? hostDevices() : [];
  const rules: unknown[] = [...(linux.resources.devices ?? [])];
  for (const d of s.Devices ?? []) {
    const { nodes, access } = parseDevice(d);
    for (const n of nodes) {
      devices.push(n);
      rules.push({ allow: true, type: n.type, major: n.major, minor: n.minor, access });
    }
  }
  for (const rule of s.DeviceCgroupRules ?? []) rules.push(parseDeviceCgroupRule(rule));
  if (devices.length > 0) {
    const seen = new Set<string>();
    linux.devices = devices.filter((d) => !seen.has(d.path) && seen.add(d.path));
  }
  linux.resources = { ...ociResources(host), devices: rules };

  // Namespaces.
  const setNamespace = (type: string, mode: string | null | undefined) => {
    if (!mode || ['private', 'shareable', ''].includes(mode)) return;
    const i = linux.namespaces.findIndex((n) => n.type === type);
    if (mode === 'host') {
      if (i >= 0) linux.namespaces.splice(i, 1);
    } else if (mode.startsWith('container:')) {
      const entry = { type, path: namespacePath(type === 'network' ? 'net' : type, mode, ctx) };
      if (i >= 0) linux.namespaces[i] = entry;
      else linux.namespaces.push(entry);
    }
  };
  setNamespace('pid', s.PidMode);
  setNamespace('ipc', s.IpcMode);
  setNamespace('uts', s.UTSMode);
  if (s.IpcMode === 'host') {
    spec.mounts = spec.mounts.map(
      (m): OciMount =>
        m.destination === '/dev/shm'
          ? {
              destination: '/dev/shm',
              type: 'bind',
              source: '/dev/shm',
              options: ['rbind', 'nosuid', 'noexec', 'nodev'],
            }
          : m,
    );
  }
  if (s.UTSMode === 'host') delete (spec as { hostname?: string }).hostname;
  if (s.CgroupnsMode === 'private' && !linux.namespaces.some((n) => n.type === 'cgroup'))
    linux.namespaces.push({ type: 'cgroup' });

  // User namespace remapping (daemon-wide), unless the container opts out.
  if (ctx.userns && s.UsernsMode !== 'host' && !privileged) {
    linux.namespaces.push({ type: 'user' });
    linux.uidMappings = [{ containerID: 0, hostID: ctx.userns.uid, size: ctx.userns.size }];
    linux.gidMappings = [{ containerID: 0, hostID: ctx.userns.gid, size: ctx.userns.size }];
    const joinsForeignNet =
      linux.namespaces.some((n) => n.type === 'network' && n.path) ||
      !linux.namespaces.some((n) => n.type === 'network');
    if (joinsForeignNet) {
      // sysfs can only be mounted by the owner of the network namespace; bind the host's instead.
      spec.mounts = spec.mounts.map(
        (m): OciMount =>
          m.destination === '/sys'
            ? {
                destination: '/sys',
                type: 'bind',
                source: '/sys',
                options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'],
              }
            : m,
      );
    }
  }
}
