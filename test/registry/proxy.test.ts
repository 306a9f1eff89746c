import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import type { Digest } from '../../src/common/digest.js';
import { type ConfigFile, loadConfigFile, resolveConfig } from '../../src/registry/config.js';
import { sendFileCounters } from '../../src/registry/http/socket-send.js';
import type { RepositoryName } from '../../src/registry/names.js';
import { selfSignedCertificate } from '../helpers/certs.js';
import {
  Client,
  errorCode,
  listFiles,
  type Response,
  request,
  sha256,
  sleep,
  startRegistry,
  type TestRegistry,
  tempDir,
} from './helpers.js';

/**
 * Proxy mode: a registry that is a pull-through cache of an upstream. The upstream is a real Strata
 * registry (in process), with and without token auth, or a small fake that misbehaves on purpose
 * (wrong bytes, short bodies, redirects, 503s). Each test pulls through the cache and then looks at
 * what the cache's storage holds.
 */
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
const ACCEPT = { Accept: `${OCI_INDEX}, ${OCI_MANIFEST}` };
const REPO = 'library/app';

interface PushedImage {
  index: Buffer;
  indexDigest: string;
  manifest: Buffer;
  manifestDigest: string;
  /** Config and layers by digest. */
  blobs: Map<string, Buffer>;
  /** The layer of 3 MiB (large enough for the socket paths). */
  bigLayer: string;
}

/** Pushes config + layers (one of 3 MiB), a manifest by digest, and a tagged index naming it. */
async function pushImage(client: Client, repo: string, tag: string): Promise<PushedImage> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed: Math.random() }));
  const layers = [randomBytes(3 << 20), Buffer.from(`small layer ${Math.random()}`), randomBytes(200 << 10)];
  const blobs = new Map<string, Buffer>();
  for (const blob of [config, ...layers]) blobs.set(await client.pushBlob(repo, blob), blob);
  const [configDigest, ...layerDigests] = [...blobs.keys()];
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: layers.map((l, i) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: layerDigests[i],
        size: l.length,
      })),
    }),
  );
  const manifestDigest = sha256(manifest);
  assert.equal((await client.pushManifest(repo, manifestDigest, manifest, OCI_MANIFEST)).status, 201);
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_INDEX,
      manifests: [
        {
          mediaType: OCI_MANIFEST,
          digest: manifestDigest,
          size: manifest.length,
          platform: { architecture: 'amd64', os: 'linux' },
        },
      ],
    }),
  );
  const pushed = await client.pushManifest(repo, tag, index, OCI_INDEX);
  assert.equal(pushed.status, 201, pushed.text);
  return {
    index,
    indexDigest: sha256(index),
    manifest,
    manifestDigest,
    blobs,
    bigLayer: layerDigests[0] ?? '',
  };
}

/** Pulls index → manifest → blobs through `client`, checking every byte and digest against `image`. */
async function pullAndCheck(
  client: Client,
  repo: string,
  reference: string,
  image: PushedImage,
): Promise<void> {
  const index = await client.req('GET', `/v2/${repo}/manifests/${reference}`, { headers: ACCEPT });
  assert.equal(index.status, 200, index.text);
  assert.equal(index.headers['docker-content-digest'], image.indexDigest);
  assert.equal(index.headers['content-type'], OCI_INDEX);
  assert.ok(index.body.equals(image.index));
  const child = (index.json as { manifests: { digest: string }[] }).manifests[0]?.digest ?? '';
  const manifest = await client.req('GET', `/v2/${repo}/manifests/${child}`, { headers: ACCEPT });
  assert.equal(manifest.status, 200, manifest.text);
  assert.equal(manifest.headers['content-type'], OCI_MANIFEST);
  assert.ok(manifest.body.equals(image.manifest));
  const parsed = manifest.json as { config: { digest: string }; layers: { digest: string }[] };
  for (const digest of [parsed.config.digest, ...parsed.layers.map((l) => l.digest)]) {
    const blob = await client.req('GET', `/v2/${repo}/blobs/${digest}`);
    assert.equal(blob.status, 200, blob.text);
    assert.equal(blob.headers['docker-content-digest'], digest);
    assert.equal(sha256(blob.body), digest);
    assert.ok(blob.body.equals(image.blobs.get(digest) ?? Buffer.alloc(0)));
  }
}

