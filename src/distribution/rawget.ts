import * as net from 'node:net';
import type { Readable } from 'node:stream';
import { USER_AGENT } from './transport.js';

/**
 * Blob transfers with plain-HTTP registries over a bare TCP connection: a GET hands the response
 * body over synchronously, slice by slice, from one reused 1 MiB read buffer; a PUT writes the blob
 * as it is read from disk. Node's HTTP client allocates and parses per 64 KiB chunk: on loopback it
 * spent ten times the CPU of these loops for the same bytes (4x on uploads, where the registry
 * also received the bytes in smaller reads), which made it, not the registry, the limit of a pull.
 *
 * HTTP/1.1 only as far as a blob needs: status line, headers, a Content-Length or chunked body, or
 * a body up to the connection's end; one request per connection (`Connection: close`).
 */
export interface RawHead {
  status: number;
  /** Lower-case names; repeated headers joined with `, `. */
  headers: Record<string, string>;
}

export interface RawGetHandlers {
  /** Called once the headers are in; return false to collect the body in memory instead (errors). */
  onHead(head: RawHead): boolean;
  /** A body slice, valid only during the call (the buffer is reused afterwards). May throw. */
  onBody(slice: Buffer): void;
}

export interface RawGetResult extends RawHead {
  /** The body when `onHead` declined it (bounded to 64 KiB). */
  collected: Buffer;
}

const READ_BUFFER = 1 << 20;
const MAX_HEAD = 64 * 1024;
const MAX_COLLECTED = 64 * 1024;
const IDLE_TIMEOUT_MS = 120_000;

/** Marks errors that mean "the connection broke", which a download retries. */
export class ConnectionBroken extends Error {
  readonly code = 'ECONNRESET';
}

export function rawGet(
  url: URL,
  headers: Record<string, string>,
  handlers: RawGetHandlers,
  signal?: AbortSignal,
): Promise<RawGetResult> {
  return rawRequest('GET', url, headers, handlers, { signal });
}

/** Blocks sent, for progress. */
export type SentListener = (bytes: number) => void;

/**
 * PUT of `body` (`length` bytes, e.g. a blob read from disk) with `Content-Length`; the response
 * body is collected (it is small: empty, or an error).
 */
export function rawPut(
  url: URL,
  headers: Record<string, string>,
  body: Readable,
  length: number,
  onSent: SentListener,
  signal?: AbortSignal,
): Promise<RawGetResult> {
  return rawRequest(
    'PUT',
    url,
    { ...headers, 'Content-Length': String(length) },
    { onHead: () => false, onBody: () => undefined },
    { signal, body, onSent },
  );
}

