import type { ContainerSummary, ImageSummary, PruneResponse } from '../api-types.js';
import type { CommandHandler } from '../commands.js';
import { humanSize } from '../format.js';
import { compileObjectFormat, type Row, renderRows } from '../listing.js';
import { containerRow } from './containers.js';
import { deletedSection, isMissingRoute, reclaimedLine } from './helpers.js';
import { imageRows, printDeleted } from './images.js';
import { confirm, encodeFilters } from './shared.js';
import { VOLUME_HEADERS, type VolumeInfo, volumeRow } from './volume.js';

/** `system df` and `system prune`. */

interface BuildCacheRecord {
  ID?: string;
  Type?: string;
  Size?: number;
  InUse?: boolean;
  Shared?: boolean;
  CreatedAt?: string;
  LastUsedAt?: string | null;
  UsageCount?: number;
}

export interface DiskUsage {
  LayersSize?: number;
  Images?: ImageSummary[] | null;
  Containers?: ContainerSummary[] | null;
  Volumes?: VolumeInfo[] | null;
  BuildCache?: BuildCacheRecord[] | null;
  BuilderSize?: number;
}

function reclaimable(reclaim: number, total: number): string {
  return total > 0
    ? `${humanSize(reclaim, 4)} (${Math.trunc((reclaim * 100) / total)}%)`
    : humanSize(reclaim, 4);
}

const ACTIVE_STATES = new Set(['running', 'paused', 'restarting']);

/** The four summary rows of `system df`, computed as docker CLI 28 computes them. */
export function diskUsageRows(df: DiskUsage): Row[] {
  const images = df.Images ?? [];
  const layers = df.LayersSize ?? 0;
  let imageUsed = 0;
  for (const i of images) {
    if ((i.Containers ?? 0) > 0 && (i.Size ?? -1) !== -1 && (i.SharedSize ?? -1) !== -1) {
      imageUsed += (i.Size ?? 0) - (i.SharedSize ?? 0);
    }
  }
  const containers = df.Containers ?? [];
  let containerSize = 0;
  let containerReclaim = 0;
  for (const c of containers) {
    containerSize += c.SizeRw ?? 0;
    if (!ACTIVE_STATES.has(c.State ?? '')) containerReclaim += c.SizeRw ?? 0;
  }
  const volumes = df.Volumes ?? [];
  let volumeSize = 0;
  let volumeReclaim = 0;
  for (const v of volumes) {
    const size = v.UsageData?.Size ?? -1;
    if (size === -1) continue;
    volumeSize += size;
    if ((v.UsageData?.RefCount ?? 0) === 0) volumeReclaim += size;
  }
  const cache = df.BuildCache ?? [];
  let cacheReclaim = 0;
  for (const b of cache) if (!b.InUse && !b.Shared) cacheReclaim += b.Size ?? 0;
  return [
    {
      Active: String(images.filter((i) => (i.Containers ?? 0) > 0).length),
      Reclaimable: reclaimable(layers - imageUsed, layers),
      Size: humanSize(layers, 4),
      TotalCount: String(images.length),
      Type: 'Images',
    },
    {
      Active: String(containers.filter((c) => ACTIVE_STATES.has(c.State ?? '')).length),
      Reclaimable: reclaimable(containerReclaim, containerSize),
      Size: humanSize(containerSize, 4),
      TotalCount: String(containers.length),
      Type: 'Containers',
    },
    {
      Active: String(volumes.filter((v) => (v.UsageData?.RefCount ?? 0) > 0).length),
      Reclaimable: reclaimable(volumeReclaim, volumeSize),
      Size: humanSize(volumeSize, 4),
      TotalCount: String(volumes.length),
      Type: 'Local Volumes',
    },
    {
      Active: String(cache.filter((b) => b.InUse).length),
      Reclaimable: humanSize(cacheReclaim, 4),
      Size: humanSize(df.BuilderSize ?? 0, 4),
      TotalCount: String(cache.length),
      Type: 'Build Cache',
    },
  ];
}

/** Rows of the verbose listing: one per image (its first tag), container, volume and cache record. */
export function verboseRows(df: DiskUsage, truncate: boolean, nowMs = Date.now()): Record<string, Row[]> {
  const images: Row[] = [];
  for (const img of df.Images ?? []) {
    const tags = img.RepoTags ?? [];
    let repo = '<none>';
    let tag = '<none>';
    if (tags.length > 0) {
      const first = tags[0];
      const colon = first.lastIndexOf(':');
      if (first === '<none>:<none>' || colon <= first.lastIndexOf('/')) continue;
      repo = first.slice(0, colon);
      tag = first.slice(colon + 1);
    }
    const [row] = imageRows([{ ...img, RepoTags: [], RepoDigests: [] }], truncate, nowMs);
    images.push({ ...row, Digest: '', Repository: repo, Tag: tag });
  }
  const containers = (df.Containers ?? []).map((c) => ({
    ...containerRow({ ...c, SizeRootFs: undefined }, truncate, nowMs),
    Size: humanSize(c.SizeRw ?? 0),
  }));
  const volumes = (df.Volumes ?? []).map(volumeRow);
  const cache = (df.BuildCache ?? []).map((b) => ({
    CacheType: b.Type ?? '',
    ID: b.ID ?? '',
    Shared: String(b.Shared === true),
    Size: humanSize(b.Size ?? 0),
    UsageCount: String(b.UsageCount ?? 0),
  }));
  return { Images: images, Containers: containers, Volumes: volumes, BuildCache: cache };
}

