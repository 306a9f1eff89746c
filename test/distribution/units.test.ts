import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import type { Digest } from '../../src/common/digest.js';
import { Conflict } from '../../src/common/errors.js';
import { FileContentStore, type Ingest } from '../../src/content/store.js';
import { parseRegistryAuthHeader } from '../../src/distribution/auth.js';
import { formatRegistryErrors, registryError } from '../../src/distribution/errors.js';
import { RegistryHosts, serverAddressDomain } from '../../src/distribution/hosts.js';
import { Limiter } from '../../src/distribution/limiter.js';
import {
  buildManifest,
  chooseManifest,
  parseManifest,
  parsePlatform,
} from '../../src/distribution/manifest.js';
import { humanSize, progressBar } from '../../src/distribution/progress.js';
import { pullReference } from '../../src/distribution/service.js';
import { MediaType } from '../../src/images/config.js';
import { referenceString } from '../../src/images/reference.js';
import { tempDir } from './helpers.js';

const digestOf = (data: Buffer | string): Digest =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

describe('X-Registry-Auth', () => {
  const json = { username: 'alice', password: 'p+w/=?', serveraddress: '127.0.0.1:5000' };
  test('base64url with padding (docker CLI), standard base64 (dockerode), and none', () => {
    const url = Buffer.from(JSON.stringify(json)).toString('base64url');
    const std = Buffer.from(JSON.stringify(json)).toString('base64');
    assert.deepEqual(parseRegistryAuthHeader(url), { username: 'alice', password: 'p+w/=?' });
    assert.deepEqual(
      parseRegistryAuthHeader(`${url}==`.slice(0, url.length + ((4 - (url.length % 4)) % 4))),
      {
        username: 'alice',
        password: 'p+w/=?',
      },
    );
    assert.deepEqual(parseRegistryAuthHeader(std), { username: 'alice', password: 'p+w/=?' });
    assert.deepEqual(parseRegistryAuthHeader('e30='), {});
    assert.deepEqual(parseRegistryAuthHeader(undefined), {});
    assert.deepEqual(parseRegistryAuthHeader('not base64 json!'), {});
    assert.deepEqual(parseRegistryAuthHeader(Buffer.from('[1,2]').toString('base64')), {});
  });
  test('the `auth` field and tokens', () => {
    const auth = Buffer.from(JSON.stringify({ auth: Buffer.from('bob:secret').toString('base64') })).toString(
      'base64url',
    );
    assert.deepEqual(parseRegistryAuthHeader(auth), { username: 'bob', password: 'secret' });
    const tokens = Buffer.from(
      JSON.stringify({ identitytoken: 'refresh', registrytoken: 'bearer' }),
    ).toString('base64url');
    assert.deepEqual(parseRegistryAuthHeader(tokens), { identityToken: 'refresh', registryToken: 'bearer' });
  });
});

describe('progress format', () => {
  test('sizes and bars as dockerd renders them', () => {
    assert.equal(humanSize(128), '128B');
    assert.equal(humanSize(41472), '41.47kB');
    assert.equal(humanSize(1982401), '1.982MB');
    assert.equal(humanSize(1_500_000_000), '1.5GB');
    assert.equal(
      progressBar(41472, 1982401),
      '[=>                                                 ]  41.47kB/1.982MB',
    );
    assert.equal(
      progressBar(2007040, 1982401),
      '[==================================================>]  2.007MB',
    );
    assert.equal(
      progressBar(128, 128),
      '[==================================================>]     128B/128B',
    );
    assert.equal(progressBar(0, 0), '');
  });
});

