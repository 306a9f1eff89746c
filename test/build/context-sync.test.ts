import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type ContextManifestEntry, parseContextManifest } from '../../src/build/context-manifest.js';
import { ContextStore } from '../../src/build/context-store.js';
import { InvalidArgument } from '../../src/common/errors.js';
import { packEntries } from '../../src/common/tar.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildOk, emptyContext, removeContexts } from './helpers.js';

/** `strata build`'s content-addressed context sync (Strata extension). */

const sha = (data: string | Buffer) => createHash('sha256').update(data).digest('hex');

function file(p: string, content: string, extra: Partial<ContextManifestEntry> = {}): ContextManifestEntry {
  return {
    Path: p,
    Type: 'file',
    Mode: 0o644,
    Mtime: 1_700_000_000,
    Size: Buffer.byteLength(content),
    Digest: `sha256:${sha(content)}`,
    ...extra,
  };
}

describe('context manifest', () => {
  test('a clean manifest is accepted as is', () => {
    const entries: ContextManifestEntry[] = [
      { Path: 'd', Type: 'dir', Mode: 0o755, Mtime: 1 },
      file('d/a', 'a'),
      { Path: 'l', Type: 'symlink', Mode: 0o777, Mtime: 1, Linkname: '../../etc/passwd' },
    ];
    assert.deepEqual(parseContextManifest({ Entries: entries }).Entries, entries);
  });

  test('bad paths, types and digests are refused with a clear error', () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ Entries: [file('../x', 'x')] }, /path "\.\.\/x" leaves the context/],
      [{ Entries: [file('a/../../x', 'x')] }, /leaves the context/],
      [{ Entries: [file('/etc/passwd', 'x')] }, /path "\/etc\/passwd" is absolute/],
      [{ Entries: [file('a//b', 'x')] }, /not in clean form/],
      [{ Entries: [file('./a', 'x')] }, /not in clean form/],
      [
        {
          Entries: [
            { Path: 'l', Type: 'symlink', Mode: 0o777, Mtime: 1, Linkname: '/etc' },
            file('l/passwd', 'x'),
          ],
        },
        /path "l\/passwd" is below the symlink "l"/,
      ],
      [{ Entries: [file('f', 'x'), file('f/g', 'y')] }, /below the file "f"/],
      [{ Entries: [file('a', 'x'), file('a', 'x')] }, /appears twice/],
      [{ Entries: [file('a', 'x', { Digest: 'sha256:abc' })] }, /Digest of the form sha256/],
      [{ Entries: [file('a', 'x', { Digest: undefined })] }, /Digest of the form sha256/],
      [{ Entries: [{ Path: 'a', Type: 'fifo', Mode: 0, Mtime: 0 }] }, /unknown Type "fifo"/],
      [{ Entries: [{ Path: 'l', Type: 'symlink', Mode: 0, Mtime: 0 }] }, /symlink "l" needs a Linkname/],
      [{ Entries: [file('a', 'x', { Mode: 0o10000 })] }, /Mode of "a" must be an integer/],
      [{ Entries: [file('a', 'x', { Size: -1 })] }, /Size of "a" must be an integer/],
      [{ Files: [] }, /an object with an Entries array/],
    ];
    for (const [manifest, message] of cases) {
      assert.throws(
        () => parseContextManifest(manifest),
        (err: unknown) => err instanceof InvalidArgument && message.test(err.message),
        JSON.stringify(manifest),
      );
    }
  });
});

