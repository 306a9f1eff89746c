import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatQueryOutput, formatSearchOutput, parseRegArgs } from '../../src/cli/commands/reg.js';
import { CliError } from '../../src/cli/errors.js';
import { parseCommandLine } from '../../src/cli/main.js';
import * as values from '../../src/hive/values.js';

const K = 'HKEY_CURRENT_USER\\Software\\Wine\\reg_test';

describe('strata reg arguments', () => {
  test('reg is a strata command whose switches reach the handler untouched', () => {
    const outcome = parseCommandLine(['reg', 'query', 'c1', 'HKLM\\Software', '/v', 'x', '-s']);
    assert.equal(outcome.kind, 'run');
    if (outcome.kind === 'run') {
      assert.equal(outcome.invocation.command.spec.name, 'reg');
      assert.deepEqual(outcome.invocation.args, ['query', 'c1', 'HKLM\\Software', '/v', 'x', '-s']);
    }
  });

  test('switches in any case, with / or -, and their values', () => {
    const add = parseRegArgs([
      'ADD',
      'c1',
      'HKLM\\Software\\Acme',
      '/V',
      'Count',
      '-t',
      'REG_DWORD',
      '/d',
      '-5',
      '/F',
    ]);
    assert.equal(add.verb, 'add');
    assert.deepEqual(add.positional, ['c1', 'HKLM\\Software\\Acme']);
    assert.deepEqual(
      [...add.switches],
      [
        ['v', 'Count'],
        ['t', 'REG_DWORD'],
        ['d', '-5'],
        ['f', true],
      ],
    );
    // /s is "recursive" for query and "separator" (with a value) for add.
    assert.deepEqual([...parseRegArgs(['query', 'c', 'HKLM', '/s']).switches], [['s', true]]);
    assert.deepEqual(
      [...parseRegArgs(['add', 'c', 'HKLM\\X', '/s', '#', '/ve']).switches],
      [
        ['s', '#'],
        ['ve', true],
      ],
    );
    const exported = parseRegArgs(['export', '--image', 'bb', 'HKLM', '/tmp/out.reg', '/y']);
    assert.deepEqual([exported.image, exported.positional], [true, ['bb', 'HKLM', '/tmp/out.reg']]);
    assert.equal(parseRegArgs(['query', '/?']).help, true);
    assert.equal(parseRegArgs([]).help, true);
  });

  const refused: [string[], RegExp][] = [
    [['frobnicate'], /Unknown operation "frobnicate"/],
    [['query', 'c'], /needs 2 arguments, got 1/],
    [['query', 'c', 'HKLM', '/v'], /\/v needs a value/],
    [['query', 'c', 'HKLM', '/s', '/s'], /\/s is given twice/],
    [['query', 'c', 'HKLM', '/v', 'a', '/ve'], /\/v and \/ve cannot be combined/],
    [['delete', 'c', 'HKLM\\X', '/va', '/ve'], /\/va cannot be combined/],
    [['add', 'c', 'HKLM\\X', '-q'], /Unknown switch "-q" for reg add/],
    [['query', 'c', 'HKLM', '/va'], /Unknown switch "\/va" for reg query/],
    [['import', 'c', 'a.reg', '--image'], /needs 2 arguments, got 3/],
  ];
  for (const [args, message] of refused) {
    test(`refuses reg ${args.join(' ')}`, () => {
      assert.throws(
        () => parseRegArgs(args),
        (err: unknown) => err instanceof CliError && err.exitCode === 1 && message.test(err.message),
      );
    });
  }
});

