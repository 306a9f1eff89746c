import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgument } from '../../src/common/errors.js';
import {
  dataFromJson,
  decodeValueFile,
  encodeValueFile,
  formatDataForDisplay,
  parseDataArgument,
  parseValueType,
  type RegData,
  valueToJson,
} from '../../src/hive/values.js';

const SAMPLES: { data: RegData; file: string; display: string }[] = [
  { data: { type: 'REG_SZ', data: 'Hello, World' }, file: 'REG_SZ\nHello, World\n', display: 'Hello, World' },
  { data: { type: 'REG_SZ', data: '' }, file: 'REG_SZ\n\n', display: '' },
  { data: { type: 'REG_SZ', data: 'two\nlines\n' }, file: 'REG_SZ\ntwo\nlines\n\n', display: 'two\nlines\n' },
  {
    data: { type: 'REG_EXPAND_SZ', data: '%HOME%\\%PATH%' },
    file: 'REG_EXPAND_SZ\n%HOME%\\%PATH%\n',
    display: '%HOME%\\%PATH%',
  },
  {
    data: { type: 'REG_MULTI_SZ', data: ['Line1', 'Line 2', 'ünï'] },
    file: 'REG_MULTI_SZ\nLine1\nLine 2\nünï\n',
    display: 'Line1\\0Line 2\\0ünï',
  },
  { data: { type: 'REG_MULTI_SZ', data: [] }, file: 'REG_MULTI_SZ\n\n', display: '' },
  { data: { type: 'REG_DWORD', data: 0x123 }, file: 'REG_DWORD\n291\n', display: '0x123' },
  { data: { type: 'REG_DWORD', data: 0xffffffff }, file: 'REG_DWORD\n4294967295\n', display: '0xffffffff' },
  {
    data: { type: 'REG_QWORD', data: 0xffffffffffffffffn },
    file: 'REG_QWORD\n18446744073709551615\n',
    display: '0xffffffffffffffff',
  },
  {
    data: { type: 'REG_BINARY', data: Buffer.from([0x11, 0x22, 0xab]) },
    file: 'REG_BINARY\n1122ab\n',
    display: '1122AB',
  },
  { data: { type: 'REG_NONE', data: Buffer.alloc(0) }, file: 'REG_NONE\n\n', display: '' },
];

describe('value files', () => {
  for (const sample of SAMPLES) {
    test(`${sample.data.type} ${JSON.stringify(formatDataForDisplay(sample.data))}: encode, decode, display`, () => {
      assert.equal(encodeValueFile(sample.data).toString('utf8'), sample.file);
      assert.deepEqual(decodeValueFile(Buffer.from(sample.file)), sample.data);
      assert.equal(formatDataForDisplay(sample.data), sample.display);
    });
  }

  test('what a shell writes is read: no final newline, echo, hex input, blanks, CR on the type line', () => {
    assert.deepEqual(decodeValueFile(Buffer.from('REG_SZ\nno newline')), {
      type: 'REG_SZ',
      data: 'no newline',
    });
    assert.deepEqual(decodeValueFile(Buffer.from('reg_dword \r\n0x2A\n')), { type: 'REG_DWORD', data: 42 });
    assert.deepEqual(decodeValueFile(Buffer.from('REG_QWORD\n 7 \n')), { type: 'REG_QWORD', data: 7n });
    assert.deepEqual(decodeValueFile(Buffer.from('REG_BINARY\n01 02\nff\n')), {
      type: 'REG_BINARY',
      data: Buffer.from([1, 2, 0xff]),
    });
    assert.deepEqual(decodeValueFile(Buffer.from('REG_MULTI_SZ\na\n\nb\n')), {
      type: 'REG_MULTI_SZ',
      data: ['a', 'b'],
    });
    assert.deepEqual(decodeValueFile(Buffer.from('REG_NONE')), { type: 'REG_NONE', data: Buffer.alloc(0) });
  });

  test('malformed value files are errors', () => {
    for (const bad of [
      'REG_WEIRD\nx\n',
      'REG_DWORD\n4294967296\n',
      'REG_DWORD\n-1\n',
      'REG_DWORD\nabc\n',
      'REG_BINARY\nzz\n',
    ]) {
      assert.throws(() => decodeValueFile(Buffer.from(bad)), InvalidArgument, bad);
    }
  });

  test('data that does not fit its type is refused before anything is written', () => {
    assert.throws(() => encodeValueFile({ type: 'REG_DWORD', data: 0x1ffffffff }), /out of range/);
    assert.throws(() => encodeValueFile({ type: 'REG_DWORD', data: -1 }), /out of range/);
    assert.throws(() => encodeValueFile({ type: 'REG_DWORD', data: 1.5 }), /out of range/);
    assert.throws(() => encodeValueFile({ type: 'REG_QWORD', data: 1n << 64n }), /out of range/);
    assert.throws(() => encodeValueFile({ type: 'REG_SZ', data: 'a\0b' }), /NUL/);
    assert.throws(() => encodeValueFile({ type: 'REG_MULTI_SZ', data: ['a', ''] }), /empty string/);
    assert.throws(() => encodeValueFile({ type: 'REG_MULTI_SZ', data: ['a\nb'] }), /line feed/);
    assert.throws(
      () => encodeValueFile({ type: 'REG_BINARY', data: Buffer.alloc(1024 * 1024 + 1) }),
      /larger/,
    );
  });
});

