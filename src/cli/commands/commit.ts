import { escapePath } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { CliError, UsageError } from '../errors.js';
import type { FlagValues } from '../flags.js';
import { parseReference, repositoryName } from '../reference.js';
import { parseCpus, parseMemoryBytes, parseRestart } from '../run-config.js';
import { parseSwap } from '../run-options.js';
import { naturalCompare, removeEach } from './helpers.js';

/** Container verbs without a stream: commit, port, update. */

/** The `POST /commit` query of docker CLI 28 (empty author/comment/repo/tag are sent as such). */
export function commitQuery(
  flags: FlagValues,
  container: string,
  reference: string | undefined,
): Record<string, string | string[] | undefined> {
  let repo = '';
  let tag = '';
  if (reference) {
    const ref = parseReference(reference);
    if (ref.digest) throw new CliError('refusing to create a tag with a digest reference');
    repo = repositoryName(ref);
    tag = ref.tag ?? 'latest';
  }
  return {
    author: flags.string('author') ?? '',
    changes: flags.list('change'),
    comment: flags.string('message') ?? '',
    container,
    pause: flags.bool('pause') ? undefined : '0',
    repo,
    tag,
  };
}

export const commitCommand: CommandHandler = async (ctx) => {
  const [container, reference] = ctx.args;
  const query = commitQuery(ctx.flags, container, reference);
  const client = await ctx.client();
  const res = await client.json<{ Id: string }>('POST', '/commit', { query });
  process.stdout.write(`${res.Id}\n`);
  return 0;
};

interface PortBinding {
  HostIp?: string;
  HostPort?: string;
}

/** Go's net.JoinHostPort: IPv6 hosts in brackets. */
function joinHostPort(host: string, port: string): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The lines `port` prints for NetworkSettings.Ports, naturally sorted like docker. */
export function portLines(
  ports: Record<string, PortBinding[] | null> | null | undefined,
  container: string,
  wanted?: string,
): string[] {
  const out: string[] = [];
  if (wanted !== undefined) {
    const [port, proto = 'tcp'] = wanted.split('/');
    if (!/^\d+$/.test(port) || Number(port) > 65535) {
      throw new CliError(
        `Error: invalid port (${port}): strconv.ParseUint: parsing "${port}": invalid syntax`,
      );
    }
    const frontends = ports?.[`${port}/${proto || 'tcp'}`];
    if (!frontends || frontends.length === 0) {
      throw new CliError(`Error: No public port '${wanted}' published for ${container}`);
    }
    for (const f of frontends) out.push(joinHostPort(f.HostIp ?? '', f.HostPort ?? ''));
  } else {
    for (const [from, frontends] of Object.entries(ports ?? {})) {
      for (const f of frontends ?? [])
        out.push(`${from} -> ${joinHostPort(f.HostIp ?? '', f.HostPort ?? '')}`);
    }
  }
  return out.sort(naturalCompare);
}

export const portCommand: CommandHandler = async (ctx) => {
  const [container, wanted] = ctx.args;
  const client = await ctx.client();
  const info = await client.json<{
    NetworkSettings?: { Ports?: Record<string, PortBinding[] | null> | null };
  }>('GET', `/containers/${escapePath(container)}/json`);
  const lines = portLines(info.NetworkSettings?.Ports, container, wanted);
  if (lines.length > 0) process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
};

const UPDATE_FLAG_NAMES = [
  'blkio-weight',
  'cpu-period',
  'cpu-quota',
  'cpu-rt-period',
  'cpu-rt-runtime',
  'cpu-shares',
  'cpus',
  'cpuset-cpus',
  'cpuset-mems',
  'memory',
  'memory-reservation',
  'memory-swap',
  'kernel-memory',
  'pids-limit',
  'restart',
];

/** The `POST /containers/{id}/update` body exactly as docker CLI 28 sends it. */
export function updateBody(flags: FlagValues): Record<string, unknown> {
  if (!UPDATE_FLAG_NAMES.some((n) => flags.has(n))) {
    throw new UsageError('you must provide one or more flags when using this command');
  }
  const bytes = (name: string, label: string): number => {
    const v = flags.string(name);
    return v ? parseMemoryBytes(v, label) : 0;
  };
  const weight = flags.int('blkio-weight') ?? 0;
  if (weight < 0 || weight > 65535) {
    throw new UsageError(
      `invalid argument "${weight}" for "--blkio-weight" flag: strconv.ParseUint: parsing "${weight}": value out of range`,
      125,
    );
  }
  const cpus = flags.string('cpus');
  const swap = flags.string('memory-swap');
  const kernel = bytes('kernel-memory', '--kernel-memory');
  const restart = flags.string('restart');
  return {
    CpuShares: flags.int('cpu-shares') ?? 0,
    Memory: bytes('memory', '-m, --memory'),
    NanoCpus: cpus ? parseCpus(cpus) : 0,
    CgroupParent: '',
    BlkioWeight: weight,
    BlkioWeightDevice: null,
    BlkioDeviceReadBps: null,
    BlkioDeviceWriteBps: null,
    BlkioDeviceReadIOps: null,
    BlkioDeviceWriteIOps: null,
    CpuPeriod: flags.int('cpu-period') ?? 0,
    CpuQuota: flags.int('cpu-quota') ?? 0,
    CpuRealtimePeriod: flags.int('cpu-rt-period') ?? 0,
    CpuRealtimeRuntime: flags.int('cpu-rt-runtime') ?? 0,
    CpusetCpus: flags.string('cpuset-cpus') ?? '',
    CpusetMems: flags.string('cpuset-mems') ?? '',
    Devices: null,
    DeviceCgroupRules: null,
    DeviceRequests: null,
    ...(kernel !== 0 ? { KernelMemory: kernel } : {}),
    MemoryReservation: bytes('memory-reservation', '--memory-reservation'),
    MemorySwap: swap ? parseSwap(swap) : 0,
    MemorySwappiness: null,
    OomKillDisable: null,
    PidsLimit: flags.has('pids-limit') ? (flags.int('pids-limit') ?? 0) : null,
    Ulimits: null,
    CpuCount: 0,
    CpuPercent: 0,
    IOMaximumIOps: 0,
    IOMaximumBandwidth: 0,
    RestartPolicy: restart ? parseRestart(restart) : { Name: '', MaximumRetryCount: 0 },
  };
}

export const updateCommand: CommandHandler = async (ctx) => {
  const body = updateBody(ctx.flags);
  const client = await ctx.client();
  return removeEach(ctx.args, async (name) => {
    const res = await client.json<{ Warnings?: string[] | null }>(
      'POST',
      `/containers/${escapePath(name)}/update`,
      { json: body },
    );
    for (const w of res?.Warnings ?? []) process.stderr.write(`${w}\n`);
  });
};