function verboseTable(df: DiskUsage): string {
  const rows = verboseRows(df, true);
  const section = (rowsOf: Row[], table: string, headers: Record<string, string>): string =>
    renderRows(rowsOf, { format: table, defaultTable: table, headers });
  return (
    'Images space usage:\n\n' +
    section(
      rows.Images,
      'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}',
      {
        Repository: 'REPOSITORY',
        Tag: 'TAG',
        ID: 'IMAGE ID',
        CreatedSince: 'CREATED',
        Size: 'SIZE',
        SharedSize: 'SHARED SIZE',
        UniqueSize: 'UNIQUE SIZE',
        Containers: 'CONTAINERS',
      },
    ) +
    '\nContainers space usage:\n\n' +
    section(
      rows.Containers,
      'table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}',
      {
        ID: 'CONTAINER ID',
        Image: 'IMAGE',
        Command: 'COMMAND',
        LocalVolumes: 'LOCAL VOLUMES',
        Size: 'SIZE',
        RunningFor: 'CREATED',
        Status: 'STATUS',
        Names: 'NAMES',
      },
    ) +
    '\nLocal Volumes space usage:\n\n' +
    section(rows.Volumes, 'table {{.Name}}\t{{.Links}}\t{{.Size}}', VOLUME_HEADERS) +
    `\nBuild cache usage: ${humanSize(df.BuilderSize ?? 0, 4)}\n\n` +
    section(
      rows.BuildCache,
      'table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}',
      {
        ID: 'CACHE ID',
        CacheType: 'CACHE TYPE',
        Size: 'SIZE',
        CreatedSince: 'CREATED',
        LastUsedSince: 'LAST USED',
        UsageCount: 'USAGE',
        Shared: 'SHARED',
      },
    )
  );
}

export const dfCommand: CommandHandler = async (ctx) => {
  const format = ctx.flags.string('format');
  const verbose = ctx.flags.bool('verbose');
  const client = await ctx.client();
  const df = await client.json<DiskUsage>('GET', '/system/df');
  if (verbose) {
    if (format && format !== 'table') {
      const template = compileObjectFormat(format);
      process.stdout.write(`${template.execute(verboseRows(df, false))}\n`);
    } else {
      process.stdout.write(verboseTable(df));
    }
    return 0;
  }
  process.stdout.write(
    renderRows(diskUsageRows(df), {
      format,
      defaultTable: 'table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}',
      headers: {
        Type: 'TYPE',
        TotalCount: 'TOTAL',
        Active: 'ACTIVE',
        Size: 'SIZE',
        Reclaimable: 'RECLAIMABLE',
      },
    }),
  );
  return 0;
};

export function pruneWarning(all: boolean, volumes: boolean): string {
  return (
    'WARNING! This will remove:\n' +
    '  - all stopped containers\n' +
    '  - all networks not used by at least one container\n' +
    (volumes ? '  - all anonymous volumes not used by at least one container\n' : '') +
    (all
      ? '  - all images without at least one container associated to them\n'
      : '  - all dangling images\n') +
    (all ? '  - all build cache\n' : '  - unused build cache\n')
  );
}

export const systemPruneCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const all = flags.bool('all');
  const volumes = flags.bool('volumes');
  if (!flags.bool('force') && !(await confirm(pruneWarning(all, volumes)))) return 0;
  const filters = flags.list('filter');
  const client = await ctx.client();
  const query = { filters: encodeFilters(filters) };
  let out = '';
  let reclaimed = 0;
  const containers = await client.json<PruneResponse>('POST', '/containers/prune', { query });
  out += deletedSection('Deleted Containers', containers?.ContainersDeleted);
  reclaimed += containers?.SpaceReclaimed ?? 0;
  const networks = await client.json<{ NetworksDeleted?: string[] | null }>('POST', '/networks/prune', {
    query,
  });
  out += deletedSection('Deleted Networks', networks?.NetworksDeleted);
  if (volumes) {
    const vols = await client.json<{ VolumesDeleted?: string[] | null; SpaceReclaimed?: number }>(
      'POST',
      '/volumes/prune',
      { query },
    );
    out += deletedSection('Deleted Volumes', vols?.VolumesDeleted);
    reclaimed += vols?.SpaceReclaimed ?? 0;
  }
  const images = await client.json<PruneResponse>('POST', '/images/prune', {
    query: { filters: encodeFilters(filters, { dangling: [all ? 'false' : 'true'] }) },
  });
  if ((images?.ImagesDeleted ?? []).length > 0) {
    out += `Deleted Images:\n${printDeleted(images.ImagesDeleted, true)}\n`;
  }
  reclaimed += images?.SpaceReclaimed ?? 0;
  try {
    const cache = await client.json<{ CachesDeleted?: string[] | null; SpaceReclaimed?: number }>(
      'POST',
      '/build/prune',
      { query: { all, filters: encodeFilters(filters) ?? '' } },
    );
    out += deletedSection('Deleted build cache objects', cache?.CachesDeleted);
    reclaimed += cache?.SpaceReclaimed ?? 0;
  } catch (err) {
    // A daemon without a build cache has nothing to prune there.
    if (!isMissingRoute(err)) throw err;
  }
  process.stdout.write(out + reclaimedLine(reclaimed));
  return 0;
};
