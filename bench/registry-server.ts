import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { PullJob } from './pull-worker.js';

/**
 * bench/registry-server: the Strata registry against Debian's docker-registry (docker/distribution
 * 2.8), both on loopback with a file-system store, serving the same clients:
 *   - skopeo copying an OCI layout of LAYERS random layers (SIZE_MB in total) to the registry and back;
 *   - HTTP clients pushing (POST + streamed PUT, Node's http client) and pulling (GET, the lean client
 *     of pull-worker.ts, one worker thread per client) the same layers, with 1 client and with CLIENTS
 *     concurrent clients (each in its own repository).
 * Prints MB/s per operation and the Strata/docker-registry ratio. Each operation starts after a
 * `sync`, and the order of the two servers alternates between runs. Environment: SIZE_MB (200),
 * LAYERS (5), CLIENTS (8), RUNS (3, best run kept), SKIP_SKOPEO.
 */
const SIZE_MB = Number(process.env.SIZE_MB ?? 200);
const LAYERS = Number(process.env.LAYERS ?? 5);
const CLIENTS = Number(process.env.CLIENTS ?? 8);
const RUNS = Number(process.env.RUNS ?? 3);
const REPO_ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 10 && !fs.existsSync(path.join(dir, 'package.json')); i++) dir = path.dirname(dir);
  return dir;
})();

interface Layer {
  file: string;
  digest: string;
  size: number;
}

interface Server {
  name: string;
  url: string;
  host: string;
  stop(): Promise<void>;
}

function has(binary: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${binary}`]).status === 0;
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

async function waitReady(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      http
        .get(`${url}/v2/`, (res) => {
          res.resume();
          resolve(res.statusCode === 200);
        })
        .on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${url} never answered`);
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null) {
        resolve();
        return;
      }
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    });
}

async function startStrata(base: string): Promise<Server> {
  const port = await freePort();
  const root = path.join(base, 'strata-root');
  const child = spawn(
    process.execPath,
    [
      ...(process.env.BENCH_NODE_ARGS ?? '').split(/\s+/).filter(Boolean),
      path.join(REPO_ROOT, 'bin/strata'),
      'registry',
      'serve',
      '--root',
      root,
      '--addr',
      `127.0.0.1:${port}`,
      ...(process.env.STRATA_REGISTRY_ARGS ?? '').split(/\s+/).filter(Boolean),
    ],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, STRATA_LOG_LEVEL: 'warn' } },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child);
  return { name: 'strata', url, host: `127.0.0.1:${port}`, stop: stopper(child) };
}

async function startDistribution(base: string): Promise<Server> {
  const port = await freePort();
  const config = path.join(base, 'distribution.yml');
  fs.writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${path.join(base, 'distribution-root')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  // Its stderr is left out: it logs every 404 of a HEAD probe as an error, whatever the level.
  const child = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitReady(url, child);
  return { name: 'docker-registry', url, host: `127.0.0.1:${port}`, stop: stopper(child) };
}

/** LAYERS files of random bytes adding up to SIZE_MB, plus an OCI layout naming them as one image. */
function makeImage(dir: string): { layers: Layer[]; layout: string } {
  const blobs = path.join(dir, 'layout', 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const layerSize = Math.floor((SIZE_MB * 1024 * 1024) / LAYERS);
  const buf = Buffer.alloc(1024 * 1024);
  const layers: Layer[] = [];
  for (let i = 0; i < LAYERS; i++) {
    const tmp = path.join(blobs, `tmp-${i}`);
    const fd = fs.openSync(tmp, 'w');
    const hash = createHash('sha256');
    for (let written = 0; written < layerSize; written += buf.length) {
      const chunk = buf.subarray(0, Math.min(buf.length, layerSize - written));
      randomFillSync(chunk);
      hash.update(chunk);
      fs.writeSync(fd, chunk);
    }
    fs.closeSync(fd);
    const hex = hash.digest('hex');
    fs.renameSync(tmp, path.join(blobs, hex));
    layers.push({ file: path.join(blobs, hex), digest: `sha256:${hex}`, size: layerSize });
  }
  const put = (data: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(data).digest('hex');
    fs.writeFileSync(path.join(blobs, hex), data);
    return { digest: `sha256:${hex}`, size: data.length };
  };
  const config = put(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
      }),
    ),
  );
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: layers.map((l) => ({
          mediaType: 'application/vnd.oci.image.layer.v1.tar',
          digest: l.digest,
          size: l.size,
        })),
      }),
    ),
  );
  const layout = path.join(dir, 'layout');
  fs.writeFileSync(path.join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          annotations: { 'org.opencontainers.image.ref.name': 'bench' },
        },
      ],
    }),
  );
  return { layers, layout };
}

