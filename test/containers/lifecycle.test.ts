import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not met in time');
}

describe('container lifecycle', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  test('run -d, ps, logs, stop, start, restart, kill, rm', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      '--name',
      'svc',
      'bb',
      'sh',
      '-c',
      'trap "exit 7" TERM; i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done',
    ]);
    assert.match(id, /^[a-f0-9]{64}$/);
    const ps = await d.dockerOk(['ps', '--format', '{{.Names}} {{.Status}}']);
    assert.match(ps, /^svc Up /m);
    await waitFor(async () => (await d.dockerOk(['logs', 'svc'])).includes('line3'));
    const tail = await d.dockerOk(['logs', '--tail', '2', 'svc']);
    assert.equal(tail.split('\n').length, 2);
    const stamped = await d.dockerOk(['logs', '-t', '--tail', '1', 'svc']);
    assert.match(stamped, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line\d+$/);
    await d.dockerOk(['stop', '-t', '5', 'svc']);
    const inspect = JSON.parse(await d.dockerOk(['inspect', 'svc']))[0];
    assert.equal(inspect.State.Status, 'exited');
    assert.equal(inspect.State.ExitCode, 7);
    const waited = await d.dockerOk(['wait', 'svc']);
    assert.equal(waited, '7');
    await d.dockerOk(['start', 'svc']);
    assert.equal(JSON.parse(await d.dockerOk(['inspect', 'svc']))[0].State.Running, true);
    await d.dockerOk(['restart', '-t', '1', 'svc']);
    assert.equal(JSON.parse(await d.dockerOk(['inspect', 'svc']))[0].State.Running, true);
    const rmRunning = await d.docker(['rm', 'svc']);
    assert.equal(rmRunning.code, 1);
    assert.match(rmRunning.stderr, /cannot remove a running container/);
    await d.dockerOk(['kill', '-s', 'KILL', 'svc']);
    const killed = JSON.parse(await d.dockerOk(['inspect', 'svc']))[0];
    assert.equal(killed.State.ExitCode, 137);
    const killAgain = await d.docker(['kill', 'svc']);
    assert.equal(killAgain.code, 1);
    assert.match(killAgain.stderr, /is not running/);
    await d.dockerOk(['rm', 'svc']);
    assert.equal(await d.dockerOk(['ps', '-aq']), '');
  });

  test('logs -f follows until the container exits', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'follow',
      'bb',
      'sh',
      '-c',
      'for i in 1 2 3; do echo n$i; sleep 0.3; done',
    ]);
    const r = await d.docker(['logs', '-f', 'follow'], { timeoutMs: 15_000 });
    assert.equal(r.stdout, 'n1\nn2\nn3\n');
    const since = await d.dockerOk(['logs', '--since', '1h', 'follow']);
    assert.equal(since, 'n1\nn2\nn3');
    await d.dockerOk(['rm', 'follow']);
  });

  test('pause and unpause freeze the processes', async () => {
    await d.dockerOk(['run', '-d', '--name', 'pz', 'bb', 'sleep', '1000']);
    await d.dockerOk(['pause', 'pz']);
    assert.match(await d.dockerOk(['ps', '--filter', 'name=pz', '--format', '{{.Status}}']), /\(Paused\)/);
    const frozen = await d.dockerOk(['inspect', '-f', '{{.State.Paused}}', 'pz']);
    assert.equal(frozen, 'true');
    await d.dockerOk(['unpause', 'pz']);
    assert.equal(await d.dockerOk(['inspect', '-f', '{{.State.Status}}', 'pz']), 'running');
    await d.dockerOk(['rm', '-f', 'pz']);
  });

  test('create, start -a, attach, wait, rename, top', async () => {
    await d.dockerOk(['create', '--name', 'c1', 'bb', 'sh', '-c', 'echo created-then-started; exit 4']);
    assert.equal(await d.dockerOk(['inspect', '-f', '{{.State.Status}}', 'c1']), 'created');
    const started = await d.docker(['start', '-a', 'c1']);
    assert.equal(started.stdout, 'created-then-started\n');
    assert.equal(started.code, 4);
    await d.dockerOk(['rename', 'c1', 'c2']);
    assert.equal(await d.dockerOk(['inspect', '-f', '{{.Name}}', 'c2']), '/c2');
    await d.dockerOk(['rm', 'c2']);

    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'att',
      'bb',
      'sh',
      '-c',
      'sleep 4; echo attached-output; exit 5',
    ]);
    const attached = await d.docker(['attach', 'att'], { timeoutMs: 15_000 });
    assert.match(attached.stdout, /attached-output/);
    assert.equal(attached.code, 5);
    await d.dockerOk(['rm', 'att']);

    await d.dockerOk(['run', '-d', '--name', 'topc', 'bb', 'sleep', '1000']);
    const top = await d.dockerOk(['top', 'topc']);
    assert.match(top, /sleep 1000/);
    assert.equal(top.split('\n').length, 2, 'only the container process is listed');
    await d.dockerOk(['rm', '-f', 'topc']);
  });

  test('exec with -e -u -w, exit codes, stdin, detached', async () => {
    await d.dockerOk(['run', '-d', '--name', 'ex', 'bb', 'sleep', '1000']);
    const out = await d.dockerOk([
      'exec',
      '-e',
      'A=1',
      '-u',
      'app',
      '-w',
      '/tmp',
      'ex',
      'sh',
      '-c',
      'echo $A; id -un; pwd',
    ]);
    assert.deepEqual(out.split('\n'), ['1', 'app', '/tmp']);
    const code = await d.docker(['exec', 'ex', 'sh', '-c', 'echo to-err >&2; exit 42']);
    assert.equal(code.code, 42);
    assert.equal(code.stderr, 'to-err\n');
    const stdin = await d.docker(['exec', '-i', 'ex', 'sh', '-c', 'read x; echo got:$x'], { input: 'abc\n' });
    assert.equal(stdin.stdout, 'got:abc\n');
    // Input reaches a process that starts only after the client sent it (and half-closed): repeated,
    // since losing it was a race with conmon making the exec's stdin.
    for (let i = 0; i < 8; i++) {
      const again = await d.docker(['exec', '-i', 'ex', 'sh', '-c', 'cat; echo eof'], {
        input: `line-${i}\n`,
        timeoutMs: 20_000,
      });
      assert.equal(again.stdout, `line-${i}\neof\n`, `round ${i}`);
    }
    await d.dockerOk(['exec', '-d', 'ex', 'sh', '-c', 'echo detached > /tmp/d']);
    await waitFor(async () => (await d.docker(['exec', 'ex', 'cat', '/tmp/d'])).stdout === 'detached\n');
    const missing = await d.docker(['exec', 'ex', 'nonexistent-binary']);
    assert.notEqual(missing.code, 0);
    await d.dockerOk(['stop', '-t', '0', 'ex']);
    const stopped = await d.docker(['exec', 'ex', 'true']);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /is not running/);
    await d.dockerOk(['rm', 'ex']);
  });

  test('exec start whose JSON body arrives after its headers still gets the stdin that follows', async () => {
    // The daemon then reads the body from the socket itself and pauses it; the input forwarding
    // must resume it (it did not: the input sat unread and the exec hung).
    await d.dockerOk(['run', '-d', '--name', 'split', 'bb', 'sleep', '1000']);
    const created = await d.api('POST', '/containers/split/exec', {
      Cmd: ['sh', '-c', 'cat; echo eof'],
      AttachStdin: true,
      AttachStdout: true,
      AttachStderr: true,
    });
    const { Id } = JSON.parse(created.body) as { Id: string };
    const body = JSON.stringify({ Detach: false, Tty: false });
    const sock = net.connect(d.socket);
    await new Promise((r) => sock.once('connect', r));
    let received = '';
    sock.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    const closed = new Promise((r) => sock.once('close', r));
    sock.write(
      `POST /v1.41/exec/${Id}/start HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n`,
    );
    await new Promise((r) => setTimeout(r, 100));
    sock.write(body);
    await new Promise((r) => setTimeout(r, 100));
    sock.end('split-input\n');
    const timer = setTimeout(() => sock.destroy(), 15_000);
    await closed;
    clearTimeout(timer);
    assert.match(received, /^HTTP\/1\.1 101/);
    // Multiplexed frames: 8-byte headers, then the payload.
    assert.ok(
      received.includes('split-input\n') && received.includes('eof\n'),
      `the exec got its input and EOF:\n${received}`,
    );
    await d.dockerOk(['rm', '-f', 'split']);
  });

  test('ps filters, -n, -q, -s and --format', async () => {
    assert.equal(
      (await d.docker(['run', '--name', 'f-exit3', '-l', 'grp=a', 'bb', 'sh', '-c', 'exit 3'])).code,
      3,
    );
    await d.dockerOk(['run', '-d', '--name', 'f-run', '-l', 'grp=b', 'bb', 'sleep', '1000']);
    await d.dockerOk(['create', '--name', 'f-created', 'bb', 'true']);
    const names = async (args: string[]) =>
      (await d.dockerOk(['ps', ...args, '--format', '{{.Names}}'])).split('\n').filter(Boolean).sort();
    assert.deepEqual(await names([]), ['f-run']);
    assert.deepEqual(await names(['-a', '--filter', 'status=exited']), ['f-exit3']);
    assert.deepEqual(await names(['-a', '--filter', 'status=created']), ['f-created']);
    assert.deepEqual(await names(['-a', '--filter', 'exited=3']), ['f-exit3']);
    assert.deepEqual(await names(['-a', '--filter', 'label=grp=b']), ['f-run']);
    assert.deepEqual(await names(['-a', '--filter', 'label=grp']), ['f-exit3', 'f-run']);
    assert.deepEqual(await names(['-a', '--filter', 'name=f-c']), ['f-created']);
    assert.deepEqual(await names(['-a', '--filter', 'ancestor=bb']), ['f-created', 'f-exit3', 'f-run']);
    const runId = await d.dockerOk(['inspect', '-f', '{{.Id}}', 'f-run']);
    assert.deepEqual(await names(['-a', '--filter', `id=${runId.slice(0, 10)}`]), ['f-run']);
    assert.equal((await d.dockerOk(['ps', '-a', '-n', '1', '-q'])).split('\n').length, 1);
    assert.match(await d.dockerOk(['ps', '-q']), /^[a-f0-9]{12}$/);
    const sized = await d.dockerOk(['ps', '-s', '--format', '{{.Size}}']);
    assert.match(sized, /B/);
    const bad = await d.docker(['ps', '--filter', 'bogus=1']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Invalid filter 'bogus'/);
    await d.dockerOk(['rm', '-f', 'f-run']);
    const pruned = await d.dockerOk(['container', 'prune', '-f']);
    assert.match(pruned, /Total reclaimed space/);
    assert.equal(await d.dockerOk(['ps', '-aq']), '');
  });

  test('ps --size: SizeRw is the container layer, SizeRootFs adds the image layers', async () => {
    const upperSize = (dir: string): number => {
      let total = 0;
      for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
        if (e.isFile() || e.isSymbolicLink()) total += fs.lstatSync(path.join(e.parentPath, e.name)).size;
      }
      return total;
    };
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'sz-a',
      'bb',
      'sh',
      '-c',
      'head -c 123457 /dev/zero > /blob; sleep 300',
    ]);
    await d.dockerOk(['run', '-d', '--name', 'sz-b', 'bb', 'sleep', '300']);
    await waitFor(async () => (await d.docker(['exec', 'sz-a', 'test', '-s', '/blob'])).code === 0);
    await waitFor(async () => (await d.dockerOk(['exec', 'sz-a', 'wc', '-c', '/blob'])).startsWith('123457'));
    const list = JSON.parse(
      (await d.api('GET', '/containers/json?size=1&filters=%7B%22name%22%3A%5B%22sz-%22%5D%7D')).body,
    ) as { Names: string[]; Id: string; SizeRw: number; SizeRootFs: number }[];
    assert.equal(list.length, 2);
    const byName = new Map(list.map((c) => [c.Names[0], c]));
    const a = byName.get('/sz-a');
    const b = byName.get('/sz-b');
    assert.ok(a && b);
    for (const c of [a, b]) {
      const upper = await d.dockerOk(['inspect', '-f', '{{.GraphDriver.Data.UpperDir}}', c.Id]);
      assert.equal(c.SizeRw, upperSize(upper));
    }
    assert.ok(a.SizeRw >= 123457 && a.SizeRw - b.SizeRw >= 123457, `${a.SizeRw} vs ${b.SizeRw}`);
    // Same image: the same layers on top of each container's own.
    assert.ok(a.SizeRootFs - a.SizeRw > 100_000);
    assert.equal(a.SizeRootFs - a.SizeRw, b.SizeRootFs - b.SizeRw);
    // A second request walks the layer again: a file written since shows.
    await d.dockerOk(['exec', 'sz-b', 'sh', '-c', 'head -c 5000 /dev/zero > /more']);
    const again = JSON.parse((await d.api('GET', `/containers/${b.Id}/json?size=1`)).body) as {
      SizeRw: number;
      SizeRootFs: number;
    };
    assert.equal(again.SizeRw, b.SizeRw + 5000);
    assert.equal(again.SizeRootFs, b.SizeRootFs + 5000);
    await d.dockerOk(['rm', '-f', 'sz-a', 'sz-b']);
  });

  test('events stream container and image events with filters', async () => {
    const since = Math.floor(Date.now() / 1000) - 1;
    await d.dockerOk(['run', '--rm', '--name', 'evc', '-l', 'lab=1', 'bb', 'true']);
    const until = Math.floor(Date.now() / 1000) + 1;
    const ev = await d.dockerOk([
      'events',
      '--since',
      String(since),
      '--until',
      String(until),
      '--filter',
      'container=evc',
      '--format',
      '{{.Type}} {{.Action}} {{.Actor.Attributes.lab}}',
    ]);
    const lines = ev.split('\n');
    for (const action of ['create', 'attach', 'start', 'die', 'destroy']) {
      assert.ok(lines.includes(`container ${action} 1`), `missing ${action} in ${ev}`);
    }
    await d.dockerOk(['tag', 'bb', 'evtag:1']);
    const imageEvents = await d.dockerOk([
      'events',
      '--since',
      String(since),
      '--until',
      String(Math.floor(Date.now() / 1000) + 1),
      '--filter',
      'type=image',
      '--format',
      '{{.Action}}',
    ]);
    assert.match(imageEvents, /^tag$/m);
    await d.dockerOk(['rmi', 'evtag:1']);
  });
});
