import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Digest } from '../../src/common/digest.js';
import { resolveConfig } from '../../src/registry/config.js';
import { collectGarbage, type GcOptions } from '../../src/registry/gc.js';
import { Registry } from '../../src/registry/registry.js';
import type { StorageDriver } from '../../src/registry/storage/driver.js';
import { FilesystemDriver } from '../../src/registry/storage/filesystem.js';
import {
  Client,
  errorCode,
  listFiles,
  type PushedImage,
  run,
  STRATA_BIN,
  sha256,
  sleep,
  startRegistry,
  type TestRegistry,
  tempDir,
  withRegistry,
} from './helpers.js';

/**
 * Garbage collection: what a stored manifest references stays, the rest goes; `--dry-run` changes
 * nothing; `--delete-untagged` also drops manifests no tag reaches (but keeps referrers of kept ones);
 * the grace period protects pushes in flight; and a manifest pushed while gc runs never ends up
 * pointing at content gc removed.
 */
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function blobFile(root: string, digest: string): string {
  const [alg, hex] = digest.split(':') as [string, string];
  return path.join(root, 'docker/registry/v2/blobs', alg, hex.slice(0, 2), hex, 'data');
}

function gcRegistry(root: string, driver?: StorageDriver): Registry {
  const config = resolveConfig({}, { root, addr: '127.0.0.1:0' }, root);
  return new Registry(config, driver ?? new FilesystemDriver(root));
}

const options = (extra: Partial<GcOptions> = {}): GcOptions => ({
  dryRun: false,
  deleteUntagged: false,
  gracePeriodSeconds: 0,
  uploadMaxAgeSeconds: 3600,
  ...extra,
});

/** Backdates every file under the root, as if it had all been pushed an hour ago. */
function age(root: string, seconds = 3600): void {
  const past = new Date(Date.now() - seconds * 1000);
  for (const f of listFiles(root)) fs.utimesSync(path.join(root, f), past, past);
}

describe('mark and sweep', () => {
  let reg: TestRegistry;
  let client: Client;
  let kept: PushedImage;
  let deleted: PushedImage;
  let untagged: PushedImage;
  let referrer: PushedImage;
  let orphan: string;

  before(async () => {
    reg = await startRegistry();
    client = new Client(reg.url);
    kept = await client.pushImage('gc/app', 'keep');
    deleted = await client.pushImage('gc/app', 'gone');
    assert.equal((await client.req('DELETE', `/v2/gc/app/manifests/${deleted.digest}`)).status, 202);
    untagged = await client.pushImage('gc/app', 'temp');
    assert.equal((await client.req('DELETE', '/v2/gc/app/manifests/temp')).status, 202);
    referrer = await client.pushImage('gc/app', 'sig', 1, {
      artifactType: 'application/vnd.example.signature',
      subject: { mediaType: OCI_MANIFEST, digest: kept.digest, size: kept.size },
    });
    assert.equal((await client.req('DELETE', '/v2/gc/app/manifests/sig')).status, 202);
    orphan = await client.pushBlob('gc/app', 'an orphan blob nobody references');
    age(reg.root);
  });
  after(async () => {
    await reg.close();
  });

  test('--dry-run reports and changes nothing', async () => {
    const before = listFiles(reg.root);
    const report = await collectGarbage(
      gcRegistry(reg.root),
      options({ dryRun: true, deleteUntagged: true }),
    );
    assert.deepEqual(listFiles(reg.root), before);
    assert.ok(report.deletedBlobs.includes(orphan as Digest));
    assert.ok(report.deletedBlobs.includes(deleted.digest as Digest));
    assert.deepEqual(
      report.deletedManifests.map((m) => m.digest),
      [untagged.digest],
    );
  });

  test('unreferenced blobs go, referenced ones stay', async () => {
    const report = await collectGarbage(gcRegistry(reg.root), options());
    const gone = [orphan, deleted.digest, ...deleted.layerDigests];
    for (const d of gone) {
      assert.ok(report.deletedBlobs.includes(d as Digest), `${d} collected`);
      assert.ok(!fs.existsSync(blobFile(reg.root, d)), `${d} removed from disk`);
    }
    for (const d of [
      kept.digest,
      kept.configDigest,
      ...kept.layerDigests,
      untagged.digest,
      ...untagged.layerDigests,
    ]) {
      assert.ok(fs.existsSync(blobFile(reg.root, d)), `${d} kept`);
    }
    assert.equal((await client.req('GET', '/v2/gc/app/manifests/keep')).status, 200);
    for (const d of kept.layerDigests)
      assert.equal((await client.req('GET', `/v2/gc/app/blobs/${d}`)).status, 200);
    assert.equal((await client.req('HEAD', `/v2/gc/app/blobs/${orphan}`)).status, 404);
    assert.ok(
      !fs.existsSync(path.join(reg.root, 'docker/registry/v2/_gc/sha256', orphan.slice(7))),
      'no leftovers',
    );
  });

  test('--delete-untagged drops untagged manifests and what only they used, keeps referrers of kept ones', async () => {
    const report = await collectGarbage(gcRegistry(reg.root), options({ deleteUntagged: true }));
    assert.deepEqual(
      report.deletedManifests.map((m) => m.digest),
      [untagged.digest],
    );
    assert.equal((await client.req('GET', `/v2/gc/app/manifests/${untagged.digest}`)).status, 404);
    for (const d of untagged.layerDigests) assert.ok(!fs.existsSync(blobFile(reg.root, d)));
    assert.equal((await client.req('GET', `/v2/gc/app/manifests/${referrer.digest}`)).status, 200);
    const refs = await client.req('GET', `/v2/gc/app/referrers/${kept.digest}`);
    assert.deepEqual(
      (refs.json as { manifests: { digest: string }[] }).manifests.map((m) => m.digest),
      [referrer.digest],
    );
    // The shared config survives: the kept image still uses it.
    assert.ok(fs.existsSync(blobFile(reg.root, kept.configDigest)));
  });

  test('a second run finds nothing more', async () => {
    const report = await collectGarbage(gcRegistry(reg.root), options({ deleteUntagged: true }));
    assert.equal(report.deletedBlobs.length, 0);
    assert.equal(report.deletedManifests.length, 0);
  });
});