function call(
  server: Server,
  method: string,
  pathAndQuery: string,
  body?: { file: string; size: number },
): Promise<{ status: number; location?: string }> {
  const u = new URL(pathAndQuery, server.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'Content-Length': body?.size ?? 0 };
    if (body) headers['Content-Type'] = 'application/octet-stream';
    const req = http.request(
      { host: u.hostname, port: u.port, path: u.pathname + u.search, method, headers, agent: keepAlive },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, location: res.headers.location }));
      },
    );
    req.on('error', reject);
    if (body) {
      pipeline(fs.createReadStream(body.file, { highWaterMark: 1 << 20 }), req).catch(reject);
    } else {
      req.end();
    }
  });
}

/**
 * Connections are kept alive within one timed operation and dropped after it: a connection left idle
 * while the other server works may be closed by its server (keep-alive timeouts) just as the next
 * operation picks it up, which fails that request ("socket hang up").
 */
let keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });

async function pushLayers(server: Server, repo: string, layers: Layer[]): Promise<void> {
  for (const layer of layers) {
    const post = await call(server, 'POST', `/v2/${repo}/blobs/uploads/`);
    if (post.status !== 202 || post.location === undefined)
      throw new Error(`${server.name}: POST ${post.status}`);
    const target = new URL(post.location, server.url);
    target.searchParams.set('digest', layer.digest);
    const put = await call(server, 'PUT', target.pathname + target.search, layer);
    if (put.status !== 201) throw new Error(`${server.name}: PUT ${put.status}`);
  }
}

/**
 * Downloads every layer from `repos.length` concurrent clients, one worker thread each (see
 * pull-worker.ts), and returns the seconds from their start to the last byte. The threads are up
 * before the clock starts; `sync` runs first, as in `timed`.
 */
