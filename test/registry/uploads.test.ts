import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { describe, test } from 'node:test';
import { socketBodyCounters } from '../../src/registry/http/socket-body.js';
import { sendFileCounters } from '../../src/registry/http/socket-send.js';
import {
  Client,
  errorCode,
  request,
  sha256,
  sleep,
  spawnRegistry,
  startRegistry,
  type TestRegistry,
  tempDir,
  withRegistry,
} from './helpers.js';

/**
 * Upload sessions: an interrupted chunk resumes from what arrived, a restarted registry finishes a
 * session it did not start, unfinished data is never served, and big blobs stream through a small,
 * bounded amount of memory.
 */
const REPO = 'uploads/test';

/** Deterministic pseudo-random bytes, so big blobs need not be held to know their digest. */
function pattern(offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const n = offset + i;
    out[i] = (n * 2654435761 + (n >>> 13)) & 0xff;
  }
  return out;
}

/** Sends PATCH headers announcing `declared` bytes but only `sent` of them, then drops the connection. */
async function interruptedPatch(
  url: string,
  location: string,
  data: Buffer,
  declared: number,
): Promise<void> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.write(
    `PATCH ${location} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nContent-Type: application/octet-stream\r\n` +
      `Content-Length: ${declared}\r\n\r\n`,
  );
  await new Promise<void>((resolve) => socket.write(data, () => resolve()));
  await sleep(200);
  socket.destroy();
}

/** A body in the chunked coding: `sizes` cut `data` into chunks, some with extensions; a trailer field. */
function chunked(data: Buffer, sizes: number[], extension = ';ext="x"'): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const size = Math.min(sizes[i % sizes.length] ?? data.length, data.length - at);
    const hex = i % 2 === 0 ? size.toString(16) : size.toString(16).toUpperCase();
    parts.push(Buffer.from(`${hex}${i % 3 === 1 ? extension : ''}\r\n`), data.subarray(at, at + size));
    parts.push(Buffer.from('\r\n'));
    at += size;
  }
  parts.push(Buffer.from('0\r\nX-Trailer: yes\r\n\r\n'));
  return Buffer.concat(parts);
}

interface RawResponse {
  status: number;
  headers: string;
  body: string;
}

/**
 * Sends a request as raw bytes, in `writes` with `pauseMs` between them (the first holds the head and
 * whatever of the body should come with it), and reads the response. `drop` hangs up after the last
 * write instead (the response is then null).
 */
async function rawRequest(
  url: string,
  writes: Buffer[],
  options: { pauseMs?: number; drop?: boolean } = {},
): Promise<RawResponse | null> {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  const response = new Promise<RawResponse>((resolve, reject) => {
    let received = Buffer.alloc(0);
    const parse = (final: boolean): void => {
      const end = received.indexOf('\r\n\r\n');
      if (end < 0) {
        if (final) reject(new Error(`no response: ${received.toString('latin1')}`));
        return;
      }
      const headers = received.toString('latin1', 0, end);
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(headers)?.[1] ?? 0);
      if (received.length - end - 4 < length) return;
      resolve({
        status: Number(headers.slice(9, 12)),
        headers: headers.toLowerCase(),
        body: received.toString('utf8', end + 4, end + 4 + length),
      });
      socket.destroy();
    };
    socket.on('data', (d: Buffer) => {
      received = Buffer.concat([received, d]);
      parse(false);
    });
    socket.on('close', () => parse(true));
  });
  response.catch(() => undefined);
  for (let i = 0; i < writes.length; i++) {
    if (i > 0 && options.pauseMs !== undefined) await sleep(options.pauseMs);
    await new Promise<void>((resolve) => socket.write(writes[i] ?? Buffer.alloc(0), () => resolve()));
  }
  if (options.drop === true) {
    await sleep(200);
    socket.destroy();
    return null;
  }
  return response;
}

function chunkedHead(method: string, url: string, location: string): Buffer {
  const { host } = new URL(url);
  return Buffer.from(
    `${method} ${location} HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/octet-stream\r\n` +
      'Transfer-Encoding: chunked\r\n\r\n',
  );
}

