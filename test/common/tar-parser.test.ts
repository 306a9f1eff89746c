import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import {
  encodePaxRecords,
  packEntries,
  readTarEntries,
  type TarEntryHeader,
  type TarInputEntry,
} from '../../src/common/tar.js';
import { TarParser } from '../../src/common/tar-parser.js';

let tmp = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-tar-parser-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function tarOf(entries: TarInputEntry[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of packEntries(entries)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

interface Parsed {
  header: TarEntryHeader;
  body: Buffer;
}

interface Log {
  entries: Parsed[];
  aborted: string[];
}

/**
 * Feeds `tar` to a parser in pieces of `pieceSize`, from one reused scratch buffer that is scribbled
 * over after every write (as a socket read buffer is): bodies must be consumed during the call.
 */
function parse(tar: Buffer, pieceSize = tar.length, end = true): Log {
  const log: Log = { entries: [], aborted: [] };
  const parser = new TarParser((header) => {
    const parts: Buffer[] = [];
    return {
      write: (chunk) => parts.push(Buffer.from(chunk)),
      end: () => log.entries.push({ header, body: Buffer.concat(parts) }),
      abort: () => log.aborted.push(header.name),
    };
  });
  const scratch = Buffer.alloc(Math.max(1, pieceSize));
  for (let at = 0; at < tar.length; at += pieceSize) {
    const n = tar.copy(scratch, 0, at, Math.min(tar.length, at + pieceSize));
    parser.write(scratch.subarray(0, n));
    scratch.fill(0xa5);
  }
  if (end) parser.end();
  return log;
}

/** One raw header block, checksummed; fields not given are zero. */
function headerBlock(fields: {
  name: string;
  flag?: string;
  size?: number;
  mode?: number;
  linkname?: string;
  magic?: 'ustar' | 'gnu' | 'v7';
  prefix?: string;
  sizeField?: Buffer;
}): Buffer {
  const block = Buffer.alloc(512);
  block.write(fields.name, 0, 100, 'utf8');
  block.write(`${(fields.mode ?? 0o644).toString(8).padStart(7, '0')}\0`, 100, 'latin1');
  block.write('0000000\0', 108, 'latin1');
  block.write('0000000\0', 116, 'latin1');
  if (fields.sizeField) fields.sizeField.copy(block, 124);
  else block.write(`${(fields.size ?? 0).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  block.write('14000000000\0', 136, 'latin1');
  block.write(fields.flag ?? '0', 156, 'latin1');
  if (fields.linkname) block.write(fields.linkname, 157, 100, 'utf8');
  const magic = fields.magic ?? 'ustar';
  if (magic === 'ustar') block.write('ustar\x0000', 257, 'latin1');
  if (magic === 'gnu') block.write('ustar  \0', 257, 'latin1');
  if (fields.prefix) block.write(fields.prefix, 345, 155, 'utf8');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return block;
}

function padded(body: Buffer | string): Buffer {
  const data = typeof body === 'string' ? Buffer.from(body) : body;
  return Buffer.concat([data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

const END = Buffer.alloc(1024);

describe('TarParser', () => {
  const sample: TarInputEntry[] = [
    { name: 'dir', type: 'directory', mode: 0o1777, mtimeNs: 1_600_000_000_500_000_000n },
    { name: 'dir/file', type: 'file', data: Buffer.alloc(70_000, 7), uid: 3_000_000, gid: 12 },
    { name: 'dir/empty', type: 'file', mode: 0o000 },
    { name: `long/${'p'.repeat(250)}`, type: 'file', data: 'deep' },
    { name: 'link', type: 'symlink', linkname: `/${'t'.repeat(150)}` },
    { name: 'hard', type: 'link', linkname: 'dir/file' },
    { name: 'null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 },
    {
      name: 'xattr',
      type: 'file',
      data: 'x',
      xattrs: new Map([['security.capability', Buffer.from([0xc0, 0, 1])]]),
    },
    { name: 'dir/.wh.gone', type: 'file' },
    { name: 'dir/.wh..wh..opq', type: 'file' },
  ];

  test('reads what readTarEntries reads, in any piece size, from a reused buffer', async () => {
    const tar = await tarOf(sample);
    const reference = await readTarEntries(Readable.from([tar]));
    for (const pieceSize of [1, 100, 511, 512, 513, 4096, 65_536, tar.length]) {
      const { entries, aborted } = parse(tar, pieceSize);
      assert.deepEqual(aborted, []);
      assert.deepEqual(
        entries.map((e) => e.header),
        reference.map((e) => e.header),
        `piece size ${pieceSize}`,
      );
      for (const [i, entry] of entries.entries()) assert.ok(entry.body.equals(reference[i]!.body));
    }
    const [, file, , long, link, hard, device, xattr, whiteout, opaque] = parse(tar).entries;
    assert.equal(file?.header.uid, 3_000_000, 'PAX uid');
    assert.equal(long?.header.name, `long/${'p'.repeat(250)}`, 'PAX path');
    assert.equal(link?.header.linkname, `/${'t'.repeat(150)}`, 'PAX linkpath');
    assert.equal(hard?.header.type, 'link');
    assert.deepEqual([device?.header.devmajor, device?.header.devminor], [1, 3]);
    assert.deepEqual(xattr?.header.xattrs.get('security.capability'), Buffer.from([0xc0, 0, 1]));
    assert.equal(whiteout?.header.name, 'dir/.wh.gone', 'whiteouts are ordinary entries to the parser');
    assert.equal(opaque?.header.name, 'dir/.wh..wh..opq');
  });

  test('reads GNU tar’s own archive: GNU long names and long link targets', () => {
    const src = path.join(tmp, 'gnu');
    const longDir = 'd'.repeat(120);
    fs.mkdirSync(path.join(src, longDir), { recursive: true });
    fs.writeFileSync(path.join(src, longDir, 'f'), 'gnu body');
    fs.symlinkSync(`/${'s'.repeat(130)}`, path.join(src, 'sym'));
    const tar = execFileSync('tar', ['--format=gnu', '-C', src, '-cf', '-', '.']);
    const byName = new Map(parse(tar, 1000).entries.map((e) => [e.header.name, e]));
    assert.equal(byName.get(`./${longDir}/f`)?.body.toString(), 'gnu body');
    assert.equal(byName.get('./sym')?.header.linkname, `/${'s'.repeat(130)}`);
  });

  test('hand-made GNU L/K records, ustar prefix, base-256 size and an old-style directory', () => {
    const longName = `a/${'n'.repeat(300)}`;
    const longLink = `b/${'k'.repeat(300)}`;
    const base256 = Buffer.alloc(12);
    base256[0] = 0x80;
    base256.writeUInt32BE(5, 8);
    const tar = Buffer.concat([
      headerBlock({ name: '././@LongLink', flag: 'L', size: longName.length + 1, magic: 'gnu' }),
      padded(`${longName}\0`),
      headerBlock({ name: 'short', size: 3, magic: 'gnu' }),
      padded('abc'),
      headerBlock({ name: '././@LongLink', flag: 'K', size: longLink.length, magic: 'gnu' }),
      padded(longLink),
      headerBlock({ name: 'hl', flag: '1', magic: 'gnu' }),
      headerBlock({ name: 'file', prefix: 'some/prefix' }),
      headerBlock({ name: 'big', sizeField: base256 }),
      padded('12345'),
      headerBlock({ name: 'olddir/', flag: '0', magic: 'v7' }),
      END,
    ]);
    const entries = parse(tar, 700).entries;
    assert.deepEqual(
      entries.map((e) => [e.header.name, e.header.type, e.body.toString()]),
      [
        [longName, 'file', 'abc'],
        ['hl', 'link', ''],
        ['some/prefix/file', 'file', ''],
        ['big', 'file', '12345'],
        ['olddir/', 'directory', ''],
      ],
    );
    assert.equal(entries[1]?.header.linkname, longLink);
  });

  test('PAX records override name, link target and size; global headers are skipped', () => {
    const evilName = `../../${'x'.repeat(200)}`;
    const records = encodePaxRecords({ name: evilName, pax: { size: '4' } });
    const global = encodePaxRecords({ pax: { comment: 'git archive' } });
    const tar = Buffer.concat([
      headerBlock({ name: 'pax_global_header', flag: 'g', size: global.length }),
      padded(global),
      headerBlock({ name: 'PaxHeader', flag: 'x', size: records.length }),
      padded(records),
      headerBlock({ name: 'innocent', size: 0 }),
      padded('body'),
      END,
    ]);
    const [entry, ...rest] = parse(tar, 37).entries;
    assert.equal(rest.length, 0);
    // The parser reports names as they are; refusing `..` is the unpacker's job (extract tests).
    assert.equal(entry?.header.name, evilName);
    assert.equal(entry?.header.size, 4);
    assert.equal(entry?.body.toString(), 'body');
    assert.equal(entry?.header.pax?.comment, undefined);
  });

  test('link, symlink, device and directory entries have no body whatever their size says', () => {
    const tar = Buffer.concat([
      headerBlock({ name: 'hard', flag: '1', size: 1000, linkname: 'target' }),
      headerBlock({ name: 'dir/', flag: '5', size: 1000 }),
      headerBlock({ name: 'after', size: 2 }),
      padded('ok'),
      END,
    ]);
    const entries = parse(tar).entries;
    assert.deepEqual(
      entries.map((e) => [e.header.name, e.header.size, e.body.toString()]),
      [
        ['hard', 0, ''],
        ['dir/', 0, ''],
        ['after', 2, 'ok'],
      ],
    );
  });

  test('two zero blocks end the archive: what follows is not read', () => {
    const tar = Buffer.concat([
      headerBlock({ name: 'a', size: 1 }),
      padded('a'),
      END,
      headerBlock({ name: 'smuggled', size: 1 }),
      padded('s'),
    ]);
    assert.deepEqual(
      parse(tar, 100).entries.map((e) => e.header.name),
      ['a'],
    );
  });

  test('a wrong checksum fails, aborting nothing that was complete, and every later call throws', () => {
    const good = headerBlock({ name: 'a', size: 1 });
    const bad = headerBlock({ name: 'b', size: 1 });
    bad[0] = 'c'.charCodeAt(0);
    const parser = new TarParser(() => null);
    parser.write(Buffer.concat([good, padded('a')]));
    assert.throws(() => parser.write(bad), /invalid tar: header checksum mismatch/);
    assert.throws(() => parser.write(END), /checksum mismatch/);
    assert.throws(() => parser.end(), /checksum mismatch/);
    assert.throws(() => parse(Buffer.alloc(1024, 7)), /checksum mismatch/);
  });

  test('a truncated archive fails and aborts the entry being written', () => {
    const tar = Buffer.concat([headerBlock({ name: 'f', size: 5000 }), padded(Buffer.alloc(5000, 1)), END]);
    const log: string[] = [];
    const parser = new TarParser((header) => ({
      write: () => undefined,
      end: () => log.push(`end ${header.name}`),
      abort: () => log.push(`abort ${header.name}`),
    }));
    parser.write(tar.subarray(0, 2048));
    assert.throws(() => parser.end(), /invalid tar: the archive ends inside an entry/);
    assert.deepEqual(log, ['abort f']);
    // Inside a header block, and inside the padding after a body.
    assert.throws(() => parse(tar.subarray(0, 100)), /ends inside an entry/);
    assert.throws(() => parse(tar.subarray(0, 512 + 5000 + 10)), /ends inside an entry/);
    // After an extended header whose entry never came.
    const records = encodePaxRecords({ name: 'x' });
    const paxOnly = Buffer.concat([
      headerBlock({ name: 'P', flag: 'x', size: records.length }),
      padded(records),
    ]);
    assert.throws(() => parse(paxOnly), /ends after an extended header/);
    // Between entries, without the end marker: complete (Go's reader and GNU tar accept it too).
    assert.deepEqual(
      parse(tar.subarray(0, 512 + 5120)).entries.map((e) => e.header.name),
      ['f'],
    );
  });

  test('malformed headers: bad numbers, bad PAX, oversized records, a header after one zero block', () => {
    const badMode = headerBlock({ name: 'm' });
    badMode.write('0064x4\0', 100, 'latin1');
    let sum = 0;
    badMode.fill(0x20, 148, 156);
    for (const byte of badMode) sum += byte;
    badMode.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
    assert.throws(() => parse(badMode), /invalid tar: mode is not an octal number/);

    const badPax = Buffer.from('999 path=x\n');
    assert.throws(
      () =>
        parse(Buffer.concat([headerBlock({ name: 'P', flag: 'x', size: badPax.length }), padded(badPax)])),
      /invalid tar: invalid PAX header/,
    );
    const badPaxSize = encodePaxRecords({ pax: { size: '-1' } });
    assert.throws(
      () =>
        parse(
          Buffer.concat([
            headerBlock({ name: 'P', flag: 'x', size: badPaxSize.length }),
            padded(badPaxSize),
            headerBlock({ name: 'f' }),
          ]),
        ),
      /invalid tar: PAX size/,
    );
    assert.throws(
      () => parse(headerBlock({ name: 'P', flag: 'x', size: 2 << 20 }), 512, false),
      /extended header of 2097152 bytes/,
    );
    assert.throws(
      () => parse(Buffer.concat([Buffer.alloc(512), headerBlock({ name: 'late' })])),
      /a header follows a single zero block/,
    );
  });

  test('an exception of onEntry or of a body sink is thrown as it is; the open sink is aborted', () => {
    const tar = Buffer.concat([headerBlock({ name: 'f', size: 600 }), padded(Buffer.alloc(600, 1))]);
    const aborted: string[] = [];
    const failing = new TarParser((header) => ({
      write: () => {
        throw new Error('disk full');
      },
      end: () => undefined,
      abort: () => aborted.push(header.name),
    }));
    assert.throws(() => failing.write(tar), /^Error: disk full$/);
    assert.deepEqual(aborted, ['f']);
    const refusing = new TarParser(() => {
      throw new Error('escapes the layer');
    });
    assert.throws(() => refusing.write(tar), /escapes the layer/);
  });
});
