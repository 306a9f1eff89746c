import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { DeleteResponseItem, HistoryEntry, ImageSummary, PruneResponse } from '../api-types.js';
import { escapePath } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { CliError } from '../errors.js';
import { ellipsis, formatGoTime, humanSize, shortId, timeAgo } from '../format.js';
import { compileFormat, type Row, renderRows } from '../listing.js';
import { parseReference, repositoryName } from '../reference.js';
import { copyRaw, displayJsonMessages } from '../stream.js';
import { isTerminal } from '../terminal.js';
import { archiveOutput, confirm, encodeFilters } from './shared.js';

/** Image verbs: images, history, tag, rmi, import, load, save, image prune. */

const IMAGE_HEADERS: Record<string, string> = {
  Repository: 'REPOSITORY',
  Tag: 'TAG',
  ID: 'IMAGE ID',
  Digest: 'DIGEST',
  CreatedSince: 'CREATED',
  CreatedAt: 'CREATED AT',
  Size: 'SIZE',
  Containers: 'CONTAINERS',
  VirtualSize: 'VIRTUAL SIZE',
  SharedSize: 'SHARED SIZE',
  UniqueSize: 'UNIQUE SIZE',
};

/** One row per tag (or `<none>` rows for untagged images), as `docker images` lists them. */
export function imageRows(images: ImageSummary[], truncate: boolean, nowMs = Date.now()): Row[] {
  const rows: Row[] = [];
  for (const img of images) {
    const base = {
      Containers: img.Containers === undefined || img.Containers < 0 ? 'N/A' : String(img.Containers),
      CreatedAt: formatGoTime(img.Created ?? 0),
      CreatedSince: timeAgo(img.Created ?? 0, nowMs),
      ID: truncate ? shortId(img.Id) : img.Id,
      SharedSize: img.SharedSize === undefined || img.SharedSize < 0 ? 'N/A' : humanSize(img.SharedSize),
      Size: humanSize(img.Size ?? 0),
      UniqueSize:
        img.SharedSize === undefined || img.SharedSize < 0
          ? 'N/A'
          : humanSize((img.Size ?? 0) - img.SharedSize),
      VirtualSize: humanSize(img.VirtualSize ?? img.Size ?? 0),
    };
    const digests = img.RepoDigests ?? [];
    const digestFor = (repo: string): string =>
      digests.find((d) => d.slice(0, d.indexOf('@')) === repo)?.slice(repo.length + 1) ?? '<none>';
    const tags = (img.RepoTags ?? []).filter((t) => t !== '<none>:<none>');
    if (tags.length === 0) {
      const realDigests = digests.filter((d) => !d.startsWith('<none>@'));
      if (realDigests.length === 0) {
        rows.push({ ...base, Digest: '<none>', Repository: '<none>', Tag: '<none>' });
      }
      for (const d of realDigests) {
        const at = d.indexOf('@');
        rows.push({ ...base, Digest: d.slice(at + 1), Repository: d.slice(0, at), Tag: '<none>' });
      }
      continue;
    }
    for (const t of tags) {
      const colon = t.lastIndexOf(':');
      const repo = colon > t.lastIndexOf('/') ? t.slice(0, colon) : t;
      const tag = colon > t.lastIndexOf('/') ? t.slice(colon + 1) : '<none>';
      rows.push({ ...base, Digest: digestFor(repo), Repository: repo, Tag: tag });
    }
  }
  return rows;
}

export const imagesCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const format = flags.string('format');
  if (format) compileFormat(format.replace(/^table/, ''));
  const client = await ctx.client();
  const list = await client.json<ImageSummary[]>('GET', '/images/json', {
    query: {
      all: flags.bool('all'),
      filters: encodeFilters(flags.list('filter'), ctx.args.length > 0 ? { reference: [ctx.args[0]] } : {}),
    },
  });
  const truncate = !flags.bool('no-trunc');
  let rows = imageRows(list ?? [], truncate);
  if (flags.bool('quiet')) {
    const seen = new Set<unknown>();
    rows = rows.filter((r) => !seen.has(r.ID) && seen.add(r.ID));
  }
  const defaultTable = flags.bool('digests')
    ? 'table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}'
    : 'table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}';
  process.stdout.write(
    renderRows(rows, {
      format,
      defaultTable,
      headers: IMAGE_HEADERS,
      quiet: flags.bool('quiet'),
      quietFormat: '{{.ID}}',
    }),
  );
  return 0;
};

export function historyRows(
  entries: HistoryEntry[],
  truncate: boolean,
  human: boolean,
  nowMs = Date.now(),
): Row[] {
  return entries.map((h) => {
    const createdBy = (h.CreatedBy ?? '').replaceAll('\t', ' ');
    return {
      Comment: h.Comment ?? '',
      CreatedAt: new Date((h.Created ?? 0) * 1000).toISOString().replace('.000Z', 'Z'),
      CreatedBy: truncate ? ellipsis(createdBy, 45) : createdBy,
      CreatedSince: human
        ? timeAgo(h.Created ?? 0, nowMs)
        : new Date((h.Created ?? 0) * 1000).toISOString().replace('.000Z', 'Z'),
      ID: h.Id === '<missing>' || !truncate ? h.Id : shortId(h.Id),
      Size: human ? humanSize(h.Size ?? 0) : String(h.Size ?? 0),
    };
  });
}

