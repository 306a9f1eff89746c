import type { Writable } from 'node:stream';
import { CliError } from './errors.js';
import { shortId } from './format.js';
import { type JsonMessage, ProgressPrinter } from './stream.js';

/**
 * How `strata build` shows the daemon's legacy-builder stream (`{"stream": "Step 3/9 : RUN make\n"}`
 * …, `{"aux": {"ID": …}}`, `{"error": …, "errorDetail": {"code": 3}}`):
 *
 * - `plain` (not a terminal, or `--progress=plain`): the text verbatim, as `docker build` prints it;
 * - `tty`: one line per step, rewritten in place while it runs ("[3/9] RUN make  1.2s", its last
 *   output line dimmed below it), "CACHED" for cache hits, and the full output of a failing step;
 * - `quiet` (`-q`): nothing until the end, then only the image id.
 *
 * A failure becomes a CliError whose exit status is the step's code (errorDetail.code), as docker.
 */

export type BuildProgressMode = 'tty' | 'plain' | 'quiet';

export interface BuildDisplayOptions {
  mode: BuildProgressMode;
  columns?: number;
  now?: () => number;
  /** Redraw period of the running step's timer (tty mode); 0 disables the timer. */
  tickMs?: number;
}

interface Step {
  label: string;
  start: number;
  end?: number;
  cached: boolean;
  output: string[];
  live?: string;
}

const STEP = /^Step (\d+)\/(\d+) : (.*)$/;

function seconds(ms: number): string {
  return `${(Math.max(0, ms) / 1000).toFixed(1)}s`;
}

export class BuildDisplay {
  imageId?: string;
  /** Everything the daemon said (quiet mode prints it to stderr when the build fails). */
  readonly transcript: string[] = [];
  private partial = '';
  private current?: Step;
  private readonly finals: string[] = [];
  private liveLines = 0;
  private timer?: NodeJS.Timeout;
  private readonly printer: ProgressPrinter;
  private readonly now: () => number;

  constructor(
    private readonly out: Writable,
    private readonly opts: BuildDisplayOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.printer = new ProgressPrinter(out, { isTerminal: false });
  }

  handle(msg: JsonMessage): void {
    if (msg.errorDetail || msg.error) {
      const message = msg.errorDetail?.message ?? msg.error ?? 'unknown error';
      const code = msg.errorDetail?.code && msg.errorDetail.code > 0 ? msg.errorDetail.code : 1;
      this.fail();
      throw new CliError(message, code);
    }
    const aux = msg.aux as { ID?: unknown } | undefined;
    if (aux) {
      if (typeof aux.ID === 'string') this.imageId = aux.ID;
      return;
    }
    if (msg.stream !== undefined) {
      this.transcript.push(msg.stream);
      if (this.opts.mode === 'plain') this.out.write(msg.stream);
      else if (this.opts.mode === 'tty') this.text(msg.stream);
      return;
    }
    if (msg.status !== undefined) {
      if (this.opts.mode === 'plain') this.printer.handle(msg);
      else if (this.opts.mode === 'tty') {
        const line = `${msg.id ? `${msg.id}: ` : ''}${msg.status}${msg.progress ? ` ${msg.progress}` : ''}`;
        if (this.current) {
          this.current.live = line;
          this.redraw();
        } else if (!msg.progressDetail || !msg.id) {
          this.permanent(line);
        }
      }
    }
  }

  /** Ends the display after the stream closed normally; returns what the command should print last. */
  finish(): void {
    this.stopTimer();
    if (this.opts.mode === 'tty') {
      if (this.partial) this.line(this.partial);
      this.partial = '';
      this.completeStep();
      this.clearLive();
      if (!this.finals.some((l) => l.startsWith('Successfully built')) && this.imageId) {
        this.finals.unshift(`Successfully built ${shortId(this.imageId)}`);
      }
      for (const l of this.finals) this.out.write(`${l}\n`);
    }
  }

