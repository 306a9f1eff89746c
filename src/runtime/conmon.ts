import * as fs from 'node:fs';
import type { Readable } from 'node:stream';
import { SystemError } from '../common/errors.js';
import type { Span } from '../common/trace.js';
import type { OciRuntime } from './oci.js';
import { type DetachedChild, spawnDetached } from './spawn.js';

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

/**
 * conmon with fd 2 = its stderr (option errors), 3 = sync pipe, 4 = start pipe, and for exec 5 =
 * attach pipe; a new session, so a signal to the daemon's process group never reaches it.
 */
function spawnConmon(args: string[], cwd: string, withAttachPipe: boolean): DetachedChild {
  return spawnDetached(
    CONMON_BINARY,
    args,
    {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      _OCI_SYNCPIPE: '3',
      _OCI_STARTPIPE: '4',
      ...(withAttachPipe ? { _OCI_ATTACHPIPE: '5' } : {}),
    },
    cwd,
    ['ignore', 'ignore', 'read', 'read', 'write', ...(withAttachPipe ? (['read'] as const) : [])],
  );
}

function collectStderr(child: DetachedChild): () => string {
  let text = '';
  const stderr = child.readers.get(2);
  stderr?.setEncoding('utf8');
  stderr?.on('data', (d: string) => {
    if (text.length < 8192) text += d;
  });
  stderr?.on('error', () => undefined);
  return () => text.trim();
}

function readerAt(child: DetachedChild, fd: number): Readable {
  const stream = child.readers.get(fd);
  if (!stream) throw new SystemError(`conmon pipe ${fd} missing`);
  return stream;
}

/** One byte on the start pipe releases conmon (podman writes 0x00); never blocks on an empty pipe. */
function writeStartByte(child: DetachedChild, close: boolean): void {
  const fd = child.writers.get(4);
  if (fd === undefined) return;
  try {
    fs.writeSync(fd, Buffer.of(0));
  } catch {
    // conmon already gone: the sync pipe reports it
  }
  if (close) {
    fs.closeSync(fd);
    child.writers.delete(4);
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
  /** Timing marks (common/trace.ts). */
  span?: Span;
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
    // conmon would fsync the log before writing the exit file, holding up every exit (and `wait`) by
    // an ext4 journal commit; like dockerd's log drivers we leave the log to the page cache, which a
    // daemon crash does not lose.
    '--no-sync-log',
    '--conmon-pidfile',
    `${opts.bundleDir}/conmon.pid`,
    ...(opts.tty ? ['-t'] : opts.openStdin ? ['-i'] : []),
    ...(opts.openStdin && opts.leaveStdinOpen ? ['--leave-stdin-open'] : []),
  ];
  const child = spawnConmon(args, opts.bundleDir, false);
  opts.span?.mark('conmon-spawned');
  const stderr = collectStderr(child);
  const sync = new LineReader(readerAt(child, 3));
  writeStartByte(child, true);
  // EOF on the sync pipe (null) means conmon died before reporting: both its processes held the pipe.
  const first = await sync.next();
  opts.span?.mark('pid-message');
  const code = await child.exitCode(2000);
  child.closeAll();
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
  void child.exitCode(60_000);
  const stderr = collectStderr(child);
  const sync = new LineReader(readerAt(child, 3));
  const attach = new LineReader(readerAt(child, 5));
  writeStartByte(child, false);
  const ready = await attach.next();
  if (!ready || ready.data < 0) {
    child.closeAll();
    throw new SystemError(`conmon exec failed: ${ready?.message ?? (stderr() || 'no message')}`);
  }
  try {
    await opts.beforeStart();
  } finally {
    // Only now does conmon run the runtime's exec (a second byte written earlier could be swallowed by
    // conmon's first read, see conmon.md pitfall 6).
    writeStartByte(child, true);
  }
  const first = await sync.next();
  if (!first || first.data < 0) {
    child.closeAll();
    throw new SystemError(first?.message?.trim() || `conmon exec failed: ${stderr() || 'no message'}`);
  }
  const exitCode = (async () => {
    const second = await sync.next();
    child.closeAll();
    if (second && second.data >= 0) return second.data;
    try {
      return Number(fs.readFileSync(`${opts.sessionDir}/exit/${opts.containerId}`, 'utf8').trim());
    } catch {
      return second?.data ?? -1;
    }
  })();
  return { pid: first.data, exitCode };
}
