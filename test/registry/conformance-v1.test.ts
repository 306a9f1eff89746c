import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { tarOneFile } from './conformance-data.js';
import { Client, errorCode, type Response, sha256, startRegistry, type TestRegistry } from './helpers.js';

/**
 * The distribution-spec v1.1.0 conformance suite (the Ginkgo one: 01_pull, 02_push, 03_discovery,
 * 04_management), ported check by check. Its fixtures: per-workflow configs with a random author,
 * one gzip layer, manifests whose config descriptor carries `data` and an unknown field, and the
 * referrers fixtures (artifacts and an index with a subject, one pushed before its subject exists).
 */
const NAME = 'conformance/v11';
const CROSSMOUNT = `conformance-${randomBytes(4).toString('hex')}/mount`;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const SPEC_CODES = [
  'BLOB_UNKNOWN',
  'BLOB_UPLOAD_INVALID',
  'BLOB_UPLOAD_UNKNOWN',
  'DIGEST_INVALID',
  'MANIFEST_BLOB_UNKNOWN',
  'MANIFEST_INVALID',
  'MANIFEST_UNKNOWN',
  'MANIFEST_UNVERIFIED',
  'NAME_INVALID',
  'NAME_UNKNOWN',
  'SIZE_INVALID',
  'TAG_INVALID',
  'UNAUTHORIZED',
  'DENIED',
  'UNSUPPORTED',
];

interface Blob {
  content: Buffer;
  digest: string;
}
const blobOf = (content: Buffer): Blob => ({ content, digest: sha256(content) });
const pretty = (v: unknown): Buffer => Buffer.from(JSON.stringify(v, null, '\t'));

const configs: Blob[] = Array.from({ length: 5 }, () =>
  blobOf(
    pretty({
      architecture: 'amd64',
      os: 'linux',
      rootfs: { type: 'layers', diff_ids: [] },
      author: randomBytes(8).toString('hex'),
    }),
  ),
);
const layer = blobOf(gzipSync(tarOneFile('./hello.txt', Buffer.from('hello conformance\n'))));
const configDescriptor = (c: Blob): object => ({
  mediaType: 'application/vnd.oci.image.config.v1+json',
  digest: c.digest,
  size: c.content.length,
  data: c.content.toString('base64'),
  newUnspecifiedField: Buffer.from('hello world').toString('base64'),
});
const manifests: Blob[] = configs.map((c) =>
  blobOf(
    pretty({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: configDescriptor(c),
      layers: [
        {
          mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
          size: layer.content.length,
          digest: layer.digest,
        },
      ],
    }),
  ),
);
const emptyLayerManifest = blobOf(
  pretty({ schemaVersion: 2, config: configDescriptor(configs[1] as Blob), layers: [] }),
);
const testBlobA = blobOf(randomBytes(42));
const testBlobB = blobOf(randomBytes(42));
const chunk1 = testBlobB.content.subarray(0, 22);
const chunk2 = testBlobB.content.subarray(22);
const chunk1Range = `0-${chunk1.length - 1}`;
const chunk2Range = `${chunk1.length}-${testBlobB.content.length - 1}`;
const dummyDigest = sha256('hello world');

