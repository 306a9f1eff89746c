import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  constants,
  isNativeError,
  mount,
  pipeCloexec,
  reapChild,
  spawnDetachedProcess,
  umount2,
  umount2Async,
} from '../../src/native/index.js';
import { spawnDetached } from '../../src/runtime/spawn.js';

let tmp = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-lifecycle-'));
});
after(() => {
  try {
    umount2(path.join(tmp, 'mnt'), constants.MNT_DETACH);
  } catch {
    // not mounted
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function reaped(pid: number): Promise<number> {
  for (let i = 0; i < 500; i++) {
    const code = reapChild(pid);
    if (code >= 0) return code;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`child ${pid} did not exit`);
}

function readAll(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(4096);
  for (;;) {
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks).toString();
}

describe('posix_spawn of detached helpers', () => {
  test('fds, environment, cwd, a new session and default signals reach the child; its status is reaped', async () => {
    const [outR, outW] = pipeCloexec();
    const script = [
      'echo "env=$GREETING cwd=$(pwd)"',
      // field 6 of /proc/self/stat is the session id: its own pid in a new session
      'read -r stat < /proc/$$/stat; set -- $(echo "$stat" | sed \'s/.*) //\'); echo "sid=$4 pid=$$"',
      'grep SigIgn /proc/$$/status',
      'echo to-fd-4 >&4',
      'exit 7',
    ].join('\n');
    const pid = spawnDetachedProcess(
      '/bin/sh',
      ['/bin/sh', '-c', script],
      ['GREETING=hi', 'PATH=/usr/bin:/bin'],
      tmp,
      [-1, outW, outW, -1, outW],
    );
    fs.closeSync(outW);
    const out = readAll(outR);
    fs.closeSync(outR);
    assert.match(out, new RegExp(`^env=hi cwd=${tmp}$`, 'm'));
    const m = /^sid=(\d+) pid=(\d+)$/m.exec(out);
    assert.ok(m, out);
    assert.equal(m[1], m[2], 'the child leads a session of its own');
    assert.equal(Number(m[2]), pid);
    assert.match(out, /^SigIgn:\s+0+$/m, 'no signal stays ignored (Node ignores SIGPIPE)');
    assert.match(out, /^to-fd-4$/m);
    assert.equal(await reaped(pid), 7);
    assert.throws(
      () => reapChild(pid),
      (err: unknown) => isNativeError(err, 'ECHILD'),
    );
  });

  test('spawnDetached gives sockets for what the child writes and fds for what it reads', async () => {
    const child = spawnDetached(
      '/bin/sh',
      ['-c', 'read -r line <&4; echo "got:$line"; echo oops >&2; exit 3'],
      { PATH: '/usr/bin:/bin' },
      tmp,
      ['ignore', 'read', 'read', 'ignore', 'write'],
    );
    const collect = (fd: number) =>
      new Promise<string>((resolve) => {
        let text = '';
        const s = child.readers.get(fd);
        assert.ok(s);
        s.setEncoding('utf8');
        s.on('data', (d: string) => {
          text += d;
        });
        s.on('end', () => resolve(text));
      });
    const stdout = collect(1);
    const stderr = collect(2);
    const input = child.writers.get(4);
    assert.ok(input !== undefined);
    fs.writeSync(input, 'hello\n');
    assert.equal(await stdout, 'got:hello\n');
    assert.equal(await stderr, 'oops\n');
    assert.equal(await child.exitCode(10_000), 3);
    child.closeAll();
  });

  test('a missing binary is an error, not a child', () => {
    assert.throws(
      () => spawnDetachedProcess('/nonexistent/conmon', ['conmon'], [], tmp, [-1]),
      (err: unknown) => isNativeError(err, 'ENOENT'),
    );
  });
});

describe('umount2 off the event loop', () => {
  test('unmounts, and rejects like umount2 when nothing is mounted', async () => {
    const target = path.join(tmp, 'mnt');
    fs.mkdirSync(target);
    mount('tmpfs', target, 'tmpfs', 0, 'size=1m');
    fs.writeFileSync(path.join(target, 'f'), 'x');
    await umount2Async(target, constants.UMOUNT_NOFOLLOW);
    assert.ok(!fs.existsSync(path.join(target, 'f')));
    await assert.rejects(umount2Async(target), (err: unknown) => {
      assert.ok(isNativeError(err, 'EINVAL'));
      assert.equal(err.syscall, 'umount2');
      assert.equal(err.path, target);
      return true;
    });
  });
});
