import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import tar from 'tar-stream';
import {
  effectiveExcludes,
  IgnoreMatcher,
  looksLikeArchive,
  packContext,
  readIgnorePatterns,
} from '../../src/cli/build-context.js';
import { BuildDisplay } from '../../src/cli/build-progress.js';
import { buildArgs, buildQuery, prepareContext } from '../../src/cli/commands/build.js';
import { CliError } from '../../src/cli/errors.js';
import { parseCommandLine } from '../../src/cli/main.js';

/** `strata build`: the context tar, .dockerignore rules, the query, and the progress display. */

/** "type name [-> link] size" per entry of a tar. */
export async function listTar(body: Buffer | Readable): Promise<string[]> {
  const extract = tar.extract();
  const out: string[] = [];
  const source = Buffer.isBuffer(body) ? Readable.from([body]) : body;
  const done = (async () => {
    for await (const entry of extract) {
      const h = entry.header;
      let content = '';
      for await (const c of entry) content += (c as Buffer).toString();
      out.push(
        `${h.type} ${h.name.startsWith('.dockerfile.') ? '.dockerfile.X' : h.name}${h.linkname ? ` -> ${h.linkname}` : ''} ${h.uid}:${h.gid} ${(h.mode ?? 0).toString(8)} ${h.type === 'file' ? JSON.stringify(content) : ''}`.trim(),
      );
    }
  })();
  source.pipe(extract);
  await done;
  return out;
}

