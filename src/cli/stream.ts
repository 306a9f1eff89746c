import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { CliError } from './errors.js';
import { humanSize } from './format.js';

/**
 * Stream formats the daemon sends: the 8-byte-header multiplexed stdout/stderr stream of
 * non-TTY containers (logs, attach, exec) and newline-delimited JSON messages (pull, push, load,
 * import, events) — and how the CLI renders them.
 */

export const STDIN = 0;
export const STDOUT = 1;
export const STDERR = 2;
/** Go stdcopy's "system error" stream: the payload is an error message. */
export const SYSTEMERR = 3;

export interface Frame {
  stream: number;
  payload: Buffer;
}

/**
 * Incremental parser for the multiplexed stream: byte 0 = stream, bytes 4..7 = payload length
 * (big-endian), then the payload. Frames may be split across or packed within chunks.
 */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const frames: Frame[] = [];
    while (this.pending.length >= 8) {
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + size) break;
      frames.push({ stream: this.pending[0], payload: this.pending.subarray(8, 8 + size) });
      this.pending = this.pending.subarray(8 + size);
    }
    return frames;
  }

  /** Bytes of an incomplete frame left when the stream ended. */
  get leftover(): number {
    return this.pending.length;
  }
}

/** Encodes one frame (used by tests and anything that needs to fake a daemon). */
export function encodeFrame(stream: number, payload: Buffer | string): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

async function writeWithBackpressure(target: Writable, data: Buffer): Promise<void> {
  if (!target.write(data)) await once(target, 'drain');
}

/** Copies a multiplexed stream to stdout/stderr until it ends. */
export async function demultiplex(source: Readable, stdout: Writable, stderr: Writable): Promise<void> {
  const decoder = new FrameDecoder();
  for await (const chunk of source) {
    for (const frame of decoder.push(chunk as Buffer)) {
      if (frame.stream === SYSTEMERR) throw new CliError(frame.payload.toString('utf8').trim());
      await writeWithBackpressure(frame.stream === STDERR ? stderr : stdout, frame.payload);
    }
  }
}

/** Copies a raw (TTY) stream to stdout until it ends. */
export async function copyRaw(source: Readable, stdout: Writable): Promise<void> {
  for await (const chunk of source) await writeWithBackpressure(stdout, chunk as Buffer);
}

/** Yields the non-empty lines of a text stream (without the line ending). */
export async function* textLines(source: Readable): AsyncGenerator<string> {
  let buffered = '';
  source.setEncoding('utf8');
  for await (const chunk of source) {
    buffered += chunk as string;
    let nl = buffered.indexOf('\n');
    while (nl >= 0) {
      const line = buffered.slice(0, nl).trim();
      buffered = buffered.slice(nl + 1);
      if (line) yield line;
      nl = buffered.indexOf('\n');
    }
  }
  const last = buffered.trim();
  if (last) yield last;
}

/** Yields one parsed JSON value per line of a newline-delimited JSON stream. */
export async function* jsonLines<T>(source: Readable): AsyncGenerator<T> {
  for await (const line of textLines(source)) {
    try {
      yield JSON.parse(line) as T;
    } catch {
      throw new CliError(`invalid JSON from the daemon: ${line.slice(0, 200)}`);
    }
  }
}

export interface JsonMessage {
  status?: string;
  id?: string;
  stream?: string;
  progress?: string;
  progressDetail?: { current?: number; total?: number };
  error?: string;
  errorDetail?: { code?: number; message?: string };
  aux?: Record<string, unknown>;
}

export interface ProgressOptions {
  isTerminal: boolean;
  /** Terminal width, for the size of the progress bar. */
  columns?: number;
  onAux?: (aux: Record<string, unknown>) => void;
}

/** The bar part of a progress line: "[=====>      ]  1.2MB/4.1MB". */
export function renderProgressBar(current: number, total: number, columns = 80): string {
  if (current <= 0 && total <= 0) return '';
  if (total <= 0) return humanSize(current, 4).padStart(8);
  const width = columns > 110 ? 50 : 25;
  const filled = Math.min(width, Math.floor((current / total) * width));
  const bar = `[${'='.repeat(filled)}>${' '.repeat(Math.max(0, width - filled))}] `;
  const numbers =
    current > total
      ? humanSize(current, 4).padStart(8)
      : `${humanSize(current, 4).padStart(8)}/${humanSize(total, 4)}`;
  return bar + numbers;
}

/**
 * Renders a JSON progress stream like docker's jsonmessage: on a terminal one line per layer id,
 * updated in place with a bar; otherwise plain "id: status" lines, skipping the byte-count updates.
 * An in-stream error becomes a CliError (exit 1, or the error's own code as `docker build` does).
 */
export class ProgressPrinter {
  private ids = new Map<string, number>();

  constructor(
    private readonly out: Writable,
    private readonly opts: ProgressOptions,
  ) {}

  handle(msg: JsonMessage): void {
    if (msg.errorDetail || msg.error) {
      const message = msg.errorDetail?.message ?? msg.error ?? 'unknown error';
      throw new CliError(
        message,
        msg.errorDetail?.code && msg.errorDetail.code > 0 ? msg.errorDetail.code : 1,
      );
    }
    if (msg.aux) {
      this.opts.onAux?.(msg.aux);
      return;
    }
    const hasProgress = msg.progressDetail !== undefined;
    const current = msg.progressDetail?.current ?? 0;
    const total = msg.progressDetail?.total ?? 0;
    const bar = hasProgress ? renderProgressBar(current, total, this.opts.columns) : '';
    const { isTerminal } = this.opts;
    if (!isTerminal && bar !== '') return;

    let diff = 0;
    if (msg.id && hasProgress) {
      let line = this.ids.get(msg.id);
      if (line === undefined) {
        line = this.ids.size;
        this.ids.set(msg.id, line);
        if (isTerminal) this.out.write('\n');
      }
      diff = this.ids.size - line;
      if (isTerminal) this.out.write(`\x1b[${diff}A`);
    } else {
      // Anything that is not a layer line ends the block of lines that may be rewritten.
      this.ids = new Map();
    }
    let text = '';
    if (isTerminal && hasProgress && !msg.stream) text += '\x1b[2K\r';
    if (msg.id) text += `${msg.id}: `;
    if (msg.stream) text += msg.stream;
    else if (isTerminal && hasProgress) text += `${msg.status ?? ''} ${bar}\r`;
    else text += `${msg.status ?? ''}\n`;
    this.out.write(text);
    if (msg.id && isTerminal && diff > 0) this.out.write(`\x1b[${diff}B`);
  }
}

/** Reads a whole JSON progress stream and renders it. */
export async function displayJsonMessages(
  source: Readable,
  out: Writable,
  opts: ProgressOptions,
): Promise<void> {
  const printer = new ProgressPrinter(out, opts);
  for await (const msg of jsonLines<JsonMessage>(source)) printer.handle(msg);
}
