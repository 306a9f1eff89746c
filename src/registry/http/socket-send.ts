import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { sendFileToSocket } from '../../native/index.js';

/**
 * Blob downloads with sendfile(2): once Node has flushed a response's headers, the addon sends the body
 * from the page cache straight into the socket on a thread of its own, and the response is then ended
 * without a body of Node's. No byte passes through JavaScript (docker/distribution serves files the
 * same way, through Go's sendfile). Node writes nothing else on the connection meanwhile: a pipelined
 * request's response waits for this one to finish, and Node does not check the Content-Length it
 * announced against what it wrote itself. Over TLS, or for small bodies, the stream path is used.
 */

/** Bodies at least this large are sent with sendfile. */
export const SEND_FILE_MIN_BYTES = 1 << 20;

/** What this process has sent with sendfile (for tests and diagnostics). */
export const sendFileCounters = { bodies: 0, bytes: 0 };

interface SocketHandle {
  _handle?: { fd?: number } | null;
}

/** The response's socket descriptor when its body can be sent with sendfile, else null. */
export function sendFileSocket(res: ServerResponse, length: number): number | null {
  if (sendFileToSocket === undefined || length < SEND_FILE_MIN_BYTES) return null;
  const socket = res.socket as (Socket & SocketHandle) | null;
  if (socket === null || 'encrypted' in socket || socket.destroyed) return null;
  const fd = socket._handle?.fd;
  return fd === undefined || fd < 0 ? null : fd;
}

/** Sends `length` bytes of `fileFd` from `offset` as the body of `res` (headers already set), and ends it. */
export async function sendFileBody(
  res: ServerResponse,
  socketFd: number,
  fileFd: number,
  offset: number,
  length: number,
  idleMs: number,
): Promise<void> {
  const send = sendFileToSocket;
  const socket = res.socket;
  if (send === undefined || socket === null) throw new Error('sendfile is not available for this response');
  res.flushHeaders();
  // The headers must be in the kernel before the first body byte. Their write is small and usually done
  // at once; when it is not, nothing signals its end ('drain' only follows a full buffer), so poll.
  for (let waited = 0; socket.writableLength > 0 && !socket.destroyed; waited++) {
    if (waited > 10_000) throw new Error('the response headers were never written');
    await new Promise<void>((resolve) => (waited === 0 ? setImmediate(resolve) : setTimeout(resolve, 1)));
  }
  if (socket.destroyed) throw Object.assign(new Error('the client went away'), { code: 'ECONNRESET' });
  const cancel = new Int32Array(1);
  const onClose = (): void => {
    cancel[0] = 1;
  };
  socket.once('close', onClose);
  try {
    await send(socketFd, fileFd, offset, length, idleMs, cancel);
    sendFileCounters.bodies++;
    sendFileCounters.bytes += length;
  } finally {
    socket.off('close', onClose);
  }
  res.end();
}
