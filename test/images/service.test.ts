import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import * as zlib from 'node:zlib';
import { chainIds, sha256 } from '../../src/common/digest.js';
import { Conflict, InvalidArgument, NotFound } from '../../src/common/errors.js';
import type { ImageUser } from '../../src/images/service.js';
import {
  collect,
  createImageEnv,
  dockerArchive,
  type ImageEnv,
  listTree,
  sampleLayer,
  streamOf,
  tarOf,
} from './helpers.js';

let env: ImageEnv;
beforeEach(() => {
  env = createImageEnv();
});
afterEach(() => env.close());

function tags(): string[] {
  return env.images
    .list({ all: true })
    .flatMap((i) => i.RepoTags as string[])
    .sort();
}

describe('import', () => {
  it('imports a plain tar with --change and a tag', async () => {
    const layer = await sampleLayer('one');
    const id = await env.images.importImage(streamOf(layer), {
      repo: 'bb',
      tag: 'latest',
      changes: ['CMD ["sh"]', 'ENV A=1', 'EXPOSE 80'],
    });
    const image = env.images.resolve('bb');
    assert.equal(image.id, id);
    assert.deepEqual(image.repoTags, ['bb:latest']);
    assert.deepEqual(image.config.config?.Cmd, ['sh']);
    assert.deepEqual(image.config.config?.Env, ['A=1']);
    assert.deepEqual(image.config.rootfs.diff_ids, [sha256(layer)]);
    assert.equal(image.chainId, sha256(layer));
    assert.equal(image.config.comment, 'Imported from -');
    assert.deepEqual(image.config.history, [{ created: image.created, comment: 'Imported from -' }]);
    // The id is the digest of the stored config, which is in the content store.
    assert.equal(sha256(env.content.readSmall(id)), id);
    assert.ok(env.content.has(sha256(layer)));
    assert.ok(env.snapshotter.getLayer(image.chainId!));
    assert.ok(fs.existsSync(path.join(env.snapshotter.lowerDirs(image.chainId!)[0], 'etc', 'marker')));
    assert.deepEqual(
      env.events.map((e) => [e.Action, e.Actor.Attributes.name]),
      [
        ['import', id],
        ['tag', 'bb:latest'],
      ],
    );
  });

  it('resolves every form of reference dockerd accepts', async () => {
    const id = await env.images.importImage(streamOf(await sampleLayer('r')), {
      repo: '127.0.0.1:5000/x/y:v1',
    });
    const hex = id.slice(7);
    for (const ref of [
      '127.0.0.1:5000/x/y:v1',
      id,
      hex,
      hex.slice(0, 12),
      hex.slice(0, 1),
      `sha256:${hex.slice(0, 5)}`,
    ]) {
      assert.equal(env.images.resolve(ref).id, id, ref);
    }
    env.images.tag(id, 'bb');
    assert.equal(env.images.resolve('bb').id, id);
    assert.equal(env.images.resolve('bb:latest').id, id);
    assert.equal(env.images.resolve('docker.io/library/bb:latest').id, id);
    assert.throws(
      () => env.images.resolve('nosuch'),
      (e: unknown) => e instanceof NotFound && e.message === 'No such image: nosuch:latest',
    );
    assert.throws(() => env.images.resolve('bb:other'), /No such image: bb:other/);
    assert.throws(() => env.images.resolve(`sha256:${'0'.repeat(64)}`), NotFound);
    assert.throws(() => env.images.resolve('Upper'), InvalidArgument);
    assert.throws(() => env.images.inspect('nosuch'), /no such image: nosuch: No such image: nosuch:latest/);
  });

  it('imports a gzip tar, and refuses bzip2 and xz before storing anything', async () => {
    const layer = await sampleLayer('gz');
    const id = await env.images.importImage(streamOf(zlib.gzipSync(layer)), {});
    const image = env.images.resolve(id);
    assert.deepEqual(image.config.rootfs.diff_ids, [sha256(layer)]);
    assert.equal(image.layers[0].mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.equal(image.layers[0].tarSize, layer.length);
    const before = env.content.list().length;
    await assert.rejects(
      env.images.importImage(streamOf(Buffer.from('BZh91AY&SY....')), {}),
      /unsupported compression: bzip2/,
    );
    const xz = Buffer.concat([Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), Buffer.alloc(100)]);
    await assert.rejects(
      env.images.importImage(streamOf(xz), {}),
      (e: unknown) => e instanceof InvalidArgument,
    );
    assert.equal(env.content.list().length, before);
  });

  it('rejects bad changes and references without storing anything', async () => {
    await assert.rejects(
      env.images.importImage(streamOf(await sampleLayer('x')), { changes: ['RUN x'] }),
      /run is not a valid change command/,
    );
    await assert.rejects(
      env.images.importImage(streamOf(await sampleLayer('x')), { repo: 'Bad' }),
      /must be lowercase/,
    );
    assert.deepEqual(env.content.list(), []);
    assert.deepEqual(env.images.list({ all: true }), []);
  });

  it('removes what it added when the layer is not a valid tar', async () => {
    const evil = await tarOf([{ name: '../escape', type: 'file', data: 'x' }]);
    await assert.rejects(env.images.importImage(streamOf(evil), { repo: 'evil' }), /escapes the layer/);
    assert.deepEqual(env.content.list(), []);
    assert.deepEqual(env.snapshotter.listLayers(), []);
    assert.ok(!fs.existsSync(path.join(env.root, '..', 'escape')));
  });
});