/** Whether the cache's storage holds the blob for the repository. */
async function cachedBlob(reg: TestRegistry, repo: string, digest: string): Promise<boolean> {
  return (await reg.registry.blobs.statInRepository(repo as RepositoryName, digest as Digest)) !== null;
}

async function cachedManifest(reg: TestRegistry, repo: string, digest: string): Promise<boolean> {
  return reg.registry.manifests.hasRevision(repo as RepositoryName, digest as Digest);
}

/** Waits for a request's leftovers (a cancelled upload session) to be cleaned up, then lists uploads. */
async function settledUploads(reg: TestRegistry): Promise<string[]> {
  let uploads: string[] = [];
  for (let i = 0; i < 40; i++) {
    uploads = listFiles(reg.root).filter((f) => f.includes('/_uploads/'));
    if (uploads.length === 0) break;
    await sleep(50);
  }
  return uploads;
}

function proxyConfig(upstream: string, extra: Partial<NonNullable<ConfigFile['proxy']>> = {}): ConfigFile {
  return { proxy: { remoteUrl: upstream, ...extra } };
}

describe('pull through the cache', () => {
  let upstream: TestRegistry;
  let proxy: TestRegistry;
  let image: PushedImage;
  let client: Client;

  before(async () => {
    upstream = await startRegistry();
    image = await pushImage(new Client(upstream.url), REPO, 'v1');
    proxy = await startRegistry(proxyConfig(upstream.url));
    client = new Client(proxy.url);
  });
  after(async () => {
    await proxy.close();
    await upstream.close();
  });

  test('HEAD of a blob not cached answers the upstream size and digest, and caches nothing', async () => {
    const res = await client.req('HEAD', `/v2/${REPO}/blobs/${image.bigLayer}`);
    assert.equal(res.status, 200);
    assert.equal(Number(res.headers['content-length']), 3 << 20);
    assert.equal(res.headers['docker-content-digest'], image.bigLayer);
    assert.equal(res.body.length, 0);
    assert.equal(await cachedBlob(proxy, REPO, image.bigLayer), false);
    assert.equal(await proxy.registry.blobs.statContent(image.bigLayer as Digest), null);
  });

  test('a pull by tag gives the upstream bytes and fills the cache, tag included', async () => {
    await pullAndCheck(client, REPO, 'v1', image);
    assert.equal(await proxy.registry.tags.resolve(REPO as RepositoryName, 'v1'), image.indexDigest);
    assert.ok(await cachedManifest(proxy, REPO, image.indexDigest));
    assert.ok(await cachedManifest(proxy, REPO, image.manifestDigest));
    for (const digest of image.blobs.keys()) assert.ok(await cachedBlob(proxy, REPO, digest), digest);
    assert.deepEqual(await settledUploads(proxy), []);
  });

  test('a cached large blob is served from the cache with sendfile, ranges too', async () => {
    const settled = async (): Promise<number> => {
      for (let last = -1; last !== sendFileCounters.bodies; ) {
        last = sendFileCounters.bodies;
        await sleep(100);
      }
      return sendFileCounters.bodies;
    };
    const before = await settled();
    const whole = await client.req('GET', `/v2/${REPO}/blobs/${image.bigLayer}`);
    assert.equal(sha256(whole.body), image.bigLayer);
    // The upstream is not asked for cached blobs: the one sendfile is the cache's.
    assert.equal((await settled()) - before, 1);
    const range = await client.req('GET', `/v2/${REPO}/blobs/${image.bigLayer}`, {
      headers: { Range: 'bytes=100-199' },
    });
    assert.equal(range.status, 206);
    assert.ok(range.body.equals((image.blobs.get(image.bigLayer) ?? Buffer.alloc(0)).subarray(100, 200)));
  });

  test('a pull by digest works on a cache that has not seen the tag', async () => {
    const fresh = await startRegistry(proxyConfig(upstream.url));
    try {
      await pullAndCheck(new Client(fresh.url), REPO, image.indexDigest, image);
      assert.equal(await fresh.registry.tags.resolve(REPO as RepositoryName, 'v1'), null);
      assert.ok(await cachedManifest(fresh, REPO, image.manifestDigest));
    } finally {
      await fresh.close();
    }
  });

  test('a Range of a blob not cached yet is served after the whole blob is cached', async () => {
    const fresh = await startRegistry(proxyConfig(upstream.url));
    try {
      const res = await new Client(fresh.url).req('GET', `/v2/${REPO}/blobs/${image.bigLayer}`, {
        headers: { Range: 'bytes=1000000-1000099' },
      });
      assert.equal(res.status, 206);
      assert.equal(res.headers['content-range'], `bytes 1000000-1000099/${3 << 20}`);
      const blob = image.blobs.get(image.bigLayer) ?? Buffer.alloc(0);
      assert.ok(res.body.equals(blob.subarray(1000000, 1000100)));
      assert.ok(await cachedBlob(fresh, REPO, image.bigLayer));
    } finally {
      await fresh.close();
    }
  });

  test('concurrent pulls of one missing blob all get it, and it is stored once', async () => {
    const fresh = await startRegistry(proxyConfig(upstream.url));
    try {
      const freshClient = new Client(fresh.url);
      const results = await Promise.all(
        [1, 2, 3].map(() => freshClient.req('GET', `/v2/${REPO}/blobs/${image.bigLayer}`)),
      );
      for (const res of results) assert.equal(sha256(res.body), image.bigLayer);
      assert.ok(await cachedBlob(fresh, REPO, image.bigLayer));
      assert.deepEqual(await settledUploads(fresh), []);
    } finally {
      await fresh.close();
    }
  });

  test('a client that goes away mid-blob leaves the download to finish into the cache', async () => {
    const fresh = await startRegistry(proxyConfig(upstream.url));
    try {
      await new Promise<void>((resolve, reject) => {
        const req = http.get(`${fresh.url}/v2/${REPO}/blobs/${image.bigLayer}`, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => undefined);
        req.setTimeout(5000, () => reject(new Error('no data')));
      });
      let cached = false;
      for (let i = 0; i < 50 && !cached; i++) {
        await sleep(50);
        cached = await cachedBlob(fresh, REPO, image.bigLayer);
      }
      assert.ok(cached);
    } finally {
      await fresh.close();
    }
  });

  test('unknown tags, manifests and blobs are 404 with the upstream code', async () => {
    const tag = await client.req('GET', `/v2/${REPO}/manifests/nope`);
    assert.equal(tag.status, 404);
    assert.equal(errorCode(tag), 'MANIFEST_UNKNOWN');
    const blob = await client.req('GET', `/v2/${REPO}/blobs/${sha256('not there')}`);
    assert.equal(blob.status, 404);
    assert.equal(errorCode(blob), 'BLOB_UNKNOWN');
    const manifest = await client.req('GET', `/v2/${REPO}/manifests/${sha256('not there')}`);
    assert.equal(manifest.status, 404);
    assert.equal(errorCode(manifest), 'MANIFEST_UNKNOWN');
  });

  test('tags/list is the upstream list, paginated by the upstream', async () => {
    await new Client(upstream.url).pushManifest(REPO, 'v2', image.index, OCI_INDEX);
    const all = await client.req('GET', `/v2/${REPO}/tags/list`);
    assert.equal(all.status, 200);
    assert.deepEqual(all.json, { name: REPO, tags: ['v1', 'v2'] });
    const page = await client.req('GET', `/v2/${REPO}/tags/list?n=1`);
    assert.deepEqual(page.json, { name: REPO, tags: ['v1'] });
    assert.equal(page.headers.link, `</v2/${REPO}/tags/list?n=1&last=v1>; rel="next"`);
  });

  test('pushes and deletes are 405 UNSUPPORTED and change nothing', async () => {
    const before = listFiles(proxy.root);
    const blob = Buffer.from('a blob for the cache');
    const attempts: Response[] = [
      await client.req('POST', `/v2/${REPO}/blobs/uploads/`),
      await client.req('POST', `/v2/${REPO}/blobs/uploads/?digest=${sha256(blob)}`, { body: blob }),
      await client.req('PATCH', `/v2/${REPO}/blobs/uploads/0b5c1d2e-1111-4222-8333-444455556666`, {
        body: blob,
      }),
      await client.req('PUT', `/v2/${REPO}/blobs/uploads/0b5c1d2e-1111-4222-8333-444455556666?digest=x`),
      await client.pushManifest(REPO, 'pushed', image.manifest, OCI_MANIFEST),
      await client.req('DELETE', `/v2/${REPO}/manifests/v1`),
      await client.req('DELETE', `/v2/${REPO}/manifests/${image.indexDigest}`),
      await client.req('DELETE', `/v2/${REPO}/blobs/${image.bigLayer}`),
    ];
    for (const res of attempts) {
      assert.equal(res.status, 405, res.text);
      assert.equal(errorCode(res), 'UNSUPPORTED');
    }
    assert.deepEqual(listFiles(proxy.root), before);
    assert.equal(await proxy.registry.tags.resolve(REPO as RepositoryName, 'pushed'), null);
  });
});