describe('safe while pushes are in flight', () => {
  let reg: TestRegistry;
  let client: Client;
  withRegistry((r, c) => {
    reg = r;
    client = c;
  });

  test('the grace period keeps layers uploaded for a manifest not pushed yet', async () => {
    const layer = await client.pushBlob('gc/inflight', 'a layer whose manifest is still coming');
    const report = await collectGarbage(gcRegistry(reg.root), options({ gracePeriodSeconds: 3600 }));
    assert.ok(!report.deletedBlobs.includes(layer as Digest));
    assert.ok(report.youngBlobs >= 1);
    assert.equal((await client.req('HEAD', `/v2/gc/inflight/blobs/${layer}`)).status, 200);
  });

  test('an old blob linked again (a push that found it present) is protected by the new link', async () => {
    const data = 'old content, pushed again';
    const digest = await client.pushBlob('gc/old', data);
    age(reg.root);
    // Another repository mounts it now: the link is fresh even though the bytes are old.
    const mount = await client.req('POST', `/v2/gc/new/blobs/uploads/?mount=${digest}&from=gc/old`);
    assert.equal(mount.status, 201);
    const report = await collectGarbage(gcRegistry(reg.root), options({ gracePeriodSeconds: 600 }));
    assert.ok(!report.deletedBlobs.includes(digest as Digest));
  });

  test('a manifest pushed while gc holds its blob back keeps the blob', async () => {
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
    const configDigest = await client.pushBlob('gc/race', config);
    age(reg.root);
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [],
    };
    let pushed = false;
    // The push lands after gc chose the blob but before it hid it: gc's second mark must see it.
    const driver = hookedDriver(reg.root, async (dest) => {
      if (!pushed && dest.endsWith(`/_gc/sha256/${configDigest.slice(7)}`)) {
        pushed = true;
        const res = await client.pushManifest('gc/race', 'v1', manifest);
        assert.equal(res.status, 201);
      }
    });
    const report = await collectGarbage(gcRegistry(reg.root, driver), options());
    assert.ok(pushed);
    assert.ok(!report.deletedBlobs.includes(configDigest as Digest));
    assert.equal((await client.req('GET', `/v2/gc/race/blobs/${configDigest}`)).status, 200);
    assert.equal((await client.req('GET', '/v2/gc/race/manifests/v1')).status, 200);
  });

  test('a manifest pushed while its blob is hidden is refused, so nothing dangles', async () => {
    const config = Buffer.from('{"architecture":"arm64","os":"linux"}');
    const configDigest = await client.pushBlob('gc/race2', config);
    age(reg.root);
    const manifest = {
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [],
    };
    let status = 0;
    let code: string | undefined;
    const driver = hookedDriver(reg.root, undefined, async (dest) => {
      if (status === 0 && dest.endsWith(`/_gc/sha256/${configDigest.slice(7)}`)) {
        const res = await client.pushManifest('gc/race2', 'v1', manifest);
        status = res.status;
        code = errorCode(res);
      }
    });
    const report = await collectGarbage(gcRegistry(reg.root, driver), options());
    assert.equal(status, 400);
    assert.equal(code, 'MANIFEST_BLOB_UNKNOWN');
    assert.ok(report.deletedBlobs.includes(configDigest as Digest));
    assert.equal((await client.req('GET', '/v2/gc/race2/manifests/v1')).status, 404);
  });

  test('stale upload sessions are removed, recent ones kept', async () => {
    const old = await client.req('POST', '/v2/gc/uploads/blobs/uploads/');
    await client.req('PATCH', String(old.headers.location), { body: 'abandoned' });
    const id = String(old.headers.location).split('/').pop() as string;
    const dir = path.join(reg.root, 'docker/registry/v2/repositories/gc/uploads/_uploads', id);
    const past = new Date(Date.now() - 7200_000);
    fs.writeFileSync(path.join(dir, 'startedat'), past.toISOString());
    fs.utimesSync(path.join(dir, 'data'), past, past);
    const fresh = await client.req('POST', '/v2/gc/uploads/blobs/uploads/');
    const report = await collectGarbage(gcRegistry(reg.root), options({ uploadMaxAgeSeconds: 3600 }));
    assert.deepEqual(
      report.deletedUploads.map((u) => u.id),
      [id],
    );
    assert.ok(!fs.existsSync(dir));
    assert.equal((await client.req('GET', String(fresh.headers.location))).status, 204);
  });

  test('content hidden by an interrupted run is put back by the next one', async () => {
    const digest = await client.pushBlob('gc/crash', 'hidden by a crashed gc');
    await client.pushImage('gc/crash', 'v1', 1);
    const hidden = path.join(reg.root, 'docker/registry/v2/_gc/sha256', digest.slice(7));
    fs.mkdirSync(path.dirname(hidden), { recursive: true });
    fs.renameSync(blobFile(reg.root, digest), hidden);
    assert.equal((await client.req('HEAD', `/v2/gc/crash/blobs/${digest}`)).status, 404);
    await collectGarbage(gcRegistry(reg.root), options({ gracePeriodSeconds: 3600 }));
    assert.equal((await client.req('HEAD', `/v2/gc/crash/blobs/${digest}`)).status, 200);
  });
});

