import type { EngineClient } from './client.js';
import { ACL_COMMAND } from './commands/acl.js';
import { REG_COMMAND } from './commands/reg.js';
import {
  COMMANDS,
  type CommandContext,
  type CommandSpec,
  groupCommands,
  type ResolvedCommand,
  resolveCommand,
} from './commands.js';
import { CliError } from './errors.js';
import { FlagError, type FlagSpec, type FlagValues, formatFlagHelp, parseFlags } from './flags.js';

/**
 * The `strata` client command. bin/strata calls `main(process.argv.slice(2))` for everything
 * except `daemon` and `registry`. Flow: global flags → command lookup → the command's flags →
 * its lazily loaded handler → exit status. Errors become one message on stderr and docker's exit
 * status (125 for flag errors, 1 for wrong argument counts and daemon errors, handlers choose
 * their own where docker does).
 */

const VERSION = '0.1.0';

COMMANDS.push(REG_COMMAND, ACL_COMMAND);

const GLOBAL_FLAGS: FlagSpec[] = [
  {
    name: 'host',
    short: 'H',
    kind: 'string',
    help: 'Daemon socket to connect to (unix:///path or tcp://host:port)',
  },
  { name: 'debug', short: 'D', kind: 'bool', help: 'Enable debug mode' },
  { name: 'log-level', short: 'l', kind: 'string', help: 'Set the logging level', defaultValue: 'info' },
  { name: 'version', short: 'v', kind: 'bool', help: 'Print version information and quit' },
  { name: 'help', kind: 'bool', help: 'Print usage' },
];

export interface ParsedInvocation {
  command: ResolvedCommand;
  globals: FlagValues;
  flags: FlagValues;
  args: string[];
}

export type ParseOutcome =
  | { kind: 'run'; invocation: ParsedInvocation }
  | { kind: 'help'; text: string }
  | { kind: 'version' };

/** Parses a full command line without running anything (unit-tested). */
export function parseCommandLine(argv: string[]): ParseOutcome {
  const top = parseFlags(argv, GLOBAL_FLAGS, { interspersed: false });
  if (top.flags.bool('version')) return { kind: 'version' };
  if (top.args.length === 0) return { kind: 'help', text: mainHelp() };
  const [word] = top.args;
  if (word === 'help') {
    const target = top.args.length > 1 ? resolveCommand(top.args.slice(1)) : undefined;
    return { kind: 'help', text: target && 'spec' in target ? commandHelp(target.spec) : mainHelp() };
  }
  const resolved = resolveCommand(top.args);
  if (!resolved) {
    throw new CliError(
      `strata: unknown command: strata ${top.args
        .slice(0, 2)
        .filter((a) => !a.startsWith('-'))
        .join(' ')}. See 'strata --help'.`,
    );
  }
  if ('group' in resolved) return { kind: 'help', text: groupHelp(resolved.group) };
  const { spec } = resolved;
  const withHelp = [...spec.flags, helpFlag(spec.flags)];
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(resolved.rest, withHelp, { interspersed: spec.interspersed ?? true });
  } catch (err) {
    if (err instanceof FlagError) {
      throw new CliError(`${err.message}. See 'strata ${resolved.typed} --help'.`, 125);
    }
    throw err;
  }
  if (parsed.flags.bool('help')) return { kind: 'help', text: commandHelp(spec) };
  checkArity(resolved, parsed.args.length);
  return {
    kind: 'run',
    invocation: { command: resolved, globals: top.flags, flags: parsed.flags, args: parsed.args },
  };
}

function helpFlag(flags: FlagSpec[]): FlagSpec {
  const shortTaken = flags.some((f) => f.short === 'h');
  return {
    name: 'help',
    short: shortTaken ? undefined : 'h',
    kind: 'bool',
    help: 'Print usage',
    hidden: true,
  };
}