describe('tags, list, inspect, history', () => {
  it('tags, lists one entry per image with all its tags, inspects like dockerd', async () => {
    const id = await env.images.importImage(streamOf(await sampleLayer('t')), {
      repo: 'bb',
      changes: ['LABEL a=b'],
    });
    assert.equal(env.images.tag('bb', '127.0.0.1:5000/bb', 'v1'), '127.0.0.1:5000/bb:v1');
    assert.equal(env.images.tag('bb', 'docker.io/library/mytag'), 'mytag:latest');
    const list = env.images.list();
    assert.equal(list.length, 1);
    assert.deepEqual(list[0].RepoTags, ['127.0.0.1:5000/bb:v1', 'bb:latest', 'mytag:latest']);
    assert.equal(list[0].RepoDigests, null);
    assert.deepEqual(list[0].Labels, { a: 'b' });
    assert.equal(list[0].Containers, -1);
    const inspect = env.images.inspect('mytag');
    assert.equal(inspect.Id, id);
    assert.deepEqual(inspect.RootFS, {
      Type: 'layers',
      Layers: env.images.resolve(id).config.rootfs.diff_ids,
    });
    assert.equal(inspect.Size, env.images.resolve(id).size);
    assert.ok((inspect.Size as number) > 0);
    assert.equal((inspect.Config as Record<string, unknown>).Hostname, '');
    assert.notEqual((inspect.Metadata as { LastTagTime: string }).LastTagTime, '0001-01-01T00:00:00Z');
    assert.throws(() => env.images.tag('bb', 'x@sha256:' + 'a'.repeat(64)), /digest reference/);
    assert.throws(() => env.images.tag('bb', 'x', 'bad tag'), /invalid tag format/);
    assert.throws(() => env.images.tag('nosuch', 'x'), NotFound);
  });

  it('filters the list like dockerd', async () => {
    const a = await env.images.importImage(streamOf(await sampleLayer('a')), {
      repo: 'a',
      changes: ['LABEL k=1'],
    });
    await new Promise((r) => setTimeout(r, 5));
    const b = await env.images.importImage(streamOf(await sampleLayer('b')), {
      repo: 'b',
      changes: ['LABEL k=2'],
    });
    const ids = (filters: Record<string, string[]>) =>
      env.images.list({ filters: new Map(Object.entries(filters)) }).map((i) => i.Id);
    assert.deepEqual(ids({ label: ['k=1'] }), [a]);
    assert.deepEqual(ids({ label: ['k'] }), [b, a]);
    assert.deepEqual(ids({ reference: ['b'] }), [b]);
    assert.deepEqual(ids({ reference: ['*'] }), [b, a]);
    assert.deepEqual(ids({ since: ['a'] }), [b]);
    assert.deepEqual(ids({ before: ['b'] }), [a]);
    assert.deepEqual(ids({ dangling: ['true'] }), []);
    assert.throws(() => ids({ dangling: ['maybe'] }), /Invalid filter 'dangling=\[maybe\]'/);
    // Moving the tag leaves the old image dangling.
    env.images.tag(b, 'a');
    const dangling = env.images.list({ filters: new Map([['dangling', ['true']]]) });
    assert.deepEqual(
      dangling.map((i) => [i.Id, i.RepoTags]),
      [[a, ['<none>:<none>']]],
    );
    assert.deepEqual(ids({ dangling: ['false'] }), [b]);
  });

  it('createImage stacks on the parent, shares its layers, and history follows the parent chain', async () => {
    const baseId = await env.images.importImage(streamOf(await sampleLayer('base')), { repo: 'base' });
    const base = env.images.resolve(baseId);
    const added = await tarOf([{ name: 'app.txt', type: 'file', data: 'app\n' }]);
    const childId = await env.images.createImage({
      parent: base,
      layers: [{ tar: streamOf(added) }],
      config: { ...base.config.config, Cmd: ['cat', '/app.txt'] },
      history: [{ created: new Date().toISOString(), created_by: '/bin/sh -c #(nop) COPY app.txt' }],
      comment: 'built',
      tags: ['app:v1'],
    });
    const child = env.images.resolve('app:v1');
    assert.equal(child.id, childId);
    assert.equal(child.parentId, baseId);
    assert.equal(child.layers.length, 2);
    assert.deepEqual(child.layers[0], base.layers[0]);
    assert.deepEqual(
      child.layers.map((l) => l.chainId),
      chainIds([base.config.rootfs.diff_ids[0], sha256(added)]),
    );
    // Base layer directory shared, not copied.
    const dirs = env.snapshotter.lowerDirs(child.chainId!);
    assert.equal(dirs[1], env.snapshotter.lowerDirs(base.chainId!)[0]);
    assert.equal(child.size, base.size + child.layers[1].size);
    const history = env.images.history('app:v1');
    assert.deepEqual(
      history.map((h) => [h.Id, h.Tags, h.CreatedBy]),
      [
        [childId, ['app:v1'], '/bin/sh -c #(nop) COPY app.txt'],
        [baseId, ['base:latest'], ''],
      ],
    );
    assert.equal(history[1].Comment, 'Imported from -');
    // The base image is not listed as an intermediate: it has a tag.
    assert.equal(env.images.list().length, 2);
    // A parent with a child cannot go by id; by tag it is only untagged.
    await assert.rejects(
      env.images.remove(baseId),
      /unable to delete [0-9a-f]{12} \(cannot be forced\) - image has dependent child images/,
    );
    assert.deepEqual(await env.images.remove('base'), [{ Untagged: 'base:latest' }]);
    // Untagged parent with a child: hidden from the default list, shown with all.
    assert.deepEqual(
      env.images.list().map((i) => i.Id),
      [childId],
    );
    assert.equal(env.images.list({ all: true }).length, 2);
    // Removing the child prunes the untagged parent too.
    const removed = await env.images.remove('app:v1');
    assert.deepEqual(removed.slice(0, 2), [{ Untagged: 'app:v1' }, { Deleted: childId }]);
    assert.ok(removed.some((r) => 'Deleted' in r && r.Deleted === baseId));
    assert.deepEqual(env.images.list({ all: true }), []);
    assert.deepEqual(env.snapshotter.listLayers(), []);
    assert.deepEqual(env.content.list(), []);
  });
});

