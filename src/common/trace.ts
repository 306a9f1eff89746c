import * as fs from 'node:fs';

/**
 * High-resolution timing of the container hot path (create → start → exit → wait → remove), for finding
 * where the milliseconds go. Off unless `STRATA_TRACE` is set: `1` writes to stderr, anything else is a
 * file the lines are appended to. Disabled, a span is a shared no-op object (no clock reads, no strings).
 *
 * One line per finished span or point, all times in ms:
 *
 *   TRACE <wall clock ms.µs> <kind> <id12> <phase>=<ms since span start> … total=<ms>
 *   TRACE <wall clock ms.µs> <kind> <id12> at=<wall clock>            (a point: `trace.point`)
 *
 * `bench/run-phases` starts a daemon with it and prints the median of every phase.
 */
export interface Span {
  /** Records the time since the span began under `phase`. */
  mark(phase: string): void;
  /** Writes the span's line (once). */
  end(extra?: string): void;
}

const target = process.env.STRATA_TRACE ?? '';
export const TRACE_ENABLED = target !== '';
let fd = -1;
if (TRACE_ENABLED && target !== '1') {
  try {
    fd = fs.openSync(target, 'a');
  } catch {
    fd = -1;
  }
}

const NOOP: Span = { mark: () => undefined, end: () => undefined };

function wallClock(): string {
  return (performance.timeOrigin + performance.now()).toFixed(3);
}

function write(line: string): void {
  if (fd >= 0) fs.writeSync(fd, `${line}\n`);
  else process.stderr.write(`${line}\n`);
}

class RealSpan implements Span {
  private readonly t0 = performance.now();
  private readonly startedAt = wallClock();
  private readonly marks: string[] = [];
  private done = false;

  constructor(
    private readonly kind: string,
    private readonly id: string,
  ) {}

  mark(phase: string): void {
    this.marks.push(`${phase}=${(performance.now() - this.t0).toFixed(2)}`);
  }

  end(extra = ''): void {
    if (this.done) return;
    this.done = true;
    const total = (performance.now() - this.t0).toFixed(2);
    write(
      `TRACE ${this.startedAt} ${this.kind} ${this.id.slice(0, 12) || '-'} ${this.marks.join(' ')} total=${total}${extra ? ` ${extra}` : ''}`,
    );
  }
}

export const trace = {
  span(kind: string, id: string): Span {
    return TRACE_ENABLED ? new RealSpan(kind, id) : NOOP;
  },
  /** A single moment (e.g. the exit file seen), with an optional wall-clock time it refers to. */
  point(kind: string, id: string, fields = ''): void {
    if (TRACE_ENABLED) write(`TRACE ${wallClock()} ${kind} ${id.slice(0, 12) || '-'} ${fields}`.trimEnd());
  },
};
