import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cgroupMountPoints, OciRuntime } from '../../src/runtime/oci.js';

/**
 * `start` and the delete of a stopped container are done in-process for crun (exec.fifo, cgroup rmdir
 * + state dir) and fall back to the runtime binary otherwise. The binary here is a stand-in that logs
 * its arguments, so each test sees whether crun would have been spawned.
 */
let tmp = '';
let fakeCrun = '';
let calls = '';

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-oci-'));
  calls = path.join(tmp, 'calls.log');
  fakeCrun = path.join(tmp, 'crun');
  fs.writeFileSync(fakeCrun, `#!/bin/sh\necho "$@" >> '${calls}'\n`, { mode: 0o755 });
});

after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function runtimeAt(name: 'crun' | 'runc', stateRoot: string): OciRuntime {
  fs.mkdirSync(stateRoot, { recursive: true });
  fs.rmSync(calls, { force: true });
  return new OciRuntime(name, fakeCrun, stateRoot);
}

function loggedCalls(): string[] {
  return fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8').trim().split('\n').filter(Boolean) : [];
}

function mkfifo(file: string): void {
  assert.equal(spawnSync('mkfifo', ['-m', '600', file]).status, 0);
}

/** Field 22 of /proc/<pid>/stat: the process start time, as crun records it. */
function startTime(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
}

async function deadPid(): Promise<number> {
  const child = spawn('true');
  await new Promise((r) => child.once('exit', r));
  return child.pid ?? 0;
}

describe('crun start', () => {
  test('writes one byte to exec.fifo and unlinks it, without spawning crun', async () => {
    const rt = runtimeAt('crun', path.join(tmp, 'start1'));
    const dir = path.join(rt.stateRoot, 'c1');
    fs.mkdirSync(dir);
    mkfifo(path.join(dir, 'exec.fifo'));
    // The container's init holds the read end from `create` on.
    const reader = fs.openSync(path.join(dir, 'exec.fifo'), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      await rt.start('c1');
      const buf = Buffer.alloc(4);
      assert.equal(fs.readSync(reader, buf, 0, 4, null), 1);
      assert.equal(buf[0], 0);
      assert.ok(!fs.existsSync(path.join(dir, 'exec.fifo')), 'the fifo is gone: the container is running');
    } finally {
      fs.closeSync(reader);
    }
    assert.deepEqual(loggedCalls(), []);
  });

  test('falls back to `crun start` without a fifo, or with nobody reading it', async () => {
    const rt = runtimeAt('crun', path.join(tmp, 'start2'));
    await rt.start('missing');
    const dir = path.join(rt.stateRoot, 'orphan');
    fs.mkdirSync(dir);
    mkfifo(path.join(dir, 'exec.fifo')); // no reader: the init died before start
    await rt.start('orphan');
    assert.deepEqual(loggedCalls(), [
      `--root ${rt.stateRoot} start missing`,
      `--root ${rt.stateRoot} start orphan`,
    ]);
    assert.ok(fs.existsSync(path.join(dir, 'exec.fifo')), 'left for crun to report');
  });

  test('runc is always started by its binary', async () => {
    const rt = runtimeAt('runc', path.join(tmp, 'start3'));
    const dir = path.join(rt.stateRoot, 'r1');
    fs.mkdirSync(dir);
    mkfifo(path.join(dir, 'exec.fifo'));
    await rt.start('r1');
    assert.deepEqual(loggedCalls(), [`--root ${rt.stateRoot} start r1`]);
  });
});

describe('delete of a stopped crun container', () => {
  test('removes its cgroups in every hierarchy and its state directory, without spawning crun', async () => {
    const rt = runtimeAt('crun', path.join(tmp, 'del1'));
    const cgroup = `/strata-oci-test-${process.pid}-1`;
    const roots = cgroupMountPoints();
    assert.ok(roots.length > 0, 'cgroup hierarchies are mounted');
    for (const root of roots) fs.mkdirSync(`${root}${cgroup}`);
    try {
      const dir = path.join(rt.stateRoot, 'c2');
      fs.mkdirSync(dir);
      fs.writeFileSync(
        path.join(dir, 'status'),
        JSON.stringify({ pid: await deadPid(), 'process-start-time': 1, 'cgroup-path': cgroup }),
      );
      fs.writeFileSync(path.join(dir, 'config.json'), '{}');
      await rt.deleteStopped('c2');
      assert.ok(!fs.existsSync(dir));
      for (const root of roots) assert.ok(!fs.existsSync(`${root}${cgroup}`), `${root}${cgroup} removed`);
      assert.deepEqual(loggedCalls(), []);
      await rt.deleteStopped('c2'); // already gone: nothing to do
      assert.deepEqual(loggedCalls(), []);
    } finally {
      for (const root of roots) fs.rmSync(`${root}${cgroup}`, { recursive: false, force: true });
    }
  });

  test('falls back to `crun delete --force` while its init runs or its cgroup still holds processes', async () => {
    const rt = runtimeAt('crun', path.join(tmp, 'del2'));
    const running = path.join(rt.stateRoot, 'alive');
    fs.mkdirSync(running);
    fs.writeFileSync(
      path.join(running, 'status'),
      JSON.stringify({ pid: process.pid, 'process-start-time': startTime(process.pid), 'cgroup-path': '' }),
    );
    await rt.deleteStopped('alive');
    assert.ok(fs.existsSync(running), 'a running container is not touched');

    // A process left in the cgroup (e.g. a child of a --pid host container): rmdir says EBUSY.
    const root = cgroupMountPoints().find((r) => fs.existsSync(`${r}/cgroup.procs`));
    assert.ok(root);
    const cgroup = `/strata-oci-test-${process.pid}-2`;
    fs.mkdirSync(`${root}${cgroup}`);
    const sleeper = spawn('sleep', ['30']);
    try {
      fs.writeFileSync(`${root}${cgroup}/cgroup.procs`, String(sleeper.pid));
      const busy = path.join(rt.stateRoot, 'busy');
      fs.mkdirSync(busy);
      fs.writeFileSync(
        path.join(busy, 'status'),
        JSON.stringify({ pid: await deadPid(), 'process-start-time': 1, 'cgroup-path': cgroup }),
      );
      await rt.deleteStopped('busy');
      assert.deepEqual(loggedCalls(), [
        `--root ${rt.stateRoot} delete --force alive`,
        `--root ${rt.stateRoot} delete --force busy`,
      ]);
    } finally {
      sleeper.kill('SIGKILL');
      await new Promise((r) => sleeper.once('exit', r));
      for (let i = 0; i < 50 && fs.existsSync(`${root}${cgroup}`); i++) {
        try {
          fs.rmdirSync(`${root}${cgroup}`);
        } catch {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    }
  });
});
