import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgument } from '../../src/common/errors.js';
import { formatRegFile, parseRegFile, type RegOperation } from '../../src/hive/regfile.js';
import type { RegValue } from '../../src/hive/values.js';

const EVERY_TYPE: RegValue[] = [
  { name: '', type: 'REG_SZ', data: 'Default value' },
  { name: 'String', type: 'REG_SZ', data: 'Use \\\\ and "quotes"; not a comment' },
  { name: 'Lines', type: 'REG_SZ', data: 'first\r\nsecond' },
  { name: 'Empty', type: 'REG_SZ', data: '' },
  { name: 'Expand', type: 'REG_EXPAND_SZ', data: '%HOME%\\%PATH%' },
  { name: 'Multi', type: 'REG_MULTI_SZ', data: ['Line1', 'Line2', 'Ünïcødé ✓'] },
  { name: 'NoStrings', type: 'REG_MULTI_SZ', data: [] },
  { name: 'Dword', type: 'REG_DWORD', data: 0x12345678 },
  { name: 'MaxDword', type: 'REG_DWORD', data: 0xffffffff },
  { name: 'Qword', type: 'REG_QWORD', data: 0xfedcba9876543210n },
  { name: 'Binary', type: 'REG_BINARY', data: Buffer.from(Array.from({ length: 40 }, (_, i) => i * 7)) },
  { name: 'None', type: 'REG_NONE', data: Buffer.from('Value\0') },
  { name: 'double"quote\\back', type: 'REG_DWORD', data: 8 },
];

function utf16(text: string): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
}

function values(ops: RegOperation[]): RegValue[] {
  return ops.flatMap((op) => (op.op === 'setValue' ? [op.value] : []));
}

describe('.reg export', () => {
  test('writes regedit 5.00: UTF-16 LE with BOM, CRLF, quoted strings, dword:, hex wrapped before column 80', () => {
    const bytes = formatRegFile([
      { path: 'HKEY_CURRENT_USER\\Software\\Wine', values: [] },
      {
        path: 'HKEY_CURRENT_USER\\Software\\Wine\\Sub',
        values: [
          { name: '', type: 'REG_SZ', data: 'Default value name' },
          { name: 'DWORD', type: 'REG_DWORD', data: 0x100 },
          { name: 'Multiple strings', type: 'REG_MULTI_SZ', data: ['Line1', 'Line2', 'Line3'] },
          { name: 'say "hi"', type: 'REG_SZ', data: 'C:\\dir' },
          { name: 'Binary', type: 'REG_BINARY', data: Buffer.from([0x11, 0x22, 0x33, 0x44]) },
          { name: 'Zero', type: 'REG_NONE', data: Buffer.alloc(0) },
        ],
      },
    ]);
    assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xfe]);
    assert.equal(
      bytes.subarray(2).toString('utf16le'),
      'Windows Registry Editor Version 5.00\r\n\r\n' +
        '[HKEY_CURRENT_USER\\Software\\Wine]\r\n\r\n' +
        '[HKEY_CURRENT_USER\\Software\\Wine\\Sub]\r\n' +
        '@="Default value name"\r\n' +
        '"DWORD"=dword:00000100\r\n' +
        '"Multiple strings"=hex(7):4c,00,69,00,6e,00,65,00,31,00,00,00,4c,00,69,00,6e,\\\r\n' +
        '  00,65,00,32,00,00,00,4c,00,69,00,6e,00,65,00,33,00,00,00,00,00\r\n' +
        '"say \\"hi\\""="C:\\\\dir"\r\n' +
        '"Binary"=hex:11,22,33,44\r\n' +
        '"Zero"=hex(0):\r\n\r\n',
    );
  });

  test('every type round-trips: export → import gives the same values', () => {
    const bytes = formatRegFile([{ path: 'HKEY_LOCAL_MACHINE\\Software\\Acme', values: EVERY_TYPE }]);
    const ops = parseRegFile(bytes);
    assert.deepEqual(ops[0], {
      op: 'createKey',
      key: { root: 'HKLM', names: ['Software', 'Acme'] },
      line: 3,
    });
    assert.deepEqual(values(ops), EVERY_TYPE);
    // And again from what the import gave: byte-identical.
    assert.deepEqual(
      formatRegFile([{ path: 'HKEY_LOCAL_MACHINE\\Software\\Acme', values: values(ops) }]),
      bytes,
    );
  });
});

