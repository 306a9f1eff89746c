import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EngineClient, parseDaemonHost } from './client.js';
import { CliError, DaemonUnreachableError } from './errors.js';

/**
 * Finding the daemon: `-H/--host`, then `$STRATA_HOST`, then the default socket. Only for the
 * default socket does the CLI start a daemon itself when none answers — an explicit address
 * means the user wants that daemon, and silently starting another one elsewhere would hide a
 * mistake.
 */
export const DEFAULT_SOCKET = '/run/strata/strata.sock';
export const DAEMON_LOG = '/var/log/strata-daemon.log';
const START_TIMEOUT_MS = 30_000;

export interface ConnectOptions {
  /** `-H/--host`; takes precedence over $STRATA_HOST. */
  host?: string;
  /** Where the one-line "started the daemon" note goes (default: stderr). */
  notify?: (line: string) => void;
  /** The default socket and how a daemon for it is started; tests point these at a temp dir. */
  defaultSocket?: string;
  daemonArgs?: string[];
  logFile?: string;
}

export async function connectToDaemon(opts: ConnectOptions = {}): Promise<EngineClient> {
  const explicit = opts.host ?? (process.env.STRATA_HOST || undefined);
  const defaultSocket = opts.defaultSocket ?? DEFAULT_SOCKET;
  const client = new EngineClient(parseDaemonHost(explicit ?? `unix://${defaultSocket}`));
  try {
    await negotiate(client);
    return client;
  } catch (err) {
    if (!(err instanceof DaemonUnreachableError) || explicit !== undefined) throw err;
  }
  await startDaemon(client, {
    socket: defaultSocket,
    args: [
      ...(defaultSocket === DEFAULT_SOCKET ? [] : ['--socket', defaultSocket]),
      ...(opts.daemonArgs ?? []),
    ],
    logFile: opts.logFile,
    notify: opts.notify ?? ((line) => process.stderr.write(`${line}\n`)),
  });
  return client;
}

interface StartOptions {
  socket: string;
  args: string[];
  logFile?: string;
  notify: (line: string) => void;
}

/** Pings and settles the API version: ours (1.41) or the daemon's if it is older. */
async function negotiate(client: EngineClient): Promise<void> {
  const { apiVersion, features } = await client.ping();
  client.features = features;
  if (apiVersion && compareVersions(apiVersion, client.apiVersion) < 0) client.apiVersion = apiVersion;
}

export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function repoRoot(): string {
  // dist/src/cli/connect.js → repository root
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
}

function openDaemonLog(preferred: string | undefined): { fd: number; file: string } {
  for (const file of [preferred ?? DAEMON_LOG, path.join(os.tmpdir(), 'strata-daemon.log')]) {
    try {
      return { fd: fs.openSync(file, 'a', 0o640), file };
    } catch {
      // try the next location
    }
  }
  return { fd: fs.openSync('/dev/null', 'a'), file: '/dev/null' };
}

/**
 * Starts `bin/strata daemon` detached, logging to DAEMON_LOG, and waits until the default socket
 * answers /_ping. A lock file keeps two CLIs started at once from launching two daemons; the
 * loser just waits for the winner's daemon.
 */
async function startDaemon(client: EngineClient, opts: StartOptions): Promise<void> {
  const runDir = path.dirname(opts.socket);
  fs.mkdirSync(runDir, { recursive: true, mode: 0o755 });
  const lockFile = path.join(runDir, 'autostart.lock');
  let ownsLock = false;
  try {
    fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
    ownsLock = true;
  } catch {
    // Another CLI is starting the daemon — unless its lock is stale.
    const age = Date.now() - (fs.statSync(lockFile, { throwIfNoEntry: false })?.mtimeMs ?? 0);
    if (age > START_TIMEOUT_MS) {
      fs.rmSync(lockFile, { force: true });
      return startDaemon(client, opts);
    }
  }
  let exited: string | undefined;
  let logFile = opts.logFile ?? DAEMON_LOG;
  try {
    if (ownsLock) {
      // Loaded here: only the rare auto-start needs child_process.
      const { spawn } = await import('node:child_process');
      const log = openDaemonLog(opts.logFile);
      logFile = log.file;
      const child = spawn(
        process.execPath,
        ['--max-semi-space-size=1', path.join(repoRoot(), 'bin', 'strata'), 'daemon', ...opts.args],
        {
          detached: true,
          stdio: ['ignore', log.fd, log.fd],
        },
      );
      fs.closeSync(log.fd);
      child.once('exit', (code, signal) => {
        exited = signal ? `signal ${signal}` : `exit code ${code}`;
      });
      child.once('error', (err) => {
        exited = err.message;
      });
      child.unref();
      opts.notify(`Started the Strata daemon (pid ${child.pid}, log ${logFile})`);
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      try {
        await negotiate(client);
        return;
      } catch (err) {
        if (!(err instanceof DaemonUnreachableError)) throw err;
      }
      if (exited) throw new CliError(`The Strata daemon failed to start (${exited}); see ${logFile}`);
      if (Date.now() > deadline) {
        throw new CliError(`The Strata daemon did not answer on ${opts.socket} in time; see ${logFile}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    if (ownsLock) fs.rmSync(lockFile, { force: true });
  }
}
