import { type ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { SystemError } from '../common/errors.js';
import type { OciRuntime } from './oci.js';

export const CONMON_BINARY = process.env.STRATA_CONMON ?? '/usr/bin/conmon';

/**
 * Starting processes under conmon (see shared/docs/conmon.md for the measured protocol).
 *
 * conmon double-forks and outlives the daemon: it holds the container's stdio, writes the log
 * (k8s-file), serves the attach socket `<bundle>/attach`, and writes the exit code to
 * `<exitDir>/<id>` when the process ends. The daemon talks to it through two pipes: it releases conmon
 * with one byte on the start pipe and reads `{"data": pid}` (or `{"data": -1, "message": …}`) from the
 * sync pipe.
 */
export interface SyncMessage {
  data: number;
  message?: string;
}

/** Reads newline-terminated JSON messages from conmon's sync (or attach) pipe. */
class LineReader {
  private buffer = '';
  private readonly queue: SyncMessage[] = [];
  private waiters: ((m: SyncMessage | null) => void)[] = [];
  private ended = false;

  constructor(stream: Readable) {
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nl = this.buffer.indexOf('\n');
      while (nl >= 0) {
        const line = this.buffer.slice(0, nl).trim();
        this.buffer = this.buffer.slice(nl + 1);
        if (line) {
          try {
            this.push(JSON.parse(line) as SyncMessage);
          } catch {
            // conmon only writes JSON here; ignore noise
          }
        }
        nl = this.buffer.indexOf('\n');
      }
    });
    const finish = () => {
      this.ended = true;
      for (const w of this.waiters) w(null);
      this.waiters = [];
    };
    stream.on('end', finish);
    stream.on('close', finish);
    stream.on('error', finish);
  }

  private push(m: SyncMessage): void {
    const w = this.waiters.shift();
    if (w) w(m);
    else this.queue.push(m);
  }

  next(): Promise<SyncMessage | null> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

function runtimeArgs(runtime: OciRuntime): string[] {
  return ['-r', runtime.binary, '--runtime-arg', '--root', '--runtime-arg', runtime.stateRoot];
}

function spawnConmon(args: string[], cwd: string, withAttachPipe: boolean): ChildProcess {
  const child = spawn(CONMON_BINARY, args, {
    cwd,
    detached: true,
    stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', ...(withAttachPipe ? (['pipe'] as const) : [])],
    env: {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      _OCI_SYNCPIPE: '3',
      _OCI_STARTPIPE: '4',
      ...(withAttachPipe ? { _OCI_ATTACHPIPE: '5' } : {}),
    },
  });
  child.unref();
  return child;
}

function collectStderr(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (d: string) => {
    if (text.length < 8192) text += d;
  });
  return () => text.trim();
}

function pipeAt(child: ChildProcess, fd: number): Readable | Writable {
  const stream = (child.stdio as unknown as (Readable | Writable | null)[])[fd];
  if (!stream) throw new SystemError(`conmon pipe ${fd} missing`);
  return stream;
}

function closeChildPipes(child: ChildProcess): void {
  for (const s of child.stdio) {
    if (s && 'destroy' in s) (s as Readable).destroy();
  }
}

export interface CreateOptions {
  id: string;
  bundleDir: string;
  logPath: string;
  exitDir: string;
  persistDir: string;
  tty: boolean;
  openStdin: boolean;
  /** Docker's StdinOnce=false: a client's disconnect must not close the container's stdin. */
  leaveStdinOpen: boolean;
  runtime: OciRuntime;
}

