import * as fs from 'node:fs';
import type { IncomingMessage } from 'node:http';
import * as path from 'node:path';
import { PassThrough, type Readable, Transform } from 'node:stream';
import { loadConfig } from '../auth.js';
import { BuildDisplay, type BuildProgressMode } from '../build-progress.js';
import { CONTEXT_SYNC_FEATURE, syncContext } from '../build-sync.js';
import type { EngineClient, Query } from '../client.js';
import type { CommandHandler } from '../commands.js';
import {
  type ContextOptions,
  type ExtraFile,
  effectiveExcludes,
  looksLikeArchive,
  randomDockerfileName,
  readIgnorePatterns,
} from '../context-ignore.js';
import { CliError, UsageError } from '../errors.js';
import type { FlagValues } from '../flags.js';
import { humanSize } from '../format.js';
import { parseReference } from '../reference.js';
import { parseMemoryBytes } from '../run-config.js';
import { type JsonMessage, jsonLines } from '../stream.js';
import { isTerminal } from '../terminal.js';

/**
 * `build`: the context directory (or `-`) goes to the daemon as a tar through the legacy builder
 * endpoint, `POST /build?…&version=1`, with the query docker CLI 28 sends; the JSON stream comes
 * back through BuildDisplay. Context contents are filtered by .dockerignore and never read from
 * outside the context directory (see build-context.ts).
 */

function sortedJson(map: Record<string, string | null>): string {
  const out: Record<string, string | null> = {};
  for (const key of Object.keys(map).sort()) out[key] = map[key];
  return JSON.stringify(out);
}

/** `--build-arg K=V` (or `K`, taken from the environment, null when unset). */
export function buildArgs(values: string[], env: NodeJS.ProcessEnv): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq === 0) throw new UsageError(`invalid argument "${v}" for "--build-arg" flag`, 125);
    if (eq > 0) out[v.slice(0, eq)] = v.slice(eq + 1);
    else out[v] = env[v] ?? null;
  }
  return out;
}

function parseUlimit(value: string): { Name: string; Hard: number; Soft: number } {
  const m = /^([a-z]+)=(-?\d+)(?::(-?\d+))?$/.exec(value);
  if (!m)
    throw new UsageError(`invalid argument "${value}" for "--ulimit" flag: invalid ulimit argument`, 125);
  return { Name: m[1], Hard: Number(m[3] ?? m[2]), Soft: Number(m[2]) };
}

/** The `POST /build` query as docker CLI 28 builds it (keys in its sorted order). */
export function buildQuery(
  flags: FlagValues,
  dockerfile: string,
  env: NodeJS.ProcessEnv = process.env,
): Query {
  for (const t of flags.list('tag')) parseReference(t);
  const args = buildArgs(flags.list('build-arg'), env);
  const labels: Record<string, string> = {};
  for (const l of flags.list('label')) {
    const eq = l.indexOf('=');
    labels[eq < 0 ? l : l.slice(0, eq)] = eq < 0 ? '' : l.slice(eq + 1);
  }
  const network = flags.string('network') ?? 'default';
  const shm = flags.string('shm-size');
  const ulimits = flags.list('ulimit').map(parseUlimit);
  const cacheFrom = flags.list('cache-from');
  const query: Query = {
    buildargs: Object.keys(args).length > 0 ? sortedJson(args) : undefined,
    cachefrom: cacheFrom.length > 0 ? JSON.stringify(cacheFrom) : undefined,
    dockerfile,
    extrahosts: flags.list('add-host').length > 0 ? flags.list('add-host') : undefined,
    forcerm: flags.bool('force-rm'),
    labels: Object.keys(labels).length > 0 ? sortedJson(labels) : undefined,
    networkmode: network !== 'default' ? network : undefined,
    nocache: flags.bool('no-cache'),
    platform: flags.string('platform'),
    pull: flags.bool('pull'),
    q: flags.bool('quiet'),
    rm: flags.bool('rm') ? undefined : '0',
    shmsize: shm ? parseMemoryBytes(shm, '--shm-size') : undefined,
    t: flags.list('tag').length > 0 ? flags.list('tag') : undefined,
    target: flags.string('target'),
    ulimits: ulimits.length > 0 ? JSON.stringify(ulimits) : undefined,
    version: '1',
  };
  return query;
}

