import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildOciSeccomp, containerSeccomp, parseSeccompProfile } from '../../src/runtime/seccomp.js';
import { DEFAULT_SECCOMP_PROFILE } from '../../src/runtime/seccomp-default.js';
import { DEFAULT_CAPABILITIES } from '../../src/runtime/spec.js';

function allowedNames(caps: string[]): Set<string> {
  const oci = buildOciSeccomp(DEFAULT_SECCOMP_PROFILE, caps, 'amd64');
  return new Set(
    oci.syscalls.filter((s) => s.action === 'SCMP_ACT_ALLOW' && !s.args).flatMap((s) => s.names),
  );
}

describe('default seccomp profile', () => {
  test('an allowlist for x86_64 with its 32-bit ABIs, EPERM by default', () => {
    const oci = buildOciSeccomp(DEFAULT_SECCOMP_PROFILE, DEFAULT_CAPABILITIES, 'amd64');
    assert.equal(oci.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(oci.defaultErrnoRet, 1);
    assert.deepEqual(oci.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    const allowed = allowedNames(DEFAULT_CAPABILITIES);
    for (const name of ['read', 'openat', 'execve', 'futex', 'arch_prctl', 'chroot', 'ptrace'])
      assert.ok(allowed.has(name), name);
  });

  test('host-wide calls are blocked unless their capability is granted', () => {
    const plain = allowedNames(DEFAULT_CAPABILITIES);
    for (const name of [
      'mount',
      'umount2',
      'unshare',
      'setns',
      'init_module',
      'finit_module',
      'reboot',
      'kexec_load',
      'add_key',
      'keyctl',
      'bpf',
      'swapon',
      'settimeofday',
      'open_by_handle_at',
      'clone',
      'io_uring_setup',
      'userfaultfd',
    ]) {
      assert.ok(!plain.has(name), `${name} must not be allowed by default`);
    }
    const admin = allowedNames([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN']);
    for (const name of ['mount', 'umount2', 'unshare', 'setns', 'clone', 'clone3'])
      assert.ok(admin.has(name), name);
    assert.ok(allowedNames([...DEFAULT_CAPABILITIES, 'CAP_SYS_MODULE']).has('init_module'));
    assert.ok(!allowedNames([...DEFAULT_CAPABILITIES, 'CAP_SYS_MODULE']).has('mount'));
    // Without the capability the filter keeps conditional rules: clone without namespace flags only.
    const oci = buildOciSeccomp(DEFAULT_SECCOMP_PROFILE, DEFAULT_CAPABILITIES, 'amd64');
    const clone = oci.syscalls.find((s) => s.names.includes('clone'));
    assert.deepEqual(clone?.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
    assert.equal(oci.syscalls.find((s) => s.names.includes('clone3'))?.errnoRet, 38);
  });

  test('arch-specific rules follow the architecture', () => {
    assert.ok(!allowedNames(DEFAULT_CAPABILITIES).has('cacheflush'));
    const arm = buildOciSeccomp(DEFAULT_SECCOMP_PROFILE, DEFAULT_CAPABILITIES, 'arm64');
    assert.deepEqual(arm.architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    assert.ok(arm.syscalls.some((s) => s.names.includes('cacheflush')));
    assert.ok(!arm.syscalls.some((s) => s.names.includes('arch_prctl')));
  });
});

describe('security-opt seccomp', () => {
  test('unconfined, privileged and custom profiles', () => {
    assert.equal(containerSeccomp(['seccomp=unconfined'], false, DEFAULT_CAPABILITIES), null);
    assert.equal(containerSeccomp([], true, DEFAULT_CAPABILITIES), null);
    const custom = JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' },
        { name: 'chmod', action: 'SCMP_ACT_ERRNO' },
      ],
    });
    const oci = containerSeccomp([`seccomp=${custom}`], true, DEFAULT_CAPABILITIES);
    assert.equal(oci?.defaultAction, 'SCMP_ACT_ALLOW');
    assert.deepEqual(
      oci?.syscalls.map((s) => s.names),
      [['mkdir', 'mkdirat'], ['chmod']],
    );
  });

  test('malformed profiles are refused with the reason', () => {
    assert.throws(() => parseSeccompProfile('{'), /decoding seccomp profile failed/);
    assert.throws(
      () => parseSeccompProfile('{"defaultAction":"SCMP_ACT_NOPE"}'),
      /invalid seccomp profile at defaultAction/,
    );
  });
});
