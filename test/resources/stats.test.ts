import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { isCgroupV2, readCgroup, sleep } from './helpers.js';

/** `docker stats`, `system df` and `info` report what the cgroup files and the host say. */
interface StatsJson {
  read: string;
  preread: string;
  name: string;
  id: string;
  pids_stats: { current: number; limit?: number };
  memory_stats: { usage: number; max_usage: number; limit: number; stats: Record<string, number> };
  cpu_stats: {
    cpu_usage: { total_usage: number; percpu_usage?: number[] };
    system_cpu_usage: number;
    online_cpus: number;
  };
  precpu_stats: { cpu_usage: { total_usage: number }; system_cpu_usage?: number };
  blkio_stats: { io_service_bytes_recursive: { op: string; value: number }[] | null };
  networks?: Record<string, { rx_bytes: number; tx_bytes: number }>;
}

const MB = 1024 * 1024;

/** Streams `GET …/stats?stream=1` and returns the first `count` objects. */
function streamStats(socket: string, id: string, count: number): Promise<StatsJson[]> {
  return new Promise((resolve, reject) => {
    const out: StatsJson[] = [];
    const req = http.get({ socketPath: socket, path: `/v1.41/containers/${id}/stats?stream=1` }, (res) => {
      let buf = '';
      res.on('data', (chunk: Buffer) => {
        buf += chunk.toString();
        let i = buf.indexOf('\n');
        while (i >= 0) {
          out.push(JSON.parse(buf.slice(0, i)) as StatsJson);
          buf = buf.slice(i + 1);
          i = buf.indexOf('\n');
          if (out.length === count) {
            req.destroy();
            resolve(out);
            return;
          }
        }
      });
      res.on('end', () => resolve(out));
    });
    req.on('error', (err) => (out.length >= count ? resolve(out) : reject(err)));
    setTimeout(() => {
      req.destroy();
      resolve(out);
    }, 10_000);
  });
}

