import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { STRATA_BIN, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { busyboxTar, freePort, loadImage, RegistryProcess, RegistryProxy, runOutput } from './helpers.js';

/**
 * `--registry-mirror`: pulls of Docker Hub images (`busybox`, `docker.io/library/…`) go to the
 * mirrors first, in order, passing over one that fails; other registries never use them. The mirror
 * here is a Strata registry (behind a logging proxy) holding `library/busybox`; nothing in these
 * tests reaches Docker Hub itself, since a mirror always answers.
 */
let registry: RegistryProcess;
let proxy: RegistryProxy;
let cache: RegistryProcess;
let source: TestDaemon;
let client: TestDaemon;
let viaCache: TestDaemon;
let deadMirror = '';
let R = '';
let digest = '';

before(async () => {
  registry = await RegistryProcess.strata();
  proxy = await RegistryProxy.start(registry.port);
  R = proxy.address;
  // Nothing listens there: the first mirror refuses every connection.
  deadMirror = `http://127.0.0.1:${await freePort()}`;
  // A Strata registry in proxy mode: a pull-through cache of the one above, as a mirror.
  cache = await RegistryProcess.strata({ config: { proxy: { remoteUrl: `http://${R}` } } });
  [source, client, viaCache] = await Promise.all([
    startDaemon(),
    startDaemon({ extraArgs: ['--registry-mirror', deadMirror, '--registry-mirror', `http://${R}/`] }),
    startDaemon({ extraArgs: ['--registry-mirror', `http://127.0.0.1:${cache.port}`] }),
  ]);
  await loadImage(source, {
    tag: `${R}/library/busybox:latest`,
    layers: [await busyboxTar()],
    label: 'mirrored',
  });
  const pushed = await source.dockerOk(['push', `${R}/library/busybox:latest`]);
  const m = /latest: digest: (sha256:[a-f0-9]{64})/.exec(pushed);
  assert.ok(m, pushed);
  digest = m[1] ?? '';
});

after(async () => {
  await Promise.allSettled([source?.cleanup(), client?.cleanup(), viaCache?.cleanup()]);
  await proxy?.close();
  await Promise.allSettled([registry?.stop(), cache?.stop()]);
});

describe('registry mirrors', () => {
  test('docker pull of a Hub image comes from the first mirror that answers, and runs', async () => {
    const before = proxy.log.length;
    const pulled = await client.dockerOk(['pull', 'busybox']);
    assert.match(pulled, /^latest: Pulling from library\/busybox$/m);
    assert.match(pulled, new RegExp(`^Digest: ${digest}$`, 'm'));
    assert.match(pulled, /^Status: Downloaded newer image for busybox:latest$/m);
    const asked = proxy.log.slice(before).map((e) => `${e.method} ${e.url}`);
    assert.ok(asked.includes('GET /v2/library/busybox/manifests/latest'), asked.join('\n'));
    assert.match(client.log(), new RegExp(`registry mirror failed.*${deadMirror.replace(/[.:/]/g, '\\$&')}`));
    const repoDigests = await client.dockerOk([
      'image',
      'inspect',
      '--format',
      '{{json .RepoDigests}}',
      'busybox',
    ]);
    assert.deepEqual(
      JSON.parse(repoDigests),
      [`busybox@${digest}`],
      'named after Docker Hub, not the mirror',
    );
    assert.equal(await runOutput(client, 'busybox', ['echo', 'from the mirror']), 'from the mirror');
  });

  test('pulls by digest and by full Hub name use the mirrors too', async () => {
    await client.dockerOk(['rmi', '-f', 'busybox']);
    const byDigest = await client.dockerOk(['pull', `docker.io/library/busybox@${digest}`]);
    assert.match(byDigest, new RegExp(`^Digest: ${digest}$`, 'm'));
    assert.match(byDigest, new RegExp(`^Status: Downloaded newer image for busybox@${digest}$`, 'm'));
  });

  test('other registries never go through the mirrors', async () => {
    const before = proxy.log.length;
    const other = await freePort();
    const r = await client.docker(['pull', `127.0.0.1:${other}/library/busybox:latest`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`127\\.0\\.0\\.1:${other}`));
    assert.deepEqual(proxy.log.slice(before), [], 'the mirror was not asked');
  });

  test('a Strata registry in proxy mode is a mirror that keeps what it served', async () => {
    const first = proxy.log.length;
    const pulled = await viaCache.dockerOk(['pull', 'busybox']);
    assert.match(pulled, new RegExp(`^Digest: ${digest}$`, 'm'));
    const fetched = proxy.log.slice(first).filter((e) => e.method === 'GET' && e.url.includes('/blobs/'));
    assert.ok(fetched.length >= 2, 'the cache fetched the config and the layer from its upstream');
    assert.equal(await runOutput(viaCache, 'busybox', ['echo', 'through the cache']), 'through the cache');

    await viaCache.dockerOk(['rmi', '-f', 'busybox']);
    await viaCache.dockerOk(['image', 'prune', '-f']);
    const second = proxy.log.length;
    const again = await viaCache.dockerOk(['pull', 'busybox']);
    assert.match(again, /^Status: Downloaded newer image for busybox:latest$/m);
    const refetched = proxy.log.slice(second).filter((e) => e.url.includes('/blobs/'));
    assert.deepEqual(refetched, [], 'the blobs came from the cache; the upstream was only asked for the tag');
  });

  test('docker info lists the mirrors; a malformed mirror stops the daemon with one line', async () => {
    const mirrors = await client.dockerOk(['info', '--format', '{{json .RegistryConfig.Mirrors}}']);
    assert.deepEqual(JSON.parse(mirrors), [`${deadMirror}/`, `http://${R}/`]);
    const info = await client.dockerOk(['info']);
    assert.match(info, new RegExp(`Registry Mirrors:\\s+${deadMirror.replace(/[.:/]/g, '\\$&')}/`));
    for (const bad of [
      'ftp://mirror.example',
      'http://user:pw@127.0.0.1:5000',
      'http://127.0.0.1:5000/v2/',
      'mirror',
    ]) {
      const r = spawnSync(process.execPath, [STRATA_BIN, 'daemon', '--registry-mirror', bad], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 1, bad);
      assert.match(r.stderr, /^strata daemon: invalid registry mirror .*\n$/, bad);
    }
  });
});