describe('manifests', () => {
  const descriptor = (architecture: string, variant?: string) => ({
    mediaType: MediaType.ociManifest,
    digest: digestOf(architecture + (variant ?? '')),
    size: 10,
    platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
  });
  const index = (...manifests: ReturnType<typeof descriptor>[]) => ({ schemaVersion: 2 as const, manifests });

  test('an index gives the entry for the wanted platform', () => {
    const amd = descriptor('amd64');
    assert.equal(
      chooseManifest(index(descriptor('arm64', 'v8'), amd), { os: 'linux', architecture: 'amd64' }, 'x')
        .digest,
      amd.digest,
    );
    const v7 = descriptor('arm', 'v7');
    assert.equal(
      chooseManifest(
        index(descriptor('arm', 'v6'), v7),
        { os: 'linux', architecture: 'arm', variant: 'v7' },
        'x',
      ).digest,
      v7.digest,
    );
  });
  test('an index without the platform is refused, naming what it has', () => {
    assert.throws(
      () =>
        chooseManifest(
          index(descriptor('arm64', 'v8'), descriptor('s390x')),
          { os: 'linux', architecture: 'amd64' },
          'reg/x:1',
        ),
      (err: Error & { status?: number }) =>
        err.status === 404 &&
        /no matching manifest for linux\/amd64 in the manifest list entries of reg\/x:1 \(available: linux\/arm64\/v8, linux\/s390x\)/.test(
          err.message,
        ),
    );
  });
  test('parsing by media type, by shape, and schema 1 refused', () => {
    const m = {
      schemaVersion: 2,
      config: { mediaType: MediaType.dockerConfig, digest: digestOf('c'), size: 1 },
      layers: [],
    };
    assert.equal(
      parseManifest(Buffer.from(JSON.stringify(m)), MediaType.dockerManifest).mediaType,
      MediaType.dockerManifest,
    );
    assert.equal(parseManifest(Buffer.from(JSON.stringify(m)), 'application/json').kind, 'manifest');
    assert.equal(
      parseManifest(Buffer.from(JSON.stringify(index(descriptor('amd64')))), undefined).kind,
      'index',
    );
    assert.throws(
      () => parseManifest(Buffer.from('{"schemaVersion":1,"fsLayers":[]}'), undefined),
      /schema 1/,
    );
    assert.throws(() => parseManifest(Buffer.from('{'), MediaType.ociManifest), /invalid manifest/);
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.throws(() => parsePlatform('linux'), /invalid platform/);
  });
  test('a push writes Docker schema 2 for Docker layers and OCI otherwise', () => {
    const config = { digest: digestOf('config'), size: 6 };
    const docker = buildManifest(config, [
      { blobDigest: digestOf('a'), blobSize: 1, mediaType: MediaType.dockerLayerGzip },
    ]);
    assert.equal(docker.mediaType, MediaType.dockerManifest);
    assert.equal(docker.digest, digestOf(docker.bytes));
    const parsed = JSON.parse(docker.bytes.toString()) as { config: { mediaType: string } };
    assert.equal(parsed.config.mediaType, MediaType.dockerConfig);
    const mixed = buildManifest(config, [
      { blobDigest: digestOf('a'), blobSize: 1, mediaType: MediaType.dockerLayerGzip },
      { blobDigest: digestOf('b'), blobSize: 1, mediaType: MediaType.ociLayer },
    ]);
    assert.equal(mixed.mediaType, MediaType.ociManifest);
    const layers = (JSON.parse(mixed.bytes.toString()) as { layers: Array<{ mediaType: string }> }).layers;
    assert.deepEqual(
      layers.map((l) => l.mediaType),
      [MediaType.ociLayerGzip, MediaType.ociLayer],
    );
  });
});