describe('tags follow the upstream while it is up, and come from the cache when it is not', () => {
  test('a moved tag is followed; a TTL serves the cached tag; a stopped upstream leaves the cache serving', async () => {
    const upstream = await startRegistry();
    const upstreamClient = new Client(upstream.url);
    const proxy = await startRegistry(proxyConfig(upstream.url));
    const lazy = await startRegistry(proxyConfig(upstream.url, { tagTtlSeconds: 3600 }));
    try {
      const first = await pushImage(upstreamClient, REPO, 'latest');
      await pullAndCheck(new Client(proxy.url), REPO, 'latest', first);
      await pullAndCheck(new Client(lazy.url), REPO, 'latest', first);

      const second = await pushImage(upstreamClient, REPO, 'latest');
      await pullAndCheck(new Client(proxy.url), REPO, 'latest', second);
      assert.equal(await proxy.registry.tags.resolve(REPO as RepositoryName, 'latest'), second.indexDigest);
      // Inside its TTL the lazy cache does not ask the upstream.
      const stale = await new Client(lazy.url).req('HEAD', `/v2/${REPO}/manifests/latest`);
      assert.equal(stale.headers['docker-content-digest'], first.indexDigest);

      const neverPulled = await upstreamClient.pushBlob(REPO, 'a blob nobody pulled');
      await upstream.close();
      const client = new Client(proxy.url);
      await pullAndCheck(client, REPO, 'latest', second);
      await pullAndCheck(client, REPO, second.indexDigest, second);
      const tags = await client.req('GET', `/v2/${REPO}/tags/list`);
      assert.deepEqual(tags.json, { name: REPO, tags: ['latest'] });
      const uncachedTag = await client.req('GET', `/v2/${REPO}/manifests/other`);
      assert.equal(uncachedTag.status, 503);
      assert.equal(errorCode(uncachedTag), 'UNAVAILABLE');
      const uncachedBlob = await client.req('GET', `/v2/${REPO}/blobs/${neverPulled}`);
      assert.equal(uncachedBlob.status, 503);
      assert.equal(errorCode(uncachedBlob), 'UNAVAILABLE');
    } finally {
      await proxy.close();
      await lazy.close();
      await upstream.close();
    }
  });
});