  private text(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const raw of lines) this.line(raw);
    // A progress bar redrawn with \r: show its latest state as the live line.
    if (this.partial && this.current) {
      const shown = this.partial.split('\r').filter(Boolean).at(-1);
      if (shown) {
        this.current.live = shown;
        this.redraw();
      }
    }
  }

  private line(raw: string): void {
    const line = raw.split('\r').filter(Boolean).at(-1) ?? '';
    const step = STEP.exec(line);
    if (step) {
      this.completeStep();
      this.current = {
        label: `[${step[1]}/${step[2]}] ${step[3]}`,
        start: this.now(),
        cached: false,
        output: [],
      };
      this.startTimer();
      this.redraw();
      return;
    }
    if (line === ' ---> Using cache') {
      if (this.current) this.current.cached = true;
      return;
    }
    if (/^ ---> Running in [0-9a-f]+$/.test(line) || /^Removing intermediate container /.test(line)) return;
    if (/^ ---> [0-9a-f]{12,}$/.test(line) || /^ ---> \[Warning\]/.test(line)) {
      if (this.current) this.current.end ??= this.now();
      if (/Warning/.test(line)) this.permanent(line.slice(6));
      return;
    }
    if (/^Successfully (built|tagged) /.test(line)) {
      this.completeStep();
      this.finals.push(line);
      return;
    }
    if (this.current) {
      if (line === '' && this.current.output.length === 0) return;
      this.current.output.push(line);
      if (line.trim()) this.current.live = line;
      this.redraw();
      return;
    }
    if (line.trim()) this.permanent(line);
  }

  private stepLine(step: Step, state: 'running' | 'done' | 'error'): string {
    const suffix =
      state === 'error'
        ? `  ERROR ${seconds((step.end ?? this.now()) - step.start)}`
        : step.cached
          ? '  CACHED'
          : `  ${seconds((step.end ?? this.now()) - step.start)}`;
    const width = Math.max(20, (this.opts.columns ?? 80) - suffix.length - 1);
    const label = step.label.length > width ? `${step.label.slice(0, width - 1)}…` : step.label;
    return `${label}${suffix}`;
  }

  private completeStep(): void {
    const step = this.current;
    if (!step) return;
    step.end ??= this.now();
    this.current = undefined;
    this.stopTimer();
    this.permanent(this.stepLine(step, 'done'));
  }

  private fail(): void {
    this.stopTimer();
    if (this.opts.mode !== 'tty') return;
    const step = this.current;
    if (this.partial && step) step.output.push(this.partial.split('\r').filter(Boolean).at(-1) ?? '');
    this.partial = '';
    this.clearLive();
    if (!step) return;
    step.end ??= this.now();
    this.current = undefined;
    const output = step.output.filter((l, i, all) => !(l === '' && i === all.length - 1));
    let text = `${this.stepLine(step, 'error')}\n`;
    if (output.length > 0) {
      text += `------\n > ${step.label}:\n${output.join('\n')}\n------\n`;
    }
    this.out.write(text);
  }

  /** Writes a line above the live area (it is never redrawn). */
  private permanent(line: string): void {
    this.clearLive();
    this.out.write(`${line}\n`);
    this.drawLive();
  }

  private clearLive(): void {
    if (this.liveLines > 0) this.out.write(`\x1b[${this.liveLines}A\r\x1b[J`);
    this.liveLines = 0;
  }

  private drawLive(): void {
    const step = this.current;
    if (!step) return;
    let text = `${this.stepLine(step, 'running')}\n`;
    this.liveLines = 1;
    if (step.live && !step.cached) {
      const width = Math.max(10, (this.opts.columns ?? 80) - 8);
      const live = step.live.length > width ? `${step.live.slice(0, width - 1)}…` : step.live;
      text += `\x1b[2m  > ${live}\x1b[0m\n`;
      this.liveLines = 2;
    }
    this.out.write(text);
  }

  private redraw(): void {
    if (this.opts.mode !== 'tty') return;
    this.clearLive();
    this.drawLive();
  }

  private startTimer(): void {
    const tick = this.opts.tickMs ?? 100;
    if (this.opts.mode !== 'tty' || tick <= 0 || this.timer) return;
    this.timer = setInterval(() => this.redraw(), tick);
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
