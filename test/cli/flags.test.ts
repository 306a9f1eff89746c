import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CliError } from '../../src/cli/errors.js';
import { FlagError, type FlagSpec, parseFlags } from '../../src/cli/flags.js';
import { parseCommandLine } from '../../src/cli/main.js';

const SPECS: FlagSpec[] = [
  { name: 'interactive', short: 'i', kind: 'bool', help: '' },
  { name: 'tty', short: 't', kind: 'bool', help: '' },
  { name: 'detach', short: 'd', kind: 'bool', help: '' },
  { name: 'rm', kind: 'bool', help: '' },
  { name: 'env', short: 'e', kind: 'list', help: '' },
  { name: 'publish', short: 'p', kind: 'list', help: '' },
  { name: 'name', kind: 'string', help: '' },
  { name: 'time', short: 'n', kind: 'int', help: '' },
];

describe('parseFlags', () => {
  it('combines short booleans: -it, -ti, -dit', () => {
    for (const group of ['-it', '-ti']) {
      const { flags } = parseFlags([group], SPECS);
      assert.equal(flags.bool('interactive'), true);
      assert.equal(flags.bool('tty'), true);
      assert.equal(flags.bool('detach'), false);
    }
    const { flags } = parseFlags(['-dit'], SPECS);
    assert.deepEqual(
      [flags.bool('detach'), flags.bool('interactive'), flags.bool('tty')],
      [true, true, true],
    );
  });

  it('collects repeated list flags in order, in every spelling', () => {
    const { flags } = parseFlags(['-e', 'A=1', '-eB=2', '--env', 'C=3', '--env=D=4', '-e=E=5'], SPECS);
    assert.deepEqual(flags.list('env'), ['A=1', 'B=2', 'C=3', 'D=4', 'E=5']);
  });

  it('lets a value flag end a short group and take the rest or the next word', () => {
    assert.deepEqual(parseFlags(['-dp8080:80'], SPECS).flags.list('publish'), ['8080:80']);
    const { flags } = parseFlags(['-dp', '80'], SPECS);
    assert.equal(flags.bool('detach'), true);
    assert.deepEqual(flags.list('publish'), ['80']);
  });

  it('accepts --bool=false and --name=value', () => {
    const { flags } = parseFlags(['--rm=false', '--name=web', '-d=true'], SPECS);
    assert.equal(flags.bool('rm'), false);
    assert.equal(flags.has('rm'), true);
    assert.equal(flags.string('name'), 'web');
    assert.equal(flags.bool('detach'), true);
  });

  it('stops at the first positional argument when not interspersed (run/exec)', () => {
    const { flags, args } = parseFlags(['-it', '--rm', 'bb', 'sh', '-c', 'ls -l', '--rm'], SPECS, {
      interspersed: false,
    });
    assert.deepEqual(args, ['bb', 'sh', '-c', 'ls -l', '--rm']);
    assert.equal(flags.bool('rm'), true);
  });

  it('parses flags after positionals when interspersed (rm c1 -f)', () => {
    const { flags, args } = parseFlags(['c1', '-d', 'c2'], SPECS);
    assert.deepEqual(args, ['c1', 'c2']);
    assert.equal(flags.bool('detach'), true);
  });

  it('treats "--" as the end of flags and "-" as a positional', () => {
    const { flags, args } = parseFlags(['-', '--', '-d', 'x'], SPECS);
    assert.deepEqual(args, ['-', '-d', 'x']);
    assert.equal(flags.bool('detach'), false);
  });

  it("reports errors in pflag's words", () => {
    assert.throws(() => parseFlags(['--nope'], SPECS), new FlagError('unknown flag: --nope'));
    assert.throws(() => parseFlags(['-ix'], SPECS), new FlagError("unknown shorthand flag: 'x' in -ix"));
    assert.throws(() => parseFlags(['--name'], SPECS), new FlagError('flag needs an argument: --name'));
    assert.throws(() => parseFlags(['-e'], SPECS), new FlagError("flag needs an argument: 'e' in -e"));
    assert.throws(
      () => parseFlags(['-n', 'abc'], SPECS),
      new FlagError(
        'invalid argument "abc" for "-n, --time" flag: strconv.ParseInt: parsing "abc": invalid syntax',
      ),
    );
    assert.equal(parseFlags(['--time', '-1'], SPECS).flags.int('time'), -1);
  });
});

