import type { EngineClient } from '../client.js';
import type { CommandHandler, CommandSpec } from '../commands.js';
import { ApiError, CliError } from '../errors.js';

/**
 * `strata reg`: the verbs and switches of Windows' reg.exe on a container's registry hive (and, for
 * query and export, an image's). Switches are reg.exe's (`/v`, `/ve`, `/t`, `/d`, `/s`, `/f`, …, also
 * written `-v`, any case); output and messages follow reg.exe's. Everything goes through the
 * daemon's `/containers/{id}/registry` API except `convert`, which writes a local directory.
 * The hive modules are loaded only when `reg` runs, so other commands do not pay for them.
 */

const USAGE = `reg VERB ARGS...

  reg query   [--image] CONTAINER|IMAGE KEY [/v NAME | /ve] [/s] [/t TYPE[,TYPE]] [/se SEP]
              [/f DATA [/k] [/d] [/c] [/e]]
  reg add     CONTAINER KEY [/v NAME | /ve] [/t TYPE] [/s SEP] [/d DATA] [/f]
  reg delete  CONTAINER KEY [/v NAME | /ve | /va] [/f]
  reg export  [--image] CONTAINER|IMAGE KEY FILE|- [/y]
  reg import  CONTAINER FILE|-
  reg convert FILE.reg DIR

KEY is ROOT\\SubKey\\... with ROOT one of HKLM, HKCU, HKCR, HKU, HKCC (or HKEY_LOCAL_MACHINE, ...).
TYPE is REG_SZ (default), REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, REG_QWORD, REG_BINARY or REG_NONE.
convert turns a .reg file into the hive's directory layout, to COPY into an image's /.strata/hive/.`;

export const REG_COMMAND: CommandSpec = {
  name: 'reg',
  usage: USAGE,
  summary: "Query and change a container's registry hive (reg.exe verbs and switches)",
  flags: [],
  interspersed: false,
  load: async () => regCommand,
};

type Verb = 'query' | 'add' | 'delete' | 'export' | 'import' | 'convert';

/** Each verb's switches: true when the switch takes a value. */
const SWITCHES: Record<Verb, Record<string, boolean>> = {
  query: {
    v: true,
    ve: false,
    s: false,
    f: true,
    k: false,
    d: false,
    c: false,
    e: false,
    t: true,
    se: true,
    'reg:32': false,
    'reg:64': false,
  },
  add: { v: true, ve: false, t: true, s: true, d: true, f: false, 'reg:32': false, 'reg:64': false },
  delete: { v: true, ve: false, va: false, f: false, 'reg:32': false, 'reg:64': false },
  export: { y: false, 'reg:32': false, 'reg:64': false },
  import: { 'reg:32': false, 'reg:64': false },
  convert: {},
};

const ARITY: Record<Verb, number> = { query: 2, add: 2, delete: 2, export: 3, import: 2, convert: 2 };

export interface RegArgs {
  verb: Verb;
  positional: string[];
  switches: Map<string, string | true>;
  image: boolean;
  help: boolean;
}

const SUCCESS = 'The operation completed successfully.\n';

