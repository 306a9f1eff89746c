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
 *
 * Chunked bodies (skopeo and podman send blobs that way) are claimed too, unless they fit in the read
 * that brought their headers. The parser has by then consumed that read, in a state only it knows, so
 * the registry takes the read's raw bytes from the parser itself (`getCurrentBuffer`, what Node's
 * server uses for the bytes after an upgrade), cuts them after the request's head, and the addon
 * decodes the chunk framing from there on.
 */

/** Bodies at least this large are read from the socket; smaller ones go through Node's stream. */
export const SOCKET_BODY_MIN_BYTES = 1 << 20;

interface NodeSocketInternals {
  /** Set by Node's HTTP server while it holds a connection back; `IncomingMessage` then never resumes it. */
  _paused?: boolean;
  _handle?: { fd?: number; reading?: boolean; readStop?: () => number } | null;
  /** The connection's HTTP parser, while the server owns it. */
  parser?: { getCurrentBuffer?: () => Buffer } | null;
}

/**
 * For a chunked request whose listener runs now (inside the parser's pass over one read): the bytes
 * of that read after the request's head, still coded, when the body goes on past them; null when the
 * body ends within them (small: Node's stream takes it) or the read is not what this expects (the
 * head did not arrive whole at its start, or the coding is already wrong: Node answers that).
 */
export function chunkedBodyStart(req: IncomingMessage, socket: NodeSocketInternals): Buffer | null {
  const current = socket.parser?.getCurrentBuffer?.();
  if (current === undefined) return null;
  const requestLine = `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n`;
  if (current.toString('latin1', 0, requestLine.length) !== requestLine) return null;
  const headEnd = current.indexOf('\r\n\r\n', 0, 'latin1');
  if (headEnd < 0) return null;
  const rest = current.subarray(headEnd + 4);
  return chunkedEndsWithin(rest) === false ? rest : null;
}

/**
 * Whether a chunked body ends within `data` (its start): true, false (it goes on), or null when the
 * framing is malformed. Only the chunk headers are looked at; data is skipped over.
 */
export function chunkedEndsWithin(data: Buffer): boolean | null {
  let at = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', at, 'latin1');
    if (lineEnd < 0) return data.length - at > 4096 ? null : false;
    const size = /^([0-9a-fA-F]{1,15})(?:[ \t;][^\r\n]*)?$/.exec(data.toString('latin1', at, lineEnd));
    if (size === null) return null;
    const length = Number.parseInt(size[1] ?? '', 16);
    // The last chunk: the body ends at the empty line after any trailer fields.
    if (length === 0) return data.indexOf('\r\n\r\n', lineEnd, 'latin1') >= 0;
    at = lineEnd + 2 + length + 2;
    if (at > data.length) return false;
    if (data.toString('latin1', at - 2, at) !== '\r\n') return null;
  }
}

const claimed = new WeakMap<IncomingMessage, SocketBody>();

/** Bodies this process has claimed from their sockets, in all and chunked (for tests and diagnostics). */
export const socketBodyCounters = { claimed: 0, chunked: 0 };

/**
 * Called synchronously in the server's request listener, while the parser is still on the chunk
 * holding the headers: claims the body of a large blob upload (PATCH, PUT or POST under
 * `/blobs/uploads/`, with a Content-Length of 1 MiB or more, or chunked and longer than the read that
 * brought the headers) over plain TCP. Anything else is left to Node. (With `Expect: 100-continue`, Node has already answered 100 before this runs.)
 */
export function claimSocketBody(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  if (receiveToFile === undefined) return;
  const { method } = req;
  if (method !== 'PATCH' && method !== 'PUT' && method !== 'POST') return;
  if (!(req.url ?? '').includes('/blobs/uploads/')) return;
  const socket = req.socket as Socket & NodeSocketInternals;
  if ('encrypted' in socket || socket.destroyed) return;
  const coding = req.headers['transfer-encoding'];
  let length: number | null;
  let chunkedStart: Buffer | null = null;
  if (coding === undefined) {
    const declared = contentLength(req);
    if (declared === undefined || declared < SOCKET_BODY_MIN_BYTES) return;
    length = declared;
  } else {
    // A chunk that must match a Content-Range is counted by Node's stream path.
    if (coding.trim().toLowerCase() !== 'chunked' || req.headers['content-range'] !== undefined) return;
    chunkedStart = chunkedBodyStart(req, socket);
    if (chunkedStart === null) return;
    length = null;
  }
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
  socketBodyCounters.claimed++;
  if (length === null) socketBodyCounters.chunked++;
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
      // Chunked: the raw bytes after the head (what the parser decoded from them into the request
      // stream is left there, unread).
      if (chunkedStart !== null) return chunkedStart;
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
