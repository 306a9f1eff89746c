import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { SignJWT } from 'jose';
import type { ConfigFile } from '../../src/registry/config.js';
import { selfSignedCertificate } from '../helpers/certs.js';
import {
  Client,
  errorCode,
  type Response,
  request,
  run,
  sha256,
  spawnRegistry,
  startRegistry,
  type TestRegistry,
  tempDir,
  which,
} from './helpers.js';

/**
 * Access control: users with bcrypt hashes, the ACL, Docker token auth (challenge → token endpoint →
 * bearer), Basic auth, anonymous pulls, and TLS. Each test states who asks for what and checks the
 * exact status and error code the registry answers.
 */
const hash = (password: string): string => bcrypt.hashSync(password, 4);
const USER_NS = '$' + '{user}/**';
const config: ConfigFile = {
  auth: {
    service: 'strata-test',
    issuer: 'strata-test',
    tokenTtlSeconds: 300,
    anonymousPull: ['public/**'],
    users: {
      alice: { password: hash('alice-pw'), groups: ['dev'] },
      bob: { password: hash('bob-pw'), groups: [] },
    },
    acl: [
      { repository: 'team/*', users: [], groups: ['dev'], actions: ['pull', 'push'] },
      { repository: USER_NS, users: ['*'], groups: [], actions: ['*'] },
      { repository: 'public/**', users: ['*'], groups: [], actions: ['pull'] },
      { repository: 'public/**', users: ['alice'], groups: [], actions: ['push'] },
    ],
  },
};

let reg: TestRegistry;
const basic = (user: string, password: string): Record<string, string> => ({
  Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
});
const bearer = (token: string): Record<string, string> => ({ Authorization: `Bearer ${token}` });

