import assert from 'node:assert/strict';
import * as http from 'node:http';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import {
  busyboxTar,
  engineRequest,
  loadImage,
  RegistryProcess,
  RegistryProxy,
  statusLines,
  streamError,
} from './helpers.js';

/**
 * Registry authentication through the daemon, against the Strata registry with Docker token auth:
 * users alice and bob each own `<user>/**`; nobody may pull anonymously. `docker login` checks the
 * password (401 when wrong), pushes without credentials fail inside the stream, and a token
 * granted for one repository does not open another.
 */
const USER_NS = '$' + '{user}/**';
let registry: RegistryProcess;
let proxy: RegistryProxy;
let d: TestDaemon;
let R: string;

before(async () => {
  registry = await RegistryProcess.strata({
    config: {
      auth: {
        service: 'strata-dist-test',
        issuer: 'strata-dist-test',
        anonymousPull: false,
        users: {
          alice: { password: bcrypt.hashSync('alice-pw', 4), groups: [] },
          bob: { password: bcrypt.hashSync('bob-pw', 4), groups: [] },
        },
        acl: [{ repository: USER_NS, users: ['*'], groups: [], actions: ['*'] }],
      },
    },
  });
  proxy = await RegistryProxy.start(registry.port);
  R = proxy.address;
  d = await startDaemon();
  const bb = await busyboxTar();
  await loadImage(d, { tag: `${R}/alice/bb:v1`, layers: [bb], label: 'alice' });
  await d.dockerOk(['tag', `${R}/alice/bb:v1`, `${R}/bob/bb:v1`]);
});

after(async () => {
  await d?.cleanup();
  await proxy?.close();
  await registry?.stop();
});

async function login(
  user: string,
  password: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return d.docker(['login', '-u', user, '--password-stdin', R], { input: `${password}\n` });
}

/** A token from the registry's token endpoint, as the docker CLI would never show it. */
function registryToken(user: string, password: string, scope: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const query = new URLSearchParams({ service: 'strata-dist-test', scope });
    http
      .get(
        {
          host: '127.0.0.1',
          port: registry.port,
          path: `/token?${query}`,
          headers: { Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}` },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve((JSON.parse(Buffer.concat(chunks).toString()) as { token: string }).token),
          );
        },
      )
      .on('error', reject);
  });
}

describe('registry authentication', () => {
  test('docker login with a wrong password fails with 401; the right one succeeds', async () => {
    const wrong = await login('alice', 'not-her-password');
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      new RegExp(`login attempt to http://${R}/v2/ failed with status: 401 Unauthorized`),
    );
    const raw = await engineRequest(d, 'POST', '/auth', {
      body: { username: 'alice', password: 'nope', serveraddress: R },
    });
    assert.equal(raw.status, 401);
    assert.match(String(raw.messages[0]?.message), /401 Unauthorized/);
    const nobody = await engineRequest(d, 'POST', '/auth', {
      body: { username: 'mallory', password: 'x', serveraddress: `http://${R}/` },
    });
    assert.equal(nobody.status, 401);

    const right = await login('alice', 'alice-pw');
    assert.equal(right.code, 0, right.stderr);
    assert.match(right.stdout, /Login Succeeded/);
  });

  test('a push without credentials fails inside the stream', async () => {
    const res = await engineRequest(d, 'POST', `/images/${R}/alice/bb/push?tag=v1`, { auth: 'e30=' });
    assert.equal(res.status, 200);
    assert.equal(res.messages[0]?.status, `The push refers to repository [${R}/alice/bb]`);
    assert.equal(streamError(res.messages), 'no basic auth credentials');
    assert.ok(!statusLines(res.messages).some((l) => l.endsWith('Pushed')));

    const cli = await d.docker(['push', `${R}/alice/bb:v1`], {
      env: { DOCKER_CONFIG: '/nonexistent-strata-test' },
    });
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /no basic auth credentials/);
  });

  test('logged in, a user pushes and pulls her own repository, and is denied another', async () => {
    assert.equal((await login('alice', 'alice-pw')).code, 0);
    const pushed = await d.dockerOk(['push', `${R}/alice/bb:v1`]);
    assert.match(pushed, /v1: digest: sha256:[a-f0-9]{64}/);
    await d.dockerOk(['rmi', `${R}/alice/bb:v1`]);
    const pulled = await d.dockerOk(['pull', `${R}/alice/bb:v1`]);
    assert.match(pulled, /Status: (Downloaded newer image|Image is up to date) for /);

    const denied = await d.docker(['push', `${R}/bob/bb:v1`]);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /denied|unauthorized/);
  });

  test('a token for repository A does not pull repository B', async () => {
    assert.equal((await login('bob', 'bob-pw')).code, 0);
    await d.dockerOk(['push', `${R}/bob/bb:v1`]);

    const token = await registryToken('alice', 'alice-pw', 'repository:alice/bb:pull');
    const withToken = { registrytoken: token };
    const own = await engineRequest(
      d,
      'POST',
      `/images/create?fromImage=${encodeURIComponent(`${R}/alice/bb`)}&tag=v1`,
      {
        auth: withToken,
      },
    );
    assert.equal(own.status, 200, own.raw);
    assert.equal(streamError(own.messages), null, own.raw);

    const other = await engineRequest(
      d,
      'POST',
      `/images/create?fromImage=${encodeURIComponent(`${R}/bob/bb`)}&tag=v1`,
      {
        auth: withToken,
      },
    );
    assert.equal(other.status, 404, other.raw);
    assert.match(
      String(other.messages[0]?.message),
      new RegExp(
        `^pull access denied for ${R}/bob/bb, repository does not exist or may require 'docker login'`,
      ),
    );

    // And alice's password does not open bob's repository either.
    assert.equal((await login('alice', 'alice-pw')).code, 0);
    const cli = await d.docker(['pull', `${R}/bob/bb:v1`]);
    assert.equal(cli.code, 1);
    assert.match(cli.stderr, /pull access denied/);
  });
});
