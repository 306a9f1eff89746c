import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { after, before, describe, test } from 'node:test';
import { deviceNumbers } from '../../src/runtime/resources.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import {
  createLoopDevice,
  hostHardLimit,
  isCgroupV2,
  readCgroup,
  runLogged,
  sleep,
  waitFor,
} from './helpers.js';

/**
 * Each limit checked from inside the container and from the host's cgroup files, with real loads that
 * stay bounded even if a limit were not applied (a fixed number of processes, a fixed allocation, a few
 * seconds of CPU).
 */
const MB = 1024 * 1024;

/** A shell snippet printing `<label> <start> <end>` (/proc/uptime seconds) around a command. */
function ms(label: string, command: string): string {
  return `s=$(cut -d" " -f1 /proc/uptime); ${command} 2>/dev/null; echo ${label} $s $(cut -d" " -f1 /proc/uptime)`;
}

/** Milliseconds from a line printed by `ms`. */
function elapsedMs(line: string): number {
  const [, start, end] = line.trim().split(' ');
  return Math.round((Number(end) - Number(start)) * 1000);
}

describe('resource limits', { skip: isCgroupV2 ? 'cgroup v1 file names' : false }, () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
  });

  test('a memory hog is killed at its limit: exit 137, OOMKilled true', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      '--memory',
      '32m',
      '--memory-swap',
      '32m',
      'bb',
      'sh',
      '-c',
      'while [ ! -f /tmp/go ]; do sleep 0.05; done; x=$(head -c 200000000 /dev/zero | tr "\\0" a); echo survived',
    ]);
    assert.equal(readCgroup('memory', id, 'memory.limit_in_bytes'), String(32 * MB));
    assert.equal(
      await d.dockerOk(['exec', id, 'cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes']),
      String(32 * MB),
    );
    await d.dockerOk(['exec', id, 'touch', '/tmp/go']);
    const code = await d.dockerOk(['wait', id]);
    assert.equal(code, '137');
    const state = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .State}}', id])) as {
      OOMKilled: boolean;
      ExitCode: number;
    };
    assert.equal(state.OOMKilled, true);
    assert.equal(state.ExitCode, 137);
    assert.equal((await d.dockerOk(['logs', id])).includes('survived'), false);
    await d.dockerOk(['rm', id]);
  });

  test('a fork bomb stops at its pids limit', async () => {
    // Doubling fork tree, depth 7: at most 255 processes even without a limit.
    const id = await d.dockerOk([
      'run',
      '-d',
      '--pids-limit',
      '20',
      'bb',
      'sh',
      '-c',
      'b() { if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & wait; else sleep 20; fi; }; b 7 2>/tmp/err; sleep 30',
    ]);
    try {
      assert.equal(readCgroup('pids', id, 'pids.max'), '20');
      // Subshells whose fork failed may exit at once, so the count can touch 20 only briefly: wait
      // for the refusals the cgroup counts, then check the count never went past the limit.
      await waitFor(
        'the fork bomb to hit its limit',
        () => /max [1-9]/.test(readCgroup('pids', id, 'pids.events')),
        15_000,
      );
      await sleep(500);
      assert.ok(Number(readCgroup('pids', id, 'pids.current')) <= 20);
      const err = await d.dockerOk(['exec', id, 'cat', '/tmp/err']).catch((e: Error) => e.message);
      assert.match(err, /Resource temporarily unavailable|can't fork/);
    } finally {
      await d.docker(['rm', '-f', id]);
    }
  });

  test('--cpus 0.5 keeps a busy loop near half a core', async () => {
    const id = await d.dockerOk(['run', '-d', '--cpus', '0.5', 'bb', 'sh', '-c', 'while :; do :; done']);
    try {
      assert.equal(readCgroup('cpu', id, 'cpu.cfs_quota_us'), '50000');
      assert.equal(readCgroup('cpu', id, 'cpu.cfs_period_us'), '100000');
      await sleep(500);
      const t0 = process.hrtime.bigint();
      const u0 = BigInt(readCgroup('cpuacct', id, 'cpuacct.usage'));
      await sleep(3000);
      const u1 = BigInt(readCgroup('cpuacct', id, 'cpuacct.usage'));
      const elapsed = Number(process.hrtime.bigint() - t0);
      const share = Number(u1 - u0) / elapsed;
      // Throttled to at most half a core; a loaded CI host may give it less.
      assert.ok(share <= 0.6, `busy loop used ${(share * 100).toFixed(1)}% of a core`);
      assert.ok(share >= 0.15, `busy loop used only ${(share * 100).toFixed(1)}% of a core`);
      // A loop that got near its quota was throttled; on a host too loaded to give it half a core
      // the quota is never reached, so there is nothing to throttle.
      if (share >= 0.4) assert.match(readCgroup('cpu', id, 'cpu.stat'), /nr_throttled [1-9]/);
    } finally {
      await d.docker(['rm', '-f', id]);
    }
  });

  test('cpuset, shares, reservation, swap and oom-kill-disable reach the cgroup', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      '--cpuset-cpus',
      '0',
      '--cpu-shares',
      '512',
      '--memory',
      '64m',
      '--memory-reservation',
      '32m',
      '--memory-swap',
      '128m',
      '--oom-kill-disable',
      'bb',
      'sleep',
      '60',
    ]);
    try {
      const inside = await d.dockerOk([
        'exec',
        id,
        'sh',
        '-c',
        'cat /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/memory/memory.soft_limit_in_bytes /sys/fs/cgroup/memory/memory.memsw.limit_in_bytes; grep oom_kill_disable /sys/fs/cgroup/memory/memory.oom_control; nproc',
      ]);
      assert.deepEqual(inside.split('\n'), [
        '0',
        '512',
        String(32 * MB),
        String(128 * MB),
        'oom_kill_disable 1',
        '1',
      ]);
      assert.equal(readCgroup('cpuset', id, 'cpuset.cpus'), '0');
      assert.equal(readCgroup('cpu', id, 'cpu.shares'), '512');
      assert.equal(readCgroup('memory', id, 'memory.soft_limit_in_bytes'), String(32 * MB));
      assert.equal(readCgroup('memory', id, 'memory.memsw.limit_in_bytes'), String(128 * MB));
      const host = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .HostConfig}}', id])) as Record<
        string,
        unknown
      >;
      assert.equal(host.Memory, 64 * MB);
      assert.equal(host.MemorySwap, 128 * MB);
      assert.equal(host.OomKillDisable, true);
    } finally {
      await d.docker(['rm', '-f', id]);
    }
  });

  test('impossible values are refused at create with dockerd messages (exit 125)', async () => {
    const cases: [string[], RegExp][] = [
      [['--memory', '4m'], /Minimum memory limit allowed is 6MB/],
      [
        ['--memory', '32m', '--memory-swap', '16m'],
        /Minimum memoryswap limit should be larger than memory limit/,
      ],
      [['--cpus', String(os.availableParallelism() + 1)], /Range of CPUs is from 0.01 to/],
      [['--cpuset-cpus', '0-63'], /Requested CPUs are not available/],
      [['--cpus', '0.5', '--cpu-quota', '20000'], /Conflicting options: Nano CPUs and CPU Quota/],
    ];
    for (const [flags, message] of cases) {
      const r = await d.docker(['run', '--rm', ...flags, 'bb', 'true']);
      assert.equal(r.code, 125, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.equal(await d.dockerOk(['ps', '-aq']), '');
  });

  test('blkio: read/write bps throttling on a block device; weight is dropped with a warning when unsupported', async () => {
    const loop = createLoopDevice(d.root);
    try {
      const dev = loop.device;
      const throttled = await runLogged(
        d,
        [
          '--device',
          `${dev}:/dev/xloop`,
          '--device-read-bps',
          `${dev}:1mb`,
          '--device-write-bps',
          `${dev}:1mb`,
        ],
        [
          'sh',
          '-c',
          'cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_bps_device; ' +
            `${ms('read', 'dd if=/dev/xloop of=/dev/null bs=256k count=8 iflag=direct')}; ${ms('write', 'dd if=/dev/zero of=/dev/xloop bs=256k count=8 oflag=direct')}`,
        ],
      );
      assert.equal(throttled.code, 0, throttled.stderr);
      const lines = throttled.stdout.trim().split('\n');
      const { major, minor } = deviceNumbers(fs.statSync(dev).rdev);
      const majmin = `${major}:${minor}`;
      assert.equal(lines[0], `${majmin} ${MB}`);
      assert.equal(lines[1], `${majmin} ${MB}`);
      // 2 MiB at 1 MiB/s: well over a second each; unthrottled it takes milliseconds.
      assert.ok(elapsedMs(lines[2]) >= 900, lines[2]);
      assert.ok(elapsedMs(lines[3]) >= 900, lines[3]);
      const free = await runLogged(
        d,
        ['--device', `${dev}:/dev/xloop`],
        ['sh', '-c', ms('read', 'dd if=/dev/xloop of=/dev/null bs=256k count=8 iflag=direct')],
      );
      assert.ok(elapsedMs(free.stdout) < 900, `unthrottled: ${free.stdout}`);
      const info = JSON.parse(await d.dockerOk(['info', '--format', '{{json .}}'])) as {
        Warnings: string[] | null;
      };
      const weightSupported = !(info.Warnings ?? []).some((w) => /No blkio weight support/.test(w));
      const weighted = await d.docker(['run', '--rm', '--blkio-weight', '300', 'bb', 'true']);
      assert.equal(weighted.code, 0, weighted.stderr);
      if (!weightSupported)
        assert.match(weighted.stderr, /does not support Block I\/O weight.*Weight discarded/);
    } finally {
      loop.detach();
    }
  });

  test('--shm-size sizes /dev/shm', async () => {
    const size = ['sh', '-c', "df -k /dev/shm | tail -1 | awk '{print $2}'"];
    assert.equal((await runLogged(d, ['--shm-size', '16m'], size)).stdout.trim(), '16384');
    assert.equal((await runLogged(d, [], size)).stdout.trim(), '65536');
  });

  test('--ulimit applies inside; above the host hard limit it is refused with a clear message', async () => {
    const out = await runLogged(d, ['--ulimit', 'nofile=512:1024'], ['sh', '-c', 'ulimit -n; ulimit -Hn']);
    assert.deepEqual(out.stdout.trim().split('\n'), ['512', '1024']);
    const hard = hostHardLimit('Max open files');
    if (hard !== null) {
      const r = await d.docker(['run', '--rm', '--ulimit', `nofile=1024:${hard + 1}`, 'bb', 'true']);
      assert.equal(r.code, 125, r.stderr);
      assert.match(r.stderr, new RegExp(`exceeds the host's hard limit ${hard}`));
    }
  });

  test('docker update changes limits of a running container at once', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      '--memory',
      '64m',
      '--memory-swap',
      '64m',
      '--cpus',
      '0.5',
      '--pids-limit',
      '50',
      'bb',
      'sleep',
      '120',
    ]);
    try {
      const hog = ['exec', id, 'sh', '-c', 'x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo allocated'];
      const before = await d.docker(hog);
      assert.equal(before.code, 137, `100 MB in a 64 MiB container: ${before.stdout}${before.stderr}`);
      await d.dockerOk([
        'update',
        '--memory',
        '300m',
        '--memory-swap',
        '300m',
        '--cpus',
        '0.25',
        '--pids-limit',
        '10',
        id,
      ]);
      assert.equal(readCgroup('memory', id, 'memory.limit_in_bytes'), String(300 * MB));
      assert.equal(readCgroup('cpu', id, 'cpu.cfs_quota_us'), '25000');
      assert.equal(readCgroup('pids', id, 'pids.max'), '10');
      assert.equal(
        await d.dockerOk(['exec', id, 'cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes']),
        String(300 * MB),
      );
      const afterUpdate = await d.docker(hog);
      assert.equal(afterUpdate.code, 0, afterUpdate.stderr);
      assert.equal(afterUpdate.stdout.trim(), 'allocated');
      const inspect = JSON.parse(await d.dockerOk(['inspect', '-f', '{{json .HostConfig}}', id])) as Record<
        string,
        number
      >;
      assert.equal(inspect.Memory, 300 * MB);
      assert.equal(inspect.NanoCpus, 250_000_000);
      assert.equal(inspect.PidsLimit, 10);
      // Lifting limits again.
      await d.dockerOk(['update', '--cpu-quota', '-1', '--pids-limit', '-1', id]);
      assert.equal(readCgroup('cpu', id, 'cpu.cfs_quota_us'), '-1');
      assert.equal(readCgroup('pids', id, 'pids.max'), 'max');
      const refused = await d.docker(['update', '--memory', '400m', id]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /Memory limit should be smaller than already set memoryswap limit/);
      // The new limits survive a restart.
      await d.dockerOk(['restart', '-t', '0', id]);
      assert.equal(readCgroup('memory', id, 'memory.limit_in_bytes'), String(300 * MB));
    } finally {
      await d.docker(['rm', '-f', id]);
    }
  });
});
