import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import * as zlib from 'node:zlib';
import { sha256 } from '../../src/common/digest.js';
import { InvalidArgument, NotFound } from '../../src/common/errors.js';
import { FileContentStore } from '../../src/content/store.js';

let root: string;
let store: FileContentStore;

before(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-content-'));
  store = new FileContentStore(root);
});
after(() => fs.rmSync(root, { recursive: true, force: true }));

function ingestDir(): string[] {
  return fs.readdirSync(path.join(root, 'content', 'ingest'));
}

function chunks(data: Buffer, size: number): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < data.length; i += size) parts.push(data.subarray(i, i + size));
  return Readable.from(parts);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

describe('FileContentStore', () => {
  it('ingests a stream under its sha256 and reads it back', async () => {
    const data = Buffer.from('x'.repeat(300_000));
    const result = await store.ingest(chunks(data, 7_000));
    assert.equal(result.digest, sha256(data));
    assert.equal(result.size, data.length);
    assert.equal(result.created, true);
    assert.ok(store.has(result.digest));
    assert.deepEqual(store.stat(result.digest), { digest: result.digest, size: data.length });
    assert.deepEqual(await readAll(store.openRead(result.digest)), data);
    assert.deepEqual(
      await readAll(store.openRead(result.digest, { start: 299_990 })),
      data.subarray(299_990),
    );
    const file = path.join(root, 'content', 'blobs', 'sha256', result.digest.slice(7));
    assert.equal(fs.statSync(file).size, data.length);
    assert.deepEqual(ingestDir(), []);
  });

  it('accepts a matching expected digest and size, and reports an existing blob', async () => {
    const data = Buffer.from('hello blob');
    const first = await store.ingest(Readable.from([data]), { digest: sha256(data), size: data.length });
    assert.equal(first.created, true);
    const again = await store.ingest(Readable.from([data]), { digest: sha256(data) });
    assert.equal(again.created, false);
    assert.deepEqual(ingestDir(), []);
  });

  it('never publishes a blob whose digest does not match', async () => {
    const data = Buffer.from('tampered content');
    const claimed = sha256('what the sender promised');
    await assert.rejects(store.ingest(Readable.from([data]), { digest: claimed }), (err: unknown) => {
      return err instanceof InvalidArgument && /digest mismatch/.test(err.message);
    });
    assert.equal(store.has(claimed), false);
    assert.equal(store.has(sha256(data)), false);
    assert.deepEqual(ingestDir(), []);
  });

  it('stops a stream longer than the expected size and keeps nothing', async () => {
    const data = Buffer.alloc(100_000, 1);
    await assert.rejects(store.ingest(chunks(data, 1000), { size: 5000 }), /size mismatch/);
    await assert.rejects(store.ingest(Readable.from([Buffer.from('short')]), { size: 6 }), /size mismatch/);
    assert.equal(store.has(sha256(data)), false);
    assert.deepEqual(ingestDir(), []);
  });

  it('drops the partial file when the source fails half-way', async () => {
    const source = new PassThrough();
    const pending = store.ingest(source);
    source.write(Buffer.alloc(10_000, 2));
    setImmediate(() => source.destroy(new Error('connection reset')));
    await assert.rejects(pending, /connection reset/);
    assert.equal(store.has(sha256(Buffer.alloc(10_000, 2))), false);
    assert.deepEqual(ingestDir(), []);
  });

  it('works as the last stage of a pipeline', async () => {
    const data = Buffer.from('compressed then stored uncompressed\n'.repeat(1000));
    const writer = store.createWriter();
    await pipeline(Readable.from([zlib.gzipSync(data)]), zlib.createGunzip(), writer);
    assert.equal(writer.written, data.length);
    const result = await writer.commit({ digest: sha256(data), size: data.length });
    assert.equal(result.digest, sha256(data));
    assert.deepEqual(await readAll(store.openRead(result.digest)), data);
  });

  it('aborts a writer without a trace, and refuses a commit before the stream finished', async () => {
    const writer = store.createWriter();
    writer.write(Buffer.from('partial'));
    await writer.abort();
    assert.deepEqual(ingestDir(), []);
    const early = store.createWriter();
    early.write(Buffer.from('not ended'));
    await assert.rejects(early.commit(), /before its stream finished/);
    assert.deepEqual(ingestDir(), []);
  });

  it('stores small blobs, bounds readSmall, deletes and lists', () => {
    const json = Buffer.from('{"a":1}');
    const result = store.writeSmall(json);
    assert.equal(result.digest, sha256(json));
    assert.deepEqual(store.readSmall(result.digest), json);
    assert.throws(() => store.readSmall(result.digest, 3), InvalidArgument);
    assert.throws(() => store.writeSmall(json, { digest: sha256('other') }), /digest mismatch/);
    assert.ok(store.list().some((b) => b.digest === result.digest && b.size === json.length));
    assert.equal(store.delete(result.digest), true);
    assert.equal(store.delete(result.digest), false);
    assert.equal(store.has(result.digest), false);
    assert.throws(() => store.readSmall(result.digest), NotFound);
    assert.throws(() => store.openRead(result.digest), NotFound);
  });

  it('refuses malformed digests instead of touching other paths', () => {
    assert.throws(() => store.has('sha256:../../etc/passwd' as `sha256:${string}`), InvalidArgument);
  });

  it('removes stale partial writes', () => {
    const stale = path.join(root, 'content', 'ingest', 'leftover');
    fs.writeFileSync(stale, 'x');
    const old = new Date(Date.now() - 3_600_000);
    fs.utimesSync(stale, old, old);
    assert.equal(store.removeStaleIngests(60_000), 1);
    assert.equal(fs.existsSync(stale), false);
  });

  it('keeps a partial pull that is open or recent; removes one never resumed', async () => {
    const data = Buffer.from('a layer that never finished downloading');
    const expected = { digest: sha256(data), size: data.length };
    const ingestPath = (ref: string): string => path.join(root, 'content', 'ingest', ref);
    const old = new Date(Date.now() - 2 * 86_400_000);
    const open = await store.openIngest('pull-open', expected);
    open.appendSync(data.subarray(0, 5));
    await open.close({ keep: true });
    const reopened = await store.openIngest('pull-open', expected);
    fs.utimesSync(ingestPath('pull-open'), old, old);
    fs.writeFileSync(ingestPath('pull-abandoned'), data.subarray(0, 7));
    fs.utimesSync(ingestPath('pull-abandoned'), old, old);
    fs.writeFileSync(ingestPath('pull-recent'), data.subarray(0, 9));
    assert.equal(store.removeStaleIngests(86_400_000), 1);
    assert.equal(fs.existsSync(ingestPath('pull-abandoned')), false);
    assert.equal(fs.existsSync(ingestPath('pull-recent')), true);
    assert.equal(fs.existsSync(ingestPath('pull-open')), true, 'an open ingest is in use');
    reopened.appendSync(data.subarray(5));
    assert.equal((await reopened.commit()).digest, expected.digest);
    fs.rmSync(ingestPath('pull-recent'));
  });
});
