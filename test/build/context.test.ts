import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import * as zlib from 'node:zlib';
import { TarEntryFilter } from '../../src/build/artifacts.js';
import { BuildContext, cleanContextPath } from '../../src/build/context.js';
import { goPatternRegex, hasWildcards, IgnoreMatcher } from '../../src/build/patterns.js';
import { hashContextEntry, isTarArchive, resolveContextSources } from '../../src/build/sources.js';
import { packEntries, readTarEntries, type TarInputEntry } from '../../src/common/tar.js';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-ctx-test-'));
after(() => fs.rmSync(work, { recursive: true, force: true }));

async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function receive(entries: TarInputEntry[], gzip = false): Promise<BuildContext> {
  const dir = fs.mkdtempSync(path.join(work, 'b-'));
  let tar = await collect(packEntries(entries));
  if (gzip) tar = zlib.gzipSync(tar);
  return BuildContext.receive(Readable.from([tar]), dir, 'Dockerfile');
}

const sample: TarInputEntry[] = [
  { name: 'Dockerfile', type: 'file', data: 'FROM bb\n' },
  { name: 'app/', type: 'directory', mode: 0o750 },
  { name: 'app/main.sh', type: 'file', data: 'echo hi\n', mode: 0o755, mtimeNs: 5_000_000_000n },
  { name: 'app/lib/x.txt', type: 'file', data: 'x' },
  { name: 'link-in', type: 'symlink', linkname: 'app/main.sh' },
  { name: 'link-out', type: 'symlink', linkname: '/etc/passwd' },
  { name: 'link-up', type: 'symlink', linkname: '../../../etc/passwd' },
  { name: 'hard', type: 'link', linkname: 'app/main.sh' },
  { name: 'notes.md', type: 'file', data: '# notes' },
];

describe('BuildContext', () => {
  it('indexes a tar without unpacking it, hashing every file', async () => {
    const ctx = await receive(sample);
    try {
      const main = ctx.lookup('app/main.sh')!;
      assert.equal(main.type, 'file');
      assert.equal(main.mode, 0o755);
      assert.equal(main.digest, createHash('sha256').update('echo hi\n').digest('hex'));
      assert.equal(ctx.lookup('app')!.mode, 0o750);
      assert.equal(ctx.lookup('app/lib')!.type, 'directory', 'implied parent directory');
      assert.equal(ctx.readSmallFile('Dockerfile')!.toString(), 'FROM bb\n');
      assert.equal(ctx.readSmallFile('hard')!.toString(), 'echo hi\n');
      assert.equal(ctx.bytes, 'FROM bb\n'.length + 'echo hi\n'.length + 1 + 7);
      assert.deepEqual(
        [...ctx.walk()].map((e) => e.path),
        [
          'Dockerfile',
          'app',
          'app/lib',
          'app/lib/x.txt',
          'app/main.sh',
          'hard',
          'link-in',
          'link-out',
          'link-up',
          'notes.md',
        ],
      );
    } finally {
      ctx.close();
    }
  });

  it('accepts gzip and a bare Dockerfile body', async () => {
    const gz = await receive(sample, true);
    assert.equal(gz.readSmallFile('notes.md')!.toString(), '# notes');
    gz.close();
    const dir = fs.mkdtempSync(path.join(work, 'b-'));
    const bare = await BuildContext.receive(
      Readable.from([Buffer.from('FROM bb\nRUN true\n')]),
      dir,
      'Dockerfile',
    );
    assert.equal(bare.readSmallFile('Dockerfile')!.toString(), 'FROM bb\nRUN true\n');
    bare.close();
  });

  it('follows symlinks only inside the context', async () => {
    const ctx = await receive(sample);
    try {
      assert.equal(ctx.resolve('link-in')!.path, 'app/main.sh');
      assert.equal(
        ctx.resolve('link-out'),
        null,
        'absolute target resolves inside the context: etc/passwd is absent',
      );
      assert.equal(ctx.resolve('link-up'), null);
      assert.equal(ctx.resolve('link-out', false)!.entry.type, 'symlink');
      assert.equal(ctx.resolve('app/../notes.md')!.path, 'notes.md');
      assert.equal(ctx.resolve('../../notes.md')!.path, 'notes.md');
    } finally {
      ctx.close();
    }
  });

  it('refuses tar entries that leave the context', async () => {
    assert.throws(() => cleanContextPath('../evil'), /leaves the context/);
    await assert.rejects(receive([{ name: 'a/../../evil', type: 'file', data: 'x' }]), /leaves the context/);
    assert.equal(cleanContextPath('./a//b/'), 'a/b');
    assert.equal(cleanContextPath('./'), null);
  });

  it('applies .dockerignore, keeping re-included files below excluded directories', async () => {
    const ctx = await receive(sample);
    try {
      ctx.exclude(new IgnoreMatcher('# comment\napp\n!app/lib/x.txt\n*.md\n'));
      assert.equal(ctx.lookup('notes.md'), null);
      assert.equal(ctx.lookup('app/main.sh'), null);
      assert.ok(ctx.lookup('app/lib/x.txt'));
      assert.ok(ctx.lookup('Dockerfile'));
    } finally {
      ctx.close();
    }
  });

  it('hashes sources by name, mode and content, not mtime or owner', async () => {
    const a = await receive([{ name: 'd/f', type: 'file', data: 'same', mtimeNs: 1n, uid: 5 }]);
    const b = await receive([{ name: 'd/f', type: 'file', data: 'same', mtimeNs: 9_000_000_000n }]);
    const c = await receive([{ name: 'd/f', type: 'file', data: 'same', mode: 0o600 }]);
    const d = await receive([{ name: 'd/f', type: 'file', data: 'diff' }]);
    const hash = (ctx: BuildContext) => hashContextEntry(ctx, ctx.lookup('d')!);
    assert.equal(hash(a), hash(b));
    assert.notEqual(hash(a), hash(c));
    assert.notEqual(hash(a), hash(d));
    for (const ctx of [a, b, c, d]) ctx.close();
  });

  it('expands COPY wildcards and refuses paths outside the context', async () => {
    const ctx = await receive(sample);
    try {
      const found = await resolveContextSources(ctx, ['app/*.sh', '*.md'], 'COPY');
      assert.deepEqual(
        found.map((s) => s.source.name),
        ['main.sh', 'notes.md'],
      );
      await assert.rejects(
        resolveContextSources(ctx, ['../x'], 'COPY'),
        /forbidden path outside the build context/,
      );
      await assert.rejects(
        resolveContextSources(ctx, ['link-out'], 'COPY'),
        /file not found in build context/,
      );
      const absolute = await resolveContextSources(ctx, ['/notes.md'], 'COPY');
      assert.equal(absolute[0].source.name, 'notes.md');
    } finally {
      ctx.close();
    }
  });

  it('recognises tar archives for ADD, plain or gzip', async () => {
    const tar = await collect(packEntries([{ name: 'x', type: 'file', data: 'x' }]));
    assert.equal(await isTarArchive(() => Readable.from([tar])), true);
    assert.equal(await isTarArchive(() => Readable.from([zlib.gzipSync(tar)])), true);
    assert.equal(await isTarArchive(() => Readable.from([Buffer.from('just text')])), false);
    assert.equal(await isTarArchive(() => Readable.from([zlib.gzipSync('not a tar')])), false);
  });
});