describe('an upstream with token auth', () => {
  const hash = (password: string): string => bcrypt.hashSync(password, 4);
  const authConfig = (
    users: Record<string, string>,
    repository: string,
  ): NonNullable<ConfigFile['auth']> => ({
    service: 'strata-upstream',
    issuer: 'strata-upstream',
    tokenTtlSeconds: 300,
    anonymousPull: false,
    users: Object.fromEntries(Object.entries(users).map(([u, p]) => [u, { password: hash(p), groups: [] }])),
    acl: Object.keys(users).map((u) => ({
      repository,
      users: [u],
      groups: [],
      actions: ['pull', 'push'] as const,
    })),
  });
  const basic = (user: string, password: string): Record<string, string> => ({
    Authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
  });
  let upstream: TestRegistry;
  let image: PushedImage;

  before(async () => {
    upstream = await startRegistry({ auth: authConfig({ mirror: 'mirror-pw' }, 'private/**') });
    image = await pushImage(new Client(upstream.url, basic('mirror', 'mirror-pw')), 'private/app', 'v1');
  });
  after(async () => {
    await upstream.close();
  });

  test('the cache answers the challenge with its credentials; its own clients pass its own auth', async () => {
    const proxy = await startRegistry({
      ...proxyConfig(upstream.url, { username: 'mirror', password: 'mirror-pw' }),
      auth: authConfig({ reader: 'reader-pw' }, '**'),
    });
    try {
      const anonymous = await request(proxy.url, 'GET', '/v2/private/app/manifests/v1');
      assert.equal(anonymous.status, 401);
      assert.equal(errorCode(anonymous), 'UNAUTHORIZED');
      // Upstream credentials are not the cache's: they open nothing here.
      const borrowed = await request(proxy.url, 'GET', '/v2/private/app/manifests/v1', {
        headers: basic('mirror', 'mirror-pw'),
      });
      assert.equal(borrowed.status, 401);
      await pullAndCheck(new Client(proxy.url, basic('reader', 'reader-pw')), 'private/app', 'v1', image);
      assert.ok(await cachedBlob(proxy, 'private/app', image.bigLayer));
    } finally {
      await proxy.close();
    }
  });

  test('with wrong credentials the cache answers 502 and caches nothing', async () => {
    const proxy = await startRegistry(proxyConfig(upstream.url, { username: 'mirror', password: 'wrong' }));
    try {
      const client = new Client(proxy.url);
      for (const p of [
        '/v2/private/app/manifests/v1',
        `/v2/private/app/manifests/${image.indexDigest}`,
        `/v2/private/app/blobs/${image.bigLayer}`,
      ]) {
        const res = await client.req('GET', p);
        assert.equal(res.status, 502, `${p}: ${res.text}`);
        assert.equal(errorCode(res), 'UNKNOWN');
        assert.match(res.text, /credentials/);
      }
      assert.equal((await client.req('GET', '/v2/')).status, 200);
      assert.deepEqual(
        listFiles(proxy.root).filter((f) => f.includes('/blobs/') || f.includes('/_manifests/')),
        [],
      );
    } finally {
      await proxy.close();
    }
  });
});

