import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { packEntries } from '../../src/common/tar.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { build, emptyContext, mountsUnder, removeContexts, runOutput } from './helpers.js';

function contextWith(files: Record<string, string>): string {
  const dir = emptyContext();
  for (const [name, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), content);
  }
  return dir;
}

/** A local TCP port nothing listens on. */
function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function settled(check: () => Promise<boolean>, timeoutMs = 15_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return check();
}

describe('docker build: bad input, failures, safety', () => {
  let d: TestDaemon;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    removeContexts();
  });

  const nothingLeft = async () => {
    const ps = await d.dockerOk(['ps', '-aq']);
    const tmp = path.join(d.root, 'build', 'tmp');
    return ps === '' && mountsUnder(d.root).length === 0 && fs.readdirSync(tmp).length === 0;
  };

  test('syntax errors fail before any step and name the line', async () => {
    const cases: Array<[string, RegExp]> = [
      ['FROM bb\nRUN true\nFOO bar\n', /Dockerfile parse error line 3: unknown instruction: FOO/],
      ['FROM bb\nCOPY --chwn=1 a /b\n', /Dockerfile parse error line 2: Unknown flag: chwn/],
      ['FROM bb\nRUN --mount=type=cache,target=/x true\n', /line 2: the --mount option requires BuildKit/],
      ['FROM bb\n\nENV A=1 B\n', /Dockerfile parse error line 3: Syntax error - can't find = in "B"/],
      ['FROM bb\nRUN <<EOF\necho never ends\n', /Dockerfile parse error line 2: unterminated heredoc EOF/],
      ['FROM bb AS a\nFROM bb AS A\n', /line 2: duplicate stage name "a"/],
    ];
    for (const [dockerfile, expected] of cases) {
      const r = await build(d, ['-'], { input: dockerfile });
      assert.equal(r.code, 1, dockerfile);
      assert.match(r.stderr, expected);
      assert.ok(!r.stdout.includes('Step 1/'), 'nothing ran');
    }
  });

  test('errors while a step runs name its line', async () => {
    const ctx = contextWith({
      Dockerfile: 'FROM bb AS one\nRUN true\nFROM bb\nCOPY --from=nosuchstage /x /x\n',
      'present.txt': 'x',
    });
    const fromStage = await build(d, [ctx]);
    assert.equal(fromStage.code, 1);
    assert.match(
      fromStage.stderr,
      /Dockerfile line 4: invalid from flag value nosuchstage: no build stage and no local image named "nosuchstage"/,
    );

    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM bb\nCOPY present.txt /\nCOPY missing.txt /\n');
    const missing = await build(d, [ctx]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /Dockerfile line 3: COPY failed: file not found in build context or excluded by \.dockerignore: stat missing\.txt: file does not exist/,
    );

    const target = await build(d, ['--target', 'nosuch', ctx]);
    assert.equal(target.code, 1);
    assert.match(target.stderr, /failed to reach build target nosuch in Dockerfile/);

    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM bb\nRUN true\nFROM nosuchimage:1\n');
    const from = await build(d, [ctx]);
    assert.equal(from.code, 1);
    // Not here and not pullable (these machines have no route to Docker Hub, or it has no such image).
    assert.match(from.stderr, /Dockerfile line 3: FROM nosuchimage:1: /);

    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM bb\nCOPY a b /dst\n');
    fs.writeFileSync(path.join(ctx, 'a'), 'a');
    fs.writeFileSync(path.join(ctx, 'b'), 'b');
    const multi = await build(d, [ctx]);
    assert.match(
      multi.stderr,
      /Dockerfile line 2: When using COPY with more than one source file, the destination must be a directory and end with a \//,
    );

    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM bb\nEXPOSE 99999\n');
    const port = await build(d, [ctx]);
    assert.match(port.stderr, /Dockerfile line 2: Invalid containerPort: 99999/);

    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM --platform=linux/s390x bb\n');
    const platform = await build(d, [ctx]);
    assert.match(platform.stderr, /Dockerfile line 1: platform "linux\/s390x" is not supported/);
    assert.ok(await nothingLeft());
  });

  test('a failing RUN reports its exit code and leaves no container or mount', async () => {
    const r = await build(d, ['-t', 'never', '-'], { input: 'FROM bb\nRUN echo partial > /p && exit 3\n' });
    assert.equal(r.code, 3);
    assert.match(
      r.stderr,
      /The command '\/bin\/sh -c echo partial > \/p && exit 3' returned a non-zero code: 3/,
    );
    assert.match(r.stdout, /Step 2\/2 : RUN echo partial/);
    assert.ok(await settled(nothingLeft), 'no container, mount or work directory remains');
    const images = await d.docker(['image', 'inspect', 'never']);
    assert.notEqual(images.code, 0, 'nothing was tagged');

    const exec = await build(d, ['-'], { input: 'FROM bb\nRUN ["/no/such/binary"]\n' });
    assert.equal(exec.code, 1);
    assert.match(exec.stderr, /Dockerfile line 2: .*exec: "\/no\/such\/binary": executable file not found/);
    assert.ok(await settled(nothingLeft));
  });

  test('COPY and ADD never read outside the context', async () => {
    const ctx = contextWith({ Dockerfile: 'FROM bb\nCOPY ../secret /s\n', 'inside.txt': 'in' });
    fs.writeFileSync(path.join(path.dirname(ctx), 'secret'), 'outside');
    const up = await build(d, [ctx]);
    assert.equal(up.code, 1);
    assert.match(
      up.stderr,
      /Dockerfile line 2: COPY failed: forbidden path outside the build context: \.\.\/secret/,
    );

    fs.symlinkSync('/etc/passwd', path.join(ctx, 'abs-link'));
    fs.symlinkSync('../../../../../../etc/hostname', path.join(ctx, 'rel-link'));
    for (const link of ['abs-link', 'rel-link']) {
      fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM bb\nCOPY ${link} /leak\n`);
      const r = await build(d, [ctx]);
      assert.equal(r.code, 1, `${link} must not resolve outside the context`);
      assert.match(r.stderr, /Dockerfile line 2: COPY failed: file not found in build context/);
    }
    // A symlink inside a copied directory is copied as a link, not followed.
    fs.mkdirSync(path.join(ctx, 'dir'));
    fs.symlinkSync('/etc/passwd', path.join(ctx, 'dir', 'link'));
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM bb\nCOPY /inside.txt /dir /copied/\n');
    const ok = await build(d, ['-t', 'linkcopy', ctx]);
    assert.equal(ok.code, 0, ok.stderr);
    const out = await runOutput(d, ['linkcopy', 'sh', '-c', 'readlink /copied/link; cat /copied/inside.txt']);
    assert.equal(out, '/etc/passwd\nin');
  });

  test('ADD archives cannot escape, unreachable URLs fail clearly', async () => {
    const ctx = contextWith({ Dockerfile: 'FROM bb\nADD evil.tar /dest/\n' });
    const chunks: Buffer[] = [];
    for await (const c of packEntries([{ name: '../../escaped.txt', type: 'file', data: 'x' }]))
      chunks.push(c as Buffer);
    fs.writeFileSync(path.join(ctx, 'evil.tar'), Buffer.concat(chunks));
    const evil = await build(d, [ctx]);
    assert.equal(evil.code, 1);
    assert.match(evil.stderr, /Dockerfile line 2: .*outside of the extraction directory/);

    const port = await closedPort();
    fs.writeFileSync(
      path.join(ctx, 'Dockerfile'),
      `FROM bb\nADD http://127.0.0.1:${port}/file.txt /file.txt\n`,
    );
    const url = await build(d, [ctx]);
    assert.equal(url.code, 1);
    assert.match(
      url.stderr,
      new RegExp(
        `Dockerfile line 2: ADD failed: failed to GET http://127\\.0\\.0\\.1:${port}/file\\.txt: .*ECONNREFUSED`,
      ),
    );
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'FROM bb\nCOPY http://127.0.0.1:9/file.txt /file.txt\n');
    const copyUrl = await build(d, [ctx]);
    assert.match(copyUrl.stderr, /Dockerfile line 2: COPY failed: source can't be a URL for COPY/);
    assert.ok(await settled(nothingLeft));
  });

  test('Ctrl-C of docker build stops the running step and cleans up', async () => {
    const child = spawn('docker', ['build', '-t', 'interrupted', '-'], {
      env: { ...process.env, ...d.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end('FROM bb\nRUN echo started && sleep 120\n');
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the step never started:\n${output}`)), 30_000);
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (/^started$/m.test(output)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    assert.notEqual(await d.dockerOk(['ps', '-q']), '', 'the RUN container is running');
    child.kill('SIGINT');
    await new Promise((r) => child.once('exit', r));
    assert.ok(await settled(nothingLeft), 'container, mounts and work directory are gone');
    assert.notEqual((await d.docker(['image', 'inspect', 'interrupted'])).code, 0);
  });
});
