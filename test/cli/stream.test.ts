import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { CliError } from '../../src/cli/errors.js';
import {
  demultiplex,
  displayJsonMessages,
  encodeFrame,
  FrameDecoder,
  jsonLines,
  renderProgressBar,
} from '../../src/cli/stream.js';

function collect(stream: PassThrough): () => string {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return () => Buffer.concat(chunks).toString('utf8');
}

describe('multiplexed stream', () => {
  it('decodes frames split at every possible byte boundary', () => {
    const wire = Buffer.concat([encodeFrame(1, 'hello\n'), encodeFrame(2, 'oops\n'), encodeFrame(1, '')]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const decoder = new FrameDecoder();
      const frames = [...decoder.push(wire.subarray(0, cut)), ...decoder.push(wire.subarray(cut))];
      assert.deepEqual(
        frames.map((f) => [f.stream, f.payload.toString()]),
        [
          [1, 'hello\n'],
          [2, 'oops\n'],
          [1, ''],
        ],
        `cut at ${cut}`,
      );
      assert.equal(decoder.leftover, 0);
    }
  });

  it('routes stdout and stderr frames and keeps binary payloads intact', async () => {
    const binary = Buffer.from([0, 1, 2, 255, 254, 10]);
    const source = Readable.from([
      Buffer.concat([encodeFrame(1, 'out1\n'), encodeFrame(2, 'err1\n').subarray(0, 3)]),
      Buffer.concat([encodeFrame(2, 'err1\n').subarray(3), encodeFrame(1, binary)]),
    ]);
    const out = new PassThrough();
    const err = new PassThrough();
    const outText = collect(out);
    const errText = collect(err);
    const outBytes: Buffer[] = [];
    out.on('data', (c: Buffer) => outBytes.push(c));
    await demultiplex(source, out, err);
    assert.equal(errText(), 'err1\n');
    assert.ok(outText().startsWith('out1\n'));
    assert.deepEqual(Buffer.concat(outBytes).subarray(5), binary);
  });

  it('turns a system-error frame into an error', async () => {
    const source = Readable.from([encodeFrame(3, 'container vanished\n')]);
    await assert.rejects(demultiplex(source, new PassThrough(), new PassThrough()), /container vanished/);
  });
});

describe('JSON message streams', () => {
  it('splits lines across chunks and tolerates \\r\\n', async () => {
    const source = Readable.from(['{"a":1}\r\n{"b"', ':2}\n\n{"c":3}']);
    const values: unknown[] = [];
    for await (const v of jsonLines(source)) values.push(v);
    assert.deepEqual(values, [{ a: 1 }, { b: 2 }, { c: 3 }]);
  });

  const pull = [
    { status: 'Pulling from library/bb', id: 'latest' },
    { status: 'Pulling fs layer', progressDetail: {}, id: '5089dc0e2a81' },
    { status: 'Downloading', progressDetail: { current: 64, total: 128 }, id: '5089dc0e2a81' },
    { status: 'Download complete', progressDetail: {}, id: '5089dc0e2a81' },
    { status: 'Pull complete', progressDetail: {}, id: '5089dc0e2a81' },
    { status: 'Digest: sha256:985a' },
    { status: 'Status: Downloaded newer image for bb:latest' },
  ];

  it('prints plain lines without byte counts when not on a terminal', async () => {
    const out = new PassThrough();
    const text = collect(out);
    await displayJsonMessages(Readable.from(pull.map((m) => `${JSON.stringify(m)}\r\n`)), out, {
      isTerminal: false,
    });
    assert.equal(
      text(),
      'latest: Pulling from library/bb\n5089dc0e2a81: Pulling fs layer\n5089dc0e2a81: Download complete\n' +
        '5089dc0e2a81: Pull complete\nDigest: sha256:985a\nStatus: Downloaded newer image for bb:latest\n',
    );
  });

  it('rewrites one line per layer with a bar on a terminal', async () => {
    const out = new PassThrough();
    const text = collect(out);
    await displayJsonMessages(Readable.from(pull.map((m) => `${JSON.stringify(m)}\n`)), out, {
      isTerminal: true,
    });
    const s = text();
    assert.match(s, /\x1b\[1A\x1b\[2K\r5089dc0e2a81: Downloading \[=+>\s*\]\s+64B\/128B\r\x1b\[1B/);
    assert.equal(s.split('\n').length - 1, 4, 'one new line per layer plus the three plain messages');
  });

  it('fails with the in-stream error message and hands aux to the callback', async () => {
    const aux: unknown[] = [];
    const good = Readable.from([JSON.stringify({ aux: { Digest: 'sha256:1' } })]);
    await displayJsonMessages(good, new PassThrough(), { isTerminal: false, onAux: (a) => aux.push(a) });
    assert.deepEqual(aux, [{ Digest: 'sha256:1' }]);
    const bad = Readable.from([
      JSON.stringify({ errorDetail: { message: 'no basic auth credentials' }, error: 'x' }),
    ]);
    await assert.rejects(
      displayJsonMessages(bad, new PassThrough(), { isTerminal: false }),
      (err: unknown) =>
        err instanceof CliError && err.message === 'no basic auth credentials' && err.exitCode === 1,
    );
  });

  it('draws progress bars', () => {
    assert.equal(renderProgressBar(0, 0), '');
    assert.match(renderProgressBar(50, 100, 120), /^\[={25}>\s{25}\]\s+50B\/100B$/);
    assert.match(renderProgressBar(2048, 0), /^\s*2\.048kB$/);
  });
});