/** Sends the rest of `blob` from `offset` (PATCH with Content-Range), finishes the upload, reads it back. */
async function resumeAndFinish(
  client: Client,
  location: string,
  blob: Buffer,
  offset: number,
): Promise<void> {
  const rest = await client.req('PATCH', location, {
    body: blob.subarray(offset),
    headers: { 'Content-Range': `${offset}-${blob.length - 1}` },
  });
  assert.equal(rest.status, 202, rest.text);
  const put = await client.req('PUT', `${location}?digest=${sha256(blob)}`);
  assert.equal(put.status, 201, put.text);
  assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(blob)}`)).body, blob);
}

async function uploadedSize(client: Client, location: string): Promise<number> {
  // The server notices the drop asynchronously; the session settles within a few polls.
  let last = -1;
  for (let i = 0; i < 50; i++) {
    const res = await client.req('GET', location);
    assert.equal(res.status, 204);
    const range = String(res.headers.range);
    const size = Number(range.split('-')[1]) + 1;
    if (size === last) return range === '0-0' ? 0 : size;
    last = size;
    await sleep(50);
  }
  return last;
}

describe('resumable uploads', () => {
  let reg: TestRegistry;
  let client: Client;
  withRegistry((r, c) => {
    reg = r;
    client = c;
  });

  test('an interrupted chunk keeps what arrived and the upload resumes from there', async () => {
    const blob = pattern(0, 256 * 1024);
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    await interruptedPatch(reg.url, location, blob.subarray(0, 100 * 1024), blob.length);
    const offset = await uploadedSize(client, location);
    assert.ok(offset > 0 && offset <= 100 * 1024, `resumable offset ${offset}`);
    assert.equal(
      (await client.req('HEAD', `/v2/${REPO}/blobs/${sha256(blob)}`)).status,
      404,
      'nothing visible yet',
    );
    const stale = await client.req('PATCH', location, {
      body: blob.subarray(0, 10),
      headers: { 'Content-Range': '0-9' },
    });
    assert.equal(stale.status, 416, 'a chunk from the start is out of order now');
    assert.equal(stale.headers.range, `0-${offset - 1}`);
    await resumeAndFinish(client, location, blob, offset);
  });

  test('a session survives a registry restart (the digest is recomputed from the stored bytes)', async () => {
    const blob = pattern(7, 50_000);
    const root = tempDir('restart');
    const first = await startRegistry({}, root);
    const c1 = new Client(first.url);
    const post = await c1.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    assert.equal(
      (
        await c1.req('PATCH', location, {
          body: blob.subarray(0, 20_000),
          headers: { 'Content-Range': '0-19999' },
        })
      ).status,
      202,
    );
    await first.close();
    const second = await startRegistry({}, root);
    try {
      const c2 = new Client(second.url);
      const status = await c2.req('GET', location);
      assert.equal(status.headers.range, '0-19999');
      assert.equal((await c2.req('PATCH', location, { body: blob.subarray(20_000) })).status, 202);
      const bad = await c2.req('PUT', `${location}?digest=${sha256('wrong')}`);
      assert.equal(errorCode(bad), 'DIGEST_INVALID');
      assert.equal((await c2.req('GET', location)).status, 404, 'a failed verification ends the session');
      // A fresh session through the restarted server, finished with a sha512 digest this time.
      const again = await c2.req('POST', `/v2/${REPO}/blobs/uploads/`);
      const loc2 = String(again.headers.location);
      assert.equal((await c2.req('PATCH', loc2, { body: blob })).status, 202);
      const sha512 = `sha512:${createHash('sha512').update(blob).digest('hex')}`;
      assert.equal((await c2.req('PUT', `${loc2}?digest=${sha512}`)).status, 201);
      assert.deepEqual((await c2.req('GET', `/v2/${REPO}/blobs/${sha512}`)).body, blob);
    } finally {
      await second.close();
    }
  });

  test('two sessions uploading the same blob at once both succeed', async () => {
    const blob = pattern(3, 300_000);
    const push = async (): Promise<number> => {
      const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
      const res = await client.req('PUT', `${post.headers.location}?digest=${sha256(blob)}`, { body: blob });
      return res.status;
    };
    assert.deepEqual(await Promise.all([push(), push(), push()]), [201, 201, 201]);
    assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(blob)}`)).body, blob);
  });

  test('uploading stored content again links it and leaves the stored file alone', async () => {
    const blob = pattern(4, 200_000);
    const digest = sha256(blob);
    await client.pushBlob(REPO, blob);
    const hex = digest.slice('sha256:'.length);
    const stored = `${reg.root}/docker/registry/v2/blobs/sha256/${hex.slice(0, 2)}/${hex}/data`;
    const inode = fs.statSync(stored).ino;
    const other = `${REPO}-again`;
    const post = await client.req('POST', `/v2/${other}/blobs/uploads/`);
    const location = String(post.headers.location);
    const wrong = await client.req('PUT', `${location}?digest=${digest}`, { body: blob.subarray(1) });
    assert.equal(wrong.status, 400, 'the bytes are still verified');
    const again = await client.req('POST', `/v2/${other}/blobs/uploads/`);
    const put = await client.req('PUT', `${again.headers.location}?digest=${digest}`, { body: blob });
    assert.equal(put.status, 201, put.text);
    assert.equal(fs.statSync(stored).ino, inode, 'not renamed over');
    assert.deepEqual((await client.req('GET', `/v2/${other}/blobs/${digest}`)).body, blob);
    const uploads = `${reg.root}/docker/registry/v2/repositories/${other}/_uploads`;
    assert.deepEqual(fs.existsSync(uploads) ? fs.readdirSync(uploads) : [], []);
  });

  test('a cancelled session leaves nothing behind', async () => {
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    await client.req('PATCH', location, { body: 'partial' });
    assert.equal((await client.req('DELETE', location)).status, 204);
    assert.equal((await client.req('DELETE', location)).status, 404);
    const id = location.split('/').pop() as string;
    assert.ok(!fs.existsSync(`${reg.root}/docker/registry/v2/repositories/${REPO}/_uploads/${id}`));
  });
});