describe('remove and prune', () => {
  it('untags one of several tags, then deletes image, layer and blobs', async () => {
    const id = await env.images.importImage(streamOf(await sampleLayer('rm')), { repo: 'bb' });
    const chain = env.images.resolve(id).chainId!;
    env.images.tag('bb', 'other', 'v1');
    assert.deepEqual(await env.images.remove('bb'), [{ Untagged: 'bb:latest' }]);
    assert.deepEqual(tags(), ['other:v1']);
    assert.deepEqual(await env.images.remove('other:v1'), [
      { Untagged: 'other:v1' },
      { Deleted: id },
      { Deleted: chain },
    ]);
    assert.equal(env.snapshotter.getLayer(chain), null);
    assert.deepEqual(env.content.list(), []);
    await assert.rejects(
      env.images.remove('bb'),
      (e: unknown) => e instanceof NotFound && e.message === 'No such image: bb:latest',
    );
  });

  it('refuses to delete by id an image with several tags unless forced', async () => {
    const id = await env.images.importImage(streamOf(await sampleLayer('ids')), { repo: 'bb' });
    env.images.tag(id, 'cc');
    await assert.rejects(env.images.remove(id.slice(7, 19)), (e: unknown) => {
      return (
        e instanceof Conflict &&
        e.message ===
          `conflict: unable to delete ${id.slice(7, 19)} (must be forced) - image is referenced in multiple repositories`
      );
    });
    const removed = await env.images.remove(id, { force: true });
    assert.deepEqual(removed.slice(0, 3), [
      { Untagged: 'bb:latest' },
      { Untagged: 'cc:latest' },
      { Deleted: id },
    ]);
  });

  it('respects containers that use the image (409, force, garbage collection)', async () => {
    const id = await env.images.importImage(streamOf(await sampleLayer('used')), { repo: 'bb' });
    const chain = env.images.resolve(id).chainId!;
    let users: ImageUser[] = [{ id: 'c'.repeat(64), running: false }];
    env.images.setImageUsers((imageId) => (imageId === id ? users : []));
    await assert.rejects(env.images.remove('bb'), (e: unknown) => {
      return (
        e instanceof Conflict &&
        e.message ===
          `conflict: unable to remove repository reference "bb" (must force) - container cccccccccccc is using its referenced image ${id.slice(7, 19)}`
      );
    });
    await assert.rejects(
      env.images.remove(id),
      /\(must be forced\) - image is being used by stopped container cccccccccccc/,
    );
    // Running container: even force only untags.
    users = [{ id: 'd'.repeat(64), running: true }];
    await assert.rejects(
      env.images.remove(id, { force: true }),
      /\(cannot be forced\) - image is being used by running container dddddddddddd/,
    );
    assert.deepEqual(await env.images.remove('bb', { force: true }), [{ Untagged: 'bb:latest' }]);
    assert.equal(env.images.resolve(id).id, id);
    // Stopped container + force: the image goes away, its layer stays for the container.
    users = [{ id: 'c'.repeat(64), running: false }];
    assert.deepEqual(await env.images.remove(id, { force: true }), [{ Deleted: id }]);
    assert.throws(() => env.images.resolve(id), NotFound);
    assert.equal(env.images.findById(id)?.chainId, chain);
    assert.ok(env.snapshotter.getLayer(chain));
    assert.deepEqual(await env.images.collectGarbage(), []);
    users = [];
    assert.deepEqual(await env.images.collectGarbage(), [id]);
    assert.equal(env.snapshotter.getLayer(chain), null);
    assert.equal(env.images.findById(id), null);
    assert.deepEqual(env.content.list(), []);
  });

  it('prunes dangling images only, or every unused one with dangling=false', async () => {
    const old = await env.images.importImage(streamOf(await sampleLayer('old')), { repo: 'bb' });
    const current = await env.images.importImage(streamOf(await sampleLayer('new')), { repo: 'bb' });
    const keep = await env.images.importImage(streamOf(await sampleLayer('keep')), { repo: 'keep' });
    const oldSize = env.images.resolve(old).size;
    const report = await env.images.prune();
    assert.deepEqual(report.ImagesDeleted, [{ Deleted: old }, { Deleted: sha256(await sampleLayer('old')) }]);
    assert.equal(report.SpaceReclaimed, oldSize);
    assert.deepEqual(await env.images.prune(), { ImagesDeleted: null, SpaceReclaimed: 0 });
    env.images.setImageUsers((id) => (id === keep ? [{ id: 'e'.repeat(64), running: true }] : []));
    const all = await env.images.prune({ filters: new Map([['dangling', ['false']]]) });
    assert.ok(all.ImagesDeleted?.some((d) => 'Deleted' in d && d.Deleted === current));
    assert.deepEqual(
      env.images.list().map((i) => i.Id),
      [keep],
    );
  });
});

