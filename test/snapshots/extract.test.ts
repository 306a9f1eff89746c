import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { InvalidArgument } from '../../src/common/errors.js';
import { packEntries, type TarInputEntry } from '../../src/common/tar.js';
import { lgetxattr } from '../../src/native/index.js';
import { extractLayer, layerRelativePath } from '../../src/snapshots/extract.js';
import type { TarFeed } from '../../src/snapshots/snapshotter.js';
import { collect, TempDir } from './helpers.js';

let tmp: TempDir;
before(() => {
  tmp = new TempDir('extract');
});
after(() => tmp.cleanup());

const CAPABILITY = Buffer.from('0100000200c00000000000000000000000000000', 'hex');
const LONG_PATH = `deep/${'d'.repeat(90)}/${'f'.repeat(104)}`;

let counter = 0;
function freshDir(): string {
  const dir = tmp.join(`layer-${counter++}`);
  fs.mkdirSync(dir);
  return dir;
}

async function tarOf(entries: TarInputEntry[]): Promise<Buffer> {
  return collect(packEntries(entries));
}

/** A pushed tar (as a pull feeds it): pieces of one reused buffer, scribbled over after each call. */
function feedOf(tar: Buffer, pieceSize = 1000): TarFeed {
  return {
    feed: async (consume) => {
      const scratch = Buffer.alloc(pieceSize);
      for (let at = 0; at < tar.length; at += pieceSize) {
        const n = tar.copy(scratch, 0, at, Math.min(tar.length, at + pieceSize));
        consume(scratch.subarray(0, n));
        scratch.fill(0x5a);
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    },
  };
}

describe('layerRelativePath', () => {
  test('strips leading / and ./, refuses ..', () => {
    assert.equal(layerRelativePath('./etc/passwd'), 'etc/passwd');
    assert.equal(layerRelativePath('/etc//passwd'), 'etc/passwd');
    assert.equal(layerRelativePath('./'), '');
    assert.throws(() => layerRelativePath('../x'), InvalidArgument);
    assert.throws(() => layerRelativePath('a/../../x'), /invalid layer tar/);
    assert.throws(() => layerRelativePath('a/..'), InvalidArgument);
  });
});

describe('extractLayer', () => {
  test('keeps modes, owners, ns mtimes, xattrs, devices, FIFOs, hard links, long paths', async () => {
    const dir = freshDir();
    const tar = await tarOf([
      { name: './', type: 'directory', mode: 0o755, mtimeNs: 1_500_000_000_000_000_000n },
      { name: 'tmp', type: 'directory', mode: 0o1777, mtimeNs: 1_600_000_000_123_456_789n },
      { name: 'sgid', type: 'directory', mode: 0o2775, gid: 50 },
      { name: 'sgid/inner', type: 'file', data: 'x', mode: 0o644 },
      {
        name: 'usr/bin/newuidmap',
        type: 'file',
        mode: 0o4755,
        data: 'elf',
        mtimeNs: 1_700_000_000_123_456_789n,
        xattrs: new Map([['security.capability', CAPABILITY]]),
      },
      { name: 'big-ids', type: 'file', uid: 3_000_000, gid: 3_000_001, data: 'ids' },
      { name: 'empty', type: 'file', mode: 0o000 },
      { name: 'world', type: 'file', mode: 0o666, data: 'w' },
      { name: LONG_PATH, type: 'file', data: 'long' },
      { name: 'link', type: 'symlink', linkname: '/usr/bin/newuidmap', uid: 1000, gid: 1000 },
      { name: 'hard', type: 'link', linkname: 'usr/bin/newuidmap' },
      { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
      { name: 'dev/loop0', type: 'block-device', mode: 0o660, devmajor: 7, devminor: 0 },
      { name: 'fifo', type: 'fifo', mode: 0o620 },
      { name: 'old', type: 'file', data: 'o', mtimeNs: -1_000_000_000n },
    ]);
    const result = await extractLayer(Readable.from([tar]), dir);
    assert.equal(result.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
    assert.equal(result.size, 1 + 3 + 3 + 0 + 1 + 4 + '/usr/bin/newuidmap'.length + 1);

    const st = (p: string) => fs.lstatSync(path.join(dir, p), { bigint: true });
    assert.equal(st('tmp').mode & 0o7777n, 0o1777n);
    assert.equal(st('tmp').mtimeNs, 1_600_000_000_123_456_789n);
    assert.equal(st('').mtimeNs, 1_500_000_000_000_000_000n);
    assert.equal(st('sgid').mode & 0o7777n, 0o2775n);
    assert.equal(st('sgid').gid, 50n);
    // The setgid bit is applied after the contents, so the file keeps the gid of its header.
    assert.equal(st('sgid/inner').gid, 0n);
    const tool = st('usr/bin/newuidmap');
    assert.equal(tool.mode & 0o7777n, 0o4755n);
    assert.equal(tool.mtimeNs, 1_700_000_000_123_456_789n);
    assert.deepEqual(lgetxattr(path.join(dir, 'usr/bin/newuidmap'), 'security.capability'), CAPABILITY);
    assert.equal(st('big-ids').uid, 3_000_000n);
    assert.equal(st('big-ids').gid, 3_000_001n);
    assert.equal(st('empty').size, 0n);
    assert.equal(st('empty').mode & 0o7777n, 0n);
    assert.equal(st('world').mode & 0o7777n, 0o666n);
    assert.equal(fs.readFileSync(path.join(dir, LONG_PATH), 'utf8'), 'long');
    assert.equal(LONG_PATH.length, 200);
    assert.equal(fs.readlinkSync(path.join(dir, 'link')), '/usr/bin/newuidmap');
    assert.equal(st('link').uid, 1000n);
    assert.equal(st('hard').ino, tool.ino);
    assert.equal(tool.nlink, 2n);
    assert.ok(st('dev/null').isCharacterDevice());
    assert.equal(st('dev/null').rdev, (1n << 8n) | 3n);
    assert.ok(st('dev/loop0').isBlockDevice());
    assert.equal(st('dev/loop0').mode & 0o7777n, 0o660n);
    assert.ok(st('fifo').isFIFO());
    assert.equal(st('fifo').mode & 0o7777n, 0o620n);
    assert.equal(st('old').mtimeNs, -1_000_000_000n);
  });

  test('converts whiteouts to overlay form', async () => {
    const dir = freshDir();
    await extractLayer(
      Readable.from([
        await tarOf([
          { name: 'etc/.wh.hosts', type: 'file', mode: 0o600 },
          { name: 'opaque', type: 'directory' },
          { name: 'opaque/.wh..wh..opq', type: 'file', mode: 0o600 },
          { name: 'opaque/kept', type: 'file', data: 'k' },
          { name: 'implicit/.wh..wh..opq', type: 'file' },
          { name: '.wh..wh.plnk', type: 'directory' },
        ]),
      ]),
      dir,
    );
    const whiteout = fs.lstatSync(path.join(dir, 'etc/hosts'));
    assert.ok(whiteout.isCharacterDevice());
    assert.equal(whiteout.rdev, 0);
    assert.ok(!fs.existsSync(path.join(dir, 'etc/.wh.hosts')));
    assert.equal(lgetxattr(path.join(dir, 'opaque'), 'trusted.overlay.opaque')?.toString(), 'y');
    assert.deepEqual(fs.readdirSync(path.join(dir, 'opaque')), ['kept']);
    assert.equal(lgetxattr(path.join(dir, 'implicit'), 'trusted.overlay.opaque')?.toString(), 'y');
    assert.ok(!fs.existsSync(path.join(dir, '.wh..wh.plnk')));
  });

  test('later entries replace earlier ones; overlay xattrs from the tar are ignored', async () => {
    const dir = freshDir();
    await extractLayer(
      Readable.from([
        await tarOf([
          { name: 'x', type: 'file', data: 'first' },
          { name: 'x', type: 'directory', mode: 0o700 },
          { name: 'x/child', type: 'file', data: 'c' },
          { name: 'y', type: 'symlink', linkname: 'x' },
          { name: 'y', type: 'file', data: 'now a file' },
          {
            name: 'z',
            type: 'directory',
            xattrs: new Map([['trusted.overlay.redirect', Buffer.from('/elsewhere')]]),
          },
        ]),
      ]),
      dir,
    );
    assert.ok(fs.lstatSync(path.join(dir, 'x')).isDirectory());
    assert.equal(fs.lstatSync(path.join(dir, 'x')).mode & 0o777, 0o700);
    assert.equal(fs.readFileSync(path.join(dir, 'y'), 'utf8'), 'now a file');
    assert.equal(lgetxattr(path.join(dir, 'z'), 'trusted.overlay.redirect'), null);
  });

  describe('refuses entries that would escape', () => {
    const hostName = `strata-escape-${randomBytes(6).toString('hex')}`;
    const outside = () => tmp.join(`outside-${hostName}`);
    before(() => fs.mkdirSync(outside()));

    const cases: Array<[string, () => TarInputEntry[], RegExp]> = [
      ['../x', () => [{ name: `../${hostName}`, type: 'file', data: 'x' }], /escapes the layer/],
      ['a/../../x', () => [{ name: `a/../../${hostName}`, type: 'file', data: 'x' }], /escapes the layer/],
      [
        'a symlink to / then a file through it',
        () => [
          { name: 'evil', type: 'symlink', linkname: '/' },
          { name: `evil/etc/${hostName}`, type: 'file', data: 'x' },
        ],
        /through the symlink "evil"/,
      ],
      [
        'a symlink pointing outside then a file under it',
        () => [
          { name: 'out', type: 'symlink', linkname: `../../../../../../../..${outside()}` },
          { name: 'out/planted', type: 'file', data: 'x' },
        ],
        /through the symlink "out"/,
      ],
      [
        'a hard link to /etc/passwd',
        () => [{ name: 'passwd', type: 'link', linkname: '/etc/passwd' }],
        /not in this layer/,
      ],
      [
        'a hard link through a symlink of the same layer',
        () => [
          { name: 'root', type: 'symlink', linkname: '/' },
          { name: 'shadow', type: 'link', linkname: 'root/etc/shadow' },
        ],
        /through the symlink "root"/,
      ],
      [
        'a hard link with ..',
        () => [{ name: 'h', type: 'link', linkname: '../../etc/passwd' }],
        /escapes the layer/,
      ],
      ['a whiteout of ..', () => [{ name: 'd/.wh...', type: 'file' }], /names no file/],
    ];

    for (const [label, entries, message] of cases) {
      for (const source of ['stream', 'feed'] as const) {
        test(`${label} (${source})`, async () => {
          const dir = freshDir();
          const passwdLinks = fs.statSync('/etc/passwd').nlink;
          const tar = await tarOf(entries());
          await assert.rejects(
            extractLayer(source === 'stream' ? Readable.from([tar]) : feedOf(tar, 700), dir),
            (err: unknown) => {
              assert.ok(err instanceof InvalidArgument, String(err));
              assert.match(err.message, /^invalid layer tar: /);
              assert.match(err.message, message);
              return true;
            },
          );
          assert.ok(!fs.existsSync(tmp.join(hostName)));
          assert.ok(!fs.existsSync(path.join('/etc', hostName)));
          assert.ok(!fs.existsSync(path.join('/', hostName)));
          assert.deepEqual(fs.readdirSync(outside()), []);
          assert.equal(fs.statSync('/etc/passwd').nlink, passwdLinks);
        });
      }
    }

    test('an absolute name lands inside the layer', async () => {
      const dir = freshDir();
      await extractLayer(
        Readable.from([await tarOf([{ name: `/etc/${hostName}`, type: 'file', data: 'in' }])]),
        dir,
      );
      assert.equal(fs.readFileSync(path.join(dir, 'etc', hostName), 'utf8'), 'in');
      assert.ok(!fs.existsSync(path.join('/etc', hostName)));
    });
  });

  test('a pushed tar unpacks like a stream: bodies from a reused buffer, whiteouts, the same diff id', async () => {
    const data = randomBytes(300_000);
    const tar = await tarOf([
      { name: 'bin', type: 'directory' },
      { name: 'bin/big', type: 'file', data, mode: 0o755 },
      { name: `${'p'.repeat(120)}/${'q'.repeat(120)}`, type: 'file', data: 'long name' },
      { name: 'etc/.wh.hosts', type: 'file' },
      { name: 'opaque/.wh..wh..opq', type: 'file' },
      { name: 'bin/hard', type: 'link', linkname: 'bin/big' },
    ]);
    const fromStream = await extractLayer(Readable.from([tar]), freshDir());
    for (const pieceSize of [1, 511, 4096, 1 << 20]) {
      const dir = freshDir();
      const fromFeed = await extractLayer(feedOf(tar, pieceSize), dir);
      assert.deepEqual(fromFeed, fromStream);
      assert.equal(fromFeed.diffId, `sha256:${createHash('sha256').update(tar).digest('hex')}`);
      assert.ok(fs.readFileSync(path.join(dir, 'bin/big')).equals(data), `piece size ${pieceSize}`);
      assert.equal(fs.statSync(path.join(dir, 'bin/hard')).ino, fs.statSync(path.join(dir, 'bin/big')).ino);
      assert.equal(fs.readFileSync(path.join(dir, 'p'.repeat(120), 'q'.repeat(120)), 'utf8'), 'long name');
      assert.ok(fs.lstatSync(path.join(dir, 'etc/hosts')).isCharacterDevice());
      assert.equal(lgetxattr(path.join(dir, 'opaque'), 'trusted.overlay.opaque')?.toString(), 'y');
    }
    const known = `sha256:${'1'.repeat(64)}` as const;
    assert.equal((await extractLayer(feedOf(tar), freshDir(), { knownDiffId: known })).diffId, known);
  });

  test('a pushed tar that is truncated, or whose source fails, is refused', async () => {
    const tar = await tarOf([{ name: 'f', type: 'file', data: Buffer.alloc(5000, 1) }]);
    await assert.rejects(
      extractLayer(feedOf(tar.subarray(0, 2048)), freshDir()),
      /invalid layer tar: .*ends inside an entry/,
    );
    const broken: TarFeed = {
      feed: async (consume) => {
        consume(tar.subarray(0, 1000));
        throw Object.assign(new Error('connection reset'), { code: 'ECONNRESET' });
      },
    };
    await assert.rejects(extractLayer(broken, freshDir()), { code: 'ECONNRESET' });
  });

  test('a truncated or garbage stream is an invalid layer', async () => {
    const tar = await tarOf([{ name: 'f', type: 'file', data: Buffer.alloc(5000, 1) }]);
    await assert.rejects(
      extractLayer(Readable.from([tar.subarray(0, 2048)]), freshDir()),
      /invalid layer tar/,
    );
    await assert.rejects(
      extractLayer(Readable.from([Buffer.alloc(1024, 7)]), freshDir()),
      /invalid layer tar/,
    );
  });

  test('a failing source stream rejects', async () => {
    const source = new Readable({
      read() {
        this.destroy(Object.assign(new Error('connection reset'), { code: 'ECONNRESET' }));
      },
    });
    await assert.rejects(extractLayer(source, freshDir()), { code: 'ECONNRESET' });
  });
});
