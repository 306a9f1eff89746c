import type { Duplex } from 'node:stream';
import { type ApiRequest, commonHeaders, readBody } from './http.js';

/**
 * A hijacked connection (attach, exec start): after the status line the socket carries raw or
 * multiplexed container I/O in both directions.
 *
 * With `Upgrade: tcp` (docker CLI, docker-py, dockerode with hijack) the client expects
 * `101 UPGRADED`; any request body (dockerode sends JSON with a Content-Length) precedes the raw stdin in
 * the same byte stream. Without it (testcontainers) dockerd still takes over the socket and answers
 * `200 OK` with a body that ends when the connection closes.
 */
export interface Hijacked {
  socket: Duplex;
  /** Stdin bytes that arrived together with the request. */
  initialInput: Buffer;
  /** False for the non-upgrade form: the client sends no stdin and only reads. */
  isBidirectional: boolean;
}

/**
 * Reads the request body of a request that may be an upgrade (body bytes are in `head` then). When
 * part of the body had to be read from the socket, the socket is left explicitly paused: whoever
 * consumes the stream next must call `resume()` after adding its 'data' listener.
 */
export async function readRequestBody(r: ApiRequest): Promise<{ body: Buffer; rest: Buffer }> {
  if (!r.upgrade) return { body: await readBody(r.req), rest: Buffer.alloc(0) };
  const length = Number(r.req.headers['content-length'] ?? 0);
  let buffered = r.upgrade.head;
  if (!Number.isFinite(length) || length <= 0) return { body: Buffer.alloc(0), rest: buffered };
  const socket = r.upgrade.socket;
  while (buffered.length < length) {
    const chunk = await new Promise<Buffer | null>((resolve) => {
      const onData = (d: Buffer) => {
        cleanup();
        resolve(d);
      };
      const onEnd = () => {
        cleanup();
        resolve(null);
      };
      const cleanup = () => {
        socket.off('data', onData);
        socket.off('end', onEnd);
        socket.off('close', onEnd);
        socket.pause();
      };
      socket.on('data', onData);
      socket.once('end', onEnd);
      socket.once('close', onEnd);
      socket.resume();
    });
    if (chunk === null) break;
    buffered = Buffer.concat([buffered, chunk]);
  }
  return { body: buffered.subarray(0, length), rest: buffered.subarray(length) };
}

/** Takes over the connection and writes the status line; call after validation succeeded. */
export function hijack(
  r: ApiRequest,
  rest: Buffer,
  contentType = 'application/vnd.docker.raw-stream',
): Hijacked {
  const extra = Object.entries(commonHeaders())
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  if (r.upgrade) {
    const socket = r.upgrade.socket;
    r.res.detachSocket(socket as unknown as import('node:net').Socket);
    socket.write(
      `HTTP/1.1 101 UPGRADED\r\nContent-Type: ${contentType}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n${extra}\r\n`,
    );
    return { socket, initialInput: rest, isBidirectional: true };
  }
  const socket = r.req.socket;
  r.res.detachSocket(socket);
  // No Content-Length and no chunking: the body ends when we close the connection.
  socket.write(`HTTP/1.1 200 OK\r\nContent-Type: ${contentType}\r\n${extra}\r\n`);
  return { socket, initialInput: Buffer.alloc(0), isBidirectional: false };
}

/** One frame of the multiplexed stream: 8-byte header (stream, 0, 0, 0, uint32 BE length) + payload. */
export function muxFrame(stream: 0 | 1 | 2, payload: Buffer): Buffer {
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}
