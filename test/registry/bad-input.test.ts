import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Client, errorCode, listFiles, sha256, startRegistry, type TestRegistry } from './helpers.js';

/**
 * Bad input: each request gets the spec's error code and status, and the store is left as it was
 * (compared file by file under the storage root, minus upload sessions, which are never served).
 */
let reg: TestRegistry;
let client: Client;
const REPO = 'bad/input';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

before(async () => {
  reg = await startRegistry();
  client = new Client(reg.url);
});
after(async () => {
  await reg.close();
});

/** Files of the store that a client could ever see: everything but upload sessions. */
function visibleFiles(): string[] {
  return listFiles(reg.root).filter((f) => !f.includes('/_uploads/'));
}

async function expectUnchanged<T>(action: () => Promise<T>): Promise<T> {
  const before = visibleFiles();
  const result = await action();
  assert.deepEqual(visibleFiles(), before, 'the store changed');
  return result;
}

describe('manifests', () => {
  let image: Awaited<ReturnType<Client['pushImage']>>;
  before(async () => {
    image = await client.pushImage(REPO, 'good');
  });

  test('malformed JSON is MANIFEST_INVALID (400)', async () => {
    const res = await expectUnchanged(() =>
      client.req('PUT', `/v2/${REPO}/manifests/broken`, {
        body: '{"schemaVersion": 2,',
        headers: { 'Content-Type': OCI_MANIFEST },
      }),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'MANIFEST_INVALID');
    assert.ok(Array.isArray((res.json as { errors: unknown[] }).errors));
    assert.equal((await client.req('GET', `/v2/${REPO}/manifests/broken`)).status, 404);
  });

  test('a manifest missing required fields is MANIFEST_INVALID', async () => {
    const res = await expectUnchanged(() =>
      client.pushManifest(REPO, 'nolayers', { schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] }),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'MANIFEST_INVALID');
  });

  test('a mediaType contradicting the Content-Type is MANIFEST_INVALID', async () => {
    const res = await expectUnchanged(() =>
      client.pushManifest(REPO, 'mixed', image.manifest, 'application/vnd.oci.image.index.v1+json'),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'MANIFEST_INVALID');
  });

  test('Docker schema 1 manifests are refused', async () => {
    const res = await expectUnchanged(() =>
      client.pushManifest(REPO, 'v1', {
        schemaVersion: 1,
        name: REPO,
        tag: 'v1',
        fsLayers: [],
        history: [],
        mediaType: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
      }),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'MANIFEST_INVALID');
  });

  test('unknown blobs are MANIFEST_BLOB_UNKNOWN, one error per missing blob', async () => {
    const missing1 = sha256('never pushed 1');
    const missing2 = sha256('never pushed 2');
    const manifest = JSON.parse(image.manifest.toString()) as { layers: { digest: string; size: number }[] };
    manifest.layers = [
      { ...manifest.layers[0], digest: missing1, size: 14 } as { digest: string; size: number },
      { ...manifest.layers[0], digest: missing2, size: 14 } as { digest: string; size: number },
    ];
    const res = await expectUnchanged(() => client.pushManifest(REPO, 'dangling', manifest, OCI_MANIFEST));
    assert.equal(res.status, 400);
    const errors = (res.json as { errors: { code: string; detail: { digest: string } }[] }).errors;
    assert.deepEqual(
      errors.map((e) => [e.code, e.detail.digest]),
      [
        ['MANIFEST_BLOB_UNKNOWN', missing1],
        ['MANIFEST_BLOB_UNKNOWN', missing2],
      ],
    );
    assert.equal((await client.req('GET', `/v2/${REPO}/manifests/dangling`)).status, 404);
  });

  test('a blob of another repository does not count (it must be mounted first)', async () => {
    const other = await client.pushImage('bad/other', 'x', 1);
    const manifest = JSON.parse(image.manifest.toString()) as { layers: unknown[] };
    manifest.layers = [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: other.layerDigests[0], size: 1 },
    ];
    const res = await client.pushManifest(REPO, 'foreign', manifest, OCI_MANIFEST);
    assert.equal(errorCode(res), 'MANIFEST_BLOB_UNKNOWN');
  });

  test('an index naming an unknown child manifest is MANIFEST_BLOB_UNKNOWN', async () => {
    const index = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        { mediaType: OCI_MANIFEST, digest: image.digest, size: image.size },
        { mediaType: OCI_MANIFEST, digest: sha256('no such manifest'), size: 16 },
      ],
    };
    const res = await expectUnchanged(() => client.pushManifest(REPO, 'index', index));
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'MANIFEST_BLOB_UNKNOWN');
  });

  test('a descriptor whose size differs from the blob is MANIFEST_INVALID', async () => {
    const manifest = JSON.parse(image.manifest.toString()) as { layers: { size: number }[] };
    (manifest.layers[0] as { size: number }).size += 1000;
    const res = await expectUnchanged(() => client.pushManifest(REPO, 'wrongsize', manifest, OCI_MANIFEST));
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'MANIFEST_INVALID');
  });

  test('a push by digest whose body has another digest is DIGEST_INVALID', async () => {
    const res = await expectUnchanged(() =>
      client.pushManifest(REPO, sha256('something else'), image.manifest, OCI_MANIFEST),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'DIGEST_INVALID');
  });

  test('a manifest over the 4 MiB cap is refused with 413', async () => {
    const manifest = JSON.parse(image.manifest.toString()) as Record<string, unknown>;
    manifest.annotations = { big: 'x'.repeat(4 * 1024 * 1024) };
    const res = await expectUnchanged(() => client.pushManifest(REPO, 'huge', manifest, OCI_MANIFEST));
    assert.equal(res.status, 413);
    assert.equal(errorCode(res), 'MANIFEST_INVALID');
  });

  test('an invalid tag in a push is MANIFEST_INVALID; in a pull it is simply unknown', async () => {
    const put = await client.pushManifest(REPO, '-bad-tag', image.manifest, OCI_MANIFEST);
    assert.equal(put.status, 400);
    const get = await client.req('GET', `/v2/${REPO}/manifests/-bad-tag`);
    assert.equal(get.status, 404);
    assert.equal(errorCode(get), 'MANIFEST_UNKNOWN');
  });
});

