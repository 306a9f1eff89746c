import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, it } from 'node:test';
import tar from 'tar-stream';
import { extractArchive, packPath, safeEntryPath, splitCpArg } from '../../src/cli/commands/cp.js';

type Entry = Partial<tar.Header> & { name: string; data?: string };

function tarOf(entries: Entry[]): Readable {
  const pack = tar.pack();
  for (const { data, ...header } of entries) pack.entry(header, data ?? '');
  pack.finalize();
  return Readable.from(pack);
}

describe('cp arguments', () => {
  it('splits CONTAINER:PATH like docker (absolute and ./ paths stay local)', () => {
    assert.deepEqual(splitCpArg('web:/etc/hosts'), { container: 'web', path: '/etc/hosts' });
    assert.deepEqual(splitCpArg('/tmp/a:b'), { path: '/tmp/a:b' });
    assert.deepEqual(splitCpArg('./x:y'), { path: './x:y' });
    assert.deepEqual(splitCpArg('-'), { path: '-' });
    assert.deepEqual(splitCpArg('file.txt'), { path: 'file.txt' });
  });

  it('normalises entry names and refuses ..', () => {
    assert.deepEqual(safeEntryPath('./a/b/'), ['a', 'b']);
    assert.deepEqual(safeEntryPath('/abs/x'), ['abs', 'x']);
    assert.equal(safeEntryPath('a/../../x'), undefined);
  });
});

describe('cp extraction and packing', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-cp-'));
  });
  afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('renames the top entry and keeps modes, links and contents', async () => {
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const bytes = await extractArchive(
      tarOf([
        { name: 'src/', type: 'directory', mode: 0o750 },
        { name: 'src/run.sh', mode: 0o755, data: '#!/bin/sh\n' },
        { name: 'src/link', type: 'symlink', linkname: 'run.sh' },
        { name: 'src/hard', type: 'link', linkname: 'src/run.sh' },
      ]),
      out,
      { kind: 'rename', from: 'src', to: 'copy' },
      false,
    );
    assert.equal(bytes, 10);
    assert.equal(fs.statSync(path.join(out, 'copy')).mode & 0o777, 0o750);
    assert.equal(fs.statSync(path.join(out, 'copy/run.sh')).mode & 0o777, 0o755);
    assert.equal(fs.readlinkSync(path.join(out, 'copy/link')), 'run.sh');
    assert.equal(
      fs.statSync(path.join(out, 'copy/hard')).ino,
      fs.statSync(path.join(out, 'copy/run.sh')).ino,
    );
  });

  it('never writes outside the destination', async () => {
    const out = path.join(dir, 'out');
    const outside = path.join(dir, 'outside');
    fs.mkdirSync(out);
    fs.mkdirSync(outside);
    await assert.rejects(
      extractArchive(tarOf([{ name: '../escape', data: 'x' }]), out, { kind: 'keep' }, false),
      /unsafe path/,
    );
    // A symlink from the archive pointing out, then a file written "through" it.
    await assert.rejects(
      extractArchive(
        tarOf([
          { name: 'evil', type: 'symlink', linkname: outside },
          { name: 'evil/pwned', data: 'x' },
        ]),
        out,
        { kind: 'keep' },
        false,
      ),
      /through symlink/,
    );
    await assert.rejects(
      extractArchive(
        tarOf([{ name: 'h', type: 'link', linkname: '../../etc/passwd' }]),
        out,
        { kind: 'keep' },
        false,
      ),
      /refusing hard link/,
    );
    assert.deepEqual(fs.readdirSync(outside), []);
    assert.equal(fs.existsSync(path.join(dir, 'escape')), false);
  });

  it('replaces an existing symlink instead of writing through it', async () => {
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const target = path.join(dir, 'target.txt');
    fs.writeFileSync(target, 'original');
    fs.symlinkSync(target, path.join(out, 'f.txt'));
    await extractArchive(tarOf([{ name: 'f.txt', data: 'new' }]), out, { kind: 'keep' }, false);
    assert.equal(fs.readFileSync(target, 'utf8'), 'original');
    assert.equal(fs.readFileSync(path.join(out, 'f.txt'), 'utf8'), 'new');
    assert.equal(fs.lstatSync(path.join(out, 'f.txt')).isSymbolicLink(), false);
  });

  it('packs a directory under a chosen name and round-trips through extraction', async () => {
    const src = path.join(dir, 'src');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'aaa');
    fs.writeFileSync(path.join(src, 'sub', 'b.txt'), 'bb');
    fs.symlinkSync('a.txt', path.join(src, 'link'));
    const names: string[] = [];
    const extract = tar.extract();
    const pack = packPath(src, 'renamed', false);
    const reading = (async () => {
      for await (const entry of extract) {
        names.push(`${entry.header.type}:${entry.header.name}`);
        entry.resume();
      }
    })();
    Readable.from(pack).pipe(extract as unknown as NodeJS.WritableStream);
    await reading;
    assert.deepEqual(names, [
      'directory:renamed/',
      'file:renamed/a.txt',
      'symlink:renamed/link',
      'directory:renamed/sub/',
      'file:renamed/sub/b.txt',
    ]);
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    await extractArchive(Readable.from(packPath(src, '', false)), out, { kind: 'keep' }, false);
    assert.equal(fs.readFileSync(path.join(out, 'sub', 'b.txt'), 'utf8'), 'bb');
    assert.equal(fs.readlinkSync(path.join(out, 'link')), 'a.txt');
  });
});
