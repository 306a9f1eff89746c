import type { IncomingMessage } from 'node:http';
import type { ContainerInspect, CreateResponse, ExecInspect, WaitResponse } from '../api-types.js';
import { type EngineClient, escapePath, readBody } from '../client.js';
import type { CommandContext, CommandHandler } from '../commands.js';
import { ApiError, CliError, startFailureExitCode, UsageError } from '../errors.js';
import { familiarName, parseReference, withDefaultTag } from '../reference.js';
import { buildCreateRequest, type CreateRequest, parseEnvFile } from '../run-config.js';
import { proxySignals, type Session, startSession, trackResize } from '../session.js';
import { enterRawMode, isTerminal, terminalSize } from '../terminal.js';

/**
 * Commands that attach to a container's or an exec's streams: run, create, start, attach, exec.
 * `run` follows the docker CLI's request order exactly — create, attach (hijacked), wait
 * (headers back before anything else), start, resize — because the daemon relies on the waiter
 * and the attach being registered before the container can exit.
 */

const noop = (): void => {};

/** docker exits 125 for everything that goes wrong before the container runs. */
function asCreateFailure(err: unknown): unknown {
  if (err instanceof CliError && err.exitCode === 1) return new CliError(err.message, 125);
  return err;
}

export const runCommand: CommandHandler = async (ctx) => {
  // docker exits 1 here, not 125: the check happens before anything is sent to the daemon.
  if (
    !ctx.flags.bool('detach') &&
    ctx.flags.bool('interactive') &&
    ctx.flags.bool('tty') &&
    !isTerminal(process.stdin)
  ) {
    throw new CliError('the input device is not a TTY', 1);
  }
  try {
    return await runContainer(ctx);
  } catch (err) {
    throw asCreateFailure(err);
  }
};

export const createCommand: CommandHandler = async (ctx) => {
  try {
    const [image, ...command] = ctx.args;
    const size = terminalSize();
    const request = buildCreateRequest(ctx.flags, image, command, {
      consoleSize: size ? [size.rows, size.cols] : undefined,
    });
    const client = await ctx.client();
    const id = await createContainer(client, request, ctx.flags.string('pull') ?? 'missing');
    process.stdout.write(`${id}\n`);
    return 0;
  } catch (err) {
    throw asCreateFailure(err);
  }
};

async function runContainer(ctx: CommandContext): Promise<number> {
  const { flags, args } = ctx;
  const [image, ...command] = args;
  const detach = flags.bool('detach');
  const tty = flags.bool('tty');
  const size = terminalSize();
  const request = buildCreateRequest(flags, image, command, {
    detach,
    consoleSize: size ? [size.rows, size.cols] : undefined,
  });
  const { body } = request;
  const client = await ctx.client();
  const id = await createContainer(client, request, flags.string('pull') ?? 'missing');
  const condition = body.HostConfig.AutoRemove ? 'removed' : 'next-exit';

  if (detach) {
    // docker registers the waiter too, then abandons it once the start succeeded.
    const wait = await client.request('POST', `/containers/${id}/wait`, { query: { condition } });
    try {
      await startContainer(client, id);
    } finally {
      wait.destroy();
    }
    process.stdout.write(`${id}\n`);
    return 0;
  }

  let session: Session | undefined;
  if (body.AttachStdin || body.AttachStdout || body.AttachStderr) {
    const socket = await client.hijack('POST', `/containers/${id}/attach`, {
      query: {
        detachKeys: flags.string('detach-keys'),
        stderr: body.AttachStderr,
        stdin: body.AttachStdin,
        stdout: body.AttachStdout,
        stream: true,
      },
    });
    session = startSession(socket, { tty, stdin: body.AttachStdin });
  }
  const status = waitStatus(await client.request('POST', `/containers/${id}/wait`, { query: { condition } }));
  const restoreTerminal = tty && body.AttachStdin && isTerminal(process.stdin) ? enterRawMode() : noop;
  let stopResize = noop;
  let stopSignals = noop;
  try {
    await startContainer(client, id);
    if (tty) stopResize = trackResize((rows, cols) => resizeContainer(client, id, rows, cols));
    if (!tty && flags.bool('sig-proxy')) stopSignals = proxySignals(client, id);
    if (session) await session.output;
    return await status;
  } finally {
    stopSignals();
    stopResize();
    restoreTerminal();
    session?.close();
  }
}