async function pullLayers(server: Server, repos: string[], layers: Layer[]): Promise<number> {
  const { hostname, port } = new URL(server.url);
  const workers = repos.map((repo) => {
    const job: PullJob = {
      host: hostname,
      port: Number(port),
      paths: layers.map((l) => `/v2/${repo}/blobs/${l.digest}`),
      sizes: layers.map((l) => l.size),
    };
    return new Worker(new URL('./pull-worker.js', import.meta.url), { workerData: job });
  });
  const next = (w: Worker): Promise<unknown> =>
    new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
      w.once('exit', (code) => reject(new Error(`${server.name}: a pull client exited (${code})`)));
    });
  try {
    await Promise.all(workers.map(next));
    spawnSync('sync');
    const t0 = process.hrtime.bigint();
    const done = Promise.all(workers.map(next));
    for (const w of workers) w.postMessage('go');
    await done;
    return Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/**
 * Times one operation, starting from a clean page cache: docker-registry leaves its uploads dirty (it
 * never fsyncs) and the kernel writes them back seconds later, into whatever runs then. `sync` first,
 * outside the timing, so each operation pays only for its own writes.
 */
async function timed(work: () => Promise<void>): Promise<number> {
  keepAlive.destroy();
  keepAlive = new http.Agent({ keepAlive: true, maxSockets: 64 });
  spawnSync('sync');
  const t0 = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function skopeo(args: string[]): void {
  const r = spawnSync('skopeo', ['--insecure-policy', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`skopeo ${args.join(' ')}: ${r.stderr.toString()}`);
}

async function main(): Promise<void> {
  if (!has('docker-registry')) {
    console.error('bench/registry-server needs docker-registry (apt-get install docker-registry)');
    process.exitCode = 1;
    return;
  }
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-bench-registry-'));
  const totalMb = (SIZE_MB * 1024 * 1024) / 1e6;
  console.log(
    `image: ${LAYERS} layers of random data, ${totalMb.toFixed(0)} MB; best of ${RUNS} runs; ${os.cpus().length} CPUs`,
  );
  const servers = [await startStrata(base), await startDistribution(base)];
  const many = Array.from({ length: CLIENTS }, (_, i) => i);
  const withSkopeo = !process.env.SKIP_SKOPEO && has('skopeo');
  const labels: string[] = [];
  const best = new Map<string, number>();
  const record = (label: string, server: Server, mbps: number): void => {
    if (!labels.includes(label)) labels.push(label);
    const key = `${label}\0${server.name}`;
    best.set(key, Math.max(best.get(key) ?? 0, mbps));
  };
  try {
    for (let run = 0; run < RUNS; run++) {
      // Fresh content each run: skopeo remembers where it pushed blobs and would mount them instead.
      const dir = path.join(base, `image-${run}`);
      const { layers, layout } = makeImage(dir);
      const mb = layers.reduce((n, l) => n + l.size, 0) / 1e6;
      // Alternate which server goes first, so neither always runs on the other's leftovers.
      for (const s of run % 2 === 0 ? servers : [...servers].reverse()) {
        if (withSkopeo) {
          const push = await timed(async () =>
            skopeo([
              'copy',
              '--dest-tls-verify=false',
              `oci:${layout}:bench`,
              `docker://${s.host}/skopeo/r${run}:bench`,
            ]),
          );
          record('skopeo copy oci → registry', s, mb / push);
          const out = path.join(base, `pull-${s.name}-${run}`);
          const pull = await timed(async () =>
            skopeo([
              'copy',
              '--src-tls-verify=false',
              `docker://${s.host}/skopeo/r${run}:bench`,
              `oci:${out}:bench`,
            ]),
          );
          record('skopeo copy registry → oci', s, mb / pull);
          fs.rmSync(out, { recursive: true, force: true });
        }
        record('HTTP push, 1 client', s, mb / (await timed(() => pushLayers(s, `one/r${run}`, layers))));
        record('HTTP pull, 1 client', s, mb / (await pullLayers(s, [`one/r${run}`], layers)));
        const pushMany = await timed(async () => {
          await Promise.all(many.map((i) => pushLayers(s, `many${i}/r${run}`, layers)));
        });
        record(`HTTP push, ${CLIENTS} clients`, s, (CLIENTS * mb) / pushMany);
        const pullMany = await pullLayers(
          s,
          many.map((i) => `many${i}/r${run}`),
          layers,
        );
        record(`HTTP pull, ${CLIENTS} clients`, s, (CLIENTS * mb) / pullMany);
      }
      fs.rmSync(dir, { recursive: true, force: true });
      console.error(`  run ${run + 1}/${RUNS} done`);
    }
  } finally {
    for (const s of servers) await s.stop();
    keepAlive.destroy();
    fs.rmSync(base, { recursive: true, force: true });
  }
  const rows = labels.map((label) => {
    const strata = best.get(`${label}\0strata`) ?? 0;
    const distribution = best.get(`${label}\0docker-registry`) ?? 0;
    return [label, strata.toFixed(0), distribution.toFixed(0), `${(strata / distribution).toFixed(2)}×`];
  });
  const header = ['operation (MB/s)', 'strata', 'docker-registry', 'strata/docker-registry'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

await main();