/** A filesystem driver that runs hooks around moves into gc's hiding place. */
function hookedDriver(
  root: string,
  beforeMove?: (dest: string) => Promise<void>,
  afterMove?: (dest: string) => Promise<void>,
): StorageDriver {
  const inner = new FilesystemDriver(root);
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'move') {
        return async (source: string, dest: string): Promise<void> => {
          await beforeMove?.(dest);
          await target.move(source, dest);
          await afterMove?.(dest);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('strata registry gc (the command)', () => {
  test('--dry-run lists, a real run deletes, referenced content stays', async () => {
    const reg = await startRegistry();
    try {
      const client = new Client(reg.url);
      const image = await client.pushImage('cli/app', 'v1', 1);
      const orphan = await client.pushBlob('cli/app', 'orphan for the cli');
      age(reg.root);
      const dry = await run(process.execPath, [
        STRATA_BIN,
        'registry',
        'gc',
        '--root',
        reg.root,
        '--dry-run',
        '--grace-period',
        '0',
      ]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, new RegExp(`would delete blob ${orphan}`));
      assert.match(dry.stdout, /would delete 1 blobs/);
      assert.ok(fs.existsSync(blobFile(reg.root, orphan)));
      const real = await run(process.execPath, [
        STRATA_BIN,
        'registry',
        'gc',
        '--root',
        reg.root,
        '--grace-period',
        '0',
      ]);
      assert.equal(real.code, 0, real.stderr);
      assert.match(real.stdout, /deleted 1 blobs/);
      assert.ok(!fs.existsSync(blobFile(reg.root, orphan)));
      assert.ok(fs.existsSync(blobFile(reg.root, image.layerDigests[0] as string)));
      const kept = await run(process.execPath, [STRATA_BIN, 'registry', 'gc', '--root', reg.root]);
      assert.match(kept.stdout, /deleted 0 blobs/);
      const usage = await run(process.execPath, [
        STRATA_BIN,
        'registry',
        'gc',
        '--root',
        reg.root,
        '--bogus',
      ]);
      assert.notEqual(usage.code, 0);
    } finally {
      await reg.close();
    }
  });

  test('a fresh orphan survives the default grace period', async () => {
    const root = tempDir('gc-default');
    const reg = await startRegistry({}, root);
    try {
      const client = new Client(reg.url);
      const orphan = await client.pushBlob('cli/fresh', 'just uploaded');
      await sleep(10);
      const res = await run(process.execPath, [STRATA_BIN, 'registry', 'gc', '--root', root]);
      assert.equal(res.code, 0, res.stderr);
      assert.ok(fs.existsSync(blobFile(root, orphan)));
      assert.equal(sha256('just uploaded'), orphan);
    } finally {
      await reg.close();
    }
  });
});