interface FakeBlob {
  body: Buffer;
  /** Declared Content-Length when it differs from the body's (the body is cut short then). */
  declared?: number;
  /** Answer with a redirect to this URL instead. */
  redirect?: string;
}

/**
 * An upstream that needs Basic auth and serves whatever it is told to under any digest: the cache
 * must not believe it.
 */
class FakeUpstream {
  readonly blobs = new Map<string, FakeBlob>();
  readonly manifests = new Map<string, { body: Buffer; digest?: string }>();
  failing = false;
  /** Authorization headers of `/storage/` requests (what the storage behind a redirect saw). */
  readonly seenAuthorization: (string | undefined)[] = [];
  private server: http.Server | null = null;
  url = '';

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server?.close(() => resolve());
      this.server?.closeAllConnections();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const url = req.url ?? '/';
    if (url.startsWith('/storage/')) {
      this.seenAuthorization.push(req.headers.authorization);
      const blob = this.blobs.get(url.slice('/storage/'.length));
      res.writeHead(blob ? 200 : 404, { 'Content-Length': blob?.body.length ?? 0 });
      res.end(blob?.body);
      return;
    }
    if (this.failing) {
      this.json(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'down' }] });
      return;
    }
    if (req.headers.authorization !== `Basic ${Buffer.from('fake:fake-pw').toString('base64')}`) {
      res.setHeader('WWW-Authenticate', 'Basic realm="fake"');
      this.json(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'who are you' }] });
      return;
    }
    if (url === '/v2/') {
      this.json(res, 200, {});
      return;
    }
    const blob = /^\/v2\/fake\/blobs\/(.+)$/.exec(url);
    const entry = blob ? this.blobs.get(blob[1] ?? '') : undefined;
    if (entry !== undefined) {
      this.sendBlob(req, res, entry);
      return;
    }
    const manifest = /^\/v2\/fake\/manifests\/(.+)$/.exec(url);
    const stored = manifest ? this.manifests.get(manifest[1] ?? '') : undefined;
    if (stored !== undefined) {
      const headers: Record<string, string | number> = {
        'Content-Type': OCI_MANIFEST,
        'Content-Length': stored.body.length,
      };
      if (stored.digest !== undefined) headers['Docker-Content-Digest'] = stored.digest;
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : stored.body);
      return;
    }
    this.json(res, 404, { errors: [{ code: blob ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', message: 'no' }] });
  }

  private sendBlob(req: http.IncomingMessage, res: http.ServerResponse, blob: FakeBlob): void {
    if (blob.redirect !== undefined) {
      res.writeHead(307, { Location: blob.redirect, 'Content-Length': 0 });
      res.end();
      return;
    }
    res.writeHead(200, { 'Content-Length': blob.declared ?? blob.body.length });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    if (blob.declared === undefined) {
      res.end(blob.body);
      return;
    }
    res.write(blob.body, () => res.socket?.destroy());
  }

  private json(res: http.ServerResponse, status: number, body: unknown): void {
    const data = Buffer.from(JSON.stringify(body));
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': data.length });
    res.end(data);
  }
}

/** A GET whose body must not arrive whole: resolves with how it failed. */
function brokenDownload(url: string): Promise<{ status: number; received: number; error: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let received = 0;
      res.on('data', (chunk: Buffer) => {
        received += chunk.length;
      });
      res.on('error', (err) => resolve({ status: res.statusCode ?? 0, received, error: err.message }));
      res.on('end', () => reject(new Error(`the download of ${received} bytes ended normally`)));
    });
    req.on('error', (err) => resolve({ status: 0, received: 0, error: err.message }));
  });
}

