import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Client } from '../registry/helpers.js';
import {
  busyboxTar,
  downloadedBlobs,
  engineRequest,
  imageConfig,
  loadImage,
  RegistryProcess,
  RegistryProxy,
  runOutput,
  sha256Hex,
  statusLines,
  streamError,
  tarOf,
  uploadedDigests,
} from './helpers.js';

/**
 * docker CLI → Strata daemon → Strata registry (a real `bin/strata registry serve` process behind a
 * logging proxy, so each test can see which blobs went over the wire): push, remove, pull back, run;
 * an image stacked on another pushes only its new layer (the shared one is mounted from the base's
 * repository) and a second daemon pulls both; pulls by digest; multi-platform indexes.
 */
let registry: RegistryProcess;
let proxy: RegistryProxy;
let a: TestDaemon;
let b: TestDaemon;
let R: string;
let bb: Buffer;
let top: Buffer;
let baseDigest = '';

const layerId = (tar: Buffer): string => sha256Hex(tar).slice(0, 12);

before(async () => {
  registry = await RegistryProcess.strata();
  proxy = await RegistryProxy.start(registry.port);
  R = proxy.address;
  [a, b] = await Promise.all([startDaemon(), startDaemon()]);
  bb = await busyboxTar();
  top = await tarOf({ 'app/hello.txt': 'hello from the top layer\n' });
});

after(async () => {
  await Promise.allSettled([a?.cleanup(), b?.cleanup()]);
  await proxy?.close();
  await registry?.stop();
});

