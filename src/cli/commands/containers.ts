import { pipeline } from 'node:stream/promises';
import type {
  ChangeEntry,
  ContainerInspect,
  ContainerSummary,
  PruneResponse,
  TopResponse,
  WaitResponse,
} from '../api-types.js';
import { escapePath, readBody } from '../client.js';
import type { CommandContext, CommandHandler } from '../commands.js';
import { ApiError, CliError } from '../errors.js';
import {
  alignTable,
  ellipsis,
  formatGoTime,
  formatPorts,
  goQuote,
  humanSize,
  parseTimestampArg,
  shortId,
  timeAgo,
} from '../format.js';
import { compileFormat, compileObjectFormat, type Row, renderRows } from '../listing.js';
import { copyRaw, demultiplex } from '../stream.js';
import { archiveOutput, confirm, encodeFilters } from './shared.js';

/** Container verbs that are one request each (or a list), and the shared inspect. */

/** Runs `action` per name, printing the name on success (docker style) and errors as they come. */
async function eachContainer(
  names: string[],
  action: (name: string) => Promise<void>,
  printName = true,
): Promise<number> {
  let failed = false;
  for (const name of names) {
    try {
      await action(name);
      if (printName) process.stdout.write(`${name}\n`);
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      process.stderr.write(`${err.message}\n`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
}

function stopQuery(ctx: CommandContext): Record<string, string | number | undefined> {
  return { t: ctx.flags.int('timeout') ?? ctx.flags.int('time'), signal: ctx.flags.string('signal') };
}

export const stopCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return eachContainer(ctx.args, async (name) => {
    await client.call('POST', `/containers/${escapePath(name)}/stop`, { query: stopQuery(ctx) });
  });
};

export const restartCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return eachContainer(ctx.args, async (name) => {
    await client.call('POST', `/containers/${escapePath(name)}/restart`, { query: stopQuery(ctx) });
  });
};

export const killCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  const signal = ctx.flags.string('signal');
  return eachContainer(ctx.args, async (name) => {
    await client.call('POST', `/containers/${escapePath(name)}/kill`, { query: { signal } });
  });
};

export const pauseCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return eachContainer(ctx.args, async (name) => {
    await client.call('POST', `/containers/${escapePath(name)}/pause`);
  });
};

export const unpauseCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return eachContainer(ctx.args, async (name) => {
    await client.call('POST', `/containers/${escapePath(name)}/unpause`);
  });
};

export const rmCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  const query = {
    force: ctx.flags.bool('force'),
    v: ctx.flags.bool('volumes'),
    link: ctx.flags.bool('link'),
  };
  return eachContainer(ctx.args, async (name) => {
    await client.call('DELETE', `/containers/${escapePath(name)}`, { query });
  });
};

export const waitCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return eachContainer(
    ctx.args,
    async (name) => {
      const res = await client.request('POST', `/containers/${escapePath(name)}/wait`);
      const result = JSON.parse((await readBody(res)).toString('utf8')) as WaitResponse;
      if (result.Error?.Message) throw new CliError(result.Error.Message);
      process.stdout.write(`${result.StatusCode ?? 0}\n`);
    },
    false,
  );
};

export const renameCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  const [from, to] = ctx.args;
  if (!to.trim()) throw new CliError('Error: neither old nor new names may be empty');
  await client.call('POST', `/containers/${escapePath(from)}/rename`, { query: { name: to } });
  return 0;
};

export const diffCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  const changes = await client.json<ChangeEntry[] | null>(
    'GET',
    `/containers/${escapePath(ctx.args[0])}/changes`,
  );
  const kinds = ['C', 'A', 'D'];
  process.stdout.write((changes ?? []).map((c) => `${kinds[c.Kind] ?? '?'} ${c.Path}\n`).join(''));
  return 0;
};

export const topCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  const [name, ...psArgs] = ctx.args;
  const top = await client.json<TopResponse>('GET', `/containers/${escapePath(name)}/top`, {
    query: { ps_args: psArgs.length > 0 ? psArgs.join(' ') : undefined },
  });
  const lines = [(top.Titles ?? []).join('\t'), ...(top.Processes ?? []).map((p) => p.join('\t'))];
  process.stdout.write(alignTable(lines, { minWidth: 20, padding: 3 }));
  return 0;
};

