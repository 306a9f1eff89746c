import type { IncomingMessage } from 'node:http';
import type { ContainerSummary, EngineEvent } from '../api-types.js';
import { type EngineClient, escapePath } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { CliError } from '../errors.js';
import { binarySize, humanSize, shortId } from '../format.js';
import { compileFormat, type Row, renderRows } from '../listing.js';
import { jsonLines } from '../stream.js';
import { isTerminal } from '../terminal.js';
import { encodeFilters } from './shared.js';

/**
 * `stats`: one stats stream per container (`GET /containers/{id}/stats?stream=1|0`), reduced to
 * docker's columns — CPU % from the delta against `precpu_stats`, memory without the page cache,
 * summed network and block I/O, PIDs. Without names it follows container start/die events like
 * docker. Streaming redraws the table in place on a terminal each second; `--no-stream` prints
 * it once, after every container delivered its first sample.
 */

interface CpuStats {
  cpu_usage?: { total_usage?: number; percpu_usage?: number[] | null };
  system_cpu_usage?: number;
  online_cpus?: number;
}

export interface StatsSample {
  read?: string;
  name?: string;
  id?: string;
  pids_stats?: { current?: number };
  blkio_stats?: { io_service_bytes_recursive?: { op?: string; value?: number }[] | null };
  cpu_stats?: CpuStats;
  precpu_stats?: CpuStats;
  memory_stats?: { usage?: number; limit?: number; stats?: Record<string, number> | null };
  networks?: Record<string, { rx_bytes?: number; tx_bytes?: number }> | null;
}

export interface StatsEntry {
  /** The name or id the user gave (or the 12-character id when listing all). */
  container: string;
  name: string;
  id: string;
  cpuPercent: number;
  memory: number;
  memoryLimit: number;
  memoryPercent: number;
  netRx: number;
  netTx: number;
  blockRead: number;
  blockWrite: number;
  pids: number;
  invalid: boolean;
}

/** docker's calculateCPUPercentUnix; `previous` is used when the daemon left precpu_stats empty. */
export function cpuPercent(sample: StatsSample, previous?: CpuStats): number {
  let pre = sample.precpu_stats;
  if ((!pre?.system_cpu_usage || pre.system_cpu_usage === 0) && previous) pre = previous;
  const cpuDelta = (sample.cpu_stats?.cpu_usage?.total_usage ?? 0) - (pre?.cpu_usage?.total_usage ?? 0);
  const systemDelta = (sample.cpu_stats?.system_cpu_usage ?? 0) - (pre?.system_cpu_usage ?? 0);
  let online = sample.cpu_stats?.online_cpus ?? 0;
  if (online === 0) online = sample.cpu_stats?.cpu_usage?.percpu_usage?.length ?? 0;
  return systemDelta > 0 && cpuDelta > 0 ? (cpuDelta / systemDelta) * online * 100 : 0;
}

/**
 * Memory without the page cache, as docker 28 computes it: cgroup v1 `total_inactive_file`,
 * cgroup v2 `inactive_file`; daemons that report only the v1 `cache` field get that subtracted.
 */
export function memoryUsage(mem: StatsSample['memory_stats']): number {
  const usage = mem?.usage ?? 0;
  const stats = mem?.stats ?? {};
  if ('total_inactive_file' in stats && stats.total_inactive_file < usage) {
    return usage - stats.total_inactive_file;
  }
  if ('inactive_file' in stats) return stats.inactive_file < usage ? usage - stats.inactive_file : usage;
  if ('cache' in stats && stats.cache < usage) return usage - stats.cache;
  return usage;
}

export function blockIo(sample: StatsSample): [number, number] {
  let read = 0;
  let write = 0;
  for (const e of sample.blkio_stats?.io_service_bytes_recursive ?? []) {
    const op = (e.op ?? '')[0];
    if (op === 'r' || op === 'R') read += e.value ?? 0;
    else if (op === 'w' || op === 'W') write += e.value ?? 0;
  }
  return [read, write];
}

