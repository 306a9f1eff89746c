import cluster, { type Worker } from 'node:cluster';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import { tuneMalloc } from '../native/index.js';
import { generateSigningKeyPem } from './auth/token.js';
import { hashPassword } from './auth/users.js';
import { type ConfigFile, loadConfigFile, type RegistryConfig, resolveConfig } from './config.js';
import { collectGarbage } from './gc.js';
import { Registry } from './registry.js';
import { startServer } from './server.js';

const log = logger('registry');

const USAGE = `Usage:
  strata registry serve [--root DIR] [--addr HOST:PORT] [--config FILE] [--workers N]
  strata registry gc [--root DIR] [--config FILE] [--dry-run] [--delete-untagged] [--grace-period SECONDS]
  strata registry hash-password            (reads a password on stdin, prints its bcrypt hash)

Defaults: --root /var/lib/strata-registry, --addr 127.0.0.1:5000, no authentication, one HTTP
process (--workers N: N processes sharing the storage).`;

/** Entry point of `strata registry …` (argv starts with 'registry'). */
export async function main(argv: string[]): Promise<void> {
  const args = argv[0] === 'registry' ? argv.slice(1) : argv;
  const [command, ...rest] = args;
  try {
    switch (command) {
      case 'serve':
        await serve(rest);
        return;
      case 'gc':
        await gc(rest);
        return;
      case 'hash-password':
        await printPasswordHash();
        return;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return;
      default:
        throw new Error(`unknown registry command ${JSON.stringify(command)}\n${USAGE}`);
    }
  } catch (err) {
    process.stderr.write(`strata registry: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  }
}

function loadConfig(values: {
  root?: string;
  addr?: string;
  config?: string;
  workers?: number;
}): RegistryConfig {
  let file: ConfigFile = {};
  let baseDir = process.cwd();
  if (values.config !== undefined) {
    file = loadConfigFile(values.config);
    baseDir = path.dirname(path.resolve(values.config));
  }
  return resolveConfig(file, { root: values.root, addr: values.addr, workers: values.workers }, baseDir);
}

/** Set in the environment of HTTP workers: the main process's token signing key (PEM). */
const WORKER_KEY_ENV = 'STRATA_REGISTRY_SIGNING_KEY';

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      root: { type: 'string' },
      addr: { type: 'string' },
      config: { type: 'string' },
      workers: { type: 'string' },
    },
    strict: true,
  });
  let workers: number | undefined;
  if (values.workers !== undefined) {
    workers = Number(values.workers);
    if (!Number.isInteger(workers) || workers < 1 || workers > 64) {
      throw new Error('--workers wants a number from 1 to 64');
    }
  }
  const config = loadConfig({ ...values, workers });
  keepHeapMemory();
  if (cluster.isWorker) {
    await serveWorker({ ...config, signingKeyPem: process.env[WORKER_KEY_ENV] });
    return;
  }
  if (config.workers > 1) {
    await servePrimary(config);
    return;
  }
  const registry = new Registry(config);
  const running = await startServer(registry);
  log.info('registry listening', {
    url: running.url,
    root: config.root,
    auth: registry.authorizer === null ? 'none' : 'token',
  });
  logProxyMode(config);
  await untilSignal();
  await running.close();
  registry.close();
}

function logProxyMode(config: RegistryConfig): void {
  if (config.proxy === undefined) return;
  log.info('proxy mode: a pull-through cache of an upstream registry; pushes and deletes answer 405', {
    upstream: new URL(config.proxy.remoteUrl).origin,
    tagTtlSeconds: config.proxy.tagTtlSeconds,
  });
}

/**
 * Node's HTTP parser copies each chunk of a request body into a fresh malloc'd buffer. With glibc's
 * defaults the heap top is returned to the kernel whenever 128 KiB are free, so during an upload the
 * same pages are unmapped and faulted back in: a third of a push's CPU. Keeping up to 64 MiB of
 * freed heap (and mmapping only allocations of 4 MiB and more) ends that churn.
 */
function keepHeapMemory(): void {
  tuneMalloc?.(64 << 20, 16 << 20, 4 << 20);
}

function untilSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      resolve(signal);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

/**
 * Several HTTP processes on one listening socket (node:cluster hands each connection to one of
 * them), all on the same storage. That is safe because the storage never relies on one process:
 * a blob appears by one rename of verified data, links, tags and manifests are replaced by
 * write-then-rename, and an upload session lives on disk (its data and start time), so any worker
 * can continue, check and finish it; the in-memory hash of an upload is only a shortcut (a worker
 * without it hashes the data from disk), and `strata registry gc` already runs as another process
 * beside the server. The main process only starts, restarts and stops the workers; it generates
 * the token signing key when none is configured, so that a token issued by one worker is valid at
 * all of them.
 */
async function servePrimary(config: RegistryConfig): Promise<void> {
  const signingKeyPem =
    config.auth !== undefined && config.auth.signingKey === undefined ? generateSigningKeyPem() : undefined;
  // Fails here, once, on a bad auth or TLS setup rather than in every worker.
  const registry = new Registry({ ...config, signingKeyPem });
  const env: Record<string, string> = signingKeyPem === undefined ? {} : { [WORKER_KEY_ENV]: signingKeyPem };
  let stopping = false;
  const fork = (): Worker => cluster.fork(env);
  const started = Array.from({ length: config.workers }, fork);
  let port = config.port;
  await new Promise<void>((resolve, reject) => {
    let listening = 0;
    const onListening = (_worker: Worker, address: { port: number }): void => {
      port = address.port;
      listening++;
      if (listening === started.length) {
        cluster.off('exit', onEarlyExit);
        resolve();
      }
    };
    const onEarlyExit = (worker: Worker, code: number | null): void => {
      cluster.off('listening', onListening);
      cluster.off('exit', onEarlyExit);
      for (const other of started) if (other !== worker) other.kill('SIGTERM');
      reject(new Error(`registry worker ${worker.process.pid} exited with ${code} before listening`));
    };
    cluster.on('listening', onListening);
    cluster.on('exit', onEarlyExit);
  });
  const scheme = config.tls ? 'https' : 'http';
  log.info('registry listening', {
    url: `${scheme}://${config.host}:${port}`,
    root: config.root,
    auth: registry.authorizer === null ? 'none' : 'token',
    workers: started.length,
  });
  logProxyMode(config);
  // A worker that dies is replaced; a crash loop (a replacement dying at once) is not retried forever.
  let recentRestarts: number[] = [];
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    const now = Date.now();
    recentRestarts = [...recentRestarts.filter((t) => now - t < 10_000), now];
    log.error('registry worker died', { pid: worker.process.pid, code, signal });
    if (recentRestarts.length > 2 * config.workers) {
      log.error('registry workers keep dying; stopping');
      process.exit(1);
    }
    fork();
  });
  await untilSignal();
  stopping = true;
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
  await Promise.all(
    workers.map(
      (worker) =>
        new Promise<void>((resolve) => {
          if (worker.isDead()) return resolve();
          worker.once('exit', () => resolve());
          worker.process.kill('SIGTERM');
        }),
    ),
  );
}