export const exportCommand: CommandHandler = async (ctx) => {
  const output = archiveOutput(ctx.flags.string('output'));
  const client = await ctx.client();
  const res = await client.request('GET', `/containers/${escapePath(ctx.args[0])}/export`);
  await pipeline(res, output, { end: output !== process.stdout });
  return 0;
};

export const logsCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const client = await ctx.client();
  const info = await client.json<ContainerInspect>('GET', `/containers/${escapePath(ctx.args[0])}/json`);
  const timeArg = (name: string): string | undefined => {
    const value = flags.string(name);
    if (value === undefined) return undefined;
    try {
      return parseTimestampArg(value);
    } catch (err) {
      throw new CliError(`invalid value for "${name}": ${(err as Error).message}`);
    }
  };
  const res = await client.request('GET', `/containers/${info.Id}/logs`, {
    query: {
      details: flags.bool('details'),
      follow: flags.bool('follow'),
      since: timeArg('since'),
      stderr: true,
      stdout: true,
      tail: flags.string('tail') ?? 'all',
      timestamps: flags.bool('timestamps'),
      until: timeArg('until'),
    },
  });
  if (info.Config?.Tty) await copyRaw(res, process.stdout);
  else await demultiplex(res, process.stdout, process.stderr);
  return 0;
};

const PS_HEADERS: Record<string, string> = {
  ID: 'CONTAINER ID',
  Image: 'IMAGE',
  Command: 'COMMAND',
  CreatedAt: 'CREATED AT',
  RunningFor: 'CREATED',
  Ports: 'PORTS',
  State: 'STATE',
  Status: 'STATUS',
  Size: 'SIZE',
  Names: 'NAMES',
  Labels: 'LABELS',
  Label: 'LABEL',
  Mounts: 'MOUNTS',
  LocalVolumes: 'LOCAL VOLUMES',
  Networks: 'NETWORKS',
  Platform: 'PLATFORM',
};