describe('push and pull through the Strata registry', () => {
  test('push an image, remove it, pull it back and run it', async () => {
    await loadImage(a, { tag: `${R}/base:v1`, layers: [bb], label: 'base' });
    const pushed = await a.dockerOk(['push', `${R}/base:v1`]);
    assert.match(pushed, new RegExp(`^The push refers to repository \\[${R}/base\\]`));
    assert.match(pushed, new RegExp(`${layerId(bb)}: Pushed`));
    const m = /v1: digest: (sha256:[a-f0-9]{64}) size: (\d+)/.exec(pushed);
    assert.ok(m, pushed);
    baseDigest = m[1];
    assert.ok(uploadedDigests(proxy.log).includes(`sha256:${sha256Hex(bb)}`));
    const repoDigests = await a.dockerOk([
      'image',
      'inspect',
      '--format',
      '{{json .RepoDigests}}',
      `${R}/base:v1`,
    ]);
    assert.deepEqual(JSON.parse(repoDigests), [`${R}/base@${baseDigest}`]);

    await a.dockerOk(['rmi', `${R}/base:v1`]);
    assert.equal((await a.docker(['image', 'inspect', `${R}/base:v1`])).code, 1);

    const pulled = await a.dockerOk(['pull', `${R}/base:v1`]);
    assert.match(pulled, /^v1: Pulling from base$/m);
    assert.match(pulled, new RegExp(`^${sha256Hex(bb).slice(0, 12)}: Pull complete$`, 'm'));
    assert.match(pulled, new RegExp(`^Digest: ${baseDigest}$`, 'm'));
    assert.match(pulled, new RegExp(`^Status: Downloaded newer image for ${R}/base:v1$`, 'm'));

    const out = await runOutput(a, `${R}/base:v1`, ['sh', '-c', 'echo pulled-and-running']);
    assert.equal(out, 'pulled-and-running');

    const again = await a.dockerOk(['pull', `${R}/base:v1`]);
    assert.match(again, new RegExp(`^Status: Image is up to date for ${R}/base:v1$`, 'm'));
    assert.doesNotMatch(again, /Pull complete|Already exists/);
  });

  test('an image built on the first pushes only its new layer; a second daemon pulls the base too', async () => {
    const childId = await loadImage(a, { tag: `${R}/child:v1`, layers: [bb, top], label: 'child' });
    proxy.clear();
    const push = await engineRequest(a, 'POST', `/images/${R}/child/push?tag=v1`, { auth: {} });
    assert.equal(push.status, 200);
    assert.equal(streamError(push.messages), null, push.raw);
    const lines = statusLines(push.messages);
    assert.ok(lines.includes(`${layerId(bb)}: Mounted from base`), lines.join('\n'));
    assert.ok(lines.includes(`${layerId(top)}: Pushed`), lines.join('\n'));
    // Only the new layer and the config went over the wire.
    assert.deepEqual(uploadedDigests(proxy.log).sort(), [childId, `sha256:${sha256Hex(top)}`].sort());
    const uploaded = proxy.log.reduce((sum, e) => sum + e.bytesIn, 0);
    assert.ok(uploaded < bb.length / 4, `uploaded ${uploaded} bytes, the base layer has ${bb.length}`);
    const aux = push.messages.find((m) => m.aux !== undefined)?.aux as {
      Tag: string;
      Digest: string;
      Size: number;
    };
    assert.equal(aux.Tag, 'v1');
    assert.match(aux.Digest, /^sha256:[a-f0-9]{64}$/);

    proxy.clear();
    const pulled = await b.dockerOk(['pull', `${R}/child:v1`]);
    assert.equal((pulled.match(/: Pull complete$/gm) ?? []).length, 2, pulled);
    const fetched = downloadedBlobs(proxy.log).map((e) => e.url.split('/').at(-1));
    assert.ok(fetched.includes(`sha256:${sha256Hex(bb)}`), 'the base layer was fetched');
    assert.ok(fetched.includes(`sha256:${sha256Hex(top)}`), 'the new layer was fetched');
    assert.equal(
      await b.dockerOk(['image', 'inspect', '--format', '{{.Id}} {{len .RootFS.Layers}}', `${R}/child:v1`]),
      `${childId} 2`,
    );
    assert.equal(await runOutput(b, `${R}/child:v1`, ['cat', '/app/hello.txt']), 'hello from the top layer');
  });

  test('two pulls of the same image at once share each download', async () => {
    await b.dockerOk(['rmi', `${R}/child:v1`]);
    assert.equal((await b.docker(['image', 'inspect', `${R}/child:v1`])).code, 1);
    proxy.clear();
    const [one, two] = await Promise.all([
      b.docker(['pull', `${R}/child:v1`]),
      b.docker(['pull', `${R}/child:v1`]),
    ]);
    assert.equal(one.code, 0, one.stderr);
    assert.equal(two.code, 0, two.stderr);
    const fetched = downloadedBlobs(proxy.log)
      .map((e) => e.url.split('/').at(-1))
      .filter((d) => d === `sha256:${sha256Hex(bb)}` || d === `sha256:${sha256Hex(top)}`);
    assert.equal(fetched.length, 2, `each layer fetched once: ${fetched.join(' ')}`);
    assert.equal(await runOutput(b, `${R}/child:v1`, ['cat', '/app/hello.txt']), 'hello from the top layer');
  });

  test('pull by digest; layers the daemon has are not fetched again', async () => {
    assert.ok(baseDigest, 'needs the first test');
    proxy.clear();
    const pull = await engineRequest(
      b,
      'POST',
      `/images/create?fromImage=${encodeURIComponent(`${R}/base`)}&tag=${baseDigest}`,
      {
        auth: 'e30=',
      },
    );
    assert.equal(pull.status, 200);
    assert.equal(streamError(pull.messages), null, pull.raw);
    const lines = statusLines(pull.messages);
    assert.equal(lines[0], `${R}/base@${baseDigest}: Pulling from base`);
    assert.ok(lines.includes(`${layerId(bb)}: Already exists`), lines.join('\n'));
    assert.ok(lines.includes(`Status: Downloaded newer image for ${R}/base@${baseDigest}`), lines.join('\n'));
    const layerFetches = downloadedBlobs(proxy.log).filter((e) => e.url.endsWith(sha256Hex(bb)));
    assert.deepEqual(layerFetches, [], 'the layer blob was not downloaded again');
    const digests = await b.dockerOk([
      'images',
      '--digests',
      '--format',
      '{{.Repository}}@{{.Digest}}',
      `${R}/base`,
    ]);
    assert.equal(digests, `${R}/base@${baseDigest}`);
    assert.equal(await runOutput(b, `${R}/base@${baseDigest}`, ['echo', 'by-digest']), 'by-digest');

    // docker run of an image the daemon lacks: create answers 404, the CLI pulls, then creates.
    const ran = await b.docker([
      'run',
      '-d',
      '--name',
      'pulled-by-run',
      `${R}/base:v1`,
      'echo',
      'pulled-by-run',
    ]);
    assert.equal(ran.code, 0, ran.stderr);
    assert.match(ran.stderr, new RegExp(`Unable to find image '${R}/base:v1' locally`));
    assert.equal(await b.dockerOk(['wait', 'pulled-by-run']), '0');
    assert.equal(await b.dockerOk(['logs', 'pulled-by-run']), 'pulled-by-run');
    await b.dockerOk(['rm', 'pulled-by-run']);

    const wrong = `sha256:${'0'.repeat(64)}`;
    const missing = await b.docker(['pull', `${R}/base@${wrong}`]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, new RegExp(`manifest for ${R}/base@${wrong} not found: manifest unknown`));
  });

  test('docker pull --all-tags pulls every tag of the repository', async () => {
    await a.dockerOk(['tag', `${R}/base:v1`, `${R}/base:v2`]);
    await a.dockerOk(['push', `${R}/base:v2`]);
    const all = await engineRequest(b, 'POST', `/images/create?fromImage=${encodeURIComponent(`${R}/base`)}`);
    assert.equal(all.status, 200);
    assert.equal(streamError(all.messages), null, all.raw);
    const lines = statusLines(all.messages);
    assert.ok(lines.includes('v1: Pulling from base'), lines.join('\n'));
    assert.ok(lines.includes('v2: Pulling from base'), lines.join('\n'));
    assert.match(
      lines.at(-1) ?? '',
      new RegExp(`^Status: (Downloaded newer image|Image is up to date) for ${R}/base$`),
    );
    const tags = await b.dockerOk(['images', '--format', '{{.Tag}}', `${R}/base`]);
    assert.deepEqual(tags.split('\n').sort(), ['v1', 'v2']);
    const cli = await b.dockerOk(['pull', '--all-tags', `${R}/base`]);
    assert.match(cli, new RegExp(`Status: Image is up to date for ${R}/base`));
  });

  test('a manifest list without linux/amd64 is refused naming its platform; a mixed one gives amd64', async () => {
    const client = new Client(`http://${registry.address}`);
    const layer = await tarOf({ 'arch.txt': 'arm\n' });
    const pushImage = async (architecture: string, variant?: string) => {
      const config = imageConfig({ layers: [layer], architecture, label: architecture });
      const configDigest = await client.pushBlob('multi', config);
      const layerDigest = await client.pushBlob('multi', layer);
      const manifest = {
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: configDigest,
          size: config.length,
        },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: layerDigest, size: layer.length },
        ],
      };
      const bytes = Buffer.from(JSON.stringify(manifest));
      const digest = `sha256:${sha256Hex(bytes)}`;
      const res = await client.pushManifest('multi', digest, bytes, manifest.mediaType);
      assert.equal(res.status, 201, res.text);
      return {
        digest,
        size: bytes.length,
        configDigest,
        platform: { os: 'linux', architecture, ...(variant ? { variant } : {}) },
      };
    };
    const arm = await pushImage('arm64', 'v8');
    const amd = await pushImage('amd64');
    const index = (entries: Array<Awaited<ReturnType<typeof pushImage>>>) => ({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: entries.map((e) => ({
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        digest: e.digest,
        size: e.size,
        platform: e.platform,
      })),
    });
    assert.equal((await client.pushManifest('multi', 'armonly', index([arm]))).status, 201);
    assert.equal((await client.pushManifest('multi', 'both', index([arm, amd]))).status, 201);

    const refused = await a.docker(['pull', `${R}/multi:armonly`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /no matching manifest for linux\/amd64 in the manifest list entries/);
    assert.match(refused.stderr, /linux\/arm64\/v8/);
    assert.equal((await a.docker(['image', 'inspect', `${R}/multi:armonly`])).code, 1);

    // A single-platform manifest whose config is for arm64, pulled by digest.
    const single = await a.docker(['pull', `${R}/multi@${arm.digest}`]);
    assert.equal(single.code, 1);
    assert.match(single.stderr, /is for linux\/arm64/);

    const both = await a.dockerOk(['pull', `${R}/multi:both`]);
    assert.match(both, /Pull complete/);
    const inspect = JSON.parse(
      await a.dockerOk(['image', 'inspect', '--format', '{{json .}}', `${R}/multi:both`]),
    ) as { Id: string; Architecture: string; RepoDigests: string[] };
    assert.equal(inspect.Id, amd.configDigest);
    assert.equal(inspect.Architecture, 'amd64');
    assert.equal(inspect.RepoDigests.length, 1);
    assert.match(inspect.RepoDigests[0] ?? '', new RegExp(`^${R}/multi@sha256:`));
    assert.notEqual(inspect.RepoDigests[0], `${R}/multi@${amd.digest}`, 'the RepoDigest names the index');
  });

  test('errors before the stream: unknown manifest 404, unreachable registry 500; search 501', async () => {
    const missing = await engineRequest(
      a,
      'POST',
      `/images/create?fromImage=${encodeURIComponent(`${R}/nosuch`)}&tag=v1`,
    );
    assert.equal(missing.status, 404);
    assert.equal(
      (missing.messages[0] as { message: string }).message,
      `manifest for ${R}/nosuch:v1 not found: manifest unknown: manifest unknown to registry`,
    );
    const down = await engineRequest(a, 'POST', '/images/create?fromImage=127.0.0.1%3A1%2Fx&tag=v1');
    assert.equal(down.status, 500);
    assert.match(
      String(down.messages[0]?.message),
      /^Get "http:\/\/127\.0\.0\.1:1\/v2\/": dial tcp 127\.0\.0\.1:1: connect: connection refused$/,
    );
    const search = await a.docker(['search', 'busybox']);
    assert.equal(search.code, 1);
    assert.match(search.stderr, /search is not supported/);
    const noTag = await a.docker(['push', `${R}/never-tagged:v9`]);
    assert.equal(noTag.code, 1);
    assert.match(noTag.stderr, new RegExp(`tag does not exist: ${R}/never-tagged:v9`));
    const noImage = await engineRequest(a, 'POST', `/images/${R}/never-tagged/push`);
    assert.equal(noImage.status, 404);
    assert.match(String(noImage.messages[0]?.message), /^An image does not exist locally with the tag: /);
  });
});
