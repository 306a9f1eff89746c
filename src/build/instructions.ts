import { InvalidArgument } from '../common/errors.js';
import { parseGoDuration } from '../images/config.js';
import { DockerfileParseError } from './errors.js';
import {
  type Heredoc,
  type LogicalInstruction,
  type ParsedDockerfile,
  parseDockerfile,
  parseJsonArray,
  splitInstruction,
  splitWordsKeepingQuotes,
} from './parser.js';

/**
 * Logical instructions → typed commands and build stages. Arguments stay unexpanded (variables
 * are substituted when the step runs, with that step's ENV and ARG values); what can be checked
 * without them is checked here, with the line in the error: instruction names, flags, argument
 * counts, JSON forms, stage names, the order of FROM and ARG.
 */

interface Base {
  line: number;
  /** As written, for `Step N/M : …`. */
  original: string;
}

export interface FromCommand extends Base {
  kind: 'FROM';
  image: string;
  stageName: string | null;
  platform: string | null;
}

export interface RunCommand extends Base {
  kind: 'RUN';
  /** Exec form (JSON) or null for the shell form. */
  exec: string[] | null;
  /** Shell form text. */
  shell: string;
  heredocs: Heredoc[];
  network: string | null;
}

export interface CommandLineCommand extends Base {
  kind: 'CMD' | 'ENTRYPOINT';
  exec: string[] | null;
  shell: string;
}

export interface KeyValueCommand extends Base {
  kind: 'ENV' | 'LABEL';
  /** Raw (quoted, unexpanded) keys and values. */
  pairs: Array<[string, string]>;
  /** Keys and values are final (labels from the API's `labels`): no quote removal or expansion. */
  literal?: boolean;
}

export interface ArgCommand extends Base {
  kind: 'ARG';
  args: Array<{ name: string; defaultValue: string | null }>;
}

export interface WordsCommand extends Base {
  kind: 'EXPOSE' | 'VOLUME';
  /** Raw words (VOLUME: the JSON elements, unexpanded). */
  words: string[];
  json: boolean;
}

export interface StringCommand extends Base {
  kind: 'WORKDIR' | 'USER' | 'STOPSIGNAL' | 'MAINTAINER';
  value: string;
}

export interface HealthcheckCommand extends Base {
  kind: 'HEALTHCHECK';
  test: string[];
  interval?: number;
  timeout?: number;
  startPeriod?: number;
  startInterval?: number;
  retries?: number;
}

export interface ShellCommand extends Base {
  kind: 'SHELL';
  shell: string[];
}

export interface OnbuildCommand extends Base {
  kind: 'ONBUILD';
  /** The trigger as written (`RUN echo hi`), stored in the image config. */
  trigger: string;
}

export interface CopyCommand extends Base {
  kind: 'COPY' | 'ADD';
  /** Raw sources; `<<NAME` refers to a here-document. */
  sources: string[];
  dest: string;
  from: string | null;
  chown: string | null;
  chmod: string | null;
  checksum: string | null;
  heredocs: Heredoc[];
}

export type Command =
  | FromCommand
  | RunCommand
  | CommandLineCommand
  | KeyValueCommand
  | ArgCommand
  | WordsCommand
  | StringCommand
  | HealthcheckCommand
  | ShellCommand
  | OnbuildCommand
  | CopyCommand;

export interface Stage {
  index: number;
  /** Lower-cased `AS` name. */
  name: string | null;
  from: FromCommand;
  commands: Command[];
}

export interface Dockerfile {
  escapeToken: string;
  syntax: string | null;
  /** ARGs before the first FROM (usable in FROM lines). */
  metaArgs: ArgCommand[];
  stages: Stage[];
  warnings: string[];
}

type FlagType = 'string' | 'bool' | 'strings';