describe('upload bodies read from the socket', () => {
  // Bodies of a MiB and more with a Content-Length are read by the addon straight from the
  // connection (src/registry/http/socket-body.ts); the response then closes the connection.
  let reg: TestRegistry;
  let client: Client;
  withRegistry((r, c) => {
    reg = r;
    client = c;
  });

  test('large PATCH, PUT and monolithic POST bodies arrive whole, hashed, and close their connection', async () => {
    const blob = pattern(21, 3 * 1024 * 1024 + 123);
    const half = 1536 * 1024;
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    const patch = await client.req('PATCH', location, {
      body: blob.subarray(0, half),
      headers: { 'Content-Range': `0-${half - 1}` },
    });
    assert.equal(patch.status, 202, patch.text);
    assert.equal(patch.headers.connection, 'close', 'read from the socket');
    assert.equal(patch.headers.range, `0-${half - 1}`);
    const put = await client.req('PUT', `${location}?digest=${sha256(blob)}`, {
      body: blob.subarray(half),
      headers: { Connection: 'keep-alive' },
    });
    assert.equal(put.status, 201, put.text);
    assert.equal(put.headers.connection, 'close', 'asked to keep it, but the parser was left mid-body');
    assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(blob)}`)).body, blob);

    const whole = pattern(22, 2 * 1024 * 1024 + 5);
    const mono = await client.req('POST', `/v2/${REPO}/blobs/uploads/?digest=${sha256(whole)}`, {
      body: whole,
    });
    assert.equal(mono.status, 201, mono.text);
    assert.equal(mono.headers.connection, 'close');
    assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(whole)}`)).body, whole);

    // A small body still goes through Node's stream and keeps the connection.
    const small = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const smallPut = await client.req('PUT', `${small.headers.location}?digest=${sha256('tiny')}`, {
      body: 'tiny',
      headers: { Connection: 'keep-alive' },
    });
    assert.equal(smallPut.status, 201);
    assert.equal(smallPut.headers.connection, 'keep-alive');
  });

  test('a large body cut off mid-way keeps what arrived, and the upload resumes from there', async () => {
    const blob = pattern(23, 4 * 1024 * 1024);
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    const sent = 2 * 1024 * 1024 + 777;
    await interruptedPatch(reg.url, location, blob.subarray(0, sent), blob.length);
    const offset = await uploadedSize(client, location);
    assert.equal(offset, sent, 'every byte that arrived is kept');
    assert.equal((await client.req('HEAD', `/v2/${REPO}/blobs/${sha256(blob)}`)).status, 404);
    await resumeAndFinish(client, location, blob, offset);
  });

  test('a large body whose digest does not match is refused and leaves nothing', async () => {
    const blob = pattern(24, 2 * 1024 * 1024);
    const repo = `${REPO}-mismatch`;
    const post = await client.req('POST', `/v2/${repo}/blobs/uploads/`);
    const put = await client.req('PUT', `${post.headers.location}?digest=${sha256('something else')}`, {
      body: blob,
    });
    assert.equal(errorCode(put), 'DIGEST_INVALID');
    assert.equal((await client.req('HEAD', `/v2/${repo}/blobs/${sha256(blob)}`)).status, 404);
    const uploads = `${reg.root}/docker/registry/v2/repositories/${repo}/_uploads`;
    assert.deepEqual(fs.existsSync(uploads) ? fs.readdirSync(uploads) : [], []);
    const out = await client.req('PATCH', String(post.headers.location), {
      body: blob,
      headers: { 'Content-Range': `0-${blob.length - 1}` },
    });
    assert.equal(out.status, 404, 'the session ended with the failed verification');
  });

  test('large chunked bodies are decoded from the socket: odd chunk sizes, extensions, a trailer', async () => {
    const blob = pattern(31, 3 * 1024 * 1024 + 333);
    const half = 1536 * 1024 + 7;
    const before = { ...socketBodyCounters };
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    // The head comes with the start of the body, cut inside a chunk: the addon takes over mid-chunk.
    const first = chunked(blob.subarray(0, half), [1, 70_000, 65_536, 1_000_003, 5]);
    const patch = await rawRequest(
      reg.url,
      [
        Buffer.concat([chunkedHead('PATCH', reg.url, location), first.subarray(0, 10_000)]),
        first.subarray(10_000),
      ],
      { pauseMs: 50 },
    );
    assert.equal(patch?.status, 202, patch?.body);
    assert.match(patch?.headers ?? '', /\r\nconnection: close/, 'read from the socket');
    assert.match(patch?.headers ?? '', new RegExp(`\r\nrange: 0-${half - 1}`));
    // The head alone first (as after Expect: 100-continue), then the rest in one piece.
    const put = await rawRequest(
      reg.url,
      [
        chunkedHead('PUT', reg.url, `${location}?digest=${sha256(blob)}`),
        chunked(blob.subarray(half), [262_144, 3]),
      ],
      { pauseMs: 50 },
    );
    assert.equal(put?.status, 201, put?.body);
    assert.equal(socketBodyCounters.chunked - before.chunked, 2, 'both bodies were claimed');
    assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(blob)}`)).body, blob);

    // Many small chunks with long extensions (signatures, say): more extension bytes in all than
    // any one chunk may carry.
    const signed = pattern(35, 1536 * 1024);
    const session = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const coded = chunked(signed, [2048], `;chunk-signature=${'ab'.repeat(40)}`);
    const whole = await rawRequest(
      reg.url,
      [
        Buffer.concat([
          chunkedHead('PUT', reg.url, `${session.headers.location}?digest=${sha256(signed)}`),
          coded.subarray(0, 20_000),
        ]),
        coded.subarray(20_000),
      ],
      { pauseMs: 50 },
    );
    assert.equal(whole?.status, 201, whole?.body);
    assert.equal(socketBodyCounters.chunked - before.chunked, 3);
  });

  test('a chunked body that fits in one read stays with Node and keeps its connection', async () => {
    const before = { ...socketBodyCounters };
    const blob = pattern(32, 3000);
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const put = await rawRequest(reg.url, [
      Buffer.concat([
        chunkedHead('PUT', reg.url, `${post.headers.location}?digest=${sha256(blob)}`),
        chunked(blob, [1000]),
      ]),
    ]);
    assert.equal(put?.status, 201, put?.body);
    assert.doesNotMatch(put?.headers ?? '', /\r\nconnection: close/);
    assert.equal(socketBodyCounters.chunked, before.chunked);
    assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(blob)}`)).body, blob);
  });

  test('a malformed chunked body is refused and appends nothing', async () => {
    const blob = pattern(33, 2 * 1024 * 1024);
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    const good = chunked(blob.subarray(0, 1024 * 1024), [300_000]);
    // Drop the last-chunk line and put a size that is not hex after 1 MiB of good chunks.
    const bad = Buffer.concat([good.subarray(0, good.indexOf('0\r\nX-Trailer')), Buffer.from('zz\r\n')]);
    const patch = await rawRequest(
      reg.url,
      [Buffer.concat([chunkedHead('PATCH', reg.url, location), bad.subarray(0, 5000)]), bad.subarray(5000)],
      { pauseMs: 50 },
    );
    assert.equal(patch?.status, 400, patch?.body);
    assert.match(patch?.body ?? '', /BLOB_UPLOAD_INVALID/);
    assert.equal(await uploadedSize(client, location), 0, 'the session is as it was');
    // And it still takes a good body.
    const put = await client.req('PUT', `${location}?digest=${sha256(blob)}`, { body: blob });
    assert.equal(put.status, 201, put.text);
    assert.deepEqual((await client.req('GET', `/v2/${REPO}/blobs/${sha256(blob)}`)).body, blob);
  });

  test('a chunked body cut off mid-way keeps what arrived, and the upload resumes from there', async () => {
    const blob = pattern(34, 4 * 1024 * 1024);
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    const coded = chunked(blob, [blob.length]);
    const sent = 2 * 1024 * 1024 + 777;
    const header = coded.indexOf('\r\n') + 2;
    await rawRequest(
      reg.url,
      [
        Buffer.concat([chunkedHead('PATCH', reg.url, location), coded.subarray(0, 1000)]),
        coded.subarray(1000, header + sent),
      ],
      { pauseMs: 50, drop: true },
    );
    const offset = await uploadedSize(client, location);
    assert.equal(offset, sent, 'every data byte that arrived is kept');
    await resumeAndFinish(client, location, blob, offset);
  });

  test('closing the registry stops a body transfer that is still waiting for bytes', async () => {
    const own = await startRegistry();
    const c = new Client(own.url);
    const post = await c.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const { hostname, port } = new URL(own.url);
    const socket = net.connect(Number(port), hostname);
    socket.on('error', () => undefined);
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.write(
      `PATCH ${post.headers.location} HTTP/1.1\r\nHost: ${hostname}:${port}\r\n` +
        `Content-Length: ${4 * 1024 * 1024}\r\n\r\n`,
    );
    socket.write(pattern(0, 1024 * 1024));
    await sleep(300);
    const started = Date.now();
    await own.close();
    assert.ok(Date.now() - started < 5000, `close took ${Date.now() - started} ms`);
    socket.destroy();
  });
});

