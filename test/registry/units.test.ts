import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AccessControl, patternToRegex } from '../../src/registry/auth/acl.js';
import { formatScope, parseScope, parseScopes } from '../../src/registry/auth/scope.js';
import { parseAddr, resolveConfig } from '../../src/registry/config.js';
import { RegistryError } from '../../src/registry/errors.js';
import { referencedDigests } from '../../src/registry/gc.js';
import { parseRange } from '../../src/registry/http/blobs.js';
import { paginate } from '../../src/registry/http/context.js';
import { parseContentRange, uploadRange } from '../../src/registry/http/uploads.js';
import {
  detectMediaType,
  MediaType,
  parseManifest,
  referrerDescriptor,
} from '../../src/registry/manifest-format.js';
import { isRepositoryName, isTag, parseManifestReference } from '../../src/registry/names.js';
import { compareAscii } from '../../src/registry/tags.js';

/** Pure logic of the registry: names, ranges, manifest validation, ACL patterns, scopes, pagination. */
const D1 = `sha256:${'a'.repeat(64)}` as const;
const D2 = `sha256:${'b'.repeat(64)}` as const;
const code = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    if (err instanceof RegistryError) return err.registryCode;
    throw err;
  }
  return 'no error';
};

describe('names', () => {
  test('repository names follow the spec grammar', () => {
    for (const ok of ['a', 'library/busybox', 'a.b_c__d-e--f/g0', 'x/y/z/w', '0'])
      assert.ok(isRepositoryName(ok), ok);
    for (const bad of [
      '',
      'A',
      'a/',
      '/a',
      'a//b',
      '../a',
      'a/..',
      'a/./b',
      '.a',
      'a___b',
      'a_-b',
      'a:b',
      'a%2fb',
      'é',
    ]) {
      assert.ok(!isRepositoryName(bad), bad);
    }
    assert.ok(isRepositoryName('a'.repeat(255)));
    assert.ok(!isRepositoryName('a'.repeat(256)));
  });
  test('tags: 128 characters of [a-zA-Z0-9._-], not starting with . or -', () => {
    assert.ok(isTag('v1.0_RC-2'));
    assert.ok(isTag('_x'));
    assert.ok(isTag('a'.repeat(128)));
    for (const bad of ['', '.x', '-x', 'a'.repeat(129), 'a/b', 'a:b']) assert.ok(!isTag(bad), bad);
  });
  test('manifest references: digest, tag; invalid tags are unknown on reads and invalid on writes', () => {
    assert.deepEqual(parseManifestReference(D1, false), { kind: 'digest', digest: D1 });
    assert.deepEqual(parseManifestReference('latest', false), { kind: 'tag', tag: 'latest' });
    assert.equal(
      code(() => parseManifestReference('sha256:short', false)),
      'DIGEST_INVALID',
    );
    assert.equal(
      code(() => parseManifestReference('.bad', false)),
      'MANIFEST_UNKNOWN',
    );
    assert.equal(
      code(() => parseManifestReference('.bad', true)),
      'MANIFEST_INVALID',
    );
  });
});