/** One HTTP worker: serves until told to stop, or until the main process is gone. */
async function serveWorker(config: RegistryConfig): Promise<void> {
  delete process.env[WORKER_KEY_ENV];
  const registry = new Registry(config);
  const running = await startServer(registry);
  // The main process died (even by SIGKILL): its workers must not linger holding connections.
  process.once('disconnect', () => process.exit(0));
  await untilSignal();
  await running.close();
  registry.close();
  process.exit(0);
}

async function gc(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      root: { type: 'string' },
      config: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'delete-untagged': { type: 'boolean', default: false },
      'grace-period': { type: 'string' },
    },
    strict: true,
  });
  const config = loadConfig(values);
  let grace = config.gracePeriodSeconds;
  if (values['grace-period'] !== undefined) {
    grace = Number(values['grace-period']);
    if (!Number.isInteger(grace) || grace < 0) throw new Error('--grace-period wants a number of seconds');
  }
  const registry = new Registry({ ...config, auth: undefined, proxy: undefined });
  const report = await collectGarbage(registry, {
    dryRun: values['dry-run'],
    deleteUntagged: values['delete-untagged'],
    gracePeriodSeconds: grace,
    uploadMaxAgeSeconds: config.uploadMaxAgeSeconds,
    log: (line) => process.stdout.write(`${line}\n`),
  });
  const verb = values['dry-run'] ? 'would delete' : 'deleted';
  process.stdout.write(
    `${report.markedBlobs} blobs marked, ${verb} ${report.deletedBlobs.length} blobs (${report.bytesFreed} bytes), ` +
      `${report.deletedManifests.length} untagged manifests, ${report.deletedUploads.length} stale uploads; ` +
      `${report.youngBlobs} unreferenced blobs kept inside the ${grace}s grace period\n`,
  );
}

async function printPasswordHash(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  const password = Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
  if (password === '') throw new Error('empty password on stdin');
  process.stdout.write(`${await hashPassword(password)}\n`);
}