describe('reg add /t /d arguments', () => {
  test('types by name, any case; unknown types refused', () => {
    assert.equal(parseValueType('reg_multi_sz'), 'REG_MULTI_SZ');
    assert.throws(() => parseValueType('REG_LINK'), /unknown value type "REG_LINK"/);
    assert.throws(() => parseValueType('DWORD'), /unknown value type/);
  });

  test('numbers in decimal or 0x-hex with range checks', () => {
    assert.deepEqual(parseDataArgument('REG_DWORD', '0xFFFFFFFF'), { type: 'REG_DWORD', data: 0xffffffff });
    assert.deepEqual(parseDataArgument('REG_DWORD', '42'), { type: 'REG_DWORD', data: 42 });
    assert.deepEqual(parseDataArgument('REG_DWORD', undefined), { type: 'REG_DWORD', data: 0 });
    assert.throws(
      () => parseDataArgument('REG_DWORD', '0x1FFFFFFFF'),
      /REG_DWORD data out of range \(0 to 0xFFFFFFFF\): 0x1FFFFFFFF/,
    );
    assert.throws(() => parseDataArgument('REG_DWORD', '4294967296'), /out of range/);
    assert.throws(() => parseDataArgument('REG_DWORD', '-1'), /expected a number/);
    assert.throws(() => parseDataArgument('REG_DWORD', '12abc'), /expected a number/);
    assert.deepEqual(parseDataArgument('REG_QWORD', '0xFFFFFFFFFFFFFFFF'), {
      type: 'REG_QWORD',
      data: (1n << 64n) - 1n,
    });
    assert.throws(() => parseDataArgument('REG_QWORD', '18446744073709551616'), /out of range/);
  });

  test('REG_MULTI_SZ split on \\0 or /s; REG_BINARY as hex digits', () => {
    assert.deepEqual(parseDataArgument('REG_MULTI_SZ', 'a\\0b c\\0'), {
      type: 'REG_MULTI_SZ',
      data: ['a', 'b c'],
    });
    assert.deepEqual(parseDataArgument('REG_MULTI_SZ', 'a#b', '#'), {
      type: 'REG_MULTI_SZ',
      data: ['a', 'b'],
    });
    assert.throws(() => parseDataArgument('REG_MULTI_SZ', 'a\\0\\0b'), /empty string/);
    assert.deepEqual(parseDataArgument('REG_BINARY', 'fff'), {
      type: 'REG_BINARY',
      data: Buffer.from([0x0f, 0xff]),
    });
    assert.throws(() => parseDataArgument('REG_BINARY', '0xzz'), /hex digits/);
  });
});

describe('API JSON', () => {
  test('every type round-trips through its JSON form', () => {
    for (const { data } of SAMPLES) {
      const json = valueToJson({ ...data, name: 'n' });
      assert.deepEqual(dataFromJson(json.Type, JSON.parse(JSON.stringify(json.Data))), data);
    }
    assert.deepEqual(
      valueToJson({ name: 'q', type: 'REG_QWORD', data: 1n << 60n }).Data,
      '1152921504606846976',
    );
  });

  test('wrong shapes and out-of-range numbers are refused', () => {
    assert.throws(() => dataFromJson('REG_DWORD', 0x1ffffffff), /out of range/);
    assert.throws(() => dataFromJson('REG_DWORD', 'x'), /expected a number/);
    assert.throws(() => dataFromJson('REG_SZ', 5), /must be a string/);
    assert.throws(() => dataFromJson('REG_MULTI_SZ', 'a'), /array of strings/);
    assert.throws(() => dataFromJson('REG_QWORD', 2 ** 60), /decimal string/);
  });
});