/** Reduces one stats sample to the table's numbers. */
export function statsEntry(container: string, sample: StatsSample, previous?: CpuStats): StatsEntry {
  const memory = memoryUsage(sample.memory_stats);
  const limit = sample.memory_stats?.limit ?? 0;
  let rx = 0;
  let tx = 0;
  for (const n of Object.values(sample.networks ?? {})) {
    rx += n.rx_bytes ?? 0;
    tx += n.tx_bytes ?? 0;
  }
  const [blockRead, blockWrite] = blockIo(sample);
  return {
    container,
    name: sample.name ?? '',
    id: sample.id ?? '',
    cpuPercent: cpuPercent(sample, previous),
    memory,
    memoryLimit: limit,
    memoryPercent: limit !== 0 ? (memory / limit) * 100 : 0,
    netRx: rx,
    netTx: tx,
    blockRead,
    blockWrite,
    pids: sample.pids_stats?.current ?? 0,
    invalid: false,
  };
}

/** The fields of `stats --format` (docker's stats formatter), keys in JSON order. */
export function statsRow(e: StatsEntry, truncate: boolean): Row {
  const invalid = e.invalid;
  return {
    BlockIO: invalid ? '--' : `${humanSize(e.blockRead, 3)} / ${humanSize(e.blockWrite, 3)}`,
    CPUPerc: invalid ? '--' : `${e.cpuPercent.toFixed(2)}%`,
    Container: e.container,
    ID: truncate ? shortId(e.id) : e.id,
    MemPerc: invalid ? '--' : `${e.memoryPercent.toFixed(2)}%`,
    MemUsage: invalid ? '-- / --' : `${binarySize(e.memory)} / ${binarySize(e.memoryLimit)}`,
    Name: e.name.length > 1 ? e.name.slice(1) : '--',
    NetIO: invalid ? '--' : `${humanSize(e.netRx, 3)} / ${humanSize(e.netTx, 3)}`,
    PIDs: invalid ? '--' : String(e.pids),
  };
}

const STATS_HEADERS: Record<string, string> = {
  Container: 'CONTAINER',
  Name: 'NAME',
  ID: 'CONTAINER ID',
  CPUPerc: 'CPU %',
  MemUsage: 'MEM USAGE / LIMIT',
  MemPerc: 'MEM %',
  NetIO: 'NET I/O',
  BlockIO: 'BLOCK I/O',
  PIDs: 'PIDS',
};
const DEFAULT_TABLE =
  'table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}';

export function renderStats(entries: StatsEntry[], format: string | undefined, truncate: boolean): string {
  return renderRows(
    entries.map((e) => statsRow(e, truncate)),
    { format, defaultTable: DEFAULT_TABLE, headers: STATS_HEADERS },
  );
}