function checkArity(cmd: ResolvedCommand, count: number): void {
  const { minArgs = 0, maxArgs } = cmd.spec;
  let problem: string | undefined;
  if (maxArgs !== undefined && minArgs === maxArgs && count !== minArgs) {
    problem = `requires exactly ${minArgs} argument${minArgs === 1 ? '' : 's'}`;
  } else if (count < minArgs) {
    problem = `requires at least ${minArgs} argument${minArgs === 1 ? '' : 's'}`;
  } else if (maxArgs !== undefined && count > maxArgs) {
    problem =
      maxArgs === 0
        ? 'accepts no arguments'
        : `requires at most ${maxArgs} argument${maxArgs === 1 ? '' : 's'}`;
  }
  if (problem) {
    throw new CliError(`strata: 'strata ${cmd.typed}' ${problem}. See 'strata ${cmd.typed} --help'.`);
  }
}

function mainHelp(): string {
  const rows = COMMANDS.filter((c) => !c.name.includes(' ')).map(
    (c) => `  ${c.name.padEnd(10)}${c.summary}\n`,
  );
  return (
    'Usage:  strata [OPTIONS] COMMAND\n\nA container engine that speaks the Docker Engine API\n\n' +
    `Commands:\n${rows.join('')}\nManagement Commands:\n` +
    '  builder   Manage builds\n  container Manage containers\n  image     Manage images\n' +
    '  network   Manage networks\n  system    Manage Strata\n  volume    Manage volumes\n\n' +
    `Global Options:\n${formatFlagHelp(GLOBAL_FLAGS)}\n` +
    "Run 'strata COMMAND --help' for more information on a command.\n"
  );
}

function groupHelp(group: string): string {
  const rows = groupCommands(group).map(([verb, spec]) => `  ${verb.padEnd(12)}${spec.summary}\n`);
  return `Usage:  strata ${group} COMMAND\n\nCommands:\n${rows.join('')}\nRun 'strata ${group} COMMAND --help' for more information on a command.\n`;
}

export function commandHelp(spec: CommandSpec): string {
  const options = spec.flags.length > 0 ? `\nOptions:\n${formatFlagHelp(spec.flags)}` : '';
  return `\nUsage:  strata ${spec.usage}\n\n${spec.summary}\n${options}`;
}

export async function main(argv: string[]): Promise<void> {
  let client: EngineClient | undefined;
  let exitCode = 0;
  try {
    const outcome = parseCommandLine(argv);
    if (outcome.kind === 'version') {
      process.stdout.write(`Strata version ${VERSION}\n`);
    } else if (outcome.kind === 'help') {
      process.stdout.write(outcome.text);
    } else {
      const { invocation } = outcome;
      let connecting: Promise<EngineClient> | undefined;
      const ctx: CommandContext = {
        name: invocation.command.spec.name,
        flags: invocation.flags,
        args: invocation.args,
        client: () => {
          connecting ??= import('./connect.js').then(async ({ connectToDaemon }) => {
            client = await connectToDaemon({ host: invocation.globals.string('host') });
            return client;
          });
          return connecting;
        },
      };
      const handler = await invocation.command.spec.load();
      exitCode = (await handler(ctx)) ?? 0;
    }
  } catch (err) {
    exitCode = reportError(err);
  } finally {
    client?.close();
  }
  // Output to a pipe is written asynchronously: let what is queued reach it (a write's callback runs
  // once everything before it went out), or `strata save | strata load` gets a cut archive.
  await flushed(process.stdout);
  await flushed(process.stderr);
  // Stdin in raw mode or a half-open hijacked socket must not keep the process alive.
  process.exit(exitCode);
}

function flushed(stream: NodeJS.WriteStream): Promise<void> {
  if (stream.writableLength === 0 || stream.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    try {
      stream.write('', () => resolve());
    } catch {
      resolve();
    }
  });
}

function reportError(err: unknown): number {
  // Our reader went away (`strata export c | head`): die quietly like a SIGPIPE'd docker.
  if (err instanceof Error && (err as NodeJS.ErrnoException).code === 'EPIPE') return 141;
  if (err instanceof CliError) {
    if (err.message) process.stderr.write(`${err.message}\n`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`strata: ${message}\n`);
  if (process.env.STRATA_DEBUG && err instanceof Error && err.stack) process.stderr.write(`${err.stack}\n`);
  return 1;
}