/** The fields `ps --format` can use, as docker's container formatter names them (keys sorted for json). */
export function containerRow(c: ContainerSummary, truncate: boolean, nowMs = Date.now()): Row {
  const labels = c.Labels ?? {};
  const names = (c.Names ?? [])
    .map((n) => n.replace(/^\//, ''))
    .filter((n) => !n.includes('/'))
    .join(',');
  let image = c.Image ?? '';
  if (truncate) {
    if (image.startsWith('sha256:')) image = shortId(image);
    else if (image.includes('@sha256:')) image = image.slice(0, image.indexOf('@'));
  }
  const mounts = (c.Mounts ?? []).map((m) => {
    const name = m.Name || m.Source || '';
    return truncate ? ellipsis(name, 15) : name;
  });
  return {
    Command: goQuote(truncate ? ellipsis(c.Command ?? '', 20) : (c.Command ?? '')),
    CreatedAt: formatGoTime(c.Created ?? 0),
    ID: truncate ? shortId(c.Id) : c.Id,
    Image: image,
    Label: (name: unknown) => labels[String(name)] ?? '',
    Labels: Object.keys(labels)
      .sort()
      .map((k) => `${k}=${labels[k]}`)
      .join(','),
    LocalVolumes: String(
      (c.Mounts ?? []).filter((m) => m.Type === 'volume' && (m.Driver ?? 'local') === 'local').length,
    ),
    Mounts: mounts.join(','),
    Names: names,
    Networks: Object.keys(c.NetworkSettings?.Networks ?? {})
      .sort()
      .join(','),
    Ports: formatPorts(c.Ports),
    RunningFor: timeAgo(c.Created ?? 0, nowMs),
    Size:
      c.SizeRw === undefined && c.SizeRootFs === undefined
        ? '0B'
        : `${humanSize(c.SizeRw ?? 0)} (virtual ${humanSize(c.SizeRootFs ?? 0)})`,
    State: c.State ?? '',
    Status: c.Status ?? '',
  };
}

export const psCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const format = flags.string('format');
  const last = flags.int('last') ?? -1;
  const latest = flags.bool('latest');
  const wantSize = flags.bool('size') || format?.includes('.Size') === true;
  if (format) compileFormat(format.replace(/^table/, ''));
  const client = await ctx.client();
  const list = await client.json<ContainerSummary[]>('GET', '/containers/json', {
    query: {
      all: flags.bool('all') || last > 0 || latest,
      filters: encodeFilters(flags.list('filter')),
      limit: latest ? 1 : last > 0 ? last : undefined,
      size: wantSize,
    },
  });
  const truncate = !flags.bool('no-trunc');
  const rows = (list ?? []).map((c) => containerRow(c, truncate));
  const defaultTable = `table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}${flags.bool('size') ? '\t{{.Size}}' : ''}`;
  process.stdout.write(
    renderRows(rows, {
      format,
      defaultTable,
      headers: PS_HEADERS,
      quiet: flags.bool('quiet'),
      quietFormat: '{{.ID}}',
    }),
  );
  return 0;
};

type ObjectKind = 'container' | 'image' | 'network' | 'volume';

const INSPECT_PATHS: Record<ObjectKind, (name: string) => string> = {
  container: (n) => `/containers/${escapePath(n)}/json`,
  image: (n) => `/images/${escapePath(n)}/json`,
  network: (n) => `/networks/${escapePath(n)}`,
  volume: (n) => `/volumes/${escapePath(n)}`,
};

const MISSING: Record<ObjectKind | 'any', string> = {
  container: 'No such container',
  image: 'No such image',
  network: 'No such network',
  volume: 'No such volume',
  any: 'No such object',
};

/**
 * `inspect`: each name is tried as a container, then an image, a network and a volume (as the
 * docker CLI does) unless --type narrows it. Found objects print as one JSON array (4-space
 * indent, like docker) or through --format; missing ones are reported and make the exit status 1.
 */
async function inspectObjects(
  ctx: CommandContext,
  kinds: ObjectKind[],
  typeLabel: ObjectKind | 'any',
): Promise<number> {
  const format = ctx.flags.string('format');
  const template = format ? compileObjectFormat(format) : undefined;
  const client = await ctx.client();
  const found: unknown[] = [];
  const errors: string[] = [];
  for (const name of ctx.args) {
    let result: unknown;
    for (const kind of kinds) {
      try {
        const query =
          kind === 'container' && ctx.flags.has('size') && ctx.flags.bool('size')
            ? { size: true }
            : undefined;
        result = await client.json<unknown>('GET', INSPECT_PATHS[kind](name), { query });
        break;
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) throw err;
      }
    }
    if (result === undefined) errors.push(`${MISSING[typeLabel]}: ${name}`);
    else found.push(result);
  }
  if (template) {
    process.stdout.write(found.map((obj) => `${template.execute(obj)}\n`).join(''));
  } else {
    process.stdout.write(`${JSON.stringify(found, null, 4)}\n`);
  }
  if (errors.length > 0) {
    process.stderr.write(`Error: ${errors.join('\n')}\n`);
    return 1;
  }
  return 0;
}

export const inspectCommand: CommandHandler = async (ctx) => {
  const type = ctx.flags.string('type');
  if (type === undefined) return inspectObjects(ctx, ['container', 'image', 'network', 'volume'], 'any');
  if (!['container', 'image', 'network', 'volume'].includes(type)) {
    throw new CliError(`"${type}" is not a valid value for --type`);
  }
  return inspectObjects(ctx, [type as ObjectKind], type as ObjectKind);
};

export const containerInspectCommand: CommandHandler = (ctx) =>
  inspectObjects(ctx, ['container'], 'container');
export const imageInspectCommand: CommandHandler = (ctx) => inspectObjects(ctx, ['image'], 'image');

export const containerPruneCommand: CommandHandler = async (ctx) => {
  if (!ctx.flags.bool('force') && !(await confirm('WARNING! This will remove all stopped containers.'))) {
    return 0;
  }
  const client = await ctx.client();
  const report = await client.json<PruneResponse>('POST', '/containers/prune', {
    query: { filters: encodeFilters(ctx.flags.list('filter')) },
  });
  let out = '';
  const deleted = report.ContainersDeleted ?? [];
  if (deleted.length > 0) out += `Deleted Containers:\n${deleted.map((id) => `${id}\n`).join('')}\n`;
  out += `Total reclaimed space: ${humanSize(report.SpaceReclaimed ?? 0)}\n`;
  process.stdout.write(out);
  return 0;
};
