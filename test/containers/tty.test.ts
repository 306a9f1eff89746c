import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, run, startDaemon, type TestDaemon } from '../helpers/daemon.js';

async function until(check: () => Promise<boolean> | boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not met in time');
}

describe('interactive TTY sessions under tmux', () => {
  let d: TestDaemon;
  let work: string;
  const session = `strata-tty-${process.pid}`;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-tty-'));
  });
  after(async () => {
    await run('tmux', ['kill-session', '-t', session]);
    await d?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  const pane = async () => (await run('tmux', ['capture-pane', '-p', '-t', session])).stdout;

  /**
   * Types a command line and waits for `expect` on the screen. busybox ash asks the terminal for the
   * cursor position after each prompt and reads its answer from the same input; keys typed before that
   * answer came back (slow under CI load) can be taken as part of it. So a line whose output does not
   * show up is interrupted with Ctrl-C and typed again, at most three times; input that is really lost
   * on its way to the container is lost every time and still fails the test.
   */
  const typeLine = async (line: string, expect: string | (() => boolean)) => {
    const seen = async () => (typeof expect === 'string' ? (await pane()).includes(expect) : expect());
    let lastError: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      if (attempt > 0) {
        await run('tmux', ['send-keys', '-t', session, 'C-c']);
        await new Promise((r) => setTimeout(r, 1000));
      }
      await run('tmux', ['send-keys', '-t', session, line, 'Enter']);
      try {
        await until(seen, 5000);
        return;
      } catch (err) {
        lastError = err;
      }
    }
    throw new Error(`${(lastError as Error).message}; screen:\n${await pane()}\n${d.log().slice(-2000)}`);
  };

  test('docker run -it gives a working shell, resize and exit code', async () => {
    const rcFile = path.join(work, 'rc');
    const cmd = `env DOCKER_HOST=${d.env.DOCKER_HOST} DOCKER_CONFIG=${d.env.DOCKER_CONFIG} docker run -it --rm --name ttyc bb sh; echo $? > ${rcFile}`;
    const started = await run('tmux', ['new-session', '-d', '-s', session, '-x', '100', '-y', '30', cmd]);
    assert.equal(started.code, 0, started.stderr);
    await until(async () => /# ?$/m.test(await pane()));
    await new Promise((r) => setTimeout(r, 300));
    await typeLine('echo tty-$((40+2)); stty size; tty', 'tty-42');
    const screen = await pane();
    assert.match(screen, /^30 100\s*$/m, `terminal size reached the container:\n${screen}`);
    assert.match(screen, /\/dev\/pts\/\d+/);
    await typeLine('exit 5', () => fs.existsSync(rcFile) && fs.readFileSync(rcFile, 'utf8').trim() !== '');
    assert.equal(fs.readFileSync(rcFile, 'utf8').trim(), '5');
    assert.equal(await d.dockerOk(['ps', '-aq']), '', '--rm removed the container');
  });

  test('docker exec -it into a running container', async () => {
    await d.dockerOk(['run', '-d', '--name', 'ttyhost', 'bb', 'sleep', '1000']);
    const rcFile = path.join(work, 'rc2');
    const cmd = `env DOCKER_HOST=${d.env.DOCKER_HOST} DOCKER_CONFIG=${d.env.DOCKER_CONFIG} docker exec -it ttyhost sh; echo $? > ${rcFile}`;
    await run('tmux', ['kill-session', '-t', session]);
    await run('tmux', ['new-session', '-d', '-s', session, '-x', '90', '-y', '25', cmd]);
    await until(async () => /# ?$/m.test(await pane()));
    await new Promise((r) => setTimeout(r, 300));
    await typeLine('echo exec-$((6*7)); ps | grep -c sleep', 'exec-42');
    await typeLine('exit 3', () => fs.existsSync(rcFile) && fs.readFileSync(rcFile, 'utf8').trim() !== '');
    assert.equal(fs.readFileSync(rcFile, 'utf8').trim(), '3');
    await d.dockerOk(['rm', '-f', 'ttyhost']);
  });
});