/** Parses `reg VERB …` the way reg.exe does (unit-tested). */
export function parseRegArgs(args: readonly string[]): RegArgs {
  const [verbText, ...rest] = args;
  const verb = verbText?.toLowerCase();
  if (verb === undefined || ['/?', '-?', '/h', '-h', '--help', 'help'].includes(verb)) {
    return { verb: 'query', positional: [], switches: new Map(), image: false, help: true };
  }
  if (!(verb in SWITCHES))
    throw new CliError(`ERROR: Invalid syntax. Unknown operation "${verbText}".\n\nUsage:  strata ${USAGE}`);
  const known = SWITCHES[verb as Verb];
  const parsed: RegArgs = {
    verb: verb as Verb,
    positional: [],
    switches: new Map(),
    image: false,
    help: false,
  };
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i];
    if (['/?', '-?', '/h', '-h', '--help'].includes(token.toLowerCase())) {
      parsed.help = true;
      continue;
    }
    if (token === '--image' && (verb === 'query' || verb === 'export')) {
      parsed.image = true;
      continue;
    }
    const name = /^[/-]/.test(token) ? token.slice(1).toLowerCase() : null;
    // A switch-like word the verb does not know is an error; anything else is an argument
    // (`/tmp/out.reg` is a file).
    if (name === null || !(name in known)) {
      if (/^[/-][a-z]{1,3}$/i.test(token)) {
        throw new CliError(`ERROR: Invalid syntax. Unknown switch "${token}" for reg ${verb}.`);
      }
      parsed.positional.push(token);
      continue;
    }
    if (parsed.switches.has(name)) throw new CliError(`ERROR: Invalid syntax. /${name} is given twice.`);
    if (known[name]) {
      if (i + 1 >= rest.length) throw new CliError(`ERROR: Invalid syntax. /${name} needs a value.`);
      parsed.switches.set(name, rest[++i]);
    } else {
      parsed.switches.set(name, true);
    }
  }
  if (!parsed.help && parsed.positional.length !== ARITY[parsed.verb]) {
    throw new CliError(
      `ERROR: Invalid syntax. reg ${parsed.verb} needs ${ARITY[parsed.verb]} arguments, got ${parsed.positional.length}.\n\nUsage:  strata ${USAGE}`,
    );
  }
  const has = (n: string) => parsed.switches.has(n);
  if (has('v') && has('ve')) throw new CliError('ERROR: Invalid syntax. /v and /ve cannot be combined.');
  if (has('va') && (has('v') || has('ve')))
    throw new CliError('ERROR: Invalid syntax. /va cannot be combined with /v or /ve.');
  return parsed;
}

function text(args: RegArgs, name: string): string | undefined {
  const v = args.switches.get(name);
  return typeof v === 'string' ? v : undefined;
}

function flag(args: RegArgs, name: string): boolean {
  return args.switches.has(name);
}

/** The value a command names: `/v NAME`, `/ve` (the default value, `''`), or none. */
function selectedValue(args: RegArgs): string | undefined {
  if (flag(args, 've')) return '';
  return text(args, 'v');
}

function valueLabel(name: string): string {
  return name === '' ? '(Default)' : name;
}

function targetPath(args: RegArgs): string {
  const target = args.positional[0];
  if (args.image)
    return `/images/${target.replace(/[^A-Za-z0-9._~:@/+=-]/g, (c) => encodeURIComponent(c))}/registry`;
  return `/containers/${encodeURIComponent(target)}/registry`;
}

/** Asks on the terminal; null when stdin is not one (scripts must pass /f or /y). */
async function confirm(question: string): Promise<boolean | null> {
  if (!process.stdin.isTTY) return null;
  const { createInterface } = await import('node:readline/promises');
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(`${question} (Yes/No)? `)).trim());
  } finally {
    rl.close();
  }
}

/** Asks `question`; without a terminal, fails with `refusal` (reg.exe would wait for an answer). */
async function requireConfirmation(question: string, refusal: string): Promise<boolean> {
  const answer = await confirm(question);
  if (answer === null) throw new CliError(`ERROR: ${refusal}`);
  if (!answer) process.stdout.write('The operation was cancelled by the user.\n');
  return answer;
}

interface ValueJsonIn {
  Name: string;
  Type: string;
  Data: string | number | string[];
}

interface KeyJsonIn {
  Key: string;
  Values: ValueJsonIn[];
  Subkeys: string[];
}

type Values = typeof import('../../hive/values.js');

/** A value as shown by `reg query`: `    Name    REG_SZ    data`. */
function valueLine(values: Values, value: ValueJsonIn, separator: string): string {
  const type = values.parseValueType(value.Type);
  const data = values.formatDataForDisplay(values.dataFromJson(type, value.Data), separator);
  return `    ${valueLabel(value.Name)}    ${type}    ${data}`;
}

export interface QueryFormat {
  recursive: boolean;
  /** `/v` or `/ve` was given. */
  valueSelected: boolean;
  separator: string;
  types: string[] | null;
}

/** reg.exe's `query` output for the daemon's listing (unit-tested against reg.exe's own). */
export function formatQueryOutput(values: Values, keys: readonly KeyJsonIn[], format: QueryFormat): string {
  const shown = (k: KeyJsonIn) =>
    k.Values.filter((v) => format.types === null || format.types.includes(v.Type));
  const block = (k: KeyJsonIn, vals: ValueJsonIn[]) =>
    `${k.Key}\n${vals.map((v) => `${valueLine(values, v, format.separator)}\n`).join('')}\n`;
  let out = '\n';
  if (!format.recursive) {
    const [key] = keys;
    const vals = shown(key);
    if (vals.length > 0) out += block(key, vals);
    for (const sub of key.Subkeys) out += `${key.Key}\\${sub}\n`;
    return out;
  }
  keys.forEach((key, i) => {
    const vals = shown(key);
    if (vals.length > 0 || i > 0) out += block(key, vals);
  });
  if (format.valueSelected) {
    out += `End of search: ${keys.reduce((n, k) => n + shown(k).length, 0)} match(es) found.\n`;
  }
  return out;
}

