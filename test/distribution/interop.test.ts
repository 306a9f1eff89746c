import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Client } from '../registry/helpers.js';
import {
  busyboxTar,
  gzip,
  imageConfig,
  loadImage,
  RegistryProcess,
  runOutput,
  sha256Hex,
  tarOf,
  tempDir,
  which,
} from './helpers.js';

/**
 * Interoperability: the Strata daemon pushes to and pulls from Debian's docker-registry (the
 * reference implementation, docker/distribution), including a Docker schema 2 image with gzip layers
 * put there by a plain HTTP client; skopeo copies out of the Strata registry an image the Strata
 * daemon pushed, and its bytes match. Each part is skipped when its program is not installed.
 */
const DOCKER_REGISTRY = which('docker-registry');
const SKOPEO = which('skopeo');

let d: TestDaemon;
let e: TestDaemon;

before(async () => {
  [d, e] = await Promise.all([startDaemon(), startDaemon()]);
});

after(async () => {
  await Promise.allSettled([d?.cleanup(), e?.cleanup()]);
});

function runTool(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

describe("Debian's docker-registry", {
  skip: DOCKER_REGISTRY === null ? 'docker-registry not installed (apt-get install docker-registry)' : false,
}, () => {
  let registry: RegistryProcess | null = null;
  before(async () => {
    registry = await RegistryProcess.dockerRegistry();
  });
  after(async () => {
    await registry?.stop();
  });

  test('the daemon pushes an image and a second daemon pulls and runs it', async () => {
    assert.ok(registry);
    const R = registry.address;
    const bb = await busyboxTar();
    const top = await tarOf({ 'srv/greeting.txt': 'hello via docker-registry\n' });
    await loadImage(d, { tag: `${R}/interop/app:v1`, layers: [bb, top], label: 'interop' });
    const pushed = await d.dockerOk(['push', `${R}/interop/app:v1`]);
    assert.match(pushed, /v1: digest: sha256:[a-f0-9]{64} size: \d+/);
    const again = await d.dockerOk(['push', `${R}/interop/app:v1`]);
    assert.equal((again.match(/Layer already exists/g) ?? []).length, 2, again);

    const pulled = await e.dockerOk(['pull', `${R}/interop/app:v1`]);
    assert.equal((pulled.match(/Pull complete/g) ?? []).length, 2, pulled);
    assert.equal(
      await runOutput(e, `${R}/interop/app:v1`, ['cat', '/srv/greeting.txt']),
      'hello via docker-registry',
    );
  });

  test('a Docker schema 2 image with gzip layers, put there over HTTP, pulls and runs', async () => {
    assert.ok(registry);
    const R = registry.address;
    const client = new Client(`http://${R}`);
    const bb = await busyboxTar();
    const top = await tarOf({ 'etc/motd': 'gzip layers from a docker-style manifest\n' });
    const layers = [bb, top];
    const blobs = layers.map((l) => gzip(l));
    const config = imageConfig({ layers, cmd: ['cat', '/etc/motd'], label: 'schema2' });
    const configDigest = await client.pushBlob('interop/gz', config);
    const layerDigests: string[] = [];
    for (const blob of blobs) layerDigests.push(await client.pushBlob('interop/gz', blob));
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: {
        mediaType: 'application/vnd.docker.container.image.v1+json',
        size: config.length,
        digest: configDigest,
      },
      layers: blobs.map((b, i) => ({
        mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
        size: b.length,
        digest: layerDigests[i],
      })),
    };
    const res = await client.pushManifest('interop/gz', 'v1', manifest);
    assert.equal(res.status, 201, res.text);

    const pulled = await e.dockerOk(['pull', `${R}/interop/gz:v1`]);
    assert.match(pulled, /Pull complete/);
    assert.equal(await runOutput(e, `${R}/interop/gz:v1`), 'gzip layers from a docker-style manifest');
    // Pushed back as it came: Docker media types, the same blobs, so nothing is uploaded.
    await e.dockerOk(['tag', `${R}/interop/gz:v1`, `${R}/interop/gz:copy`]);
    const repush = await e.dockerOk(['push', `${R}/interop/gz:copy`]);
    assert.equal((repush.match(/Layer already exists/g) ?? []).length, 2, repush);
    const digest = /copy: digest: (sha256:[a-f0-9]{64})/.exec(repush)?.[1];
    assert.ok(digest);
    const fetched = await client.req('GET', `/v2/interop/gz/manifests/${digest}`, {
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(fetched.status, 200);
    const written = fetched.json as { mediaType: string; layers: Array<{ digest: string }> };
    assert.equal(written.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.deepEqual(
      written.layers.map((l) => l.digest),
      layerDigests,
    );
  });
});

describe('skopeo', {
  skip: SKOPEO === null ? 'skopeo not installed (apt-get install skopeo)' : false,
}, () => {
  test('copies out of the Strata registry an image the Strata daemon pushed', async () => {
    const registry = await RegistryProcess.strata();
    try {
      const R = registry.address;
      const bb = await busyboxTar();
      const top = await tarOf({ 'opt/skopeo.txt': 'read by skopeo\n' });
      const imageId = await loadImage(d, { tag: `${R}/sk/app:v1`, layers: [bb, top], label: 'skopeo' });
      const pushed = await d.dockerOk(['push', `${R}/sk/app:v1`]);
      const manifestDigest = /v1: digest: (sha256:[a-f0-9]{64})/.exec(pushed)?.[1];
      assert.ok(manifestDigest);

      const dir = path.join(tempDir('skopeo'), 'layout');
      const copy = await runTool(SKOPEO as string, [
        'copy',
        '--preserve-digests',
        '--src-tls-verify=false',
        `docker://${R}/sk/app:v1`,
        `oci:${dir}:app`,
      ]);
      assert.equal(copy.code, 0, copy.stderr);
      const index = JSON.parse(fs.readFileSync(path.join(dir, 'index.json'), 'utf8')) as {
        manifests: Array<{ digest: string }>;
      };
      assert.equal(index.manifests[0]?.digest, manifestDigest, 'skopeo kept the manifest as pushed');
      const blob = (digest: string): Buffer =>
        fs.readFileSync(path.join(dir, 'blobs', 'sha256', digest.slice(7)));
      const manifest = JSON.parse(blob(manifestDigest).toString()) as {
        config: { digest: string };
        layers: Array<{ digest: string }>;
      };
      assert.equal(manifest.config.digest, imageId);
      assert.deepEqual(
        manifest.layers.map((l) => l.digest),
        [`sha256:${sha256Hex(bb)}`, `sha256:${sha256Hex(top)}`],
      );
      assert.equal(sha256Hex(blob(manifest.layers[1]?.digest ?? '')), sha256Hex(top));

      const inspect = await runTool(SKOPEO as string, [
        'inspect',
        '--tls-verify=false',
        `docker://${R}/sk/app:v1`,
      ]);
      assert.equal(inspect.code, 0, inspect.stderr);
      assert.equal((JSON.parse(inspect.stdout) as { Architecture: string }).Architecture, 'amd64');
    } finally {
      await registry.stop();
    }
  });
});