describe('blobs', () => {
  test('a digest mismatch is DIGEST_INVALID and stores nothing', async () => {
    const data = Buffer.from('the real content');
    const claimed = sha256('other content');
    const res = await expectUnchanged(() =>
      client.req('POST', `/v2/${REPO}/blobs/uploads/?digest=${claimed}`, { body: data }),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'DIGEST_INVALID');
    for (const d of [claimed, sha256(data)]) {
      assert.equal((await client.req('HEAD', `/v2/${REPO}/blobs/${d}`)).status, 404);
    }
    assert.deepEqual(
      fs.readdirSync(path.join(reg.root, 'docker/registry/v2/repositories', REPO, '_uploads')),
      [],
    );
  });

  test('a chunk larger than its declared range is SIZE_INVALID and ends the session', async () => {
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const location = String(post.headers.location);
    const res = await expectUnchanged(() =>
      client.req('PATCH', location, {
        body: Buffer.alloc(100, 1),
        chunked: true,
        headers: { 'Content-Range': '0-49', 'Content-Type': 'application/octet-stream' },
      }),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'SIZE_INVALID');
    assert.equal((await client.req('GET', location)).status, 404, 'the session is gone');
  });

  test('a final chunk larger than declared is SIZE_INVALID and no blob appears', async () => {
    const data = Buffer.alloc(64, 7);
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const res = await expectUnchanged(() =>
      client.req('PUT', `${post.headers.location}?digest=${sha256(data)}`, {
        body: data,
        chunked: true,
        headers: { 'Content-Range': '0-31' },
      }),
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'SIZE_INVALID');
    assert.equal((await client.req('HEAD', `/v2/${REPO}/blobs/${sha256(data)}`)).status, 404);
  });

  test('Content-Length disagreeing with Content-Range is SIZE_INVALID', async () => {
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const res = await client.req('PATCH', String(post.headers.location), {
      body: Buffer.alloc(10),
      headers: { 'Content-Range': '0-19' },
    });
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'SIZE_INVALID');
  });

  test('an unsupported digest algorithm is DIGEST_INVALID', async () => {
    const res = await client.req(
      'POST',
      `/v2/${REPO}/blobs/uploads/?digest=md5:0123456789abcdef0123456789abcdef`,
      {
        body: 'x',
      },
    );
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'DIGEST_INVALID');
    const alg = await client.req('POST', `/v2/${REPO}/blobs/uploads/?digest-algorithm=md5`);
    assert.equal(errorCode(alg), 'DIGEST_INVALID');
  });

  test('a malformed blob digest in a URL is DIGEST_INVALID; an unknown one BLOB_UNKNOWN', async () => {
    const bad = await client.req('GET', `/v2/${REPO}/blobs/sha256:xyz`);
    assert.equal(bad.status, 400);
    assert.equal(errorCode(bad), 'DIGEST_INVALID');
    const unknown = await client.req('GET', `/v2/${REPO}/blobs/${sha256('nope')}`);
    assert.equal(unknown.status, 404);
    assert.equal(errorCode(unknown), 'BLOB_UNKNOWN');
  });

  test('unknown upload sessions are BLOB_UPLOAD_UNKNOWN, also for path tricks in the id', async () => {
    for (const id of ['00000000-0000-0000-0000-000000000000', '..%2F..%2Fetc', 'x']) {
      const res = await client.req('GET', `/v2/${REPO}/blobs/uploads/${id}`);
      assert.equal(res.status, 404, id);
      assert.equal(errorCode(res), 'BLOB_UPLOAD_UNKNOWN', id);
    }
  });

  test('a closing PUT without digest is DIGEST_INVALID', async () => {
    const post = await client.req('POST', `/v2/${REPO}/blobs/uploads/`);
    const res = await client.req('PUT', String(post.headers.location), { body: 'abc' });
    assert.equal(res.status, 400);
    assert.equal(errorCode(res), 'DIGEST_INVALID');
  });
});

