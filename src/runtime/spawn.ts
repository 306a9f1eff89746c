import * as fs from 'node:fs';
import * as net from 'node:net';
import { pipeCloexec, reapChild, spawnDetachedProcess } from '../native/index.js';

/**
 * Starting a detached helper (conmon) without forking the daemon: the addon's posix_spawn
 * (src/native/lifecycle.c) costs well under a millisecond where Node's spawn() blocked the event loop for
 * 5–50 ms copying the daemon's page tables. The child gets a new session (as `detached: true` gives)
 * and default signal dispositions.
 *
 * `stdio[i]` says what the child's fd i is: `ignore` (/dev/null), `read` (a pipe whose read end the
 * daemon gets as a socket: the child's output, conmon's sync pipe) or `write` (a pipe whose write end
 * the daemon gets as a raw fd: conmon's start pipe; one-byte writes never block).
 *
 * The daemon must reap the child (it is ours, libuv only reaps its own): `exitCode()` polls waitpid
 * without blocking. conmon's first process exits right after its double fork, so that is quick.
 */
export type ChildFd = 'ignore' | 'read' | 'write';

export interface DetachedChild {
  pid: number;
  /** The daemon's end of each `read` fd (a socket), by child fd number. */
  readers: Map<number, net.Socket>;
  /** The daemon's end of each `write` fd (a raw fd), by child fd number. */
  writers: Map<number, number>;
  /** Resolves with the child's exit status (128 + signal when killed); null after `timeoutMs`. */
  exitCode(timeoutMs: number): Promise<number | null>;
  /** Closes every daemon-side end still open. */
  closeAll(): void;
}

export function spawnDetached(
  file: string,
  args: readonly string[],
  env: Record<string, string>,
  cwd: string,
  stdio: readonly ChildFd[],
): DetachedChild {
  const childFds: number[] = [];
  const ours: { fd: number; kind: ChildFd; childFd: number }[] = [];
  const closeChildEnds = () => {
    for (const fd of childFds) if (fd >= 0) fs.closeSync(fd);
  };
  let pid: number;
  try {
    stdio.forEach((kind, childFd) => {
      if (kind === 'ignore') {
        childFds.push(-1);
        return;
      }
      const [r, w] = pipeCloexec();
      childFds.push(kind === 'read' ? w : r);
      ours.push({ fd: kind === 'read' ? r : w, kind, childFd });
    });
    pid = spawnDetachedProcess(
      file,
      [file, ...args],
      Object.entries(env).map(([k, v]) => `${k}=${v}`),
      cwd,
      childFds,
    );
  } catch (err) {
    for (const o of ours) fs.closeSync(o.fd);
    closeChildEnds();
    throw err;
  }
  closeChildEnds();
  const readers = new Map<number, net.Socket>();
  const writers = new Map<number, number>();
  for (const o of ours) {
    if (o.kind === 'read')
      readers.set(o.childFd, new net.Socket({ fd: o.fd, readable: true, writable: false }));
    else writers.set(o.childFd, o.fd);
  }
  let status: number | null = null;
  const poll = (): boolean => {
    if (status !== null) return true;
    try {
      const code = reapChild(pid);
      if (code >= 0) status = code;
    } catch {
      status = -1; // ECHILD: already reaped
    }
    return status !== null;
  };
  const exitCode = async (timeoutMs: number): Promise<number | null> => {
    const deadline = performance.now() + timeoutMs;
    for (let delay = 1; !poll(); delay = Math.min(delay * 2, 50)) {
      if (performance.now() >= deadline) {
        reapLater(poll);
        return null;
      }
      await new Promise((r) => setTimeout(r, delay));
    }
    return status;
  };
  return {
    pid,
    readers,
    writers,
    exitCode,
    closeAll: () => {
      for (const s of readers.values()) s.destroy();
      readers.clear();
      for (const fd of writers.values()) {
        try {
          fs.closeSync(fd);
        } catch {
          // already closed
        }
      }
      writers.clear();
    },
  };
}

/** A child that outlived the caller's patience is still reaped eventually (no zombies). */
function reapLater(poll: () => boolean): void {
  const timer = setInterval(() => {
    if (poll()) clearInterval(timer);
  }, 500);
  timer.unref();
}
