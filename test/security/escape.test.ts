import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { deviceNumbers } from '../../src/runtime/resources.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { createLoopDevice, runLogged, waitFor } from '../resources/helpers.js';

/**
 * Escape attempts from a default container must fail; each succeeds only with the flag that grants
 * it. Every attempt is harmless even when it succeeds (a tmpfs mount inside the container, an empty
 * write, reading a test process's environment, a loop device over a scratch file).
 */
describe('a default container cannot reach the host or other containers', () => {
  let d: TestDaemon;
  let marker = '';
  let hostProcess: ChildProcess;

  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
    marker = `strata-marker-${randomBytes(4).toString('hex')}`;
    // A host process with a recognisable command line and environment.
    hostProcess = spawn('bash', ['-c', `exec -a ${marker} sleep 300`], {
      env: { SECRET_OF_THE_HOST: marker, PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: 'ignore',
    });
    await waitFor('the marker process', () => {
      try {
        return fs.readFileSync(`/proc/${hostProcess.pid}/cmdline`, 'utf8').startsWith(marker);
      } catch {
        return false;
      }
    });
  });
  after(async () => {
    hostProcess?.kill('SIGKILL');
    await d?.cleanup();
  });

  const run = (args: string[], script: string) => runLogged(d, args, ['sh', '-c', script]);

  test('host processes are invisible without --pid host', async () => {
    const pid = hostProcess.pid;
    const look = `ls /proc | grep -c "^[0-9]"; tr "\\0" " " < /proc/${pid}/cmdline 2>/dev/null || echo hidden`;
    const inside = await run([], look);
    const [count, seen] = inside.stdout.trim().split('\n');
    assert.ok(Number(count) <= 4, `${count} processes visible in a fresh container`);
    assert.equal(seen, 'hidden');
    const shared = await run(['--pid', 'host'], look);
    assert.match(shared.stdout, new RegExp(`^${marker} 300`, 'm'));
  });

  test('ptrace access to a host process needs --pid host and CAP_SYS_PTRACE', async () => {
    const pid = hostProcess.pid;
    const read = `cat /proc/${pid}/environ 2>&1 | tr "\\0" "\\n" | grep -c SECRET_OF_THE_HOST || true`;
    assert.equal((await run([], read)).stdout.trim(), '0');
    const withPid = await run(['--pid', 'host'], read);
    assert.equal(withPid.stdout.trim(), '0');
    const withPtrace = await run(['--pid', 'host', '--cap-add', 'SYS_PTRACE'], read);
    assert.equal(withPtrace.stdout.trim(), '1');
  });

  test('mounting file systems needs CAP_SYS_ADMIN', async () => {
    const script = 'mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>&1 && grep -c " /tmp/m " /proc/mounts';
    const denied = await run([], script);
    assert.match(denied.stdout, /permission denied|Operation not permitted/);
    const allowed = await run(['--cap-add', 'SYS_ADMIN'], script);
    assert.equal(allowed.stdout.trim(), '1');
  });

  test('loading kernel modules is refused unless CAP_SYS_MODULE is granted', async () => {
    const script = 'echo junk > /tmp/m.ko; insmod /tmp/m.ko 2>&1';
    const denied = await run([], script);
    assert.match(denied.stdout + denied.stderr, /Operation not permitted/);
    // With the capability the kernel itself answers (no module support here, or a bad module file).
    for (const flags of [['--cap-add', 'SYS_MODULE'], ['--privileged']]) {
      const allowed = await run(flags, script);
      const output = allowed.stdout + allowed.stderr;
      assert.notEqual(allowed.code, 0);
      assert.doesNotMatch(output, /Operation not permitted/, flags.join(' '));
      assert.match(output, /invalid module format|not support|Exec format|Invalid|Function not implemented/);
    }
  });

  test('/proc/sysrq-trigger and /proc/sys are read-only unless --privileged', async () => {
    const sysrq = fs.existsSync('/proc/sysrq-trigger');
    const script = `${sysrq ? "sh -c ': > /proc/sysrq-trigger' 2>&1 && echo sysrq-writable; " : ''}echo newname > /proc/sys/kernel/hostname 2>&1 && hostname`;
    const denied = await run([], script);
    assert.doesNotMatch(denied.stdout, /sysrq-writable|newname/);
    assert.match(denied.stderr, /Read-only file system/);
    const allowed = await run(['--privileged'], script);
    assert.match(allowed.stdout, /newname/);
    if (sysrq) assert.match(allowed.stdout, /sysrq-writable/);
  });

  test('masked /proc files are empty unless --privileged', async () => {
    const script = 'wc -c < /proc/timer_list; wc -c < /proc/kcore 2>/dev/null || echo 0';
    const masked = await run([], script);
    assert.deepEqual(masked.stdout.trim().split('\n'), ['0', '0']);
    const open = await run(['--privileged'], 'wc -c < /proc/timer_list');
    assert.ok(Number(open.stdout.trim()) > 0);
  });

  test("another container's files are out of reach", async () => {
    const secret = `secret-${randomBytes(4).toString('hex')}`;
    const a = await d.dockerOk(['run', '-d', 'bb', 'sh', '-c', `echo ${secret} > /${secret}; sleep 120`]);
    try {
      const pidA = await d.dockerOk(['inspect', '-f', '{{.State.Pid}}', a]);
      const look = `cat /proc/${pidA}/root/${secret} 2>/dev/null; cat /proc/*/root/${secret} 2>/dev/null; find / -xdev -name ${secret} 2>/dev/null; echo end`;
      const b = await run([], look);
      assert.equal(b.stdout.trim(), 'end');
      // Sharing the host PID namespace opens /proc/<pid>/root.
      const shared = await run(['--pid', 'host'], look);
      assert.match(shared.stdout, new RegExp(secret));
    } finally {
      await d.docker(['rm', '-f', a]);
    }
  });

  test('raw sockets need CAP_NET_RAW (ping inside the container)', async () => {
    const ping = 'ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1 && echo pong || echo refused';
    assert.equal((await run([], ping)).stdout.trim(), 'pong');
    assert.equal((await run(['--cap-drop', 'NET_RAW'], ping)).stdout.trim(), 'refused');
    assert.equal((await run(['--cap-drop', 'ALL'], ping)).stdout.trim(), 'refused');
  });

  test('device nodes cannot be opened without --device', async () => {
    const loop = createLoopDevice(d.root, 1);
    try {
      const { major, minor } = deviceNumbers(fs.statSync(loop.device).rdev);
      const script = `mknod /tmp/blk b ${major} ${minor}; head -c 512 /tmp/blk 2>/dev/null | wc -c`;
      const denied = await run([], script);
      assert.equal(denied.stdout.trim().split('\n').at(-1), '0');
      const granted = await run(['--device', `${loop.device}:/dev/xblk`], 'head -c 512 /dev/xblk | wc -c');
      assert.equal(granted.stdout.trim(), '512');
      const readOnly = await run(
        ['--device', `${loop.device}:/dev/xblk:r`],
        'echo x > /dev/xblk; head -c 512 /dev/xblk | wc -c',
      );
      assert.match(readOnly.stderr, /Operation not permitted/);
      assert.equal(readOnly.stdout.trim(), '512');
    } finally {
      loop.detach();
    }
  });
});
