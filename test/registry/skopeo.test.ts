import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import bcrypt from 'bcryptjs';
import { tarOneFile } from './conformance-data.js';
import { Client, run, startRegistry, type TestRegistry, tempDir, which } from './helpers.js';

/**
 * Interoperability with a real client: skopeo (containers/image) copies an OCI layout built here —
 * one gzip tar layer, a config, a manifest — into the registry and back, lists its tags, inspects
 * it, deletes it, and does the same through Docker token auth. Skipped when skopeo is not installed.
 */
const SKOPEO = which('skopeo');
const skip = SKOPEO === null ? 'skopeo not installed (apt-get install skopeo)' : false;

function sha256hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Writes an OCI image layout with one image tagged `tag`; returns its manifest digest. */
function writeLayout(dir: string, tag: string): { manifestDigest: string; layerDigest: string } {
  const blobs = path.join(dir, 'blobs', 'sha256');
  fs.mkdirSync(blobs, { recursive: true });
  const put = (data: Buffer): string => {
    const hex = sha256hex(data);
    fs.writeFileSync(path.join(blobs, hex), data);
    return `sha256:${hex}`;
  };
  const tar = tarOneFile('hello.txt', Buffer.from(`hello from the strata registry test ${Date.now()}\n`));
  const layer = gzipSync(tar);
  const layerDigest = put(layer);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/bin/sh'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${sha256hex(tar)}`] },
    }),
  );
  const configDigest = put(config);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: configDigest,
        size: config.length,
      },
      layers: [
        { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: layerDigest, size: layer.length },
      ],
    }),
  );
  const manifestDigest = put(manifest);
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  fs.writeFileSync(
    path.join(dir, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: manifestDigest,
          size: manifest.length,
          annotations: { 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  return { manifestDigest, layerDigest };
}

function skopeo(...args: string[]): ReturnType<typeof run> {
  return run(SKOPEO ?? 'skopeo', ['--insecure-policy', ...args], { timeoutMs: 120_000 });
}

describe('skopeo', { skip }, () => {
  let reg: TestRegistry;
  let host: string;
  before(async () => {
    reg = await startRegistry();
    host = new URL(reg.url).host;
  });
  after(async () => {
    await reg.close();
  });

  test('copies an OCI layout to the registry and back, byte for byte', async () => {
    const src = tempDir('skopeo-src');
    const { manifestDigest, layerDigest } = writeLayout(src, 'v1');
    const up = await skopeo(
      'copy',
      '--dest-tls-verify=false',
      `oci:${src}:v1`,
      `docker://${host}/interop/app:v1`,
    );
    assert.equal(up.code, 0, up.stderr);
    const client = new Client(reg.url);
    const manifest = await client.req('GET', '/v2/interop/app/manifests/v1');
    assert.equal(manifest.status, 200);
    assert.equal(manifest.headers['docker-content-digest'], manifestDigest);
    assert.equal((await client.req('HEAD', `/v2/interop/app/blobs/${layerDigest}`)).status, 200);

    const dest = tempDir('skopeo-dest');
    const down = await skopeo(
      'copy',
      '--src-tls-verify=false',
      `docker://${host}/interop/app:v1`,
      `oci:${dest}:v1`,
    );
    assert.equal(down.code, 0, down.stderr);
    for (const d of [manifestDigest, layerDigest]) {
      const hex = d.slice(7);
      assert.deepEqual(
        fs.readFileSync(path.join(dest, 'blobs/sha256', hex)),
        fs.readFileSync(path.join(src, 'blobs/sha256', hex)),
      );
    }
  });

  test('copies between repositories of the registry (cross-repository mount), lists tags, inspects, deletes', async () => {
    const copy = await skopeo(
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `docker://${host}/interop/app:v1`,
      `docker://${host}/interop/copy:v2`,
    );
    assert.equal(copy.code, 0, copy.stderr);
    const tags = await skopeo('list-tags', '--tls-verify=false', `docker://${host}/interop/copy`);
    assert.equal(tags.code, 0, tags.stderr);
    assert.deepEqual((JSON.parse(tags.stdout) as { Tags: string[] }).Tags, ['v2']);
    const inspect = await skopeo('inspect', '--tls-verify=false', `docker://${host}/interop/copy:v2`);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal((JSON.parse(inspect.stdout) as { Architecture: string }).Architecture, 'amd64');
    const del = await skopeo('delete', '--tls-verify=false', `docker://${host}/interop/copy:v2`);
    assert.equal(del.code, 0, del.stderr);
    assert.equal((await new Client(reg.url).req('GET', '/v2/interop/copy/manifests/v2')).status, 404);
  });
});

describe('skopeo with token auth', { skip }, () => {
  let reg: TestRegistry;
  let host: string;
  before(async () => {
    reg = await startRegistry({
      auth: {
        service: 'strata-registry',
        issuer: 'strata-registry',
        tokenTtlSeconds: 300,
        anonymousPull: false,
        users: { alice: { password: bcrypt.hashSync('secret', 4), groups: [] } },
        acl: [{ repository: 'alice/**', users: ['alice'], groups: [], actions: ['pull', 'push'] }],
      },
    });
    host = new URL(reg.url).host;
  });
  after(async () => {
    await reg.close();
  });

  test('pushes and pulls with credentials; wrong credentials and foreign repositories fail', async () => {
    const src = tempDir('skopeo-auth');
    writeLayout(src, 'v1');
    const push = await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:secret',
      `oci:${src}:v1`,
      `docker://${host}/alice/app:v1`,
    );
    assert.equal(push.code, 0, push.stderr);
    const pull = await skopeo(
      'inspect',
      '--tls-verify=false',
      '--creds',
      'alice:secret',
      `docker://${host}/alice/app:v1`,
    );
    assert.equal(pull.code, 0, pull.stderr);
    const wrong = await skopeo(
      'inspect',
      '--tls-verify=false',
      '--creds',
      'alice:nope',
      `docker://${host}/alice/app:v1`,
    );
    assert.notEqual(wrong.code, 0);
    const denied = await skopeo(
      'copy',
      '--dest-tls-verify=false',
      '--dest-creds',
      'alice:secret',
      `oci:${src}:v1`,
      `docker://${host}/bob/app:v1`,
    );
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /denied|forbidden|unauthorized/i);
  });
});