describe('patterns', () => {
  it('matches like Go filepath.Match', () => {
    assert.ok(goPatternRegex('*.txt').test('a.txt'));
    assert.ok(!goPatternRegex('*.txt').test('d/a.txt'));
    assert.ok(goPatternRegex('d/?.t[a-x]t').test('d/a.txt'));
    assert.ok(goPatternRegex('[!a]b').test('cb'));
    assert.ok(!goPatternRegex('[!a]b').test('ab'));
    assert.ok(goPatternRegex('a\\*b').test('a*b'));
    assert.ok(hasWildcards('a/*.c') && !hasWildcards('a\\*b') && !hasWildcards('plain'));
  });

  it('matches .dockerignore patterns with ** and parent directories', () => {
    const m = new IgnoreMatcher('**/*.log\n/build\ntmp*\n!tmp-keep\n');
    assert.ok(m.matches('x.log'));
    assert.ok(m.matches('a/b/c.log'));
    assert.ok(m.matches('build/out/bin'));
    assert.ok(m.matches('tmpdir/file'));
    assert.ok(!m.matches('tmp-keep'));
    assert.ok(!m.matches('src/main.c'));
  });
});

describe('TarEntryFilter', () => {
  it('drops named entries (with their PAX headers and bodies) and keeps the rest byte for byte', async () => {
    const long = `${'d'.repeat(120)}/file`;
    const entries: TarInputEntry[] = [
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hostname', type: 'file', data: '' },
      { name: 'etc/keep', type: 'file', data: 'k'.repeat(1000) },
      { name: long, type: 'file', data: 'long' },
      { name: 'x', type: 'file', data: 'y'.repeat(513) },
    ];
    const tar = await collect(packEntries(entries));
    const filtered = await collect(
      Readable.from([tar.subarray(0, 700), tar.subarray(700)]).pipe(
        new TarEntryFilter(new Set(['etc/hostname', long])),
      ),
    );
    const names = (await readTarEntries(Readable.from([filtered]))).map((e) => [
      e.header.name,
      e.body.length,
    ]);
    assert.deepEqual(names, [
      ['etc/', 0],
      ['etc/keep', 1000],
      ['x', 513],
    ]);
    const untouched = await collect(Readable.from([tar]).pipe(new TarEntryFilter(new Set())));
    assert.ok(untouched.equals(tar));
  });
});
