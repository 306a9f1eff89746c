import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  credentialsFor,
  encodeRegistryAuth,
  loadConfig,
  removeCredentials,
  storeCredentials,
} from '../../src/cli/auth.js';
import { EngineClient, encodeQuery, escapePath, parseDaemonHost, readBody } from '../../src/cli/client.js';
import { connectToDaemon } from '../../src/cli/connect.js';
import { ApiError, DaemonUnreachableError } from '../../src/cli/errors.js';
import {
  familiarName,
  formatReference,
  parseReference,
  repositoryName,
  withDefaultTag,
} from '../../src/cli/reference.js';

describe('daemon addresses and queries', () => {
  it('parses -H values', () => {
    assert.deepEqual(parseDaemonHost('unix:///run/x.sock'), { kind: 'unix', path: '/run/x.sock' });
    assert.deepEqual(parseDaemonHost('/tmp/y.sock'), { kind: 'unix', path: '/tmp/y.sock' });
    assert.deepEqual(parseDaemonHost('tcp://10.0.0.1:2375'), { kind: 'tcp', host: '10.0.0.1', port: 2375 });
    assert.deepEqual(parseDaemonHost('localhost:2376'), { kind: 'tcp', host: 'localhost', port: 2376 });
    assert.deepEqual(parseDaemonHost('tcp://[::1]:2375'), { kind: 'tcp', host: '::1', port: 2375 });
    assert.throws(() => parseDaemonHost('ftp:/nope'));
  });

  it('encodes queries as the docker CLI does', () => {
    assert.equal(encodeQuery({ all: true, size: false, limit: undefined }), '?all=1');
    assert.equal(encodeQuery({ names: ['a:1', 'b'], t: 3 }), '?names=a%3A1&names=b&t=3');
    assert.equal(
      encodeQuery({ filters: '{"name":{"web":true}}' }),
      '?filters=%7B%22name%22%3A%7B%22web%22%3Atrue%7D%7D',
    );
    assert.equal(encodeQuery({}), '');
    assert.equal(escapePath('127.0.0.1:5055/bb'), '127.0.0.1:5055/bb');
    assert.equal(escapePath('a b?#'), 'a%20b%3F%23');
  });
});