export const historyCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const client = await ctx.client();
  const entries = await client.json<HistoryEntry[]>('GET', `/images/${escapePath(ctx.args[0])}/history`);
  const rows = historyRows(entries ?? [], !flags.bool('no-trunc'), flags.bool('human'));
  process.stdout.write(
    renderRows(rows, {
      format: flags.string('format'),
      defaultTable: 'table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}',
      headers: {
        ID: 'IMAGE',
        CreatedSince: 'CREATED',
        CreatedAt: 'CREATED AT',
        CreatedBy: 'CREATED BY',
        Size: 'SIZE',
        Comment: 'COMMENT',
      },
      quiet: flags.bool('quiet'),
      quietFormat: '{{.ID}}',
    }),
  );
  return 0;
};

export const tagCommand: CommandHandler = async (ctx) => {
  const [source, target] = ctx.args;
  const ref = parseReference(target);
  if (ref.digest) throw new CliError('refusing to create a tag with a digest reference');
  const client = await ctx.client();
  await client.call('POST', `/images/${escapePath(source)}/tag`, {
    query: { repo: repositoryName(ref), tag: ref.tag ?? 'latest' },
  });
  return 0;
};

export function printDeleted(items: DeleteResponseItem[] | null | undefined, lowercase = false): string {
  return (items ?? [])
    .map((item) =>
      item.Untagged
        ? `${lowercase ? 'untagged' : 'Untagged'}: ${item.Untagged}\n`
        : item.Deleted
          ? `${lowercase ? 'deleted' : 'Deleted'}: ${item.Deleted}\n`
          : '',
    )
    .join('');
}

export const rmiCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  let failed = false;
  for (const name of ctx.args) {
    try {
      const items = await client.json<DeleteResponseItem[]>('DELETE', `/images/${escapePath(name)}`, {
        query: { force: ctx.flags.bool('force'), noprune: ctx.flags.bool('no-prune') },
      });
      process.stdout.write(printDeleted(items));
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      process.stderr.write(`${err.message}\n`);
      failed = true;
    }
  }
  return failed ? 1 : 0;
};

function openInput(file: string): Readable {
  if (!fs.existsSync(file)) throw new CliError(`open ${file}: no such file or directory`);
  return fs.createReadStream(file);
}

export const importCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const [source, repository] = ctx.args;
  const isUrl = /^https?:\/\//.test(source);
  const body = source === '-' ? process.stdin : isUrl ? undefined : openInput(source);
  if (repository) parseReference(repository);
  const client = await ctx.client();
  const res = await client.request('POST', '/images/create', {
    query: {
      changes: flags.list('change'),
      fromSrc: isUrl ? source : '-',
      message: flags.string('message'),
      platform: flags.string('platform'),
      repo: repository,
    },
    body,
    contentType: 'text/plain',
  });
  await displayJsonMessages(res, process.stdout, { isTerminal: isTerminal(process.stdout) });
  return 0;
};

export const loadCommand: CommandHandler = async (ctx) => {
  const input = ctx.flags.string('input');
  if (!input && isTerminal(process.stdin)) {
    throw new CliError('requested load from stdin, but stdin is empty');
  }
  const body = input ? openInput(input) : process.stdin;
  const quiet = ctx.flags.bool('quiet') || !isTerminal(process.stdout);
  const client = await ctx.client();
  const res = await client.request('POST', '/images/load', {
    query: { quiet },
    body,
    contentType: 'application/x-tar',
  });
  // docker renders progress only when the answer is exactly application/json.
  if (res.headers['content-type'] === 'application/json') {
    await displayJsonMessages(res, process.stdout, { isTerminal: isTerminal(process.stdout) });
  } else {
    await copyRaw(res, process.stdout);
  }
  return 0;
};

export const saveCommand: CommandHandler = async (ctx) => {
  const output = archiveOutput(ctx.flags.string('output'));
  const client = await ctx.client();
  const res = await client.request('GET', '/images/get', { query: { names: ctx.args } });
  await pipeline(res, output, { end: output !== process.stdout });
  return 0;
};

export const imagePruneCommand: CommandHandler = async (ctx) => {
  const all = ctx.flags.bool('all');
  const warning = all
    ? 'WARNING! This will remove all images without at least one container associated to them.'
    : 'WARNING! This will remove all dangling images.';
  if (!ctx.flags.bool('force') && !(await confirm(warning))) return 0;
  const client = await ctx.client();
  const report = await client.json<PruneResponse>('POST', '/images/prune', {
    query: { filters: encodeFilters(ctx.flags.list('filter'), { dangling: [all ? 'false' : 'true'] }) },
  });
  let out = '';
  const deleted = report.ImagesDeleted ?? [];
  if (deleted.length > 0) out += `Deleted Images:\n${printDeleted(deleted, true)}\n`;
  out += `Total reclaimed space: ${humanSize(report.SpaceReclaimed ?? 0)}\n`;
  process.stdout.write(out);
  return 0;
};
