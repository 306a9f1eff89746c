import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { demux, probeOf } from '../../src/containers/health.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe('health check rules', () => {
  test('probe from Healthcheck: CMD, CMD-SHELL, NONE, defaults', () => {
    assert.equal(probeOf({ Test: ['NONE'] }), null);
    assert.equal(probeOf(null), null);
    const shell = probeOf({ Test: ['CMD-SHELL', 'test -f /ok'], Interval: 200_000_000 });
    assert.deepEqual(shell?.argv, ['/bin/sh', '-c', 'test -f /ok']);
    assert.equal(shell?.intervalMs, 200);
    assert.equal(shell?.timeoutMs, 30_000);
    assert.equal(shell?.retries, 3);
    assert.deepEqual(probeOf({ Test: ['CMD', 'true'] })?.argv, ['true']);
    const frame = Buffer.concat([Buffer.from([1, 0, 0, 0, 0, 0, 0, 3]), Buffer.from('ok\n')]);
    assert.equal(demux(frame), 'ok\n');
  });
});

describe('health checks', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  test('a container turns healthy, then unhealthy; inspect, ps and events show it', async () => {
    const since = Math.floor(Date.now() / 1000);
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'hc',
      '--health-cmd',
      'cat /tmp/ok',
      '--health-interval',
      '300ms',
      '--health-retries',
      '2',
      '--health-timeout',
      '2s',
      'bb',
      'sh',
      '-c',
      'echo fine > /tmp/ok; sleep 1000',
    ]);
    const status = async () =>
      JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .State.Health}}', 'hc']));
    // `starting` until the first probe (300 ms); a loaded machine may already be past it
    assert.match((await status()).Status, /^(starting|healthy)$/);
    assert.match(
      await d.dockerOk(['ps', '--format', '{{.Status}}', '--filter', 'name=hc']),
      /health: starting|healthy/,
    );
    assert.ok(await waitFor(async () => (await status()).Status === 'healthy', 10_000), 'healthy');
    const healthy = await status();
    assert.equal(healthy.FailingStreak, 0);
    assert.equal(healthy.Log.at(-1).ExitCode, 0);
    assert.equal(healthy.Log.at(-1).Output, 'fine\n');
    assert.match(await d.dockerOk(['ps', '--format', '{{.Status}}', '--filter', 'name=hc']), /\(healthy\)/);
    assert.equal(await d.dockerOk(['ps', '--filter', 'health=healthy', '--format', '{{.Names}}']), 'hc');
    await d.dockerOk(['exec', 'hc', 'rm', '/tmp/ok']);
    assert.ok(await waitFor(async () => (await status()).Status === 'unhealthy', 10_000), 'unhealthy');
    const sick = await status();
    assert.ok(sick.FailingStreak >= 2);
    assert.notEqual(sick.Log.at(-1).ExitCode, 0);
    assert.ok(sick.Log.length <= 5);
    const events = await d.dockerOk([
      'events',
      '--since',
      String(since),
      '--until',
      String(Math.ceil(Date.now() / 1000) + 1),
      '--filter',
      'container=hc',
      '--format',
      '{{.Action}}',
    ]);
    assert.match(events, /health_status: healthy/);
    assert.match(events, /health_status: unhealthy/);
    const execs = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .ExecIDs}}', 'hc']));
    // the user's `docker exec` stays listed (as in dockerd); at most one probe is in flight
    assert.ok(execs === null || execs.length <= 2, `probe sessions are not kept: ${JSON.stringify(execs)}`);
    await d.dockerOk(['rm', '-f', 'hc']);
  });

  test('--init runs catatonit as PID 1; --stop-signal is used by stop', async () => {
    const ps = await d.dockerOk([
      'run',
      '--rm',
      '--init',
      'bb',
      'sh',
      '-c',
      'cat /proc/1/cmdline | tr "\\0" " "',
    ]);
    assert.match(ps, /^\/dev\/init -- sh/);
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'sig',
      '--stop-signal',
      'USR1',
      '--stop-timeout',
      '5',
      'bb',
      'sh',
      '-c',
      'trap "echo got-usr1; exit 7" USR1; while true; do sleep 0.1; done',
    ]);
    const t0 = Date.now();
    await d.dockerOk(['stop', 'sig']);
    assert.ok(Date.now() - t0 < 4000, 'stopped by the stop signal, not the timeout');
    assert.equal(await d.dockerOk(['inspect', '-f', '{{.State.ExitCode}}', 'sig']), '7');
    assert.match(await d.dockerOk(['logs', 'sig']), /got-usr1/);
    await d.dockerOk(['rm', 'sig']);
  });
});
