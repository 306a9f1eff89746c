import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { type RunResult, STRATA_BIN } from '../helpers/daemon.js';

/**
 * A scripted Engine API on a unix socket that records every request, so that a test can run the
 * real docker CLI 28 and `strata` with the same arguments against the same answers and compare
 * what each sent and printed. Routes answer from `reply` (first match wins), then from defaults
 * that are enough for create/start/wait and the object-creating endpoints.
 */

export interface Recorded {
  method: string;
  /** Path and query, percent-decoded, without the /v1.41 prefix. */
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface Reply {
  status?: number;
  json?: unknown;
  /** Newline-delimited JSON messages (build, stats, events streams). */
  lines?: unknown[];
  /** Keep the response open after the lines (a stream that only the client ends). */
  keepOpen?: boolean;
}

export type Responder = (req: Recorded) => Reply | undefined;

export const dockerAvailable = spawnSync('docker', ['--version'], { stdio: 'ignore' }).status === 0;

const ID = 'a'.repeat(64);

function defaultReply(req: Recorded): Reply {
  const { method, url } = req;
  if (url.startsWith('/containers/create')) return { status: 201, json: { Id: ID, Warnings: [] } };
  if (url.startsWith('/networks/create')) return { status: 201, json: { Id: 'n'.repeat(64), Warning: '' } };
  if (url.startsWith('/volumes/create')) {
    const body = req.body.length > 0 ? (JSON.parse(req.body.toString()) as { Name?: string }) : {};
    return { status: 201, json: { Name: body.Name ?? 'v'.repeat(64), Driver: 'local' } };
  }
  if (url.startsWith('/commit')) return { status: 201, json: { Id: `sha256:${'b'.repeat(64)}` } };
  if (url.includes('/update')) return { json: { Warnings: [] } };
  if (url.includes('/wait')) return { json: { StatusCode: 0 } };
  if (url.endsWith('/start')) return { status: 204 };
  if (method === 'DELETE') return { status: 204 };
  if (url.includes('/connect') || url.includes('/disconnect')) return { status: 200 };
  if (method === 'GET' && /^\/networks\/[^/?]+/.test(url))
    return { json: { Name: 'net', Id: 'c'.repeat(64) } };
  if (method === 'GET' && /^\/containers\/[^/]+\/json/.test(url)) {
    return { json: { Id: ID, Config: {}, State: { Running: true } } };
  }
  return { status: 404, json: { message: 'page not found' } };
}

export class FakeApi {
  readonly dir: string;
  readonly socket: string;
  requests: Recorded[] = [];
  reply: Responder = () => undefined;
  private server?: http.Server;

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-fake-api-'));
    this.socket = path.join(this.dir, 'api.sock');
    fs.mkdirSync(path.join(this.dir, 'docker-config'));
    fs.mkdirSync(path.join(this.dir, 'strata-config'));
  }

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.setHeader('Api-Version', '1.41');
        res.setHeader('Ostype', 'linux');
        const raw = req.url ?? '';
        if (raw === '/_ping') {
          res.end('OK');
          return;
        }
        let url = raw.replace(/^\/v\d+\.\d+/, '');
        try {
          url = decodeURIComponent(url.replaceAll('+', ' '));
        } catch {
          // keep it raw
        }
        const rec: Recorded = {
          method: req.method ?? '',
          url,
          headers: req.headers,
          body: Buffer.concat(chunks),
        };
        this.requests.push(rec);
        const reply = this.reply(rec) ?? defaultReply(rec);
        res.setHeader('Content-Type', 'application/json');
        res.writeHead(reply.status ?? 200);
        if (reply.keepOpen) res.flushHeaders();
        if (reply.lines) {
          for (const l of reply.lines) res.write(`${JSON.stringify(l)}\r\n`);
          if (!reply.keepOpen) res.end();
          return;
        }
        if (reply.json === undefined) res.end();
        else res.end(JSON.stringify(reply.json));
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.socket, r));
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  /** Runs `docker` or `strata` against this API; resolves with the output and the requests it made. */
  async run(
    cli: 'docker' | 'strata',
    args: string[],
    opts: { input?: string; env?: Record<string, string>; cwd?: string } = {},
  ): Promise<RunResult & { requests: Recorded[] }> {
    this.requests = [];
    const [cmd, argv] = cli === 'docker' ? ['docker', args] : [process.execPath, [STRATA_BIN, ...args]];
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      DOCKER_HOST: `unix://${this.socket}`,
      DOCKER_CONFIG: path.join(this.dir, 'docker-config'),
      DOCKER_BUILDKIT: '0',
      STRATA_HOST: `unix://${this.socket}`,
      STRATA_CONFIG: path.join(this.dir, 'strata-config'),
      ...opts.env,
    };
    const result = await new Promise<RunResult>((resolve, reject) => {
      const child = spawn(cmd, argv, { env, cwd: opts.cwd, stdio: ['pipe', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({
          code: code ?? -1,
          stdout: Buffer.concat(out).toString('utf8'),
          stderr: Buffer.concat(err).toString('utf8'),
        });
      });
      child.stdin.end(opts.input ?? '');
    });
    return { ...result, requests: this.requests };
  }
}

/** A request as compared between the two clients: method, url and the parsed JSON body. */
export function comparable(r: Recorded): { method: string; url: string; body: unknown } {
  const text = r.body.toString('utf8');
  let body: unknown = text === '' ? undefined : text;
  if (String(r.headers['content-type'] ?? '').includes('json') && text) body = JSON.parse(text);
  if (r.url.startsWith('/build')) body = undefined;
  sortIpamConfig(body);
  return { method: r.method, url: normaliseQuery(r.url), body };
}

/**
 * docker builds IPAM.Config from a Go map, so its order changes from run to run (and so does the
 * order strata matches it against): compare the entries sorted by subnet.
 */
function sortIpamConfig(body: unknown): void {
  if (typeof body !== 'object' || body === null || !('IPAM' in body)) return;
  const ipam = body.IPAM;
  if (typeof ipam !== 'object' || ipam === null || !('Config' in ipam) || !Array.isArray(ipam.Config)) return;
  const key = (c: unknown) => JSON.stringify(c);
  ipam.Config.sort((a: unknown, b: unknown) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}

/** Query parameters sorted and filter JSON re-serialised, so that key order does not matter. */
export function normaliseQuery(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = url
    .slice(q + 1)
    .split('&')
    .map((p) => {
      const eq = p.indexOf('=');
      const key = eq < 0 ? p : p.slice(0, eq);
      let value = eq < 0 ? '' : p.slice(eq + 1);
      if (value.startsWith('{')) {
        try {
          value = JSON.stringify(sortKeys(JSON.parse(value)));
        } catch {
          // not JSON
        }
      }
      return `${key}=${value}`;
    })
    .sort();
  return `${url.slice(0, q)}?${params.join('&')}`;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** docker prefixes some usage errors with "docker: " where strata does not; compare the rest. */
export function errorText(stderr: string): string {
  return stderr
    .split('\n')
    .filter(
      (l) =>
        l &&
        !l.startsWith('Usage:') &&
        !l.startsWith('Run ') &&
        !l.startsWith('See ') &&
        !/^exit status \d+$/.test(l),
    )
    .map((l) => l.replace(/^docker: /, '').replace(/\. See 'strata .*$/, ''))
    .join('\n');
}
