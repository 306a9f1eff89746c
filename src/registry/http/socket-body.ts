import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { receiveToFile } from '../../native/index.js';
import type { SocketBody } from '../storage/driver.js';
import { contentLength } from './context.js';

/**
 * Upload bodies read straight from the connection. Node's HTTP parser hands a request body to
 * JavaScript as a fresh buffer per piece read (64 KiB at most); under concurrent pushes the copies,
 * the stream machinery and the garbage collection of those buffers (V8 runs a full collection for
 * each 64 MiB of them) took half of the registry's CPU. For a large upload body the registry
 * instead stops Node reading the connection as soon as the request's headers are parsed — the way
 * Node's own server pauses a connection whose responses back up — and the storage driver reads the
 * rest of the body from the socket on a thread of the addon (`receiveToFile`), hashing and writing
 * it in one pass. The parser is left mid-body, so the response closes the connection
 * (`Connection: close`); a client opens a new one for its next request, which for bodies of a MiB
 * and more costs nothing measurable.
 */

/** Bodies at least this large are read from the socket; smaller ones go through Node's stream. */
export const SOCKET_BODY_MIN_BYTES = 1 << 20;

interface NodeSocketInternals {
  /** Set by Node's HTTP server while it holds a connection back; `IncomingMessage` then never resumes it. */
  _paused?: boolean;
  _handle?: { fd?: number; reading?: boolean; readStop?: () => number } | null;
}

const claimed = new WeakMap<IncomingMessage, SocketBody>();

/**
 * Called synchronously in the server's request listener, while the parser is still on the chunk
 * holding the headers: claims the body of a large blob upload (PATCH, PUT or POST under
 * `/blobs/uploads/` with a Content-Length and no transfer coding) over plain TCP. Anything else is
 * left to Node. (With `Expect: 100-continue`, Node has already answered 100 before this runs.)
 */
export function claimSocketBody(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  if (receiveToFile === undefined) return;
  const { method } = req;
  if (method !== 'PATCH' && method !== 'PUT' && method !== 'POST') return;
  if (!(req.url ?? '').includes('/blobs/uploads/')) return;
  // Chunked bodies stay with Node: its parser is mid-chunk by now, in a state only it knows.
  if (req.headers['transfer-encoding'] !== undefined) return;
  const length = contentLength(req);
  if (length === undefined || length < SOCKET_BODY_MIN_BYTES) return;
  const socket = req.socket as Socket & NodeSocketInternals;
  if ('encrypted' in socket || socket.destroyed) return;
  const handle = socket._handle;
  const fd = handle?.fd;
  if (handle === undefined || handle === null || fd === undefined || fd < 0 || handle.readStop === undefined)
    return;
  // What Node's server does to hold a connection back (onSocketPause): no more reads from the socket,
  // and, with `_paused`, neither the request stream nor the parser starts them again.
  socket._paused = true;
  handle.reading = false;
  handle.readStop();
  // The socket's idle timer never sees the bytes the thread reads; the thread has its own.
  socket.setTimeout(0);
  res.setHeader('Connection', 'close');
  const cancel = new Int32Array(1);
  socket.once('close', () => {
    cancel[0] = 1;
  });
  let prefixTaken = false;
  claimed.set(req, {
    kind: 'socket',
    fd,
    length,
    idleMs,
    cancel,
    takePrefix(): Buffer {
      if (prefixTaken) throw new Error('the body prefix was already taken');
      prefixTaken = true;
      // The body bytes that came in the same read as the headers; reading them does not resume the socket.
      const parts: Buffer[] = [];
      for (let chunk = req.read() as Buffer | null; chunk !== null; chunk = req.read() as Buffer | null) {
        parts.push(chunk);
      }
      return Buffer.concat(parts);
    },
    resume(): void {
      // Nothing reads the rest: the response closes the connection.
      cancel[0] = 1;
    },
  });
}

/** The request's body: its socket when claimed, else the request stream itself. */
export function requestBody(req: IncomingMessage): IncomingMessage | SocketBody {
  return claimed.get(req) ?? req;
}
