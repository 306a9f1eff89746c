import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, test } from 'node:test';
import { sampleContainer, statsObject } from '../../src/runtime/stats.js';

/**
 * Stats from both cgroup layouts, read from file trees shaped like the kernel's (v1: one hierarchy per
 * controller; v2: one directory), so the layout this host does not have is covered too.
 */
const roots: string[] = [];
after(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

function tree(files: Record<string, string>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cgroup-'));
  roots.push(root);
  for (const [rel, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), content);
  }
  return root;
}

const ID = 'c0ffee';
const MB = 1024 * 1024;

describe('cgroup stats', () => {
  test('v1: per-controller hierarchies', () => {
    const c = `strata/${ID}`;
    const root = tree({
      [`cpuacct/${c}/cpuacct.usage`]: '5000000000\n',
      [`cpuacct/${c}/cpuacct.usage_percpu`]: '3000000000 2000000000 \n',
      [`cpuacct/${c}/cpuacct.stat`]: 'user 300\nsystem 100\n',
      [`cpu/${c}/cpu.stat`]: 'nr_periods 10\nnr_throttled 4\nthrottled_time 123\n',
      [`memory/${c}/memory.usage_in_bytes`]: `${30 * MB}\n`,
      [`memory/${c}/memory.max_usage_in_bytes`]: `${40 * MB}\n`,
      [`memory/${c}/memory.limit_in_bytes`]: `${64 * MB}\n`,
      [`memory/${c}/memory.failcnt`]: '2\n',
      [`memory/${c}/memory.stat`]: `cache 1000\ntotal_inactive_file ${5 * MB}\n`,
      [`pids/${c}/pids.current`]: '7\n',
      [`pids/${c}/pids.max`]: 'max\n',
      [`blkio/${c}/blkio.throttle.io_service_bytes_recursive`]:
        '7:0 Read 4096\n7:0 Write 8192\n7:0 Total 12288\nTotal 12288\n',
      [`blkio/${c}/blkio.throttle.io_serviced_recursive`]: '7:0 Read 1\n7:0 Write 2\n',
    });
    const s = sampleContainer('1', ID, 0, root);
    assert.equal(s.cpu.totalNs, 5e9);
    assert.deepEqual(s.cpu.perCpuNs, [3e9, 2e9]);
    assert.equal(s.cpu.userNs, 3e9);
    assert.equal(s.cpu.kernelNs, 1e9);
    assert.deepEqual(s.cpu.throttling, { periods: 10, throttled_periods: 4, throttled_time: 123 });
    assert.equal(s.onlineCpus, 2);
    assert.equal(s.memory.usage, 30 * MB);
    assert.equal(s.memory.limit, 64 * MB);
    assert.equal(s.memory.stats.total_inactive_file, 5 * MB);
    assert.deepEqual(s.pids, { current: 7, limit: 0 });
    assert.deepEqual(
      s.blkio.filter((e) => e.op !== 'Total'),
      [
        { major: 7, minor: 0, op: 'Read', value: 4096 },
        { major: 7, minor: 0, op: 'Write', value: 8192 },
      ],
    );
    const obj = statsObject('web', ID, s, s) as {
      cpu_stats: { cpu_usage: { percpu_usage: number[] } };
      memory_stats: { limit: number };
    };
    assert.deepEqual(obj.cpu_stats.cpu_usage.percpu_usage, [3e9, 2e9]);
    assert.equal(obj.memory_stats.limit, 64 * MB);
  });

  test('v1: no limit is reported as the host memory', () => {
    const c = `strata/${ID}`;
    const root = tree({ [`memory/${c}/memory.limit_in_bytes`]: '9223372036854771712\n' });
    assert.equal(sampleContainer('1', ID, 0, root).memory.limit, os.totalmem());
  });

  test('v2: one directory, usec counters, io.stat', () => {
    const c = `strata/${ID}`;
    const root = tree({
      [`${c}/cpu.stat`]:
        'usage_usec 4000000\nuser_usec 3000000\nsystem_usec 1000000\nnr_periods 5\nnr_throttled 1\nthrottled_usec 2000\n',
      [`${c}/memory.current`]: `${20 * MB}\n`,
      [`${c}/memory.peak`]: `${25 * MB}\n`,
      [`${c}/memory.max`]: 'max\n',
      [`${c}/memory.events`]: 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n',
      [`${c}/memory.stat`]: `anon 100\nfile 200\ninactive_file ${2 * MB}\n`,
      [`${c}/pids.current`]: '3\n',
      [`${c}/pids.max`]: '50\n',
      [`${c}/io.stat`]: '254:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n',
    });
    const s = sampleContainer('2', ID, 0, root);
    assert.equal(s.cpu.totalNs, 4e9);
    assert.equal(s.cpu.userNs, 3e9);
    assert.equal(s.cpu.kernelNs, 1e9);
    assert.deepEqual(s.cpu.throttling, { periods: 5, throttled_periods: 1, throttled_time: 2_000_000 });
    assert.equal(s.onlineCpus, os.availableParallelism());
    assert.equal(s.memory.usage, 20 * MB);
    assert.equal(s.memory.maxUsage, 25 * MB);
    assert.equal(s.memory.limit, os.totalmem());
    assert.equal(s.memory.failcnt, 3);
    assert.equal(s.memory.stats.inactive_file, 2 * MB);
    assert.deepEqual(s.pids, { current: 3, limit: 50 });
    assert.deepEqual(s.blkio, [
      { major: 254, minor: 0, op: 'read', value: 1024 },
      { major: 254, minor: 0, op: 'write', value: 2048 },
    ]);
  });
});
