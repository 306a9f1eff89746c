import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { Client, run, startRegistry, type TestRegistry, tempDir, which } from '../registry/helpers.js';
import { busyboxTar, runOutput } from './helpers.js';

/**
 * Interoperability with podman (containers/image + containers/storage): podman pushes an image it
 * imported to the Strata registry and the Strata daemon pulls and runs it; the Strata daemon pushes
 * an image and podman pulls it into a storage of its own, with the same manifest digest and the
 * files in place. podman runs with private storage (vfs), and a registries.conf that marks the
 * loopback registry insecure (CONTAINERS_REGISTRIES_CONF). It never runs a container (this host's
 * hybrid cgroups stop podman there), so only its image paths are exercised.
 */
const PODMAN = which('podman');
const skip = PODMAN === null ? 'podman not installed (apt-get install podman)' : false;

describe('podman against the Strata registry', { skip }, () => {
  let reg: TestRegistry;
  let host: string;
  let d: TestDaemon;
  let conf: string;
  let storage: string;

  const podman = (args: string[], input?: string) =>
    run(
      'env',
      [
        `CONTAINERS_REGISTRIES_CONF=${conf}`,
        PODMAN ?? 'podman',
        '--root',
        path.join(storage, 'root'),
        '--runroot',
        path.join(storage, 'run'),
        '--storage-driver',
        'vfs',
        '--cgroup-manager',
        'cgroupfs',
        '--events-backend',
        'none',
        ...args,
      ],
      { timeoutMs: 120_000, ...(input === undefined ? {} : { input }) },
    );

  before(async () => {
    [reg, d] = await Promise.all([startRegistry(), startDaemon()]);
    host = new URL(reg.url).host;
    const dir = tempDir('podman');
    conf = path.join(dir, 'registries.conf');
    fs.writeFileSync(conf, `[[registry]]\nlocation = "${host}"\ninsecure = true\n`);
    storage = path.join(dir, 'storage');
  });

  after(async () => {
    // podman's vfs storage may hold read-only directories; reset removes it the way podman knows.
    await podman(['system', 'reset', '--force']);
    await Promise.allSettled([d?.cleanup(), reg?.close()]);
  });

  test('podman pushes an image; the Strata daemon pulls it and runs it', async () => {
    const tarFile = path.join(tempDir('podman-tar'), 'bb.tar');
    fs.writeFileSync(tarFile, await busyboxTar());
    const imported = await podman(['import', '--change', 'CMD ["sh"]', tarFile, `${host}/fromp/bb:v1`]);
    assert.equal(imported.code, 0, imported.stderr);
    const pushed = await podman(['push', `${host}/fromp/bb:v1`]);
    assert.equal(pushed.code, 0, pushed.stderr);
    const manifest = await new Client(reg.url).req('GET', '/v2/fromp/bb/manifests/v1');
    assert.equal(manifest.status, 200);

    await d.dockerOk(['pull', `${host}/fromp/bb:v1`]);
    assert.equal(await runOutput(d, `${host}/fromp/bb:v1`, ['echo', 'pushed by podman']), 'pushed by podman');
  });

  test('the Strata daemon pushes an image; podman pulls it with the same digest and files', async () => {
    await importBusybox(d, 'bb:latest');
    await d.dockerOk(['tag', 'bb:latest', `${host}/fromstrata/bb:v1`]);
    await d.dockerOk(['push', `${host}/fromstrata/bb:v1`]);
    const manifest = await new Client(reg.url).req('GET', '/v2/fromstrata/bb/manifests/v1');
    assert.equal(manifest.status, 200);
    const digest = String(manifest.headers['docker-content-digest']);

    const pulled = await podman(['pull', `${host}/fromstrata/bb:v1`]);
    assert.equal(pulled.code, 0, pulled.stderr);
    const inspect = await podman(['image', 'inspect', '--format', '{{.Digest}}', `${host}/fromstrata/bb:v1`]);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal(inspect.stdout.trim(), digest);
    const mounted = await podman(['image', 'mount', `${host}/fromstrata/bb:v1`]);
    assert.equal(mounted.code, 0, mounted.stderr);
    const rootfs = mounted.stdout.trim();
    assert.ok(fs.statSync(path.join(rootfs, 'bin', 'busybox')).isFile(), 'the layer is unpacked by podman');
    await podman(['image', 'unmount', `${host}/fromstrata/bb:v1`]);
  });
});
