import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { CHUNK_MIN, ConformanceApi, type DescriptorJson } from './conformance-api.js';
import { digestOf, generateDataSets, type TestData } from './conformance-data.js';
import { startRegistry, type TestRegistry } from './helpers.js';

/**
 * The OCI distribution-spec conformance suite (the current standalone one, conformance/run.go),
 * ported: the same sequence — ping, empty listings, every blob push API for sha256 and sha512,
 * range requests, well-known blobs, bad digests, then for each data set push → list → head → pull →
 * referrers → delete, and the manifest error cases. Every optional API is enabled (blob delete,
 * upload cancel, anonymous mount, tag parameters, referrers), as in the suite's 1.1 defaults.
 * The Go suite itself needs the Go toolchain, which is not available here.
 */
const REPO = 'conformance/repo1';
const REPO2 = 'conformance/repo2';

let api: ConformanceApi;

// REGISTRY_CONFORMANCE_URL=http://127.0.0.1:PORT runs the same checks against another registry.
const external = process.env.REGISTRY_CONFORMANCE_URL;
let reg: TestRegistry | undefined;
before(async () => {
  reg = external === undefined ? await startRegistry() : undefined;
  api = new ConformanceApi(external ?? (reg as TestRegistry).url);
});
after(async () => {
  await reg?.close();
});

test('ping: GET /v2/ answers 200 with the API version header', async () => {
  const res = await api.do('GET', '/v2/');
  assert.equal(res.status, 200);
  assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
});

describe('empty repository', () => {
  test('tag list of an unknown repository is 404 or an empty list', async () => {
    const list = await api.tagList(REPO);
    assert.deepEqual(list.tags, []);
  });
  test('referrers of an unknown digest are an empty index, never 404', async () => {
    const { index } = await api.referrers(REPO, digestOf(randomBytes(16)));
    assert.deepEqual(index.manifests, []);
  });
});