describe('downloads', () => {
  test('downloads cut off by the client release their files and leave the server serving', async () => {
    const reg = await startRegistry();
    try {
      const client = new Client(reg.url);
      const blob = pattern(11, 16 * 1024 * 1024);
      const digest = await client.pushBlob(REPO, blob);
      const fds = (): number => fs.readdirSync('/proc/self/fd').length;
      const baseline = fds();
      const { port } = new URL(reg.url);
      for (let i = 0; i < 5; i++) {
        await new Promise<void>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: `/v2/${REPO}/blobs/${digest}` }, (res) => {
            res.once('data', () => {
              req.destroy();
              resolve();
            });
          });
          req.on('error', (err) =>
            (err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve() : reject(err),
          );
        });
      }
      let open = fds();
      for (let i = 0; i < 50 && open > baseline; i++) {
        await sleep(20);
        open = fds();
      }
      assert.ok(open <= baseline, `file descriptors: ${open} open, ${baseline} before`);
      const full = await client.req('GET', `/v2/${REPO}/blobs/${digest}`);
      assert.equal(full.status, 200);
      assert.ok(full.body.equals(blob));
      const range = await client.req('GET', `/v2/${REPO}/blobs/${digest}`, {
        headers: { Range: 'bytes=1000000-1000009' },
      });
      assert.deepEqual(range.body, blob.subarray(1_000_000, 1_000_010));
    } finally {
      await reg.close();
    }
  });
  test('large downloads (sent with sendfile) are whole, ranged right, and keep their connection', async () => {
    const reg = await startRegistry();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const client = new Client(reg.url);
      const blob = pattern(12, 3 * 1024 * 1024 + 11);
      const digest = await client.pushBlob(REPO, blob);
      // A send is counted after its client already has every byte (earlier tests' too): let them settle.
      const settledCounters = async (): Promise<typeof sendFileCounters> => {
        for (let last = -1; last !== sendFileCounters.bodies; ) {
          last = sendFileCounters.bodies;
          await sleep(100);
        }
        return { ...sendFileCounters };
      };
      const sentBefore = await settledCounters();
      const { port } = new URL(reg.url);
      const get = (range?: string): Promise<{ status: number; body: Buffer; localPort: number }> =>
        new Promise((resolve, reject) => {
          const req = http.get(
            {
              host: '127.0.0.1',
              port,
              path: `/v2/${REPO}/blobs/${digest}`,
              agent,
              headers: range === undefined ? {} : { Range: range },
            },
            (res) => {
              const chunks: Buffer[] = [];
              const localPort = res.socket.localPort ?? 0;
              res.on('data', (c: Buffer) => chunks.push(c));
              res.on('end', () =>
                resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), localPort }),
              );
            },
          );
          req.on('error', reject);
        });
      const whole = await get();
      assert.equal(whole.status, 200);
      assert.ok(whole.body.equals(blob));
      const ranged = await get('bytes=12345-2000000');
      assert.equal(ranged.status, 206);
      assert.ok(ranged.body.equals(blob.subarray(12345, 2000001)));
      const tail = await get('bytes=-1500000');
      assert.ok(tail.body.equals(blob.subarray(blob.length - 1500000)));
      assert.equal(ranged.localPort, whole.localPort, 'the same connection served the next request');
      assert.equal(tail.localPort, whole.localPort);
      const sentAfter = await settledCounters();
      assert.equal(sentAfter.bodies - sentBefore.bodies, 3, 'all three bodies went by sendfile');
      assert.equal(sentAfter.bytes - sentBefore.bytes, blob.length + (2000001 - 12345) + 1500000);
    } finally {
      agent.destroy();
      await reg.close();
    }
  });
});