describe('a misbehaving upstream', () => {
  const fake = new FakeUpstream();
  let proxy: TestRegistry;
  let client: Client;
  const good = randomBytes(2 << 20);
  const goodDigest = sha256(good);
  /** An OCI manifest of `good` as its config and no layers. */
  const configOnlyManifest = (annotations?: Record<string, string>): Buffer =>
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: goodDigest,
          size: good.length,
        },
        layers: [],
        ...(annotations === undefined ? {} : { annotations }),
      }),
    );

  before(async () => {
    await fake.start();
    proxy = await startRegistry({
      ...proxyConfig(fake.url, { username: 'fake', password: 'fake-pw' }),
      manifests: { maxBytes: 4096 },
    });
    client = new Client(proxy.url);
  });
  after(async () => {
    await proxy.close();
    await fake.close();
  });

  test('a blob with one wrong byte at its end: the download breaks off and nothing is cached', async () => {
    const corrupt = Buffer.from(good);
    corrupt[corrupt.length - 1] = (corrupt[corrupt.length - 1] ?? 0) ^ 1;
    fake.blobs.set(goodDigest, { body: corrupt });
    const result = await brokenDownload(`${proxy.url}/v2/fake/blobs/${goodDigest}`);
    assert.equal(result.status, 200);
    assert.ok(result.received < good.length, `received ${result.received}`);
    assert.deepEqual(await settledUploads(proxy), []);
    assert.equal(await proxy.registry.blobs.statContent(goodDigest as Digest), null);
    assert.equal(await cachedBlob(proxy, 'fake', goodDigest), false);
  });

  test('a blob cut short of its Content-Length: the download breaks off and nothing is cached', async () => {
    fake.blobs.set(goodDigest, { body: good.subarray(0, good.length - 1000), declared: good.length });
    const result = await brokenDownload(`${proxy.url}/v2/fake/blobs/${goodDigest}`);
    assert.equal(result.status, 200);
    assert.deepEqual(await settledUploads(proxy), []);
    assert.equal(await proxy.registry.blobs.statContent(goodDigest as Digest), null);
  });

  test('a Range of a corrupt blob is a 502, and nothing is cached', async () => {
    fake.blobs.set(goodDigest, { body: randomBytes(good.length) });
    const res = await client.req('GET', `/v2/fake/blobs/${goodDigest}`, { headers: { Range: 'bytes=0-9' } });
    assert.equal(res.status, 502);
    assert.equal(errorCode(res), 'UNKNOWN');
    assert.match(res.text, /does not match its digest/);
    assert.equal(await proxy.registry.blobs.statContent(goodDigest as Digest), null);
  });

  test('a redirect to other storage is followed without the credentials, and the blob cached', async () => {
    const storage = new FakeUpstream();
    await storage.start();
    try {
      storage.blobs.set(goodDigest, { body: good });
      fake.blobs.set(goodDigest, { body: good, redirect: `${storage.url}/storage/${goodDigest}` });
      const res = await client.req('GET', `/v2/fake/blobs/${goodDigest}`);
      assert.equal(res.status, 200);
      assert.ok(res.body.equals(good));
      assert.deepEqual(storage.seenAuthorization, [undefined]);
      assert.ok(await cachedBlob(proxy, 'fake', goodDigest));
    } finally {
      await storage.close();
    }
  });

  test('a manifest that does not match its digest is a 502, and nothing is cached', async () => {
    const manifest = Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: {}, layers: [] }),
    );
    const claimed = sha256('something else');
    fake.manifests.set(claimed, { body: manifest });
    const res = await client.req('GET', `/v2/fake/manifests/${claimed}`);
    assert.equal(res.status, 502);
    assert.equal(errorCode(res), 'UNKNOWN');
    assert.equal(await cachedManifest(proxy, 'fake', claimed), false);
    assert.equal(await proxy.registry.blobs.statContent(claimed as Digest), null);
    assert.equal(await proxy.registry.blobs.statContent(sha256(manifest) as Digest), null);
  });

  test('a manifest over manifests.maxBytes is refused, and nothing is cached', async () => {
    const manifest = configOnlyManifest({ padding: 'x'.repeat(5000) });
    fake.manifests.set(sha256(manifest), { body: manifest });
    const res = await client.req('GET', `/v2/fake/manifests/${sha256(manifest)}`);
    assert.equal(res.status, 502);
    assert.match(res.text, /larger than 4096 bytes/);
    assert.equal(await cachedManifest(proxy, 'fake', sha256(manifest)), false);
  });

  test('a tag is served from the cache while the upstream answers 503', async () => {
    const manifest = configOnlyManifest();
    const digest = sha256(manifest);
    fake.manifests.set('stable', { body: manifest, digest });
    fake.manifests.set(digest, { body: manifest });
    const fresh = await client.req('GET', '/v2/fake/manifests/stable');
    assert.equal(fresh.status, 200);
    assert.equal(fresh.headers['docker-content-digest'], digest);
    fake.failing = true;
    try {
      const stale = await client.req('GET', '/v2/fake/manifests/stable');
      assert.equal(stale.status, 200);
      assert.ok(stale.body.equals(manifest));
      const missing = await client.req('GET', '/v2/fake/manifests/never-seen');
      assert.equal(missing.status, 503);
      assert.equal(errorCode(missing), 'UNAVAILABLE');
    } finally {
      fake.failing = false;
    }
  });
});

