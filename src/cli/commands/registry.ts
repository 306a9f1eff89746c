import type { Writable } from 'node:stream';
import {
  credentialsFor,
  encodeRegistryAuth,
  normalizeServer,
  removeCredentials,
  storeCredentials,
} from '../auth.js';
import { type EngineClient, escapePath, readBody } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { CliError } from '../errors.js';
import { formatReference, INDEX_SERVER, parseReference, registryKey, repositoryName } from '../reference.js';
import { displayJsonMessages } from '../stream.js';
import { isTerminal } from '../terminal.js';

/**
 * pull, push, login, logout. These only forward to the daemon (`POST /images/create?fromImage=`,
 * `POST /images/{name}/push`, `POST /auth`); the CLI's part is the credentials it sends and the
 * progress display.
 */

export interface PullOptions {
  out: Writable & { isTTY?: boolean; columns?: number };
  platform?: string;
  quiet?: boolean;
  allTags?: boolean;
}

function authHeader(domain: string): Record<string, string> {
  return { 'X-Registry-Auth': encodeRegistryAuth(credentialsFor(registryKey(domain))) };
}

/** Pulls an image, rendering progress to `out`; returns the full reference pulled. */
export async function pullImage(client: EngineClient, image: string, opts: PullOptions): Promise<string> {
  const ref = parseReference(image);
  const tag = ref.digest ?? ref.tag ?? (opts.allTags ? undefined : 'latest');
  const res = await client.request('POST', '/images/create', {
    query: { fromImage: repositoryName(ref), tag, platform: opts.platform },
    headers: authHeader(ref.domain),
  });
  if (opts.quiet) {
    // Still read the stream: errors arrive in it.
    const { jsonLines } = await import('../stream.js');
    for await (const msg of jsonLines<{ error?: string; errorDetail?: { message?: string } }>(res)) {
      if (msg.error || msg.errorDetail)
        throw new CliError(msg.errorDetail?.message ?? msg.error ?? 'pull failed');
    }
  } else {
    await displayJsonMessages(res, opts.out, {
      isTerminal: opts.out.isTTY === true,
      columns: opts.out.columns,
    });
  }
  return formatReference(
    opts.allTags && !ref.tag && !ref.digest
      ? ref
      : { ...ref, tag: ref.digest ? undefined : (ref.tag ?? 'latest') },
  );
}

export const pullCommand: CommandHandler = async (ctx) => {
  const ref = parseReference(ctx.args[0]);
  const allTags = ctx.flags.bool('all-tags');
  if (allTags && (ref.tag || ref.digest)) throw new CliError("tag can't be used with --all-tags/-a");
  const quiet = ctx.flags.bool('quiet');
  if (!ref.tag && !ref.digest && !allTags && !quiet) process.stdout.write('Using default tag: latest\n');
  const client = await ctx.client();
  const pulled = await pullImage(client, ctx.args[0], {
    out: process.stdout,
    platform: ctx.flags.string('platform'),
    quiet,
    allTags,
  });
  process.stdout.write(`${pulled}\n`);
  return 0;
};

export const pushCommand: CommandHandler = async (ctx) => {
  const ref = parseReference(ctx.args[0]);
  if (ref.digest) throw new CliError('cannot push a digest reference');
  const allTags = ctx.flags.bool('all-tags');
  const quiet = ctx.flags.bool('quiet');
  if (!ref.tag && !allTags && !quiet) process.stdout.write('Using default tag: latest\n');
  const client = await ctx.client();
  const res = await client.request('POST', `/images/${escapePath(repositoryName(ref))}/push`, {
    query: { tag: ref.tag ?? (allTags ? undefined : 'latest') },
    headers: authHeader(ref.domain),
  });
  if (quiet) {
    const { jsonLines } = await import('../stream.js');
    for await (const msg of jsonLines<{ error?: string; errorDetail?: { message?: string } }>(res)) {
      if (msg.error || msg.errorDetail)
        throw new CliError(msg.errorDetail?.message ?? msg.error ?? 'push failed');
    }
    process.stdout.write(`${formatReference({ ...ref, tag: ref.tag ?? 'latest' })}\n`);
  } else {
    await displayJsonMessages(res, process.stdout, {
      isTerminal: isTerminal(process.stdout),
      columns: process.stdout.columns,
    });
  }
  return 0;
};

/** Reads all of stdin (for --password-stdin). */
async function readStdin(): Promise<string> {
  return (await readBody(process.stdin)).toString('utf8');
}

/** Prompts on the terminal; with `secret`, keystrokes are not echoed. */
async function prompt(question: string, secret: boolean): Promise<string> {
  if (!isTerminal(process.stdin)) {
    throw new CliError(`Error: Cannot perform an interactive login from a non TTY device`);
  }
  process.stdout.write(question);
  const stdin = process.stdin;
  if (secret) stdin.setRawMode(true);
  try {
    return await new Promise<string>((resolve, reject) => {
      let text = '';
      const onData = (chunk: Buffer): void => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            stdin.off('data', onData);
            stdin.pause();
            if (secret) process.stdout.write('\n');
            resolve(text);
            return;
          }
          if (ch === '\u0003') {
            stdin.off('data', onData);
            reject(new CliError('', 130));
            return;
          }
          if (ch === '\u007f' || ch === '\b') text = text.slice(0, -1);
          else text += ch;
        }
      };
      stdin.on('data', onData);
      stdin.resume();
    });
  } finally {
    if (secret) stdin.setRawMode(false);
  }
}

export const loginCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const server = ctx.args[0] ?? INDEX_SERVER;
  let username = flags.string('username');
  let password = flags.string('password');
  if (password !== undefined && flags.bool('password-stdin')) {
    throw new CliError('--password and --password-stdin are mutually exclusive');
  }
  if (flags.bool('password-stdin')) {
    if (!username) throw new CliError('Must provide --username with --password-stdin');
    password = (await readStdin()).replace(/\r?\n$/, '');
  } else if (password !== undefined) {
    process.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
  }
  username ??= (await prompt('Username: ', false)).trim();
  if (!username) throw new CliError('Error: Non-null Username Required');
  password ??= await prompt('Password: ', true);
  if (!password) throw new CliError('Error: Password Required');
  const serveraddress = normalizeServer(server) === INDEX_SERVER ? INDEX_SERVER : server;
  const client = await ctx.client();
  const answer = await client.json<{ Status?: string; IdentityToken?: string }>('POST', '/auth', {
    json: { username, password, serveraddress },
  });
  storeCredentials(server, username, password, answer?.IdentityToken || undefined);
  process.stdout.write(`${answer?.Status || 'Login Succeeded'}\n`);
  return 0;
};

export const logoutCommand: CommandHandler = async (ctx) => {
  const server = ctx.args[0] ?? INDEX_SERVER;
  const key = normalizeServer(server);
  if (!removeCredentials(server)) {
    process.stdout.write(`Not logged in to ${key}\n`);
    return 0;
  }
  process.stdout.write(`Removing login credentials for ${key}\n`);
  return 0;
};
