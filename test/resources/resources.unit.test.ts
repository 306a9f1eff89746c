import assert from 'node:assert/strict';
import * as os from 'node:os';
import { describe, test } from 'node:test';
import type { CgroupCapabilities } from '../../src/runtime/cgroup-host.js';
import { parseCpuList } from '../../src/runtime/cgroup-host.js';
import {
  checkResources,
  checkResourceUpdate,
  deviceNumbers,
  ociResources,
} from '../../src/runtime/resources.js';
import { buildRlimits } from '../../src/runtime/spec.js';
import { statsObject } from '../../src/runtime/stats.js';

const ALL: CgroupCapabilities = {
  version: '1',
  memoryLimit: true,
  swapLimit: true,
  memoryReservation: true,
  oomKillDisable: true,
  memorySwappiness: true,
  cpuShares: true,
  cpuCfs: true,
  cpuset: true,
  cpusetCpus: '0-1',
  cpusetMems: '0',
  pidsLimit: true,
  blkioWeight: true,
  blkioThrottle: true,
};
const MB = 1024 * 1024;

describe('create-time resource checks (dockerd rules and messages)', () => {
  test('memory: minimum, swap default and ordering, reservation', () => {
    assert.throws(() => checkResources({ Memory: 4 * MB }, ALL), /Minimum memory limit allowed is 6MB/);
    const host: Record<string, unknown> = { Memory: 32 * MB };
    assert.deepEqual(checkResources(host, ALL), []);
    assert.equal(host.MemorySwap, 64 * MB, 'swap defaults to twice the memory');
    assert.equal(host.ShmSize, 64 * MB);
    assert.throws(
      () => checkResources({ Memory: 32 * MB, MemorySwap: 16 * MB }, ALL),
      /Minimum memoryswap limit should be larger than memory limit/,
    );
    assert.throws(() => checkResources({ MemorySwap: 16 * MB }, ALL), /always set the Memory limit/);
    assert.throws(
      () => checkResources({ Memory: 16 * MB, MemoryReservation: 32 * MB }, ALL),
      /can not be less than memory reservation/,
    );
    const unlimitedSwap: Record<string, unknown> = { Memory: 32 * MB, MemorySwap: -1 };
    checkResources(unlimitedSwap, ALL);
    assert.equal(unlimitedSwap.MemorySwap, -1);
  });

  test('cpu: conflicts, ranges, cpusets', () => {
    assert.throws(() => checkResources({ NanoCpus: 5e8, CpuQuota: 50000 }, ALL), /Nano CPUs and CPU Quota/);
    assert.throws(() => checkResources({ NanoCpus: 5e8, CpuPeriod: 50000 }, ALL), /Nano CPUs and CPU Period/);
    const n = os.availableParallelism();
    assert.throws(
      () => checkResources({ NanoCpus: (n + 1) * 1e9 }, ALL),
      new RegExp(`Range of CPUs is from 0.01 to ${n}.00`),
    );
    assert.throws(() => checkResources({ CpuPeriod: 500 }, ALL), /CPU cfs period can not be less than 1ms/);
    assert.throws(() => checkResources({ CpuQuota: 500 }, ALL), /CPU cfs quota can not be less than 1ms/);
    assert.throws(
      () => checkResources({ CpusetCpus: '0-7' }, ALL),
      /Requested CPUs are not available - requested 0-7, available: 0-1/,
    );
    assert.throws(() => checkResources({ CpusetCpus: 'a' }, ALL), /Invalid value a for cpuset cpus/);
    const shares: Record<string, unknown> = { CpuShares: 1 };
    assert.match(checkResources(shares, ALL)[0], /Changing requested CPUShares of 1 to minimum allowed of 2/);
    assert.equal(shares.CpuShares, 2);
  });

  test('settings the host cannot enforce are dropped with a warning', () => {
    const host: Record<string, unknown> = { BlkioWeight: 300, Memory: 32 * MB, PidsLimit: 10 };
    const warnings = checkResources(host, { ...ALL, blkioWeight: false, swapLimit: false, pidsLimit: false });
    assert.equal(host.BlkioWeight, 0);
    assert.equal(host.MemorySwap, -1);
    assert.equal(host.PidsLimit, null);
    assert.ok(warnings.some((w) => /does not support Block I\/O weight/.test(w)));
    assert.ok(warnings.some((w) => /Memory limited without swap/.test(w)));
    assert.throws(() => checkResources({ BlkioWeight: 5 }, ALL), /Range of blkio weight is from 10 to 1000/);
  });

  test('ulimits above the host hard limit are refused, not raised', () => {
    const hard = new Map([['RLIMIT_NOFILE', 4096]]);
    assert.throws(
      () => buildRlimits([{ Name: 'nofile', Soft: 1024, Hard: 8192 }], hard),
      /ulimit nofile=1024:8192 exceeds the host's hard limit 4096/,
    );
    assert.throws(
      () => buildRlimits([{ Name: 'nofile', Soft: 2048, Hard: 1024 }], hard),
      /soft limit must be less/,
    );
    assert.throws(
      () => buildRlimits([{ Name: 'nofiles', Soft: 1, Hard: 1 }], hard),
      /invalid ulimit type: nofiles/,
    );
    assert.throws(() => buildRlimits([{ Name: 'core', Soft: -1, Hard: 100 }], hard), /unlimited soft limit/);
    const ok = buildRlimits([{ Name: 'nofile', Soft: 100, Hard: 200 }], hard);
    assert.deepEqual(
      ok.find((r) => r.type === 'RLIMIT_NOFILE'),
      { type: 'RLIMIT_NOFILE', soft: 100, hard: 200 },
    );
    // The implicit default (1048576) is clamped to what the host allows.
    assert.deepEqual(buildRlimits([], hard), [{ type: 'RLIMIT_NOFILE', soft: 4096, hard: 4096 }]);
  });
});

