import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseChallenges, preferredChallenge } from '../../src/common/www-authenticate.js';

describe('WWW-Authenticate', () => {
  test('challenges are parsed into scheme and parameters', () => {
    assert.deepEqual(
      parseChallenges('Bearer realm="https://auth.example/token",service="hub",scope="repository:a/b:pull"'),
      [
        {
          scheme: 'bearer',
          params: { realm: 'https://auth.example/token', service: 'hub', scope: 'repository:a/b:pull' },
        },
      ],
    );
    assert.deepEqual(parseChallenges('Basic realm="x", Bearer realm=y'), [
      { scheme: 'basic', params: { realm: 'x' } },
      { scheme: 'bearer', params: { realm: 'y' } },
    ]);
  });

  test('Bearer with quoted parameters holding commas', () => {
    const c = preferredChallenge(
      'Bearer realm="http://127.0.0.1:5000/token",service="reg",scope="repository:a/b:pull,push",error="insufficient_scope"',
    );
    assert.deepEqual(c, {
      scheme: 'bearer',
      params: {
        realm: 'http://127.0.0.1:5000/token',
        service: 'reg',
        scope: 'repository:a/b:pull,push',
        error: 'insufficient_scope',
      },
    });
  });
  test('Basic, Bearer preferred over Basic, and nothing usable', () => {
    assert.deepEqual(preferredChallenge('Basic realm="basic-realm"'), {
      scheme: 'basic',
      params: { realm: 'basic-realm' },
    });
    assert.equal(preferredChallenge(['Basic realm="x"', 'Bearer realm="https://t/token"'])?.scheme, 'bearer');
    assert.equal(preferredChallenge('Negotiate abc'), null);
    assert.equal(preferredChallenge(undefined), null);
  });
});
