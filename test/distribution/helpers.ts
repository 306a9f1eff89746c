import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { packEntries, type TarInputEntry } from '../../src/common/tar.js';
import { REPO_ROOT, STRATA_BIN, type TestDaemon } from '../helpers/daemon.js';

/**
 * Harness for registry-client tests: registries as real processes on loopback (the Strata registry
 * from `bin/strata`, Debian's docker-registry), a logging proxy in front of them that records every
 * request (and can cut a transfer at a chosen byte), docker-archive images built in memory, and raw
 * Engine API streams with `X-Registry-Auth`.
 */

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `strata-dist-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function which(binary: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = path.join(dir, binary);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // next
    }
  }
  return null;
}

/** Waits until `GET /v2/` answers (any status) on 127.0.0.1:port, over TLS when `tls`. */
async function waitForRegistry(
  port: number,
  child: ChildProcess,
  logs: () => string,
  tls: boolean,
): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`registry exited with ${child.exitCode}: ${logs()}`);
    const status = await new Promise<number>((resolve) => {
      const options = { host: '127.0.0.1', port, path: '/v2/', agent: false, rejectUnauthorized: false };
      const onResponse = (res: http.IncomingMessage): void => {
        res.resume();
        resolve(res.statusCode ?? 0);
      };
      (tls ? https.get(options, onResponse) : http.get(options, onResponse)).on('error', () => resolve(0));
    });
    if (status !== 0) return;
    await sleep(50);
  }
  throw new Error(`registry on port ${port} did not answer: ${logs()}`);
}

/** A registry program on a fixed loopback port and root; it can be killed and started again. */
export class RegistryProcess {
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(
    readonly port: number,
    private readonly argv: () => string[],
    private readonly command: string,
    private readonly tls = false,
  ) {}

  /** The Strata registry (`bin/strata registry serve`), optionally with a JSON config file. */
  static async strata(options: { config?: Record<string, unknown> } = {}): Promise<RegistryProcess> {
    const root = tempDir('registry');
    const port = await freePort();
    const args = ['registry', 'serve', '--root', path.join(root, 'data'), '--addr', `127.0.0.1:${port}`];
    if (options.config) {
      const file = path.join(root, 'config.json');
      fs.writeFileSync(file, JSON.stringify(options.config));
      args.push('--config', file);
    }
    const registry = new RegistryProcess(
      port,
      () => [STRATA_BIN, ...args],
      process.execPath,
      options.config?.tls !== undefined,
    );
    await registry.start();
    return registry;
  }

  /** Debian's docker-registry (docker/distribution) with a file-system store, or null when absent. */
  static async dockerRegistry(): Promise<RegistryProcess | null> {
    const binary =
      which('docker-registry') ??
      (fs.existsSync('/usr/bin/docker-registry') ? '/usr/bin/docker-registry' : null);
    if (binary === null) return null;
    const root = tempDir('docker-registry');
    const port = await freePort();
    const config = path.join(root, 'config.yml');
    fs.writeFileSync(
      config,
      [
        'version: 0.1',
        'log:',
        '  level: warn',
        'storage:',
        '  filesystem:',
        `    rootdirectory: ${path.join(root, 'data')}`,
        '  delete:',
        '    enabled: true',
        'http:',
        `  addr: 127.0.0.1:${port}`,
        '',
      ].join('\n'),
    );
    const registry = new RegistryProcess(port, () => ['serve', config], binary);
    await registry.start();
    return registry;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  logs(): string {
    return this.output;
  }

  async start(): Promise<void> {
    const child = spawn(this.command, this.argv(), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    child.stdout?.on('data', (d: Buffer) => {
      this.output += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.output += d.toString();
    });
    await waitForRegistry(this.port, child, () => this.output, this.tls);
  }

  /** SIGKILL: connections in flight break mid-transfer. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill(signal);
    });
  }
}

export interface ProxyLogEntry {
  method: string;
  url: string;
  range: string | undefined;
  status: number;
  /** Response body bytes passed to the client. */
  bytesOut: number;
  /** Request body bytes passed to the registry. */
  bytesIn: number;
}

interface CutRule {
  match: (entry: ProxyLogEntry) => boolean;
  afterBytes: number;
  /** Runs while the transfer is held at the cut point; the client connection is cut afterwards. */
  onCut: () => Promise<void>;
  fired: boolean;
}

/**
 * A logging HTTP proxy in front of a registry on loopback. The daemon is pointed at the proxy's
 * address, so every request it makes is recorded (method, URL, Range, status, bytes each way).
 */
export class RegistryProxy {
  readonly log: ProxyLogEntry[] = [];
  private readonly rules: CutRule[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    private readonly server: http.Server,
    readonly port: number,
  ) {}

  static async start(upstreamPort: number): Promise<RegistryProxy> {
    let proxy: RegistryProxy | null = null;
    const server = http.createServer((req, res) => proxy?.forward(req, res, upstreamPort));
    const port = await freePort();
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    proxy = new RegistryProxy(server, port);
    const p = proxy;
    server.on('connection', (socket) => {
      p.sockets.add(socket);
      socket.on('close', () => p.sockets.delete(socket));
    });
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Holds the first matching response after `afterBytes`, runs `onCut`, then cuts the connection. */
  cutOnce(match: (entry: ProxyLogEntry) => boolean, afterBytes: number, onCut: () => Promise<void>): void {
    this.rules.push({ match, afterBytes, onCut, fired: false });
  }

  clear(): void {
    this.log.length = 0;
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, upstreamPort: number): void {
    const entry: ProxyLogEntry = {
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      range: req.headers.range,
      status: 0,
      bytesOut: 0,
      bytesIn: 0,
    };
    this.log.push(entry);
    const upstream = http.request(
      {
        host: '127.0.0.1',
        port: upstreamPort,
        method: req.method,
        path: req.url,
        headers: req.headers,
        agent: false,
      },
      (up) => {
        entry.status = up.statusCode ?? 0;
        res.writeHead(up.statusCode ?? 502, up.headers);
        const rule = this.rules.find((r) => !r.fired && r.match(entry));
        up.on('data', (chunk: Buffer) => {
          if (rule && !rule.fired && entry.bytesOut + chunk.length >= rule.afterBytes) {
            rule.fired = true;
            const head = chunk.subarray(0, rule.afterBytes - entry.bytesOut);
            entry.bytesOut += head.length;
            up.pause();
            res.write(head, () => {
              void rule.onCut().finally(() => {
                up.destroy();
                res.socket?.destroy();
              });
            });
            return;
          }
          if (rule?.fired && up.isPaused()) return;
          entry.bytesOut += chunk.length;
          if (!res.write(chunk)) {
            up.pause();
            res.once('drain', () => up.resume());
          }
        });
        up.on('end', () => res.end());
        up.on('error', () => res.socket?.destroy());
      },
    );
    upstream.on('error', () => {
      // The registry is down: the client sees its connection cut, as it would without a proxy.
      entry.status = -1;
      res.socket?.destroy();
    });
    req.on('data', (chunk: Buffer) => {
      entry.bytesIn += chunk.length;
    });
    req.pipe(upstream);
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A tar of regular files (and their parent directories), deterministic. */
export async function tarOf(files: Record<string, string | Buffer>): Promise<Buffer> {
  const entries: TarInputEntry[] = [];
  const dirs = new Set<string>();
  for (const name of Object.keys(files).sort()) {
    const parts = name.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ name: dir, type: 'directory' });
      }
    }
    entries.push({ name, type: 'file', data: files[name] });
  }
  return collect(packEntries(entries));
}

let busybox: Promise<Buffer> | null = null;

/** The busybox root file system tar (scripts/busybox-rootfs.sh), built once per test process. */
export function busyboxTar(): Promise<Buffer> {
  busybox ??= new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(REPO_ROOT, 'scripts', 'busybox-rootfs.sh')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const out: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`busybox ${code}`)),
    );
  });
  return busybox;
}

export interface ArchiveImage {
  tag: string;
  /** Uncompressed layer tars, bottom first. */
  layers: Buffer[];
  cmd?: string[];
  architecture?: string;
  /** Makes the config (and so the image id) distinct. */
  label?: string;
}

export function imageConfig(image: Omit<ArchiveImage, 'tag'>): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: image.architecture ?? 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: {
        Cmd: image.cmd ?? ['sh'],
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
        Labels: image.label ? { 'test.label': image.label } : null,
      },
      history: image.layers.map((_, i) => ({ created: '2024-01-01T00:00:00Z', created_by: `layer ${i}` })),
      rootfs: { type: 'layers', diff_ids: image.layers.map((l) => `sha256:${sha256Hex(l)}`) },
    }),
  );
}

/** A docker-archive (`docker save` layout) holding one image with exactly these layers. */
export async function dockerArchive(image: ArchiveImage): Promise<Buffer> {
  const config = imageConfig(image);
  const entries: TarInputEntry[] = [];
  const layerPaths: string[] = [];
  for (const layer of image.layers) {
    const dir = sha256Hex(layer);
    if (!layerPaths.includes(`${dir}/layer.tar`)) {
      entries.push({ name: dir, type: 'directory' });
      entries.push({ name: `${dir}/layer.tar`, type: 'file', data: layer });
    }
    layerPaths.push(`${dir}/layer.tar`);
  }
  entries.push({ name: `${sha256Hex(config)}.json`, type: 'file', data: config });
  entries.push({
    name: 'manifest.json',
    type: 'file',
    data: JSON.stringify([
      { Config: `${sha256Hex(config)}.json`, RepoTags: [image.tag], Layers: layerPaths },
    ]),
  });
  return collect(packEntries(entries));
}

/** `docker load` of an in-memory image; returns the image id. */
export async function loadImage(d: TestDaemon, image: ArchiveImage): Promise<string> {
  await d.dockerOk(['load'], { input: await dockerArchive(image) });
  return d.dockerOk(['image', 'inspect', '--format', '{{.Id}}', image.tag]);
}

let runCounter = 0;

/**
 * Runs a container of `image` to its end and returns its output, read back with `docker logs`
 * (the output of a very short `docker run` attach is not what these tests are about).
 */
export async function runOutput(d: TestDaemon, image: string, args: string[] = []): Promise<string> {
  const name = `dist-run-${process.pid}-${++runCounter}`;
  await d.dockerOk(['run', '-d', '--name', name, image, ...args]);
  try {
    const code = await d.dockerOk(['wait', name]);
    const logs = await d.docker(['logs', name]);
    if (code !== '0')
      throw new Error(`${image} ${args.join(' ')} exited ${code}: ${logs.stdout}${logs.stderr}`);
    return logs.stdout.trim();
  } finally {
    await d.docker(['rm', '-f', name]);
  }
}

export function gzip(data: Buffer): Buffer {
  return zlib.gzipSync(data);
}

export interface StreamResult {
  status: number;
  /** Parsed JSON messages of a progress stream (or the error body). */
  messages: Array<Record<string, unknown>>;
  raw: string;
}

/** An Engine API request over the daemon socket with optional `X-Registry-Auth`, reading the stream. */
export function engineRequest(
  d: TestDaemon,
  method: string,
  apiPath: string,
  options: { auth?: object | string; body?: object } = {},
): Promise<StreamResult> {
  const headers: Record<string, string | number> = {};
  if (options.auth !== undefined) {
    headers['X-Registry-Auth'] =
      typeof options.auth === 'string'
        ? options.auth
        : Buffer.from(JSON.stringify(options.auth)).toString('base64url');
  }
  const body = options.body === undefined ? undefined : Buffer.from(JSON.stringify(options.body));
  if (body) {
    headers['Content-Type'] = 'application/json';
    headers['Content-Length'] = body.length;
  }
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: d.socket, method, path: apiPath, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        const messages = raw
          .split(/\r?\n/)
          .filter((l) => l.trim() !== '')
          .map((l) => {
            try {
              return JSON.parse(l) as Record<string, unknown>;
            } catch {
              return { unparsed: l };
            }
          });
        resolve({ status: res.statusCode ?? 0, messages, raw });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** `id: status` for every layer status message (progress bars left out). */
export function statusLines(messages: Array<Record<string, unknown>>): string[] {
  return messages
    .filter((m) => typeof m.status === 'string' && m.progress === undefined)
    .map((m) => (m.id ? `${m.id}: ${m.status}` : String(m.status)));
}

/** The in-stream error, if any. */
export function streamError(messages: Array<Record<string, unknown>>): string | null {
  const failed = messages.find((m) => m.error !== undefined);
  return failed ? String(failed.error) : null;
}

/** Blob digests uploaded through the proxy (`PUT …/blobs/uploads/…?digest=`). */
export function uploadedDigests(log: readonly ProxyLogEntry[]): string[] {
  return log
    .filter((e) => e.method === 'PUT' && e.url.includes('/blobs/uploads/'))
    .map((e) => new URL(e.url, 'http://x').searchParams.get('digest') ?? '')
    .filter(Boolean);
}

/** Blob digests downloaded through the proxy (`GET …/blobs/sha256:…`). */
export function downloadedBlobs(log: readonly ProxyLogEntry[]): ProxyLogEntry[] {
  return log.filter(
    (e) => e.method === 'GET' && /\/blobs\/sha256:[a-f0-9]{64}$/.test(e.url.split('?')[0] ?? ''),
  );
}