describe('context store', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-context-store-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('stores uploads named by their digest, refuses a body that does not match, prunes what no build holds', async () => {
    const store = new ContextStore(path.join(dir, 'store'));
    const a = sha('alpha');
    const b = sha('beta');
    assert.deepEqual(store.missing([`sha256:${a}`, `sha256:${b}`, `sha256:${a}`]), [
      `sha256:${a}`,
      `sha256:${b}`,
    ]);
    const stored = await store.ingestTar(
      packEntries([
        { name: a, type: 'file', data: 'alpha' },
        { name: b, type: 'file', data: 'beta' },
      ]),
    );
    assert.equal(stored, 2);
    assert.deepEqual(store.missing([`sha256:${a}`, `sha256:${b}`]), []);
    assert.equal(fs.readFileSync(store.pathOf(a), 'utf8'), 'alpha');

    const c = sha('gamma');
    await assert.rejects(
      store.ingestTar(packEntries([{ name: c, type: 'file', data: 'not gamma' }])),
      /uploaded content named sha256:[0-9a-f]{64} has the digest sha256:/,
    );
    assert.deepEqual(store.missing([`sha256:${c}`]), [`sha256:${c}`]);
    await assert.rejects(
      store.ingestTar(packEntries([{ name: '../escape', type: 'file', data: 'x' }])),
      /not a file named by its sha256/,
    );
    assert.deepEqual(
      fs.readdirSync(path.join(dir, 'store', 'tmp')),
      [],
      'nothing half-written is left behind',
    );

    const release = store.hold([a]);
    assert.deepEqual(store.prune(), { count: 1, bytes: 4 });
    assert.deepEqual(store.missing([`sha256:${a}`, `sha256:${b}`]), [`sha256:${b}`]);
    release();
    assert.equal(store.prune().count, 1);
    assert.deepEqual(store.missing([`sha256:${a}`]), [`sha256:${a}`]);
  });
});

