import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { readTarEntries } from '../../src/common/tar.js';
import { constants, lsetxattr, lutimesNs, mknod } from '../../src/native/index.js';
import { hashingSink, packAndUnpackDiff } from '../../src/snapshots/diff-layer.js';
import { extractLayer } from '../../src/snapshots/extract.js';
import { deviceNumbers, packLayer } from '../../src/snapshots/pack.js';
import { collect, describeTree, TempDir } from './helpers.js';

let tmp: TempDir;
let upper = '';
const CAPABILITY = Buffer.from('0100000200c00000000000000000000000000000', 'hex');

before(() => {
  tmp = new TempDir('pack');
  upper = tmp.join('upper');
  // An upper dir as overlayfs leaves it after: rm /etc/hosts, rm -rf /opt && mkdir /opt, and more.
  fs.mkdirSync(path.join(upper, 'etc'), { recursive: true });
  mknod(path.join(upper, 'etc/hosts'), constants.S_IFCHR, 0, 0);
  fs.writeFileSync(path.join(upper, 'etc/passwd'), 'root:x:0:0::/root:/bin/sh\n');
  fs.mkdirSync(path.join(upper, 'opt'));
  lsetxattr(path.join(upper, 'opt'), 'trusted.overlay.opaque', 'y');
  lsetxattr(path.join(upper, 'opt'), 'trusted.overlay.origin', Buffer.from([1, 2, 3]));
  fs.writeFileSync(path.join(upper, 'opt/new'), 'new');
  fs.writeFileSync(path.join(upper, 'cap'), 'elf');
  lsetxattr(path.join(upper, 'cap'), 'security.capability', CAPABILITY);
  lsetxattr(path.join(upper, 'cap'), 'user.note', 'kept');
  fs.writeFileSync(path.join(upper, 'a'), 'hard');
  fs.linkSync(path.join(upper, 'a'), path.join(upper, 'b'));
  fs.symlinkSync('/etc/passwd', path.join(upper, 'sym'));
  fs.lchownSync(path.join(upper, 'sym'), 1000, 1000);
  mknod(path.join(upper, 'null'), constants.S_IFCHR | 0o666, 1, 3);
  fs.chmodSync(path.join(upper, 'null'), 0o666); // mknod applies the umask
  mknod(path.join(upper, 'fifo'), constants.S_IFIFO | 0o600, 0, 0);
  fs.writeFileSync(path.join(upper, 'big-ids'), '');
  fs.chownSync(path.join(upper, 'big-ids'), 3_000_000, 3_000_001);
  fs.writeFileSync(path.join(upper, 'ünï'), 'u');
  fs.mkdirSync(path.join(upper, 'z', 'y'), { recursive: true });
  // Several read chunks, an odd size (padding), and a name only PAX can hold.
  fs.writeFileSync(path.join(upper, 'z/big'), Buffer.alloc(2.5 * 1024 * 1024 + 7, 'x'));
  fs.writeFileSync(path.join(upper, 'z', 'n'.repeat(180)), 'long name');
  fs.chmodSync(path.join(upper, 'z/big'), 0o4755);
  // Fix every time, so two packs can be compared and the clamp observed.
  const stamp = (rel: string, seconds: bigint) =>
    lutimesNs(
      path.join(upper, rel),
      seconds * 1_000_000_000n + 123n,
      seconds * 1_000_000_000n + 987_654_321n,
    );
  for (const rel of [
    'etc/hosts',
    'etc/passwd',
    'opt/new',
    'cap',
    'a',
    'sym',
    'null',
    'fifo',
    'big-ids',
    'ünï',
  ]) {
    stamp(rel, 1_700_000_000n);
  }
  for (const rel of ['etc', 'opt', 'z/y', 'z']) stamp(rel, 1_600_000_000n);
});
after(() => tmp.cleanup());