async function token(scopes: string[], user?: string, password?: string): Promise<Response> {
  const q = new URLSearchParams({ service: 'strata-test' });
  for (const s of scopes) q.append('scope', s);
  return request(reg.url, 'GET', `/token?${q.toString()}`, {
    headers: user === undefined ? {} : basic(user, password ?? ''),
  });
}
async function tokenFor(scopes: string[], user?: string, password?: string): Promise<string> {
  const res = await token(scopes, user, password);
  assert.equal(res.status, 200, res.text);
  return (res.json as { token: string }).token;
}
function claims(jwt: string): {
  sub: string;
  aud: string;
  access: { type: string; name: string; actions: string[] }[];
} {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8'));
}
function challenge(res: Response): Record<string, string> {
  const header = String(res.headers['www-authenticate'] ?? '');
  assert.match(header, /^Bearer /);
  return Object.fromEntries([...header.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
}

before(async () => {
  reg = await startRegistry(config);
});
after(async () => {
  await reg.close();
});

describe('challenges and credentials', () => {
  test('GET /v2/ without credentials is 401 with a Bearer challenge naming realm and service', async () => {
    const res = await request(reg.url, 'GET', '/v2/');
    assert.equal(res.status, 401);
    assert.equal(errorCode(res), 'UNAUTHORIZED');
    const c = challenge(res);
    assert.equal(c.realm, `${reg.url}/token`);
    assert.equal(c.service, 'strata-test');
  });

  test('a wrong password is 401, on the token endpoint and with Basic auth', async () => {
    assert.equal((await token(['repository:alice/app:pull'], 'alice', 'nope')).status, 401);
    assert.equal((await token([], 'mallory', 'alice-pw')).status, 401);
    const res = await request(reg.url, 'GET', '/v2/', { headers: basic('alice', 'wrong') });
    assert.equal(res.status, 401);
    assert.equal(errorCode(res), 'UNAUTHORIZED');
  });

  test('the right password opens /v2/ with Basic auth and with a token (docker login)', async () => {
    assert.equal(
      (await request(reg.url, 'GET', '/v2/', { headers: basic('alice', 'alice-pw') })).status,
      200,
    );
    const jwt = await tokenFor([], 'alice', 'alice-pw');
    assert.equal((await request(reg.url, 'GET', '/v2/', { headers: bearer(jwt) })).status, 200);
  });

  test('a 401 for an operation carries the scope it needs', async () => {
    const res = await request(reg.url, 'POST', '/v2/alice/app/blobs/uploads/');
    assert.equal(res.status, 401);
    assert.equal(challenge(res).scope, 'repository:alice/app:push');
  });

  test('OAuth2 password grant (POST /token) issues a token too', async () => {
    const res = await request(reg.url, 'POST', '/token', {
      body: 'grant_type=password&username=alice&password=alice-pw&service=strata-test&scope=repository%3Aalice%2Fapp%3Apull',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    assert.equal(res.status, 200, res.text);
    const body = res.json as { access_token: string; scope: string };
    assert.equal(body.scope, 'repository:alice/app:pull');
    assert.deepEqual(claims(body.access_token).access, [
      { type: 'repository', name: 'alice/app', actions: ['pull'] },
    ]);
  });
});

describe('grants follow the ACL', () => {
  test('a token carries exactly the requested actions the ACL grants', async () => {
    const jwt = await tokenFor(
      [
        'repository:alice/app:pull,push,delete',
        'repository:team/x:pull,push,delete',
        'repository:bob/x:pull',
      ],
      'alice',
      'alice-pw',
    );
    const c = claims(jwt);
    assert.equal(c.sub, 'alice');
    assert.equal(c.aud, 'strata-test');
    assert.deepEqual(c.access, [
      { type: 'repository', name: 'alice/app', actions: ['pull', 'push', 'delete'] },
      { type: 'repository', name: 'team/x', actions: ['pull', 'push'] },
    ]);
  });

  test('push with a token works inside the grant', async () => {
    const jwt = await tokenFor(['repository:alice/app:pull,push'], 'alice', 'alice-pw');
    const client = new Client(reg.url, bearer(jwt));
    const image = await client.pushImage('alice/app', 'v1');
    const get = await client.req('GET', `/v2/alice/app/manifests/v1`);
    assert.equal(get.status, 200);
    assert.equal(get.headers['docker-content-digest'], image.digest);
  });

  test('push outside the ACL is 403 DENIED, with Basic auth and with a token', async () => {
    const viaBasic = await request(reg.url, 'POST', '/v2/alice/app/blobs/uploads/', {
      headers: basic('bob', 'bob-pw'),
    });
    assert.equal(viaBasic.status, 403);
    assert.equal(errorCode(viaBasic), 'DENIED');
    const jwt = await tokenFor(['repository:alice/app:pull,push'], 'bob', 'bob-pw');
    assert.deepEqual(claims(jwt).access, [], 'the token endpoint grants bob nothing on alice/app');
    const viaToken = await request(reg.url, 'POST', '/v2/alice/app/blobs/uploads/', { headers: bearer(jwt) });
    assert.equal(viaToken.status, 403);
    assert.equal(errorCode(viaToken), 'DENIED');
    const team = await request(reg.url, 'POST', '/v2/team/x/blobs/uploads/', {
      headers: basic('bob', 'bob-pw'),
    });
    assert.equal(team.status, 403, 'bob is not in group dev');
    const del = await request(reg.url, 'DELETE', '/v2/team/x/manifests/latest', {
      headers: basic('alice', 'alice-pw'),
    });
    assert.equal(del.status, 403, 'dev may pull and push team/*, not delete');
    assert.equal(errorCode(del), 'DENIED');
  });

  test('each user owns their own namespace and nobody else’s', async () => {
    const bob = new Client(reg.url, basic('bob', 'bob-pw'));
    await bob.pushImage('bob/tools', 'latest', 1);
    const alice = await request(reg.url, 'GET', '/v2/bob/tools/manifests/latest', {
      headers: basic('alice', 'alice-pw'),
    });
    assert.equal(alice.status, 403);
  });

  test('a token for one repository is useless for another', async () => {
    const jwt = await tokenFor(['repository:alice/app:pull'], 'alice', 'alice-pw');
    assert.equal(
      (await request(reg.url, 'GET', '/v2/alice/app/tags/list', { headers: bearer(jwt) })).status,
      200,
    );
    // alice may read alice/other, but this token does not say so: ask again (401, insufficient scope).
    const other = await request(reg.url, 'GET', '/v2/alice/other/tags/list', { headers: bearer(jwt) });
    assert.equal(other.status, 401);
    assert.equal(challenge(other).error, 'insufficient_scope');
    assert.equal(challenge(other).scope, 'repository:alice/other:pull');
    // Nor does it allow more actions on the same repository.
    const push = await request(reg.url, 'POST', '/v2/alice/app/blobs/uploads/', { headers: bearer(jwt) });
    assert.equal(push.status, 401);
    // bob's token for his repository does nothing for alice's.
    const bobs = await tokenFor(['repository:bob/tools:pull'], 'bob', 'bob-pw');
    const cross = await request(reg.url, 'GET', '/v2/alice/app/manifests/v1', { headers: bearer(bobs) });
    assert.equal(cross.status, 403);
    assert.equal(errorCode(cross), 'DENIED');
  });

  test('forged and tampered tokens are 401', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const forged = await new SignJWT({
      access: [{ type: 'repository', name: 'alice/app', actions: ['pull'] }],
    })
      .setProtectedHeader({ alg: 'ES256' })
      .setIssuer('strata-test')
      .setAudience('strata-test')
      .setSubject('alice')
      .setExpirationTime('5m')
      .sign(privateKey);
    const res = await request(reg.url, 'GET', '/v2/alice/app/tags/list', { headers: bearer(forged) });
    assert.equal(res.status, 401);
    const real = await tokenFor(['repository:bob/tools:pull'], 'bob', 'bob-pw');
    const [h, , s] = real.split('.');
    const payload = Buffer.from(
      JSON.stringify({
        ...claims(real),
        access: [{ type: 'repository', name: 'alice/app', actions: ['pull'] }],
      }),
    ).toString('base64url');
    const tampered = await request(reg.url, 'GET', '/v2/alice/app/tags/list', {
      headers: bearer(`${h}.${payload}.${s}`),
    });
    assert.equal(tampered.status, 401);
  });

  test('cross-repository mount needs pull on the source; without it the registry starts an upload', async () => {
    const alice = new Client(reg.url, basic('alice', 'alice-pw'));
    const digest = await alice.pushBlob('alice/app', 'secret layer');
    const bob = await request(
      reg.url,
      'POST',
      `/v2/bob/tools/blobs/uploads/?mount=${digest}&from=alice/app`,
      {
        headers: basic('bob', 'bob-pw'),
      },
    );
    assert.equal(bob.status, 202, 'no mount for bob');
    assert.equal(
      (await request(reg.url, 'HEAD', `/v2/bob/tools/blobs/${digest}`, { headers: basic('bob', 'bob-pw') }))
        .status,
      404,
    );
    const mine = await request(
      reg.url,
      'POST',
      `/v2/alice/copy/blobs/uploads/?mount=${digest}&from=alice/app`,
      {
        headers: basic('alice', 'alice-pw'),
      },
    );
    assert.equal(mine.status, 201);
  });
});

describe('anonymous access', () => {
  let published: string;
  before(async () => {
    const alice = new Client(reg.url, basic('alice', 'alice-pw'));
    published = (await alice.pushImage('public/busybox', 'latest', 1)).digest;
  });

  test('anonymous pull of a public repository works without any token', async () => {
    const res = await request(reg.url, 'GET', '/v2/public/busybox/manifests/latest');
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-content-digest'], published);
  });

  test('anonymous push, and anonymous pull of private repositories, are 401', async () => {
    const push = await request(reg.url, 'POST', '/v2/public/busybox/blobs/uploads/');
    assert.equal(push.status, 401);
    assert.equal(challenge(push).scope, 'repository:public/busybox:push');
    assert.equal((await request(reg.url, 'GET', '/v2/alice/app/tags/list')).status, 401);
  });

  test('an anonymous token carries the anonymous grants only', async () => {
    const jwt = await tokenFor(['repository:public/busybox:pull,push', 'repository:alice/app:pull']);
    assert.deepEqual(claims(jwt).access, [{ type: 'repository', name: 'public/busybox', actions: ['pull'] }]);
    assert.equal(claims(jwt).sub, '');
    assert.equal(
      (await request(reg.url, 'GET', '/v2/public/busybox/tags/list', { headers: bearer(jwt) })).status,
      200,
    );
  });

  test('the docker flow: 401 challenge → token from the realm with the challenge scope → retry', async () => {
    const first = await request(reg.url, 'GET', '/v2/alice/app/manifests/v1');
    assert.equal(first.status, 401);
    const c = challenge(first);
    const q = new URLSearchParams({ service: c.service ?? '', scope: c.scope ?? '' });
    const tokenRes = await request(c.realm ?? '', 'GET', `${new URL(c.realm ?? '').pathname}?${q}`, {
      headers: basic('alice', 'alice-pw'),
    });
    const jwt = (tokenRes.json as { token: string }).token;
    assert.equal(
      (await request(reg.url, 'GET', '/v2/alice/app/manifests/v1', { headers: bearer(jwt) })).status,
      200,
    );
  });

  test('the catalog shows each caller only what it may pull', async () => {
    const list = async (headers: Record<string, string>): Promise<string[]> => {
      const res = await request(reg.url, 'GET', '/v2/_catalog', { headers });
      assert.equal(res.status, 200, res.text);
      return (res.json as { repositories: string[] }).repositories;
    };
    const alice = await list(basic('alice', 'alice-pw'));
    assert.ok(alice.includes('alice/app') && alice.includes('public/busybox'));
    assert.ok(!alice.includes('bob/tools'));
    const bob = await list(basic('bob', 'bob-pw'));
    assert.ok(bob.includes('bob/tools') && !bob.includes('alice/app'));
    assert.deepEqual(await list({}), ['public/busybox']);
  });
});

describe('configuration files and TLS', () => {
  test('serve --config with an htpasswd users file and an ACL file', async () => {
    const dir = tempDir('auth-files');
    fs.writeFileSync(path.join(dir, 'htpasswd'), `carol:${hash('carol-pw')}\n`);
    fs.writeFileSync(
      path.join(dir, 'acl.json'),
      JSON.stringify([{ repository: 'carol/**', users: ['carol'], actions: ['pull', 'push'] }]),
    );
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ root: 'data', auth: { usersFile: 'htpasswd', aclFile: 'acl.json' } }),
    );
    const server = await spawnRegistry(['--config', path.join(dir, 'config.json')]);
    try {
      const carol = new Client(server.url, basic('carol', 'carol-pw'));
      await carol.pushImage('carol/app', 'v1', 1);
      const denied = await request(server.url, 'POST', '/v2/dave/app/blobs/uploads/', {
        headers: basic('carol', 'carol-pw'),
      });
      assert.equal(denied.status, 403);
      assert.ok(
        fs.existsSync(path.join(dir, 'data', 'docker/registry/v2/repositories/carol/app')),
        'root resolved against the config',
      );
    } finally {
      await server.stop();
    }
  });

  test('an invalid config file is refused with a clear message', async () => {
    const dir = tempDir('bad-config');
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({ auth: { users: { x: { pasword: 'typo' } } } }),
    );
    const res = await run(process.execPath, [
      'bin/strata',
      'registry',
      'serve',
      '--config',
      path.join(dir, 'config.json'),
    ]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /invalid registry config/);
  });

  test('TLS with a certificate and key', {
    skip: which('openssl') === null ? 'openssl not installed' : false,
  }, async () => {
    const dir = tempDir('tls');
    const { key, cert } = selfSignedCertificate(dir);
    const tls = await startRegistry({ tls: { cert, key } });
    try {
      assert.match(tls.url, /^https:\/\//);
      const ca = fs.readFileSync(cert);
      const res = await request(tls.url, 'GET', '/v2/', { ca });
      assert.equal(res.status, 200);
      const client = new Client(tls.url);
      const digest = sha256('over tls');
      const post = await request(tls.url, 'POST', `/v2/secure/blobs/uploads/?digest=${digest}`, {
        body: 'over tls',
        ca,
      });
      assert.equal(post.status, 201);
      await assert.rejects(client.req('GET', '/v2/'), 'an untrusted certificate is refused by the client');
      await assert.rejects(request(tls.url.replace('https', 'http'), 'GET', '/v2/'));
    } finally {
      await tls.close();
    }
  });
});