describe('OCI resources', () => {
  test('maps Docker fields to cgroup settings', () => {
    const r = ociResources({
      Memory: 64 * MB,
      MemorySwap: 128 * MB,
      MemoryReservation: 32 * MB,
      OomKillDisable: true,
      NanoCpus: 5e8,
      CpuShares: 512,
      CpusetCpus: '0',
      PidsLimit: 50,
    });
    assert.deepEqual(r.memory, {
      limit: 64 * MB,
      reservation: 32 * MB,
      swap: 128 * MB,
      disableOOMKiller: true,
    });
    assert.deepEqual(r.cpu, { shares: 512, period: 100000, quota: 50000, cpus: '0' });
    assert.deepEqual(r.pids, { limit: 50 });
  });

  test('update: lifting limits, refusing a memory limit above swap', () => {
    const current = { Memory: 32 * MB, MemorySwap: 64 * MB, NanoCpus: 5e8 };
    assert.throws(
      () => checkResourceUpdate(current, { Memory: 100 * MB }, ALL, true),
      /Memory limit should be smaller than already set memoryswap limit/,
    );
    const { merged } = checkResourceUpdate(
      current,
      { Memory: 100 * MB, MemorySwap: 200 * MB, CpuQuota: 20000 },
      ALL,
      true,
    );
    assert.deepEqual(merged, { Memory: 100 * MB, MemorySwap: 200 * MB, CpuQuota: 20000, NanoCpus: 0 });
    assert.equal(ociResources({ ...current, Memory: 0 }, true).memory?.limit, -1);
  });

  test('dev_t decoding and cpu lists', () => {
    assert.deepEqual(deviceNumbers(254 * 256), { major: 254, minor: 0 });
    assert.deepEqual(deviceNumbers(0x10301), { major: 259, minor: 1 });
    assert.deepEqual(deviceNumbers(0x10082c), { major: 8, minor: 300 });
    assert.deepEqual(parseCpuList('0-2,5'), [0, 1, 2, 5]);
    assert.equal(parseCpuList('x'), null);
  });

  test('stats object: a stopped container has dockerd zero shape', () => {
    const s = statsObject('web', 'abc', null, null);
    assert.equal(s.read, '0001-01-01T00:00:00Z');
    assert.equal(s.name, '/web');
    assert.deepEqual(s.memory_stats, {});
  });
});
