import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type ConfigFile, resolveConfig } from '../../src/registry/config.js';
import { Registry } from '../../src/registry/registry.js';
import { type RunningServer, startServer } from '../../src/registry/server.js';

/**
 * Test harness for the registry: a server on a temporary root and a free loopback port, started
 * in-process (fast, and the test can inspect the root) or as `bin/strata registry serve` (the real
 * program), and a small HTTP client that shows every status, header and byte the registry sends.
 */
export const REPO_ROOT = findRepoRoot();
export const STRATA_BIN = path.join(REPO_ROOT, 'bin', 'strata');

function findRepoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 20 && !fs.existsSync(path.join(dir, 'package.json')); i++) dir = path.dirname(dir);
  return dir;
}

const tempDirs: string[] = [];
// node:test runs each file in its own process: whatever a file created goes when it exits.
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process exits (passing or failing). */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `strata-reg-${prefix}-`));
  tempDirs.push(dir);
  return dir;
}

export interface TestRegistry {
  url: string;
  root: string;
  registry: Registry;
  server: RunningServer;
  close(): Promise<void>;
}

/** Starts an in-process registry on 127.0.0.1 and a free port, with an optional config. */
export async function startRegistry(
  config: ConfigFile = {},
  root = tempDir('registry'),
): Promise<TestRegistry> {
  const resolved = resolveConfig(config, { root, addr: '127.0.0.1:0' }, root);
  const registry = new Registry(resolved);
  const server = await startServer(registry);
  return {
    url: server.url,
    root,
    registry,
    server,
    close: async () => {
      await server.close();
      registry.close();
    },
  };
}

/**
 * Starts an in-process registry before the enclosing suite's tests and closes it after them; `use`
 * receives it with a client on it.
 */
export function withRegistry(
  use: (reg: TestRegistry, client: Client) => void,
  config: ConfigFile = {},
): void {
  let reg: TestRegistry | undefined;
  before(async () => {
    reg = await startRegistry(config);
    use(reg, new Client(reg.url));
  });
  after(async () => {
    await reg?.close();
  });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Runs `bin/strata registry serve` as a child process and waits until it answers. */
export async function spawnRegistry(
  args: string[] = [],
): Promise<{ url: string; child: ChildProcess; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [STRATA_BIN, 'registry', 'serve', '--addr', `127.0.0.1:${port}`, ...args],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  for (let i = 0; i < 100; i++) {
    try {
      const res = await request(url, 'GET', '/v2/');
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (child.exitCode !== null) throw new Error(`registry exited: ${stderr}`);
    await sleep(100);
  }
  return {
    url,
    child,
    stop: () =>
      new Promise<void>((resolve) => {
        // A child killed by a signal has signalCode set and exitCode null.
        if (child.exitCode !== null || child.signalCode !== null) {
          resolve();
          return;
        }
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  /** The parsed body, when it is JSON. */
  json: unknown;
}

export interface RequestOptions {
  headers?: Record<string, string | number>;
  body?: Buffer | string;
  /** Send the body with chunked transfer encoding instead of a Content-Length. */
  chunked?: boolean;
  /** Trusted CA for HTTPS tests. */
  ca?: Buffer;
}

/** One HTTP request against the registry; never throws on an error status. */
export function request(
  baseUrl: string,
  method: string,
  pathAndQuery: string,
  opts: RequestOptions = {},
): Promise<Response> {
  // The path is sent as given (no `..` folding), so tests can send what a hostile client would.
  const base = new URL(baseUrl);
  const absolute = /^https?:\/\//.test(pathAndQuery) ? new URL(pathAndQuery) : null;
  const url = absolute ?? base;
  const rawPath = absolute === null ? pathAndQuery : absolute.pathname + absolute.search;
  const body = opts.body === undefined ? undefined : Buffer.from(opts.body);
  const headers: Record<string, string | number> = { ...opts.headers };
  if (body !== undefined && !opts.chunked && headers['Content-Length'] === undefined)
    headers['Content-Length'] = body.length;
  const mod = url.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const target = { protocol: url.protocol, hostname: url.hostname, port: url.port, path: rawPath };
    const req = mod.request({ ...target, method, headers, agent: false, ca: opts.ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const buf = Buffer.concat(chunks);
        const text = buf.toString('utf8');
        let json: unknown;
        try {
          json = text === '' ? undefined : JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: buf, text, json });
      });
    });
    req.on('error', reject);
    if (opts.chunked && body !== undefined) {
      // A write before end() makes Node send chunked encoding; end(body) alone would add a Content-Length.
      req.write(body);
      req.end();
    } else {
      req.end(body);
    }
  });
}

