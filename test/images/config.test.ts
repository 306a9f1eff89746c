import * as assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgument } from '../../src/common/errors.js';
import {
  applyChanges,
  fullContainerConfig,
  parseGoDuration,
  parseImageConfig,
  parsePortSpec,
} from '../../src/images/config.js';

describe('applyChanges (--change)', () => {
  it('CMD and ENTRYPOINT in JSON and shell form', () => {
    assert.deepEqual(applyChanges({}, ['CMD ["sh"]']).Cmd, ['sh']);
    assert.deepEqual(applyChanges({}, ['CMD echo hi there']).Cmd, ['/bin/sh', '-c', 'echo hi there']);
    assert.deepEqual(applyChanges({}, ['cmd ["a", "b c"]']).Cmd, ['a', 'b c']);
    assert.deepEqual(applyChanges({}, ['ENTRYPOINT ["/bin/app","--flag"]']).Entrypoint, [
      '/bin/app',
      '--flag',
    ]);
    assert.deepEqual(applyChanges({}, ['ENTRYPOINT exec app']).Entrypoint, ['/bin/sh', '-c', 'exec app']);
    // A malformed JSON array is the shell form, as in a Dockerfile.
    assert.deepEqual(applyChanges({}, ['CMD [not json']).Cmd, ['/bin/sh', '-c', '[not json']);
  });

  it('ENTRYPOINT resets an inherited CMD unless CMD is set too', () => {
    assert.equal(applyChanges({ Cmd: ['old'] }, ['ENTRYPOINT ["x"]']).Cmd, null);
    const both = applyChanges({ Cmd: ['old'] }, ['CMD ["new"]', 'ENTRYPOINT ["x"]']);
    assert.deepEqual(both.Cmd, ['new']);
  });

  it('ENV in both forms, with quotes, replacement and substitution', () => {
    const cfg = applyChanges({ Env: ['PATH=/bin', 'A=old'] }, [
      'ENV A=1 B="two words" C=\'$NOPE\'',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Dockerfile syntax, not a JS template
      'ENV D ${A}-and $B',
      'ENV PATH=/usr/local/bin:$PATH',
    ]);
    assert.deepEqual(cfg.Env, [
      'PATH=/usr/local/bin:/bin',
      'A=1',
      'B=two words',
      'C=$NOPE',
      'D=1-and two words',
    ]);
    assert.throws(() => applyChanges({}, ['ENV']), InvalidArgument);
    assert.throws(() => applyChanges({}, ['ENV A=1 B']), /can't find =/);
    assert.throws(() => applyChanges({}, ['ENV onlykey']), /must have two arguments/);
  });

  it('LABEL, EXPOSE, USER, WORKDIR, VOLUME, STOPSIGNAL, ONBUILD', () => {
    const cfg = applyChanges({ WorkingDir: '/app' }, [
      'LABEL a=b "with space"="v 1"',
      'EXPOSE 80 53/udp 8000-8001',
      'USER 1000:1000',
      'WORKDIR sub',
      'VOLUME ["/data", "/logs"]',
      'VOLUME /cache',
      'STOPSIGNAL SIGINT',
      'ONBUILD RUN echo hi',
    ]);
    assert.deepEqual(cfg.Labels, { a: 'b', 'with space': 'v 1' });
    assert.deepEqual(Object.keys(cfg.ExposedPorts ?? {}).sort(), [
      '53/udp',
      '80/tcp',
      '8000/tcp',
      '8001/tcp',
    ]);
    assert.equal(cfg.User, '1000:1000');
    assert.equal(cfg.WorkingDir, '/app/sub');
    assert.deepEqual(Object.keys(cfg.Volumes ?? {}).sort(), ['/cache', '/data', '/logs']);
    assert.equal(cfg.StopSignal, 'SIGINT');
    assert.deepEqual(cfg.OnBuild, ['RUN echo hi']);
    assert.equal(applyChanges({}, ['WORKDIR /abs/../x']).WorkingDir, '/x');
    assert.equal(applyChanges({}, ['STOPSIGNAL 9']).StopSignal, '9');
  });

  it('HEALTHCHECK', () => {
    const cfg = applyChanges({}, ['HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/']);
    assert.deepEqual(cfg.Healthcheck, {
      Interval: 5_000_000_000,
      Retries: 3,
      Test: ['CMD-SHELL', 'curl -f http://localhost/'],
    });
    assert.deepEqual(applyChanges({}, ['HEALTHCHECK CMD ["true"]']).Healthcheck?.Test, ['CMD', 'true']);
    assert.deepEqual(applyChanges({}, ['HEALTHCHECK NONE']).Healthcheck, { Test: ['NONE'] });
  });

  it('refuses instructions that are not valid changes, naming them', () => {
    for (const [change, name] of [
      ['RUN echo hi', 'run'],
      ['FROM busybox', 'from'],
      ['COPY a b', 'copy'],
      ['ADD a b', 'add'],
      ['MAINTAINER me', 'maintainer'],
      ['BOGUS x', 'bogus'],
    ]) {
      assert.throws(
        () => applyChanges({}, [change]),
        (err: unknown) =>
          err instanceof InvalidArgument && err.message === `${name} is not a valid change command`,
      );
    }
  });

  it('refuses bad arguments', () => {
    assert.throws(() => applyChanges({}, ['EXPOSE abc']), /Invalid containerPort/);
    assert.throws(() => applyChanges({}, ['EXPOSE 80/xyz']), /Invalid proto/);
    assert.throws(() => applyChanges({}, ['STOPSIGNAL SIGNOPE']), /Invalid signal/);
    assert.throws(() => applyChanges({}, ['USER a b']), /exactly one argument/);
    assert.throws(() => applyChanges({}, ['ONBUILD ONBUILD RUN x']), /Chaining ONBUILD/);
    assert.throws(() => applyChanges({}, ['ONBUILD FROM x']), /isn't allowed as an ONBUILD trigger/);
    assert.throws(() => applyChanges({}, ['ENV A="unterminated']), /matching/);
    assert.throws(() => applyChanges({}, ['HEALTHCHECK --interval=xyz CMD true']), /invalid duration/);
  });

  it('does not modify the base config', () => {
    const base = { Env: ['A=1'], Labels: { x: 'y' } };
    applyChanges(base, ['ENV A=2', 'LABEL x=z']);
    assert.deepEqual(base, { Env: ['A=1'], Labels: { x: 'y' } });
  });
});

describe('config helpers', () => {
  it('parses port specs and Go durations', () => {
    assert.deepEqual(parsePortSpec('80'), ['80/tcp']);
    assert.deepEqual(parsePortSpec('1-2/UDP'), ['1/udp', '2/udp']);
    assert.equal(parseGoDuration('1m30s'), 90e9);
    assert.equal(parseGoDuration('250ms'), 250e6);
    assert.equal(parseGoDuration('1.5h'), 5400e9);
    assert.throws(() => parseGoDuration('10'), InvalidArgument);
  });

  it('validates image configs and keeps unknown fields', () => {
    const config = parseImageConfig(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: 'sh', Env: ['A=1'] },
        rootfs: { type: 'layers', diff_ids: [`sha256:${'b'.repeat(64)}`] },
        extra_field: 1,
      }),
    );
    assert.deepEqual(config.config?.Cmd, ['sh']);
    assert.equal((config as Record<string, unknown>).extra_field, 1);
    assert.throws(
      () => parseImageConfig('{"rootfs":{"type":"layers","diff_ids":["nope"]}}'),
      /invalid image config/,
    );
    assert.throws(() => parseImageConfig('not json'), InvalidArgument);
  });

  it('prints every Config field dockerd prints', () => {
    const full = fullContainerConfig({ Cmd: ['sh'] });
    assert.deepEqual(Object.keys(full), [
      'Hostname',
      'Domainname',
      'User',
      'AttachStdin',
      'AttachStdout',
      'AttachStderr',
      'Tty',
      'OpenStdin',
      'StdinOnce',
      'Env',
      'Cmd',
      'Image',
      'Volumes',
      'WorkingDir',
      'Entrypoint',
      'OnBuild',
      'Labels',
    ]);
    assert.equal(full.Env, null);
  });
});
