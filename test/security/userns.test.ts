import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { accountCommand, runLogged } from '../resources/helpers.js';

/**
 * `--userns-remap`: a container's root is an unprivileged host uid, image files look like its own
 * through idmapped layer mounts, what it writes is stored under the remapped ids. The test makes a
 * remap user with its own /etc/subuid range and removes both afterwards.
 */
const USER = `strata-ur-${process.pid % 100000}`;
const BASE = 300000 + (process.pid % 50) * 65536;

function removeRanges(file: string): void {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  fs.writeFileSync(file, lines.filter((l) => !l.startsWith(`${USER}:`)).join('\n'));
}

describe('user namespace remapping', () => {
  let d: TestDaemon;
  before(async () => {
    await accountCommand('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', USER]);
    for (const file of ['/etc/subuid', '/etc/subgid']) fs.appendFileSync(file, `${USER}:${BASE}:65536\n`);
    d = await startDaemon({ extraArgs: ['--userns-remap', USER] });
    // The container's root (an unprivileged uid) must be able to reach its root file system.
    fs.chmodSync(path.dirname(d.root), 0o711);
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    for (const file of ['/etc/subuid', '/etc/subgid']) removeRanges(file);
    try {
      await accountCommand('userdel', [USER]);
    } catch {
      // already gone
    }
  });

  test('container root is the remapped host uid; image files are its own', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      'bb',
      'sh',
      '-c',
      'id -u; cat /proc/self/uid_map; stat -c %u /bin/busybox; touch /made-inside && echo wrote; sleep 60',
    ]);
    try {
      await new Promise((r) => setTimeout(r, 1000));
      const logs = (await d.dockerOk(['logs', id])).split('\n').map((l) => l.trim().split(/\s+/).join(' '));
      assert.deepEqual(logs, ['0', `0 ${BASE} 65536`, '0', 'wrote']);
      const pid = await d.dockerOk(['inspect', '-f', '{{.State.Pid}}', id]);
      const uids = /Uid:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
      assert.equal(uids, String(BASE), 'root in the container is an unprivileged uid on the host');
      const upper = path.join(d.root, 'containers', id, 'upper', 'made-inside');
      assert.equal(fs.statSync(upper).uid, BASE);
      // The image layers on disk are untouched (still owned by 0).
      const layer = execFileSync('find', [path.join(d.root, 'snapshots'), '-name', 'busybox', '-type', 'f'], {
        encoding: 'utf8',
      })
        .trim()
        .split('\n')[0];
      assert.equal(fs.statSync(layer).uid, 0);
    } finally {
      await d.docker(['rm', '-f', id]);
    }
  });

  test('remapped root cannot act as host root', async () => {
    const r = await runLogged(d, [], ['sh', '-c', 'mount -t tmpfs t /tmp 2>&1; cat /proc/1/uid_map']);
    assert.match(r.stdout, /permission denied|not permitted/);
  });

  test('--userns=host opts out; --privileged needs it', async () => {
    const out = await runLogged(
      d,
      ['--userns', 'host'],
      ['sh', '-c', 'cat /proc/self/uid_map; stat -c %u /bin/busybox'],
    );
    assert.deepEqual(
      out.stdout
        .trim()
        .split('\n')
        .map((l) => l.trim().split(/\s+/).join(' ')),
      ['0 0 4294967295', '0'],
    );
    const refused = await d.docker(['run', '--rm', '--privileged', 'bb', 'true']);
    assert.equal(refused.code, 125);
    assert.match(refused.stderr, /privileged mode is incompatible with user namespaces/);
    const info = JSON.parse(await d.dockerOk(['info', '--format', '{{json .SecurityOptions}}'])) as string[];
    assert.ok(info.includes('name=userns'));
  });
});