export function sha256(data: Buffer | string): `sha256:${string}` {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function sha512(data: Buffer | string): `sha512:${string}` {
  return `sha512:${createHash('sha512').update(data).digest('hex')}`;
}

/** The first error code of a spec error body. */
export function errorCode(res: Response): string | undefined {
  const body = res.json as { errors?: { code?: string }[] } | undefined;
  return body?.errors?.[0]?.code;
}

/** A registry client speaking the distribution API, for setting up state in tests. */
export class Client {
  constructor(
    readonly url: string,
    readonly headers: Record<string, string> = {},
    /** CA to trust for an https registry. */
    readonly ca?: Buffer,
  ) {}

  req(method: string, p: string, opts: RequestOptions = {}): Promise<Response> {
    return request(this.url, method, p, {
      ...opts,
      ca: opts.ca ?? this.ca,
      headers: { ...this.headers, ...opts.headers },
    });
  }

  /** Pushes a blob with POST then PUT; returns its digest. */
  async pushBlob(
    repo: string,
    data: Buffer | string,
    algorithm: 'sha256' | 'sha512' = 'sha256',
  ): Promise<string> {
    const digest = algorithm === 'sha256' ? sha256(data) : sha512(data);
    const post = await this.req('POST', `/v2/${repo}/blobs/uploads/`);
    if (post.status !== 202) throw new Error(`POST upload: ${post.status} ${post.text}`);
    const location = new URL(String(post.headers.location), this.url);
    location.searchParams.set('digest', digest);
    const put = await this.req('PUT', location.pathname + location.search, {
      body: data,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    if (put.status !== 201) throw new Error(`PUT upload: ${put.status} ${put.text}`);
    return digest;
  }

  async pushManifest(
    repo: string,
    reference: string,
    manifest: object | Buffer,
    mediaType?: string,
  ): Promise<Response> {
    const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(JSON.stringify(manifest));
    const type =
      mediaType ?? (Buffer.isBuffer(manifest) ? undefined : (manifest as { mediaType?: string }).mediaType);
    return this.req('PUT', `/v2/${repo}/manifests/${reference}`, {
      body,
      headers: type === undefined ? {} : { 'Content-Type': type },
    });
  }

  /**
   * Pushes a small image (config + `layers` random layers) and its manifest; returns the pieces so
   * tests can check what the registry holds.
   */
  async pushImage(
    repo: string,
    tag: string,
    layers = 2,
    extra: Record<string, unknown> = {},
  ): Promise<PushedImage> {
    const layerBlobs = Array.from({ length: layers }, (_, i) =>
      Buffer.from(`layer ${i} of ${repo}:${tag} ${Math.random()}`),
    );
    const config = Buffer.from(
      JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }),
    );
    const configDigest = await this.pushBlob(repo, config);
    const layerDigests: string[] = [];
    for (const l of layerBlobs) layerDigests.push(await this.pushBlob(repo, l));
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: layerBlobs.map((l, i) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: layerDigests[i],
        size: l.length,
      })),
      ...extra,
    };
    const body = Buffer.from(JSON.stringify(manifest));
    const res = await this.pushManifest(repo, tag, body, manifest.mediaType);
    if (res.status !== 201) throw new Error(`PUT manifest: ${res.status} ${res.text}`);
    return { manifest: body, digest: sha256(body), configDigest, layerDigests, size: body.length };
  }
}

export interface PushedImage {
  manifest: Buffer;
  digest: string;
  configDigest: string;
  layerDigests: string[];
  size: number;
}

/** Runs a command to completion with a timeout; never throws on a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export function which(cmd: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    const candidate = path.join(dir, cmd);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return null;
}

/** Every file below `dir`, relative, sorted (to show a store is unchanged). */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    if (depth > 64 || !fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else out.push(path.relative(dir, p));
    }
  };
  walk(dir, 0);
  return out.sort();
}