export interface SearchFormat {
  pattern: string;
  recursive: boolean;
  keysOnly: boolean;
  dataOnly: boolean;
  caseSensitive: boolean;
  exact: boolean;
  separator: string;
  types: string[] | null;
}

/** `reg query KEY /f DATA`: keys, value names and data matching a pattern (`*` wildcards). */
export function formatSearchOutput(
  values: Values,
  keys: readonly KeyJsonIn[],
  format: SearchFormat,
): { text: string; matches: number } {
  const source = format.pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  const regex = new RegExp(format.exact ? `^${source}$` : source, format.caseSensitive ? 's' : 'is');
  const matches = (s: string) => regex.test(s);
  const searchKeys = !format.dataOnly;
  const searchNames = !format.dataOnly && !format.keysOnly;
  const searchData = !format.keysOnly;
  const leaf = (path: string) => path.slice(path.lastIndexOf('\\') + 1);
  let out = '';
  let count = 0;
  const visitKey = (path: string, isTop: boolean, vals: ValueJsonIn[]) => {
    const keyMatched = !isTop && searchKeys && matches(leaf(path));
    const matched = vals.filter((v) => {
      if (format.types !== null && !format.types.includes(v.Type)) return false;
      if (searchNames && matches(v.Name)) return true;
      if (!searchData) return false;
      const type = values.parseValueType(v.Type);
      return matches(values.formatDataForDisplay(values.dataFromJson(type, v.Data), format.separator));
    });
    if (!keyMatched && matched.length === 0) return;
    count += (keyMatched ? 1 : 0) + matched.length;
    out += `\n${path}\n${matched.map((v) => `${valueLine(values, v, format.separator)}\n`).join('')}`;
  };
  if (format.recursive) {
    keys.forEach((key, i) => {
      visitKey(key.Key, i === 0, key.Values);
    });
  } else {
    const [key] = keys;
    visitKey(key.Key, true, key.Values);
    for (const sub of key.Subkeys) visitKey(`${key.Key}\\${sub}`, false, []);
  }
  return { text: `${out}End of search: ${count} match(es) found.\n`, matches: count };
}

async function runQuery(client: EngineClient, args: RegArgs, values: Values): Promise<number> {
  const pattern = text(args, 'f');
  const recursive = flag(args, 's');
  const separator = text(args, 'se') ?? '\\0';
  const typesText = text(args, 't');
  const types = typesText === undefined ? null : typesText.split(',').map((t) => values.parseValueType(t));
  const value = selectedValue(args);
  const res = await client.json<{ Keys: KeyJsonIn[] }>('GET', targetPath(args), {
    query: { key: args.positional[1], recursive, value },
  });
  if (pattern !== undefined) {
    const search = formatSearchOutput(values, res.Keys, {
      pattern,
      recursive,
      keysOnly: flag(args, 'k'),
      dataOnly: flag(args, 'd'),
      caseSensitive: flag(args, 'c'),
      exact: flag(args, 'e'),
      separator,
      types,
    });
    process.stdout.write(search.text);
    return search.matches > 0 ? 0 : 1;
  }
  process.stdout.write(
    formatQueryOutput(values, res.Keys, { recursive, valueSelected: value !== undefined, separator, types }),
  );
  return 0;
}

async function runAdd(client: EngineClient, args: RegArgs, values: Values): Promise<number> {
  const key = args.positional[1];
  const path = targetPath(args);
  const name = selectedValue(args) ?? (flag(args, 'd') || flag(args, 't') ? '' : undefined);
  if (name === undefined) {
    await client.call('PUT', `${path}/key`, { json: { Key: key } });
    process.stdout.write(SUCCESS);
    return 0;
  }
  const type = values.parseValueType(text(args, 't') ?? 'REG_SZ');
  const separator = text(args, 's') ?? '\\0';
  if (flag(args, 's') && separator.length !== 1) throw new CliError('ERROR: /s takes exactly one character.');
  const data = values.parseDataArgument(type, text(args, 'd'), separator);
  const body = { Key: key, Name: name, Type: type, Data: values.valueToJson({ ...data, name }).Data };
  try {
    await client.call('PUT', `${path}/value`, { json: { ...body, Overwrite: flag(args, 'f') } });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 409 || flag(args, 'f')) throw err;
    const label = valueLabel(name);
    if (
      !(await requireConfirmation(
        `Value ${label} exists, overwrite`,
        `Value ${label} exists; pass /f to overwrite it.`,
      ))
    ) {
      return 0;
    }
    await client.call('PUT', `${path}/value`, { json: { ...body, Overwrite: true } });
  }
  process.stdout.write(SUCCESS);
  return 0;
}