/** Runs `<runtime> create` under a new conmon; resolves with the container's pid once created. */
export async function conmonCreate(opts: CreateOptions): Promise<{ pid: number; conmonPid: number }> {
  fs.mkdirSync(opts.persistDir, { recursive: true });
  const args = [
    '--api-version',
    '1',
    '-c',
    opts.id,
    '-u',
    opts.id,
    '-n',
    opts.id,
    ...runtimeArgs(opts.runtime),
    '-b',
    opts.bundleDir,
    '-p',
    `${opts.bundleDir}/pidfile`,
    '--exit-dir',
    opts.exitDir,
    '--persist-dir',
    opts.persistDir,
    '--full-attach',
    '-l',
    `k8s-file:${opts.logPath}`,
    '--log-level',
    'warning',
    '--conmon-pidfile',
    `${opts.bundleDir}/conmon.pid`,
    ...(opts.tty ? ['-t'] : opts.openStdin ? ['-i'] : []),
    ...(opts.openStdin && opts.leaveStdinOpen ? ['--leave-stdin-open'] : []),
  ];
  const child = spawnConmon(args, opts.bundleDir, false);
  const stderr = collectStderr(child);
  const sync = new LineReader(pipeAt(child, 3) as Readable);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  (pipeAt(child, 4) as Writable).end(Buffer.of(0));
  const first = await Promise.race([sync.next(), exited.then(() => sync.next())]);
  const code = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), 2000))]);
  closeChildPipes(child);
  if (!first)
    throw new SystemError(`conmon failed${code ? ` (exit ${code})` : ''}: ${stderr() || 'no message'}`);
  if (first.data < 0) throw new SystemError(first.message?.trim() || 'OCI runtime create failed');
  let conmonPid = 0;
  try {
    conmonPid = Number(fs.readFileSync(`${opts.bundleDir}/conmon.pid`, 'utf8').trim());
  } catch {
    // written by the first conmon process just before it exits; absent only if conmon died
  }
  return { pid: first.data, conmonPid };
}

export interface ExecOptions {
  containerId: string;
  sessionDir: string;
  processSpecPath: string;
  tty: boolean;
  openStdin: boolean;
  runtime: OciRuntime;
  /** Called once the session's attach socket listens and before the process runs. */
  beforeStart: () => Promise<void>;
}

export interface ExecHandle {
  pid: number;
  /** Resolves with the exit code. */
  exitCode: Promise<number>;
}

/**
 * Runs `<runtime> exec` under conmon with `--exec-attach`: conmon opens `<sessionDir>/attach`, reports
 * on the attach pipe, and waits for a second start byte so the caller can connect before the process
 * runs and lose no output.
 */
export async function conmonExec(opts: ExecOptions): Promise<ExecHandle> {
  fs.mkdirSync(`${opts.sessionDir}/exit`, { recursive: true });
  fs.mkdirSync(`${opts.sessionDir}/persist/${opts.containerId}`, { recursive: true });
  const args = [
    '--api-version',
    '1',
    '-c',
    opts.containerId,
    '-u',
    opts.sessionDir.split('/').pop() ?? 'exec',
    '-n',
    opts.containerId,
    ...runtimeArgs(opts.runtime),
    '-b',
    opts.sessionDir,
    '-p',
    `${opts.sessionDir}/exec_pid`,
    '--exit-dir',
    `${opts.sessionDir}/exit`,
    '--persist-dir',
    `${opts.sessionDir}/persist/${opts.containerId}`,
    '--full-attach',
    '-l',
    'none',
    '--log-level',
    'warning',
    ...(opts.tty ? ['-t'] : opts.openStdin ? ['-i'] : []),
    '-e',
    '--exec-attach',
    '--exec-process-spec',
    opts.processSpecPath,
  ];
  const child = spawnConmon(args, opts.sessionDir, true);
  const stderr = collectStderr(child);
  const sync = new LineReader(pipeAt(child, 3) as Readable);
  const attach = new LineReader(pipeAt(child, 5) as Readable);
  const start = pipeAt(child, 4) as Writable;
  start.write(Buffer.of(0));
  const ready = await attach.next();
  if (!ready || ready.data < 0) {
    closeChildPipes(child);
    throw new SystemError(`conmon exec failed: ${ready?.message ?? (stderr() || 'no message')}`);
  }
  try {
    await opts.beforeStart();
  } finally {
    // Only now does conmon run the runtime's exec (a second byte written earlier could be swallowed by
    // conmon's first read, see conmon.md pitfall 6).
    start.end(Buffer.of(0));
  }
  const first = await sync.next();
  if (!first || first.data < 0) {
    closeChildPipes(child);
    throw new SystemError(first?.message?.trim() || `conmon exec failed: ${stderr() || 'no message'}`);
  }
  const exitCode = (async () => {
    const second = await sync.next();
    closeChildPipes(child);
    if (second && second.data >= 0) return second.data;
    try {
      return Number(fs.readFileSync(`${opts.sessionDir}/exit/${opts.containerId}`, 'utf8').trim());
    } catch {
      return second?.data ?? -1;
    }
  })();
  return { pid: first.data, exitCode };
}
