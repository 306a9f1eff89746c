import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  decodePaxRecords,
  encodePaxRecords,
  formatPaxTime,
  packEntries,
  parsePaxTime,
  readTarEntries,
  type TarInputEntry,
  TarWriter,
} from '../../src/common/tar.js';
import { lgetxattr, lsetxattr } from '../../src/native/index.js';

let tmp = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-tar-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

// cap_setuid,cap_setgid+ep (as on newuidmap): bytes 0xc0 would be mangled by a UTF-8 round trip.
const CAPABILITY = Buffer.from('0100000200c00000000000000000000000000000', 'hex');

const SAMPLE: TarInputEntry[] = [
  { name: 'dir', type: 'directory', mode: 0o1777, mtimeNs: 1_600_000_000_000_000_000n },
  {
    name: 'dir/newuidmap',
    type: 'file',
    mode: 0o4755,
    uid: 3_000_000,
    gid: 3_000_001,
    mtimeNs: 1_700_000_000_123_456_789n,
    data: 'binary',
    xattrs: new Map([
      ['security.capability', CAPABILITY],
      ['user.comment', Buffer.from('grüße', 'utf8')],
    ]),
  },
  { name: 'dir/empty', type: 'file', mode: 0o000 },
  { name: `long/${'p'.repeat(194)}`, type: 'file', data: 'deep' },
  { name: 'link', type: 'symlink', linkname: `/${'t'.repeat(150)}` },
  { name: 'hard', type: 'link', linkname: 'dir/newuidmap' },
  { name: 'null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
  { name: 'fifo', type: 'fifo', mode: 0o600 },
  { name: 'ünïcode', type: 'file', data: 'u' },
  { name: 'before-1970', type: 'file', mtimeNs: -86_400_000_000_001n },
];

describe('PAX codec', () => {
  test('records round-trip binary xattr values and UTF-8 paths', () => {
    const encoded = encodePaxRecords({
      name: 'päth',
      pax: { 'SCHILY.xattr.security.capability': CAPABILITY.toString('latin1'), uid: '3000000' },
    });
    const decoded = decodePaxRecords(encoded);
    assert.equal(decoded.path, 'päth');
    assert.equal(decoded.uid, '3000000');
    assert.deepEqual(Buffer.from(decoded['SCHILY.xattr.security.capability'], 'latin1'), CAPABILITY);
  });

  test('keys are written sorted and each length prefix is exact', () => {
    const encoded = encodePaxRecords({ name: 'x'.repeat(90), pax: { uid: '1', gid: '2', mtime: '1.5' } });
    const keys: string[] = [];
    let offset = 0;
    while (offset < encoded.length) {
      const space = encoded.indexOf(0x20, offset);
      const length = Number(encoded.toString('ascii', offset, space));
      const record = encoded.subarray(offset, offset + length);
      assert.equal(record.at(-1), 0x0a);
      keys.push(record.toString('utf8', space - offset + 1, record.indexOf(0x3d)));
      offset += length;
    }
    assert.equal(offset, encoded.length);
    assert.deepEqual(keys, ['gid', 'mtime', 'path', 'uid']);
  });

  test('malformed records are rejected', () => {
    assert.throws(() => decodePaxRecords(Buffer.from('99 path=x\n')), /bad record length/);
    assert.throws(() => decodePaxRecords(Buffer.from('8 pathx\n')), /without "="/);
  });

  test('PAX times keep nanoseconds, also before 1970', () => {
    assert.equal(parsePaxTime('1700000000.123456789'), 1_700_000_000_123_456_789n);
    assert.equal(parsePaxTime('1700000000.5'), 1_700_000_000_500_000_000n);
    assert.equal(parsePaxTime('-1.5'), -1_500_000_000n);
    assert.equal(parsePaxTime('12'), 12_000_000_000n);
    assert.equal(parsePaxTime('abc'), null);
    assert.equal(formatPaxTime(1_700_000_000_123_456_789n), '1700000000.123456789');
    assert.equal(formatPaxTime(-1_500_000_000n), '-1.5');
    assert.equal(formatPaxTime(42_000_000_000n), '42');
  });
});

describe('packEntries / readTarEntries', () => {
  test('round-trip every field, including the tar-stream defects worked around', async () => {
    const entries = await readTarEntries(packEntries(SAMPLE));
    const byName = new Map(entries.map((e) => [e.header.name, e]));
    assert.deepEqual(
      entries.map((e) => e.header.name),
      ['dir/', ...SAMPLE.slice(1).map((e) => e.name)],
    );

    const dir = byName.get('dir/')!.header;
    assert.equal(dir.type, 'directory');
    assert.equal(dir.mode, 0o1777);
    assert.equal(dir.mtimeNs, 1_600_000_000_000_000_000n);

    const capFile = byName.get('dir/newuidmap')!;
    assert.equal(capFile.header.mode, 0o4755);
    // Above 0o777777: tar-stream alone would clamp these to 262143.
    assert.equal(capFile.header.uid, 3_000_000);
    assert.equal(capFile.header.gid, 3_000_001);
    assert.equal(capFile.header.mtimeNs, 1_700_000_000_123_456_789n);
    assert.deepEqual(capFile.header.xattrs.get('security.capability'), CAPABILITY);
    assert.equal(capFile.header.xattrs.get('user.comment')?.toString('utf8'), 'grüße');
    assert.equal(capFile.body.toString(), 'binary');

    // Mode 000 stays 000 (tar-stream would turn a falsy mode into 0644); size 0 completes.
    const empty = byName.get('dir/empty')!;
    assert.equal(empty.header.mode, 0);
    assert.equal(empty.header.size, 0);
    assert.equal(empty.body.length, 0);

    const long = byName.get(`long/${'p'.repeat(194)}`)!;
    assert.equal(long.header.name.length, 199);
    assert.equal(long.body.toString(), 'deep');
    assert.equal(byName.get('link')!.header.linkname, `/${'t'.repeat(150)}`);
    assert.equal(byName.get('hard')!.header.type, 'link');
    assert.equal(byName.get('hard')!.header.linkname, 'dir/newuidmap');
    const dev = byName.get('null')!.header;
    assert.deepEqual([dev.type, dev.devmajor, dev.devminor, dev.mode], ['character-device', 1, 3, 0o666]);
    assert.equal(byName.get('fifo')!.header.type, 'fifo');
    assert.equal(byName.get('ünïcode')!.body.toString(), 'u');
    assert.equal(byName.get('before-1970')!.header.mtimeNs, -86_400_000_000_001n);
  });

  test('output is deterministic and has no uname/gname', async () => {
    const first = await collect(packEntries(SAMPLE));
    const second = await collect(packEntries(SAMPLE));
    assert.ok(first.equals(second));
    assert.equal(first.length % 512, 0);
    const entries = await readTarEntries(Readable.from([first]));
    for (const e of entries) {
      assert.equal(e.header.uname, '');
      assert.equal(e.header.gname, '');
      assert.equal(e.header.atimeNs, null);
    }
  });

  test('GNU tar reads our archive: binary capability, big ids, long names', async () => {
    const file = path.join(tmp, 'ours.tar');
    fs.writeFileSync(file, await collect(packEntries(SAMPLE)));
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', file], { encoding: 'utf8' });
    assert.match(listing, /-rwsr-xr-x 3000000\/3000001\s+6 .* dir\/newuidmap/);
    assert.ok(listing.includes(`long/${'p'.repeat(194)}`));
    const out = path.join(tmp, 'gnu-out');
    fs.mkdirSync(out);
    execFileSync('tar', ['--xattrs', '--xattrs-include=*', '-xpf', file, '-C', out, 'dir/newuidmap']);
    assert.deepEqual(lgetxattr(path.join(out, 'dir/newuidmap'), 'security.capability'), CAPABILITY);
    assert.equal(fs.statSync(path.join(out, 'dir/newuidmap')).uid, 3_000_000);
  });

  test('we read GNU tar’s archive: binary capability, ns mtime, big gid', async () => {
    const src = path.join(tmp, 'gnu-src');
    fs.mkdirSync(src);
    const file = path.join(src, 'cap');
    fs.writeFileSync(file, 'x');
    fs.chownSync(file, 0, 2_000_000);
    lsetxattr(file, 'security.capability', CAPABILITY);
    fs.utimesSync(file, 1, 1_700_000_000.25);
    const tarFile = path.join(tmp, 'gnu.tar');
    execFileSync('tar', ['--format=pax', '--xattrs', '--xattrs-include=*', '-cf', tarFile, '-C', src, 'cap']);
    const [entry] = await readTarEntries(fs.createReadStream(tarFile));
    assert.equal(entry.header.name, 'cap');
    assert.equal(entry.header.gid, 2_000_000);
    assert.deepEqual(entry.header.xattrs.get('security.capability'), CAPABILITY);
    assert.equal(entry.header.mtimeNs, 1_700_000_000_250_000_000n);
  });

  test('readTarEntries refuses archives above its size cap', async () => {
    const tar = packEntries([{ name: 'big', type: 'file', data: Buffer.alloc(4096) }]);
    await assert.rejects(readTarEntries(tar, 1000), /larger than 1000 bytes/);
  });
});

describe('TarWriter', () => {
  test('streams large files from an fd, pads a file that shrank, honours back-pressure', async () => {
    const big = path.join(tmp, 'big');
    const content = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < content.length; i++) content[i] = (i * 7) & 0xff;
    fs.writeFileSync(big, content);
    const writer = new TarWriter();
    const produced = (async () => {
      const fd = fs.openSync(big, 'r');
      try {
        await writer.addFromFd(
          { name: 'big', type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: content.length },
          fd,
          256 * 1024,
        );
        // Claims more bytes than the file has (a file truncated while packing): zero padded.
        await writer.addFromFd(
          {
            name: 'shrunk',
            type: 'file',
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtimeNs: 0n,
            size: content.length + 10,
          },
          fd,
        );
      } finally {
        fs.closeSync(fd);
      }
      writer.finalize();
    })();
    // A slow reader: the writer must wait rather than buffer the whole file.
    const chunks: Buffer[] = [];
    for await (const chunk of writer.stream) {
      chunks.push(chunk as Buffer);
      await new Promise((resolve) => setImmediate(resolve));
    }
    await produced;
    const entries = await readTarEntries(Readable.from([Buffer.concat(chunks)]));
    assert.equal(entries.length, 2);
    const digest = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    assert.equal(digest(entries[0].body), digest(content));
    assert.equal(entries[1].body.length, content.length + 10);
    assert.ok(entries[1].body.subarray(content.length).equals(Buffer.alloc(10)));
  });

  test('a reader that goes away makes pending writes fail instead of hanging', async () => {
    const writer = new TarWriter();
    const big = Buffer.alloc(8 * 1024 * 1024);
    const pending = (async () => {
      for (let i = 0; i < 10; i++) {
        await writer.add({ name: `f${i}`, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n }, big);
      }
    })();
    writer.stream.once('data', () => writer.stream.destroy());
    writer.stream.resume();
    await assert.rejects(pending);
  });
});