describe('streaming', () => {
  test('a 256 MiB blob goes up and down without the registry holding it in memory', async () => {
    const server = await spawnRegistry(['--root', tempDir('stream')]);
    try {
      const size = 256 * 1024 * 1024;
      const chunk = 1024 * 1024;
      const hash = createHash('sha256');
      const post = await request(server.url, 'POST', `/v2/${REPO}/blobs/uploads/`);
      const location = String(post.headers.location);
      const { port } = new URL(server.url);
      // Stream the body from a generator: the test does not hold it either.
      const patchStatus = await new Promise<number>((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port, method: 'PATCH', path: location, headers: { 'Content-Length': size } },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        let offset = 0;
        const block = pattern(0, chunk);
        const pump = (): void => {
          while (offset < size) {
            hash.update(block);
            offset += chunk;
            if (!req.write(block)) {
              req.once('drain', pump);
              return;
            }
          }
          req.end();
        };
        pump();
      });
      assert.equal(patchStatus, 202);
      const digest = `sha256:${hash.digest('hex')}`;
      const put = await request(server.url, 'PUT', `${location}?digest=${digest}`);
      assert.equal(put.status, 201, put.text);
      const down = createHash('sha256');
      let received = 0;
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: `/v2/${REPO}/blobs/${digest}` }, (res) => {
          res.on('data', (d: Buffer) => {
            down.update(d);
            received += d.length;
          });
          res.on('end', resolve);
          res.on('error', reject);
        });
      });
      assert.equal(received, size);
      assert.equal(`sha256:${down.digest('hex')}`, digest);
      const status = fs.readFileSync(`/proc/${server.child.pid}/status`, 'utf8');
      const peakKb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1]);
      assert.ok(peakKb < 200 * 1024, `registry peak RSS ${Math.round(peakKb / 1024)} MiB for a 256 MiB blob`);
    } finally {
      await server.stop();
    }
  });
});
