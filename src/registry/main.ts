import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import { hashPassword } from './auth/users.js';
import { type ConfigFile, loadConfigFile, type RegistryConfig, resolveConfig } from './config.js';
import { collectGarbage } from './gc.js';
import { Registry } from './registry.js';
import { startServer } from './server.js';

const log = logger('registry');

const USAGE = `Usage:
  strata registry serve [--root DIR] [--addr HOST:PORT] [--config FILE]
  strata registry gc [--root DIR] [--config FILE] [--dry-run] [--delete-untagged] [--grace-period SECONDS]
  strata registry hash-password            (reads a password on stdin, prints its bcrypt hash)

Defaults: --root /var/lib/strata-registry, --addr 127.0.0.1:5000, no authentication.`;

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

function loadConfig(values: { root?: string; addr?: string; config?: string }): RegistryConfig {
  let file: ConfigFile = {};
  let baseDir = process.cwd();
  if (values.config !== undefined) {
    file = loadConfigFile(values.config);
    baseDir = path.dirname(path.resolve(values.config));
  }
  return resolveConfig(file, { root: values.root, addr: values.addr }, baseDir);
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      root: { type: 'string' },
      addr: { type: 'string' },
      config: { type: 'string' },
    },
    strict: true,
  });
  const config = loadConfig(values);
  const registry = new Registry(config);
  const running = await startServer(registry);
  log.info('registry listening', {
    url: running.url,
    root: config.root,
    auth: registry.authorizer === null ? 'none' : 'token',
  });
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info('shutting down', { signal });
      void running.close().then(resolve);
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
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
  const registry = new Registry({ ...config, auth: undefined });
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
