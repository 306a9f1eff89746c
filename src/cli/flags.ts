/**
 * Command-line flags with the semantics of spf13/pflag as the docker CLI uses it: combined short
 * flags (`-it`, `-dit`), values attached or separate (`-p8080:80`, `-e A`, `--env=A`), repeated
 * list flags (`-e A -e B`), `--bool=false`, `--` to end flags, and — for `run`, `create` and
 * `exec` — flag parsing that stops at the first positional argument so the container's command
 * keeps its own flags (`strata run bb ls -l`).
 *
 * A small parser of our own instead of commander: it loads in well under a millisecond (commander
 * adds ~15 ms to every invocation here) and reproduces pflag's error messages, which scripts match.
 */

export type FlagKind = 'bool' | 'string' | 'list' | 'int';

export interface FlagSpec {
  /** Long name without dashes; also the key in FlagValues. */
  name: string;
  short?: string;
  kind: FlagKind;
  help: string;
  /** Placeholder in help output ("string", "list", "int"). */
  valueName?: string;
  defaultValue?: string | number | boolean;
  /** Accepted but not shown in help (deprecated aliases). */
  hidden?: boolean;
}

/** A flag-parsing error: docker exits 125 for these (arity errors are exit 1, see CommandSpec). */
export class FlagError extends Error {}

type FlagValue = boolean | string | string[] | number;

/** Parsed flag values with typed accessors; unknown names are a programming error. */
export class FlagValues {
  private readonly values = new Map<string, FlagValue>();
  constructor(private readonly specs: ReadonlyMap<string, FlagSpec>) {}

  set(name: string, value: FlagValue): void {
    this.values.set(name, value);
  }

  /** Whether the flag appeared on the command line. */
  has(name: string): boolean {
    this.spec(name);
    return this.values.has(name);
  }

  bool(name: string): boolean {
    const v = this.values.get(name) ?? this.spec(name).defaultValue;
    return v === true;
  }

  string(name: string): string | undefined {
    const v = this.values.get(name) ?? this.spec(name).defaultValue;
    return typeof v === 'string' ? v : undefined;
  }

  list(name: string): string[] {
    this.spec(name);
    const v = this.values.get(name);
    return Array.isArray(v) ? v : [];
  }

  int(name: string): number | undefined {
    const v = this.values.get(name) ?? this.spec(name).defaultValue;
    return typeof v === 'number' ? v : undefined;
  }

  private spec(name: string): FlagSpec {
    const spec = this.specs.get(name);
    if (!spec) throw new Error(`flag --${name} is not defined for this command`);
    return spec;
  }
}

export interface ParsedArgs {
  flags: FlagValues;
  args: string[];
}

export interface ParseOptions {
  /** false: the first positional argument ends flag parsing (run/create/exec). */
  interspersed?: boolean;
}

const TRUE_WORDS = new Set(['1', 't', 'T', 'true', 'TRUE', 'True']);
const FALSE_WORDS = new Set(['0', 'f', 'F', 'false', 'FALSE', 'False']);

export function flagLabel(spec: FlagSpec): string {
  return spec.short ? `-${spec.short}, --${spec.name}` : `--${spec.name}`;
}

export function parseFlags(argv: string[], specs: FlagSpec[], opts: ParseOptions = {}): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short!, s]));
  const flags = new FlagValues(byName);
  const args: string[] = [];
  const interspersed = opts.interspersed ?? true;

  const assign = (spec: FlagSpec, raw: string): void => {
    switch (spec.kind) {
      case 'bool':
        if (TRUE_WORDS.has(raw)) flags.set(spec.name, true);
        else if (FALSE_WORDS.has(raw)) flags.set(spec.name, false);
        else
          throw new FlagError(
            `invalid argument "${raw}" for "${flagLabel(spec)}" flag: strconv.ParseBool: parsing "${raw}": invalid syntax`,
          );
        break;
      case 'int': {
        if (!/^[+-]?\d+$/.test(raw))
          throw new FlagError(
            `invalid argument "${raw}" for "${flagLabel(spec)}" flag: strconv.ParseInt: parsing "${raw}": invalid syntax`,
          );
        flags.set(spec.name, Number.parseInt(raw, 10));
        break;
      }
      case 'list':
        flags.set(spec.name, [...flags.list(spec.name), raw]);
        break;
      case 'string':
        flags.set(spec.name, raw);
        break;
    }
  };

  let i = 0;
  while (i < argv.length) {
    const arg = argv[i++];
    if (arg === '--') {
      args.push(...argv.slice(i));
      break;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      const spec = byName.get(name);
      if (!spec) throw new FlagError(`unknown flag: --${name}`);
      if (eq >= 0) assign(spec, arg.slice(eq + 1));
      else if (spec.kind === 'bool') flags.set(spec.name, true);
      else if (i < argv.length) assign(spec, argv[i++]);
      else throw new FlagError(`flag needs an argument: --${name}`);
      continue;
    }
    if (arg.startsWith('-') && arg.length > 1) {
      // A short group: booleans combine; the first value flag takes the rest (or the next word).
      for (let j = 1; j < arg.length; j++) {
        const c = arg[j];
        const spec = byShort.get(c);
        if (!spec) throw new FlagError(`unknown shorthand flag: '${c}' in ${arg}`);
        if (spec.kind === 'bool') {
          if (arg[j + 1] === '=') {
            assign(spec, arg.slice(j + 2));
            break;
          }
          flags.set(spec.name, true);
          continue;
        }
        let value = arg.slice(j + 1);
        if (value.startsWith('=')) value = value.slice(1);
        else if (value === '') {
          if (i >= argv.length) throw new FlagError(`flag needs an argument: '${c}' in -${c}`);
          value = argv[i++];
        }
        assign(spec, value);
        break;
      }
      continue;
    }
    args.push(arg);
    if (!interspersed) {
      args.push(...argv.slice(i));
      break;
    }
  }
  return { flags, args };
}

/** Help text for a command's flags, aligned like cobra's. */
export function formatFlagHelp(specs: FlagSpec[]): string {
  const rows = specs
    .filter((s) => !s.hidden)
    .map((s) => {
      const value = s.kind === 'bool' ? '' : ` ${s.valueName ?? s.kind}`;
      const left = s.short ? `  -${s.short}, --${s.name}${value}` : `      --${s.name}${value}`;
      const def =
        s.defaultValue !== undefined && s.defaultValue !== false && s.defaultValue !== ''
          ? ` (default ${typeof s.defaultValue === 'string' ? `"${s.defaultValue}"` : s.defaultValue})`
          : '';
      return [left, s.help + def];
    });
  const width = Math.max(0, ...rows.map(([l]) => l.length)) + 3;
  return rows.map(([l, h]) => `${l.padEnd(width)}${h}\n`).join('');
}