for (const algo of ['sha256', 'sha512'] as const) {
  describe(`${algo} blobs`, () => {
    const blob = (size = 512): { digest: string; data: Buffer } => {
      const data = randomBytes(size);
      return { digest: digestOf(data, algo), data };
    };
    const checkAndDelete = async (digest: string, data: Buffer, repo = REPO): Promise<void> => {
      await api.blobHeadExists(repo, digest, data);
      await api.blobGetExistsFull(repo, digest, data);
      await api.blobDelete(repo, digest);
    };

    test('get-missing: GET of a blob never pushed is 404', async () => {
      const res = await api.do('GET', `/v2/${REPO}/blobs/${blob().digest}`);
      assert.equal(res.status, 404);
    });
    test('post only', async () => {
      const b = blob();
      await api.blobPostOnly(REPO, b.digest, b.data);
      await checkAndDelete(b.digest, b.data);
    });
    test('post+put', async () => {
      const b = blob();
      await api.blobPostPut(REPO, b.digest, b.data);
      await checkAndDelete(b.digest, b.data);
    });
    test('chunked single', async () => {
      const b = blob();
      await api.blobPatchChunked(REPO, b.digest, b.data);
      await checkAndDelete(b.digest, b.data);
    });
    test('stream', async () => {
      const b = blob();
      await api.blobPatchStream(REPO, b.digest, b.data);
      await checkAndDelete(b.digest, b.data);
    });
    test('mount from another repository is a 201', async () => {
      const b = blob();
      await api.blobPostPut(REPO2, b.digest, b.data);
      assert.equal(await api.blobMount(REPO, REPO2, b.digest, b.data), 'mounted');
      await checkAndDelete(b.digest, b.data);
      await api.blobDelete(REPO2, b.digest);
    });
    test('mount anonymous (no from) is a 201 on a registry without access control', async () => {
      const b = blob();
      await api.blobPostPut(REPO2, b.digest, b.data);
      assert.equal(await api.blobMount(REPO, '', b.digest, b.data), 'mounted');
      await checkAndDelete(b.digest, b.data);
      await api.blobDelete(REPO2, b.digest);
    });
    test('mount missing falls back to an upload session (202)', async () => {
      const b = blob();
      assert.equal(await api.blobMount(REPO, REPO2, b.digest, b.data), 'fallback');
      await checkAndDelete(b.digest, b.data);
    });
    test('post cancel', async () => {
      await api.blobPostCancel(REPO);
    });
    const chunked = blob(CHUNK_MIN * 3 - 5);
    for (const [name, flags] of [
      ['chunked multi', {}],
      ['chunked multi and put chunk', { putLastChunk: true }],
      ['chunked out-of-order', { outOfOrder: true }],
      ['chunked out-of-order and put chunk', { outOfOrder: true, putLastChunk: true }],
    ] as const) {
      test(name, async () => {
        const b = blob(chunked.data.length);
        await api.blobPatchChunked(REPO, b.digest, b.data, flags);
        await checkAndDelete(b.digest, b.data);
      });
    }

    describe('range requests', () => {
      const b = blob(2048);
      before(async () => {
        await api.blobPostPut(REPO, b.digest, b.data);
      });
      after(async () => {
        await api.blobDelete(REPO, b.digest);
      });
      const cases: [string, number, Buffer | null, string][] = [
        ['500-1499', 206, b.data.subarray(500, 1500), 'bytes 500-1499/2048'],
        ['500-', 206, b.data.subarray(500), 'bytes 500-2047/2048'],
        ['-500', 206, b.data.subarray(1548), 'bytes 1548-2047/2048'],
        ['2000-5000', 206, b.data.subarray(2000), 'bytes 2000-2047/2048'],
        ['500-0', 416, null, ''],
        ['5000-10000', 416, null, ''],
      ];
      for (const [range, status, body, contentRange] of cases) {
        test(`range ${range}`, async () => {
          const res = await api.do('GET', `/v2/${REPO}/blobs/${b.digest}`, {
            headers: { Range: `bytes=${range}` },
          });
          assert.equal(res.status, status);
          if (body !== null) {
            assert.deepEqual(res.body, body);
            assert.equal(res.headers['content-length'], String(body.length));
            assert.equal(res.headers['content-range'], contentRange);
          }
        });
      }
    });

    for (const [name, data] of [
      ['empty', Buffer.alloc(0)],
      ['emptyJSON', Buffer.from('{}')],
    ] as const) {
      test(`well-known blob ${name}`, async () => {
        const digest = digestOf(data, algo);
        await api.blobPostPut(REPO, digest, data);
        await checkAndDelete(digest, data);
      });
    }

    describe('bad digests are refused with 400 and store nothing', () => {
      const corrupt = (): { digest: string; data: Buffer } => {
        const b = blob(CHUNK_MIN * 3 - 5);
        return { digest: b.digest, data: Buffer.concat([b.data, Buffer.from('oh no')]) };
      };
      const variants: [string, (b: { digest: string; data: Buffer }) => Promise<void>][] = [
        ['post only', (b) => api.blobPostOnly(REPO, b.digest, b.data, { expectBadDigest: true })],
        ['post+put', (b) => api.blobPostPut(REPO, b.digest, b.data, { expectBadDigest: true })],
        ['chunked', (b) => api.blobPatchChunked(REPO, b.digest, b.data, { expectBadDigest: true })],
        [
          'chunked and put chunk',
          (b) => api.blobPatchChunked(REPO, b.digest, b.data, { expectBadDigest: true, putLastChunk: true }),
        ],
        ['stream', (b) => api.blobPatchStream(REPO, b.digest, b.data, { expectBadDigest: true })],
      ];
      for (const [name, push] of variants) {
        test(`bad digest ${name}`, async () => {
          const b = corrupt();
          await push(b);
          const head = await api.do('HEAD', `/v2/${REPO}/blobs/${b.digest}`);
          assert.equal(head.status, 404);
          const actual = digestOf(b.data, algo);
          const headActual = await api.do('HEAD', `/v2/${REPO}/blobs/${actual}`);
          assert.equal(
            headActual.status,
            404,
            'the uploaded bytes are not a blob under their real digest either',
          );
        });
      }
    });
  });
}

/** Pushes one data set: blobs, then manifests by digest (children first), then tags. */
async function pushData(td: TestData): Promise<void> {
  for (const [digest, data] of td.blobs) await api.blobPostPut(REPO, digest, data);
  for (const digest of td.manOrder) {
    const body = td.manifests.get(digest) as Buffer;
    if (td.badDigest.has(digest)) {
      await api.manifestPut(REPO, digest, digest, body, { expectBadDigest: true });
      continue;
    }
    const tags = td.tagParam.has(digest) ? [...td.tags].filter(([, d]) => d === digest).map(([t]) => t) : [];
    const res = await api.manifestPut(REPO, digest, digest, body, { tags });
    for (const tag of tags) {
      const ociTags = String(res.headers['oci-tag'] ?? '')
        .split(',')
        .map((t) => t.trim());
      assert.ok(ociTags.includes(tag), `OCI-Tag header lists ${tag}`);
      td.tagPushed.add(tag);
    }
  }
  for (const [tag, digest] of td.tags) {
    if (td.tagPushed.has(tag)) continue;
    await api.manifestPut(REPO, tag, digest, td.manifests.get(digest) as Buffer);
    td.tagPushed.add(tag);
  }
}