describe('packLayer', () => {
  test('converts overlay form to OCI whiteouts and keeps metadata', async () => {
    const entries = await readTarEntries(packLayer(upper));
    const names = entries.map((e) => e.header.name);
    assert.deepEqual(names, [
      'a',
      'b',
      'big-ids',
      'cap',
      'etc/',
      'etc/.wh.hosts',
      'etc/passwd',
      'fifo',
      'null',
      'opt/',
      'opt/.wh..wh..opq',
      'opt/new',
      'sym',
      'z/',
      'z/big',
      `z/${'n'.repeat(180)}`,
      'z/y/',
      'ünï',
    ]);
    const byName = new Map(entries.map((e) => [e.header.name, e]));
    const whiteout = byName.get('etc/.wh.hosts')!.header;
    assert.deepEqual([whiteout.type, whiteout.size, whiteout.mode], ['file', 0, 0o600]);
    const opaque = byName.get('opt/.wh..wh..opq')!.header;
    assert.equal(opaque.type, 'file');
    // Overlay's own xattrs never reach the tar.
    assert.equal(byName.get('opt/')!.header.xattrs.size, 0);
    assert.deepEqual(byName.get('cap')!.header.xattrs.get('security.capability'), CAPABILITY);
    assert.equal(byName.get('cap')!.header.xattrs.get('user.note')?.toString(), 'kept');
    assert.equal(byName.get('b')!.header.type, 'link');
    assert.equal(byName.get('b')!.header.linkname, 'a');
    assert.equal(byName.get('sym')!.header.linkname, '/etc/passwd');
    assert.equal(byName.get('sym')!.header.uid, 1000);
    const dev = byName.get('null')!.header;
    assert.deepEqual([dev.type, dev.devmajor, dev.devminor, dev.mode], ['character-device', 1, 3, 0o666]);
    assert.equal(byName.get('fifo')!.header.type, 'fifo');
    assert.equal(byName.get('big-ids')!.header.uid, 3_000_000);
    assert.equal(byName.get('big-ids')!.header.gid, 3_000_001);
    for (const e of entries) {
      assert.equal(e.header.uname, '');
      assert.equal(e.header.gname, '');
      assert.equal(e.header.atimeNs, null);
      // Whole seconds, as dockerd writes them.
      assert.equal(e.header.mtimeNs % 1_000_000_000n, 0n, e.header.name);
    }
    assert.equal(byName.get('etc/passwd')!.header.mtimeNs, 1_700_000_000_000_000_000n);
  });

  test('is deterministic, and clampMtime caps every mtime', async () => {
    const first = await collect(packLayer(upper));
    const second = await collect(packLayer(upper));
    assert.ok(first.equals(second));
    const clamped = await readTarEntries(packLayer(upper, { clampMtime: 1_650_000_000 }));
    for (const e of clamped) assert.ok(e.header.mtimeNs <= 1_650_000_000_000_000_000n, e.header.name);
    assert.equal(clamped.find((e) => e.header.name === 'z/')!.header.mtimeNs, 1_600_000_000_000_000_000n);
    assert.equal(clamped.find((e) => e.header.name === 'a')!.header.mtimeNs, 1_650_000_000_000_000_000n);
    // Clamping changes the bytes, so the digest differs from the unclamped one.
    assert.ok(!(await collect(packLayer(upper, { clampMtime: 1_650_000_000 }))).equals(first));
    assert.ok((await readTarEntries(Readable.from([first]))).length > 0);
  });

  test('packAndUnpackDiff: the same tar bytes as packLayer, and the tree extractLayer makes of them', async () => {
    for (const options of [{}, { clampMtime: 1_650_000_000 }]) {
      const expected = await collect(packLayer(upper, options));
      const chunks: Buffer[] = [];
      const hashing = hashingSink();
      const sink = {
        write: (chunk: Buffer) => {
          chunks.push(Buffer.from(chunk));
          hashing.write(chunk);
        },
        digest: () => hashing.digest(),
      };
      const onePass = tmp.join(`one-pass-${chunks.length}-${Object.keys(options).length}`);
      const unpacked = tmp.join(`unpacked-${Object.keys(options).length}`);
      fs.mkdirSync(onePass);
      fs.mkdirSync(unpacked);
      const result = packAndUnpackDiff(upper, onePass, sink, options);
      const tar = Buffer.concat(chunks);
      assert.ok(tar.equals(expected), 'tar bytes differ');
      assert.equal(result.tarSize, expected.length);
      const reference = await extractLayer(Readable.from([expected]), unpacked);
      assert.equal(result.diffId, reference.diffId);
      assert.equal(result.size, reference.size);
      assert.deepEqual(describeTree(onePass), describeTree(unpacked));
    }
  });

  test('packAndUnpackDiff leaves out excluded entries, as TarEntryFilter did', async () => {
    const target = tmp.join('excluded');
    fs.mkdirSync(target);
    const chunks: Buffer[] = [];
    const hashing = hashingSink();
    packAndUnpackDiff(
      upper,
      target,
      { write: (c) => void chunks.push(Buffer.from(c)), digest: () => hashing.digest() },
      { exclude: new Set(['etc/passwd', 'z/y/']) },
    );
    const names = (await readTarEntries(Readable.from([Buffer.concat(chunks)]))).map((e) => e.header.name);
    assert.ok(!names.includes('etc/passwd') && !names.includes('z/y/'));
    assert.ok(names.includes('etc/.wh.hosts') && names.includes('z/'));
    assert.ok(!fs.existsSync(path.join(target, 'etc/passwd')));
    assert.ok(!fs.existsSync(path.join(target, 'z/y')));
  });

  test('a missing upper dir destroys the stream with the error', async () => {
    await assert.rejects(collect(packLayer(tmp.join('no-such-dir'))), { code: 'ENOENT' });
  });

  test('deviceNumbers decodes Linux dev_t', () => {
    assert.deepEqual(deviceNumbers((1n << 8n) | 3n), { major: 1, minor: 3 });
    assert.deepEqual(deviceNumbers(BigInt(fs.lstatSync(path.join(upper, 'null')).rdev)), {
      major: 1,
      minor: 3,
    });
    // major 300, minor 70000: the split encoding of large numbers
    const rdev =
      ((300n & 0xfffn) << 8n) | ((300n & ~0xfffn) << 32n) | (70000n & 0xffn) | ((70000n & ~0xffn) << 12n);
    assert.deepEqual(deviceNumbers(rdev), { major: 300, minor: 70000 });
  });
});
