import type * as net from 'node:net';
import type { EngineClient } from './client.js';
import { copyRaw, demultiplex } from './stream.js';
import { watchTerminalSize } from './terminal.js';

/**
 * One attached stream session (run, start -a, attach, exec): the daemon's output goes to our
 * stdout/stderr (raw for a TTY, demultiplexed otherwise) and our stdin goes to the daemon. When
 * there is no stdin to send, or stdin ends, the socket is half-closed so the daemon sees EOF on
 * the container's stdin while output keeps flowing.
 */
export interface SessionOptions {
  tty: boolean;
  /** Forward our stdin to the container. */
  stdin: boolean;
}

export interface Session {
  /** Resolves when the daemon has closed the output side. */
  output: Promise<void>;
  /** Stops forwarding stdin and closes the connection. */
  close(): void;
}

const HARMLESS_SOCKET_ERRORS = new Set(['EPIPE', 'ECONNRESET', 'ERR_STREAM_DESTROYED']);

export function startSession(socket: net.Socket, opts: SessionOptions): Session {
  let closed = false;
  socket.on('error', (err: NodeJS.ErrnoException) => {
    // Writing stdin after the container exited is expected; the output side reports real errors.
    if (!HARMLESS_SOCKET_ERRORS.has(err.code ?? '')) socket.destroy(err);
  });
  const stdin = process.stdin;
  if (opts.stdin) {
    stdin.pipe(socket, { end: true });
  } else {
    socket.end();
  }
  const output = (
    opts.tty ? copyRaw(socket, process.stdout) : demultiplex(socket, process.stdout, process.stderr)
  ).catch((err: NodeJS.ErrnoException) => {
    if (!HARMLESS_SOCKET_ERRORS.has(err.code ?? '')) throw err;
  });
  const close = (): void => {
    if (closed) return;
    closed = true;
    if (opts.stdin) {
      stdin.unpipe(socket);
      stdin.pause();
    }
    socket.destroy();
  };
  return { output, close };
}

/** Posts the terminal size now and on every SIGWINCH; returns the function that stops it. */
export function trackResize(resize: (rows: number, cols: number) => Promise<unknown>): () => void {
  return watchTerminalSize(({ rows, cols }) => {
    resize(rows, cols).catch(() => {
      // The process may not exist yet or may be gone; the next resize will try again.
    });
  });
}

/**
 * docker's --sig-proxy: signals the CLI receives are sent to the container instead of killing
 * the CLI (non-TTY only; with a TTY the keystrokes go through the pty).
 */
export function proxySignals(client: EngineClient, containerId: string): () => void {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
  const handlers = signals.map((sig) => {
    const handler = (): void => {
      client.call('POST', `/containers/${containerId}/kill`, { query: { signal: sig } }).catch(() => {});
    };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return () => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
  };
}
