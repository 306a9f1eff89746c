import { escapePath } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { UsageError } from '../errors.js';
import type { FlagValues } from '../flags.js';
import { humanSize } from '../format.js';
import { compileFormat, type Row, renderRows } from '../listing.js';
import {
  deletedSection,
  inspectEach,
  keyValueMap,
  labelMap,
  naturalCompare,
  reclaimedLine,
  removeEach,
} from './helpers.js';
import { confirm, encodeFilters } from './shared.js';

/** `volume create|ls|inspect|rm|prune` (engine-api.md §4 Volumes). */

export interface VolumeInfo {
  Name: string;
  Driver?: string;
  Mountpoint?: string;
  CreatedAt?: string;
  Labels?: Record<string, string> | null;
  Scope?: string;
  Options?: Record<string, string> | null;
  UsageData?: { RefCount?: number; Size?: number } | null;
}

/** The `POST /volumes/create` body as docker CLI 28 sends it (empty fields left out). */
export function volumeCreateBody(flags: FlagValues, args: string[]): Record<string, unknown> {
  const positional = args[0];
  const named = flags.string('name');
  if (positional && named && positional !== named) {
    throw new UsageError(
      `conflicting options: cannot specify a volume-name through both --name and as a positional arg`,
    );
  }
  const name = positional ?? named;
  const options = keyValueMap(flags.list('opt'));
  const labels = labelMap(flags.list('label'));
  return {
    Driver: flags.string('driver') ?? 'local',
    ...(Object.keys(options).length > 0 ? { DriverOpts: options } : {}),
    ...(Object.keys(labels).length > 0 ? { Labels: labels } : {}),
    ...(name ? { Name: name } : {}),
  };
}

export const volumeCreateCommand: CommandHandler = async (ctx) => {
  const body = volumeCreateBody(ctx.flags, ctx.args);
  const client = await ctx.client();
  const volume = await client.json<VolumeInfo>('POST', '/volumes/create', { json: body });
  process.stdout.write(`${volume.Name}\n`);
  return 0;
};

/** The fields `volume ls --format` can use (docker's volume formatter). */
export function volumeRow(v: VolumeInfo): Row {
  const labels = v.Labels ?? {};
  return {
    Availability: 'N/A',
    Driver: v.Driver ?? '',
    Group: 'N/A',
    Label: (name: unknown) => labels[String(name)] ?? '',
    Labels: Object.keys(labels)
      .sort()
      .map((k) => `${k}=${labels[k]}`)
      .join(','),
    Links: v.UsageData ? String(v.UsageData.RefCount ?? 0) : 'N/A',
    Mountpoint: v.Mountpoint ?? '',
    Name: v.Name,
    Scope: v.Scope ?? '',
    Size: v.UsageData ? humanSize(v.UsageData.Size ?? 0, 4) : 'N/A',
    Status: 'N/A',
  };
}

export const VOLUME_HEADERS: Record<string, string> = {
  Name: 'VOLUME NAME',
  Driver: 'DRIVER',
  Scope: 'SCOPE',
  Mountpoint: 'MOUNTPOINT',
  Labels: 'LABELS',
  Links: 'LINKS',
  Size: 'SIZE',
  Group: 'GROUP',
  Availability: 'AVAILABILITY',
  Status: 'STATUS',
};

export const volumeLsCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const format = flags.string('format');
  if (format) compileFormat(format.replace(/^table/, ''));
  const client = await ctx.client();
  const res = await client.json<{ Volumes?: VolumeInfo[] | null; Warnings?: string[] | null }>(
    'GET',
    '/volumes',
    { query: { filters: encodeFilters(flags.list('filter')) } },
  );
  const sorted = [...(res?.Volumes ?? [])].sort((a, b) => naturalCompare(a.Name, b.Name));
  process.stdout.write(
    renderRows(sorted.map(volumeRow), {
      format,
      defaultTable: 'table {{.Driver}}\t{{.Name}}',
      headers: VOLUME_HEADERS,
      quiet: flags.bool('quiet'),
      quietFormat: '{{.Name}}',
    }),
  );
  for (const w of res?.Warnings ?? []) process.stderr.write(`${w}\n`);
  return 0;
};

export const volumeInspectCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return inspectEach(client, ctx.args, (n) => `/volumes/${escapePath(n)}`, ctx.flags.string('format'));
};

export const volumeRmCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  const force = ctx.flags.bool('force');
  return removeEach(ctx.args, async (name) => {
    await client.call('DELETE', `/volumes/${escapePath(name)}`, { query: { force } });
  });
};

export const volumePruneCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const all = flags.bool('all');
  const client = await ctx.client();
  // Before API 1.42 the daemon prunes named volumes too; the warning says what will happen.
  const named = all || Number(client.apiVersion.split('.')[1] ?? 0) < 42;
  const warning = named
    ? 'WARNING! This will remove all local volumes not used by at least one container.'
    : 'WARNING! This will remove anonymous local volumes not used by at least one container.';
  if (!flags.bool('force') && !(await confirm(warning))) return 0;
  const report = await client.json<{ VolumesDeleted?: string[] | null; SpaceReclaimed?: number }>(
    'POST',
    '/volumes/prune',
    { query: { filters: encodeFilters(flags.list('filter'), all ? { all: ['true'] } : {}) } },
  );
  process.stdout.write(
    deletedSection('Deleted Volumes', report?.VolumesDeleted) + reclaimedLine(report?.SpaceReclaimed ?? 0),
  );
  return 0;
};
