import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import {
  busyboxTar,
  downloadedBlobs,
  engineRequest,
  loadImage,
  RegistryProcess,
  RegistryProxy,
  runOutput,
  sha256Hex,
  sleep,
  statusLines,
  streamError,
  tarOf,
} from './helpers.js';

/**
 * An interrupted pull resumes: the registry is killed while a large layer is half transferred; the
 * pull fails; once the registry is back, pulling again downloads only the rest of that layer (a
 * Range request from where it stopped) and none of the layers that had finished.
 */
let registry: RegistryProcess;
let proxy: RegistryProxy;
let a: TestDaemon;
let b: TestDaemon;

before(async () => {
  registry = await RegistryProcess.strata();
  proxy = await RegistryProxy.start(registry.port);
  [a, b] = await Promise.all([startDaemon(), startDaemon()]);
});

after(async () => {
  await Promise.allSettled([a?.cleanup(), b?.cleanup()]);
  await proxy?.close();
  await registry?.stop();
});

describe('interrupted pull', () => {
  test('resumes after the registry died mid-layer, without fetching finished layers again', async () => {
    const R = proxy.address;
    const bb = await busyboxTar();
    const payload = randomBytes(40 * 1024 * 1024);
    const big = await tarOf({ 'data/big.bin': payload });
    const small = await tarOf({ 'data/small.txt': 'small layer on top\n' });
    const imageId = await loadImage(a, { tag: `${R}/resume:v1`, layers: [bb, big, small], label: 'resume' });
    await a.dockerOk(['push', `${R}/resume:v1`]);

    const bigDigest = `sha256:${sha256Hex(big)}`;
    const cutAt = 16 * 1024 * 1024;
    proxy.clear();
    proxy.cutOnce(
      (e) => e.method === 'GET' && e.url.endsWith(bigDigest),
      cutAt,
      async () => {
        // Hold the big layer at 16 MiB while the small layers finish, then take the registry down.
        await sleep(1500);
        await registry.kill();
      },
    );
    const first = await engineRequest(
      b,
      'POST',
      `/images/create?fromImage=${encodeURIComponent(`${R}/resume`)}&tag=v1`,
    );
    assert.equal(first.status, 200);
    assert.ok(streamError(first.messages), `the first pull fails in-stream: ${first.raw}`);
    assert.equal((await b.docker(['image', 'inspect', `${R}/resume:v1`])).code, 1);
    const firstFetches = downloadedBlobs(proxy.log).map((e) => e.url.split('/').at(-1));
    assert.ok(firstFetches.includes(`sha256:${sha256Hex(bb)}`));
    assert.ok(firstFetches.includes(`sha256:${sha256Hex(small)}`));

    await registry.start();
    proxy.clear();
    const second = await engineRequest(
      b,
      'POST',
      `/images/create?fromImage=${encodeURIComponent(`${R}/resume`)}&tag=v1`,
    );
    assert.equal(second.status, 200);
    assert.equal(streamError(second.messages), null, second.raw);
    const lines = statusLines(second.messages);
    assert.ok(lines.includes(`${sha256Hex(bb).slice(0, 12)}: Already exists`), lines.join('\n'));
    assert.ok(lines.includes(`${sha256Hex(big).slice(0, 12)}: Pull complete`), lines.join('\n'));
    assert.ok(lines.includes(`${sha256Hex(small).slice(0, 12)}: Pull complete`), lines.join('\n'));

    // The config (the image id) is read again to resolve the reference; layers are what matter.
    const fetches = downloadedBlobs(proxy.log).filter((e) => !e.url.endsWith(imageId));
    assert.deepEqual(
      fetches.map((e) => e.url.split('/').at(-1)),
      [bigDigest],
      'only the interrupted layer is fetched again',
    );
    const range = /^bytes=(\d+)-$/.exec(fetches[0]?.range ?? '');
    assert.ok(range, `resumed with a Range request, got ${fetches[0]?.range}`);
    assert.ok(Number(range[1]) >= cutAt / 2, `resumed at ${range[1]}`);
    assert.equal(fetches[0]?.bytesOut, big.length - Number(range[1]), 'only the missing bytes were sent');

    const sum = await runOutput(b, `${R}/resume:v1`, ['sha256sum', '/data/big.bin']);
    assert.equal(sum.split(/\s+/)[0], sha256Hex(payload));
  });

  test('resumes after the daemon itself was killed mid-layer and started again', async () => {
    const R = proxy.address;
    const bb = await busyboxTar();
    const payload = randomBytes(24 * 1024 * 1024);
    const big = await tarOf({ 'data/other.bin': payload });
    const imageId = await loadImage(a, { tag: `${R}/restart:v1`, layers: [bb, big], label: 'restart' });
    await a.dockerOk(['push', `${R}/restart:v1`]);
    // b has the busybox layer from the test before; start from nothing on a fresh daemon.
    const c = await startDaemon();
    try {
      const bigDigest = `sha256:${sha256Hex(big)}`;
      const cutAt = 8 * 1024 * 1024;
      proxy.clear();
      proxy.cutOnce(
        (e) => e.method === 'GET' && e.url.endsWith(bigDigest),
        cutAt,
        async () => {
          await sleep(1000);
          await c.kill();
        },
      );
      const first = await c.docker(['pull', `${R}/restart:v1`]);
      assert.notEqual(first.code, 0, 'the CLI loses its daemon');
      await c.restart();
      proxy.clear();
      const second = await engineRequest(
        c,
        'POST',
        `/images/create?fromImage=${encodeURIComponent(`${R}/restart`)}&tag=v1`,
      );
      assert.equal(streamError(second.messages), null, second.raw);
      const fetches = downloadedBlobs(proxy.log).filter((e) => !e.url.endsWith(imageId));
      assert.deepEqual(
        fetches.map((e) => e.url.split('/').at(-1)),
        [bigDigest],
      );
      assert.match(fetches[0]?.range ?? '', /^bytes=[1-9]\d*-$/, 'resumed from the bytes kept on disk');
      assert.ok((fetches[0]?.bytesOut ?? big.length) < big.length);
      const sum = await runOutput(c, `${R}/restart:v1`, ['sha256sum', '/data/other.bin']);
      assert.equal(sum.split(/\s+/)[0], sha256Hex(payload));
    } finally {
      await c.cleanup();
    }
  });

  test('a partial pull nobody resumed for a day is removed when the daemon starts', async () => {
    const ingestDir = path.join(b.root, 'content', 'ingest');
    fs.mkdirSync(ingestDir, { recursive: true });
    const abandoned = path.join(ingestDir, `pull-${'a'.repeat(64)}`);
    const recent = path.join(ingestDir, `pull-${'b'.repeat(64)}`);
    fs.writeFileSync(abandoned, randomBytes(4096));
    fs.writeFileSync(recent, randomBytes(4096));
    const twoDaysAgo = new Date(Date.now() - 2 * 86_400_000);
    fs.utimesSync(abandoned, twoDaysAgo, twoDaysAgo);
    await b.kill();
    await b.restart();
    assert.equal(fs.existsSync(abandoned), false, 'never resumed: swept');
    assert.equal(fs.existsSync(recent), true, 'may still be resumed: kept');
    fs.rmSync(recent);
  });
});
