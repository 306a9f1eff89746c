import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { bufferSource, type CopySource } from '../../src/build/copy.js';
import { LayerPlan, LowerView } from '../../src/build/layer-plan.js';
import { type ContextTarHeader, readContextTar } from '../../src/build/tar-reader.js';
import { packEntries, readTarEntries } from '../../src/common/tar.js';
import { mknod, constants as native } from '../../src/native/index.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-plan-test-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function readAll(tar: Buffer): Promise<Array<ContextTarHeader & { body: string }>> {
  const out: Array<ContextTarHeader & { body: string }> = [];
  let current: (ContextTarHeader & { body: string }) | null = null;
  // Tiny chunks exercise headers and bodies split across chunk boundaries.
  const pieces: Buffer[] = [];
  for (let i = 0; i < tar.length; i += 97) pieces.push(tar.subarray(i, i + 97));
  await readContextTar(Readable.from(pieces), {
    entry: (header) => {
      current = { ...header, body: '' };
      out.push(current);
      return (chunk) => {
        current!.body += chunk.toString();
      };
    },
    end: () => {},
  });
  return out;
}

describe('readContextTar', () => {
  it('reads ustar and PAX entries (long names, big ids), in chunks of any size', async () => {
    const long = `${'deep/'.repeat(40)}file.txt`;
    const tar = await collect(
      packEntries([
        { name: 'dir/', type: 'directory', mode: 0o750, mtimeNs: 1_500_000_000_000_000_000n },
        { name: 'dir/a.txt', type: 'file', data: 'hello', uid: 5, gid: 6 },
        { name: long, type: 'file', data: 'x'.repeat(1000), uid: 3_000_000 },
        { name: 'sym', type: 'symlink', linkname: `/${'t'.repeat(150)}` },
        { name: 'hard', type: 'link', linkname: 'dir/a.txt' },
      ]),
    );
    const entries = await readAll(tar);
    assert.deepEqual(
      entries.map((e) => [e.name, e.type, e.size, e.body.length]),
      [
        ['dir/', 'directory', 0, 0],
        ['dir/a.txt', 'file', 5, 5],
        [long, 'file', 1000, 1000],
        ['sym', 'symlink', 0, 0],
        ['hard', 'link', 0, 0],
      ],
    );
    assert.equal(entries[0].mode, 0o750);
    assert.equal(entries[0].mtimeNs, 1_500_000_000_000_000_000n);
    assert.deepEqual([entries[1].uid, entries[1].gid, entries[1].body], [5, 6, 'hello']);
    assert.equal(entries[2].uid, 3_000_000);
    assert.equal(entries[3].linkname, `/${'t'.repeat(150)}`);
    assert.equal(entries[4].linkname, 'dir/a.txt');
  });

  it('reads GNU long names as GNU tar writes them', async () => {
    const dir = fs.mkdtempSync(path.join(work, 'gnu-'));
    const long = 'n'.repeat(150);
    fs.writeFileSync(path.join(dir, long), 'gnu');
    const tar = execFileSync('tar', ['--format=gnu', '-cf', '-', '-C', dir, long]);
    const entries = await readAll(tar);
    assert.deepEqual(
      entries.map((e) => [e.name, e.body]),
      [[long, 'gnu']],
    );
  });

  it('rejects corrupt and truncated archives', async () => {
    const tar = await collect(packEntries([{ name: 'a', type: 'file', data: 'x'.repeat(600) }]));
    const corrupt = Buffer.from(tar);
    corrupt[10] ^= 0xff;
    await assert.rejects(readAll(corrupt), /checksum/);
    await assert.rejects(readAll(tar.subarray(0, 700)), /unexpected end/);
  });
});

/** A lower layer directory built with real files (uids, modes, a symlink, a whiteout). */
function makeLayers(): string[] {
  const bottom = fs.mkdtempSync(path.join(work, 'bottom-'));
  fs.mkdirSync(path.join(bottom, 'app', 'conf'), { recursive: true });
  fs.chmodSync(path.join(bottom, 'app'), 0o710);
  fs.chownSync(path.join(bottom, 'app'), 1000, 1000);
  fs.writeFileSync(path.join(bottom, 'app', 'old.txt'), 'old');
  fs.symlinkSync('/app', path.join(bottom, 'link'));
  fs.mkdirSync(path.join(bottom, 'gone'));
  fs.writeFileSync(path.join(bottom, 'file-in-way'), 'x');
  const top = fs.mkdtempSync(path.join(work, 'top-'));
  mknod(path.join(top, 'gone'), native.S_IFCHR, 0, 0);
  return [top, bottom];
}

const file = (name: string, data: string, mode = 0o644): CopySource =>
  bufferSource(name, Buffer.from(data), mode, 1_000_000_000n);

describe('LayerPlan', () => {
  it('writes new files with the existing directories above them as copy-ups', async () => {
    const plan = new LayerPlan(new LowerView(makeLayers()), 2_000_000_000n);
    assert.ok(plan.isDirectory('/link'), 'symlinks are followed inside the image');
    plan.copyTo(file('x', 'new'), '/link/conf/x.txt', { identity: { uid: 0, gid: 0 }, chmod: null });
    const entries = await readTarEntries(plan.toTar(null));
    assert.deepEqual(
      entries.map((e) => [e.header.name, e.header.mode, e.header.uid, e.body.toString()]),
      [
        ['app/', 0o710, 1000, ''],
        ['app/conf/', 0o755, 0, ''],
        ['app/conf/x.txt', 0o644, 0, 'new'],
      ],
    );
    assert.equal(
      entries[1].header.mtimeNs,
      2_000_000_000n,
      'the direct parent of a new entry gets the step time',
    );
  });

  it('creates missing directories with the chown identity; whiteouts hide lower entries', async () => {
    const plan = new LayerPlan(new LowerView(makeLayers()), 5_000_000_000n);
    plan.copyTo(file('f', 'data', 0o600), '/gone/sub/f', { identity: { uid: 7, gid: 8 }, chmod: 0o640 });
    const entries = await readTarEntries(plan.toTar(3));
    assert.deepEqual(
      entries.map((e) => [e.header.name, e.header.mode, e.header.uid, e.header.gid, e.header.mtimeNs]),
      [
        ['gone/', 0o755, 7, 8, 3_000_000_000n],
        ['gone/sub/', 0o755, 7, 8, 3_000_000_000n],
        ['gone/sub/f', 0o640, 7, 8, 1_000_000_000n],
      ],
    );
  });

  it('leaves existing directories alone when nothing new goes below them (WORKDIR)', () => {
    const plan = new LayerPlan(new LowerView(makeLayers()), 1n);
    plan.mkdirAll('/app/conf', { uid: 0, gid: 0 });
    assert.ok(plan.isEmpty);
    assert.throws(() => plan.mkdirAll('/file-in-way/x', { uid: 0, gid: 0 }), /a file is in the way/);
  });
});