describe('ranges', () => {
  test('Range of blob GETs (RFC 9110), against a 2048-byte blob', () => {
    assert.equal(parseRange(undefined, 2048), null);
    assert.deepEqual(parseRange('bytes=0-0', 2048), { start: 0, end: 0 });
    assert.deepEqual(parseRange('bytes=500-1499', 2048), { start: 500, end: 1499 });
    assert.deepEqual(parseRange('bytes=500-', 2048), { start: 500, end: 2047 });
    assert.deepEqual(parseRange('bytes=-500', 2048), { start: 1548, end: 2047 });
    assert.deepEqual(parseRange('bytes=-5000', 2048), { start: 0, end: 2047 });
    assert.deepEqual(parseRange('bytes=2000-5000', 2048), { start: 2000, end: 2047 });
    assert.equal(parseRange('bytes=500-0', 2048), 'unsatisfiable');
    assert.equal(parseRange('bytes=2048-', 2048), 'unsatisfiable');
    assert.equal(parseRange('bytes=-0', 2048), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-1,5-6', 2048), null, 'multiple ranges: whole blob');
    assert.equal(parseRange('items=0-1', 2048), null);
  });
  test('Content-Range of chunks, and the Range an upload reports', () => {
    assert.deepEqual(parseContentRange('0-99'), { start: 0, end: 99 });
    assert.deepEqual(parseContentRange('bytes 100-199/*'), { start: 100, end: 199 });
    assert.equal(parseContentRange(undefined), undefined);
    assert.throws(() => parseContentRange('abc'), RegistryError);
    assert.equal(uploadRange(0), '0-0');
    assert.equal(uploadRange(1), '0-0');
    assert.equal(uploadRange(100), '0-99');
  });
});

describe('manifest validation', () => {
  const config = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D1, size: 10 };
  const layer = { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: D2, size: 20 };
  const body = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

  test('OCI image manifest: blobs are config then layers; subject and artifactType kept', () => {
    const parsed = parseManifest(
      body({
        schemaVersion: 2,
        mediaType: MediaType.ociManifest,
        config,
        layers: [layer],
        subject: { ...layer, mediaType: MediaType.ociManifest },
        unknownField: true,
      }),
      undefined,
    );
    assert.equal(parsed.kind, 'image');
    assert.deepEqual(
      parsed.blobs.map((b) => b.digest),
      [D1, D2],
    );
    assert.equal(parsed.subject?.digest, D2);
    assert.equal(
      referrerDescriptor(parsed, D1, 5).artifactType,
      config.mediaType,
      'artifactType falls back to config',
    );
  });
  test('the type comes from mediaType, else Content-Type, else the shape', () => {
    assert.equal(
      parseManifest(body({ schemaVersion: 2, config, layers: [] }), undefined).mediaType,
      MediaType.ociManifest,
    );
    assert.equal(parseManifest(body({ schemaVersion: 2, manifests: [] }), undefined).kind, 'index');
    assert.equal(
      parseManifest(body({ schemaVersion: 2, manifests: [] }), MediaType.dockerManifestList).mediaType,
      MediaType.dockerManifestList,
    );
    assert.equal(
      code(() =>
        parseManifest(
          body({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }),
          MediaType.ociManifest,
        ),
      ),
      'MANIFEST_INVALID',
    );
  });
  test('Docker schema 2 needs its mediaType; schema 1 and unknown types are refused', () => {
    const docker = { schemaVersion: 2, mediaType: MediaType.dockerManifest, config, layers: [layer] };
    assert.equal(parseManifest(body(docker), MediaType.dockerManifest).kind, 'image');
    assert.equal(
      code(() => parseManifest(body({ ...docker, mediaType: undefined }), MediaType.dockerManifest)),
      'MANIFEST_INVALID',
    );
    assert.equal(
      code(() => parseManifest(body({ schemaVersion: 1, fsLayers: [] }), MediaType.dockerSchema1Signed)),
      'MANIFEST_INVALID',
    );
    assert.equal(
      code(() =>
        parseManifest(body({ schemaVersion: 2, mediaType: 'application/x-nope', config }), undefined),
      ),
      'MANIFEST_INVALID',
    );
  });
  test('bad descriptors and bad JSON are MANIFEST_INVALID', () => {
    for (const bad of [
      { schemaVersion: 2, config: { ...config, digest: 'sha256:abc' }, layers: [] },
      { schemaVersion: 2, config: { ...config, size: -1 }, layers: [] },
      { schemaVersion: 2, config: { ...config, mediaType: '' }, layers: [] },
      { schemaVersion: 3, config, layers: [] },
      { schemaVersion: 2, mediaType: MediaType.ociIndex },
      [1, 2],
    ]) {
      assert.equal(
        code(() => parseManifest(body(bad), undefined)),
        'MANIFEST_INVALID',
        JSON.stringify(bad),
      );
    }
    assert.equal(
      code(() => parseManifest(Buffer.from('{"schemaVersion":'), undefined)),
      'MANIFEST_INVALID',
    );
  });
  test('stored manifests: media type detection and the digests gc follows', () => {
    assert.equal(detectMediaType(body({ mediaType: MediaType.dockerManifest })), MediaType.dockerManifest);
    assert.equal(detectMediaType(body({ manifests: [] })), MediaType.ociIndex);
    assert.equal(detectMediaType(Buffer.from('garbage')), MediaType.ociManifest);
    assert.deepEqual(referencedDigests(body({ config, layers: [layer], subject: layer })), [D1, D2]);
    assert.deepEqual(referencedDigests(body({ manifests: [config, { digest: 'bad' }] })), [D1]);
    assert.deepEqual(referencedDigests(Buffer.from('[')), []);
  });
});