describe('references and hosts', () => {
  test('fromImage + tag as dockerd combines them', () => {
    assert.equal(referenceString(pullReference('bb', null)), 'docker.io/library/bb:latest');
    assert.equal(referenceString(pullReference('127.0.0.1:5000/x/y', 'v1')), '127.0.0.1:5000/x/y:v1');
    assert.equal(referenceString(pullReference('127.0.0.1:5000/x:old', 'v2')), '127.0.0.1:5000/x:v2');
    const digest = digestOf('m');
    assert.equal(referenceString(pullReference('127.0.0.1:5000/x', digest)), `127.0.0.1:5000/x@${digest}`);
    assert.equal(
      referenceString(pullReference(`127.0.0.1:5000/x@${digest}`, null)),
      `127.0.0.1:5000/x@${digest}`,
    );
    assert.throws(() => pullReference('UPPER', null), /lowercase/);
    assert.throws(() => pullReference('x', 'sha256:nothex'), /invalid/);
  });
  test('plain HTTP only for loopback and --insecure-registry entries', () => {
    const hosts = new RegistryHosts(['reg.internal:5000', '10.0.0.0/8', 'plain.example']);
    for (const h of [
      '127.0.0.1:5000',
      'localhost:80',
      '[::1]:5000',
      '127.5.5.5',
      'reg.internal:5000',
      '10.1.2.3:443',
      'plain.example:8443',
    ]) {
      assert.equal(hosts.isInsecure(h), true, h);
    }
    for (const h of ['registry-1.docker.io', 'reg.internal:5001', '11.0.0.1:5000', 'example.com']) {
      assert.equal(hosts.isInsecure(h), false, h);
    }
    assert.equal(hosts.endpointHost('docker.io'), 'registry-1.docker.io');
    assert.equal(hosts.endpointHost('127.0.0.1:5000'), '127.0.0.1:5000');
    assert.throws(() => new RegistryHosts(['10.0.0.0/40']), /invalid insecure registry/);
  });
  test('login server addresses', () => {
    assert.equal(serverAddressDomain('https://index.docker.io/v1/'), 'docker.io');
    assert.equal(serverAddressDomain(''), 'docker.io');
    assert.equal(serverAddressDomain('http://127.0.0.1:5000/'), '127.0.0.1:5000');
    assert.equal(serverAddressDomain('Reg.Example:443'), 'reg.example:443');
  });
  test('registry error bodies read like Docker errors', () => {
    assert.equal(
      formatRegistryErrors([{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' }]),
      'manifest unknown: manifest unknown',
    );
    assert.equal(
      registryError(
        403,
        Buffer.from('{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}'),
      ).message,
      'denied: requested access to the resource is denied',
    );
    const plain = registryError(502, Buffer.from('<html>bad gateway</html>'));
    assert.equal(plain.message, 'received unexpected HTTP status: 502 Bad Gateway');
    assert.equal(plain.status, 500);
    assert.equal(registryError(404, Buffer.alloc(0)).status, 404);
  });
});

describe('resumable ingest', () => {
  const setup = (): { store: FileContentStore; root: string } => {
    const root = tempDir('ingest');
    return { store: new FileContentStore(root), root };
  };
  const readAll = async (stream: Readable): Promise<Buffer> => {
    const parts: Buffer[] = [];
    for await (const chunk of stream) parts.push(chunk as Buffer);
    return Buffer.concat(parts);
  };

  test('keeps what arrived, resumes after it, and a follower sees every byte once committed', async () => {
    const { store, root } = setup();
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const expected = { digest: digestOf(data), size: data.length };
    const first = await store.openIngest('pull-x', expected);
    await pipeline(Readable.from([data.subarray(0, 1_000_000)]), first.append());
    assert.equal(first.size, 1_000_000);
    await assert.rejects(store.openIngest('pull-x', expected), Conflict);
    await first.close({ keep: true });
    assert.equal(fs.statSync(path.join(root, 'content', 'ingest', 'pull-x')).size, 1_000_000);

    const second = await store.openIngest('pull-x', expected);
    assert.equal(second.size, 1_000_000, 'resumes after the bytes on disk');
    const follower = readAll(second.follow());
    const rest = data.subarray(1_000_000);
    const parts = [rest.subarray(0, 500_000), rest.subarray(500_000)];
    await pipeline(Readable.from(parts), second.append());
    const result = await second.commit();
    assert.deepEqual(result, { digest: expected.digest, size: data.length, created: true });
    assert.ok((await follower).equals(data));
    assert.ok(store.has(expected.digest));
    assert.deepEqual(fs.readdirSync(path.join(root, 'content', 'ingest')), []);
  });

  test('appendSync takes bytes from a reused buffer; early and late followers and a kept ingest see them all', async () => {
    const { store, root } = setup();
    const data = randomBytes(2 * 1024 * 1024 + 5);
    const expected = { digest: digestOf(data), size: data.length };
    const ingest = await store.openIngest('pull-sync', expected);
    const early = readAll(ingest.follow());
    const scratch = Buffer.alloc(64 * 1024);
    const feed = (target: Ingest, from: number, to: number): void => {
      for (let at = from; at < to; at += scratch.length) {
        const n = data.copy(scratch, 0, at, Math.min(to, at + scratch.length));
        target.appendSync(scratch.subarray(0, n));
        scratch.fill(0xee); // the source reuses its buffer at once
      }
    };
    feed(ingest, 0, 1_000_000);
    assert.equal(ingest.size, 1_000_000);
    // Joins after the start: reads what is in the file, then takes new bytes live.
    const late = readAll(ingest.follow());
    // Both followers fail as the ingest closes: watch for it before closing, or the rejections are
    // unhandled for a moment (which node:test reports as a failure).
    const earlyFails = assert.rejects(early, /closed before its blob was complete/);
    const lateFails = assert.rejects(late, /closed before its blob was complete/);
    await ingest.close({ keep: true });
    assert.equal(fs.statSync(path.join(root, 'content', 'ingest', 'pull-sync')).size, 1_000_000);
    await earlyFails;
    await lateFails;

    const again = await store.openIngest('pull-sync', expected);
    assert.equal(again.size, 1_000_000);
    const follower = readAll(again.follow());
    feed(again, 1_000_000, 1_500_000);
    const midway = readAll(again.follow());
    feed(again, 1_500_000, data.length);
    assert.equal((await again.commit()).digest, expected.digest);
    assert.ok((await follower).equals(data));
    assert.ok((await midway).equals(data));
    assert.ok(
      fs.readFileSync(path.join(root, 'content', 'blobs', 'sha256', expected.digest.slice(7))).equals(data),
    );
  });

  test('feed hands over every byte once, without copies: early, late, after a resume; it ends when verified', async () => {
    const { store } = setup();
    const data = randomBytes(3 * 1024 * 1024 + 11);
    const expected = { digest: digestOf(data), size: data.length };
    const scratch = Buffer.alloc(64 * 1024);
    const append = (target: Ingest, from: number, to: number): void => {
      for (let at = from; at < to; at += scratch.length) {
        const n = data.copy(scratch, 0, at, Math.min(to, at + scratch.length));
        target.appendSync(scratch.subarray(0, n));
        scratch.fill(0xee);
      }
    };
    const collector = (): { parts: Buffer[]; consume: (chunk: Buffer) => void; borrowed: () => boolean } => {
      const parts: Buffer[] = [];
      let sawScratch = false;
      return {
        parts,
        consume: (chunk) => {
          if (chunk.buffer === scratch.buffer) sawScratch = true;
          parts.push(Buffer.from(chunk));
        },
        borrowed: () => sawScratch,
      };
    };
    const first = await store.openIngest('pull-feed', expected);
    append(first, 0, 1_000_000);
    await first.close({ keep: true });

    const ingest = await store.openIngest('pull-feed', expected);
    const early = collector();
    const earlyDone = ingest.feed(early.consume);
    append(ingest, 1_000_000, 2_000_000);
    // A second consumer joins midway: it reads the file up to the writer, then takes chunks live.
    const late = collector();
    const lateDone = ingest.feed(late.consume);
    // Both catch up from the file (a few reads on the pool), then get the rest as it is appended.
    await new Promise<void>((resolve) => setTimeout(resolve, 200));
    append(ingest, 2_000_000, data.length);
    // A consumer that throws is dropped with its error; the ingest goes on.
    const failing = ingest.feed(() => {
      throw new Error('invalid layer tar');
    });
    await assert.rejects(failing, /invalid layer tar/);
    let settled = false;
    void earlyDone.then(() => {
      settled = true;
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.equal(settled, false, 'not before the digest is verified');
    assert.equal((await ingest.commit()).digest, expected.digest);
    await earlyDone;
    await lateDone;
    assert.ok(Buffer.concat(early.parts).equals(data));
    assert.ok(Buffer.concat(late.parts).equals(data));
    assert.ok(early.borrowed() && late.borrowed(), 'live chunks are the writer’s own buffer');
    // After the commit, a feed reads the stored blob.
    const after = collector();
    await ingest.feed(after.consume);
    assert.ok(Buffer.concat(after.parts).equals(data));
  });

  test('feed fails on a digest mismatch, on close and on abort', async () => {
    const { store } = setup();
    const data = Buffer.from('the real content');
    const wrong = await store.openIngest('pull-feed-bad', { digest: digestOf('other'), size: data.length });
    const mismatch = assert.rejects(
      wrong.feed(() => undefined),
      /digest mismatch/,
    );
    wrong.appendSync(data);
    await assert.rejects(wrong.commit(), /digest mismatch/);
    await mismatch;

    const closing = await store.openIngest('pull-feed-close', { digest: digestOf(data), size: data.length });
    const closed = assert.rejects(
      closing.feed(() => undefined),
      /closed before its blob was complete/,
    );
    closing.appendSync(data.subarray(0, 4));
    await closing.close({ keep: true });
    await closed;

    const aborting = await store.openIngest('pull-feed-close', { digest: digestOf(data), size: data.length });
    const controller = new AbortController();
    const parts: Buffer[] = [];
    const aborted = assert.rejects(
      aborting.feed((chunk) => parts.push(Buffer.from(chunk)), controller.signal),
      /stop/,
    );
    for (let i = 0; i < 3; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    controller.abort(new Error('stop'));
    await aborted;
    aborting.appendSync(data.subarray(4));
    assert.equal(Buffer.concat(parts).toString(), 'the ', 'only the bytes before the abort');
    assert.equal((await aborting.commit()).digest, digestOf(data));
  });

  test('a digest mismatch removes the data and fails the followers', async () => {
    const { store, root } = setup();
    const data = Buffer.from('the real content');
    const ingest = await store.openIngest('pull-y', {
      digest: digestOf('something else'),
      size: data.length,
    });
    const followerFails = assert.rejects(readAll(ingest.follow()), /digest mismatch/);
    await pipeline(Readable.from([data]), ingest.append());
    await assert.rejects(ingest.commit(), /digest mismatch/);
    await followerFails;
    assert.deepEqual(fs.readdirSync(path.join(root, 'content', 'ingest')), []);
    assert.equal(store.has(digestOf(data)), false);
  });

  test('more bytes than expected are refused; a longer leftover is started over', async () => {
    const { store, root } = setup();
    const data = Buffer.from('0123456789');
    const ingest = await store.openIngest('pull-z', { digest: digestOf(data), size: data.length });
    await assert.rejects(
      pipeline(Readable.from([Buffer.concat([data, data])]), ingest.append()),
      /size mismatch/,
    );
    await ingest.close({ keep: true });
    fs.writeFileSync(path.join(root, 'content', 'ingest', 'pull-z'), Buffer.alloc(64));
    const again = await store.openIngest('pull-z', { digest: digestOf(data), size: data.length });
    assert.equal(again.size, 0);
    await pipeline(Readable.from([data]), again.append());
    assert.equal((await again.commit()).digest, digestOf(data));
  });
});

describe('limiter', () => {
  test('serves waiters in order and lets an aborted waiter go', async () => {
    const limiter = new Limiter(1);
    const release = await limiter.acquire();
    assert.equal(limiter.isFull, true);
    const order: string[] = [];
    const controller = new AbortController();
    const b = limiter.acquire().then((r) => {
      order.push('b');
      return r;
    });
    const cancelled = limiter.acquire(controller.signal).catch(() => 'aborted');
    const c = limiter.acquire().then((r) => {
      order.push('c');
      return r;
    });
    controller.abort();
    assert.equal(await cancelled, 'aborted');
    release();
    (await b)();
    (await c)();
    assert.deepEqual(order, ['b', 'c']);
    assert.equal(limiter.isFull, false);
  });
});
