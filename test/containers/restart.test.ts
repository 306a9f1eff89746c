import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { nextTimeout, shouldRestart } from '../../src/containers/restart.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('restart policy rules', () => {
  test("dockerd's back-off: 100 ms doubling to a minute, reset after a 10 s run", () => {
    assert.equal(nextTimeout(0, 50), 100);
    assert.equal(nextTimeout(100, 50), 200);
    assert.equal(nextTimeout(51_200, 50), 60_000);
    assert.equal(nextTimeout(60_000, 50), 60_000);
    assert.equal(nextTimeout(6_400, 12_000), 100);
  });

  test('which exits restart', () => {
    assert.ok(shouldRestart({ Name: 'always' }, 0, 9, false));
    assert.ok(!shouldRestart({ Name: 'always' }, 1, 0, true), 'manual stop wins');
    assert.ok(shouldRestart({ Name: 'on-failure', MaximumRetryCount: 2 }, 1, 1, false));
    assert.ok(!shouldRestart({ Name: 'on-failure', MaximumRetryCount: 2 }, 1, 2, false));
    assert.ok(!shouldRestart({ Name: 'on-failure' }, 0, 0, false));
    assert.ok(!shouldRestart({ Name: 'no' }, 1, 0, false));
    assert.ok(shouldRestart({ Name: 'unless-stopped' }, 0, 0, false));
  });
});

describe('restart policies', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  const inspect = async (name: string) => JSON.parse(await d.dockerOk(['inspect', name]))[0];

  test('on-failure:N restarts a crashing container N times, then leaves it exited', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'crasher',
      '--restart',
      'on-failure:3',
      'bb',
      'sh',
      '-c',
      'exit 3',
    ]);
    // 100 + 200 + 400 ms of back-off plus four short runs
    const settled = await waitFor(async () => {
      const c = await inspect('crasher');
      return c.RestartCount === 3 && c.State.Status === 'exited';
    }, 20_000);
    const c = await inspect('crasher');
    assert.ok(settled, `RestartCount ${c.RestartCount}, status ${c.State.Status}`);
    assert.equal(c.State.ExitCode, 3);
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await inspect('crasher')).RestartCount, 3, 'no fourth restart');
    const events = await d.dockerOk([
      'events',
      '--since',
      '0',
      '--until',
      `${Math.ceil(Date.now() / 1000)}`,
      '--filter',
      'container=crasher',
      '--filter',
      'event=start',
      '--format',
      '{{.Action}}',
    ]);
    assert.equal(events.split('\n').filter(Boolean).length, 4, 'first start + 3 restarts');
  });

  test('always restarts after a clean exit; docker stop ends it for good', async () => {
    await d.dockerOk(['run', '-d', '--name', 'looper', '--restart', 'always', 'bb', 'sh', '-c', 'sleep 0.3']);
    assert.ok(await waitFor(async () => (await inspect('looper')).RestartCount >= 2, 15_000));
    await d.dockerOk(['stop', '-t', '1', 'looper']);
    const count = (await inspect('looper')).RestartCount;
    await new Promise((r) => setTimeout(r, 1500));
    const c = await inspect('looper');
    assert.equal(c.State.Status, 'exited');
    assert.equal(c.RestartCount, count, 'no restart after a manual stop');
  });

  test('the back-off is honoured after a daemon restart; a container that died meanwhile is restarted', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'phoenix',
      '--restart',
      'unless-stopped',
      'bb',
      'sh',
      '-c',
      'sleep 2; exit 1',
    ]);
    const pid = (await inspect('phoenix')).State.Pid;
    assert.ok(pid > 0);
    await d.kill();
    process.kill(pid, 'SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    await d.restart();
    assert.ok(
      await waitFor(async () => {
        const c = await inspect('phoenix');
        return c.State.Running && c.RestartCount >= 1;
      }, 10_000),
      'restarted after the daemon came back',
    );
    await d.dockerOk(['rm', '-f', 'phoenix', 'looper', 'crasher']);
  });
});