describe('an upstream over TLS', () => {
  test('is trusted through the proxy\'s "ca" file, and refused (503, nothing cached) without it', async () => {
    const dir = tempDir('proxy-tls');
    const { cert, key } = selfSignedCertificate(dir);
    const upstream = await startRegistry({ tls: { cert, key } });
    const trusting = await startRegistry(proxyConfig(upstream.url, { ca: cert }));
    const untrusting = await startRegistry(proxyConfig(upstream.url));
    try {
      assert.match(upstream.url, /^https:/);
      const image = await pushImage(new Client(upstream.url, {}, fs.readFileSync(cert)), REPO, 'tls');
      await pullAndCheck(new Client(trusting.url), REPO, 'tls', image);
      assert.ok(await cachedBlob(trusting, REPO, image.bigLayer));
      const refused = await new Client(untrusting.url).req('GET', `/v2/${REPO}/manifests/tls`, {
        headers: ACCEPT,
      });
      assert.equal(refused.status, 503, refused.text);
      assert.equal(errorCode(refused), 'UNAVAILABLE');
      assert.equal(await cachedManifest(untrusting, REPO, image.indexDigest), false);
    } finally {
      await Promise.all([trusting.close(), untrusting.close()]);
      await upstream.close();
    }
  });

  test('a "ca" file that cannot be read or holds no certificate is a configuration error', () => {
    const dir = tempDir('proxy-ca');
    const notPem = path.join(dir, 'not.pem');
    fs.writeFileSync(notPem, 'hello');
    assert.throws(
      () => resolveConfig(proxyConfig('https://127.0.0.1:1', { ca: notPem }), {}),
      /no PEM certificate/,
    );
    assert.throws(
      () => resolveConfig(proxyConfig('https://127.0.0.1:1', { ca: path.join(dir, 'missing.pem') }), {}),
      /cannot read the proxy's CA file/,
    );
  });
});

