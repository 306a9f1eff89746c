import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

describe('docker run through the real docker CLI', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  test('foreground run prints output and propagates the exit code', async () => {
    const r = await d.docker(['run', '--rm', 'bb:latest', 'sh', '-c', 'echo hello; echo oops >&2; exit 3']);
    assert.equal(r.stdout, 'hello\n');
    assert.equal(r.stderr, 'oops\n');
    assert.equal(r.code, 3);
  });

  test('stdin is piped with -i', async () => {
    const r = await d.docker(['run', '-i', '--rm', 'bb', 'cat'], { input: 'hi\n' });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hi\n');
  });

  test('missing executable exits 127, non-executable 126, bad flag value 125', async () => {
    const notFound = await d.docker(['run', '--rm', 'bb', 'nonexistentcmd']);
    assert.equal(notFound.code, 127, notFound.stderr);
    assert.match(notFound.stderr, /executable file not found/);
    const notExec = await d.docker(['run', '--rm', 'bb', '/etc/passwd']);
    assert.equal(notExec.code, 126, notExec.stderr);
    const badRestart = await d.docker(['run', '--rm', '--restart', 'sometimes', 'bb', 'true']);
    assert.equal(badRestart.code, 125);
    // --rm containers are gone even after a failed start
    const ps = await d.dockerOk(['ps', '-aq']);
    assert.equal(ps, '');
  });

  test('env, env-file, workdir, user, hostname, entrypoint and labels reach the process', async () => {
    const envFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'envf-')), 'env');
    fs.writeFileSync(envFile, '# comment\nFROM_FILE=yes\n');
    const out = await d.dockerOk([
      'run',
      '--rm',
      '-e',
      'FOO=bar',
      '--env-file',
      envFile,
      '-w',
      '/tmp/newdir',
      '-u',
      '1000:1000',
      '--hostname',
      'myhost',
      '-l',
      'team=core',
      'bb',
      'sh',
      '-c',
      'echo $FOO $FROM_FILE; pwd; id -u; id -g; hostname; cat /etc/hostname',
    ]);
    assert.deepEqual(out.split('\n'), ['bar yes', '/tmp/newdir', '1000', '1000', 'myhost', 'myhost']);
    const ep = await d.dockerOk(['run', '--rm', '--entrypoint', 'echo', 'bb', 'from', 'entrypoint']);
    assert.equal(ep, 'from entrypoint');
    const named = await d.dockerOk(['run', '--rm', '-u', 'app', 'bb', 'sh', '-c', 'id -un; echo $HOME']);
    assert.deepEqual(named.split('\n'), ['app', '/home/app']);
  });

  test('each container has its own PID, UTS, IPC, mount and network namespaces and writable layer', async () => {
    const out = await d.dockerOk([
      'run',
      '--rm',
      '--network',
      'none',
      'bb',
      'sh',
      '-c',
      'echo $$; ls /proc | grep -c "^[0-9]"; ip -o link | wc -l',
    ]);
    const [pid, procs, links] = out.split('\n');
    assert.equal(pid, '1');
    assert.ok(Number(procs) <= 3, `container sees ${procs} processes`);
    assert.equal(links, '1', 'only loopback in a --network none container');
    for (const ns of ['pid', 'uts', 'ipc', 'mnt', 'net']) {
      const inside = await d.dockerOk(['run', '--rm', 'bb', 'readlink', `/proc/self/ns/${ns}`]);
      assert.notEqual(inside, fs.readlinkSync(`/proc/self/ns/${ns}`), ns);
    }
    await d.dockerOk(['run', '--name', 'writer', 'bb', 'sh', '-c', 'echo data > /newfile']);
    const fresh = await d.docker(['run', '--rm', 'bb', 'cat', '/newfile']);
    assert.notEqual(fresh.code, 0, "another container must not see the first one's files");
    const diff = await d.dockerOk(['diff', 'writer']);
    assert.match(diff, /^A \/newfile$/m);
    await d.dockerOk(['rm', 'writer']);
  });

  test('rlimits are clamped to the host hard limit', async () => {
    const out = await d.dockerOk(['run', '--rm', 'bb', 'sh', '-c', 'ulimit -Hn']);
    const hostHard = fs.readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+\d+\s+(\d+)/)?.[1];
    assert.equal(out, hostHard);
  });

  test('runc is selectable with --runtime', async () => {
    const r = await d.docker(['run', '--rm', '--runtime', 'runc', 'bb', 'echo', 'via runc']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'via runc\n');
  });
});