describe('reg query output', () => {
  const root = {
    Key: K,
    Values: [
      { Name: 'Test1', Type: 'REG_SZ', Data: 'Hello, World' },
      { Name: 'Test2', Type: 'REG_DWORD', Data: 0x123 },
    ],
    Subkeys: [] as string[],
  };
  const format = { recursive: false, valueSelected: false, separator: '\\0', types: null };

  test('values, then subkeys as full paths, as reg.exe prints them', () => {
    assert.equal(
      formatQueryOutput(values, [root], format),
      `\n${K}\n    Test1    REG_SZ    Hello, World\n    Test2    REG_DWORD    0x123\n\n`,
    );
    assert.equal(
      formatQueryOutput(values, [{ ...root, Subkeys: ['subkey'] }], format),
      `\n${K}\n    Test1    REG_SZ    Hello, World\n    Test2    REG_DWORD    0x123\n\n${K}\\subkey\n`,
    );
    // A key with no values prints only its subkeys.
    assert.equal(
      formatQueryOutput(values, [{ Key: K, Values: [], Subkeys: ['subkey1', 'subkey2'] }], format),
      `\n${K}\\subkey1\n${K}\\subkey2\n`,
    );
  });

  test('/s prints every key below with its values; the top key only when it has values', () => {
    const sub = { Key: `${K}\\subkey`, Values: [{ Name: '', Type: 'REG_QWORD', Data: '255' }], Subkeys: [] };
    assert.equal(
      formatQueryOutput(values, [{ ...root, Subkeys: ['subkey'] }, sub], { ...format, recursive: true }),
      `\n${K}\n    Test1    REG_SZ    Hello, World\n    Test2    REG_DWORD    0x123\n\n${K}\\subkey\n    (Default)    REG_QWORD    0xff\n\n`,
    );
    assert.equal(
      formatQueryOutput(
        values,
        [
          { Key: K, Values: [], Subkeys: ['a', 'b'] },
          { Key: `${K}\\a`, Values: [], Subkeys: [] },
          { Key: `${K}\\b`, Values: [], Subkeys: [] },
        ],
        { ...format, recursive: true },
      ),
      `\n${K}\\a\n\n${K}\\b\n\n`,
    );
  });

  test('/v with /s counts matches; /t filters types; /se joins REG_MULTI_SZ; binary in upper-case hex', () => {
    assert.equal(
      formatQueryOutput(
        values,
        [{ Key: K, Values: [{ Name: 'Wine', Type: 'REG_SZ', Data: 'x' }], Subkeys: [] }],
        {
          ...format,
          recursive: true,
          valueSelected: true,
        },
      ),
      `\n${K}\n    Wine    REG_SZ    x\n\nEnd of search: 1 match(es) found.\n`,
    );
    assert.equal(
      formatQueryOutput(values, [root], { ...format, types: ['REG_DWORD'] }),
      `\n${K}\n    Test2    REG_DWORD    0x123\n\n`,
    );
    const mixed = {
      Key: K,
      Values: [
        { Name: 'M', Type: 'REG_MULTI_SZ', Data: ['a', 'b'] },
        { Name: 'B', Type: 'REG_BINARY', Data: '00ab' },
      ],
      Subkeys: [],
    };
    assert.equal(
      formatQueryOutput(values, [mixed], { ...format, separator: ',' }),
      `\n${K}\n    M    REG_MULTI_SZ    a,b\n    B    REG_BINARY    00AB\n\n`,
    );
  });

  test('/f finds keys, value names and data; /k, /d, /e and /c narrow the search', () => {
    const keys = [
      { Key: K, Values: [{ Name: 'Path', Type: 'REG_SZ', Data: 'C:\\Wine' }], Subkeys: ['WineSub', 'Other'] },
      { Key: `${K}\\WineSub`, Values: [{ Name: 'wine', Type: 'REG_DWORD', Data: 1 }], Subkeys: [] },
      { Key: `${K}\\Other`, Values: [], Subkeys: [] },
    ];
    const search = {
      pattern: 'wine',
      recursive: true,
      keysOnly: false,
      dataOnly: false,
      caseSensitive: false,
      exact: false,
      separator: '\\0',
      types: null,
    };
    assert.deepEqual(formatSearchOutput(values, keys, search), {
      text: `\n${K}\n    Path    REG_SZ    C:\\Wine\n\n${K}\\WineSub\n    wine    REG_DWORD    0x1\nEnd of search: 3 match(es) found.\n`,
      matches: 3,
    });
    assert.equal(formatSearchOutput(values, keys, { ...search, keysOnly: true }).matches, 1);
    assert.equal(formatSearchOutput(values, keys, { ...search, dataOnly: true }).matches, 1);
    assert.equal(formatSearchOutput(values, keys, { ...search, exact: true }).matches, 1);
    assert.equal(
      formatSearchOutput(values, keys, { ...search, caseSensitive: true, pattern: 'Wine' }).matches,
      2,
    );
    assert.equal(formatSearchOutput(values, keys, { ...search, pattern: 'C:*ne', exact: true }).matches, 1);
    // Without /s: the key's values and its subkeys' names.
    assert.equal(formatSearchOutput(values, keys.slice(0, 1), { ...search, recursive: false }).matches, 2);
  });
});