// Referrers fixtures.
const emptyJson = blobOf(Buffer.from('{}'));
const emptyJsonDescriptor = {
  mediaType: 'application/vnd.oci.empty.v1+json',
  size: 2,
  digest: emptyJson.digest,
};
const refBlobA = blobOf(Buffer.from('NHL Peanut Butter on my NHL bagel'));
const refBlobB = blobOf(Buffer.from('NBA Strawberry Jam on my NBA croissant'));
const typeA = 'application/vnd.nhl.peanut.butter.bagel';
const typeB = 'application/vnd.nba.strawberry.jam.croissant';
const annotationKey = 'org.opencontainers.conformance.test';
const annotationValues = new Map<string, string>();
const subjectOf = (m: Blob): object => ({
  mediaType: OCI_MANIFEST,
  size: m.content.length,
  digest: m.digest,
});
function referrer(value: object, annotation?: string): Blob {
  const b = blobOf(
    pretty(annotation === undefined ? value : { ...value, annotations: { [annotationKey]: annotation } }),
  );
  if (annotation !== undefined) annotationValues.set(b.digest, annotation);
  return b;
}
const m4 = manifests[4] as Blob;
const refsAConfig = referrer(
  {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: typeA, size: refBlobA.content.length, digest: refBlobA.digest },
    subject: subjectOf(m4),
    layers: [emptyJsonDescriptor],
  },
  'test config a',
);
const refsBConfig = referrer(
  {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: typeB, size: refBlobB.content.length, digest: refBlobB.digest },
    subject: subjectOf(m4),
    layers: [emptyJsonDescriptor],
  },
  'test config b',
);
const layerArtifact = (type: string, blob: Blob, subject: Blob): object => ({
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  artifactType: type,
  config: emptyJsonDescriptor,
  subject: subjectOf(subject),
  layers: [{ mediaType: type, size: blob.content.length, digest: blob.digest }],
});
const refsALayer = referrer(layerArtifact(typeA, refBlobA, m4), 'test layer a');
const refsBLayer = referrer(layerArtifact(typeB, refBlobB, m4), 'test layer b');
const refsCLayer = referrer(layerArtifact(typeB, refBlobB, manifests[3] as Blob));
const refsIndex = referrer(
  {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    artifactType: 'application/vnd.food.stand',
    manifests: [
      { mediaType: OCI_MANIFEST, size: refsAConfig.content.length, digest: refsAConfig.digest },
      { mediaType: OCI_MANIFEST, size: refsALayer.content.length, digest: refsALayer.digest },
    ],
    subject: subjectOf(m4),
  },
  'test index',
);

let reg: TestRegistry | undefined;
let baseUrl: string;
let client: Client;
const ok2xx = (res: Response): void =>
  assert.ok(res.status >= 200 && res.status < 300, `${res.status} ${res.text}`);
