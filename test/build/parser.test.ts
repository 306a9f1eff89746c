// biome-ignore-all lint/suspicious/noTemplateCurlyInString: Dockerfile variables are the subject of these tests
import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DockerfileParseError } from '../../src/build/errors.js';
import { parseStages, parseTrigger } from '../../src/build/instructions.js';
import {
  extractFlags,
  findHeredocMarkers,
  parseDockerfile,
  parseJsonArray,
  splitWordsKeepingQuotes,
} from '../../src/build/parser.js';

function parseError(text: string): DockerfileParseError {
  try {
    parseStages(text);
  } catch (err) {
    if (err instanceof DockerfileParseError) return err;
    throw err;
  }
  assert.fail('expected a parse error');
}

describe('parseDockerfile: lines', () => {
  it('joins continuations, drops comments inside them and keeps the first line number', () => {
    const parsed = parseDockerfile(
      'FROM bb\n# a comment\n\nRUN echo a \\\n# inside\n    && echo b\\   \n    && echo c\nCMD x # not a comment\n',
    );
    assert.equal(parsed.instructions.length, 3);
    const run = parsed.instructions[1];
    assert.equal(run.keyword, 'RUN');
    assert.equal(run.line, 4);
    assert.equal(run.rest, 'echo a     && echo b    && echo c');
    assert.equal(run.original, 'RUN echo a     && echo b    && echo c');
    assert.equal(parsed.instructions[2].rest, 'x # not a comment');
    assert.equal(parsed.instructions[2].line, 8);
  });

  it('warns about blank lines inside a continuation', () => {
    const parsed = parseDockerfile('FROM bb\nRUN a \\\n\n  b\n');
    assert.equal(parsed.instructions[1].rest, 'a   b');
    assert.match(parsed.warnings[0], /Empty continuation line/);
  });

  it('reads parser directives only at the top', () => {
    const parsed = parseDockerfile('# syntax=docker/dockerfile:1\n# escape=`\nFROM bb\nRUN a `\n b\n');
    assert.equal(parsed.syntax, 'docker/dockerfile:1');
    assert.equal(parsed.escapeToken, '`');
    assert.equal(parsed.instructions[1].rest, 'a  b');
    const late = parseDockerfile('FROM bb\n# escape=`\nRUN a `\n');
    assert.equal(late.escapeToken, '\\');
    assert.throws(() => parseDockerfile('# escape=x\nFROM bb\n'), /invalid escape token/);
    assert.throws(() => parseDockerfile('# escape=`\n# escape=\\\nFROM bb\n'), /only one escape/);
  });

  it('takes the keyword in any case, strips a BOM and CRLF', () => {
    const parsed = parseDockerfile('\uFEFFfrom bb\r\n  run  echo hi\r\n');
    assert.deepEqual(
      parsed.instructions.map((i) => [i.keyword, i.rest]),
      [
        ['FROM', 'bb'],
        ['RUN', 'echo hi'],
      ],
    );
  });

  it('reads here-documents for RUN, COPY and ADD', () => {
    const parsed = parseDockerfile(
      'FROM bb\nRUN <<EOF\necho one\n  echo two\nEOF\nCOPY <<-"A" <<B /x/\n\tliteral $X\n\tA\nb\nB\nRUN echo "<<NOT"\n',
    );
    const [, run, copy, plain] = parsed.instructions;
    assert.deepEqual(run.heredocs, [{ name: 'EOF', content: 'echo one\n  echo two\n', expand: true }]);
    assert.deepEqual(copy.heredocs, [
      { name: 'A', content: 'literal $X\n', expand: false },
      { name: 'B', content: 'b\n', expand: true },
    ]);
    assert.equal(copy.line, 6);
    assert.deepEqual(plain.heredocs, []);
    assert.throws(() => parseDockerfile('FROM bb\nRUN <<EOF\nno end\n'), /line 2: unterminated heredoc EOF/);
  });
});