describe('parseCommandLine', () => {
  function invocation(argv: string[]) {
    const outcome = parseCommandLine(argv);
    assert.equal(outcome.kind, 'run');
    if (outcome.kind !== 'run') throw new Error('unreachable');
    return outcome.invocation;
  }

  it('splits run into flags, image and the command with its own flags', () => {
    const inv = invocation([
      'run',
      '-it',
      '--rm',
      '-e',
      'A=1',
      '-e',
      'B=2',
      'bb:latest',
      'sh',
      '-c',
      'echo -n hi',
    ]);
    assert.equal(inv.command.spec.name, 'run');
    assert.deepEqual(inv.args, ['bb:latest', 'sh', '-c', 'echo -n hi']);
    assert.equal(inv.flags.bool('interactive'), true);
    assert.equal(inv.flags.bool('tty'), true);
    assert.deepEqual(inv.flags.list('env'), ['A=1', 'B=2']);
  });

  it('gives run -h to --hostname, and exec keeps the command intact', () => {
    assert.equal(invocation(['run', '-h', 'box', 'bb']).flags.string('hostname'), 'box');
    const exec = invocation(['exec', '-i', 'c1', 'ls', '-la', '/']);
    assert.deepEqual(exec.args, ['c1', 'ls', '-la', '/']);
    assert.equal(exec.flags.bool('interactive'), true);
  });

  it('reads global -H before the command', () => {
    const inv = invocation(['-H', 'unix:///tmp/x.sock', 'ps', '-a']);
    assert.equal(inv.globals.string('host'), 'unix:///tmp/x.sock');
    assert.equal(inv.flags.bool('all'), true);
  });

  it('maps group forms onto the same commands', () => {
    assert.equal(invocation(['container', 'ls', '-a']).command.spec.name, 'ps');
    assert.equal(invocation(['image', 'ls']).command.spec.name, 'images');
    assert.equal(invocation(['image', 'rm', 'x']).command.spec.name, 'rmi');
    assert.equal(invocation(['image', 'inspect', 'x']).command.spec.name, 'image inspect');
    assert.equal(invocation(['container', 'prune', '-f']).command.spec.name, 'container prune');
  });

  it('exits 125 for flag errors and 1 for argument-count errors, like docker', () => {
    assert.throws(
      () => parseCommandLine(['run', '--bogus', 'bb']),
      (err: unknown) =>
        err instanceof CliError && err.exitCode === 125 && err.message.startsWith('unknown flag: --bogus'),
    );
    assert.throws(
      () => parseCommandLine(['ps', '--bogus']),
      (err: unknown) => err instanceof CliError && err.exitCode === 125,
    );
    assert.throws(
      () => parseCommandLine(['rm']),
      (err: unknown) =>
        err instanceof CliError && err.exitCode === 1 && /requires at least 1 argument/.test(err.message),
    );
    assert.throws(
      () => parseCommandLine(['rename', 'a']),
      (err: unknown) => err instanceof CliError && /requires exactly 2 arguments/.test(err.message),
    );
    assert.throws(
      () => parseCommandLine(['frobnicate']),
      (err: unknown) => err instanceof CliError && err.exitCode === 1,
    );
  });

  it('answers --help and --version without a daemon', () => {
    const help = parseCommandLine(['run', '--help']);
    assert.equal(help.kind, 'help');
    if (help.kind === 'help') {
      assert.match(help.text, /Usage: {2}strata run \[OPTIONS\] IMAGE/);
      assert.match(help.text, /-i, --interactive/);
    }
    assert.equal(parseCommandLine(['--version']).kind, 'version');
    assert.equal(parseCommandLine([]).kind, 'help');
  });
});
