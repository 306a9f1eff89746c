import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chainIds, type Digest, sha256 } from '../../src/common/digest.js';
import { InvalidArgument } from '../../src/common/errors.js';
import {
  familiarMatch,
  familiarName,
  familiarString,
  parseAnyReference,
  parseNormalizedNamed,
  referenceString,
  tagNameOnly,
  withTag,
} from '../../src/images/reference.js';

const HEX = 'a'.repeat(64);

function normalized(value: string): string {
  return referenceString(parseNormalizedNamed(value));
}

describe('parseNormalizedNamed', () => {
  it('adds docker.io and library/ to official names', () => {
    assert.equal(normalized('bb'), 'docker.io/library/bb');
    assert.equal(normalized('bb:latest'), 'docker.io/library/bb:latest');
    assert.equal(referenceString(tagNameOnly(parseNormalizedNamed('bb'))), 'docker.io/library/bb:latest');
    assert.equal(normalized('user/app:1.0'), 'docker.io/user/app:1.0');
    assert.equal(normalized('docker.io/library/bb:x'), 'docker.io/library/bb:x');
    assert.equal(normalized('index.docker.io/bb'), 'docker.io/library/bb');
  });

  it('keeps registries with a dot, a port or localhost', () => {
    const ref = parseNormalizedNamed('127.0.0.1:5000/x/y:tag');
    assert.deepEqual(ref, { domain: '127.0.0.1:5000', path: 'x/y', tag: 'tag', digest: null });
    assert.equal(normalized('localhost/foo'), 'localhost/foo');
    assert.equal(normalized('example.com/a/b/c'), 'example.com/a/b/c');
    assert.equal(normalized('[::1]:5000/x'), '[::1]:5000/x');
    // No dot, port or "localhost": the first component is a path, not a registry.
    assert.equal(normalized('myhost/foo'), 'docker.io/myhost/foo');
  });

  it('parses digests, with and without a tag', () => {
    const ref = parseNormalizedNamed(`bb@sha256:${HEX}`);
    assert.equal(ref.digest, `sha256:${HEX}`);
    assert.equal(ref.tag, null);
    const both = parseNormalizedNamed(`bb:v1@sha256:${HEX}`);
    assert.equal(both.tag, 'v1');
    assert.equal(familiarString(both), `bb:v1@sha256:${HEX}`);
  });

  it('gives the familiar form back', () => {
    assert.equal(familiarString(parseNormalizedNamed('docker.io/library/bb:latest')), 'bb:latest');
    assert.equal(familiarString(parseNormalizedNamed('docker.io/user/app')), 'user/app');
    assert.equal(familiarString(parseNormalizedNamed('127.0.0.1:5000/bb:v1')), '127.0.0.1:5000/bb:v1');
    assert.equal(familiarName(parseNormalizedNamed('docker.io/library/a/b')), 'library/a/b');
  });

  it('rejects an uppercase repository with dockerd message', () => {
    assert.throws(
      () => parseNormalizedNamed('Foo'),
      (err: unknown) =>
        err instanceof InvalidArgument &&
        err.status === 400 &&
        err.message === 'invalid reference format: repository name must be lowercase',
    );
    assert.throws(() => parseNormalizedNamed('user/App:tag'), /must be lowercase/);
  });

  it('accepts an uppercase registry host and tag', () => {
    assert.equal(normalized('Example.com/foo:TAG'), 'Example.com/foo:TAG');
  });

  it('rejects malformed references', () => {
    const bad = [
      '',
      'bb:',
      ':tag',
      'bb::tag',
      'a/',
      '/a',
      'a//b',
      'bb:tag with space',
      '-bb',
      'bb-',
      'bb@sha256:abc',
      `bb@md5:${HEX}`,
      `bb:${'t'.repeat(129)}`,
      `${'a'.repeat(256)}`,
      'bb:.tag',
    ];
    for (const value of bad) {
      assert.throws(
        () => parseNormalizedNamed(value),
        InvalidArgument,
        `expected ${JSON.stringify(value)} to fail`,
      );
    }
    assert.throws(() => parseNormalizedNamed('bb@sha256:abc'), /^InvalidArgument: invalid reference format$/);
    assert.throws(
      () => parseNormalizedNamed(`bb@sha256:${'a'.repeat(40)}`),
      /invalid checksum digest length/,
    );
    assert.throws(() => parseNormalizedNamed(''), /^InvalidArgument: invalid reference format$/);
    assert.throws(() => parseNormalizedNamed('a'.repeat(256)), /not be more than 255 characters/);
  });

  it('accepts the separators of the grammar', () => {
    for (const value of ['a.b', 'a_b', 'a__b', 'a-b', 'a---b', 'a.b-c_d/e', 'x:1.0-rc_1', 'x:_t']) {
      assert.doesNotThrow(() => parseNormalizedNamed(value), value);
    }
    assert.throws(() => parseNormalizedNamed('a___b'), InvalidArgument);
    assert.throws(() => parseNormalizedNamed('a..b'), InvalidArgument);
  });

  it('refuses a 64-hex name', () => {
    assert.throws(() => parseNormalizedNamed(HEX), /cannot specify 64-byte hexadecimal strings/);
  });

  it('validates tags', () => {
    assert.equal(withTag(parseNormalizedNamed('bb'), 'v2').tag, 'v2');
    assert.throws(() => withTag(parseNormalizedNamed('bb'), 'bad tag'), /invalid tag format/);
  });
});

describe('parseAnyReference', () => {
  it('reads ids and digests as digests', () => {
    assert.deepEqual(parseAnyReference(HEX), { kind: 'digest', digest: `sha256:${HEX}` });
    assert.deepEqual(parseAnyReference(`sha256:${HEX}`), { kind: 'digest', digest: `sha256:${HEX}` });
  });

  it('reads everything else as a name (short ids included)', () => {
    const any = parseAnyReference('6caa8d');
    assert.equal(any.kind, 'named');
    if (any.kind === 'named') assert.equal(referenceString(any.ref), 'docker.io/library/6caa8d');
  });
});

describe('familiarMatch', () => {
  it('matches reference filters like path.Match', () => {
    const ref = parseNormalizedNamed('bb:latest');
    assert.ok(familiarMatch('bb', ref));
    assert.ok(familiarMatch('bb:latest', ref));
    assert.ok(familiarMatch('b*', ref));
    assert.ok(familiarMatch('bb:l?test', ref));
    assert.ok(!familiarMatch('b', ref));
    const deep = parseNormalizedNamed('127.0.0.1:5000/x/y:v1');
    assert.ok(familiarMatch('127.0.0.1:5000/x/*', deep));
    // `*` does not cross a slash.
    assert.ok(!familiarMatch('127.0.0.1:5000/*', deep));
  });
});

describe('chainIds', () => {
  it('follows the OCI definition', () => {
    const a = sha256('layer a');
    const b = sha256('layer b');
    const c = sha256('layer c');
    const chain = chainIds([a, b, c]);
    assert.equal(chain[0], a);
    assert.equal(chain[1], sha256(`${a} ${b}`));
    assert.equal(chain[2], sha256(`${chain[1]} ${c}`));
    assert.deepEqual(chainIds([] as Digest[]), []);
  });

  it('shares a prefix between stacks that share their bottom layers', () => {
    const base = [sha256('1'), sha256('2')];
    const x = chainIds([...base, sha256('x')]);
    const y = chainIds([...base, sha256('y')]);
    assert.deepEqual(x.slice(0, 2), y.slice(0, 2));
    assert.notEqual(x[2], y[2]);
  });
});
