import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { chainIds, type Digest } from '../../src/common/digest.js';
import { Conflict, InvalidArgument, NotFound } from '../../src/common/errors.js';
import { packEntries, readTarEntries, type TarInputEntry } from '../../src/common/tar.js';
import { constants, lgetxattr, lsetxattr, mknod } from '../../src/native/index.js';
import { isMountPoint } from '../../src/snapshots/overlay.js';
import { FileSystemFlusher, OverlaySnapshotter, snapshotsSchema } from '../../src/snapshots/store.js';
import { type Db, openStore } from '../../src/store/db.js';
import { collect, describeTree, TempDir } from './helpers.js';

let tmp: TempDir;
let db: Db;
let snapshotter: OverlaySnapshotter;
let snapshotRoot = '';

const BASE: TarInputEntry[] = [
  { name: 'etc', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  {
    name: 'etc/passwd',
    type: 'file',
    data: 'root:x:0:0::/root:/bin/sh\n',
    mtimeNs: 1_600_000_000_000_000_000n,
  },
  { name: 'etc/hosts', type: 'file', data: '127.0.0.1 localhost\n', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'etc/motd', type: 'file', data: 'hello\n', mode: 0o644, mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'dir', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'dir/a', type: 'file', data: 'a', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'dir/sub', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'dir/sub/b', type: 'file', data: 'b', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'usr', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'usr/bin', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  {
    name: 'usr/bin/tool',
    type: 'file',
    data: '#!/bin/sh\n',
    mode: 0o755,
    mtimeNs: 1_600_000_000_000_000_000n,
  },
  { name: 'untouched', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'untouched/f', type: 'file', data: 'same', mtimeNs: 1_600_000_000_000_000_000n },
];

const SECOND: TarInputEntry[] = [
  { name: 'etc', type: 'directory', mtimeNs: 1_600_000_000_000_000_000n },
  { name: 'etc/.wh.motd', type: 'file' },
  { name: 'etc/added-by-layer-2', type: 'file', data: '2' },
];

async function tarBuffer(entries: TarInputEntry[]): Promise<Buffer> {
  return collect(packEntries(entries));
}

function digestOf(buf: Buffer): Digest {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

function layerDirs(): string[] {
  return fs.readdirSync(snapshotRoot).filter((n) => /^\d+$/.test(n));
}

before(() => {
  tmp = new TempDir('store');
  db = openStore(tmp.path, [snapshotsSchema]);
  snapshotRoot = tmp.join('snapshots');
  snapshotter = new OverlaySnapshotter(db, snapshotRoot, { syncLayers: false });
});

after(() => {
  db.close();
  tmp.cleanup();
});

describe('OverlaySnapshotter layers', () => {
  let baseTar: Buffer;
  let secondTar: Buffer;
  let baseChain: Digest;
  let secondChain: Digest;

  before(async () => {
    baseTar = await tarBuffer(BASE);
    secondTar = await tarBuffer(SECOND);
    [baseChain, secondChain] = chainIds([digestOf(baseTar), digestOf(secondTar)]);
  });

  test('unpacks a chain; chain ids follow the OCI rule; lowerDirs is top first', async () => {
    const base = await snapshotter.unpackLayer(null, Readable.from([baseTar]));
    assert.equal(base.diffId, digestOf(baseTar));
    assert.equal(base.chainId, baseChain);
    assert.equal(base.parentChainId, null);
    assert.match(base.dir, new RegExp(`^${snapshotRoot}/\\d+/fs$`));
    assert.equal(fs.readFileSync(path.join(base.dir, 'etc/passwd'), 'utf8'), 'root:x:0:0::/root:/bin/sh\n');
    const second = await snapshotter.unpackLayer(baseChain, Readable.from([secondTar]), digestOf(secondTar));
    assert.equal(second.chainId, secondChain);
    assert.equal(second.parentChainId, baseChain);
    assert.equal(second.size, 1);
    assert.deepEqual(snapshotter.lowerDirs(secondChain), [second.dir, base.dir]);
    assert.deepEqual(snapshotter.getLayer(secondChain), second);
    assert.ok(fs.lstatSync(path.join(second.dir, 'etc/motd')).isCharacterDevice());
    assert.equal(snapshotter.listLayers().length, 2);
  });

  test('unpacking an existing chain reuses it and still verifies the stream', async () => {
    const before = layerDirs();
    const again = await snapshotter.unpackLayer(null, Readable.from([baseTar]));
    assert.equal(again.chainId, baseChain);
    const verified = await snapshotter.unpackLayer(null, Readable.from([baseTar]), digestOf(baseTar));
    assert.equal(verified.dir, again.dir);
    await assert.rejects(
      snapshotter.unpackLayer(null, Readable.from([secondTar]), digestOf(baseTar)),
      (err: unknown) => err instanceof InvalidArgument && /does not match its diff id/.test(err.message),
    );
    assert.deepEqual(layerDirs(), before);
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'tmp')), []);
  });

  test('a diff id mismatch or a rejected tar leaves nothing behind', async () => {
    const before = layerDirs();
    const rows = snapshotter.listLayers().length;
    const other = await tarBuffer([{ name: 'x', type: 'file', data: 'x' }]);
    await assert.rejects(
      snapshotter.unpackLayer(null, Readable.from([other]), digestOf(baseTar)),
      InvalidArgument,
    );
    const evil = await tarBuffer([
      { name: 'ok', type: 'file', data: 'written before the bad entry' },
      { name: 'evil', type: 'symlink', linkname: '/' },
      { name: 'evil/tmp/planted', type: 'file', data: 'x' },
    ]);
    await assert.rejects(snapshotter.unpackLayer(null, Readable.from([evil])), /invalid layer tar/);
    assert.ok(!fs.existsSync('/tmp/planted'));
    assert.deepEqual(layerDirs(), before);
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'tmp')), []);
    assert.equal(snapshotter.listLayers().length, rows);
  });

  test('an unknown parent is NotFound', async () => {
    await assert.rejects(
      snapshotter.unpackLayer(`sha256:${'0'.repeat(64)}`, Readable.from([secondTar])),
      NotFound,
    );
  });

  test('removeLayer refuses a parent, then removes top-down; garbage is swept at start', async () => {
    assert.throws(() => snapshotter.removeLayer(baseChain), Conflict);
    const secondDir = snapshotter.getLayer(secondChain)!.dir;
    snapshotter.removeLayer(secondChain);
    assert.ok(!fs.existsSync(path.dirname(secondDir)));
    assert.equal(snapshotter.getLayer(secondChain), null);
    assert.throws(() => snapshotter.removeLayer(secondChain), NotFound);

    // A crash between rename and commit, or mid-unpack, leaves directories no row references.
    fs.mkdirSync(path.join(snapshotRoot, '999', 'fs'), { recursive: true });
    fs.mkdirSync(path.join(snapshotRoot, 'tmp', 'layer-crashed', 'fs'), { recursive: true });
    const restarted = new OverlaySnapshotter(db, snapshotRoot, { syncLayers: false });
    assert.ok(!fs.existsSync(path.join(snapshotRoot, '999')));
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'tmp')), []);
    assert.ok(restarted.getLayer(baseChain) !== null);
    assert.ok(fs.existsSync(restarted.getLayer(baseChain)!.dir));

    // Re-adding the removed layer works and gets a new directory.
    const readded = await snapshotter.unpackLayer(baseChain, Readable.from([secondTar]));
    assert.notEqual(readded.dir, secondDir);
  });
});