async function listData(td: TestData): Promise<void> {
  const list = await api.tagList(REPO);
  for (const tag of td.tags.keys()) assert.ok(list.tags.includes(tag), `tag ${tag} listed`);
  if (list.tags.length >= 2) {
    const sorted = [...list.tags].sort();
    assert.deepEqual(list.tags, sorted, 'tags are listed in ASCII order');
    const end = Math.floor(sorted.length / 2);
    const last = sorted[end - 1] as string;
    const partial = await api.tagList(REPO, `?last=${encodeURIComponent(last)}`);
    for (const tag of sorted.slice(0, end))
      assert.ok(!partial.tags.includes(tag), `${tag} not after last=${last}`);
    for (const tag of sorted.slice(end)) assert.ok(partial.tags.includes(tag), `${tag} after last=${last}`);
  }
}

async function headAndPull(td: TestData): Promise<void> {
  for (const [tag, digest] of td.tags) {
    await api.manifestHeadExists(REPO, tag, digest, td.manifests.get(digest) as Buffer);
    await api.manifestGetExists(REPO, tag, digest, td.manifests.get(digest) as Buffer);
  }
  for (const digest of td.manOrder) {
    if (td.badDigest.has(digest)) continue;
    await api.manifestHeadExists(REPO, digest, digest, td.manifests.get(digest) as Buffer);
    await api.manifestGetExists(REPO, digest, digest, td.manifests.get(digest) as Buffer);
  }
  for (const [digest, data] of td.blobs) {
    await api.blobHeadExists(REPO, digest, data);
    await api.blobGetExistsFull(REPO, digest, data);
  }
}

function sameReferrer(resp: DescriptorJson, goal: DescriptorJson): boolean {
  return (
    resp.digest === goal.digest &&
    resp.mediaType === goal.mediaType &&
    resp.size === goal.size &&
    (resp.artifactType ?? '') === (goal.artifactType ?? '') &&
    Object.entries(goal.annotations ?? {}).every(([k, v]) => resp.annotations?.[k] === v)
  );
}

async function checkReferrers(td: TestData): Promise<void> {
  for (const [subject, goals] of td.referrers) {
    const { index } = await api.referrers(REPO, subject);
    for (const goal of goals) {
      assert.ok(
        index.manifests.some((r) => sameReferrer(r, goal)),
        `referrer ${goal.digest} of ${subject} listed`,
      );
    }
    for (const artifactType of new Set(goals.map((g) => g.artifactType ?? ''))) {
      const filtered = await api.referrers(REPO, subject, artifactType);
      assert.ok(
        (filtered.filters ?? '').split(',').some((f) => f.trim() === 'artifactType'),
        'OCI-Filters-Applied: artifactType',
      );
      for (const goal of goals.filter((g) => (g.artifactType ?? '') === artifactType)) {
        assert.ok(
          filtered.index.manifests.some((r) => sameReferrer(r, goal)),
          `filtered referrer ${goal.digest}`,
        );
      }
      for (const r of filtered.index.manifests)
        assert.equal(r.artifactType ?? '', artifactType, 'filter applied');
    }
  }
}

async function deleteData(td: TestData): Promise<void> {
  for (const tag of td.tags.keys()) if (td.tagPushed.has(tag)) await api.manifestDelete(REPO, tag);
  for (const digest of [...td.manOrder].reverse()) await api.manifestDelete(REPO, digest);
  for (const digest of td.blobs.keys()) await api.blobDelete(REPO, digest);
}

describe('data sets: push, list, head, pull, referrers, delete', () => {
  for (const td of generateDataSets()) {
    test(td.name, async () => {
      await pushData(td);
      await listData(td);
      await headAndPull(td);
      await checkReferrers(td);
      await deleteData(td);
    });
  }
});

describe('manifest errors', () => {
  test('missing manifest by digest is 404', async () => {
    const res = await api.do('GET', `/v2/${REPO}/manifests/${digestOf(randomBytes(1024))}`);
    assert.equal(res.status, 404);
  });
  test('missing manifest by tag is 404', async () => {
    const res = await api.do('GET', `/v2/${REPO}/manifests/missing-${randomBytes(8).toString('hex')}`);
    assert.equal(res.status, 404);
  });
  test('invalid digest format: PUT is 400, GET is 400 or 404', async () => {
    const data = generateDataSets().find((d) => d.name === 'image') as TestData;
    const manifestDigest = data.manOrder[0] as string;
    for (const [digest, body] of data.blobs) await api.blobPostPut(REPO, digest, body);
    const put = await api.do('PUT', `/v2/${REPO}/manifests/sha256:baddigeststring`, {
      body: data.manifests.get(manifestDigest),
      headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    });
    assert.equal(put.status, 400);
    const get = await api.do('GET', `/v2/${REPO}/manifests/sha256:baddigeststring`);
    assert.ok([400, 404].includes(get.status));
    for (const digest of data.blobs.keys()) await api.blobDelete(REPO, digest);
  });
});