describe('save and load', () => {
  it('round-trips through docker-archive into another store with the same ids', async () => {
    const baseId = await env.images.importImage(streamOf(await sampleLayer('s')), {
      repo: 'bb',
      changes: ['CMD ["sh"]'],
    });
    env.images.tag('bb', '127.0.0.1:5000/bb', 'v1');
    const child = await env.images.createImage({
      parent: env.images.resolve(baseId),
      layers: [{ tar: streamOf(await tarOf([{ name: 'f', type: 'file', data: 'f' }])) }],
      config: { Cmd: ['cat', '/f'] },
      tags: ['child:1'],
    });
    const archive = await collect(env.images.saveImages(['bb', '127.0.0.1:5000/bb:v1', 'child:1']));
    const other = createImageEnv();
    try {
      const messages: Record<string, unknown>[] = [];
      const ids = await other.images.loadImages(streamOf(archive), (m) => messages.push(m), { quiet: true });
      assert.deepEqual(ids.sort(), [baseId, child].sort());
      assert.deepEqual(messages, [
        { stream: 'Loaded image: bb:latest\n' },
        { stream: 'Loaded image: 127.0.0.1:5000/bb:v1\n' },
        { stream: 'Loaded image: child:1\n' },
      ]);
      const loaded = other.images.resolve('child:1');
      assert.equal(loaded.id, child);
      assert.deepEqual(loaded.config.rootfs, env.images.resolve(child).config.rootfs);
      assert.equal(loaded.size, env.images.resolve(child).size);
      assert.equal(other.images.resolve('127.0.0.1:5000/bb:v1').id, baseId);
      // Shared base layer: one snapshot for both images.
      assert.equal(other.snapshotter.listLayers().length, 2);
      assert.deepEqual(other.events.map((e) => e.Action).sort(), ['load', 'load']);
      // Loading again changes nothing and says so again.
      const again: Record<string, unknown>[] = [];
      await other.images.loadImages(streamOf(zlib.gzipSync(archive)), (m) => again.push(m), { quiet: false });
      assert.ok(again.some((m) => m.status === 'Loading layer'));
      assert.equal(other.images.list({ all: true }).length, 2);
      // The archive metadata blobs were not kept.
      assert.equal(other.content.list().length, env.content.list().length);
    } finally {
      other.close();
    }
  });

  it('writes the legacy layout docker load expects', async () => {
    const layer = await sampleLayer('layout');
    const id = await env.images.importImage(streamOf(zlib.gzipSync(layer)), { repo: 'bb' });
    const { readTarEntries } = await import('../../src/common/tar.js');
    const entries = await readTarEntries(env.images.saveImages(['bb:latest']));
    const byName = new Map(entries.map((e) => [e.header.name.replace(/\/$/, ''), e]));
    const manifest = JSON.parse(byName.get('manifest.json')!.body.toString());
    assert.equal(manifest.length, 1);
    assert.equal(manifest[0].Config, `${id.slice(7)}.json`);
    assert.deepEqual(manifest[0].RepoTags, ['bb:latest']);
    const layerPath: string = manifest[0].Layers[0];
    // Uncompressed layer.tar, byte for byte the diff.
    assert.deepEqual(byName.get(layerPath)!.body, layer);
    assert.equal(sha256(byName.get(manifest[0].Config)!.body), id);
    assert.equal(byName.get(`${layerPath.split('/')[0]}/VERSION`)!.body.toString(), '1.0');
    const repositories = JSON.parse(byName.get('repositories')!.body.toString());
    assert.deepEqual(repositories, { bb: { latest: layerPath.split('/')[0] } });
    assert.throws(() => env.images.saveImages(['nosuch']), NotFound);
  });

  it('loads gzip layers, symlinked duplicate layers and untagged images', async () => {
    const layer = await sampleLayer('dup');
    const { archive, id } = await dockerArchive({ layers: [layer, layer], gzipLayers: true });
    const messages: Record<string, unknown>[] = [];
    await env.images.loadImages(streamOf(archive), (m) => messages.push(m), { quiet: true });
    assert.deepEqual(messages, [{ stream: `Loaded image ID: ${id}\n` }]);
    const image = env.images.resolve(id);
    assert.equal(image.layers.length, 2);
    assert.equal(image.layers[0].mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
    assert.deepEqual(image.repoTags, []);
    // dockerd writes a repeated layer once and links the second copy to it.
    const { archive: linked } = await dockerArchive({
      layers: [layer, layer],
      repoTags: ['dup:1'],
      linkDuplicates: true,
    });
    await env.images.loadImages(streamOf(linked), () => {}, { quiet: true });
    assert.equal(env.images.resolve('dup:1').id, id);
    assert.deepEqual(env.images.resolve(id).repoTags, ['dup:1']);
  });

  it('loads an OCI image layout (index.json, blobs/sha256)', async () => {
    const layer = await sampleLayer('oci');
    const gz = zlib.gzipSync(layer);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['sh'] },
        rootfs: { type: 'layers', diff_ids: [sha256(layer)] },
      }),
    );
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: {
          mediaType: 'application/vnd.oci.image.config.v1+json',
          digest: sha256(config),
          size: config.length,
        },
        layers: [
          { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(gz), size: gz.length },
        ],
      }),
    );
    const index = {
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          digest: sha256(manifest),
          size: manifest.length,
          annotations: {
            'io.containerd.image.name': 'docker.io/library/ocitest:1',
            'org.opencontainers.image.ref.name': '1',
          },
        },
      ],
    };
    const blob = (data: Buffer) => ({
      name: `blobs/sha256/${sha256(data).slice(7)}`,
      type: 'file' as const,
      data,
    });
    const archive = await tarOf([
      { name: 'oci-layout', type: 'file', data: '{"imageLayoutVersion":"1.0.0"}' },
      { name: 'index.json', type: 'file', data: JSON.stringify(index) },
      { name: 'blobs', type: 'directory' },
      { name: 'blobs/sha256', type: 'directory' },
      blob(config),
      blob(manifest),
      blob(gz),
    ]);
    const messages: Record<string, unknown>[] = [];
    await env.images.loadImages(streamOf(archive), (m) => messages.push(m), { quiet: true });
    assert.deepEqual(messages, [{ stream: 'Loaded image: ocitest:1\n' }]);
    assert.equal(env.images.resolve('ocitest:1').id, sha256(config));

    // A blob whose content does not match its name is refused.
    const tampered = await tarOf([
      { name: 'index.json', type: 'file', data: JSON.stringify(index) },
      { name: `blobs/sha256/${sha256(config).slice(7)}`, type: 'file', data: Buffer.from('{"not":"it"}') },
    ]);
    const fresh = createImageEnv();
    try {
      await assert.rejects(
        fresh.images.loadImages(streamOf(tampered), () => {}),
        /digest mismatch|size mismatch/,
      );
      assert.deepEqual(fresh.content.list(), []);
    } finally {
      fresh.close();
    }
  });
});