function resizeContainer(client: EngineClient, id: string, rows: number, cols: number): Promise<number> {
  return client.call('POST', `/containers/${id}/resize`, { query: { h: rows, w: cols } });
}

/** POST /containers/create; on "no such image" pulls it (as `docker run` does) and retries once. */
export async function createContainer(
  client: EngineClient,
  request: CreateRequest,
  pullPolicy: string,
): Promise<string> {
  if (!['missing', 'always', 'never'].includes(pullPolicy)) {
    throw new UsageError(
      `invalid pull option: '${pullPolicy}': must be one of "always", "missing" or "never"`,
      125,
    );
  }
  const image = request.body.Image;
  const create = (): Promise<CreateResponse> =>
    client.json<CreateResponse>('POST', '/containers/create', {
      query: { name: request.name, platform: request.platform },
      json: request.body,
    });
  const pull = async (): Promise<void> => {
    const { pullImage } = await import('./registry.js');
    await pullImage(client, image, { out: process.stderr, platform: request.platform });
  };
  if (pullPolicy === 'always') await pull();
  let created: CreateResponse;
  try {
    created = await create();
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404 || pullPolicy !== 'missing') throw err;
    if (!/image/i.test(err.daemonMessage)) throw err;
    let displayName: string;
    try {
      displayName = familiarName(withDefaultTag(parseReference(image)));
    } catch {
      throw err;
    }
    process.stderr.write(`Unable to find image '${displayName}' locally\n`);
    await pull();
    created = await create();
  }
  for (const warning of created.Warnings ?? []) process.stderr.write(`WARNING: ${warning}\n`);
  return created.Id;
}

async function startContainer(client: EngineClient, id: string): Promise<void> {
  try {
    await client.call('POST', `/containers/${id}/start`);
  } catch (err) {
    if (err instanceof ApiError) throw new CliError(err.message, startFailureExitCode(err.daemonMessage));
    throw err;
  }
}

/** Reads the wait body ({"StatusCode":N}) once the condition is met. */
export function waitStatus(res: IncomingMessage): Promise<number> {
  const status = readBody(res).then((buf) => {
    const text = buf.toString('utf8').trim();
    if (!text) throw new CliError('the daemon closed the wait request without a status', 125);
    const parsed = JSON.parse(text) as WaitResponse;
    if (parsed.Error?.Message) throw new CliError(parsed.Error.Message, 125);
    return parsed.StatusCode ?? 0;
  });
  // Rejections are observed where the status is awaited; keep Node from reporting them early.
  status.catch(noop);
  return status;
}

export const startCommand: CommandHandler = async (ctx) => {
  const { flags, args } = ctx;
  const client = await ctx.client();
  if (flags.bool('attach') || flags.bool('interactive')) {
    if (args.length > 1) throw new CliError('you cannot start and attach multiple containers at once');
    const info = await client.json<ContainerInspect>('GET', `/containers/${escapePath(args[0])}/json`);
    const id = info.Id;
    const tty = info.Config?.Tty === true;
    const stdin = flags.bool('interactive') && info.Config?.OpenStdin === true;
    const status = waitStatus(
      await client.request('POST', `/containers/${id}/wait`, { query: { condition: 'next-exit' } }),
    );
    const socket = await client.hijack('POST', `/containers/${id}/attach`, {
      query: { detachKeys: flags.string('detach-keys'), stderr: true, stdin, stdout: true, stream: true },
    });
    const session = startSession(socket, { tty, stdin });
    const restoreTerminal = tty && stdin && isTerminal(process.stdin) ? enterRawMode() : noop;
    let stopResize = noop;
    let stopSignals = noop;
    try {
      await startContainer(client, id);
      if (tty) stopResize = trackResize((rows, cols) => resizeContainer(client, id, rows, cols));
      else stopSignals = proxySignals(client, id);
      await session.output;
      return await status;
    } finally {
      stopSignals();
      stopResize();
      restoreTerminal();
      session.close();
    }
  }
  const failed: string[] = [];
  for (const name of args) {
    try {
      await client.call('POST', `/containers/${escapePath(name)}/start`);
      process.stdout.write(`${name}\n`);
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      process.stderr.write(`${err.message}\n`);
      failed.push(name);
    }
  }
  if (failed.length > 0) throw new CliError(`Error: failed to start containers: ${failed.join(', ')}`);
  return 0;
};