describe('parser helpers', () => {
  it('extracts leading flags with quotes removed', () => {
    assert.deepEqual(extractFlags('--from=build --chown="a b" src dst'), {
      flags: ['--from=build', '--chown=a b'],
      rest: 'src dst',
    });
    assert.deepEqual(extractFlags('-- --notaflag x'), { flags: [], rest: ' --notaflag x' });
    assert.deepEqual(extractFlags('plain --x'), { flags: [], rest: 'plain --x' });
  });

  it('splits words keeping quotes for later processing', () => {
    assert.deepEqual(splitWordsKeepingQuotes('a="b c" d=e\\ f g=\'h i\'', '\\'), [
      'a="b c"',
      'd=e\\ f',
      "g='h i'",
    ]);
  });

  it('finds here-document markers only at word starts outside quotes', () => {
    assert.deepEqual(
      findHeredocMarkers('cat <<EOF >x && cat <<-\'E2\' "<<NO" a<<NO').map((m) => m.name),
      ['EOF', 'E2'],
    );
  });

  it('parses the JSON form and rejects non-string arrays', () => {
    assert.deepEqual(parseJsonArray(' ["a", "b c"] ', 1), ['a', 'b c']);
    assert.equal(parseJsonArray('[not json', 1), null);
    assert.equal(parseJsonArray('echo [x]', 1), null);
    assert.throws(() => parseJsonArray('["a", 1]', 7), /line 7: when using JSON array syntax/);
  });
});