/** X-Registry-Config: every stored credential, so that FROM can pull from private registries. */
export function registryConfigHeader(): string {
  const configs: Record<string, { username: string; password: string; serveraddress: string }> = {};
  for (const [server, entry] of Object.entries(loadConfig().auths ?? {})) {
    if (!entry.auth) continue;
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) continue;
    configs[server] = {
      username: decoded.slice(0, colon),
      password: decoded.slice(colon + 1),
      serveraddress: server,
    };
  }
  return Buffer.from(JSON.stringify(configs)).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks);
}

function missingDockerfile(abs: string): CliError {
  return new CliError(
    `unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat ${abs}: no such file or directory`,
  );
}

function isInside(dir: string, file: string): boolean {
  const rel = path.relative(dir, file);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

export interface PreparedContext {
  body: Readable;
  dockerfile: string;
}

/** A context to send: a ready stream (stdin), or a directory with what to leave out and add. */
export type PlannedContext =
  | { kind: 'stream'; body: Readable; dockerfile: string }
  | { kind: 'directory'; dir: string; options: ContextOptions; dockerfile: string };

/** Resolves the context argument and -f into the tar to send and the `dockerfile` parameter. */
export async function prepareContext(
  contextArg: string,
  file: string | undefined,
  opts: { cwd?: string; stdin?: NodeJS.ReadableStream } = {},
): Promise<PreparedContext> {
  const planned = await planContext(contextArg, file, opts);
  if (planned.kind === 'stream') return { body: planned.body, dockerfile: planned.dockerfile };
  const { packContext } = await import('../build-context.js');
  return { body: packContext(planned.dir, planned.options), dockerfile: planned.dockerfile };
}

/** Resolves the context argument and -f: what the context is and the `dockerfile` parameter. */
export async function planContext(
  contextArg: string,
  file: string | undefined,
  opts: { cwd?: string; stdin?: NodeJS.ReadableStream } = {},
): Promise<PlannedContext> {
  const cwd = opts.cwd ?? process.cwd();
  const stdin = opts.stdin ?? process.stdin;
  if (contextArg === '-') {
    if (file === '-')
      throw new CliError("invalid argument: can't use stdin for both build context and dockerfile");
    const data = await readAll(stdin);
    if (looksLikeArchive(data)) {
      const body = new PassThrough();
      body.end(data);
      return { kind: 'stream', body, dockerfile: file ?? 'Dockerfile' };
    }
    const { dockerfileOnlyContext } = await import('../build-context.js');
    return { kind: 'stream', body: dockerfileOnlyContext(data), dockerfile: 'Dockerfile' };
  }
  if (/^(https?:\/\/|git@|git:\/\/|github\.com\/)/.test(contextArg)) {
    throw new CliError(`unable to prepare context: remote contexts are not supported: ${contextArg}`);
  }
  const dir = path.resolve(cwd, contextArg);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new CliError(`unable to prepare context: path "${contextArg}" not found`);
  }
  if (!st.isDirectory()) throw new CliError(`unable to prepare context: context must be a directory: ${dir}`);
  const realDir = fs.realpathSync(dir);

  const extra: ExtraFile[] = [];
  let dockerfile: string;
  let stdinName: string | undefined;
  if (file === '-') {
    stdinName = randomDockerfileName();
    extra.push({ name: stdinName, content: await readAll(stdin) });
    dockerfile = stdinName;
  } else {
    let abs = file ? path.resolve(cwd, file) : path.join(dir, 'Dockerfile');
    if (!file && !fs.existsSync(abs) && fs.existsSync(path.join(dir, 'dockerfile'))) {
      abs = path.join(dir, 'dockerfile');
    }
    let real: string;
    try {
      real = fs.realpathSync(abs);
    } catch {
      throw missingDockerfile(abs);
    }
    if (isInside(realDir, real)) {
      dockerfile = path.relative(realDir, real).split(path.sep).join('/');
    } else {
      // A Dockerfile outside the context is sent under a generated name, as docker does.
      stdinName = randomDockerfileName();
      extra.push({ name: stdinName, content: fs.readFileSync(real) });
      dockerfile = stdinName;
    }
  }

  let ignoreText: Buffer | undefined;
  const ignorePath = path.join(dir, '.dockerignore');
  try {
    if (fs.lstatSync(ignorePath).isFile()) ignoreText = fs.readFileSync(ignorePath);
  } catch {
    // no .dockerignore
  }
  const patterns = ignoreText ? readIgnorePatterns(ignoreText.toString('utf8')) : [];
  const excludes = effectiveExcludes(patterns, stdinName ? undefined : dockerfile);
  const replace = new Map<string, Buffer>();
  if (stdinName && ignoreText) {
    // The generated Dockerfile must not end up in the image through `COPY . …`.
    replace.set('.dockerignore', Buffer.concat([ignoreText, Buffer.from(`\n${stdinName}\n`)]));
  }
  return { kind: 'directory', dir, options: { excludes, extra, replace }, dockerfile };
}