async function readStream(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('.dockerignore matching (moby patternmatcher rules)', () => {
  const m = (patterns: string, file: string) => new IgnoreMatcher(readIgnorePatterns(patterns)).matches(file);

  it('cleans patterns: comments, blanks, leading slash, trailing slash, ./', () => {
    assert.deepEqual(readIgnorePatterns('# c\n\n/abs\n./rel/\n  spaced  \n!keep\n!\n'), [
      'abs',
      'rel',
      'spaced',
      '!keep',
    ]);
  });

  it('matches *, ?, ** and directory prefixes', () => {
    assert.equal(m('*.log', 'a.log'), true);
    assert.equal(m('*.log', 'sub/a.log'), false, '* does not cross /');
    assert.equal(m('**/*.log', 'sub/deep/a.log'), true);
    assert.equal(m('**/*.log', 'a.log'), true);
    assert.equal(m('ignored', 'ignored/z'), true, 'a matched directory excludes its contents');
    assert.equal(m('a?c', 'abc'), true);
    assert.equal(m('a?c', 'a/c'), false);
    assert.equal(m('docs/**', 'docs/x/y'), true);
    assert.equal(m('[ab].txt', 'b.txt'), true);
    assert.equal(m('f.t+t', 'f.t+t'), true);
    assert.equal(m('f.t+t', 'fxtttt'), false);
  });

  it('the last matching pattern wins; exceptions re-include', () => {
    assert.equal(m('*.log\n!keep.log', 'keep.log'), false);
    assert.equal(m('*.log\n!keep.log', 'other.log'), true);
    assert.equal(m('!keep.log\n*.log', 'keep.log'), true);
  });

  it('an excluded directory is still walked when an exception may match inside it', () => {
    const matcher = new IgnoreMatcher(readIgnorePatterns('sub\n!sub/keep'));
    assert.equal(matcher.matches('sub'), true);
    assert.equal(matcher.mayIncludeBelow('sub'), true);
    assert.equal(matcher.mayIncludeBelow('other'), false);
    assert.equal(matcher.matches('sub/keep'), false);
  });

  it('never drops the Dockerfile or .dockerignore', () => {
    const ex = effectiveExcludes(['*', '!src'], 'Dockerfile');
    assert.deepEqual(ex, ['*', '!src', '!.dockerignore', '!Dockerfile']);
    assert.equal(new IgnoreMatcher(ex).matches('Dockerfile'), false);
  });
});

describe('build context', () => {
  let dir: string;
  let outside: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-build-ctx-'));
    outside = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-build-outside-'));
    fs.writeFileSync(path.join(outside, 'secret'), 'do not send\n');
    fs.mkdirSync(path.join(outside, 'dir'));
    fs.writeFileSync(path.join(outside, 'dir', 'inner'), 'nor this\n');
    fs.writeFileSync(path.join(dir, 'Dockerfile'), 'FROM bb\nCOPY . /src\n');
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.writeFileSync(path.join(dir, 'sub', 'keep.log'), 'k');
    fs.writeFileSync(path.join(dir, 'sub', 'drop.log'), 'd');
    fs.writeFileSync(path.join(dir, 'empty'), '');
    fs.chmodSync(path.join(dir, 'empty'), 0o755);
    fs.symlinkSync(path.join(outside, 'secret'), path.join(dir, 'to-secret'));
    fs.symlinkSync(path.join(outside, 'dir'), path.join(dir, 'to-dir'));
    fs.writeFileSync(path.join(dir, '.dockerignore'), '**/*.log\n!sub/keep.log\nDockerfile\n');
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(outside, { recursive: true, force: true });
  });

  it('archives the directory in walk order, owned by 0:0, links as links, nothing from outside', async () => {
    const ex = effectiveExcludes(
      readIgnorePatterns(fs.readFileSync(path.join(dir, '.dockerignore'), 'utf8')),
      'Dockerfile',
    );
    const entries = await listTar(await readStream(packContext(dir, { excludes: ex })));
    assert.deepEqual(entries, [
      `file .dockerignore 0:0 644 ${JSON.stringify('**/*.log\n!sub/keep.log\nDockerfile\n')}`,
      `file Dockerfile 0:0 644 ${JSON.stringify('FROM bb\nCOPY . /src\n')}`,
      'file empty 0:0 755 ""',
      'directory sub/ 0:0 755',
      'file sub/keep.log 0:0 644 "k"',
      `symlink to-dir -> ${path.join(outside, 'dir')} 0:0 777`,
      `symlink to-secret -> ${path.join(outside, 'secret')} 0:0 777`,
    ]);
  });

  it('a context from stdin: a Dockerfile alone, or an archive as is', async () => {
    const fromText = await prepareContext('-', undefined, {
      stdin: Readable.from([Buffer.from('FROM bb\n')]),
    });
    assert.equal(fromText.dockerfile, 'Dockerfile');
    assert.deepEqual(await listTar(await readStream(fromText.body)), [
      'file Dockerfile 0:0 644 "FROM bb\\n"',
    ]);
    const archive = await readStream(packContext(dir, { excludes: ['*', '!Dockerfile'] }));
    assert.equal(looksLikeArchive(archive), true);
    assert.equal(looksLikeArchive(Buffer.from('FROM bb\n')), false);
    const fromTar = await prepareContext('-', 'Dockerfile', { stdin: Readable.from([archive]) });
    assert.deepEqual(await readStream(fromTar.body), archive);
  });

  it('-f - adds the Dockerfile under a generated name and hides it through .dockerignore', async () => {
    const prepared = await prepareContext(dir, '-', { stdin: Readable.from([Buffer.from('FROM x\n')]) });
    assert.match(prepared.dockerfile, /^\.dockerfile\.[0-9a-f]{20}$/);
    const entries = await listTar(await readStream(prepared.body));
    assert.equal(entries.at(-1), 'file .dockerfile.X 0:0 600 "FROM x\\n"');
    assert.equal(
      entries[0],
      `file .dockerignore 0:0 644 ${JSON.stringify(`**/*.log\n!sub/keep.log\nDockerfile\n\n${prepared.dockerfile}\n`)}`,
    );
  });

  it('-f inside the context is sent by its relative path; errors as docker words them', async () => {
    const inside = await prepareContext(dir, path.join(dir, 'Dockerfile'));
    assert.equal(inside.dockerfile, 'Dockerfile');
    await readStream(inside.body);
    await assert.rejects(
      prepareContext(path.join(dir, 'nope'), undefined),
      /unable to prepare context: path ".*nope" not found/,
    );
    await assert.rejects(
      prepareContext(path.join(dir, 'empty'), undefined),
      /unable to prepare context: context must be a directory/,
    );
    await assert.rejects(
      prepareContext(path.join(dir, 'sub'), undefined),
      /unable to evaluate symlinks in Dockerfile path: lstat .*sub\/Dockerfile: no such file or directory/,
    );
  });
});

describe('build query', () => {
  const query = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    const outcome = parseCommandLine(['build', ...argv, '.']);
    if (outcome.kind !== 'run') throw new Error('not a command');
    return buildQuery(outcome.invocation.flags, 'Dockerfile', env);
  };

  it('maps the flags like docker CLI 28', () => {
    assert.deepEqual(
      JSON.parse(
        JSON.stringify(
          query(
            [
              '-t',
              'a:1',
              '-t',
              'b',
              '--build-arg',
              'X=1',
              '--build-arg',
              'Y',
              '--label',
              'l=v',
              '--no-cache',
              '--pull',
              '--target',
              't1',
              '--network',
              'host',
              '-q',
            ],
            { Y: 'yy' },
          ),
        ),
      ),
      {
        buildargs: '{"X":"1","Y":"yy"}',
        dockerfile: 'Dockerfile',
        forcerm: false,
        labels: '{"l":"v"}',
        networkmode: 'host',
        nocache: true,
        pull: true,
        q: true,
        t: ['a:1', 'b'],
        target: 't1',
        version: '1',
      },
    );
    const defaults = query([]);
    assert.equal(defaults.rm, undefined, 'rm is only sent to opt out');
    assert.equal(query(['--rm=false']).rm, '0');
    assert.deepEqual(buildArgs(['A=1', 'B=', 'C'], {}), { A: '1', B: '', C: null });
    assert.throws(() => query(['-t', 'Bad:Tag']), /invalid reference format/);
  });
});

class Sink extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.text += chunk.toString();
    cb();
  }
}

/** What a terminal shows after the escape sequences are applied (cursor up, clear below). */
function screen(raw: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let i = 0;
  while (i < raw.length) {
    const esc = /^\x1b\[(\d*)([A-Za-z])/.exec(raw.slice(i));
    if (esc) {
      const n = Number(esc[1] || 1);
      if (esc[2] === 'A') row = Math.max(0, row - n);
      if (esc[2] === 'J') {
        lines.length = row + 1;
        lines[row] = '';
      }
      i += esc[0].length;
      continue;
    }
    const ch = raw[i++];
    if (ch === '\n') {
      row++;
      if (lines.length <= row) lines.push('');
    } else if (ch === '\r') {
      lines[row] = '';
    } else {
      lines[row] += ch;
    }
  }
  return lines.filter((l, idx) => !(idx === lines.length - 1 && l === ''));
}

describe('build progress display', () => {
  const messages = [
    { stream: 'Step 1/3 : FROM bb' },
    { stream: '\n' },
    { stream: ' ---> 6caa8d855dc5\n' },
    { stream: 'Step 2/3 : COPY . /src\n' },
    { stream: ' ---> Using cache\n' },
    { stream: ' ---> 1111aaaa2222\n' },
    { stream: 'Step 3/3 : RUN make\n' },
    { stream: ' ---> Running in 91fdc87f84e1\n' },
    { stream: 'compiling\n' },
    { stream: 'linking\n' },
    { stream: 'Removing intermediate container 91fdc87f84e1\n' },
    { stream: ' ---> 04c0fd6d8651\n' },
    { aux: { ID: 'sha256:04c0fd6d8651aaaa' } },
    { stream: 'Successfully built 04c0fd6d8651\n' },
    { stream: 'Successfully tagged app:1\n' },
  ];

  it('tty: one line per step, CACHED for cache hits, then the result', () => {
    let t = 0;
    const out = new Sink();
    const d = new BuildDisplay(out, { mode: 'tty', columns: 60, now: () => (t += 100), tickMs: 0 });
    for (const m of messages) d.handle(m);
    d.finish();
    assert.equal(d.imageId, 'sha256:04c0fd6d8651aaaa');
    const shown = screen(out.text);
    assert.equal(shown.length, 5, shown.join('\n'));
    assert.match(shown[0], /^\[1\/3\] FROM bb {2}\d+\.\ds$/);
    assert.equal(shown[1], '[2/3] COPY . /src  CACHED');
    assert.match(shown[2], /^\[3\/3\] RUN make {2}\d+\.\ds$/);
    assert.deepEqual(shown.slice(3), ['Successfully built 04c0fd6d8651', 'Successfully tagged app:1']);
  });

  it('tty: a failing step shows its output and the exit status is errorDetail.code', () => {
    const out = new Sink();
    const d = new BuildDisplay(out, { mode: 'tty', columns: 80, tickMs: 0 });
    d.handle({ stream: 'Step 1/2 : FROM bb\n' });
    d.handle({ stream: ' ---> 6caa8d855dc5\n' });
    d.handle({ stream: 'Step 2/2 : RUN echo oops; exit 3\n' });
    d.handle({ stream: ' ---> Running in 91fdc87f84e1\n' });
    d.handle({ stream: 'oops\n' });
    assert.throws(
      () =>
        d.handle({
          errorDetail: {
            code: 3,
            message: "The command '/bin/sh -c echo oops; exit 3' returned a non-zero code: 3",
          },
          error: '…',
        }),
      (err: unknown) =>
        err instanceof CliError && err.exitCode === 3 && /returned a non-zero code: 3/.test(err.message),
    );
    const shown = screen(out.text);
    assert.match(shown[1], /^\[2\/2\] RUN echo oops; exit 3 {2}ERROR \d+\.\ds$/);
    assert.deepEqual(shown.slice(2), ['------', ' > [2/2] RUN echo oops; exit 3:', 'oops', '------']);
  });

  it('plain: the daemon text verbatim; quiet: nothing but the id', () => {
    const plain = new Sink();
    const p = new BuildDisplay(plain, { mode: 'plain' });
    for (const m of messages) p.handle(m);
    p.finish();
    assert.equal(plain.text, messages.map((m) => ('stream' in m ? m.stream : '')).join(''));
    const quiet = new Sink();
    const q = new BuildDisplay(quiet, { mode: 'quiet' });
    for (const m of messages) q.handle(m);
    q.finish();
    assert.equal(quiet.text, '');
    assert.equal(q.imageId, 'sha256:04c0fd6d8651aaaa');
    assert.throws(
      () => q.handle({ error: 'boom' }),
      (err: unknown) => err instanceof CliError && err.exitCode === 1,
    );
  });
});