describe('OverlaySnapshotter layer ids', () => {
  test('layers committed side by side get distinct directories; a removed id is never reused', async () => {
    const tars = await Promise.all(
      ['one', 'two', 'three'].map((name) => tarBuffer([{ name, type: 'file', data: name }])),
    );
    const layers = await Promise.all(tars.map((tar) => snapshotter.unpackLayer(null, Readable.from([tar]))));
    const ids = layers.map((layer) => Number(path.basename(path.dirname(layer.dir))));
    assert.equal(new Set(ids).size, 3);
    for (const [i, layer] of layers.entries()) {
      assert.equal(
        fs.readFileSync(path.join(layer.dir, ['one', 'two', 'three'][i]!), 'utf8'),
        ['one', 'two', 'three'][i],
      );
    }
    const highest = Math.max(...ids);
    snapshotter.removeLayer(layers[ids.indexOf(highest)]!.chainId);
    const next = await snapshotter.unpackLayer(
      null,
      Readable.from([await tarBuffer([{ name: 'four', type: 'file' }])]),
    );
    assert.ok(Number(path.basename(path.dirname(next.dir))) > highest);
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'tmp')), []);
  });
});

describe('OverlaySnapshotter durability', () => {
  test('a layer of a few files is fsynced file by file, a big tree with syncfs; both commit whole', async () => {
    fs.mkdirSync(tmp.join('durable-db'));
    const durableDb = openStore(tmp.join('durable-db'), [snapshotsSchema]);
    try {
      const durable = new OverlaySnapshotter(durableDb, tmp.join('durable'));
      // Few files and directories, plus nodes that must not be opened (a FIFO would block an open).
      const few = await tarBuffer([
        { name: 'data/big.bin', type: 'file', data: Buffer.alloc(3 * 1024 * 1024, 9) },
        { name: 'data/link', type: 'symlink', linkname: 'big.bin' },
        { name: 'data/fifo', type: 'fifo' },
        { name: 'etc/.wh.gone', type: 'file' },
      ]);
      const small = await durable.unpackLayer(null, Readable.from([few]), digestOf(few));
      assert.equal(fs.statSync(path.join(small.dir, 'data/big.bin')).size, 3 * 1024 * 1024);
      assert.ok(fs.lstatSync(path.join(small.dir, 'data/fifo')).isFIFO());
      assert.ok(fs.lstatSync(path.join(small.dir, 'etc/gone')).isCharacterDevice());
      const many = await tarBuffer(
        Array.from({ length: 100 }, (_, i) => ({ name: `tree/f${i}`, type: 'file' as const, data: `${i}` })),
      );
      const big = await durable.unpackLayer(small.chainId, Readable.from([many]), digestOf(many));
      assert.equal(fs.readdirSync(path.join(big.dir, 'tree')).length, 100);
      assert.equal(fs.readFileSync(path.join(big.dir, 'tree/f42'), 'utf8'), '42');
      assert.deepEqual(fs.readdirSync(tmp.join('durable', 'tmp')), []);
    } finally {
      durableDb.close();
    }
  });
});

