import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  blockIo,
  cpuPercent,
  memoryUsage,
  redrawFrame,
  renderStats,
  type StatsSample,
  statsEntry,
} from '../../src/cli/commands/stats.js';

/** `stats` arithmetic and rendering, as docker CLI 28 computes and prints them. */

const sample: StatsSample = {
  name: '/st',
  id: `4388d08a9093${'a'.repeat(52)}`,
  pids_stats: { current: 1 },
  blkio_stats: {
    io_service_bytes_recursive: [
      { op: 'Read', value: 1000 },
      { op: 'write', value: 2000 },
      { op: 'Total', value: 3000 },
      { op: 'read', value: 24 },
    ],
  },
  cpu_stats: {
    cpu_usage: { total_usage: 84114659, percpu_usage: [1, 2] },
    system_cpu_usage: 1351730000000,
    online_cpus: 2,
  },
  precpu_stats: { cpu_usage: { total_usage: 74114659 }, system_cpu_usage: 1349730000000 },
  memory_stats: { usage: 344064, limit: 25275645952, stats: { total_inactive_file: 0, cache: 4096 } },
  networks: { eth0: { rx_bytes: 866, tx_bytes: 0 } },
};

describe('stats', () => {
  it('CPU % = Δtotal_usage / Δsystem_cpu_usage × online_cpus × 100', () => {
    assert.equal(cpuPercent(sample), (10000000 / 2000000000) * 2 * 100);
    // No online_cpus: the number of per-CPU counters.
    assert.equal(cpuPercent({ ...sample, cpu_stats: { ...sample.cpu_stats, online_cpus: 0 } }), 1);
    // An empty precpu (first sample of a stream) falls back to our own previous sample.
    const first = { ...sample, precpu_stats: {} };
    assert.equal(cpuPercent(first, sample.precpu_stats), 1);
    assert.equal(cpuPercent({ ...sample, precpu_stats: sample.cpu_stats }), 0);
  });

  it('memory subtracts inactive file pages (v1 total_inactive_file, v2 inactive_file, else cache)', () => {
    assert.equal(memoryUsage(sample.memory_stats), 344064, 'v1 with total_inactive_file 0 subtracts nothing');
    assert.equal(memoryUsage({ usage: 1000, stats: { total_inactive_file: 200 } }), 800);
    assert.equal(memoryUsage({ usage: 1000, stats: { inactive_file: 300 } }), 700);
    assert.equal(memoryUsage({ usage: 1000, stats: { cache: 100 } }), 900);
    assert.equal(memoryUsage({ usage: 1000, stats: { inactive_file: 5000 } }), 1000);
    assert.equal(memoryUsage({ usage: 1000 }), 1000);
  });

  it('block I/O sums read and write entries by their first letter', () => {
    assert.deepEqual(blockIo(sample), [1024, 2000]);
  });

  it('renders docker’s table (the captured `docker stats --no-stream st` line)', () => {
    const entry = statsEntry('st', { ...sample, precpu_stats: sample.cpu_stats });
    assert.equal(
      renderStats([entry], undefined, true),
      'CONTAINER ID   NAME      CPU %     MEM USAGE / LIMIT   MEM %     NET I/O     BLOCK I/O      PIDS\n' +
        '4388d08a9093   st        0.00%     336KiB / 23.54GiB   0.00%     866B / 0B   1.02kB / 2kB   1\n',
    );
    assert.equal(
      renderStats(
        [{ ...entry, invalid: true, name: '' }],
        '{{.Name}} {{.CPUPerc}} {{.MemUsage}} {{.PIDs}}',
        true,
      ),
      '-- -- -- / -- --\n',
    );
  });

  it('redraws in place: home, each line erased to its end, the rest of the screen cleared', () => {
    assert.equal(redrawFrame('a\nb\n'), '\x1b[Ha\x1b[K\nb\x1b[K\n\x1b[J');
  });
});