describe('access control', () => {
  test('patterns: * within a component, ** across, the user placeholder literal', () => {
    assert.ok(patternToRegex('team/*').test('team/app'));
    assert.ok(!patternToRegex('team/*').test('team/app/sub'));
    assert.ok(patternToRegex('team/**').test('team/app/sub'));
    assert.ok(!patternToRegex('team/**').test('teams/app'));
    assert.ok(!patternToRegex('a.b').test('axb'), 'dots are literal');
    assert.ok(patternToRegex('$' + '{user}/**', 'a.b').test('a.b/x'));
    assert.ok(!patternToRegex('$' + '{user}/**', 'a.b').test('axb/x'));
  });
  test('grants are the union of matching entries; anonymous only where allowed', () => {
    const acl = new AccessControl(
      [
        { repository: 'shared/**', users: ['*'], groups: [], actions: ['pull'] },
        { repository: 'shared/**', users: [], groups: ['writers'], actions: ['push'] },
        { repository: '$' + '{user}/**', users: ['*'], groups: [], actions: ['*'] },
      ],
      ['public/*'],
    );
    const alice = { user: 'alice', groups: ['writers'] };
    const bob = { user: 'bob', groups: [] };
    const anon = { user: null, groups: [] };
    assert.deepEqual([...acl.permitted(alice, 'shared/x')].sort(), ['pull', 'push']);
    assert.deepEqual([...acl.permitted(bob, 'shared/x')], ['pull']);
    assert.deepEqual([...acl.permitted(bob, 'bob/tools')].sort(), ['delete', 'pull', 'push']);
    assert.deepEqual([...acl.permitted(bob, 'alice/tools')], []);
    assert.deepEqual([...acl.permitted(anon, 'public/x')], ['pull']);
    assert.deepEqual([...acl.permitted(anon, 'shared/x')], []);
    assert.deepEqual([...acl.permitted(anon, 'public/x/y')], [], '* stays within one component');
  });
  test('scopes: names may contain colons, actions come last', () => {
    assert.deepEqual(parseScope('repository:library/busybox:pull,push'), {
      type: 'repository',
      name: 'library/busybox',
      actions: ['pull', 'push'],
    });
    assert.deepEqual(parseScope('repository:host:5000/x:pull')?.name, 'host:5000/x');
    assert.equal(parseScope('plugin:x:pull'), null);
    assert.equal(parseScope('repository:pull'), null);
    assert.equal(parseScopes(['repository:a:pull repository:b:push', 'registry:catalog:*']).length, 3);
    assert.equal(formatScope({ type: 'registry', name: 'catalog', actions: ['*'] }), 'registry:catalog:*');
  });
});

describe('listings and configuration', () => {
  test('pagination: n, last, and a Link only when more remain', () => {
    const items = ['a', 'b', 'c', 'd'];
    assert.deepEqual(paginate(items, new URLSearchParams(''), '/x'), { page: items });
    assert.deepEqual(paginate(items, new URLSearchParams('n=2'), '/x'), {
      page: ['a', 'b'],
      link: '</x?n=2&last=b>; rel="next"',
    });
    assert.deepEqual(paginate(items, new URLSearchParams('n=2&last=b'), '/x'), { page: ['c', 'd'] });
    assert.deepEqual(paginate(items, new URLSearchParams('n=0'), '/x'), { page: [] });
    assert.deepEqual(paginate(items, new URLSearchParams('last=c'), '/x'), { page: ['d'] });
    assert.throws(() => paginate(items, new URLSearchParams('n=-1'), '/x'), RegistryError);
  });
  test('ASCII order puts uppercase before lowercase, like Go sort.Strings', () => {
    assert.deepEqual(['b', 'B', 'a', 'A', '_', '1'].sort(compareAscii), ['1', 'A', 'B', '_', 'a', 'b']);
  });
  test('addresses and defaults', () => {
    assert.deepEqual(parseAddr('127.0.0.1:5000'), { host: '127.0.0.1', port: 5000 });
    assert.deepEqual(parseAddr(':80'), { host: '0.0.0.0', port: 80 });
    assert.deepEqual(parseAddr('[::1]:5000'), { host: '::1', port: 5000 });
    assert.throws(() => parseAddr('localhost'));
    assert.throws(() => parseAddr('h:99999'));
    const config = resolveConfig({}, {});
    assert.equal(config.root, '/var/lib/strata-registry');
    assert.equal(`${config.host}:${config.port}`, '127.0.0.1:5000');
    assert.equal(config.auth, undefined);
    assert.equal(config.manifestMaxBytes, 4 * 1024 * 1024);
  });
});
