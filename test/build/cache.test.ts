import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryProcess } from '../distribution/helpers.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildOk, fixtureContext, removeContexts, sh } from './helpers.js';

/** The steps of a build output with their cache status: `[original, cached]`. */
function steps(stdout: string): Array<[string, boolean]> {
  const out: Array<[string, boolean]> = [];
  const lines = stdout.split('\n');
  lines.forEach((line, i) => {
    const m = /^Step \d+\/\d+ : (.*)$/.exec(line);
    if (m) out.push([m[1], lines[i + 1] === ' ---> Using cache']);
  });
  return out;
}

describe('docker build: cache and reproducibility', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    removeContexts();
  });

  test('a rebuild is all cache; touching a file changes nothing; editing it rebuilds from its COPY on', async () => {
    const ctx = fixtureContext('cache');
    const first = await buildOk(d, ['-t', 'cached:1', ctx]);
    assert.ok(steps(first.stdout).every(([, cached]) => !cached));

    const again = await buildOk(d, ['-t', 'cached:1', ctx]);
    assert.equal(again.id, first.id);
    assert.ok(!again.stdout.includes('Running in'), 'no container ran');
    assert.deepEqual(
      steps(again.stdout).map(([, c]) => c),
      [false, true, true, true, true, true],
      'every step after FROM is cached',
    );

    const later = new Date(Date.now() + 60_000);
    fs.utimesSync(path.join(ctx, 'a.txt'), later, later);
    fs.utimesSync(path.join(ctx, 'b.txt'), later, later);
    const touched = await buildOk(d, ['-t', 'cached:1', ctx]);
    assert.equal(touched.id, first.id, 'mtime is not part of the cache key');

    fs.writeFileSync(path.join(ctx, 'b.txt'), 'b v2\n');
    const edited = await buildOk(d, ['-t', 'cached:2', ctx]);
    assert.deepEqual(steps(edited.stdout), [
      ['FROM bb', false],
      ['COPY a.txt /a.txt', true],
      ['RUN cat /a.txt > /a-copy.txt', true],
      ['COPY b.txt /b.txt', false],
      ['RUN cat /b.txt > /b-copy.txt', false],
      ['ENV DONE=1', false],
    ]);
    assert.notEqual(edited.id, first.id);
    assert.equal(await sh(d, 'cached:2', 'cat /a-copy.txt /b-copy.txt'), 'a v1\nb v2');
    assert.equal(await sh(d, 'cached:1', 'cat /b-copy.txt'), 'b v1');

    // A mode change is a content change for the cache.
    fs.chmodSync(path.join(ctx, 'a.txt'), 0o600);
    const chmodded = await buildOk(d, ['-t', 'cached:3', ctx]);
    assert.deepEqual(
      steps(chmodded.stdout).map(([, c]) => c),
      [false, false, false, false, false, false],
    );

    const noCache = await buildOk(d, ['--no-cache', '-t', 'cached:4', ctx]);
    assert.ok(steps(noCache.stdout).every(([, cached]) => !cached));
  });

  test('a changed build argument invalidates the steps that see it', async () => {
    const ctx = fixtureContext('escape');
    fs.writeFileSync(
      path.join(ctx, 'Dockerfile'),
      'FROM bb\nRUN echo before > /b\nARG V=1\nRUN echo $V > /v\nRUN echo after > /a\n',
    );
    await buildOk(d, ['-t', 'args:1', ctx]);
    const same = await buildOk(d, ['-t', 'args:1', '--build-arg', 'V=1', ctx]);
    assert.ok(
      steps(same.stdout)
        .slice(1)
        .every(([, c]) => c),
    );
    const changed = await buildOk(d, ['-t', 'args:2', '--build-arg', 'V=2', ctx]);
    assert.deepEqual(
      steps(changed.stdout).map(([, c]) => c),
      [false, true, true, false, false],
    );
    assert.equal(await sh(d, 'args:2', 'cat /v'), '2');
    const unused = await buildOk(d, ['-t', 'args:3', '--build-arg', 'NOBODY=x', ctx]);
    assert.match(unused.stdout, /\[Warning\] One or more build-args \[NOBODY\] were not consumed/);
  });

  test('SOURCE_DATE_EPOCH: two --no-cache builds give the same image id, times clamped and fixed', async () => {
    const ctx = fixtureContext('repro');
    const epoch = '1700000000';
    const a = await buildOk(d, [
      '--no-cache',
      '--build-arg',
      `SOURCE_DATE_EPOCH=${epoch}`,
      '-t',
      'repro:a',
      ctx,
    ]);
    await new Promise((r) => setTimeout(r, 1100));
    fs.utimesSync(path.join(ctx, 'data.txt'), new Date(), new Date());
    const b = await buildOk(d, [
      '--no-cache',
      '--build-arg',
      `SOURCE_DATE_EPOCH=${epoch}`,
      '-t',
      'repro:b',
      ctx,
    ]);
    assert.equal(a.id, b.id);
    assert.equal(
      await d.dockerOk(['image', 'inspect', '-f', '{{.Created}}', 'repro:a']),
      '2023-11-14T22:13:20Z',
    );
    assert.equal(
      await sh(d, 'repro:a', 'stat -c %Y /out.txt /made/dir/f /data.txt'),
      `${epoch}\n${epoch}\n${epoch}`,
    );
    // Without the epoch, the config dates differ.
    const c = await buildOk(d, ['--no-cache', '-t', 'repro:c', ctx]);
    assert.notEqual(c.id, a.id);
  });

  test('builder prune and image prune drop the cache', async () => {
    const ctx = fixtureContext('cache');
    fs.writeFileSync(path.join(ctx, 'a.txt'), 'prune test\n');
    await buildOk(d, ['-t', 'prune:1', ctx]);
    const pruned = await d.dockerOk(['builder', 'prune', '-af']);
    assert.match(pruned, /Total reclaimed space/);
    const rebuilt = await buildOk(d, ['-t', 'prune:1', ctx]);
    assert.ok(
      steps(rebuilt.stdout).every(([, cached]) => !cached),
      'no cache after builder prune -a',
    );

    // An image removed by rmi (and its untagged parents) takes its cache entries with it.
    fs.writeFileSync(path.join(ctx, 'a.txt'), 'prune test 2\n');
    await buildOk(d, ['-t', 'prune:2', ctx]);
    const cached = await buildOk(d, ['-t', 'prune:2', ctx]);
    assert.ok(
      steps(cached.stdout)
        .slice(1)
        .every(([, c]) => c),
    );
    await d.dockerOk(['rmi', 'prune:2']);
    await d.dockerOk(['image', 'prune', '-f']);
    const afterRmi = await buildOk(d, ['-t', 'prune:2', ctx]);
    assert.ok(
      steps(afterRmi.stdout).every(([, c]) => !c),
      'the removed images are no cache any more',
    );
    assert.equal(await sh(d, 'prune:1', 'cat /a-copy.txt'), 'prune test', 'other images are untouched');
  });
});

describe('docker build: FROM images from a registry', () => {
  let d: TestDaemon;
  let registry: RegistryProcess;
  before(async () => {
    registry = await RegistryProcess.strata();
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    await registry?.stop();
    removeContexts();
  });

  test('a FROM image that is not here is pulled; --pull pulls again', async () => {
    const base = `127.0.0.1:${registry.port}/build/base:v1`;
    await d.dockerOk(['tag', 'bb', base]);
    await d.dockerOk(['push', base]);
    await d.dockerOk(['rmi', base]);
    const ctx = fixtureContext('escape');
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${base}\nRUN echo pulled > /p\n`);
    const first = await buildOk(d, ['-t', 'pulled:1', ctx]);
    assert.match(first.stdout, /v1: Pulling from build\/base/);
    assert.equal(await sh(d, 'pulled:1', 'cat /p'), 'pulled');
    const again = await buildOk(d, ['--pull', '-t', 'pulled:1', ctx]);
    assert.match(again.stdout, /Pulling from build\/base|Image is up to date/);
    assert.ok(
      steps(again.stdout)
        .slice(1)
        .every(([, c]) => c),
      'the same base keeps the cache',
    );
  });
});