describe('.reg import', () => {
  const body =
    '\r\n[HKEY_LOCAL_MACHINE\\Software\\Acme]\r\n' +
    '; a comment\r\n' +
    '@="défault"\r\n' +
    '"Path"=hex(2):25,00,50,00,41,00,54,00,48,00,25,00,\\\r\n' +
    '   00,00\r\n' +
    '"Count" = dword:0000002a ; trailing comment\r\n' +
    '"Old"=-\r\n' +
    '[-HKEY_LOCAL_MACHINE\\Software\\Acme\\Legacy]\r\n' +
    '[HKCU\\Software\\Acme]\r\n' +
    '"Q"=hex(b):01,00,00,00,00,00,00,00\r\n' +
    '"D4"=hex(4):2a,00,00,00\r\n' +
    '"S1"=hex(1):41,00,00,00\r\n' +
    '"Esc"="tab\\\\ \\"q\\""\r\n';
  const expected: RegOperation[] = [
    { op: 'createKey', key: { root: 'HKLM', names: ['Software', 'Acme'] }, line: 3 },
    {
      op: 'setValue',
      key: { root: 'HKLM', names: ['Software', 'Acme'] },
      value: { name: '', type: 'REG_SZ', data: 'défault' },
      line: 5,
    },
    {
      op: 'setValue',
      key: { root: 'HKLM', names: ['Software', 'Acme'] },
      value: { name: 'Path', type: 'REG_EXPAND_SZ', data: '%PATH%' },
      line: 6,
    },
    {
      op: 'setValue',
      key: { root: 'HKLM', names: ['Software', 'Acme'] },
      value: { name: 'Count', type: 'REG_DWORD', data: 42 },
      line: 8,
    },
    { op: 'deleteValue', key: { root: 'HKLM', names: ['Software', 'Acme'] }, name: 'Old', line: 9 },
    { op: 'deleteKey', key: { root: 'HKLM', names: ['Software', 'Acme', 'Legacy'] }, line: 10 },
    { op: 'createKey', key: { root: 'HKCU', names: ['Software', 'Acme'] }, line: 11 },
    {
      op: 'setValue',
      key: { root: 'HKCU', names: ['Software', 'Acme'] },
      value: { name: 'Q', type: 'REG_QWORD', data: 1n },
      line: 12,
    },
    {
      op: 'setValue',
      key: { root: 'HKCU', names: ['Software', 'Acme'] },
      value: { name: 'D4', type: 'REG_DWORD', data: 42 },
      line: 13,
    },
    {
      op: 'setValue',
      key: { root: 'HKCU', names: ['Software', 'Acme'] },
      value: { name: 'S1', type: 'REG_SZ', data: 'A' },
      line: 14,
    },
    {
      op: 'setValue',
      key: { root: 'HKCU', names: ['Software', 'Acme'] },
      value: { name: 'Esc', type: 'REG_SZ', data: 'tab\\ "q"' },
      line: 15,
    },
  ];

  test('UTF-16 LE with BOM, UTF-8 with and without BOM: same operations', () => {
    const text = `Windows Registry Editor Version 5.00\r\n${body}`;
    assert.deepEqual(parseRegFile(utf16(text)), expected);
    assert.deepEqual(parseRegFile(Buffer.from(text, 'utf8')), expected);
    assert.deepEqual(
      parseRegFile(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)])),
      expected,
    );
    assert.deepEqual(parseRegFile(Buffer.from(text.replace(/\r\n/g, '\n'))), expected);
  });

  test('REGEDIT4 files: ANSI text and single-byte hex strings', () => {
    const ansi = Buffer.concat([
      Buffer.from('REGEDIT4\n\n[HKEY_LOCAL_MACHINE\\Software\\Old]\n"Name"="caf'),
      Buffer.from([0xe9]),
      Buffer.from('"\n"Path"=hex(2):25,50,25,00\n"List"=hex(7):61,00,62,00,00\n'),
    ]);
    assert.deepEqual(values(parseRegFile(ansi)), [
      { name: 'Name', type: 'REG_SZ', data: 'café' },
      { name: 'Path', type: 'REG_EXPAND_SZ', data: '%P%' },
      { name: 'List', type: 'REG_MULTI_SZ', data: ['a', 'b'] },
    ]);
  });

  const HEADER = 'Windows Registry Editor Version 5.00\r\n\r\n';
  const malformed: [string, string, RegExp][] = [
    [
      'no header',
      '[HKEY_LOCAL_MACHINE\\X]\r\n',
      /first line must be "Windows Registry Editor Version 5\.00" or "REGEDIT4"/,
    ],
    [
      'unknown type',
      `${HEADER}[HKLM\\X]\r\n"v"=hex(5):00,00,00,01\r\n`,
      /line 4: unsupported value type hex\(5\)/,
    ],
    [
      'REG_DWORD 0x1FFFFFFFF',
      `${HEADER}[HKLM\\X]\r\n"v"=dword:1ffffffff\r\n`,
      /line 4: REG_DWORD data out of range/,
    ],
    [
      'hex(4) of 5 bytes',
      `${HEADER}[HKLM\\X]\r\n"v"=hex(4):01,02,03,04,05\r\n`,
      /line 4: hex\(4\) \(REG_DWORD\) data must be 4 bytes/,
    ],
    ['missing ]', `${HEADER}[HKLM\\X\r\n`, /line 3: key line has no closing "\]"/],
    ['value before any key', `${HEADER}"v"="x"\r\n`, /line 3: value outside a key/],
    [
      'unterminated string',
      `${HEADER}[HKLM\\X]\r\n"v"="open\r\n`,
      /line 4: string data has no closing quote/,
    ],
    ['bad hex byte', `${HEADER}[HKLM\\X]\r\n"v"=hex:01,zz\r\n`, /line 4: invalid hex byte "zz"/],
    ['garbage line', `${HEADER}[HKLM\\X]\r\nv=1\r\n`, /line 4: expected/],
    ['.. in a key', `${HEADER}[HKLM\\Software\\..\\System]\r\n`, /line 3: invalid key name "\.\."/],
    ['unknown root', `${HEADER}[HKEY_NOWHERE\\X]\r\n`, /line 3: .*unknown root key/],
    ['deleting a root key', `${HEADER}[-HKEY_LOCAL_MACHINE]\r\n`, /line 3: a root key cannot be deleted/],
    [
      'continuation past the end',
      `${HEADER}[HKLM\\X]\r\n"v"=hex:01,\\\r\n`,
      /line 4: hex data continues past the end of the value/,
    ],
    ['odd UTF-16 string', `${HEADER}[HKLM\\X]\r\n"v"=hex(2):41\r\n`, /line 4: .*even number of bytes/],
    [
      'empty string in REG_MULTI_SZ via data after',
      `${HEADER}[HKLM\\X]\r\n"v"=dword:\r\n`,
      /line 4: dword: needs 1 to 8 hex digits/,
    ],
    [
      'NUL in a value name',
      `${HEADER}[HKLM\\X]\r\n"a\0b"="x"\r\n`,
      /line 4: invalid value name: it contains a NUL/,
    ],
  ];
  for (const [what, text, message] of malformed) {
    test(`refuses ${what} with the line number`, () => {
      for (const bytes of [Buffer.from(text), utf16(text)]) {
        assert.throws(
          () => parseRegFile(bytes),
          (err: unknown) => err instanceof InvalidArgument && message.test(err.message),
        );
      }
    });
  }
});
