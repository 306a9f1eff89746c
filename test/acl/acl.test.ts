import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  importBusybox,
  type RunResult,
  run,
  STRATA_BIN,
  startDaemon,
  type TestDaemon,
} from '../helpers/daemon.js';
import { accountCommand, sleep } from '../resources/helpers.js';

/**
 * Per-container ACLs, with principals from bearer tokens (docker CLI `HttpHeaders`) and from two
 * temporary unix users in the `strata` group (SO_PEERCRED). B cannot view, exec into, stop or
 * remove A's container until A grants it, and loses it again when A revokes.
 */
const TOKENS = {
  alice: 'alice-token-5f1c0e9a4b7d',
  bob: 'bob-token-8e2d6c3a9f01',
  ops: 'ops-token-1a2b3c4d5e6f',
};
const tag = String(process.pid % 100000);
const USER_A = `strata-ua-${tag}`;
const USER_B = `strata-ub-${tag}`;
const USER_C = `strata-uc-${tag}`;

describe('access control lists', () => {
  let d: TestDaemon;
  let base = '';
  let createdGroup = false;
  const configs: Record<string, string> = {};

  before(async () => {
    if (
      !fs
        .readFileSync('/etc/group', 'utf8')
        .split('\n')
        .some((l) => l.startsWith('strata:'))
    ) {
      await accountCommand('groupadd', ['--system', 'strata']);
      createdGroup = true;
    }
    for (const user of [USER_A, USER_B, USER_C]) {
      await accountCommand('useradd', [
        '--no-create-home',
        '--shell',
        '/bin/sh',
        ...(user === USER_C ? [] : ['-G', 'strata']),
        user,
      ]);
    }
    const authDir = fs.mkdtempSync('/tmp/strata-acl-');
    const authFile = path.join(authDir, 'auth.json');
    fs.writeFileSync(
      authFile,
      JSON.stringify({
        tokens: [
          { name: 'alice', token: TOKENS.alice },
          { name: 'bob', token: TOKENS.bob },
          { name: 'ops', token: TOKENS.ops, groups: ['operators'] },
        ],
        admins: ['group:operators'],
      }),
    );
    d = await startDaemon({ extraArgs: ['--auth-config', authFile] });
    base = path.dirname(d.socket);
    fs.rmSync(authDir, { recursive: true, force: true });
    fs.chmodSync(base, 0o711);
    for (const [name, token] of Object.entries(TOKENS)) {
      const dir = path.join(base, `cfg-${name}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(
        path.join(dir, 'config.json'),
        JSON.stringify({ HttpHeaders: { Authorization: `Bearer ${token}` } }),
      );
      configs[name] = dir;
    }
    for (const user of [USER_A, USER_B, USER_C]) {
      const home = path.join(base, `home-${user}`);
      fs.mkdirSync(home);
      execFileSync('chown', [`${user}:`, home]);
    }
    await importBusybox(d);
  });

  after(async () => {
    await d?.cleanup();
    for (const user of [USER_A, USER_B, USER_C]) {
      try {
        await accountCommand('userdel', [user]);
      } catch {
        // gone
      }
    }
    if (createdGroup) await accountCommand('groupdel', ['strata']);
  });

  const as = (who: keyof typeof TOKENS, args: string[]) =>
    d.docker(args, { env: { DOCKER_CONFIG: configs[who] } });
  const asUser = (user: string, args: string[]): Promise<RunResult> =>
    run('setpriv', ['--reuid', user, '--regid', user, '--init-groups', 'docker', ...args], {
      env: {
        DOCKER_HOST: d.env.DOCKER_HOST,
        HOME: path.join(base, `home-${user}`),
        DOCKER_CONFIG: path.join(base, `home-${user}`, '.docker'),
      },
    });
  const api = (who: keyof typeof TOKENS, method: string, apiPath: string, body?: unknown) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      import('node:http').then(({ request }) => {
        const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
        const req = request(
          {
            socketPath: d.socket,
            method,
            path: apiPath,
            headers: {
              Authorization: `Bearer ${TOKENS[who]}`,
              ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
            );
          },
        );
        req.on('error', reject);
        req.end(data);
      }, reject);
    });

  const denied = (r: RunResult, right: string) => {
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, new RegExp(`lacks the "${right}" right`), r.stderr);
  };

  test('tokens: B has no access to A’s container until granted, and loses it on revoke', async () => {
    const id = (await as('alice', ['run', '-d', '--name', 'alices', 'bb', 'sleep', '300'])).stdout.trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    const acl = JSON.parse((await api('alice', 'GET', `/containers/${id}/acl`)).body) as { Owner: string };
    assert.equal(acl.Owner, 'token:alice');

    denied(await as('bob', ['inspect', 'alices']), 'view');
    denied(await as('bob', ['logs', 'alices']), 'view');
    denied(await as('bob', ['stop', 'alices']), 'control');
    denied(await as('bob', ['rm', '-f', 'alices']), 'remove');
    const exec = await api('bob', 'POST', `/containers/${id}/exec`, { Cmd: ['true'] });
    assert.equal(exec.status, 403);
    assert.match((JSON.parse(exec.body) as { message: string }).message, /lacks the "exec" right/);
    assert.equal((await as('bob', ['ps', '-q'])).stdout.trim(), '');
    assert.equal((await as('alice', ['ps', '--format', '{{.Names}}'])).stdout.trim(), 'alices');
    const dfIds = async (who: keyof typeof TOKENS) => {
      const df = JSON.parse((await api(who, 'GET', '/system/df')).body) as { Containers: { Id: string }[] };
      return df.Containers.map((c) => c.Id);
    };
    assert.deepEqual(await dfIds('bob'), []);
    assert.deepEqual(await dfIds('alice'), [id]);

    const grant = await api('alice', 'POST', `/containers/${id}/acl`, {
      Grant: [{ Principal: 'token:bob', Rights: ['view', 'exec', 'control'] }],
    });
    assert.equal(grant.status, 200, grant.body);
    assert.equal((await as('bob', ['inspect', '-f', '{{.Name}}', 'alices'])).stdout.trim(), '/alices');
    assert.equal((await as('bob', ['exec', 'alices', 'echo', 'in'])).stdout.trim(), 'in');
    assert.equal((await as('bob', ['ps', '--format', '{{.Names}}'])).stdout.trim(), 'alices');
    assert.deepEqual(await dfIds('bob'), [id]);
    assert.equal((await as('bob', ['restart', '-t', '0', 'alices'])).code, 0);
    denied(await as('bob', ['rm', '-f', 'alices']), 'remove');
    // Only the owner changes the list.
    const meddle = await api('bob', 'POST', `/containers/${id}/acl`, {
      Grant: [{ Principal: 'token:bob', Rights: ['remove'] }],
    });
    assert.equal(meddle.status, 403);

    const revoke = await api('alice', 'POST', `/containers/${id}/acl`, {
      Revoke: [{ Principal: 'token:bob' }],
    });
    assert.equal(revoke.status, 200);
    denied(await as('bob', ['inspect', 'alices']), 'view');
    denied(await as('bob', ['exec', 'alices', 'true']), 'view');
    denied(await as('bob', ['stop', 'alices']), 'control');

    // An admin (by group in the auth config) may do anything; remove granted to B lets B remove.
    assert.equal((await as('ops', ['inspect', '-f', '{{.Name}}', 'alices'])).stdout.trim(), '/alices');
    await api('alice', 'PUT', `/containers/${id}/acl`, { Text: 'token:bob=remove' });
    assert.equal((await as('bob', ['rm', '-f', 'alices'])).code, 0);
    assert.equal((await as('alice', ['ps', '-aq'])).stdout.trim(), '');
  });

  test('an ACL given at create (label) applies at once', async () => {
    const r = await as('alice', [
      'run',
      '-d',
      '--name',
      'labelled',
      '-l',
      'strata.acl=token:bob=view',
      'bb',
      'sleep',
      '300',
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await as('bob', ['inspect', '-f', '{{.Name}}', 'labelled'])).stdout.trim(), '/labelled');
    denied(await as('bob', ['stop', 'labelled']), 'control');
    const bad = await as('alice', ['create', '-l', 'strata.acl=bob=fly', 'bb', 'true']);
    assert.equal(bad.code, 0, 'an invalid label does not block create; it grants nothing');
    await as('alice', ['rm', '-f', 'labelled', bad.stdout.trim()]);
  });

  test('events show a principal only the containers it may view', async () => {
    const watch = (who: keyof typeof TOKENS) => {
      const child = spawn(
        'docker',
        ['events', '--filter', 'type=container', '--format', '{{.Actor.Attributes.name}} {{.Action}}'],
        {
          env: { ...process.env, ...d.env, DOCKER_CONFIG: configs[who] },
          stdio: ['ignore', 'pipe', 'ignore'],
        },
      );
      let text = '';
      child.stdout.on('data', (c: Buffer) => {
        text += c.toString();
      });
      return { stop: () => child.kill('SIGKILL'), text: () => text };
    };
    const alice = watch('alice');
    const bob = watch('bob');
    await sleep(500);
    await as('alice', ['run', '--rm', '--name', 'evented', 'bb', 'true']);
    await as('bob', ['run', '--rm', '--name', 'bobs-own', 'bb', 'true']);
    await sleep(1000);
    alice.stop();
    bob.stop();
    assert.match(alice.text(), /evented create/);
    assert.match(alice.text(), /evented destroy/);
    assert.doesNotMatch(alice.text(), /bobs-own/);
    assert.match(bob.text(), /bobs-own start/);
    assert.doesNotMatch(bob.text(), /evented/);
  });

  test('non-admins cannot create containers that reach the host', async () => {
    for (const flags of [
      ['--privileged'],
      ['-v', '/:/host'],
      ['--pid', 'host'],
      ['--network', 'host'],
      ['--cap-add', 'SYS_ADMIN'],
      ['--security-opt', 'seccomp=unconfined'],
    ]) {
      const r = await as('bob', ['run', '--rm', ...flags, 'bb', 'true']);
      assert.equal(r.code, 125, flags.join(' '));
      assert.match(r.stderr, /admins only/);
    }
    assert.equal((await as('ops', ['run', '--rm', '--cap-add', 'SYS_ADMIN', 'bb', 'true'])).code, 0);
    const wrong = await new Promise<number>((resolve) => {
      import('node:http').then(({ request }) => {
        const req = request(
          { socketPath: d.socket, path: '/containers/json', headers: { Authorization: 'Bearer wrong' } },
          (res) => {
            res.resume();
            resolve(res.statusCode ?? 0);
          },
        );
        req.end();
      });
    });
    assert.equal(wrong, 401);
  });

  test('images: owners and admins remove them; everyone may use them', async () => {
    // bb was imported by root (admin): bob may run it but not remove or retag it.
    const rmi = await as('bob', ['rmi', 'bb:latest']);
    assert.notEqual(rmi.code, 0);
    assert.match(rmi.stderr, /only the owner or an admin may remove image/);
    const tagged = await as('bob', ['tag', 'bb:latest', 'bobs:copy']);
    assert.match(tagged.stderr, /only the owner or an admin may tag image/);
    const commit = await as('bob', ['run', '--name', 'bobsrc', 'bb', 'sh', '-c', 'echo x > /x']);
    assert.equal(commit.code, 0, commit.stderr);
    const img = await as('bob', ['commit', 'bobsrc', 'bobs:img']);
    assert.equal(img.code, 0, img.stderr);
    const aliceRmi = await as('alice', ['rmi', 'bobs:img']);
    assert.match(aliceRmi.stderr, /only the owner or an admin/);
    await as('bob', ['rm', 'bobsrc']);
    assert.equal((await as('bob', ['rmi', 'bobs:img'])).code, 0);
  });

  test('unix users: socket peers are principals; root is admin; strata acl grants and revokes', async () => {
    const created = await asUser(USER_A, ['run', '-d', '--name', 'from-unix', 'bb', 'sleep', '300']);
    assert.equal(created.code, 0, created.stderr);
    const id = created.stdout.trim();
    const who = await run(process.execPath, [STRATA_BIN, 'acl', 'show', id], {
      env: { STRATA_HOST: `unix://${d.socket}` },
    });
    assert.match(who.stdout, new RegExp(`OWNER\\s+user:${USER_A}`));
    denied(await asUser(USER_B, ['inspect', 'from-unix']), 'view');
    denied(await asUser(USER_B, ['exec', 'from-unix', 'true']), 'view');
    assert.equal((await asUser(USER_B, ['ps', '-q'])).stdout.trim(), '');
    // root (admin) sees everything
    assert.equal(
      await d.dockerOk(['ps', '--filter', 'name=from-unix', '--format', '{{.Names}}']),
      'from-unix',
    );

    const strataAs = (user: string, args: string[]) =>
      run(
        'setpriv',
        ['--reuid', user, '--regid', user, '--init-groups', process.execPath, STRATA_BIN, ...args],
        {
          env: { STRATA_HOST: `unix://${d.socket}`, HOME: path.join(base, `home-${user}`) },
        },
      );
    const whoami = await strataAs(USER_B, ['acl', 'whoami']);
    assert.match(whoami.stdout, new RegExp(`^user:${USER_B}\\n`));
    const refused = await strataAs(USER_B, ['acl', 'grant', id, `user:${USER_B}`, 'all']);
    assert.notEqual(refused.code, 0);
    const granted = await strataAs(USER_A, ['acl', 'grant', id, `user:${USER_B}`, 'exec']);
    assert.equal(granted.code, 0, granted.stderr);
    assert.equal((await asUser(USER_B, ['exec', 'from-unix', 'echo', 'hello'])).stdout.trim(), 'hello');
    denied(await asUser(USER_B, ['stop', 'from-unix']), 'control');
    await strataAs(USER_A, ['acl', 'revoke', id, `user:${USER_B}`]);
    denied(await asUser(USER_B, ['exec', 'from-unix', 'true']), 'view');
    assert.equal((await asUser(USER_A, ['rm', '-f', 'from-unix'])).code, 0);
  });

  test('the socket is root:strata 0660: users outside the group cannot connect', async () => {
    const st = fs.statSync(d.socket);
    assert.equal(st.mode & 0o777, 0o660);
    assert.equal(st.uid, 0);
    const gid = Number(execFileSync('getent', ['group', 'strata'], { encoding: 'utf8' }).split(':')[2]);
    assert.equal(st.gid, gid);
    const outsider = await asUser(USER_C, ['ps']);
    assert.notEqual(outsider.code, 0);
    assert.match(outsider.stderr, /permission denied/);
  });
});