/** Moves to the top-left, rewrites each line (erasing leftovers) and clears what is below. */
export function redrawFrame(text: string): string {
  const lines = text.endsWith('\n') ? text.slice(0, -1).split('\n') : text.split('\n');
  return `\x1b[H${lines.map((l) => `${l}\x1b[K\n`).join('')}\x1b[J`;
}

/** One container's stats stream. */
class Collector {
  entry: StatsEntry;
  error?: Error;
  private response?: IncomingMessage;
  private closed = false;
  readonly firstSample: Promise<void>;
  private resolveFirst!: () => void;

  constructor(
    private readonly client: EngineClient,
    readonly key: string,
    private readonly stream: boolean,
  ) {
    this.entry = {
      container: key,
      name: '',
      id: '',
      cpuPercent: 0,
      memory: 0,
      memoryLimit: 0,
      memoryPercent: 0,
      netRx: 0,
      netTx: 0,
      blockRead: 0,
      blockWrite: 0,
      pids: 0,
      invalid: false,
    };
    this.firstSample = new Promise((resolve) => {
      this.resolveFirst = resolve;
    });
    // docker gives up waiting for the first sample after 2 s and shows the row as invalid.
    setTimeout(() => {
      if (this.entry.id === '' && !this.error) this.entry.invalid = true;
      this.resolveFirst();
    }, 2000).unref();
    void this.run();
  }

  private async run(): Promise<void> {
    let previous: CpuStats | undefined;
    try {
      this.response = await this.client.request('GET', `/containers/${escapePath(this.key)}/stats`, {
        query: { stream: this.stream ? '1' : '0' },
      });
      for await (const sample of jsonLines<StatsSample>(this.response)) {
        this.entry = statsEntry(this.key, sample, previous);
        previous = sample.cpu_stats;
        this.resolveFirst();
        if (this.closed) break;
      }
    } catch (err) {
      if (this.closed) return;
      this.error = err instanceof Error ? err : new Error(String(err));
      this.entry = { ...this.entry, invalid: true };
    } finally {
      this.resolveFirst();
    }
  }

  close(): void {
    this.closed = true;
    this.response?.destroy();
  }
}

export const statsCommand: CommandHandler = async (ctx) => {
  const { flags, args } = ctx;
  const format = flags.string('format');
  if (format) compileFormat(format.replace(/^table/, ''));
  const noStream = flags.bool('no-stream');
  const all = flags.bool('all');
  const truncate = !flags.bool('no-trunc');
  const client = await ctx.client();
  const collectors = new Map<string, Collector>();
  const add = (key: string): void => {
    if (!collectors.has(key)) collectors.set(key, new Collector(client, key, !noStream));
  };
  const remove = (key: string): void => {
    collectors.get(key)?.close();
    collectors.delete(key);
  };
  let events: IncomingMessage | undefined;
  let finished = false;
  const showAll = args.length === 0;
  try {
    if (showAll) {
      // Subscribe before listing so that no container starting in between is missed (like docker,
      // without waiting for the daemon's answer).
      client
        .request('GET', '/events', { query: { filters: encodeFilters([], { type: ['container'] }) } })
        .then(
          (res) => {
            if (finished) res.destroy();
            else {
              events = res;
              void followEvents(res, all, add, remove);
            }
          },
          () => {},
        );
      const list = await client.json<ContainerSummary[] | null>('GET', '/containers/json', {
        query: { all },
      });
      for (const c of list ?? []) add(c.Id.slice(0, 12));
    } else {
      for (const name of args) add(name);
    }
    await Promise.all([...collectors.values()].map((c) => c.firstSample));
    if (!showAll) {
      const errors = [...collectors.values()].flatMap((c) => (c.error ? [c.error.message] : []));
      if (errors.length > 0) throw new CliError(errors.join('\n'));
    }
    const tty = isTerminal(process.stdout);
    if (!noStream && tty) process.stdout.write('\x1b[2J');
    for (;;) {
      const entries = [...collectors.values()].map((c) => c.entry);
      const table = renderStats(entries, format, truncate);
      if (noStream) {
        process.stdout.write(table);
        break;
      }
      process.stdout.write(tty ? redrawFrame(table) : table);
      if (!showAll && [...collectors.values()].every((c) => c.error)) break;
      await new Promise((r) => setTimeout(r, 1000));
    }
    return 0;
  } finally {
    finished = true;
    events?.destroy();
    for (const c of collectors.values()) c.close();
  }
};

async function followEvents(
  events: IncomingMessage,
  all: boolean,
  add: (key: string) => void,
  remove: (key: string) => void,
): Promise<void> {
  try {
    for await (const e of jsonLines<EngineEvent>(events)) {
      const id = (e.Actor?.ID ?? e.id ?? '').slice(0, 12);
      if (!id) continue;
      const action = e.Action ?? e.status;
      if (action === 'start' || (action === 'create' && all)) add(id);
      else if (action === 'die' && !all) remove(id);
    }
  } catch {
    // The stream ends when the command exits (or the daemon goes away).
  }
}
