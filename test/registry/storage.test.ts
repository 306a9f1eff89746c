import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import {
  type DigestHandle,
  digestCreate,
  digestFinal,
  digestUpdateAsync,
  isNativeError,
  tuneMalloc,
} from '../../src/native/index.js';
import { FilesystemDriver } from '../../src/registry/storage/filesystem.js';

let tmp = '';
before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-registry-storage-'));
});
after(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Pieces of the sizes an HTTP body arrives in, adding up to `data`. */
function pieces(data: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let offset = 0, i = 0; offset < data.length; i++) {
    const size = sizes[i % sizes.length] ?? 1;
    out.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return out;
}

describe('native digest', () => {
  test('matches node:crypto over several updates, for sha256 and sha512', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    for (const algorithm of ['sha256', 'sha512'] as const) {
      const handle = (digestCreate as NonNullable<typeof digestCreate>)(algorithm);
      for (const piece of pieces(data, [1, 65536, 1 << 20, 333])) {
        await (digestUpdateAsync as NonNullable<typeof digestUpdateAsync>)(handle, piece);
      }
      const expected = createHash(algorithm).update(data).digest('hex');
      assert.equal((digestFinal as NonNullable<typeof digestFinal>)(handle), expected, algorithm);
    }
  });

  test('takes one update at a time and nothing after the final digest', async () => {
    const update = digestUpdateAsync as NonNullable<typeof digestUpdateAsync>;
    const final = digestFinal as NonNullable<typeof digestFinal>;
    const handle: DigestHandle = (digestCreate as NonNullable<typeof digestCreate>)('sha256');
    const running = update(handle, randomBytes(1 << 20));
    assert.throws(
      () => update(handle, Buffer.from('x')),
      (err) => isNativeError(err, 'ERR_INVALID_STATE'),
    );
    assert.throws(
      () => final(handle),
      (err) => isNativeError(err, 'ERR_INVALID_STATE'),
    );
    await running;
    final(handle);
    assert.throws(
      () => update(handle, Buffer.from('x')),
      (err) => isNativeError(err, 'ERR_INVALID_STATE'),
    );
    assert.throws(() => (digestCreate as NonNullable<typeof digestCreate>)('md5' as 'sha256'), RangeError);
  });

  test('heap tuning is accepted; a negative size is a RangeError', () => {
    (tuneMalloc as NonNullable<typeof tuneMalloc>)(64 << 20, 16 << 20, 4 << 20);
    assert.throws(() => (tuneMalloc as NonNullable<typeof tuneMalloc>)(-1, 0, 0), RangeError);
  });
});

describe('filesystem driver writer', () => {
  for (const directIo of [true, false]) {
    test(`stores every byte in order across batches and appends, each byte observed once (${directIo ? 'O_DIRECT' : 'page cache'})`, async () => {
      const driver = new FilesystemDriver(path.join(tmp, `root-${directIo}`), { directIo });
      const data = randomBytes(5 * 1024 * 1024 + 12345);
      // The second writer appends at an offset that is not a multiple of the block size.
      const firstPart = data.subarray(0, 2 * 1024 * 1024 + 7);
      const observed: Buffer[] = [];
      const observe = async (chunk: Buffer): Promise<void> => {
        observed.push(Buffer.from(chunk));
      };
      const first = await driver.writer('/a/data', false, observe);
      const smallPieces = pieces(firstPart, [65536, 100, 1 << 20, 3 << 20]);
      await pipeline(Readable.from(smallPieces), first.stream);
      await first.close();
      assert.equal(first.size(), firstPart.length);
      const second = await driver.writer('/a/data', true, observe);
      const morePieces = pieces(data.subarray(firstPart.length), [32768, 100]);
      await pipeline(Readable.from(morePieces), second.stream);
      await second.commit();
      assert.equal(second.size(), data.length);
      assert.deepEqual(await driver.getContent('/a/data'), data);
      assert.deepEqual(Buffer.concat(observed), data);
      // Batched: far fewer stores than pieces.
      const pieceCount = smallPieces.length + morePieces.length;
      assert.ok(observed.length * 4 < pieceCount, `${observed.length} batches for ${pieceCount} pieces`);

      // Served back whole and in ranges that start and end inside blocks.
      for (const [offset, length] of [
        [0, data.length],
        [1, 4095],
        [4095, 2],
        [4096, 4096],
        [12345, 3 * 1024 * 1024 + 17],
        [data.length - 10, 10],
      ] as const) {
        const received: Buffer[] = [];
        const sink = new Writable({
          write(chunk: Buffer, _encoding, callback) {
            received.push(Buffer.from(chunk));
            callback();
          },
        });
        await (driver.copyTo as NonNullable<typeof driver.copyTo>).call(
          driver,
          '/a/data',
          offset,
          length,
          sink,
        );
        assert.deepEqual(
          Buffer.concat(received),
          data.subarray(offset, offset + length),
          `${offset}+${length}`,
        );
      }
      // A file shorter than the range asked for is an error, not a short answer.
      await assert.rejects(
        (driver.copyTo as NonNullable<typeof driver.copyTo>).call(
          driver,
          '/a/data',
          0,
          data.length + 5000,
          new Writable({ write: (_c, _e, cb) => cb() }),
        ),
        /shorter than expected/,
      );
    });
  }

  test('a stream cut off mid-batch keeps the bytes that arrived; cancel removes the file', async () => {
    const driver = new FilesystemDriver(path.join(tmp, 'root'));
    const data = randomBytes(300 * 1024);
    const writer = await driver.writer('/b/data', false);
    for (const piece of pieces(data, [65536])) {
      await new Promise<void>((resolve, reject) =>
        writer.stream.write(piece, (err) => (err ? reject(err) : resolve())),
      );
    }
    writer.stream.once('error', () => undefined);
    writer.stream.destroy(new Error('client went away'));
    await writer.close();
    assert.equal(writer.size(), data.length);
    assert.deepEqual(await driver.getContent('/b/data'), data);

    const cancelled = await driver.writer('/b/data', true);
    cancelled.stream.write(data.subarray(0, 1000));
    cancelled.stream.destroy();
    await cancelled.cancel();
    assert.equal(fs.existsSync(path.join(driver.root, 'b', 'data')), false);
  });
});