/** POST with a raw body and content type → status and body text. */
function post(
  socket: string,
  apiPath: string,
  body: Buffer | string,
  contentType: string,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(body);
    const req = http.request(
      {
        socketPath: socket,
        method: 'POST',
        path: apiPath,
        headers: { 'Content-Type': contentType, 'Content-Length': data.length },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

function steps(stdout: string): boolean[] {
  const lines = stdout.split('\n');
  return lines.flatMap((line, i) =>
    /^Step \d+\/\d+ : /.test(line) ? [lines[i + 1] === ' ---> Using cache'] : [],
  );
}

describe('strata build with context sync', () => {
  let d: TestDaemon;
  let ctx: string;
  let cacheHome: string;
  const MEDIA_TYPE = 'application/vnd.strata.build-context.v1+json';

  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
    cacheHome = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-cache-'));
    ctx = emptyContext();
    fs.writeFileSync(
      path.join(ctx, 'Dockerfile'),
      'FROM bb\nCOPY . /ctx/\nRUN cat /ctx/sub/a.txt > /a-copy\nCOPY big.bin /big.bin\nCMD ["cat", "/a-copy"]\n',
    );
    fs.mkdirSync(path.join(ctx, 'sub'));
    fs.writeFileSync(path.join(ctx, 'sub/a.txt'), 'a v1\n');
    fs.writeFileSync(path.join(ctx, 'sub/b.txt'), 'b v1\n');
    fs.chmodSync(path.join(ctx, 'sub/b.txt'), 0o600);
    fs.writeFileSync(path.join(ctx, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 5, 7));
    fs.symlinkSync('../../outside', path.join(ctx, 'sub/link'));
    fs.writeFileSync(path.join(ctx, 'ignored.log'), 'never sent');
    fs.writeFileSync(path.join(ctx, '.dockerignore'), '*.log\n');
    const old = new Date('2024-01-02T03:04:05Z');
    for (const f of ['sub/a.txt', 'sub/b.txt', 'big.bin', 'sub']) fs.utimesSync(path.join(ctx, f), old, old);
  });
  after(async () => {
    await d?.cleanup();
    removeContexts();
    fs.rmSync(cacheHome, { recursive: true, force: true });
  });

  const strataBuild = async (args: string[]) => {
    const r = await d.strata(['build', '--progress', 'plain', ...args], {
      timeoutMs: 180_000,
      env: { XDG_CACHE_HOME: cacheHome },
    });
    assert.equal(r.code, 0, `strata build failed:\n${r.stdout}\n${r.stderr}`);
    const id = /Successfully built ([0-9a-f]{12})/.exec(r.stdout)?.[1];
    assert.ok(id, r.stdout);
    return { stdout: r.stdout, id };
  };

  test('the same steps, cache hits and image as the whole tar; only changed files are sent', async () => {
    const viaTar = await buildOk(d, ['-t', 'sync:tar', ctx]);

    // First sync: the store is empty (the docker CLI's tar does not fill it), so every file goes.
    const first = await strataBuild(['-t', 'sync:1', ctx]);
    assert.match(first.stdout, /Sending build context to Strata daemon .*\(5 of 5 files;/);
    assert.deepEqual(steps(first.stdout), [false, true, true, true, true], 'the tar build’s cache is hit');
    assert.equal(first.id, viaTar.id);

    const warm = await strataBuild(['-t', 'sync:1', ctx]);
    assert.match(warm.stdout, /Sending build context to Strata daemon +0B \(0 of 5 files;/);
    assert.equal(warm.id, viaTar.id);

    fs.writeFileSync(path.join(ctx, 'sub/a.txt'), 'a v2\n');
    const edited = await strataBuild(['-t', 'sync:2', ctx]);
    assert.match(edited.stdout, /\(1 of 5 files;/);
    assert.deepEqual(steps(edited.stdout), [false, false, false, false, false]);
    // The docker CLI's tar of the edited context lands on exactly what the sync built.
    const tarEdited = await buildOk(d, ['-t', 'sync:tar2', ctx]);
    assert.deepEqual(steps(tarEdited.stdout), [false, true, true, true, true]);
    assert.equal(tarEdited.id, edited.id);
    const out = await d.dockerOk([
      'run',
      '--rm',
      '--network',
      'none',
      'sync:2',
      'sh',
      '-c',
      'cat /a-copy; ls /ctx; readlink /ctx/sub/link; stat -c %a /ctx/sub/b.txt',
    ]);
    assert.deepEqual(out.split('\n'), ['a v2', 'Dockerfile', 'big.bin', 'sub', '../../outside', '600']);
  });

  test('without the cache, both paths give the same image: same files, modes and mtimes', async () => {
    // An epoch in the future pins the config dates without clamping any file time.
    // COPY steps only: a RUN step's own files would carry the time it ran.
    const epoch = String(Math.floor(Date.now() / 1000) + 10 * 365 * 86400);
    fs.writeFileSync(path.join(ctx, 'Dockerfile.copy'), 'FROM bb\nCOPY . /ctx/\nCOPY big.bin /big.bin\n');
    const args = [
      '--no-cache',
      '-f',
      path.join(ctx, 'Dockerfile.copy'),
      '--build-arg',
      `SOURCE_DATE_EPOCH=${epoch}`,
      ctx,
    ];
    const viaTar = await buildOk(d, ['-t', 'repro:tar', ...args]);
    const viaSync = await strataBuild(['-t', 'repro:sync', ...args]);
    assert.equal(viaSync.id, viaTar.id);
  });

  test('docker builder prune empties the store: the next sync sends everything again', async () => {
    await d.dockerOk(['builder', 'prune', '-a', '-f']);
    const again = await strataBuild(['-t', 'sync:3', ctx]);
    assert.match(again.stdout, /\(6 of 6 files;/);
  });

  test('the API refuses bad manifests, unknown contents and mislabelled uploads', async () => {
    const ping = await d.api('HEAD', '/_ping');
    assert.equal(ping.headers['strata-features'], 'build-context-sync');

    const bad = await post(
      d.socket,
      '/build/context/check',
      JSON.stringify({ Entries: [file('../x', 'x')] }),
      'application/json',
    );
    assert.equal(bad.status, 400);
    assert.match(bad.body, /path \\"\.\.\/x\\" leaves the context/);

    const manifest = JSON.stringify({
      Entries: [file('Dockerfile', 'FROM bb\n'), file('new.txt', 'never uploaded')],
    });
    const check = await post(d.socket, '/build/context/check', manifest, 'application/json');
    assert.equal(check.status, 200);
    assert.deepEqual(
      JSON.parse(check.body).Missing.sort(),
      [`sha256:${sha('FROM bb\n')}`, `sha256:${sha('never uploaded')}`].sort(),
    );

    const unknown = await post(d.socket, '/build?t=x', manifest, MEDIA_TYPE);
    assert.equal(unknown.status, 400);
    assert.match(
      unknown.body,
      /not in the daemon's context store \(upload them first\): sha256:[0-9a-f]{64} \(Dockerfile\)/,
    );

    const absolute = await post(
      d.socket,
      '/build?t=x',
      JSON.stringify({ Entries: [file('/etc/shadow', 'x')] }),
      MEDIA_TYPE,
    );
    assert.equal(absolute.status, 400);
    assert.match(absolute.body, /is absolute/);

    const chunks: Buffer[] = [];
    for await (const c of packEntries([{ name: sha('right'), type: 'file', data: 'wrong' }]))
      chunks.push(c as Buffer);
    const upload = await post(d.socket, '/build/context/upload', Buffer.concat(chunks), 'application/x-tar');
    assert.equal(upload.status, 400);
    assert.match(upload.body, /has the digest sha256:/);
  });
});