describe('OverlaySnapshotter containers', () => {
  let chain: Digest;
  let containerDir = '';

  before(async () => {
    const baseTar = await tarBuffer(BASE);
    chain = (await snapshotter.unpackLayer(null, Readable.from([baseTar]))).chainId;
    containerDir = tmp.join('containers', 'c1');
  });

  test('FROM scratch: a chain with no layers mounts over an empty dir', () => {
    const dir = tmp.join('containers', 'scratch');
    snapshotter.prepareContainerLayer(dir);
    const rootfs = snapshotter.mountContainer(dir, null);
    try {
      assert.ok(snapshotter.isContainerMounted(dir));
      assert.deepEqual(fs.readdirSync(rootfs), []);
      fs.writeFileSync(path.join(rootfs, 'hello'), 'scratch');
      assert.deepEqual(snapshotter.containerChanges(dir, null), [{ path: '/hello', kind: 1 }]);
    } finally {
      snapshotter.removeContainerLayer(dir);
    }
    assert.ok(!isMountPoint(rootfs));
    assert.ok(!fs.existsSync(path.join(dir, 'upper')));
    // the shared empty lower dir stays empty
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'empty')), []);
  });

  test('docker diff kinds, then pack → unpack → overlay reproduces the container exactly', async () => {
    snapshotter.prepareContainerLayer(containerDir);
    const rootfs = snapshotter.mountContainer(containerDir, chain);
    assert.equal(snapshotter.mountContainer(containerDir, chain), rootfs, 'mounting twice is a no-op');
    const cap = Buffer.from('0100000200c00000000000000000000000000000', 'hex');
    let before: ReturnType<typeof describeTree>;
    try {
      const r = (p: string) => path.join(rootfs, p);
      fs.appendFileSync(r('etc/passwd'), 'app:x:1000:1000::/app:/bin/sh\n');
      fs.rmSync(r('etc/hosts'));
      fs.chmodSync(r('usr/bin/tool'), 0o700);
      fs.rmSync(r('dir'), { recursive: true });
      fs.mkdirSync(r('dir'));
      fs.writeFileSync(r('dir/fresh'), 'fresh');
      fs.mkdirSync(r('newdir/sub'), { recursive: true });
      fs.writeFileSync(r('newdir/sub/f'), 'f');
      fs.writeFileSync(r('newfile'), '');
      fs.writeFileSync(r('capfile'), 'elf');
      lsetxattr(r('capfile'), 'security.capability', cap);
      lsetxattr(r('capfile'), 'user.note', 'hi');
      fs.symlinkSync('/etc/passwd', r('link'));
      fs.lchownSync(r('link'), 1000, 1000);
      fs.writeFileSync(r('hard1'), 'shared');
      fs.linkSync(r('hard1'), r('newdir/hard2'));
      mknod(r('fifo'), constants.S_IFIFO | 0o600, 0, 0);
      mknod(r('null'), constants.S_IFCHR | 0o600, 1, 3);
      fs.writeFileSync(r('bigid'), 'ids');
      fs.chownSync(r('bigid'), 3_000_000, 3_000_001);
      fs.writeFileSync(r(`${'l'.repeat(200)}`), 'long name');

      assert.deepEqual(snapshotter.containerChanges(containerDir, chain), [
        { path: '/bigid', kind: 1 },
        { path: '/capfile', kind: 1 },
        { path: '/dir', kind: 0 },
        { path: '/dir/a', kind: 2 },
        { path: '/dir/fresh', kind: 1 },
        { path: '/dir/sub', kind: 2 },
        { path: '/etc', kind: 0 },
        { path: '/etc/hosts', kind: 2 },
        { path: '/etc/passwd', kind: 0 },
        { path: '/fifo', kind: 1 },
        { path: '/hard1', kind: 1 },
        { path: '/link', kind: 1 },
        { path: `/${'l'.repeat(200)}`, kind: 1 },
        { path: '/newdir', kind: 1 },
        { path: '/newdir/hard2', kind: 1 },
        { path: '/newdir/sub', kind: 1 },
        { path: '/newdir/sub/f', kind: 1 },
        { path: '/newfile', kind: 1 },
        { path: '/null', kind: 1 },
        { path: '/usr', kind: 0 },
        { path: '/usr/bin', kind: 0 },
        { path: '/usr/bin/tool', kind: 0 },
      ]);
      before = describeTree(rootfs);
    } finally {
      snapshotter.unmountContainer(containerDir);
    }
    assert.ok(!snapshotter.isContainerMounted(containerDir));

    const tar = await collect(snapshotter.packContainerDiff(containerDir));
    const names = (await readTarEntries(Readable.from([tar]))).map((e) => e.header.name);
    assert.ok(names.includes('etc/.wh.hosts'));
    assert.ok(names.includes('dir/.wh..wh..opq'));
    assert.ok(!names.includes('untouched/'), 'unchanged directories are not in the diff');

    const committed = await snapshotter.unpackLayer(chain, Readable.from([tar]));
    const replay = tmp.join('containers', 'replay');
    snapshotter.prepareContainerLayer(replay);
    const replayRoot = snapshotter.mountContainer(replay, committed.chainId);
    try {
      const after = describeTree(replayRoot);
      // Packed mtimes are whole seconds (as dockerd's); describeTree compares seconds.
      assert.deepEqual([...after.keys()], [...before.keys()]);
      for (const [rel, node] of before) assert.deepEqual(after.get(rel), node, rel);
      assert.deepEqual(lgetxattr(path.join(replayRoot, 'capfile'), 'security.capability'), cap);
      assert.deepEqual(snapshotter.containerChanges(replay, committed.chainId), []);
    } finally {
      snapshotter.removeContainerLayer(replay);
      snapshotter.removeContainerLayer(containerDir);
    }
  });
});