async function runDelete(client: EngineClient, args: RegArgs): Promise<number> {
  const key = args.positional[1];
  const value = selectedValue(args);
  const all = flag(args, 'va');
  if (!flag(args, 'f')) {
    const question =
      value !== undefined
        ? `Delete the registry value ${valueLabel(value)}`
        : all
          ? `Delete all values under the registry key ${key}`
          : `Permanently delete the registry key ${key}`;
    if (!(await requireConfirmation(question, `${question}? Pass /f to delete without confirmation.`)))
      return 0;
  }
  await client.call('DELETE', targetPath(args), { query: { key, value, allValues: all } });
  process.stdout.write(SUCCESS);
  return 0;
}

async function runExport(client: EngineClient, args: RegArgs): Promise<number> {
  const [, key, file] = args.positional;
  const fs = await import('node:fs');
  if (file !== '-' && fs.existsSync(file) && !flag(args, 'y')) {
    const question = `File ${file} already exists. Overwrite it`;
    if (!(await requireConfirmation(question, `File ${file} already exists; pass /y to overwrite it.`)))
      return 0;
  }
  const { readBody } = await import('../client.js');
  const bytes = await readBody(await client.request('GET', `${targetPath(args)}/export`, { query: { key } }));
  if (file === '-') {
    process.stdout.write(bytes);
    return 0;
  }
  fs.writeFileSync(file, bytes);
  process.stdout.write(SUCCESS);
  return 0;
}

async function runImport(client: EngineClient, args: RegArgs): Promise<number> {
  const file = args.positional[1];
  const fs = await import('node:fs');
  const { readBody } = await import('../client.js');
  const bytes = file === '-' ? await readBody(process.stdin) : fs.readFileSync(file);
  await client.call('POST', `${targetPath(args)}/import`, {
    body: bytes,
    contentType: 'application/octet-stream',
  });
  process.stdout.write(SUCCESS);
  return 0;
}

async function runConvert(args: RegArgs): Promise<number> {
  const [file, dir] = args.positional;
  const fs = await import('node:fs');
  const { convertRegFile } = await import('../../hive/service.js');
  const summary = convertRegFile(file === '-' ? fs.readFileSync(0) : fs.readFileSync(file), dir);
  process.stdout.write(
    `Wrote ${summary.valuesSet} value(s) and ${summary.keysCreated} new key(s) to ${dir}\n${SUCCESS}`,
  );
  return 0;
}

export const regCommand: CommandHandler = async (ctx) => {
  const args = parseRegArgs(ctx.args);
  if (args.help) {
    process.stdout.write(`\nUsage:  strata ${USAGE}\n`);
    return 0;
  }
  const values = await import('../../hive/values.js');
  try {
    switch (args.verb) {
      case 'query':
        return await runQuery(await ctx.client(), args, values);
      case 'add':
        return await runAdd(await ctx.client(), args, values);
      case 'delete':
        return await runDelete(await ctx.client(), args);
      case 'export':
        return await runExport(await ctx.client(), args);
      case 'import':
        return await runImport(await ctx.client(), args);
      case 'convert':
        return await runConvert(args);
    }
  } catch (err) {
    if (err instanceof ApiError) throw new CliError(`ERROR: ${err.daemonMessage}`);
    if (err instanceof CliError) throw err;
    // The hive's own validation (bad /d data, unknown type, malformed .reg for convert).
    if (err instanceof Error && (err as { status?: number }).status === 400)
      throw new CliError(`ERROR: ${err.message}`);
    if (err instanceof Error && 'code' in err && typeof err.code === 'string' && err.code.startsWith('E')) {
      throw new CliError(`ERROR: ${err.message}`);
    }
    throw err;
  }
};
