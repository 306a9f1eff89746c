import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, REPO_ROOT, startDaemon, type TestDaemon } from '../helpers/daemon.js';

/** Volumes and mounts end to end with the docker CLI: named, anonymous, bind, tmpfs, --volumes-from. */
describe('volumes and mounts', () => {
  let d: TestDaemon;
  let hostDir = '';

  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
    // The same busybox with `VOLUME /etc`: anonymous volumes filled from the image.
    const tar = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'busybox-rootfs.sh')], {
      maxBuffer: 64 << 20,
    }).stdout;
    await d.dockerOk(['import', '-c', 'VOLUME /etc', '-c', 'CMD ["sh"]', '-', 'bbvol:1'], { input: tar });
    hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-bind-'));
    fs.writeFileSync(path.join(hostDir, 'host.txt'), 'from-host\n');
  });

  after(async () => {
    await d?.cleanup();
    if (hostDir) fs.rmSync(hostDir, { recursive: true, force: true });
  });

  test('create, ls, inspect with labels; rm refuses while in use (409), prune', async () => {
    await d.dockerOk(['volume', 'create', '--label', 'a=b', 'vol1']);
    const v = JSON.parse(await d.dockerOk(['volume', 'inspect', 'vol1']))[0];
    assert.equal(v.Driver, 'local');
    assert.deepEqual(v.Labels, { a: 'b' });
    assert.equal(v.Mountpoint, path.join(d.root, 'volumes', 'vol1', '_data'));
    assert.ok(fs.existsSync(v.Mountpoint));
    assert.match(
      await d.dockerOk(['volume', 'ls', '--filter', 'label=a=b', '--format', '{{.Name}}']),
      /^vol1$/,
    );
    await d.dockerOk([
      'run',
      '--name',
      'writer',
      '-v',
      'vol1:/data',
      'bb',
      'sh',
      '-c',
      'echo kept > /data/f',
    ]);
    const rm = await d.docker(['volume', 'rm', 'vol1']);
    assert.notEqual(rm.code, 0);
    assert.match(rm.stderr, /volume is in use/);
    const api = await d.api('DELETE', '/volumes/vol1');
    assert.equal(api.status, 409);
    const read = await d.dockerOk([
      'run',
      '--rm',
      '-v',
      'vol1:/data:ro',
      'bb',
      'sh',
      '-c',
      'cat /data/f; touch /data/x 2>&1 || echo read-only',
    ]);
    assert.match(read, /kept/);
    assert.match(read, /read-only|Read-only/);
    await d.dockerOk(['rm', 'writer']);
    await d.dockerOk(['volume', 'rm', 'vol1']);
    assert.ok(!fs.existsSync(v.Mountpoint));
    await d.dockerOk(['volume', 'create', 'dangling1']);
    const pruned = await d.dockerOk(['volume', 'prune', '-f']);
    assert.match(pruned, /dangling1/);
    assert.equal((await d.api('GET', '/volumes/nosuch')).status, 404);
  });

  test('a new named volume is filled from the image; anonymous volumes go with rm -v', async () => {
    // image VOLUME: an anonymous volume, filled with the image's /etc (owners and modes kept)
    await d.dockerOk(['run', '--name', 'cu', 'bbvol:1', 'sh', '-c', 'cat /etc/passwd > /dev/null']);
    const cuMounts = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .Mounts}}', 'cu']));
    assert.equal(cuMounts[0].Destination, '/etc');
    const copied = path.join(cuMounts[0].Source, 'passwd');
    assert.match(fs.readFileSync(copied, 'utf8'), /^root:/m);
    assert.equal(fs.statSync(path.join(d.root, 'volumes', cuMounts[0].Name, '_data')).mode & 0o777, 0o755);
    // copy-up of a path every busybox image has: /etc
    const etc = await d.dockerOk(['run', '--rm', '-v', 'etcvol:/etc', 'bb', 'cat', '/etc/passwd']);
    assert.match(etc, /^root:/m);
    assert.ok(fs.existsSync(path.join(d.root, 'volumes', 'etcvol', '_data', 'group')));
    // anonymous volume from -v /path
    await d.dockerOk(['run', '--name', 'anon', '-v', '/scratch', 'bb', 'sh', '-c', 'echo x > /scratch/y']);
    const mounts = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .Mounts}}', 'anon']));
    assert.equal(mounts.length, 1);
    assert.equal(mounts[0].Type, 'volume');
    assert.equal(mounts[0].Destination, '/scratch');
    assert.match(mounts[0].Name, /^[0-9a-f]{64}$/);
    assert.ok(fs.existsSync(path.join(mounts[0].Source, 'y')));
    await d.dockerOk(['rm', '-v', 'anon']);
    assert.equal(
      (await d.api('GET', `/volumes/${mounts[0].Name}`)).status,
      404,
      'rm -v removed the anonymous volume',
    );
    await d.dockerOk(['rm', '-v', 'cu']);
    assert.equal((await d.api('GET', `/volumes/${cuMounts[0].Name}`)).status, 404);
    await d.dockerOk(['run', '--rm', '-v', 'etcvol:/etc', 'bb', 'true']);
    assert.equal((await d.api('GET', '/volumes/etcvol')).status, 200, 'named volumes survive --rm');
    await d.dockerOk(['volume', 'rm', 'etcvol']);
  });

  test('bind mounts, --mount, --tmpfs, --read-only, --volumes-from', async () => {
    const bind = await d.dockerOk([
      'run',
      '--rm',
      '-v',
      `${hostDir}:/h:ro`,
      'bb',
      'sh',
      '-c',
      'cat /h/host.txt; echo no > /h/new 2>/dev/null || echo denied',
    ]);
    assert.match(bind, /from-host/);
    assert.match(bind, /denied/);
    await d.dockerOk([
      'run',
      '--rm',
      '--mount',
      `type=bind,src=${hostDir},dst=/w`,
      'bb',
      'sh',
      '-c',
      'echo written > /w/out.txt',
    ]);
    assert.equal(fs.readFileSync(path.join(hostDir, 'out.txt'), 'utf8'), 'written\n');
    const missing = await d.docker([
      'run',
      '--rm',
      '--mount',
      'type=bind,src=/nonexistent-strata,dst=/x',
      'bb',
      'true',
    ]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /does not exist/);
    const tmp = await d.dockerOk([
      'run',
      '--rm',
      '--tmpfs',
      '/tt:size=1m',
      '--mount',
      'type=tmpfs,dst=/t2',
      'bb',
      'sh',
      '-c',
      'grep -E " /tt | /t2 " /proc/mounts',
    ]);
    assert.match(tmp, /tmpfs \/tt tmpfs .*size=1024k/);
    assert.match(tmp, /tmpfs \/t2 tmpfs/);
    const ro = await d.dockerOk([
      'run',
      '--rm',
      '--read-only',
      '--tmpfs',
      '/tmp',
      'bb',
      'sh',
      '-c',
      'touch /x 2>/dev/null || echo rootfs-ro; touch /tmp/ok && echo tmp-rw',
    ]);
    assert.match(ro, /rootfs-ro/);
    assert.match(ro, /tmp-rw/);
    await d.dockerOk([
      'run',
      '--name',
      'src',
      '-v',
      'shared:/shared',
      '-v',
      `${hostDir}:/hostdir`,
      'bb',
      'sh',
      '-c',
      'echo s > /shared/s',
    ]);
    const from = await d.dockerOk([
      'run',
      '--rm',
      '--volumes-from',
      'src:ro',
      'bb',
      'sh',
      '-c',
      'cat /shared/s /hostdir/host.txt; touch /shared/t 2>/dev/null || echo ro',
    ]);
    assert.match(from, /^s$/m);
    assert.match(from, /from-host/);
    assert.match(from, /ro/);
    const ps = JSON.parse((await d.api('GET', '/containers/json?all=1&filters={"name":["src"]}')).body);
    assert.deepEqual(
      ps[0].Mounts.map(
        (m: { Type: string; Destination: string; RW: boolean }) => `${m.Type}:${m.Destination}:${m.RW}`,
      ).sort(),
      ['bind:/hostdir:true', 'volume:/shared:true'],
    );
    await d.dockerOk(['rm', 'src']);
    await d.dockerOk(['volume', 'rm', 'shared']);
  });
});
