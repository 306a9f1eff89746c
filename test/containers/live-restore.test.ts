import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

describe('live restore: SIGKILL of the daemon loses nothing', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  test('running containers keep running and logging; exits while down are recorded', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'keeper',
      'bb',
      'sh',
      '-c',
      'i=0; while true; do echo tick$i; i=$((i+1)); sleep 0.2; done',
    ]);
    await d.dockerOk(['run', '-d', '--name', 'quitter', 'bb', 'sh', '-c', 'sleep 2; exit 9']);
    const keeperPid = Number(await d.dockerOk(['inspect', '-f', '{{.State.Pid}}', 'keeper']));
    assert.ok(keeperPid > 0);
    await d.kill();
    // while the daemon is down the quitter exits and the keeper keeps writing
    await new Promise((r) => setTimeout(r, 3000));
    process.kill(keeperPid, 0);
    await d.restart();
    const ps = await d.dockerOk(['ps', '--format', '{{.Names}}']);
    assert.equal(ps, 'keeper');
    assert.equal(Number(await d.dockerOk(['inspect', '-f', '{{.State.Pid}}', 'keeper'])), keeperPid);
    const quitter = JSON.parse(await d.dockerOk(['inspect', 'quitter']))[0];
    assert.equal(quitter.State.Status, 'exited');
    assert.equal(quitter.State.ExitCode, 9);
    const before = (await d.dockerOk(['logs', 'keeper'])).split('\n').length;
    assert.ok(before > 12, `logs kept flowing while the daemon was down (${before} lines)`);
    await new Promise((r) => setTimeout(r, 600));
    const afterLines = (await d.dockerOk(['logs', 'keeper'])).split('\n').length;
    assert.ok(afterLines > before, 'logs keep flowing after the restart');
    // the restored container is fully manageable
    const exec = await d.dockerOk(['exec', 'keeper', 'echo', 'still-here']);
    assert.equal(exec, 'still-here');
    await d.dockerOk(['stop', '-t', '1', 'keeper']);
    const quitterId = quitter.Id as string;
    await d.dockerOk(['rm', 'keeper', 'quitter']);
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    assert.ok(!mounts.includes(d.root), 'no mount leaked');
    assert.ok(!fs.existsSync(`${d.root}/containers/${quitterId}`));
  });

  test('a container removed with --rm while the daemon was down is cleaned up', async () => {
    await d.dockerOk(['run', '-d', '--rm', '--name', 'ephemeral', 'bb', 'sleep', '1']);
    await d.kill();
    await new Promise((r) => setTimeout(r, 1800));
    await d.restart();
    assert.equal(await d.dockerOk(['ps', '-a', '--format', '{{.Names}}']), '');
  });
});
