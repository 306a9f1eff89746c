import * as fs from 'node:fs';
import { SeqpacketSocket } from 'node-unix-socket';
import { SystemError } from '../common/errors.js';

/**
 * A connection to conmon's attach socket (`<dir>/attach`, SOCK_SEQPACKET, which Node's `net` cannot
 * open). Each packet from conmon is one read of the container's output: byte 0 is the stream (2 =
 * stdout, 3 = stderr), the rest is payload. Bytes we write go to the container's stdin (or pty).
 * `end()` half-closes: conmon then closes the container's stdin unless it runs with
 * `--leave-stdin-open`.
 */
export interface AttachConnection {
  onOutput(listener: (stream: 1 | 2, data: Buffer) => void): void;
  onClose(listener: () => void): void;
  write(data: Buffer): void;
  end(): void;
  destroy(): void;
}

export function connectAttach(dir: string): Promise<AttachConnection> {
  // sun_path holds 107 bytes; connecting through an O_PATH fd of the directory keeps any path short.
  const dirFd = fs.openSync(dir, 0o10000000 | fs.constants.O_DIRECTORY);
  const socket = new SeqpacketSocket();
  const outputListeners: ((stream: 1 | 2, data: Buffer) => void)[] = [];
  const closeListeners: (() => void)[] = [];
  let closed = false;
  const fireClose = () => {
    if (closed) return;
    closed = true;
    for (const l of closeListeners) l();
  };
  socket.on('data', (packet: Buffer) => {
    if (packet.length < 1) return;
    const stream: 1 | 2 = packet[0] === 3 ? 2 : 1;
    const payload = packet.subarray(1);
    for (const l of outputListeners) l(stream, payload);
  });
  socket.on('end', fireClose);
  socket.on('close', fireClose);
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      fs.closeSync(dirFd);
      reject(new SystemError(`attach to ${dir} failed: ${err.message}`));
    };
    socket.once('error', onError);
    try {
      socket.connect(`/proc/self/fd/${dirFd}/attach`, () => {
        socket.off('error', onError);
        fs.closeSync(dirFd);
        socket.on('error', fireClose);
        resolve({
          onOutput: (l) => outputListeners.push(l),
          onClose: (l) => (closed ? l() : closeListeners.push(l)),
          write: (data) => {
            if (!closed && data.length > 0) socket.write(data);
          },
          end: () => {
            if (!closed) socket.end();
          },
          destroy: () => {
            socket.destroy();
            fireClose();
          },
        });
      });
    } catch (err) {
      onError(err as Error);
    }
  });
}

/** Resizes the container's (or exec session's) pty through conmon's ctl fifo. */
export function resizeTerminal(dir: string, rows: number, cols: number): void {
  let fd: number;
  try {
    fd = fs.openSync(`${dir}/ctl`, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  } catch {
    return; // conmon gone or not yet ready: nothing to resize
  }
  try {
    fs.writeSync(fd, `1 ${rows} ${cols}\n`);
  } catch {
    // fifo full or closed; a resize is best effort
  } finally {
    fs.closeSync(fd);
  }
}

/** Asks conmon to reopen the log file (after the daemon rotated it away). */
export function reopenLog(dir: string): void {
  try {
    const fd = fs.openSync(`${dir}/ctl`, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    fs.writeSync(fd, '2 0 0\n');
    fs.closeSync(fd);
  } catch {
    // best effort
  }
}
