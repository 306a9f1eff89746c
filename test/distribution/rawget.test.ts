import assert from 'node:assert/strict';
import * as net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { ConnectionBroken, rawGet } from '../../src/distribution/rawget.js';
import { sleep } from './helpers.js';

/**
 * The plain-HTTP download path speaks just enough HTTP/1.1 for blobs: a scripted server answers
 * with the response split at awkward places, chunked bodies, error bodies and cut connections.
 */
type Script = (socket: net.Socket, request: string) => Promise<void>;
let script: Script = async () => undefined;
let server: net.Server;
let url: URL;
const requests: string[] = [];

before(async () => {
  server = net.createServer((socket) => {
    let data = '';
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.includes('\r\n\r\n')) {
        requests.push(data);
        void script(socket, data).catch(() => socket.destroy());
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = new URL(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v2/x/blobs/sha256:abc`);
});

after(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function get(
  headers: Record<string, string> = {},
): Promise<{ status: number; body: Buffer; collected: Buffer }> {
  const parts: Buffer[] = [];
  const result = await rawGet(url, headers, {
    onHead: (head) => head.status < 300,
    onBody: (slice) => parts.push(Buffer.from(slice)),
  });
  return { status: result.status, body: Buffer.concat(parts), collected: result.collected };
}

async function writeSlowly(socket: net.Socket, pieces: Array<string | Buffer>): Promise<void> {
  for (const piece of pieces) {
    socket.write(piece);
    await sleep(5);
  }
}

describe('raw GET', () => {
  test('Content-Length body, with the head split across reads, and request headers sent', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    script = async (socket) => {
      await writeSlowly(socket, [
        'HTTP/1.1 200 OK\r\nContent-',
        `Length: ${body.length}\r\nX-A: 1\r\n`,
        '\r\n',
      ]);
      await writeSlowly(socket, [body.subarray(0, 10), body.subarray(10)]);
    };
    const res = await get({ Range: 'bytes=0-', Authorization: 'Bearer t' });
    assert.equal(res.status, 200);
    assert.ok(res.body.equals(body));
    const sent = requests.at(-1) ?? '';
    assert.match(sent, /^GET \/v2\/x\/blobs\/sha256:abc HTTP\/1\.1\r\n/);
    assert.match(sent, /\r\nRange: bytes=0-\r\n/);
    assert.match(sent, /\r\nAuthorization: Bearer t\r\n/);
    assert.match(sent, /\r\nConnection: close\r\n/);
  });

  test('chunked body with extensions and trailers, head and body in one packet', async () => {
    script = async (socket) => {
      socket.write('HTTP/1.1 206 Partial Content\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n');
      await writeSlowly(socket, ['6\r', '\n world\r\n', '0\r\nX-Trailer: y\r\n', '\r\n']);
    };
    const res = await get();
    assert.equal(res.status, 206);
    assert.equal(res.body.toString(), 'hello world');
  });

  test('an error status gives its body instead of delivering it', async () => {
    const error = '{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown"}]}';
    script = async (socket) => {
      socket.end(
        `HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${error.length}\r\n\r\n${error}`,
      );
    };
    const res = await get();
    assert.equal(res.status, 404);
    assert.equal(res.body.length, 0);
    assert.equal(res.collected.toString(), error);
  });

  test('a connection cut mid-body is a ConnectionBroken (retried by the download)', async () => {
    script = async (socket) => {
      await writeSlowly(socket, ['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n', 'only part']);
      socket.destroy();
    };
    await assert.rejects(get(), (err) => err instanceof ConnectionBroken && err.code === 'ECONNRESET');
  });

  test('a body thrown back by the consumer stops the transfer with that error', async () => {
    script = async (socket) => {
      socket.end('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd');
    };
    await assert.rejects(
      rawGet(
        url,
        {},
        {
          onHead: () => true,
          onBody: () => {
            throw new Error('too much');
          },
        },
      ),
      /too much/,
    );
  });
});
