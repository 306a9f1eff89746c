import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { packEntries } from '../src/common/tar.js';
import {
  benchNodeArgs,
  busyboxTar,
  type Daemon,
  has,
  REPO_ROOT,
  sh,
  startDockerd,
  startStrata,
  timeMs,
  tmpBase,
} from './common.js';

/**
 * bench/registry: push and pull throughput of Strata, Docker and podman against the same Strata
 * registry, side by side in one run, with skopeo's raw copies as the reference:
 *   - the image: busybox plus LAYERS layers of random data, SIZE_MB in all, loaded into each engine
 *     from one docker-archive;
 *   - push: `<engine> push` to a fresh registry (nothing to mount or skip), timed end to end;
 *   - pull: every image removed, then `<engine> pull`, timed until the image is usable (unpacked);
 *   - skopeo: `copy --preserve-digests` from the registry to an OCI directory (raw, nothing unpacked)
 *     and from that directory to a fresh registry (upload).
 * MB/s = image bytes (the uncompressed layers) / wall time, the same numerator for every client
 * whether it compresses or not. Each run starts new registries; the best of RUNS runs is kept.
 */
const SIZE_MB = Number(process.env.SIZE_MB ?? 200);
const LAYERS = Number(process.env.LAYERS ?? 5);
const RUNS = Number(process.env.RUNS ?? 3);
const MB = 1_000_000;

interface Registry {
  address: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function startRegistry(base: string): Promise<Registry> {
  const port = await freePort();
  const root = fs.mkdtempSync(path.join(base, 'registry-'));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      ...benchNodeArgs(),
      path.join(REPO_ROOT, 'bin', 'strata'),
      'registry',
      'serve',
      '--root',
      root,
      '--addr',
      `127.0.0.1:${port}`,
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn' } },
  );
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      http
        .get({ host: '127.0.0.1', port, path: '/v2/', agent: false }, (res) => {
          res.resume();
          resolve(true);
        })
        .on('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 200 || child.exitCode !== null) throw new Error('the Strata registry did not start');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    address: `127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => {
          fs.rmSync(root, { recursive: true, force: true });
          resolve();
        });
        child.kill('SIGTERM');
      }),
  };
}

/** Writes the benchmark image as a docker-archive; returns its path and the bytes of its layers. */
async function writeImage(base: string): Promise<{ archive: string; imageBytes: number }> {
  const layers: Buffer[] = [busyboxTar()];
  const perLayer = Math.floor((SIZE_MB * MB) / LAYERS);
  for (let i = 0; i < LAYERS; i++) {
    const data = randomFillSync(Buffer.allocUnsafe(perLayer));
    layers.push(await collect(packEntries([{ name: `data/random-${i}.bin`, type: 'file', data }])));
  }
  const hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: new Date().toISOString(),
      config: { Cmd: ['sh'], Env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => `sha256:${hex(l)}`) },
      history: layers.map(() => ({ created_by: 'bench/registry' })),
    }),
  );
  const archive = path.join(base, 'image.tar');
  const entries = [
    ...layers.map((l) => ({ name: `${hex(l)}/layer.tar`, type: 'file' as const, data: l })),
    { name: `${hex(config)}.json`, type: 'file' as const, data: config },
    {
      name: 'manifest.json',
      type: 'file' as const,
      data: JSON.stringify([
        {
          Config: `${hex(config)}.json`,
          RepoTags: ['bench:v1'],
          Layers: layers.map((l) => `${hex(l)}/layer.tar`),
        },
      ]),
    },
  ];
  await new Promise<void>((resolve, reject) => {
    const out = fs.createWriteStream(archive);
    packEntries(entries).pipe(out).on('finish', resolve).on('error', reject);
  });
  return { archive, imageBytes: layers.reduce((sum, l) => sum + l.length, 0) };
}