describe('malicious archives change nothing', () => {
  const outside = () => path.join(env.base, 'outside');

  async function expectRejected(archive: Buffer, pattern: RegExp): Promise<void> {
    fs.mkdirSync(outside(), { recursive: true });
    // Something already in the store, which must survive untouched.
    if (env.images.list({ all: true }).length === 0) {
      await env.images.importImage(streamOf(await sampleLayer('existing')), { repo: 'keep' });
    }
    const imagesBefore = env.images.list({ all: true }).map((i) => i.Id);
    const blobsBefore = env.content
      .list()
      .map((b) => b.digest)
      .sort();
    const layersBefore = env.snapshotter
      .listLayers()
      .map((l) => l.chainId)
      .sort();
    const rootBefore = listTree(path.join(env.root, 'snapshots')).length;
    await assert.rejects(
      env.images.loadImages(streamOf(archive), () => {}),
      pattern,
    );
    assert.deepEqual(
      env.images.list({ all: true }).map((i) => i.Id),
      imagesBefore,
    );
    assert.deepEqual(
      env.content
        .list()
        .map((b) => b.digest)
        .sort(),
      blobsBefore,
    );
    assert.deepEqual(
      env.snapshotter
        .listLayers()
        .map((l) => l.chainId)
        .sort(),
      layersBefore,
    );
    assert.equal(listTree(path.join(env.root, 'snapshots')).length, rootBefore);
    assert.deepEqual(listTree(outside()), []);
    assert.deepEqual(listTree(path.join(env.root, 'content', 'ingest')), []);
  }

  it('a layer with ../ entries', async () => {
    const layer = await tarOf([
      { name: 'ok', type: 'file', data: 'fine' },
      { name: '../../outside/pwned', type: 'file', data: 'x' },
    ]);
    const { archive } = await dockerArchive({ layers: [layer], repoTags: ['evil:1'] });
    await expectRejected(archive, /escapes the layer/);
  });

  it('a layer writing through a symlink that points out', async () => {
    const layer = await tarOf([
      { name: 'link', type: 'symlink', linkname: outside() },
      { name: 'link/pwned', type: 'file', data: 'x' },
    ]);
    const { archive } = await dockerArchive({ layers: [layer], repoTags: ['evil:1'] });
    await expectRejected(archive, /through the symlink/);
  });

  it('a layer with a hard link to a file outside', async () => {
    fs.mkdirSync(outside(), { recursive: true });
    const layer = await tarOf([{ name: 'passwd', type: 'link', linkname: '../../../../../../etc/passwd' }]);
    const { archive } = await dockerArchive({ layers: [layer], repoTags: ['evil:1'] });
    await expectRejected(archive, /invalid layer tar/);
  });

  it('absolute paths inside a layer stay inside the layer', async () => {
    const target = path.join(outside(), 'abs-pwned');
    const layer = await tarOf([{ name: target, type: 'file', data: 'x' }]);
    const { archive } = await dockerArchive({ layers: [layer], repoTags: ['abs:1'] });
    await env.images.loadImages(streamOf(archive), () => {}, { quiet: true });
    assert.equal(fs.existsSync(target), false);
    const dir = env.snapshotter.lowerDirs(env.images.resolve('abs:1').chainId!)[0];
    assert.ok(fs.existsSync(path.join(dir, target)));
  });

  it('archive paths that leave the archive, or are absolute', async () => {
    const layer = await sampleLayer('p');
    const { archive } = await dockerArchive({ layers: [layer], layerPaths: ['../../outside/layer.tar'] });
    await expectRejected(archive, /leaves the archive/);
    const absolute = await tarOf([{ name: '/etc/cron.d/evil', type: 'file', data: 'x' }]);
    await expectRejected(absolute, /absolute path/);
    const linkOut = await tarOf([{ name: 'manifest.json', type: 'symlink', linkname: '/etc/passwd' }]);
    await expectRejected(linkOut, /absolute path/);
  });

  it('a manifest naming a missing layer, a config that lies about its layers, garbage', async () => {
    const layer = await sampleLayer('m');
    const missing = await dockerArchive({ layers: [layer], manifestLayers: ['nowhere/layer.tar'] });
    await expectRejected(missing.archive, /"nowhere\/layer.tar" not found in the archive/);
    const escaping = await dockerArchive({ layers: [layer], manifestLayers: ['../../etc/passwd'] });
    await expectRejected(escaping.archive, /leaves the archive/);
    const lying = await dockerArchive({
      layers: [layer],
      config: { rootfs: { type: 'layers', diff_ids: [sha256('other')] } },
    });
    await expectRejected(lying.archive, /diff id|does not match|mismatch/i);
    const tooMany = await dockerArchive({
      layers: [layer],
      manifestLayers: ['layer0/layer.tar', 'layer0/layer.tar'],
    });
    await expectRejected(tooMany.archive, /lists 2 layers but its config has 1 diff ids/);
    const noManifest = await tarOf([{ name: 'layer.tar', type: 'file', data: layer }]);
    await expectRejected(noManifest, /no manifest.json or index.json/);
    await expectRejected(
      Buffer.from('this is not a tar archive at all, just text'.repeat(20)),
      /invalid archive/,
    );
    const badJson = await tarOf([{ name: 'manifest.json', type: 'file', data: '[{"Config": 5}]' }]);
    await expectRejected(badJson, /invalid manifest.json/);
  });
});