describe('unpacking a pull: layers side by side, one verified hash, shared syncfs', () => {
  test('a child unpacks while its parent is pending and is committed after it', async () => {
    const parentTar = await tarBuffer([{ name: 'p', type: 'file', data: 'parent' }]);
    const childTar = await tarBuffer([{ name: 'c', type: 'file', data: 'child' }]);
    const [parentChain, childChain] = chainIds([digestOf(parentTar), digestOf(childTar)]);
    let releaseParent!: (chain: Digest) => void;
    const parentDone = new Promise<Digest>((resolve) => {
      releaseParent = resolve;
    });
    const child = snapshotter.unpackLayer(parentDone, Readable.from([childTar]), digestOf(childTar));
    // The child's tar is consumed (staged) before the parent exists; nothing is recorded yet.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(snapshotter.hasLayer(childChain), false);
    assert.equal(fs.readdirSync(path.join(snapshotRoot, 'tmp')).length, 1, 'staged');
    const parent = await snapshotter.unpackLayer(null, Readable.from([parentTar]), digestOf(parentTar));
    releaseParent(parent.chainId);
    const committed = await child;
    assert.equal(committed.chainId, childChain);
    assert.equal(committed.parentChainId, parentChain);
    assert.equal(fs.readFileSync(path.join(committed.dir, 'c'), 'utf8'), 'child');
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'tmp')), []);
  });

  test('a failed parent fails the staged child and leaves nothing behind', async () => {
    const childTar = await tarBuffer([{ name: 'orphan', type: 'file', data: 'x' }]);
    const before = layerDirs().length;
    const failedParent = Promise.reject(new Error('parent download failed'));
    await assert.rejects(
      snapshotter.unpackLayer(failedParent, Readable.from([childTar]), digestOf(childTar)),
      /parent download failed/,
    );
    assert.equal(layerDirs().length, before);
    assert.deepEqual(fs.readdirSync(path.join(snapshotRoot, 'tmp')), []);
  });

  test('diffIdVerified skips the second hash: the caller-verified diff id is taken as is', async () => {
    const tar = await tarBuffer([{ name: 'verified-elsewhere', type: 'file', data: 'v' }]);
    const claimed = digestOf(Buffer.from('what the content store verified'));
    // Without the option the hash is checked (and here refused)...
    await assert.rejects(snapshotter.unpackLayer(null, Readable.from([tar]), claimed), /does not match/);
    // ...with it the stream is not hashed again: the layer is recorded under the verified digest.
    const layer = await snapshotter.unpackLayer(null, Readable.from([tar]), claimed, {
      diffIdVerified: true,
    });
    assert.equal(layer.diffId, claimed);
    assert.equal(fs.readFileSync(path.join(layer.dir, 'verified-elsewhere'), 'utf8'), 'v');
    snapshotter.removeLayer(layer.chainId);
  });

  test('flushes asked for while a syncfs runs share the next one', async () => {
    const calls: Array<() => void> = [];
    const flusher = new FileSystemFlusher(
      snapshotRoot,
      () => new Promise<void>((resolve) => calls.push(resolve)),
    );
    const first = flusher.flush();
    const second = flusher.flush();
    const third = flusher.flush();
    assert.equal(calls.length, 1, 'one syncfs running');
    calls[0]?.();
    await first;
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(calls.length, 2, 'the waiting callers share one more');
    calls[1]?.();
    await Promise.all([second, third]);
    assert.equal(calls.length, 2);
  });

  test('the real syncfs resolves, and rejects with the fs error for a missing directory', async () => {
    await new FileSystemFlusher(snapshotRoot).flush();
    await assert.rejects(new FileSystemFlusher(path.join(snapshotRoot, 'no-such-dir')).flush(), /ENOENT/);
  });
});
