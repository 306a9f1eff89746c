import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { packEntries } from '../../src/common/tar.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { buildOk, fixtureContext, inspectConfig, removeContexts, runOutput, sh } from './helpers.js';

async function collectStream(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** A raw `POST /build` over the daemon socket, as dockerode sends it (chunked, application/tar). */
function postBuild(
  socket: string,
  apiPath: string,
  body: Buffer,
): Promise<{ status: number; contentType: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method: 'POST', path: apiPath, headers: { 'Content-Type': 'application/tar' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            contentType: String(res.headers['content-type']),
            body: Buffer.concat(chunks).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    req.write(body.subarray(0, 100));
    req.end(body.subarray(100));
  });
}

/**
 * Every Dockerfile instruction and parser feature, each fixture under test/build/fixtures built
 * through the docker CLI (classic builder) and checked by running the result and inspecting it.
 */
describe('docker build: instructions', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    removeContexts();
  });

  test('metadata instructions, variables, continuations and comments (basic)', async () => {
    const ctx = fixtureContext('basic');
    const { stdout } = await buildOk(d, ['-t', 'basic:1', '--build-arg', 'GREETING=howdy', ctx]);
    assert.match(stdout, /^Step 1\/\d+ : ARG BASE=bb:latest$/m);
    assert.match(stdout, /^Step 2\/\d+ : FROM \$\{BASE\} AS base$/m);
    assert.match(stdout, / ---> Running in [0-9a-f]{12}\n/);
    assert.match(stdout, /Removing intermediate container [0-9a-f]{12}\n/);
    assert.match(stdout, /Successfully tagged basic:1\n/);

    assert.equal(await runOutput(d, ['basic:1']), 'howdy from /srv/app/sub');
    const files = await sh(d, 'basic:1', 'cat env.txt /exec.txt /shell.txt /tmp/uid.txt; pwd; id -un');
    assert.deepEqual(files.split('\n'), [
      'mode=production extra=has-greeting unset=[] legacy=legacy value with spaces',
      'exec-form',
      'shell-changed',
      '1000',
      '/srv/app/sub',
      'app',
    ]);

    const config = await inspectConfig(d, 'basic:1');
    assert.equal(config.User, 'app');
    assert.equal(config.WorkingDir, '/srv/app/sub');
    assert.deepEqual(config.Entrypoint, ['/bin/sh', '-c']);
    assert.deepEqual(config.Cmd, ['cat /srv/app/sub/greeting.txt']);
    assert.deepEqual(config.Shell, ['/bin/sh', '-ec']);
    assert.deepEqual(config.ExposedPorts, { '8080/tcp': {}, '53/udp': {} });
    assert.deepEqual(config.Volumes, { '/data': {}, '/logs': {}, '/cache': {} });
    assert.equal(config.StopSignal, 'SIGINT');
    assert.deepEqual(config.Healthcheck, {
      Test: ['CMD', 'cat', '/srv/app/sub/greeting.txt'],
      Interval: 5e9,
      Timeout: 2e9,
      StartPeriod: 1e9,
      Retries: 4,
    });
    assert.deepEqual(config.Labels, {
      'org.example.name': 'basic fixture',
      'org.example.greeting': 'howdy',
      version: '1',
    });
    assert.deepEqual(config.OnBuild, ['RUN echo from-trigger > /tmp/onbuild.txt']);
    const env = config.Env as string[];
    for (const e of [
      'APP_HOME=/srv/app',
      'MODE=production',
      'EXTRA=has-greeting',
      'LEGACY=legacy value with spaces',
    ]) {
      assert.ok(env.includes(e), `${e} in ${env.join(',')}`);
    }
    assert.ok(!env.some((e) => e.startsWith('GREETING=')), 'build args are not persisted');
    assert.equal(
      await d.dockerOk(['image', 'inspect', '-f', '{{.Author}}', 'basic:1']),
      'Strata Tests <tests@example.com>',
    );

    // History: one entry per step, RUN with its build args, metadata steps #(nop), sizes of layers.
    const history = (
      await d.dockerOk(['history', '--no-trunc', '--format', '{{.CreatedBy}}\t{{.Size}}', 'basic:1'])
    )
      .split('\n')
      .map((l) => l.split('\t'));
    const createdBy = history.map(([c]) => c);
    // Metadata steps name the shell in effect (SHELL changes it for the steps after it).
    assert.ok(createdBy.includes('/bin/sh -ec #(nop)  EXPOSE 8080 53/udp'), createdBy.join('\n'));
    assert.ok(createdBy.includes('/bin/sh -c #(nop) WORKDIR /srv/app/sub'));
    assert.ok(createdBy.includes('/bin/sh -ec #(nop)  USER app'));
    assert.ok(createdBy.includes('/bin/sh -c #(nop)  ENV LEGACY=legacy value with spaces'));
    // Build args with a value prefix RUN lines (UNSET_ARG has none); exec form is joined as is.
    assert.ok(createdBy.includes('|1 GREETING=howdy sh -c echo exec-form > /exec.txt'));
    assert.ok(createdBy.includes('/bin/sh -c #(nop)  ARG GREETING=hello'));
    const runLine = history.find(([c]) =>
      c.startsWith('|1 GREETING=howdy /bin/sh -c echo "$GREETING from $(pwd)" > greeting.txt'),
    );
    assert.ok(runLine, createdBy.join('\n'));
    assert.notEqual(runLine[1], '0B', 'the RUN that wrote files has a non-empty layer');
    const exposeLine = history.find(([c]) => c.includes('EXPOSE'));
    assert.equal(exposeLine?.[1], '0B');
  });

  test('escape and syntax directives', async () => {
    const ctx = fixtureContext('escape');
    await buildOk(d, ['-t', 'escape:1', ctx]);
    const out = await sh(
      d,
      'escape:1',
      'cat /continued.txt; echo "$WIN_PATH"; cat "/spaced/file with spaces.txt"',
    );
    assert.deepEqual(out.split('\n'), ['one two', 'C:\\Windows\\System32', 'spaces survive']);
  });

  test('COPY: owners, modes, mtimes, wildcards, directories, symlinks, .dockerignore, heredocs', async () => {
    const ctx = fixtureContext('copy');
    fs.symlinkSync('plain.txt', path.join(ctx, 'link-to-plain'));
    fs.symlinkSync('x/y.txt', path.join(ctx, 'tree', 'link'));
    fs.chmodSync(path.join(ctx, 'tree', 'exec.sh'), 0o755);
    const fixed = new Date('2020-01-02T03:04:05Z');
    fs.utimesSync(path.join(ctx, 'plain.txt'), fixed, fixed);
    await buildOk(d, ['-t', 'copy:1', ctx]);
    const stat = (p: string) => sh(d, 'copy:1', `stat -c '%u:%g %a %F' ${p}`);
    assert.equal(await stat('/plain.txt'), '0:0 644 regular file');
    assert.equal(await sh(d, 'copy:1', 'stat -c %Y /plain.txt'), String(fixed.getTime() / 1000));
    assert.equal(await stat('/home/app/secret.txt'), '1000:1000 640 regular file');
    assert.equal(await stat('/opt/src/sub/d.txt'), '1000:1000 644 regular file');
    assert.equal(await sh(d, 'copy:1', 'ls /wild'), 'a.txt\nb.txt');
    assert.equal(
      await sh(d, 'copy:1', 'cat /tree/x/y.txt; readlink /tree/link; ls /tree'),
      'y\nx/y.txt\nexec.sh\nlink\nx',
    );
    assert.equal(await stat('/tree/exec.sh'), '0:0 755 regular file');
    assert.equal(await stat('/followed.txt'), '0:0 644 regular file');
    assert.equal(
      await sh(d, 'copy:1', 'cat /followed.txt /work/relative.txt /work/plain.txt'),
      'plain content\n'.repeat(3).trim(),
    );
    assert.equal(await stat('/newdir'), '1000:1000 755 directory');
    assert.equal(await stat('/newdir/deeper/owned.txt'), '1000:1000 644 regular file');
    assert.equal(await sh(d, 'copy:1', 'cat /generated.conf'), 'greeting=world');
    assert.equal(
      await sh(d, 'copy:1', 'cd /everything && find . | sort | tr "\\n" " "'),
      '. ./.dockerignore ./Dockerfile ./link-to-plain ./plain.txt ./secret.txt ./src ./src/a.txt ./src/b.txt ./src/c.md ./src/sub ./src/sub/d.txt ./tree ./tree/exec.sh ./tree/link ./tree/x ./tree/x/y.txt',
    );
    assert.equal(
      await sh(d, 'copy:1', 'ls /ignored.log /tree/ignored.log 2>&1 | wc -l; ls / | grep -c log || true'),
      '2\n0',
    );
  });

  test('ADD: local archives are extracted (and cannot escape), other files copied', async () => {
    const ctx = fixtureContext('add');
    const gen = path.join(path.dirname(ctx), 'gen');
    fs.mkdirSync(path.join(gen, 'dir'), { recursive: true });
    fs.writeFileSync(path.join(gen, 'dir', 'file'), 'in archive\n');
    fs.chownSync(path.join(gen, 'dir', 'file'), 1234, 1234);
    execFileSync('tar', ['-czf', path.join(ctx, 'archive.tar.gz'), '-C', gen, 'dir']);
    fs.writeFileSync(path.join(gen, 'a.txt'), 'plain tar\n');
    execFileSync('tar', ['-cf', path.join(ctx, 'plain.tar'), '-C', gen, 'a.txt']);
    const trick = packEntries([
      { name: 'up', type: 'symlink', linkname: '/' },
      { name: 'up/pwned', type: 'file', data: 'contained\n' },
    ]);
    const chunks: Buffer[] = [];
    for await (const c of trick) chunks.push(c as Buffer);
    fs.writeFileSync(path.join(ctx, 'link-trick.tar'), Buffer.concat(chunks));
    await buildOk(d, ['-t', 'add:1', ctx]);
    assert.equal(
      await sh(d, 'add:1', 'cat /extracted/dir/file; stat -c %u /extracted/dir/file'),
      'in archive\n1234',
    );
    assert.equal(await sh(d, 'add:1', 'cat /plain-extract/a.txt'), 'plain tar');
    assert.equal(
      await sh(d, 'add:1', 'cat /notes/notes.txt; stat -c %u:%g /owned-notes.txt'),
      'just notes\n1000:1000',
    );
    assert.equal(
      await sh(d, 'add:1', 'cat /dest/pwned; test -e /pwned && echo escaped || echo contained'),
      'contained\ncontained',
    );
  });

  test('multi-stage builds: COPY --from name, index and image; FROM a stage; --target', async () => {
    const ctx = fixtureContext('multistage');
    await buildOk(d, ['-t', 'multi:1', ctx]);
    assert.equal(await runOutput(d, ['multi:1']), 'built');
    assert.equal(
      await sh(
        d,
        'multi:1',
        'cat /copied-dir/artifact.txt; test -x /from-image-busybox && echo bin; test -e /tested.txt || echo no-test',
      ),
      'built\nbin\nno-test',
    );
    const target = await buildOk(d, ['-t', 'multi:test', '--target', 'test', ctx]);
    assert.match(target.stdout, /Step 4\/4 : RUN cat \/out\/artifact.txt > \/tested.txt/);
    assert.equal(await sh(d, 'multi:test', 'cat /tested.txt'), 'built');
  });

  test('here-documents in RUN and COPY', async () => {
    const ctx = fixtureContext('heredoc');
    await buildOk(d, ['-t', 'heredoc:1', ctx]);
    const out = await sh(
      d,
      'heredoc:1',
      'cat /hello.txt /shebang.txt /catted.txt /etc/app.conf /literal.txt',
    );
    assert.deepEqual(out.split('\n'), [
      'hello world',
      'second',
      'from shebang',
      'cat says world',
      'who=world',
      'quoted="kept"',
      '$WHO stays literal',
    ]);
  });

  test('FROM scratch: an image made only of copied files', async () => {
    const ctx = fixtureContext('scratch');
    fs.copyFileSync('/bin/busybox', path.join(ctx, 'busybox'));
    fs.chmodSync(path.join(ctx, 'busybox'), 0o755);
    const { stdout } = await buildOk(d, ['-t', 'scratch:1', ctx]);
    assert.match(stdout, /Step 1\/4 : FROM scratch\n ---> \n/);
    assert.equal(await runOutput(d, ['scratch:1']), 'static');
    const layers = JSON.parse(
      await d.dockerOk(['image', 'inspect', '-f', '{{json .RootFS.Layers}}', 'scratch:1']),
    );
    assert.equal(layers.length, 1);
  });

  test('ONBUILD triggers run in the child build, from the child context', async () => {
    const ctx = fixtureContext('onbuild');
    await buildOk(d, ['-t', 'onbuild-base', '-f', path.join(ctx, 'base.Dockerfile'), ctx]);
    const { stdout } = await buildOk(d, ['-t', 'onbuild-child', ctx]);
    assert.match(stdout, /# Executing 2 build triggers\n/);
    assert.equal(await sh(d, 'onbuild-child', 'cat /child.txt'), 'from the child context\ntriggered');
    const config = await inspectConfig(d, 'onbuild-child');
    assert.ok(!config.OnBuild || (config.OnBuild as string[]).length === 0, 'triggers are consumed');
  });

  test('tags, labels, -q and --iidfile', async () => {
    const ctx = fixtureContext('escape');
    const iid = path.join(ctx, '..', 'iid');
    const r = await d.docker(
      [
        'build',
        '-q',
        '-t',
        'many:a',
        '-t',
        'many:b',
        '--label',
        'team=build',
        '--label',
        'x=y z',
        '--iidfile',
        iid,
        ctx,
      ],
      { timeoutMs: 120_000 },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.trim(), /^sha256:[0-9a-f]{64}$/);
    assert.equal(fs.readFileSync(iid, 'utf8').trim(), r.stdout.trim());
    const ids = await d.dockerOk(['image', 'inspect', '-f', '{{.Id}}', 'many:a', 'many:b']);
    assert.deepEqual(ids.split('\n'), [r.stdout.trim(), r.stdout.trim()]);
    const config = await inspectConfig(d, 'many:a');
    assert.deepEqual(config.Labels, { team: 'build', x: 'y z' });
  });

  test('the Engine API: gzip context, stream format, in-stream errors with the exit code', async () => {
    const tar = await collectStream(
      packEntries([
        { name: 'Dockerfile', type: 'file', data: 'FROM bb\nCOPY f /f\nRUN cat /f\n' },
        { name: 'f', type: 'file', data: 'via the api\n' },
      ]),
    );
    const ok = await postBuild(d.socket, '/build?t=api%3A1&buildargs=%7B%7D', zlib.gzipSync(tar));
    assert.equal(ok.status, 200);
    assert.equal(ok.contentType, 'application/json');
    assert.ok(ok.body.endsWith('\r\n'), 'messages end with \\r\\n');
    const messages = ok.body
      .trim()
      .split('\r\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(messages.slice(0, 2), [{ stream: 'Step 1/3 : FROM bb' }, { stream: '\n' }]);
    assert.ok(
      messages.some((m) => m.stream === 'via the api\n'),
      'RUN output is streamed',
    );
    const aux = messages.find((m) => m.aux) as { aux: { ID: string } };
    assert.match(aux.aux.ID, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(messages.slice(-2), [
      { stream: `Successfully built ${aux.aux.ID.slice(7, 19)}\n` },
      { stream: 'Successfully tagged api:1\n' },
    ]);

    const bad = await collectStream(
      packEntries([{ name: 'Dockerfile', type: 'file', data: 'FROM bb\nRUN exit 3\n' }]),
    );
    const failed = await postBuild(d.socket, '/v1.41/build?q=1', bad);
    const last = JSON.parse(failed.body.trim().split('\r\n').at(-1)!);
    assert.deepEqual(last, {
      errorDetail: { code: 3, message: "The command '/bin/sh -c exit 3' returned a non-zero code: 3" },
      error: "The command '/bin/sh -c exit 3' returned a non-zero code: 3",
    });
    const parseError = await postBuild(d.socket, '/build', Buffer.from('FROM bb\nNOPE x\n'));
    assert.equal(parseError.status, 400);
    assert.deepEqual(JSON.parse(parseError.body), {
      message: 'Dockerfile parse error line 2: unknown instruction: NOPE',
    });
  });

  test('build context from stdin (Dockerfile only), --network host', async () => {
    const r = await d.docker(['build', '-t', 'stdin:1', '--network', 'host', '-'], {
      input: 'FROM bb\nRUN echo from-stdin > /s.txt\n',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await sh(d, 'stdin:1', 'cat /s.txt'), 'from-stdin');
  });
});