function rawRequest(
  method: string,
  url: URL,
  headers: Record<string, string>,
  handlers: RawGetHandlers,
  options: { signal?: AbortSignal; body?: Readable; onSent?: SentListener },
): Promise<RawGetResult> {
  const { signal, body: requestBody } = options;
  const port = Number(url.port || 80);
  const request = [
    `${method} ${url.pathname}${url.search} HTTP/1.1`,
    `Host: ${url.host}`,
    `User-Agent: ${USER_AGENT}`,
    'Connection: close',
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
    '',
    '',
  ].join('\r\n');

  return new Promise<RawGetResult>((resolve, reject) => {
    let settled = false;
    let headBytes: Buffer[] = [];
    let headLength = 0;
    let head: RawHead | null = null;
    let deliver = true;
    const collected: Buffer[] = [];
    let collectedLength = 0;
    // Body framing.
    let mode: 'length' | 'chunked' | 'close' = 'close';
    let remaining = 0;
    let chunkState: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';
    let sizeLine = '';
    let trailerLine = '';

    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      requestBody?.destroy();
      socket.destroy();
      if (err) reject(err);
      else resolve({ ...(head as RawHead), collected: Buffer.concat(collected) });
    };
    const onAbort = (): void =>
      finish(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));

    const emit = (slice: Buffer): void => {
      if (slice.length === 0) return;
      if (deliver) handlers.onBody(slice);
      else if (collectedLength < MAX_COLLECTED) {
        const part = Buffer.from(slice.subarray(0, MAX_COLLECTED - collectedLength));
        collected.push(part);
        collectedLength += part.length;
      }
    };

    /** Consumes body bytes; returns true once the body is complete. */
    const body = (data: Buffer): boolean => {
      if (mode === 'close') {
        emit(data);
        return false;
      }
      if (mode === 'length') {
        const take = Math.min(remaining, data.length);
        emit(data.subarray(0, take));
        remaining -= take;
        return remaining === 0;
      }
      let at = 0;
      while (at < data.length) {
        if (chunkState === 'size') {
          const nl = data.indexOf(10, at);
          if (nl === -1) {
            sizeLine += data.toString('latin1', at);
            if (sizeLine.length > 1024) throw new Error('malformed chunked body');
            return false;
          }
          sizeLine += data.toString('latin1', at, nl);
          at = nl + 1;
          const size = Number.parseInt(sizeLine.trim().split(';')[0] ?? '', 16);
          sizeLine = '';
          if (!Number.isFinite(size) || size < 0) throw new Error('malformed chunked body');
          if (size === 0) chunkState = 'trailer';
          else {
            remaining = size;
            chunkState = 'data';
          }
        } else if (chunkState === 'data') {
          const take = Math.min(remaining, data.length - at);
          emit(data.subarray(at, at + take));
          at += take;
          remaining -= take;
          if (remaining === 0) chunkState = 'data-crlf';
        } else if (chunkState === 'data-crlf') {
          const nl = data.indexOf(10, at);
          if (nl === -1) return false;
          at = nl + 1;
          chunkState = 'size';
        } else {
          const nl = data.indexOf(10, at);
          if (nl === -1) {
            trailerLine += data.toString('latin1', at);
            return false;
          }
          trailerLine += data.toString('latin1', at, nl);
          at = nl + 1;
          if (trailerLine.trim() === '') return true;
          trailerLine = '';
        }
      }
      return false;
    };

    const parseHead = (raw: Buffer): RawHead => {
      const lines = raw.toString('latin1').split('\r\n');
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
      if (!status)
        throw new Error(`malformed HTTP response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
      const out: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        if (colon <= 0) continue;
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        out[name] = out[name] === undefined ? value : `${out[name]}, ${value}`;
      }
      return { status: Number(status[1]), headers: out };
    };

    const onData = (data: Buffer): void => {
      let rest = data;
      if (head === null) {
        headBytes.push(Buffer.from(data));
        headLength += data.length;
        const all = headBytes.length === 1 ? (headBytes[0] as Buffer) : Buffer.concat(headBytes);
        const end = all.indexOf('\r\n\r\n');
        if (end === -1) {
          if (headLength > MAX_HEAD) throw new Error('HTTP response head too large');
          headBytes = [all];
          return;
        }
        head = parseHead(all.subarray(0, end));
        if (head.status === 100) {
          // Interim response: the real one follows.
          head = null;
          headBytes = [all.subarray(end + 4)];
          headLength = headBytes[0]?.length ?? 0;
          return;
        }
        deliver = handlers.onHead(head);
        const te = (head.headers['transfer-encoding'] ?? '').toLowerCase();
        const length = head.headers['content-length'];
        if (te.includes('chunked')) mode = 'chunked';
        else if (length !== undefined) {
          mode = 'length';
          remaining = Number(length);
          if (!Number.isSafeInteger(remaining) || remaining < 0)
            throw new Error(`bad Content-Length ${length}`);
        }
        // Bytes after the head sit in `all`, which is our own copy: hand them over as body.
        rest = all.subarray(end + 4);
        headBytes = [];
        if (mode === 'length' && remaining === 0) {
          finish(null);
          return;
        }
      }
      if (body(rest)) finish(null);
    };

    const buffer = Buffer.allocUnsafe(READ_BUFFER);
    const socket = net.connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port,
      onread: {
        buffer,
        callback: (nread: number, buf: Uint8Array): boolean => {
          if (settled) return false;
          try {
            onData(Buffer.from(buf.buffer, buf.byteOffset, nread));
          } catch (err) {
            finish(err instanceof Error ? err : new Error(String(err)));
            return false;
          }
          return true;
        },
      },
    });
    socket.setNoDelay(true);
    socket.setTimeout(IDLE_TIMEOUT_MS, () =>
      finish(new ConnectionBroken(`no data for ${IDLE_TIMEOUT_MS / 1000}s`)),
    );
    socket.on('connect', () => {
      socket.write(request);
      if (requestBody === undefined) return;
      // The body as it is read; the response may come early (an error), which ends the request.
      requestBody.on('data', (chunk: Buffer) => {
        if (settled) return;
        options.onSent?.(chunk.length);
        if (!socket.write(chunk)) requestBody.pause();
      });
      socket.on('drain', () => requestBody.resume());
      requestBody.on('error', (err) => finish(err));
    });
    socket.on('error', (err) => finish(err));
    socket.on('end', () => {
      if (head !== null && mode === 'close') finish(null);
      else
        finish(
          new ConnectionBroken(
            head === null ? 'connection closed before a response' : 'connection closed mid-body',
          ),
        );
    });
    socket.on('close', () => finish(new ConnectionBroken('connection closed')));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
}