/** The whole context as a tar, as the docker CLI sends it. */
async function sendTar(
  client: EngineClient,
  body: Readable,
  query: Query,
  mode: BuildProgressMode,
): Promise<IncomingMessage> {
  let sent = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      sent += chunk.length;
      callback(null, chunk);
    },
  });
  const uploaded = new Promise<void>((resolve, reject) => {
    counted.on('end', resolve);
    body.on('error', reject);
  });
  body.pipe(counted);
  // Surface an unreadable context file rather than a broken pipe.
  uploaded.catch(() => {});

  const res = await client.request('POST', '/build', {
    query,
    body: counted,
    contentType: 'application/x-tar',
    headers: { 'X-Registry-Config': registryConfigHeader() },
  });
  try {
    await uploaded;
  } catch (err) {
    res.destroy();
    throw new CliError(`error sending the build context: ${(err as Error).message}`);
  }
  if (mode !== 'quiet') {
    process.stdout.write(`Sending build context to Strata daemon ${humanSize(sent, 4).padStart(8)}\n`);
  }
  return res;
}

/** Context sync: only the contents the daemon lacks are sent, then the context's description. */
async function sendSynced(
  client: EngineClient,
  dir: string,
  options: ContextOptions,
  query: Query,
  mode: BuildProgressMode,
): Promise<IncomingMessage> {
  let synced: Awaited<ReturnType<typeof syncContext>>;
  try {
    synced = await syncContext(client, dir, options);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`error sending the build context: ${(err as Error).message}`);
  }
  if (mode !== 'quiet') {
    process.stdout.write(
      `Sending build context to Strata daemon ${humanSize(synced.sentBytes, 4).padStart(8)} (${synced.sentFiles} of ${synced.files} files; ${humanSize(synced.contextBytes, 4)} in all)\n`,
    );
  }
  return client.request('POST', '/build', {
    query,
    body: synced.body,
    contentType: synced.contentType,
    headers: { 'X-Registry-Config': registryConfigHeader() },
  });
}

function progressMode(flags: FlagValues): BuildProgressMode {
  if (flags.bool('quiet')) return 'quiet';
  const progress = flags.string('progress') ?? 'auto';
  if (!['auto', 'plain', 'tty'].includes(progress)) {
    throw new UsageError(`invalid value for --progress: "${progress}" (use auto, plain or tty)`, 125);
  }
  if (progress === 'auto') return isTerminal(process.stdout) ? 'tty' : 'plain';
  return progress as BuildProgressMode;
}

export const buildCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const mode = progressMode(flags);
  const iidfile = flags.string('iidfile');
  if (iidfile) fs.rmSync(iidfile, { force: true });
  const planned = await planContext(ctx.args[0], flags.string('file'));
  const query = buildQuery(flags, planned.dockerfile);
  const client = await ctx.client();
  const res =
    planned.kind === 'directory' &&
    client.features.includes(CONTEXT_SYNC_FEATURE) &&
    process.env.STRATA_BUILD_CONTEXT_SYNC !== '0'
      ? await sendSynced(client, planned.dir, planned.options, query, mode)
      : await sendTar(
          client,
          planned.kind === 'stream'
            ? planned.body
            : (await import('../build-context.js')).packContext(planned.dir, planned.options),
          query,
          mode,
        );
  const columns = (process.stdout as { columns?: number }).columns ?? 80;
  const display = new BuildDisplay(process.stdout, { mode, columns });
  try {
    for await (const msg of jsonLines<JsonMessage>(res)) display.handle(msg);
  } catch (err) {
    if (mode === 'quiet' && err instanceof CliError) process.stderr.write(display.transcript.join(''));
    throw err;
  }
  display.finish();
  if (iidfile && display.imageId) fs.writeFileSync(iidfile, display.imageId);
  if (mode === 'quiet') {
    const id = display.imageId ?? display.transcript.join('').trim();
    if (id) process.stdout.write(`${id}\n`);
  }
  return 0;
};