describe('parseStages: instructions', () => {
  it('splits stages, meta ARGs and typed commands', () => {
    const df = parseStages(
      [
        'ARG BASE=bb',
        'FROM --platform=linux/amd64 ${BASE} AS Build',
        'RUN ["echo", "exec"]',
        'RUN echo shell',
        'ENV A=1 B="two words"',
        'ENV LEGACY some value',
        'LABEL x=y',
        'ARG ONE TWO=2',
        'EXPOSE 80 443/udp',
        'VOLUME ["/data", "/logs"]',
        'VOLUME /a /b',
        'USER app:app',
        'WORKDIR /srv',
        'STOPSIGNAL SIGINT',
        'HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["true"]',
        'SHELL ["/bin/sh", "-ec"]',
        'ONBUILD RUN echo triggered',
        'MAINTAINER someone',
        'FROM build',
        'COPY --from=build --chown=1:2 --chmod=600 a b /dst/',
        'ADD ["with space", "/d"]',
        'CMD echo done',
        'ENTRYPOINT ["/bin/sh"]',
        'HEALTHCHECK NONE',
      ].join('\n'),
    );
    assert.equal(df.metaArgs.length, 1);
    assert.deepEqual(df.metaArgs[0].args, [{ name: 'BASE', defaultValue: 'bb' }]);
    assert.equal(df.stages.length, 2);
    const [first, second] = df.stages;
    assert.equal(first.name, 'build');
    assert.equal(first.from.platform, 'linux/amd64');
    assert.equal(first.from.image, '${BASE}');
    const kinds = first.commands.map((c) => c.kind);
    assert.deepEqual(kinds, [
      'RUN',
      'RUN',
      'ENV',
      'ENV',
      'LABEL',
      'ARG',
      'EXPOSE',
      'VOLUME',
      'VOLUME',
      'USER',
      'WORKDIR',
      'STOPSIGNAL',
      'HEALTHCHECK',
      'SHELL',
      'ONBUILD',
      'MAINTAINER',
    ]);
    const [runExec, runShell, env, legacy] = first.commands;
    assert.deepEqual(runExec.kind === 'RUN' && runExec.exec, ['echo', 'exec']);
    assert.equal(runShell.kind === 'RUN' && runShell.exec, null);
    assert.deepEqual(env.kind === 'ENV' && env.pairs, [
      ['A', '1'],
      ['B', '"two words"'],
    ]);
    assert.deepEqual(legacy.kind === 'ENV' && legacy.pairs, [['LEGACY', 'some value']]);
    const health = first.commands[12];
    assert.deepEqual(health.kind === 'HEALTHCHECK' && health, {
      kind: 'HEALTHCHECK',
      line: 15,
      original: 'HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD ["true"]',
      test: ['CMD', 'true'],
      interval: 5e9,
      timeout: 2e9,
      retries: 4,
    });
    const onbuild = first.commands[14];
    assert.equal(onbuild.kind === 'ONBUILD' && onbuild.trigger, 'RUN echo triggered');
    const copy = second.commands[0];
    assert.ok(copy.kind === 'COPY');
    assert.deepEqual(
      [copy.from, copy.chown, copy.chmod, copy.sources, copy.dest],
      ['build', '1:2', '600', ['a', 'b'], '/dst/'],
    );
    const add = second.commands[1];
    assert.ok(add.kind === 'ADD');
    assert.deepEqual(add.sources, ['with space']);
    const none = second.commands[4];
    assert.deepEqual(none.kind === 'HEALTHCHECK' && none.test, ['NONE']);
  });

  it('names the line of every syntax error', () => {
    assert.equal(
      parseError('FROM bb\n\nFOO bar\n').message,
      'Dockerfile parse error line 3: unknown instruction: FOO',
    );
    assert.match(
      parseError('FROM bb\nCOPY --frm=x a b\n').message,
      /^Dockerfile parse error line 2: Unknown flag: frm$/,
    );
    assert.match(
      parseError('FROM bb\nRUN --mount=type=cache x\n').message,
      /line 2: the --mount option requires BuildKit/,
    );
    assert.match(parseError('FROM bb\nCMD --x=1 a\n').message, /line 2: Unknown flag: x/);
    assert.match(
      parseError('FROM bb\nCOPY onlyone\n').message,
      /line 2: COPY requires at least two arguments/,
    );
    assert.match(parseError('RUN x\n').message, /line 1: no build stage in current context/);
    assert.match(parseError('FROM a b\n').message, /line 1: FROM requires either one or three arguments/);
    assert.match(parseError('FROM a AS 1x\n').message, /line 1: invalid name for build stage/);
    assert.match(parseError('FROM a AS x\nFROM b AS X\n').message, /line 2: duplicate stage name "x"/);
    assert.match(
      parseError('FROM a\nSHELL /bin/sh\n').message,
      /line 2: SHELL requires the arguments to be in JSON form/,
    );
    assert.match(parseError('FROM a\nENV A=1 B\n').message, /line 2: Syntax error - can't find = in "B"/);
    assert.match(parseError('FROM a\nENV ONLYKEY\n').message, /line 2: ENV must have two arguments/);
    assert.match(
      parseError('FROM a\nHEALTHCHECK --interval=1x CMD true\n').message,
      /line 2: time: invalid duration/,
    );
    assert.match(
      parseError('FROM a\nHEALTHCHECK FOO\n').message,
      /line 2: Unknown type "FOO" in HEALTHCHECK/,
    );
    assert.match(
      parseError('FROM a\nHEALTHCHECK NONE x\n').message,
      /line 2: HEALTHCHECK NONE takes no arguments/,
    );
    assert.match(parseError('FROM a\nONBUILD ONBUILD RUN x\n').message, /line 2: Chaining ONBUILD/);
    assert.match(
      parseError('FROM a\nONBUILD FROM x\n').message,
      /line 2: FROM isn't allowed as an ONBUILD trigger/,
    );
    assert.match(parseError('FROM a\nONBUILD BOGUS x\n').message, /line 2: unknown instruction: BOGUS/);
    assert.match(parseError('FROM a\nWORKDIR\n').message, /line 2: WORKDIR requires exactly one argument/);
    assert.match(parseError('FROM a\nCOPY --chown a b\n').message, /line 2: Missing a value on flag: chown/);
    assert.match(parseError('FROM a\nCOPY --link=maybe a b\n').message, /line 2: expecting boolean value/);
    assert.match(parseError('FROM a\nCMD ["x", 2]\n').message, /line 2: when using JSON array syntax/);
    assert.throws(() => parseStages('# only a comment\n'), /cannot be empty/);
    assert.match(parseError('ARG X=1\n').message, /no FROM instruction/);
  });

  it('parses ONBUILD triggers stored in an image', () => {
    const trigger = parseTrigger('COPY a /b', 4);
    assert.equal(trigger.kind, 'COPY');
    assert.throws(() => parseTrigger('FROM x', 4), /line 4: FROM isn't allowed/);
  });
});