async function collect(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** How to drive one engine's CLI. */
interface Engine {
  name: string;
  cli: string;
  args: string[];
  env: Record<string, string>;
  /** Extra flags for push/pull against a plain-HTTP registry. */
  insecure: string[];
  stop(): Promise<void>;
}

function run(engine: Engine, args: string[]): void {
  const r = sh(engine.cli, [...engine.args, ...args], engine.env);
  if (r.code !== 0)
    throw new Error(`${engine.name} ${args.join(' ')}: ${r.stderr.trim() || r.stdout.trim()}`);
}

function removeAllImages(engine: Engine): void {
  const ids = sh(engine.cli, [...engine.args, 'images', '-aq'], engine.env)
    .stdout.split('\n')
    .filter(Boolean);
  if (ids.length > 0) run(engine, ['rmi', '-f', ...new Set(ids)]);
}

interface Sample {
  push: number;
  pull: number;
}

function fromDaemon(daemon: Daemon): Engine {
  return { name: daemon.name, cli: 'docker', args: [], env: daemon.env, insecure: [], stop: daemon.stop };
}

async function main(): Promise<void> {
  const base = tmpBase('strata-bench-registry-');
  const engines: Engine[] = [];
  const started: Engine[] = [];
  const notes = new Map<string, string>();
  try {
    console.log(`building the image: busybox + ${LAYERS} random layers, ${SIZE_MB} MB …`);
    const { archive, imageBytes } = await writeImage(base);
    const imageMB = imageBytes / MB;

    engines.push(fromDaemon(await startStrata(path.join(base, 'strata'))));
    if (process.env.SKIP_DOCKER) notes.set('docker', 'skipped (SKIP_DOCKER)');
    else {
      fs.mkdirSync(path.join(base, 'docker'));
      const docker = await startDockerd(path.join(base, 'docker'));
      if (docker) engines.push(fromDaemon(docker));
      else notes.set('docker', 'dockerd/containerd not installed or did not start');
    }
    if (process.env.SKIP_PODMAN) notes.set('podman', 'skipped (SKIP_PODMAN)');
    else if (!has('podman')) notes.set('podman', 'not installed');
    else {
      const root = path.join(base, 'podman');
      engines.push({
        name: 'podman',
        cli: 'podman',
        args: ['--root', path.join(root, 'root'), '--runroot', path.join(root, 'run')],
        env: {},
        insecure: ['--tls-verify=false'],
        stop: async () => undefined,
      });
    }
    const skopeo = !process.env.SKIP_SKOPEO && has('skopeo');
    if (!skopeo) notes.set('skopeo', process.env.SKIP_SKOPEO ? 'skipped (SKIP_SKOPEO)' : 'not installed');

    started.push(...engines);
    for (const engine of [...engines]) {
      try {
        run(engine, ['load', '-i', archive]);
      } catch (err) {
        notes.set(engine.name, `load failed: ${(err as Error).message.split('\n')[0]?.slice(0, 160)}`);
        engines.splice(engines.indexOf(engine), 1);
      }
    }

    const samples = new Map<string, Sample[]>();
    const skopeoSamples: Sample[] = [];
    let source = new Map(engines.map((e) => [e.name, 'bench:v1']));
    for (let r = 1; r <= RUNS; r++) {
      const registry = await startRegistry(base);
      const R = registry.address;
      try {
        const next = new Map<string, string>();
        for (const engine of [...engines]) {
          const ref = `${R}/bench-${engine.name}:r${r}`;
          try {
            run(engine, ['tag', source.get(engine.name) ?? 'bench:v1', ref]);
            const push = timeMs(() => run(engine, ['push', ...engine.insecure, ref]));
            removeAllImages(engine);
            const pull = timeMs(() => run(engine, ['pull', ...engine.insecure, ref]));
            const list = samples.get(engine.name) ?? [];
            list.push({ push: imageMB / (push / 1000), pull: imageMB / (pull / 1000) });
            samples.set(engine.name, list);
            next.set(engine.name, ref);
            console.log(
              `run ${r} ${engine.name.padEnd(7)} push ${(push / 1000).toFixed(2)} s, pull ${(pull / 1000).toFixed(2)} s`,
            );
          } catch (err) {
            notes.set(engine.name, `failed: ${(err as Error).message.split('\n')[0]?.slice(0, 160)}`);
            engines.splice(engines.indexOf(engine), 1);
          }
        }
        source = next;
        if (skopeo) {
          const dir = path.join(base, `oci-${r}`);
          const from = `${R}/bench-strata:r${r}`;
          const copy = timeMs(() => {
            const res = sh('skopeo', [
              'copy',
              '--preserve-digests',
              '--src-tls-verify=false',
              `docker://${from}`,
              `oci:${dir}:x`,
            ]);
            if (res.code !== 0) throw new Error(`skopeo copy: ${res.stderr}`);
          });
          const target = await startRegistry(base);
          try {
            const upload = timeMs(() => {
              const res = sh('skopeo', [
                'copy',
                '--preserve-digests',
                '--dest-tls-verify=false',
                `oci:${dir}:x`,
                `docker://${target.address}/bench-skopeo:r${r}`,
              ]);
              if (res.code !== 0) throw new Error(`skopeo upload: ${res.stderr}`);
            });
            skopeoSamples.push({ push: imageMB / (upload / 1000), pull: imageMB / (copy / 1000) });
            console.log(
              `run ${r} skopeo  upload ${(upload / 1000).toFixed(2)} s, copy to OCI dir ${(copy / 1000).toFixed(2)} s`,
            );
          } finally {
            await target.stop();
            fs.rmSync(dir, { recursive: true, force: true });
          }
        }
      } finally {
        await registry.stop();
      }
    }

    const best = (list: Sample[] | undefined, key: keyof Sample): number =>
      list && list.length > 0 ? Math.max(...list.map((s) => s[key])) : Number.NaN;
    const strataPush = best(samples.get('strata'), 'push');
    const strataPull = best(samples.get('strata'), 'pull');
    const rows: string[][] = [];
    for (const name of ['strata', 'docker', 'podman']) {
      const list = samples.get(name);
      if (!list || list.length === 0) {
        rows.push([name, '-', '-', '-', '-', notes.get(name) ?? 'no result']);
        continue;
      }
      const push = best(list, 'push');
      const pull = best(list, 'pull');
      rows.push([
        name,
        push.toFixed(0),
        pull.toFixed(0),
        name === 'strata' ? '' : `${(strataPush / push).toFixed(2)}×`,
        name === 'strata' ? '' : `${(strataPull / pull).toFixed(2)}×`,
        notes.get(name) ?? '',
      ]);
    }
    if (skopeoSamples.length > 0) {
      const push = best(skopeoSamples, 'push');
      const pull = best(skopeoSamples, 'pull');
      rows.push([
        'skopeo (raw)',
        push.toFixed(0),
        pull.toFixed(0),
        `${(strataPush / push).toFixed(2)}×`,
        `${(strataPull / pull).toFixed(2)}×`,
        'upload from / copy to an OCI dir, nothing unpacked',
      ]);
    } else rows.push(['skopeo (raw)', '-', '-', '-', '-', notes.get('skopeo') ?? '']);

    const header = ['client', 'push MB/s', 'pull MB/s', 'strata/x push', 'strata/x pull', 'note'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (cells: string[]): string =>
      cells
        .map((c, i) =>
          i === 0 || i === cells.length - 1 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0),
        )
        .join('  ');
    console.log('');
    console.log(
      `image: ${imageMB.toFixed(0)} MB in ${LAYERS + 1} layers; best of ${RUNS} runs; pull includes unpacking (except skopeo); ` +
        `load average ${os
          .loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')} on ${os.cpus().length} CPUs`,
    );
    console.log(line(header));
    for (const r of rows) console.log(line(r).trimEnd());
    console.log(
      'targets: strata pull ≥ 2.5× docker and ≥ 0.8× skopeo copy; push ≥ 2.5× docker and ≥ 1.0× skopeo upload',
    );
  } finally {
    for (const engine of started) {
      try {
        removeAllImages(engine);
      } catch {
        // best effort
      }
      await engine.stop();
    }
    fs.rmSync(base, { recursive: true, force: true });
  }
}

await main();