describe('proxy configuration', () => {
  const write = (json: unknown): string => {
    const file = path.join(tempDir('proxy-config'), 'config.json');
    fs.writeFileSync(file, JSON.stringify(json));
    return file;
  };

  test('remoteUrl (or docker-registry spelling remoteurl) becomes the upstream, TTL 0 by default', () => {
    const file = loadConfigFile(write({ proxy: { remoteurl: 'https://mirror.example:5000' } }));
    assert.equal(file.proxy?.remoteUrl, 'https://mirror.example:5000');
    assert.equal(resolveConfig(file, {}).proxy?.tagTtlSeconds, 0);
  });

  test('an upstream that is not an http(s) origin is refused with a clear message', () => {
    for (const [remoteUrl, message] of [
      ['ftp://mirror.example', /http:\/\/ or https:\/\//],
      ['not a url', /http:\/\/ or https:\/\//],
      ['https://mirror.example/v2/', /without a path/],
      ['https://u:p@mirror.example', /username and password/],
    ] as const) {
      assert.throws(() => loadConfigFile(write({ proxy: { remoteUrl } })), message);
    }
    assert.throws(() => loadConfigFile(write({ proxy: {} })), /remoteUrl/);
    assert.throws(
      () => loadConfigFile(write({ proxy: { remoteUrl: 'http://a', password: 'p' } })),
      /username/,
    );
  });
});