describe('stats, system df, info', { skip: isCgroupV2 ? 'cgroup v1 file names' : false }, () => {
  let d: TestDaemon;
  let id = '';
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
    // 20 MB in /dev/shm (charged to the container), a little CPU every 200 ms, 4 processes.
    id = await d.dockerOk([
      'run',
      '-d',
      '--name',
      'statme',
      '--memory',
      '64m',
      '--pids-limit',
      '40',
      'bb',
      'sh',
      '-c',
      // No forks after start-up (read -t on a fifo instead of sleep), so the process count is exact.
      'head -c 20000000 /dev/zero > /dev/shm/fill; sleep 300 & sleep 300 & sleep 300 & mkfifo /tmp/f; exec 3<>/tmp/f; ' +
        'while :; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; read -t 0.2 y <&3; done',
    ]);
    await sleep(2500);
  });
  after(async () => {
    await d?.cleanup();
  });

  test('one-shot stats match the cgroup files', async () => {
    const cpuBefore = Number(readCgroup('cpuacct', id, 'cpuacct.usage'));
    const memBefore = Number(readCgroup('memory', id, 'memory.usage_in_bytes'));
    const r = await d.api('GET', `/v1.41/containers/${id}/stats?stream=0`);
    const cpuAfter = Number(readCgroup('cpuacct', id, 'cpuacct.usage'));
    const memAfter = Number(readCgroup('memory', id, 'memory.usage_in_bytes'));
    assert.equal(r.status, 200);
    const s = JSON.parse(r.body) as StatsJson;
    assert.equal(s.id, id);
    assert.equal(s.name, '/statme');
    assert.equal(s.memory_stats.limit, 64 * MB);
    assert.equal(s.memory_stats.limit, Number(readCgroup('memory', id, 'memory.limit_in_bytes')));
    const lo = Math.min(memBefore, memAfter) - 2 * MB;
    const hi = Math.max(memBefore, memAfter) + 2 * MB;
    assert.ok(
      s.memory_stats.usage >= lo && s.memory_stats.usage <= hi,
      `usage ${s.memory_stats.usage} not in [${lo}, ${hi}]`,
    );
    assert.ok(
      s.memory_stats.usage > 19 * MB,
      `the 20 MB in /dev/shm are counted: ${JSON.stringify(s.memory_stats)}`,
    );
    assert.equal(typeof s.memory_stats.stats.total_inactive_file, 'number');
    assert.ok(
      s.cpu_stats.cpu_usage.total_usage >= cpuBefore && s.cpu_stats.cpu_usage.total_usage <= cpuAfter,
    );
    assert.ok(s.precpu_stats.cpu_usage.total_usage <= s.cpu_stats.cpu_usage.total_usage);
    assert.ok(Date.parse(s.preread) < Date.parse(s.read), 'precpu is an earlier sample');
    assert.equal(s.cpu_stats.online_cpus, os.availableParallelism());
    assert.ok((s.cpu_stats.system_cpu_usage ?? 0) > (s.precpu_stats.system_cpu_usage ?? 0));
    assert.equal(s.pids_stats.current, Number(readCgroup('pids', id, 'pids.current')));
    assert.equal(s.pids_stats.current, 4);
    assert.equal(s.pids_stats.limit, 40);
    const pid = Number(await d.dockerOk(['inspect', '-f', '{{.State.Pid}}', id]));
    const netdev = fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8');
    const ifaces = netdev
      .split('\n')
      .slice(2)
      .map((l) => l.split(':')[0].trim())
      .filter((n) => n !== '' && n !== 'lo');
    assert.deepEqual(Object.keys(s.networks ?? {}).sort(), ifaces.sort());
  });

  test('a stream sends one object per second, each with the previous sample as precpu', async () => {
    const objects = await streamStats(d.socket, id, 3);
    assert.equal(objects.length, 3);
    for (let i = 1; i < objects.length; i++) {
      assert.equal(objects[i].preread, objects[i - 1].read);
      assert.equal(
        objects[i].precpu_stats.cpu_usage.total_usage,
        objects[i - 1].cpu_stats.cpu_usage.total_usage,
      );
      const gap = Date.parse(objects[i].read) - Date.parse(objects[i - 1].read);
      assert.ok(gap >= 800 && gap <= 2500, `gap ${gap} ms`);
    }
  });

  test('docker stats --no-stream and streaming through the CLI', async () => {
    const out = await d.dockerOk([
      'stats',
      '--no-stream',
      '--format',
      '{{.Name}}|{{.CPUPerc}}|{{.MemUsage}}|{{.PIDs}}|{{.NetIO}}|{{.BlockIO}}',
    ]);
    const [name, cpu, mem, pids] = out.split('|');
    assert.equal(name, 'statme');
    assert.match(cpu, /^\d+\.\d\d%$/);
    assert.match(mem, /^[\d.]+MiB \/ 64MiB$/);
    assert.equal(pids, '4');
    // Streaming: the CLI redraws every 500 ms until killed (it ignored SIGTERM while streaming).
    const child = spawn('docker', ['stats', '--format', '{{.Name}} {{.PIDs}}', 'statme'], {
      env: { ...process.env, ...d.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let text = '';
    child.stdout.on('data', (c: Buffer) => {
      text += c.toString();
    });
    await sleep(3000);
    child.kill('SIGKILL');
    // Each redraw starts with "cursor home" (ESC [ H).
    const frames = text.split('\x1b[H').filter((f) => f.includes('statme 4'));
    assert.ok(frames.length >= 3, `only ${frames.length} frames`);
  });

  test('a stopped container gets the zero shape', async () => {
    const stopped = await d.dockerOk(['create', 'bb', 'true']);
    const r = await d.api('GET', `/v1.41/containers/${stopped}/stats?stream=0`);
    const s = JSON.parse(r.body) as StatsJson;
    assert.equal(s.read, '0001-01-01T00:00:00Z');
    assert.deepEqual(s.memory_stats, {});
    await d.dockerOk(['rm', stopped]);
  });

  test('system df reports layer, image and container sizes', async () => {
    await d.dockerOk(['exec', id, 'sh', '-c', 'head -c 300000 /dev/zero > /big']);
    const r = await d.api('GET', '/v1.41/system/df');
    const df = JSON.parse(r.body) as {
      LayersSize: number;
      Images: { Id: string; Size: number; Containers: number; SharedSize: number }[];
      Containers: { Id: string; SizeRw: number; SizeRootFs: number }[];
    };
    assert.ok(df.LayersSize > 500_000, `layers ${df.LayersSize}`);
    const image = df.Images.find((i) => i.Containers > 0);
    assert.ok(image);
    assert.equal(image.Containers, 1);
    assert.equal(image.SharedSize, 0);
    const c = df.Containers.find((x) => x.Id === id);
    assert.ok(c && c.SizeRw >= 300_000 && c.SizeRootFs >= c.SizeRw + image.Size - 1, JSON.stringify(c));
    const table = await d.dockerOk(['system', 'df']);
    assert.match(table, /^Images\s+1\s+1\s/m);
    assert.match(table, /^Containers\s+1\s+1\s/m);
  });

  test('docker info reports the host', async () => {
    const info = JSON.parse(await d.dockerOk(['info', '--format', '{{json .}}'])) as Record<string, unknown>;
    assert.equal(info.NCPU, os.availableParallelism());
    assert.equal(info.MemTotal, os.totalmem());
    assert.equal(info.CgroupVersion, '1');
    assert.equal(info.MemoryLimit, fs.existsSync('/sys/fs/cgroup/memory/memory.limit_in_bytes'));
    assert.equal(info.SwapLimit, fs.existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'));
    assert.equal(info.PidsLimit, true);
    assert.equal(info.ContainersRunning, 1);
    assert.ok((info.SecurityOptions as string[]).includes('name=seccomp,profile=builtin'));
    assert.ok(typeof info.NFd === 'number' && (info.NFd as number) > 3);
    const osRelease = fs.readFileSync('/etc/os-release', 'utf8');
    assert.ok(osRelease.includes(String(info.OperatingSystem)));
  });
});
