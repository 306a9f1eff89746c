import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SECCOMP_BPF_ANNOTATION, SeccompFilterCache } from '../../src/runtime/seccomp-cache.js';

describe('compiled seccomp filters', () => {
  let tmp = '';
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-seccomp-cache-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const specWith = (seccomp: unknown) =>
    ({ linux: { seccomp } as Record<string, unknown> }) as {
      linux: Record<string, unknown>;
      annotations?: Record<string, string>;
    };
  const profileA = {
    defaultAction: 'SCMP_ACT_ERRNO',
    syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }],
  };
  const profileB = { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [] };

  test('the filter crun compiled for one container is passed to the next with the same profile', () => {
    const cache = new SeccompFilterCache();
    const first = specWith(profileA);
    const key = cache.prepare(first);
    assert.ok(key, 'unknown profile: the runtime compiles it');
    assert.equal(first.annotations, undefined);
    const stateDir = path.join(tmp, 'c1');
    fs.mkdirSync(stateDir);
    const bpf = Buffer.from('0123456789abcdef'); // two 8-byte instructions
    fs.writeFileSync(path.join(stateDir, 'seccomp.bpf'), bpf);
    cache.learn(stateDir, key);

    const second = specWith(JSON.parse(JSON.stringify(profileA)));
    assert.equal(cache.prepare(second), null, 'known profile: nothing to learn');
    assert.equal(second.annotations?.[SECCOMP_BPF_ANNOTATION], bpf.toString('base64'));
    assert.deepEqual(second.linux.seccomp, profileA, 'the spec still says what the filter is');

    const other = specWith(profileB);
    assert.ok(cache.prepare(other), 'another profile is compiled on its own');
    assert.equal(other.annotations, undefined);
  });

  test('no seccomp, a torn filter file or a caller-set annotation are left alone', () => {
    const cache = new SeccompFilterCache();
    assert.equal(cache.prepare({ linux: {} }), null);
    const spec = specWith(profileA);
    const key = cache.prepare(spec);
    const stateDir = path.join(tmp, 'c2');
    fs.mkdirSync(stateDir);
    fs.writeFileSync(path.join(stateDir, 'seccomp.bpf'), Buffer.alloc(7));
    cache.learn(stateDir, key);
    const again = specWith(profileA);
    assert.ok(cache.prepare(again), 'a 7-byte file is not a filter');
    assert.equal(again.annotations, undefined);
    const preset = { ...specWith(profileA), annotations: { [SECCOMP_BPF_ANNOTATION]: 'AAAA' } };
    assert.equal(cache.prepare(preset), null);
    assert.equal(preset.annotations[SECCOMP_BPF_ANNOTATION], 'AAAA');
  });
});
