import * as fs from 'node:fs';

/**
 * Reading conmon's k8s-file container log: `<time> <stdout|stderr> <F|P> <bytes>\n` per record, time in
 * local time with 9 fraction digits and a ±HH:MM offset. `F` ends a line, `P` is a partial line whose
 * continuation follows in the next record of the same stream.
 */
export interface LogRecord {
  stream: 1 | 2;
  /** The bytes, with the newline restored for full lines. */
  data: Buffer;
  /** Nanoseconds since the epoch. */
  timeNs: bigint;
  /** RFC3339Nano in UTC, as `docker logs -t` prints it. */
  timestamp: string;
}

export function parseLogLine(line: Buffer): LogRecord | null {
  const s1 = line.indexOf(0x20);
  if (s1 < 0) return null;
  const s2 = line.indexOf(0x20, s1 + 1);
  if (s2 < 0) return null;
  const s3 = line.indexOf(0x20, s2 + 1);
  const tag = line.subarray(s2 + 1, s3 < 0 ? line.length : s3).toString();
  if (tag !== 'F' && tag !== 'P') return null;
  const time = line.subarray(0, s1).toString();
  const streamName = line.subarray(s1 + 1, s2).toString();
  const payload = s3 < 0 ? Buffer.alloc(0) : line.subarray(s3 + 1);
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) return null;
  const seconds = BigInt(Math.floor(Date.parse(`${m[1]}${m[3]}`) / 1000));
  const frac = (m[2] ?? '').padEnd(9, '0').slice(0, 9);
  const timeNs = seconds * 1_000_000_000n + BigInt(frac);
  const iso = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return {
    stream: streamName === 'stderr' ? 2 : 1,
    data: tag === 'F' ? Buffer.concat([payload, Buffer.of(0x0a)]) : Buffer.from(payload),
    timeNs,
    timestamp: `${iso}.${frac}Z`,
  };
}

export interface ReadLogOptions {
  follow: boolean;
  /** Only records at or after this time (ns). */
  sinceNs?: bigint;
  /** Only records before this time (ns). */
  untilNs?: bigint;
  /** Only the last N records (-1 = all). */
  tail: number;
  /** True once no more output can come (container not running). */
  isFinished: () => boolean;
  /** Registers a callback for when the container stops; returns an unsubscribe function. */
  onFinished: (cb: () => void) => () => void;
  signal: AbortSignal;
}

const CHUNK = 64 * 1024;

/** Yields log records; with `follow`, keeps reading appended records until the container stops. */
export async function* readLog(file: string, opts: ReadLogOptions): AsyncGenerator<LogRecord> {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    if (!opts.follow || opts.isFinished()) return;
    // The log appears when the container starts.
    await new Promise((r) => setTimeout(r, 50));
    try {
      fd = fs.openSync(file, 'r');
    } catch {
      return;
    }
  }
  try {
    let position = 0;
    let pending = Buffer.alloc(0);
    const buf = Buffer.alloc(CHUNK);
    const keep = (r: LogRecord) =>
      (opts.sinceNs === undefined || r.timeNs >= opts.sinceNs) &&
      (opts.untilNs === undefined || r.timeNs < opts.untilNs);

    const readAvailable = (): LogRecord[] => {
      const out: LogRecord[] = [];
      for (;;) {
        const n = fs.readSync(fd, buf, 0, CHUNK, position);
        if (n <= 0) break;
        position += n;
        let data = pending.length > 0 ? Buffer.concat([pending, buf.subarray(0, n)]) : buf.subarray(0, n);
        let nl = data.indexOf(0x0a);
        while (nl >= 0) {
          const rec = parseLogLine(data.subarray(0, nl));
          if (rec && keep(rec)) out.push(rec);
          data = data.subarray(nl + 1);
          nl = data.indexOf(0x0a);
        }
        pending = Buffer.from(data);
      }
      return out;
    };

    let first = readAvailable();
    if (opts.tail >= 0) first = first.slice(Math.max(0, first.length - opts.tail));
    for (const r of first) yield r;
    if (!opts.follow) return;

    while (!opts.signal.aborted) {
      if (opts.isFinished()) {
        for (const r of readAvailable()) yield r;
        return;
      }
      await new Promise<void>((resolve) => {
        let watcher: fs.FSWatcher | null = null;
        const done = () => {
          watcher?.close();
          unsubscribe();
          opts.signal.removeEventListener('abort', done);
          clearTimeout(timer);
          resolve();
        };
        try {
          watcher = fs.watch(file, done);
        } catch {
          watcher = null;
        }
        const unsubscribe = opts.onFinished(done);
        opts.signal.addEventListener('abort', done);
        // A safety net for missed inotify events.
        const timer = setTimeout(done, 1000);
      });
      for (const r of readAvailable()) yield r;
    }
  } finally {
    fs.closeSync(fd);
  }
}