describe('repository names', () => {
  const invalid: [string, string][] = [
    ['parent directory', '../etc'],
    ['a dot-dot component', 'a/../b'],
    ['a percent-encoded traversal', '..%2Fetc'],
    ['uppercase', 'Library/Busybox'],
    ['a leading separator', '-abc'],
    ['a trailing separator', 'abc-'],
    ['an empty component', 'a//b'],
    ['over-long', `${'a'.repeat(200)}/${'b'.repeat(60)}`],
  ];
  for (const [what, name] of invalid) {
    test(`a name with ${what} is NAME_INVALID and creates nothing`, async () => {
      for (const [method, suffix] of [
        ['GET', '/tags/list'],
        ['GET', `/manifests/latest`],
        ['POST', '/blobs/uploads/'],
        ['HEAD', `/blobs/${sha256('x')}`],
      ] as const) {
        const res = await expectUnchanged(() => client.req(method, `/v2/${name}${suffix}`));
        assert.equal(res.status, 400, `${method} ${suffix}`);
        if (method !== 'HEAD') assert.equal(errorCode(res), 'NAME_INVALID');
      }
      assert.ok(!fs.existsSync(path.join(reg.root, 'etc')));
      assert.ok(!fs.existsSync(path.join(reg.root, 'docker/registry/v2/etc')));
    });
  }

  test('the longest valid name (255) works, one more does not', async () => {
    const ok = `${'a'.repeat(127)}/${'b'.repeat(127)}`;
    assert.equal(ok.length, 255);
    assert.equal((await client.req('POST', `/v2/${ok}/blobs/uploads/`)).status, 202);
    const tooLong = `${ok}c`;
    assert.equal(errorCode(await client.req('POST', `/v2/${tooLong}/blobs/uploads/`)), 'NAME_INVALID');
  });

  test('tags list of an unknown repository is NAME_UNKNOWN', async () => {
    const res = await client.req('GET', '/v2/never/pushed/tags/list');
    assert.equal(res.status, 404);
    assert.equal(errorCode(res), 'NAME_UNKNOWN');
  });

  test('unknown endpoints are 404 and wrong methods 405 with Allow', async () => {
    assert.equal((await client.req('GET', '/v3/')).status, 404);
    const res = await client.req('POST', `/v2/${REPO}/tags/list`);
    assert.equal(res.status, 405);
    assert.equal(errorCode(res), 'UNSUPPORTED');
    assert.equal(res.headers.allow, 'GET');
  });
});