export const attachCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const name = ctx.args[0];
  const client = await ctx.client();
  const status = waitStatus(await client.request('POST', `/containers/${escapePath(name)}/wait`));
  const info = await client.json<ContainerInspect>('GET', `/containers/${escapePath(name)}/json`);
  if (info.State?.Paused) throw new CliError('You cannot attach to a paused container, unpause it first');
  if (info.State?.Restarting)
    throw new CliError('You cannot attach to a restarting container, wait until it is running');
  if (!info.State?.Running) throw new CliError('You cannot attach to a stopped container, start it first');
  const tty = info.Config?.Tty === true;
  const stdin = !flags.bool('no-stdin') && info.Config?.OpenStdin === true;
  const socket = await client.hijack('POST', `/containers/${info.Id}/attach`, {
    query: { detachKeys: flags.string('detach-keys'), stderr: true, stdin, stdout: true, stream: true },
  });
  const session = startSession(socket, { tty, stdin });
  const restoreTerminal = tty && stdin && isTerminal(process.stdin) ? enterRawMode() : noop;
  const stopResize = tty ? trackResize((rows, cols) => resizeContainer(client, info.Id, rows, cols)) : noop;
  const stopSignals = !tty && flags.bool('sig-proxy') ? proxySignals(client, info.Id) : noop;
  try {
    await session.output;
    return await status;
  } finally {
    stopSignals();
    stopResize();
    restoreTerminal();
    session.close();
  }
};

export const execCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const [container, ...command] = ctx.args;
  const detach = flags.bool('detach');
  const tty = flags.bool('tty');
  const interactive = flags.bool('interactive');
  if (!detach && interactive && tty && !isTerminal(process.stdin)) {
    throw new CliError('the input device is not a TTY');
  }
  const env: string[] = [];
  if (flags.list('env-file').length > 0) {
    const fs = await import('node:fs');
    for (const file of flags.list('env-file'))
      env.push(...parseEnvFile(fs.readFileSync(file, 'utf8'), process.env));
  }
  for (const e of flags.list('env')) {
    if (e.includes('=') || process.env[e] === undefined) env.push(e);
    else env.push(`${e}=${process.env[e]}`);
  }
  const client = await ctx.client();
  const created = await client.json<{ Id: string }>('POST', `/containers/${escapePath(container)}/exec`, {
    json: {
      User: flags.string('user') ?? '',
      Privileged: flags.bool('privileged'),
      Tty: tty,
      AttachStdin: interactive && !detach,
      AttachStderr: !detach,
      AttachStdout: !detach,
      Detach: detach,
      DetachKeys: flags.string('detach-keys') ?? '',
      Env: env.length > 0 ? env : null,
      WorkingDir: flags.string('workdir') ?? '',
      Cmd: command,
    },
  });
  const execId = created.Id;
  if (detach) {
    await client.call('POST', `/exec/${execId}/start`, { json: { Detach: true, Tty: tty } });
    return 0;
  }
  const socket = await client.hijack('POST', `/exec/${execId}/start`, { json: { Detach: false, Tty: tty } });
  const stdin = interactive;
  const session = startSession(socket, { tty, stdin });
  const restoreTerminal = tty && stdin && isTerminal(process.stdin) ? enterRawMode() : noop;
  const stopResize = tty
    ? trackResize((rows, cols) =>
        client.call('POST', `/exec/${execId}/resize`, { query: { h: rows, w: cols } }),
      )
    : noop;
  try {
    await session.output;
  } finally {
    stopResize();
    restoreTerminal();
    session.close();
  }
  return execExitCode(client, execId);
};

/** The exec's exit code; the daemon records it before closing the stream, but allow a moment. */
async function execExitCode(client: EngineClient, execId: string): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const info = await client.json<ExecInspect>('GET', `/exec/${execId}/json`);
    if (!info.Running && typeof info.ExitCode === 'number') return info.ExitCode;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new CliError(`exec ${execId} did not report an exit code`);
}