describe('EngineClient against a fake daemon', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-client-'));
  const socket = path.join(dir, 'fake.sock');
  const seen: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string }[] = [];
  let server: http.Server;

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        seen.push({ method: req.method, url: req.url, headers: req.headers, body });
        res.setHeader('Api-Version', '1.40');
        if (req.url === '/_ping') return res.end();
        if (req.url?.includes('/containers/missing/json')) {
          res.writeHead(404, { 'Content-Type': 'application/json' });
          return res.end('{"message":"No such container: missing"}');
        }
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end('{"ok":true}');
      });
    });
    // Hijacked requests: answer 101, echo what the client sends, and send a frame of our own.
    server.on('upgrade', (req, sock: net.Socket, head: Buffer) => {
      if (req.url?.includes('/containers/refused/')) {
        sock.end(
          'HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 34\r\n\r\n{"message":"container not running"}',
        );
        return;
      }
      sock.write(
        'HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nhello ',
      );
      const received: Buffer[] = [head];
      sock.on('data', (c: Buffer) => received.push(c));
      sock.on('end', () => {
        // Half-closed by the client: keep writing, then close.
        sock.end(`got:${Buffer.concat(received).toString()}`);
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('pings unversioned, then uses the lower of our and the daemon API version', async () => {
    const client = await connectToDaemon({ host: `unix://${socket}` });
    try {
      assert.equal(client.apiVersion, '1.40');
      await client.json('GET', '/info');
      assert.equal(seen.at(-2)?.method, 'HEAD');
      assert.equal(seen.at(-2)?.url, '/_ping');
      assert.equal(seen.at(-1)?.url, '/v1.40/info');
    } finally {
      client.close();
    }
  });

  it('sends JSON bodies and turns error answers into "Error response from daemon"', async () => {
    const client = new EngineClient({ kind: 'unix', path: socket });
    try {
      assert.deepEqual(
        await client.json('POST', '/containers/create', { json: { Image: 'bb' }, query: { name: 'x' } }),
        {
          ok: true,
        },
      );
      const last = seen.at(-1)!;
      assert.equal(last.url, '/v1.41/containers/create?name=x');
      assert.equal(last.headers['content-type'], 'application/json');
      assert.equal(last.body, '{"Image":"bb"}');
      await assert.rejects(
        client.json('GET', '/containers/missing/json'),
        (err: unknown) =>
          err instanceof ApiError &&
          err.status === 404 &&
          err.message === 'Error response from daemon: No such container: missing',
      );
    } finally {
      client.close();
    }
  });

  it('hijacks: 101, raw stream both ways, half-close keeps the read side open', async () => {
    const client = new EngineClient({ kind: 'unix', path: socket });
    const sock = await client.hijack('POST', '/containers/c1/attach', {
      query: { stdin: true, stream: true },
    });
    sock.end('typed input');
    const answer = (await readBody(sock)).toString();
    assert.equal(answer, 'hello got:typed input');
    const req = seen.at(-1);
    assert.notEqual(
      req?.url,
      '/v1.41/containers/c1/attach?stdin=1&stream=1',
      'upgrade requests do not reach the request handler',
    );
    client.close();
  });

  it('reports a refused hijack with the daemon message', async () => {
    const client = new EngineClient({ kind: 'unix', path: socket });
    await assert.rejects(
      client.hijack('POST', '/containers/refused/attach'),
      (err: unknown) =>
        err instanceof ApiError && err.status === 409 && /container not running/.test(err.message),
    );
    client.close();
  });

  it('does not start a daemon for an explicit address that does not answer', async () => {
    const missing = path.join(dir, 'nobody-here.sock');
    let notified = false;
    await assert.rejects(
      connectToDaemon({
        host: `unix://${missing}`,
        notify: () => {
          notified = true;
        },
      }),
      (err: unknown) =>
        err instanceof DaemonUnreachableError &&
        err.message.startsWith(`Cannot connect to the Strata daemon at unix://${missing}.`),
    );
    assert.equal(notified, false);
    assert.equal(fs.existsSync(missing), false);
  });
});

describe('EngineClient over TCP', () => {
  it('speaks the same API on tcp://host:port, hijack included', async () => {
    const server = http.createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ url: req.url, host: req.headers.host }));
    });
    server.on('upgrade', (_req, sock: net.Socket) => {
      sock.end('HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\nover tcp');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    const client = new EngineClient(parseDaemonHost(`tcp://127.0.0.1:${port}`));
    try {
      assert.deepEqual(await client.json('GET', '/version'), {
        url: '/v1.41/version',
        host: `127.0.0.1:${port}`,
      });
      const sock = await client.hijack('POST', '/exec/x/start', { json: { Detach: false, Tty: true } });
      sock.end();
      assert.equal((await readBody(sock)).toString(), 'over tcp');
    } finally {
      client.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('EngineClient whole-body answers', () => {
  // Raw answers, so framing the client must handle is sent exactly: chunked, empty chunked, cut off,
  // close-delimited.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-raw-'));
  const socket = path.join(dir, 'raw.sock');
  let server: net.Server;
  const requests: string[] = [];

  before(async () => {
    const { createServer } = await import('node:net');
    server = createServer((conn) => {
      let text = '';
      conn.on('data', (c: Buffer) => {
        text += c.toString('latin1');
        if (!text.includes('\r\n\r\n')) return;
        requests.push(text);
        const line = text.split('\r\n')[0];
        const json = 'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n';
        if (line.startsWith('HEAD /_ping')) {
          // A HEAD answer announces a length but has no body; the connection stays open.
          conn.write('HTTP/1.1 200 OK\r\nApi-Version: 1.39\r\nOstype: linux\r\nContent-Length: 2\r\n\r\n');
        } else if (line.includes('/chunked')) {
          conn.write(`${json}Transfer-Encoding: chunked\r\n\r\n4\r\n[1,2\r\n`);
          setTimeout(() => conn.write('3\r\n,3]\r\n0\r\n\r\n'), 20);
        } else if (line.includes('/empty-chunked')) {
          conn.write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
        } else if (line.includes('/cut')) {
          conn.end(`${json}Content-Length: 100\r\n\r\n{"partial":`);
        } else if (line.includes('/until-close')) {
          conn.end(`${json}\r\n{"closed":true}`);
        } else if (line.includes('/gone')) {
          conn.end(`HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n`);
        } else {
          conn.write(`HTTP/1.1 204 No Content\r\n\r\n`);
        }
      });
      conn.on('error', () => undefined);
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reads chunked, empty, close-delimited and bodiless answers; refuses cut-off ones', async () => {
    const client = new EngineClient({ kind: 'unix', path: socket });
    assert.deepEqual(await client.ping(), { apiVersion: '1.39', osType: 'linux', features: [] });
    assert.match(requests.at(-1) ?? '', /^HEAD \/_ping HTTP\/1\.1\r\n/);
    assert.match(requests.at(-1) ?? '', /\r\nConnection: close\r\n/);
    assert.deepEqual(await client.json('GET', '/chunked'), [1, 2, 3]);
    assert.equal(await client.json('GET', '/empty-chunked'), undefined);
    assert.deepEqual(await client.json('GET', '/until-close'), { closed: true });
    assert.equal(await client.call('POST', '/containers/x/start'), 204);
    assert.match(requests.at(-1) ?? '', /\r\nContent-Length: 0\r\n/);
    await assert.rejects(client.json('GET', '/cut'), /closed the connection in the middle of its answer/);
    await assert.rejects(
      client.json('GET', '/gone'),
      (err: unknown) =>
        err instanceof ApiError && err.status === 500 && /Internal Server Error/.test(err.message),
    );
    client.close();
  });
});

describe('image references', () => {
  it('normalises like the docker CLI', () => {
    const cases: [string, string, string][] = [
      ['bb', 'docker.io/library/bb', 'bb'],
      ['bb:latest', 'docker.io/library/bb:latest', 'bb:latest'],
      ['user/app:1', 'docker.io/user/app:1', 'user/app:1'],
      ['127.0.0.1:5055/bb:v1', '127.0.0.1:5055/bb:v1', '127.0.0.1:5055/bb:v1'],
      ['localhost/x', 'localhost/x', 'localhost/x'],
      ['index.docker.io/library/bb', 'docker.io/library/bb', 'bb'],
    ];
    for (const [input, full, familiar] of cases) {
      const ref = parseReference(input);
      assert.equal(formatReference(ref), full, input);
      assert.equal(familiarName(ref), familiar, input);
    }
    const digest = parseReference(`bb@sha256:${'a'.repeat(64)}`);
    assert.equal(digest.digest, `sha256:${'a'.repeat(64)}`);
    assert.equal(repositoryName(digest), 'docker.io/library/bb');
    assert.equal(withDefaultTag(parseReference('bb')).tag, 'latest');
    assert.throws(() => parseReference('BB'), /must be lowercase/);
    assert.throws(() => parseReference('a:b:c'), /invalid reference format/);
  });
});

describe('registry credentials', () => {
  it('stores ~/.strata/config.json with mode 0600 and builds X-Registry-Auth', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-auth-'));
    const saved = process.env.STRATA_CONFIG;
    process.env.STRATA_CONFIG = dir;
    try {
      assert.equal(encodeRegistryAuth(undefined), 'e30=');
      storeCredentials('127.0.0.1:5055', 'testuser', 'p+ss/wd?');
      const file = path.join(dir, 'config.json');
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      assert.equal(
        loadConfig().auths?.['127.0.0.1:5055']?.auth,
        Buffer.from('testuser:p+ss/wd?').toString('base64'),
      );
      const creds = credentialsFor('http://127.0.0.1:5055/');
      assert.deepEqual(creds, {
        username: 'testuser',
        password: 'p+ss/wd?',
        serveraddress: '127.0.0.1:5055',
      });
      const header = encodeRegistryAuth(creds);
      assert.doesNotMatch(header, /[+/]/);
      const decoded = JSON.parse(
        Buffer.from(header.replaceAll('-', '+').replaceAll('_', '/'), 'base64').toString(),
      ) as object;
      assert.deepEqual(decoded, creds);
      storeCredentials('docker.io', 'hubuser', 'x');
      assert.ok(loadConfig().auths?.['https://index.docker.io/v1/']);
      assert.equal(removeCredentials('127.0.0.1:5055'), true);
      assert.equal(removeCredentials('127.0.0.1:5055'), false);
      assert.equal(credentialsFor('127.0.0.1:5055'), undefined);
    } finally {
      if (saved === undefined) delete process.env.STRATA_CONFIG;
      else process.env.STRATA_CONFIG = saved;
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
