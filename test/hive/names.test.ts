import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { InvalidArgument } from '../../src/common/errors.js';
import {
  checkValueName,
  compareNames,
  decodeKeyName,
  decodeValueFileName,
  encodeKeyName,
  formatKeyPath,
  parseKeyPath,
  sameName,
  valueFileName,
} from '../../src/hive/names.js';

describe('hive key paths', () => {
  test('root keys in short and long form, any case; trailing backslash allowed', () => {
    assert.deepEqual(parseKeyPath('HKLM\\Software\\Acme'), { root: 'HKLM', names: ['Software', 'Acme'] });
    assert.deepEqual(parseKeyPath('hkey_current_user\\X\\'), { root: 'HKCU', names: ['X'] });
    assert.deepEqual(parseKeyPath('HKU'), { root: 'HKU', names: [] });
    assert.deepEqual(parseKeyPath('hkcr\\.txt'), { root: 'HKCR', names: ['.txt'] });
    assert.equal(formatKeyPath('HKCC', ['a', 'b']), 'HKEY_CURRENT_CONFIG\\a\\b');
  });

  const refused: [string, RegExp][] = [
    ['HKLM\\Software\\..\\System', /invalid key name "\.\."/],
    ['HKLM\\.', /invalid key name "\."/],
    ['HKLM\\a\0b', /NUL/],
    ['HKLM\\a\\\\b', /empty key name/],
    ['HKLM\\tab\there', /control characters/],
    [`HKLM\\${'k'.repeat(256)}`, /longer than 255 characters/],
    [`HKLM\\${'é'.repeat(200)}`, /longer than 255 bytes/],
    [`HKLM${'\\k'.repeat(513)}`, /deeper than 512/],
    [`HKLM${`\\${'k'.repeat(200)}`.repeat(16)}`, /longer than 3072 bytes/],
    ['HKEY_DYN_DATA\\x', /unknown root key "HKEY_DYN_DATA"/],
    ['\\\\remote\\HKLM\\x', /remote registries/],
    ['', /empty/],
  ];
  for (const [input, message] of refused) {
    test(`refuses ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
      assert.throws(
        () => parseKeyPath(input),
        (err: unknown) => err instanceof InvalidArgument && message.test(err.message),
      );
    });
  }

  test('value names: NUL, control characters and over-long encodings refused; anything else allowed', () => {
    for (const ok of ['', '(Default)', '..', 'a/b', 'back\\slash', '@at', '.dot', '100%']) checkValueName(ok);
    assert.throws(() => checkValueName('a\0b'), /NUL/);
    assert.throws(() => checkValueName('line\nbreak'), /control characters/);
    assert.throws(() => checkValueName('v'.repeat(255)), /longer than 254 bytes/);
    checkValueName('v'.repeat(254));
  });
});

describe('hive file names', () => {
  test('keys: %, / and a leading . or @ are percent-encoded; the rest stays readable', () => {
    assert.equal(encodeKeyName('Acme App'), 'Acme App');
    assert.equal(encodeKeyName('50% done'), '50%25 done');
    assert.equal(encodeKeyName('a/b'), 'a%2Fb');
    assert.equal(encodeKeyName('.txt'), '%2Etxt');
    assert.equal(encodeKeyName('@home'), '%40home');
    assert.equal(encodeKeyName('x.y@z'), 'x.y@z');
    assert.equal(encodeKeyName('Ünïcødé'), 'Ünïcødé');
    for (const name of ['Acme App', '50% done', 'a/b', '.txt', '@home', 'Ünïcødé', '%2E']) {
      assert.equal(decodeKeyName(encodeKeyName(name)), name);
    }
  });

  test('values: @ + name, with % and / encoded; @ alone is the default value', () => {
    assert.equal(valueFileName(''), '@');
    assert.equal(valueFileName('Version'), '@Version');
    assert.equal(valueFileName('a/b%'), '@a%2Fb%25');
    assert.equal(valueFileName('.hidden'), '@.hidden');
    for (const name of ['', 'Version', 'a/b%', '.hidden', '@', 'back\\slash']) {
      assert.equal(decodeValueFileName(valueFileName(name)), name);
    }
  });

  test('entries that are not an exact encoding are not part of the hive', () => {
    for (const file of [
      '.strata-tmp-1234',
      '.hidden',
      '@value',
      'Acme%41',
      '%2e',
      'bad%zz',
      '%2E',
      '%2E%2E',
      'a\\b',
    ]) {
      assert.equal(decodeKeyName(file), null, file);
    }
    for (const file of ['Version', '@bad%zz', '@a%2fb', '@%41'])
      assert.equal(decodeValueFileName(file), null, file);
  });

  test('case-insensitive comparison with simple folding, case-insensitive order', () => {
    assert.ok(sameName('Software', 'SOFTWARE'));
    assert.ok(sameName('Ärger', 'äRGER'));
    assert.ok(!sameName('straße', 'STRASSE'));
    assert.deepEqual(['b', 'A', 'a', 'C'].sort(compareNames), ['A', 'a', 'b', 'C']);
  });
});
