import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { run, STRATA_BIN } from '../helpers/daemon.js';
import { describeResult } from './helpers.js';

/**
 * pull, push, login, logout and run's pull-on-missing-image, driven through the real `strata`
 * binary against a scripted Engine API endpoint that records what the CLI sends (the Strata
 * daemon does not serve /auth and push yet; these commands only forward to the API anyway).
 */

interface Recorded {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function decodeAuth(header: string | string[] | undefined): unknown {
  const value = String(header ?? '');
  return JSON.parse(Buffer.from(value.replaceAll('-', '+').replaceAll('_', '/'), 'base64').toString('utf8'));
}

describe('strata pull/push/login/logout against a scripted API', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-registry-'));
  const socket = path.join(dir, 'api.sock');
  const configDir = path.join(dir, 'config');
  const requests: Recorded[] = [];
  let createCalls = 0;
  let server: http.Server;

  const stream = (res: http.ServerResponse, messages: object[]): void => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    for (const m of messages) res.write(`${JSON.stringify(m)}\r\n`);
    res.end();
  };

  before(async () => {
    server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        const url = decodeURIComponent(req.url ?? '');
        requests.push({ method: req.method ?? '', url, headers: req.headers, body });
        res.setHeader('Api-Version', '1.41');
        if (url === '/_ping') return res.end();
        if (url === '/v1.41/auth') {
          const creds = JSON.parse(body) as { password: string };
          if (creds.password !== 'testpass') {
            res.writeHead(401, { 'Content-Type': 'application/json' });
            return res.end(
              '{"message":"login attempt to http://127.0.0.1:5055/v2/ failed with status: 401 Unauthorized"}',
            );
          }
          res.writeHead(200, { 'Content-Type': 'application/json' });
          return res.end('{"IdentityToken":"","Status":"Login Succeeded"}');
        }
        if (url.startsWith('/v1.41/images/create?fromImage=127.0.0.1:5055/broken')) {
          return stream(res, [
            { status: 'Pulling from broken', id: 'v1' },
            { errorDetail: { message: 'manifest unknown' }, error: 'manifest unknown' },
          ]);
        }
        if (url.startsWith('/v1.41/images/create?fromImage=')) {
          return stream(res, [
            { status: 'Pulling from bb', id: 'v1' },
            { status: 'Pulling fs layer', progressDetail: {}, id: '5089dc0e2a81' },
            { status: 'Downloading', progressDetail: { current: 64, total: 128 }, id: '5089dc0e2a81' },
            { status: 'Pull complete', progressDetail: {}, id: '5089dc0e2a81' },
            { status: 'Digest: sha256:985a' },
            { status: 'Status: Downloaded newer image for 127.0.0.1:5055/bb:v1' },
          ]);
        }
        if (url.includes('/push?tag=denied')) {
          return stream(res, [
            { status: 'The push refers to repository [127.0.0.1:5055/bb]' },
            { errorDetail: { message: 'no basic auth credentials' }, error: 'no basic auth credentials' },
          ]);
        }
        if (url.includes('/push?tag=')) {
          return stream(res, [
            { status: 'The push refers to repository [127.0.0.1:5055/bb]' },
            { status: 'Preparing', progressDetail: {}, id: 'cf54fcc483f6' },
            { status: 'Pushing', progressDetail: { current: 41472, total: 1982401 }, id: 'cf54fcc483f6' },
            { status: 'Pushed', progressDetail: {}, id: 'cf54fcc483f6' },
            { status: 'v1: digest: sha256:ab13 size: 527' },
            { progressDetail: {}, aux: { Tag: 'v1', Digest: 'sha256:ab13', Size: 527 } },
          ]);
        }
        if (url.startsWith('/v1.41/containers/create')) {
          createCalls++;
          if (createCalls === 1) {
            res.writeHead(404, { 'Content-Type': 'application/json' });
            return res.end('{"message":"No such image: 127.0.0.1:5055/fresh:v2"}');
          }
          res.writeHead(201, { 'Content-Type': 'application/json' });
          return res.end(`{"Id":"${'c'.repeat(64)}","Warnings":["memory limit ignored"]}`);
        }
        res.writeHead(404, { 'Content-Type': 'application/json' });
        res.end('{"message":"page not found"}');
      });
    });
    await new Promise<void>((r) => server.listen(socket, r));
  });

  after(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const strata = (args: string[], input?: string) =>
    run(process.execPath, [STRATA_BIN, ...args], {
      env: { STRATA_HOST: `unix://${socket}`, STRATA_CONFIG: configDir },
      input,
    });

  it('login sends /auth and stores credentials with mode 0600; a bad password stores nothing', async () => {
    const bad = await strata(['login', '-u', 'testuser', '--password-stdin', '127.0.0.1:5055'], 'wrong\n');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^Error response from daemon: login attempt .* 401 Unauthorized/);
    assert.equal(fs.existsSync(path.join(configDir, 'config.json')), false);

    const r = await strata(['login', '-u', 'testuser', '--password-stdin', '127.0.0.1:5055'], 'testpass\n');
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(r.stdout, 'Login Succeeded\n');
    const auth = requests.filter((q) => q.url === '/v1.41/auth').at(-1)!;
    assert.deepEqual(JSON.parse(auth.body), {
      username: 'testuser',
      password: 'testpass',
      serveraddress: '127.0.0.1:5055',
    });
    const file = path.join(configDir, 'config.json');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600);
    const config = JSON.parse(fs.readFileSync(file, 'utf8')) as { auths: Record<string, { auth: string }> };
    assert.equal(config.auths['127.0.0.1:5055'].auth, Buffer.from('testuser:testpass').toString('base64'));

    const noUser = await strata(['login', '--password-stdin'], 'x\n');
    assert.equal(noUser.code, 1);
    assert.match(noUser.stderr, /Must provide --username with --password-stdin/);
  });

  it('pull sends the normalised reference with X-Registry-Auth and prints plain progress', async () => {
    const r = await strata(['pull', '127.0.0.1:5055/bb:v1']);
    assert.equal(r.code, 0, describeResult(r));
    const req = requests.at(-1)!;
    assert.equal(req.method, 'POST');
    assert.equal(req.url, '/v1.41/images/create?fromImage=127.0.0.1:5055/bb&tag=v1');
    assert.deepEqual(decodeAuth(req.headers['x-registry-auth']), {
      username: 'testuser',
      password: 'testpass',
      serveraddress: '127.0.0.1:5055',
    });
    assert.equal(
      r.stdout,
      'v1: Pulling from bb\n5089dc0e2a81: Pulling fs layer\n5089dc0e2a81: Pull complete\nDigest: sha256:985a\n' +
        'Status: Downloaded newer image for 127.0.0.1:5055/bb:v1\n127.0.0.1:5055/bb:v1\n',
    );

    const hub = await strata(['pull', 'bb']);
    assert.equal(hub.code, 0, describeResult(hub));
    assert.match(hub.stdout, /^Using default tag: latest\n/);
    assert.match(hub.stdout, /\ndocker\.io\/library\/bb:latest\n$/);
    assert.equal(requests.at(-1)!.url, '/v1.41/images/create?fromImage=docker.io/library/bb&tag=latest');
    assert.equal(requests.at(-1)!.headers['x-registry-auth'], 'e30=');

    const broken = await strata(['pull', '127.0.0.1:5055/broken:v1']);
    assert.equal(broken.code, 1);
    assert.equal(broken.stderr, 'manifest unknown\n');
  });

  it('push posts to /images/{repo}/push and fails on an in-stream error', async () => {
    const r = await strata(['push', '127.0.0.1:5055/bb:v1']);
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(requests.at(-1)!.url, '/v1.41/images/127.0.0.1:5055/bb/push?tag=v1');
    assert.ok(requests.at(-1)!.headers['x-registry-auth']);
    assert.equal(
      r.stdout,
      'The push refers to repository [127.0.0.1:5055/bb]\ncf54fcc483f6: Preparing\ncf54fcc483f6: Pushed\nv1: digest: sha256:ab13 size: 527\n',
    );
    const denied = await strata(['push', '127.0.0.1:5055/bb:denied']);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /no basic auth credentials/);
  });

  it('create pulls a missing image, then retries', async () => {
    const r = await strata(['create', '127.0.0.1:5055/fresh:v2']);
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(r.stdout, `${'c'.repeat(64)}\n`);
    assert.match(r.stderr, /^Unable to find image '127\.0\.0\.1:5055\/fresh:v2' locally\n/);
    assert.match(r.stderr, /WARNING: memory limit ignored/);
    const urls = requests.slice(-3).map((q) => q.url);
    assert.deepEqual(urls, [
      '/v1.41/containers/create',
      '/v1.41/images/create?fromImage=127.0.0.1:5055/fresh&tag=v2',
      '/v1.41/containers/create',
    ]);
  });

  it('logout forgets the credentials', async () => {
    const r = await strata(['logout', '127.0.0.1:5055']);
    assert.equal(r.stdout, 'Removing login credentials for 127.0.0.1:5055\n');
    const config = JSON.parse(fs.readFileSync(path.join(configDir, 'config.json'), 'utf8')) as {
      auths: object;
    };
    assert.deepEqual(config.auths, {});
    assert.equal((await strata(['logout', '127.0.0.1:5055'])).stdout, 'Not logged in to 127.0.0.1:5055\n');
  });
});
