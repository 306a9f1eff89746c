import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

/** The entries of an image's top layer, read from `docker save`. */
async function topLayerEntries(d: TestDaemon, image: string, work: string): Promise<string[]> {
  const archive = path.join(work, `${image.replace(/[^a-z0-9]/gi, '_')}.tar`);
  await d.dockerOk(['save', '-o', archive, image]);
  const manifest = JSON.parse(execFileSync('tar', ['-xOf', archive, 'manifest.json']).toString()) as Array<{
    Layers: string[];
  }>;
  const layer = execFileSync('tar', ['-xOf', archive, manifest[0].Layers.at(-1)!], { maxBuffer: 64 << 20 });
  return execFileSync('tar', ['-t'], { input: layer }).toString().trim().split('\n');
}

/**
 * Output of a short command in a new container, from its log (`docker run` of a very short process
 * occasionally loses the end of its attached output: a container-attach race outside commit).
 */
async function output(d: TestDaemon, image: string, cmd: string[]): Promise<string> {
  const id = await d.dockerOk(['run', '-d', '--entrypoint', cmd[0], image, ...cmd.slice(1)]);
  try {
    await d.dockerOk(['wait', id]);
    return (await d.dockerOk(['logs', id])).trim();
  } finally {
    await d.docker(['rm', '-f', id]);
  }
}

async function inspect(d: TestDaemon, ref: string, format: string): Promise<string> {
  return d.dockerOk(['inspect', '-f', format, ref]);
}

describe('docker commit', () => {
  let d: TestDaemon;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-commit-test-'));
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the new image is the container image plus exactly the container changes; -c, -m, -a apply', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      '--name',
      'writer',
      'bb',
      'sh',
      '-c',
      'mkdir -p /data && echo one > /data/a && dd if=/dev/zero of=/data/big bs=1024 count=64 2>/dev/null && rm /etc/group',
    ]);
    assert.equal(await d.dockerOk(['wait', id]), '0');
    const imageId = await d.dockerOk([
      'commit',
      '-m',
      'msg here',
      '-a',
      'me',
      '-c',
      'ENV X=1',
      '-c',
      'CMD ["cat", "/data/a"]',
      '--change',
      'LABEL committed=yes',
      'writer',
      'committed:v1',
    ]);
    assert.match(imageId, /^sha256:[0-9a-f]{64}$/);
    assert.equal(await inspect(d, 'committed:v1', '{{.Id}}'), imageId);
    assert.equal(
      await inspect(d, 'committed:v1', '{{.Author}}|{{.Comment}}|{{.Container}}'),
      `me|msg here|${id}`,
    );
    const config = JSON.parse(await inspect(d, 'committed:v1', '{{json .Config}}'));
    assert.ok(config.Env.includes('X=1'));
    assert.deepEqual(config.Cmd, ['cat', '/data/a']);
    assert.deepEqual(config.Labels, { committed: 'yes' });

    const parentLayers = JSON.parse(await inspect(d, 'bb', '{{json .RootFS.Layers}}'));
    const layers = JSON.parse(await inspect(d, 'committed:v1', '{{json .RootFS.Layers}}'));
    assert.equal(layers.length, parentLayers.length + 1);
    assert.deepEqual(layers.slice(0, -1), parentLayers, 'the base layers are referenced, not copied');

    assert.equal(await output(d, 'committed:v1', ['cat', '/data/a']), 'one');
    const entries = await topLayerEntries(d, 'committed:v1', work);
    assert.deepEqual(entries.sort(), ['data/', 'data/a', 'data/big', 'etc/', 'etc/.wh.group']);

    const history = (
      await d.dockerOk([
        'history',
        '--no-trunc',
        '--format',
        '{{.CreatedBy}}|{{.Size}}|{{.Comment}}',
        'committed:v1',
      ])
    ).split('\n');
    assert.equal(
      history[0],
      'sh -c mkdir -p /data && echo one > /data/a && dd if=/dev/zero of=/data/big bs=1024 count=64 2>/dev/null && rm /etc/group|65.5kB|msg here',
    );
  });

  test('a running container is paused while its changes are read and runs on afterwards', async () => {
    const id = await d.dockerOk([
      'run',
      '-d',
      'bb',
      'sh',
      '-c',
      'i=0; while true; do i=$((i+1)); echo $i > /counter; sleep 0.05; done',
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const paused = await d.dockerOk(['commit', id, 'running:paused']);
    assert.match(paused, /^sha256:/);
    assert.equal(await inspect(d, id, '{{.State.Running}} {{.State.Paused}}'), 'true false');
    const unpaused = await d.dockerOk(['commit', '--pause=false', id, 'running:live']);
    assert.match(unpaused, /^sha256:/);
    const counter = await output(d, 'running:paused', ['cat', '/counter']);
    assert.match(counter, /^\d+$/);
    await d.dockerOk(['rm', '-f', id]);
  });

  test('a container without changes commits to an empty layer; errors are clear', async () => {
    await d.dockerOk(['create', '--name', 'untouched', 'bb', 'true']);
    await d.dockerOk(['commit', 'untouched', 'empty:v1']);
    const parentLayers = JSON.parse(await inspect(d, 'bb', '{{json .RootFS.Layers}}'));
    const layers = JSON.parse(await inspect(d, 'empty:v1', '{{json .RootFS.Layers}}'));
    assert.deepEqual(layers, parentLayers);
    const top = (await d.dockerOk(['history', '--format', '{{.Size}}', 'empty:v1'])).split('\n')[0];
    assert.equal(top, '0B');

    const missing = await d.docker(['commit', 'nosuch', 'x:1']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No such container: nosuch/);
    const badChange = await d.docker(['commit', '-c', 'RUN echo no', 'untouched', 'x:2']);
    assert.equal(badChange.code, 1);
    assert.match(badChange.stderr, /run is not a valid change command/);
    const badRepo = await d.docker(['commit', 'untouched', 'Bad Name']);
    assert.notEqual(badRepo.code, 0);
  });
});