const rel = (res: Response, digest?: string): string => {
  const u = new URL(String(res.headers.location), baseUrl);
  if (digest !== undefined) u.searchParams.set('digest', digest);
  return u.pathname + u.search;
};
async function putBlob(b: Blob, name = NAME): Promise<void> {
  const post = await client.req('POST', `/v2/${name}/blobs/uploads/`);
  const put = await client.req('PUT', rel(post, b.digest), {
    body: b.content,
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  ok2xx(put);
}
async function putManifest(ref: string, b: Blob, type = OCI_MANIFEST): Promise<Response> {
  return client.req('PUT', `/v2/${NAME}/manifests/${ref}`, {
    body: b.content,
    headers: { 'Content-Type': type },
  });
}

// REGISTRY_CONFORMANCE_URL=http://127.0.0.1:PORT runs the same checks against another registry.
const external = process.env.REGISTRY_CONFORMANCE_URL;
before(async () => {
  reg = external === undefined ? await startRegistry() : undefined;
  baseUrl = external ?? (reg as TestRegistry).url;
  client = new Client(baseUrl);
});
after(async () => {
  await reg?.close();
});

describe('pull', () => {
  let tag = '';
  test('setup: blobs, layer, manifests, a tag', async () => {
    await putBlob(configs[0] as Blob);
    await putBlob(configs[1] as Blob);
    await putBlob(layer);
    ok2xx(await putManifest('tagtest0', manifests[0] as Blob));
    ok2xx(await putManifest((manifests[1] as Blob).digest, manifests[1] as Blob));
    const list = await client.req('GET', `/v2/${NAME}/tags/list`);
    tag = (list.json as { tags: string[] }).tags[0] ?? '';
    assert.equal(tag, 'tagtest0');
  });
  test('HEAD and GET of a nonexistent blob are 404', async () => {
    assert.equal((await client.req('HEAD', `/v2/${NAME}/blobs/${dummyDigest}`)).status, 404);
    assert.equal((await client.req('GET', `/v2/${NAME}/blobs/${dummyDigest}`)).status, 404);
  });
  test('HEAD and GET of an existing blob are 200 with its digest', async () => {
    const head = await client.req('HEAD', `/v2/${NAME}/blobs/${(configs[0] as Blob).digest}`);
    assert.equal(head.status, 200);
    assert.equal(head.headers['docker-content-digest'], (configs[0] as Blob).digest);
    const get = await client.req('GET', `/v2/${NAME}/blobs/${(configs[0] as Blob).digest}`);
    assert.equal(get.status, 200);
    assert.deepEqual(get.body, (configs[0] as Blob).content);
  });
  test('HEAD and GET of a nonexistent manifest (.INVALID_MANIFEST_NAME) are 404', async () => {
    assert.equal((await client.req('HEAD', `/v2/${NAME}/manifests/.INVALID_MANIFEST_NAME`)).status, 404);
    assert.equal((await client.req('GET', `/v2/${NAME}/manifests/.INVALID_MANIFEST_NAME`)).status, 404);
  });
  test('HEAD and GET of manifests by digest and by tag are 200', async () => {
    const accept = { Accept: OCI_MANIFEST };
    for (const [ref, m] of [
      [(manifests[0] as Blob).digest, manifests[0]],
      [(manifests[1] as Blob).digest, manifests[1]],
      [tag, manifests[0]],
    ] as [string, Blob][]) {
      const head = await client.req('HEAD', `/v2/${NAME}/manifests/${ref}`, { headers: accept });
      assert.equal(head.status, 200);
      assert.equal(head.headers['docker-content-digest'], m.digest);
      const get = await client.req('GET', `/v2/${NAME}/manifests/${ref}`, { headers: accept });
      assert.equal(get.status, 200);
      assert.deepEqual(get.body, m.content);
    }
  });
  test('400 responses carry an OCI error body (sha256:totallywrong)', async () => {
    const res = await client.req('GET', `/v2/${NAME}/manifests/sha256:totallywrong`, {
      body: 'blablabla',
      headers: { 'Content-Type': OCI_MANIFEST },
    });
    assert.ok([400, 404].includes(res.status));
    if (res.status === 400) assert.ok(SPEC_CODES.includes(errorCode(res) ?? ''), res.text);
  });
  test('teardown: manifests then blobs', async () => {
    for (const m of [manifests[0], manifests[1]] as Blob[]) {
      assert.equal((await client.req('DELETE', `/v2/${NAME}/manifests/${m.digest}`)).status, 202);
    }
    for (const b of [configs[0], configs[1], layer] as Blob[]) {
      assert.equal((await client.req('DELETE', `/v2/${NAME}/blobs/${b.digest}`)).status, 202);
    }
  });
});

describe('push', () => {
  let last: Response;
  let prev: Response;
  test('streamed: PATCH with the blob in the body is 202, PUT with the digest is 201', async () => {
    const post = await client.req('POST', `/v2/${NAME}/blobs/uploads/`);
    assert.ok(post.headers.location);
    const patch = await client.req('PATCH', rel(post), {
      body: testBlobA.content,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(patch.status, 202);
    const put = await client.req('PUT', rel(patch, testBlobA.digest), {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': 0 },
    });
    assert.equal(put.status, 201);
    assert.ok(put.headers.location);
  });
  test('monolithic: GET of a nonexistent blob is 404', async () => {
    assert.equal((await client.req('GET', `/v2/${NAME}/blobs/${dummyDigest}`)).status, 404);
  });
  test('monolithic: POST with digest and blob is 201 and the blob is then served', async () => {
    const c = configs[1] as Blob;
    last = await client.req('POST', `/v2/${NAME}/blobs/uploads/?digest=${c.digest}`, {
      body: c.content,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(last.status, 201);
    assert.ok(last.headers.location);
    assert.equal((await client.req('GET', `/v2/${NAME}/blobs/${c.digest}`)).status, 200);
  });
  test('monolithic: POST gives a session, PUT of a blob and of a layer are 201', async () => {
    const post = await client.req('POST', `/v2/${NAME}/blobs/uploads/`);
    assert.equal(post.status, 202);
    const c = configs[1] as Blob;
    const put = await client.req('PUT', rel(post, c.digest), {
      body: c.content,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(put.status, 201);
    assert.ok(put.headers.location);
    assert.equal((await client.req('GET', `/v2/${NAME}/blobs/${c.digest}`)).status, 200);
    await putBlob(layer);
    assert.equal((await client.req('GET', `/v2/${NAME}/blobs/${layer.digest}`)).status, 200);
  });
  test('chunked: an out-of-order first chunk is 416', async () => {
    const post = await client.req('POST', `/v2/${NAME}/blobs/uploads/`, { headers: { 'Content-Length': 0 } });
    assert.ok(post.headers.location);
    const res = await client.req('PATCH', rel(post), {
      body: chunk2,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk2Range },
    });
    assert.equal(res.status, 416);
  });
  test('chunked: the first chunk is 202 with its Range', async () => {
    prev = await client.req('POST', `/v2/${NAME}/blobs/uploads/`, { headers: { 'Content-Length': 0 } });
    last = await client.req('PATCH', rel(prev), {
      body: chunk1,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk1Range },
    });
    assert.equal(last.status, 202);
    assert.equal(last.headers.range, chunk1Range);
  });
  test('chunked: retrying the previous chunk is 416', async () => {
    const res = await client.req('PATCH', rel(prev), {
      body: chunk1,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk1Range },
    });
    assert.equal(res.status, 416);
  });
  test('chunked: GET on the stale upload URL is 204 with Range and Location', async () => {
    last = await client.req('GET', rel(prev));
    assert.equal(last.status, 204);
    assert.ok(last.headers.location);
    assert.equal(last.headers.range, chunk1Range);
  });
  test('chunked: the second chunk is 202, the closing PUT is 201', async () => {
    last = await client.req('PATCH', rel(last), {
      body: chunk2,
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': chunk2Range },
    });
    assert.equal(last.status, 202);
    assert.ok(last.headers.location);
    const put = await client.req('PUT', rel(last, testBlobB.digest), {
      headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': 0 },
    });
    assert.equal(put.status, 201);
    assert.ok(put.headers.location);
    const get = await client.req('GET', `/v2/${NAME}/blobs/${testBlobB.digest}`);
    assert.deepEqual(get.body, testBlobB.content);
  });
  test('cross mount: without from and an unknown digest yields a session (202)', async () => {
    const res = await client.req('POST', `/v2/${CROSSMOUNT}/blobs/uploads/?mount=${dummyDigest}`);
    assert.equal(res.status, 202);
    assert.ok(res.headers.location);
  });
  test('cross mount: from another repository is 201, and the blob is served there', async () => {
    last = await client.req(
      'POST',
      `/v2/${CROSSMOUNT}/blobs/uploads/?mount=${testBlobA.digest}&from=${NAME}`,
    );
    assert.equal(last.status, 201);
    assert.equal(rel(last), `/v2/${CROSSMOUNT}/blobs/${testBlobA.digest}`);
    assert.equal((await client.req('GET', rel(last))).status, 200);
  });
  test('cross mount: without from, automatic content discovery is a 201', async () => {
    const res = await client.req('POST', `/v2/${CROSSMOUNT}/blobs/uploads/?mount=${testBlobA.digest}`);
    assert.equal(res.status, 201);
  });
  test('manifest upload: GET of a nonexistent manifest is 404', async () => {
    assert.equal((await client.req('GET', `/v2/${NAME}/manifests/.INVALID_MANIFEST_NAME`)).status, 404);
  });
  test('manifest upload: PUT under four tags, a manifest with no layers, GET by digest', async () => {
    for (let i = 0; i < 4; i++) {
      const res = await putManifest(`test${i}`, manifests[1] as Blob);
      assert.equal(res.status, 201);
      assert.ok(res.headers.location);
    }
    const empty = await putManifest('emptylayer', emptyLayerManifest);
    assert.equal(empty.status, 201);
    assert.ok(empty.headers.location);
    const get = await client.req('GET', `/v2/${NAME}/manifests/${(manifests[1] as Blob).digest}`, {
      headers: { Accept: OCI_MANIFEST },
    });
    assert.equal(get.status, 200);
  });
  test('teardown', async () => {
    for (const d of [(manifests[1] as Blob).digest, emptyLayerManifest.digest]) {
      assert.equal((await client.req('DELETE', `/v2/${NAME}/manifests/${d}`)).status, 202);
    }
    assert.ok(
      [202, 404].includes(
        (await client.req('DELETE', `/v2/${NAME}/blobs/${(configs[1] as Blob).digest}`)).status,
      ),
    );
    assert.equal((await client.req('DELETE', `/v2/${NAME}/blobs/${layer.digest}`)).status, 202);
  });
});

describe('content discovery', () => {
  let numTags = 4;
  test('setup: tags and the referrers fixtures (one pushed before its subject)', async () => {
    await putBlob(configs[2] as Blob);
    await putBlob(layer);
    for (let i = 0; i < numTags; i++) ok2xx(await putManifest(`test${i}`, manifests[2] as Blob));
    await putBlob(emptyJson);
    assert.equal(emptyJson.digest, 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a');
    await putBlob(refBlobA);
    for (const [ref, type] of [
      [refsAConfig, OCI_MANIFEST],
      [refsALayer, OCI_MANIFEST],
      [refsIndex, OCI_INDEX],
    ] as [Blob, string][]) {
      const res = await putManifest(ref.digest, ref, type);
      ok2xx(res);
      assert.equal(res.headers['oci-subject'], m4.digest);
    }
    await putBlob(configs[4] as Blob);
    ok2xx(await putManifest('tagtest0', m4));
    await putBlob(refBlobB);
    for (const ref of [refsBConfig, refsBLayer]) {
      const res = await putManifest(ref.digest, ref);
      ok2xx(res);
      assert.equal(res.headers['oci-subject'], m4.digest);
    }
    const c = await putManifest(refsCLayer.digest, refsCLayer);
    ok2xx(c);
    assert.equal(c.headers['oci-subject'], (manifests[3] as Blob).digest);
  });
  test('GET tags list is 200', async () => {
    const res = await client.req('GET', `/v2/${NAME}/tags/list`);
    assert.equal(res.status, 200);
    numTags = (res.json as { tags: string[] }).tags.length;
    assert.equal(numTags, 5);
  });
  test('the number of tags is limited by n', async () => {
    const res = await client.req('GET', `/v2/${NAME}/tags/list?n=${Math.floor(numTags / 2)}`);
    assert.equal(res.status, 200);
    assert.equal((res.json as { tags: string[] }).tags.length, Math.floor(numTags / 2));
    assert.match(
      String(res.headers.link),
      /^<\/v2\/conformance\/v11\/tags\/list\?n=2&last=[^>]+>; rel="next"$/,
    );
  });
  test('the start of the list is set by last', async () => {
    const n = Math.floor(numTags / 2);
    const first = (await client.req('GET', `/v2/${NAME}/tags/list?n=${n}`)).json as { tags: string[] };
    const res = await client.req('GET', `/v2/${NAME}/tags/list?n=${n}&last=${first.tags[n - 1]}`);
    assert.equal(res.status, 200);
    const page = (res.json as { tags: string[] }).tags;
    assert.ok(page.length <= n);
    assert.ok(!page.includes(first.tags[n - 1] as string));
    assert.ok(page.every((t) => t > (first.tags[n - 1] as string)));
  });
  test('referrers of a nonexistent digest: 200 with an empty index', async () => {
    const res = await client.req('GET', `/v2/${NAME}/referrers/${dummyDigest}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], OCI_INDEX);
    assert.equal((res.json as { manifests: unknown[] }).manifests.length, 0);
  });
  test('referrers of the subject: all five, each with its annotation', async () => {
    const res = await client.req('GET', `/v2/${NAME}/referrers/${m4.digest}`);
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-type'], OCI_INDEX);
    const list = (res.json as { manifests: { digest: string; annotations: Record<string, string> }[] })
      .manifests;
    assert.equal(list.length, 5);
    assert.notEqual(list[0]?.digest, list[1]?.digest);
    for (const d of list) {
      assert.equal(Object.keys(d.annotations).length, 1);
      assert.equal(d.annotations[annotationKey], annotationValues.get(d.digest));
    }
  });
  test('referrers filtered by artifactType: two, with OCI-Filters-Applied', async () => {
    const res = await client.req(
      'GET',
      `/v2/${NAME}/referrers/${m4.digest}?artifactType=${encodeURIComponent(typeA)}`,
    );
    assert.equal(res.status, 200);
    assert.equal(res.headers['oci-filters-applied'], 'artifactType');
    const list = (res.json as { manifests: { digest: string; annotations: Record<string, string> }[] })
      .manifests;
    assert.equal(list.length, 2);
    for (const d of list) assert.equal(d.annotations[annotationKey], annotationValues.get(d.digest));
  });
  test('referrers of a manifest never pushed: the one artifact naming it', async () => {
    const res = await client.req('GET', `/v2/${NAME}/referrers/${(manifests[3] as Blob).digest}`);
    assert.equal(res.status, 200);
    const list = (res.json as { manifests: { digest: string }[] }).manifests;
    assert.deepEqual(
      list.map((d) => d.digest),
      [refsCLayer.digest],
    );
  });
  test('teardown: manifests and tags, then blobs', async () => {
    for (const ref of [
      refsIndex.digest,
      (manifests[2] as Blob).digest,
      m4.digest,
      refsAConfig.digest,
      refsALayer.digest,
      'tagtest0',
      refsBConfig.digest,
      refsBLayer.digest,
      refsCLayer.digest,
    ]) {
      const res = await client.req('DELETE', `/v2/${NAME}/manifests/${ref}`);
      assert.ok([202, 404].includes(res.status), `${ref}: ${res.status}`);
    }
    for (const b of [configs[2], layer, configs[4], refBlobA, refBlobB, emptyJson] as Blob[]) {
      assert.equal((await client.req('DELETE', `/v2/${NAME}/blobs/${b.digest}`)).status, 202);
    }
    const after = await client.req('GET', `/v2/${NAME}/referrers/${m4.digest}`);
    assert.equal(
      (after.json as { manifests: unknown[] }).manifests.length,
      0,
      'deleting referrers empties the list',
    );
  });
});

describe('content management', () => {
  let numTags = 0;
  test('setup', async () => {
    await putBlob(configs[3] as Blob);
    await putBlob(layer);
    ok2xx(await putManifest('tagtest0', manifests[3] as Blob));
    const res = await client.req('GET', `/v2/${NAME}/tags/list`);
    numTags = (res.json as { tags: string[] }).tags.length;
    assert.ok(numTags >= 1);
  });
  test('DELETE of a tag is 202', async () => {
    assert.equal((await client.req('DELETE', `/v2/${NAME}/manifests/tagtest0`)).status, 202);
  });
  test('DELETE of the manifest by digest is 202 (or 404 when gone with its tag)', async () => {
    const res = await client.req('DELETE', `/v2/${NAME}/manifests/${(manifests[3] as Blob).digest}`);
    assert.ok([202, 404].includes(res.status));
  });
  test('GET of the deleted manifest is 404', async () => {
    assert.equal(
      (await client.req('GET', `/v2/${NAME}/manifests/${(manifests[3] as Blob).digest}`)).status,
      404,
    );
  });
  test('the tags list reflects the deletion', async () => {
    const res = await client.req('GET', `/v2/${NAME}/tags/list`);
    assert.equal(res.status, 200);
    assert.ok((res.json as { tags: string[] }).tags.length < numTags);
  });
  test('DELETE of blobs is 202, GET afterwards 404', async () => {
    assert.equal(
      (await client.req('DELETE', `/v2/${NAME}/blobs/${(configs[3] as Blob).digest}`)).status,
      202,
    );
    assert.equal((await client.req('DELETE', `/v2/${NAME}/blobs/${layer.digest}`)).status, 202);
    assert.equal((await client.req('GET', `/v2/${NAME}/blobs/${(configs[3] as Blob).digest}`)).status, 404);
  });
});
