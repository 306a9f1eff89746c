import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { allows, editEntries, formatAclText, parseAclText } from '../../src/access/acl.js';
import { AuthConfig } from '../../src/access/config.js';
import type { Principal } from '../../src/access/principal.js';
import { requestedAclFrom } from '../../src/access/service.js';

const bob: Principal = {
  id: 'user:bob',
  aliases: ['user:1001'],
  groups: ['group:devs', 'group:1001'],
  admin: false,
};
const carol: Principal = { id: 'user:carol', aliases: [], groups: [], admin: false };
const root: Principal = { id: 'user:root', aliases: ['user:0'], groups: [], admin: true };

describe('ACL text', () => {
  test('parses entries, merges duplicates, expands all, keeps subjects with =', () => {
    const entries = parseAclText(
      'user:bob=view,exec; group:ops=all;user:bob=control;cert:CN=x,O=y=view;*=view',
    );
    assert.deepEqual(entries, [
      { Principal: 'user:bob', Rights: ['view', 'exec', 'control'] },
      { Principal: 'group:ops', Rights: ['view', 'exec', 'control', 'remove'] },
      { Principal: 'cert:CN=x,O=y', Rights: ['view'] },
      { Principal: '*', Rights: ['view'] },
    ]);
    assert.equal(formatAclText(entries.slice(0, 1)), 'user:bob=view,exec,control');
  });

  test('refuses unknown rights and principals', () => {
    assert.throws(() => parseAclText('user:bob=fly'), /invalid ACL right "fly"/);
    assert.throws(() => parseAclText('bob=view'), /invalid ACL principal "bob"/);
    assert.throws(() => parseAclText('user:bob'), /expected principal=rights/);
  });

  test('label and create field forms', () => {
    assert.deepEqual(requestedAclFrom({ 'strata.acl': 'user:bob=view' }, undefined), [
      { Principal: 'user:bob', Rights: ['view'] },
    ]);
    assert.deepEqual(requestedAclFrom({}, [{ Principal: 'token:ci', Rights: ['exec'] }]), [
      { Principal: 'token:ci', Rights: ['exec'] },
    ]);
    assert.equal(requestedAclFrom({}, undefined), null);
  });
});

describe('ACL decisions', () => {
  const acl = { owner: 'user:alice', entries: parseAclText('user:1001=exec;group:devs=control') };

  test('owner and admins hold every right; nobody else without an entry', () => {
    const alice: Principal = { id: 'user:alice', aliases: [], groups: [], admin: false };
    for (const right of ['view', 'exec', 'control', 'remove'] as const) {
      assert.equal(allows(alice, acl, right), true);
      assert.equal(allows(root, acl, right), true);
      assert.equal(allows(carol, acl, right), false);
    }
    assert.equal(allows(carol, null, 'view'), false);
    assert.equal(allows(root, null, 'remove'), true);
  });

  test('entries match by alias and group; every right includes view', () => {
    assert.equal(allows(bob, acl, 'exec'), true);
    assert.equal(allows(bob, acl, 'control'), true);
    assert.equal(allows(bob, acl, 'view'), true);
    assert.equal(allows(bob, acl, 'remove'), false);
  });

  test('grant and revoke', () => {
    let entries = editEntries([], { grant: parseAclText('user:bob=view,exec') });
    assert.deepEqual(entries, [{ Principal: 'user:bob', Rights: ['view', 'exec'] }]);
    entries = editEntries(entries, { revoke: [{ Principal: 'user:bob', Rights: ['exec'] }] });
    assert.deepEqual(entries, [{ Principal: 'user:bob', Rights: ['view'] }]);
    entries = editEntries(entries, { revoke: [{ Principal: 'user:bob' }] });
    assert.deepEqual(entries, []);
  });
});

describe('auth config', () => {
  test('tokens (plain or sha256) map to principals; admins by name or group', () => {
    const config = new AuthConfig({
      tokens: [
        { name: 'ci', token: 'ci-token-0123456789', groups: ['devs'] },
        { name: 'ops', tokenSha256: createHash('sha256').update('ops-token-0123456789').digest('hex') },
      ],
      admins: ['group:devs'],
    });
    const ci = config.principalForToken('ci-token-0123456789');
    assert.equal(ci?.id, 'token:ci');
    assert.deepEqual(ci?.groups, ['group:devs']);
    assert.equal(ci?.admin, true);
    assert.equal(config.principalForToken('ops-token-0123456789')?.id, 'token:ops');
    assert.equal(config.principalForToken('ops-token-0123456789')?.admin, false);
    assert.equal(config.principalForToken('nope'), null);
    assert.equal(config.isAdmin(carol), false);
  });
});