const FLAG_SPECS: Record<string, Record<string, FlagType>> = {
  FROM: { platform: 'string' },
  RUN: { mount: 'strings', network: 'string', security: 'string' },
  COPY: {
    from: 'string',
    chown: 'string',
    chmod: 'string',
    link: 'bool',
    parents: 'bool',
    exclude: 'strings',
  },
  ADD: {
    chown: 'string',
    chmod: 'string',
    checksum: 'string',
    'keep-git-dir': 'bool',
    link: 'bool',
    exclude: 'strings',
  },
  HEALTHCHECK: {
    interval: 'string',
    timeout: 'string',
    'start-period': 'string',
    'start-interval': 'string',
    retries: 'string',
  },
};

const INSTRUCTIONS = new Set([
  'ADD',
  'ARG',
  'CMD',
  'COPY',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'FROM',
  'HEALTHCHECK',
  'LABEL',
  'MAINTAINER',
  'ONBUILD',
  'RUN',
  'SHELL',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

const STAGE_NAME = /^[a-z][a-z0-9-_.]*$/;

interface ParsedFlags {
  strings: Map<string, string>;
  lists: Map<string, string[]>;
  bools: Set<string>;
}

function parseFlags(ins: LogicalInstruction): ParsedFlags {
  const spec = FLAG_SPECS[ins.keyword] ?? {};
  const out: ParsedFlags = { strings: new Map(), lists: new Map(), bools: new Set() };
  const used = new Set<string>();
  for (const word of ins.flags) {
    if (!word.startsWith('--'))
      throw new DockerfileParseError(ins.line, `Arg should start with -- : ${word}`);
    const body = word.slice(2);
    const eq = body.indexOf('=');
    const name = eq === -1 ? body : body.slice(0, eq);
    const value = eq === -1 ? null : body.slice(eq + 1);
    const type = spec[name];
    if (type === undefined) throw new DockerfileParseError(ins.line, `Unknown flag: ${name}`);
    if (used.has(name) && type !== 'strings') {
      throw new DockerfileParseError(ins.line, `Duplicate flag specified: ${name}`);
    }
    used.add(name);
    if (type === 'bool') {
      if (value === null || value.toLowerCase() === 'true') out.bools.add(name);
      else if (value.toLowerCase() !== 'false') {
        throw new DockerfileParseError(ins.line, `expecting boolean value for flag ${name}, not: ${value}`);
      }
    } else {
      if (value === null) throw new DockerfileParseError(ins.line, `Missing a value on flag: ${name}`);
      if (type === 'strings') out.lists.set(name, [...(out.lists.get(name) ?? []), value]);
      else out.strings.set(name, value);
    }
  }
  return out;
}

function requireArgs(ins: LogicalInstruction, what = 'at least one argument'): void {
  if (ins.rest === '' && ins.heredocs.length === 0) {
    throw new DockerfileParseError(ins.line, `${ins.keyword} requires ${what}`);
  }
}

function requireNoFlags(ins: LogicalInstruction): void {
  if (ins.flags.length > 0) {
    const name = ins.flags[0].replace(/^--/, '').split('=')[0];
    throw new DockerfileParseError(ins.line, `Unknown flag: ${name}`);
  }
}

function durationFlag(ins: LogicalInstruction, flags: ParsedFlags, name: string): number | undefined {
  const value = flags.strings.get(name);
  if (value === undefined || value === '') return undefined;
  let ns: number;
  try {
    ns = parseGoDuration(value);
  } catch (err) {
    throw new DockerfileParseError(ins.line, (err as Error).message);
  }
  if (ns < 0) throw new DockerfileParseError(ins.line, `Interval "${name}" cannot be negative`);
  if (ns !== 0 && ns < 1_000_000) {
    throw new DockerfileParseError(ins.line, `Interval "${name}" cannot be less than 1ms`);
  }
  return ns;
}

function keyValuePairs(ins: LogicalInstruction, escapeToken: string): Array<[string, string]> {
  requireArgs(ins);
  const words = splitWordsKeepingQuotes(ins.rest, escapeToken);
  if (!words[0].includes('=')) {
    // Legacy form: `ENV NAME the rest is the value`.
    const m = /^(\S+)\s+([\s\S]+)$/.exec(ins.rest);
    if (!m) throw new DockerfileParseError(ins.line, `${ins.keyword} must have two arguments`);
    return [[m[1], m[2]]];
  }
  return words.map((word) => {
    const eq = word.indexOf('=');
    if (eq === -1) {
      throw new DockerfileParseError(
        ins.line,
        `Syntax error - can't find = in ${JSON.stringify(word)}. Must be of the form: name=value`,
      );
    }
    if (eq === 0) throw new DockerfileParseError(ins.line, `${ins.keyword} names can not be blank`);
    return [word.slice(0, eq), word.slice(eq + 1)];
  });
}

/** Turns one logical instruction into a command. */
export function toCommand(ins: LogicalInstruction, escapeToken: string): Command {
  const base = { line: ins.line, original: ins.original };
  if (!INSTRUCTIONS.has(ins.keyword)) {
    throw new DockerfileParseError(ins.line, `unknown instruction: ${ins.keyword}`);
  }
  const flags = FLAG_SPECS[ins.keyword] ? parseFlags(ins) : null;
  if (!flags) requireNoFlags(ins);
  switch (ins.keyword) {
    case 'FROM': {
      const words = ins.rest.split(/\s+/).filter(Boolean);
      if (words.length !== 1 && words.length !== 3) {
        throw new DockerfileParseError(ins.line, 'FROM requires either one or three arguments');
      }
      let stageName: string | null = null;
      if (words.length === 3) {
        if (words[1].toLowerCase() !== 'as') {
          throw new DockerfileParseError(ins.line, "FROM requires 'AS' before the stage name");
        }
        stageName = words[2].toLowerCase();
        if (!STAGE_NAME.test(stageName)) {
          throw new DockerfileParseError(
            ins.line,
            `invalid name for build stage: ${JSON.stringify(words[2])}, name can't start with a number or contain symbols`,
          );
        }
      }
      return {
        kind: 'FROM',
        ...base,
        image: words[0],
        stageName,
        platform: flags?.strings.get('platform') ?? null,
      };
    }
    case 'RUN': {
      requireArgs(ins);
      if (flags?.lists.has('mount')) {
        throw new DockerfileParseError(
          ins.line,
          'the --mount option requires BuildKit, which Strata does not provide; copy the files in with COPY instead',
        );
      }
      if (flags?.strings.has('security')) {
        throw new DockerfileParseError(ins.line, 'the --security option requires BuildKit (not supported)');
      }
      const network = flags?.strings.get('network') ?? null;
      if (network !== null && !['none', 'host', 'default'].includes(network)) {
        throw new DockerfileParseError(
          ins.line,
          `unsupported network mode ${JSON.stringify(network)} for RUN`,
        );
      }
      const exec = ins.heredocs.length > 0 ? null : parseJsonArray(ins.rest, ins.line);
      return { kind: 'RUN', ...base, exec, shell: ins.rest, heredocs: ins.heredocs, network };
    }
    case 'CMD':
    case 'ENTRYPOINT': {
      requireArgs(ins);
      return { kind: ins.keyword, ...base, exec: parseJsonArray(ins.rest, ins.line), shell: ins.rest };
    }
    case 'ENV':
    case 'LABEL':
      return { kind: ins.keyword, ...base, pairs: keyValuePairs(ins, escapeToken) };
    case 'ARG': {
      requireArgs(ins);
      const args = splitWordsKeepingQuotes(ins.rest, escapeToken).map((word) => {
        const eq = word.indexOf('=');
        const name = eq === -1 ? word : word.slice(0, eq);
        if (name === '') throw new DockerfileParseError(ins.line, 'ARG names can not be blank');
        return { name, defaultValue: eq === -1 ? null : word.slice(eq + 1) };
      });
      return { kind: 'ARG', ...base, args };
    }
    case 'EXPOSE':
      requireArgs(ins);
      return { kind: 'EXPOSE', ...base, words: ins.rest.split(/\s+/).filter(Boolean), json: false };
    case 'VOLUME': {
      requireArgs(ins);
      const json = parseJsonArray(ins.rest, ins.line);
      const words = json ?? ins.rest.split(/\s+/).filter(Boolean);
      if (words.length === 0)
        throw new DockerfileParseError(ins.line, 'VOLUME requires at least one argument');
      return { kind: 'VOLUME', ...base, words, json: json !== null };
    }
    case 'WORKDIR':
    case 'USER':
    case 'STOPSIGNAL':
    case 'MAINTAINER':
      requireArgs(ins, 'exactly one argument');
      if (ins.keyword === 'STOPSIGNAL' && /\s/.test(ins.rest)) {
        throw new DockerfileParseError(ins.line, 'STOPSIGNAL requires exactly one argument');
      }
      return { kind: ins.keyword, ...base, value: ins.rest };
    case 'HEALTHCHECK':
      return healthcheck(ins, flags!, base);
    case 'SHELL': {
      requireArgs(ins);
      const shell = parseJsonArray(ins.rest, ins.line);
      if (shell === null)
        throw new DockerfileParseError(ins.line, 'SHELL requires the arguments to be in JSON form');
      if (shell.length === 0)
        throw new DockerfileParseError(ins.line, 'SHELL requires at least one argument');
      return { kind: 'SHELL', ...base, shell };
    }
    case 'ONBUILD': {
      requireArgs(ins);
      const trigger = splitInstruction(ins.rest, ins.line);
      if (trigger.keyword === 'ONBUILD') {
        throw new DockerfileParseError(ins.line, "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
      }
      if (trigger.keyword === 'FROM' || trigger.keyword === 'MAINTAINER') {
        throw new DockerfileParseError(ins.line, `${trigger.keyword} isn't allowed as an ONBUILD trigger`);
      }
      toCommand(trigger, escapeToken);
      return { kind: 'ONBUILD', ...base, trigger: ins.rest.trim() };
    }
    case 'COPY':
    case 'ADD':
      return copyCommand(ins, flags!, base, escapeToken);
    default:
      throw new DockerfileParseError(ins.line, `unknown instruction: ${ins.keyword}`);
  }
}

function healthcheck(
  ins: LogicalInstruction,
  flags: ParsedFlags,
  base: { line: number; original: string },
): HealthcheckCommand {
  requireArgs(ins);
  const m = /^(\S+)\s*([\s\S]*)$/.exec(ins.rest)!;
  const type = m[1].toUpperCase();
  if (type === 'NONE') {
    if (m[2].trim() !== '' || ins.flags.length > 0) {
      throw new DockerfileParseError(ins.line, 'HEALTHCHECK NONE takes no arguments');
    }
    return { kind: 'HEALTHCHECK', ...base, test: ['NONE'] };
  }
  if (type !== 'CMD')
    throw new DockerfileParseError(ins.line, `Unknown type "${type}" in HEALTHCHECK (try CMD)`);
  const args = m[2].trim();
  if (args === '') throw new DockerfileParseError(ins.line, 'Missing command after HEALTHCHECK CMD');
  const exec = parseJsonArray(args, ins.line);
  const command: HealthcheckCommand = {
    kind: 'HEALTHCHECK',
    ...base,
    test: exec !== null ? ['CMD', ...exec] : ['CMD-SHELL', args],
  };
  command.interval = durationFlag(ins, flags, 'interval');
  command.timeout = durationFlag(ins, flags, 'timeout');
  command.startPeriod = durationFlag(ins, flags, 'start-period');
  command.startInterval = durationFlag(ins, flags, 'start-interval');
  const retries = flags.strings.get('retries');
  if (retries !== undefined && retries !== '') {
    if (!/^-?\d+$/.test(retries)) {
      throw new DockerfileParseError(
        ins.line,
        `strconv.ParseInt: parsing ${JSON.stringify(retries)}: invalid syntax`,
      );
    }
    const n = Number(retries);
    if (n < 0) throw new DockerfileParseError(ins.line, `--retries cannot be negative (${n})`);
    command.retries = n;
  }
  for (const key of ['interval', 'timeout', 'startPeriod', 'startInterval', 'retries'] as const) {
    if (command[key] === undefined) delete command[key];
  }
  return command;
}

function copyCommand(
  ins: LogicalInstruction,
  flags: ParsedFlags,
  base: { line: number; original: string },
  escapeToken: string,
): CopyCommand {
  const kind = ins.keyword as 'COPY' | 'ADD';
  if (flags.bools.has('parents') || flags.lists.has('exclude')) {
    const name = flags.bools.has('parents') ? 'parents' : 'exclude';
    throw new DockerfileParseError(ins.line, `the --${name} option requires BuildKit (not supported)`);
  }
  if (flags.bools.has('keep-git-dir')) {
    throw new DockerfileParseError(ins.line, 'the --keep-git-dir option needs a git source (not supported)');
  }
  const json = ins.heredocs.length > 0 ? null : parseJsonArray(ins.rest, ins.line);
  const words = json ?? splitWordsKeepingQuotes(ins.rest, escapeToken);
  if (words.length < 2) {
    throw new DockerfileParseError(
      ins.line,
      `${kind} requires at least two arguments, but only one was provided. Destination could not be determined.`,
    );
  }
  return {
    kind,
    ...base,
    sources: words.slice(0, -1),
    dest: words[words.length - 1],
    from: flags.strings.get('from') ?? null,
    chown: flags.strings.get('chown') ?? null,
    chmod: flags.strings.get('chmod') ?? null,
    checksum: flags.strings.get('checksum') ?? null,
    heredocs: ins.heredocs,
  };
}

/** Parses a whole Dockerfile into meta args and stages. */
export function parseStages(text: string): Dockerfile {
  const parsed: ParsedDockerfile = parseDockerfile(text);
  const out: Dockerfile = {
    escapeToken: parsed.escapeToken,
    syntax: parsed.syntax,
    metaArgs: [],
    stages: [],
    warnings: parsed.warnings,
  };
  if (parsed.instructions.length === 0) {
    throw new InvalidArgument('the Dockerfile cannot be empty');
  }
  const names = new Set<string>();
  for (const ins of parsed.instructions) {
    const command = toCommand(ins, parsed.escapeToken);
    if (command.kind === 'FROM') {
      if (command.stageName !== null) {
        if (names.has(command.stageName)) {
          throw new DockerfileParseError(
            ins.line,
            `duplicate stage name ${JSON.stringify(command.stageName)}`,
          );
        }
        names.add(command.stageName);
      }
      out.stages.push({ index: out.stages.length, name: command.stageName, from: command, commands: [] });
      continue;
    }
    const stage = out.stages.at(-1);
    if (stage === undefined) {
      if (command.kind === 'ARG') {
        out.metaArgs.push(command);
        continue;
      }
      throw new DockerfileParseError(
        ins.line,
        `no build stage in current context: ${ins.keyword} must come after a FROM (only ARG may come before it)`,
      );
    }
    stage.commands.push(command);
  }
  if (out.stages.length === 0) {
    throw new DockerfileParseError(
      parsed.instructions.at(-1)!.line,
      'the Dockerfile has no FROM instruction',
    );
  }
  return out;
}

/** Parses an ONBUILD trigger stored in an image config (one logical line, default escape token). */
export function parseTrigger(trigger: string, line: number): Command {
  const ins = splitInstruction(trigger, line);
  if (['ONBUILD', 'FROM', 'MAINTAINER'].includes(ins.keyword)) {
    throw new DockerfileParseError(line, `${ins.keyword} isn't allowed as an ONBUILD trigger`);
  }
  return toCommand(ins, '\\');
}
