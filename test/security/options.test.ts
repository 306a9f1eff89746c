import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { runLogged } from '../resources/helpers.js';

/** Docker's security defaults and the flags that change them, seen from inside the container. */
const DOCKER_DEFAULT_CAPS = 0xa80425fbn; // chown … audit_write: Docker's default set

function capEff(status: string): bigint {
  const hex = /CapEff:\s*([0-9a-f]+)/.exec(status)?.[1];
  assert.ok(hex, status);
  return BigInt(`0x${hex}`);
}

describe('security options', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  const status = async (flags: string[], user?: string) => {
    const r = await runLogged(d, [...(user ? ['-u', user] : []), ...flags], ['cat', '/proc/self/status']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };

  test("default capabilities are Docker's set; add, drop and ALL change them", async () => {
    assert.equal(capEff(await status([])), DOCKER_DEFAULT_CAPS);
    assert.equal(capEff(await status(['--cap-drop', 'ALL'])), 0n);
    assert.equal(capEff(await status(['--cap-drop', 'ALL', '--cap-add', 'NET_BIND_SERVICE'])), 1n << 10n);
    assert.equal(capEff(await status(['--cap-add', 'NET_ADMIN'])), DOCKER_DEFAULT_CAPS | (1n << 12n));
    assert.equal(capEff(await status(['--cap-drop', 'CHOWN'])), DOCKER_DEFAULT_CAPS & ~1n);
    // A non-root user holds none in its effective set; the bounding set is the container's.
    const user = await status([], '1000:1000');
    assert.equal(capEff(user), 0n);
    const privileged = capEff(await status(['--privileged']));
    const hostBounding = BigInt(
      `0x${/CapBnd:\s*([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1]}`,
    );
    assert.equal(privileged, hostBounding, '--privileged gets every capability the host allows');
    const bad = await d.docker(['run', '--rm', '--cap-add', 'NOT_A_CAP', 'bb', 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unknown capability/);
  });

  test('seccomp: on by default, off when unconfined or privileged, custom profiles from a file', async () => {
    assert.match(await status([]), /^Seccomp:\s+2$/m);
    assert.match(await status(['--security-opt', 'seccomp=unconfined']), /^Seccomp:\s+0$/m);
    assert.match(await status(['--privileged']), /^Seccomp:\s+0$/m);
    const profile = path.join(d.root, 'no-mkdir.json');
    fs.writeFileSync(
      profile,
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      }),
    );
    const r = await runLogged(
      d,
      ['--security-opt', `seccomp=${profile}`],
      ['sh', '-c', 'touch /tmp/file && echo touched; mkdir /tmp/dir'],
    );
    assert.equal(r.stdout.trim(), 'touched');
    assert.match(r.stderr, /Operation not permitted/);
    const broken = await d.docker([
      'run',
      '--rm',
      '--security-opt',
      'seccomp={"defaultAction":"nope"}',
      'bb',
      'true',
    ]);
    assert.equal(broken.code, 125);
    assert.match(broken.stderr, /seccomp/);
    const unknown = await d.docker(['run', '--rm', '--security-opt', 'bogus=1', 'bb', 'true']);
    assert.equal(unknown.code, 125);
    assert.match(unknown.stderr, /invalid --security-opt/);
  });

  test('no-new-privileges', async () => {
    assert.match(await status([]), /^NoNewPrivs:\s+0$/m);
    assert.match(await status(['--security-opt', 'no-new-privileges']), /^NoNewPrivs:\s+1$/m);
    assert.match(await status(['--security-opt', 'no-new-privileges:true']), /^NoNewPrivs:\s+1$/m);
  });

  test('--read-only root file system', async () => {
    const r = await runLogged(d, ['--read-only'], ['sh', '-c', 'touch /x; touch /etc/hosts; echo done']);
    assert.equal(r.stdout.trim(), 'done');
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(r.stderr.match(/Read-only file system/g)?.length, 2);
    const rw = await runLogged(d, [], ['sh', '-c', 'touch /x && echo ok']);
    assert.equal(rw.stdout.trim(), 'ok');
  });

  test('--user uid:gid and --group-add', async () => {
    const out = await runLogged(
      d,
      ['-u', '1234:2345', '--group-add', '3456', '--group-add', 'wheel'],
      ['sh', '-c', 'id -u; id -g; id -G'],
    );
    const [uid, gid, groups] = out.stdout.trim().split('\n');
    assert.equal(uid, '1234');
    assert.equal(gid, '2345');
    assert.deepEqual(groups.split(' ').sort(), ['10', '2345', '3456'].sort());
    const bad = await d.docker(['run', '--rm', '-u', 'nobody-here', 'bb', 'true']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /unable to find user nobody-here/);
  });

  test('masked and read-only paths are listed by inspect', async () => {
    const id = await d.dockerOk(['create', 'bb', 'true']);
    const host = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .HostConfig}}', id])) as {
      MaskedPaths: string[];
      ReadonlyPaths: string[];
    };
    assert.ok(host.MaskedPaths.includes('/proc/kcore'));
    assert.ok(host.ReadonlyPaths.includes('/proc/sysrq-trigger'));
    await d.dockerOk(['rm', id]);
    const unconfined = await runLogged(
      d,
      ['--security-opt', 'systempaths=unconfined'],
      ['sh', '-c', 'wc -c < /proc/timer_list'],
    );
    assert.ok(Number(unconfined.stdout.trim()) > 0);
  });
});
