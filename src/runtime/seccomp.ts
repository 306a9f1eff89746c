import * as os from 'node:os';
import { z } from 'zod';
import { InvalidArgument } from '../common/errors.js';
import { DEFAULT_SECCOMP_PROFILE } from './seccomp-default.js';

/**
 * Seccomp profiles: Docker's profile format (rules with `includes`/`excludes` conditions on
 * capabilities, architectures and kernel version) reduced to the OCI `linux.seccomp` object for one
 * container, whose capability set decides which conditional rules apply. `--security-opt
 * seccomp=unconfined` gives no filter; `seccomp=<file>` arrives as the file's JSON (the docker CLI
 * reads the file and sends its content); either the Docker or the plain OCI format is accepted.
 */
const argSchema = z.object({
  index: z.number().int().min(0).max(5),
  value: z.number(),
  valueTwo: z.number().optional(),
  op: z.enum([
    'SCMP_CMP_NE',
    'SCMP_CMP_LT',
    'SCMP_CMP_LE',
    'SCMP_CMP_EQ',
    'SCMP_CMP_GE',
    'SCMP_CMP_GT',
    'SCMP_CMP_MASKED_EQ',
  ]),
});

const filterSchema = z
  .object({
    caps: z.array(z.string()).optional(),
    arches: z.array(z.string()).optional(),
    minKernel: z.string().optional(),
  })
  .loose();

const actionSchema = z.enum([
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
]);

const ruleSchema = z
  .object({
    name: z.string().optional(),
    names: z.array(z.string()).optional(),
    action: actionSchema,
    errnoRet: z.number().int().optional(),
    args: z.array(argSchema).nullish(),
    includes: filterSchema.optional(),
    excludes: filterSchema.optional(),
    comment: z.string().optional(),
  })
  .loose();

export const seccompProfileSchema = z
  .object({
    defaultAction: actionSchema,
    defaultErrnoRet: z.number().int().optional(),
    architectures: z.array(z.string()).nullish(),
    archMap: z
      .array(z.object({ architecture: z.string(), subArchitectures: z.array(z.string()).nullish() }))
      .nullish(),
    syscalls: z.array(ruleSchema).nullish(),
    flags: z.array(z.string()).nullish(),
  })
  .loose();

export type SeccompProfile = z.infer<typeof seccompProfileSchema>;
export type SeccompRule = z.infer<typeof ruleSchema>;

export interface OciSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures: string[];
  flags?: string[];
  syscalls: { names: string[]; action: string; errnoRet?: number; args?: z.infer<typeof argSchema>[] }[];
}

/** Node's `process.arch` → the Go names Docker profiles use in `arches`. */
function goArch(arch: string = process.arch): string {
  const map: Record<string, string> = {
    x64: 'amd64',
    ia32: 'x86',
    arm64: 'arm64',
    arm: 'arm',
    ppc64: 'ppc64le',
    s390x: 's390x',
    riscv64: 'riscv64',
  };
  return map[arch] ?? arch;
}

const NATIVE_SCMP_ARCH: Record<string, string> = {
  amd64: 'SCMP_ARCH_X86_64',
  x86: 'SCMP_ARCH_X86',
  arm64: 'SCMP_ARCH_AARCH64',
  arm: 'SCMP_ARCH_ARM',
  ppc64le: 'SCMP_ARCH_PPC64LE',
  s390x: 'SCMP_ARCH_S390X',
  riscv64: 'SCMP_ARCH_RISCV64',
};

function kernelAtLeast(min: string, release = os.release()): boolean {
  const have = release.split(/[.-]/).slice(0, 2).map(Number);
  const want = min.split('.').map(Number);
  for (let i = 0; i < 2; i++) {
    if ((have[i] ?? 0) !== (want[i] ?? 0)) return (have[i] ?? 0) > (want[i] ?? 0);
  }
  return true;
}

/** Parses a profile given as JSON text (the docker CLI sends the file's content). */
export function parseSeccompProfile(json: string): SeccompProfile {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (err) {
    throw new InvalidArgument(`decoding seccomp profile failed: ${(err as Error).message}`);
  }
  const parsed = seccompProfileSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new InvalidArgument(
      `invalid seccomp profile${issue?.path.length ? ` at ${issue.path.join('.')}` : ''}: ${issue?.message ?? 'invalid'}`,
    );
  }
  for (const rule of parsed.data.syscalls ?? []) {
    if (rule.name && rule.names?.length)
      throw new InvalidArgument("invalid seccomp profile: use either 'name' or 'names', not both");
  }
  return parsed.data;
}

/**
 * The OCI seccomp object for a container whose bounding set is `capabilities`. Rules whose `includes`
 * are not all met, or any of whose `excludes` match, are left out (Docker's semantics).
 */
export function buildOciSeccomp(
  profile: SeccompProfile,
  capabilities: readonly string[],
  arch: string = goArch(),
): OciSeccomp {
  const caps = new Set(capabilities);
  const native = NATIVE_SCMP_ARCH[arch];
  let architectures: string[] = profile.architectures ?? [];
  if (architectures.length === 0 && profile.archMap) {
    const entry = profile.archMap.find((a) => a.architecture === native);
    if (entry) architectures = [entry.architecture, ...(entry.subArchitectures ?? [])];
  }
  const applies = (rule: SeccompRule): boolean => {
    const inc = rule.includes;
    if (inc?.caps?.some((c) => !caps.has(c))) return false;
    if (inc?.arches?.length && !inc.arches.includes(arch)) return false;
    if (inc?.minKernel && !kernelAtLeast(inc.minKernel)) return false;
    const exc = rule.excludes;
    if (exc?.caps?.some((c) => caps.has(c))) return false;
    if (exc?.arches?.includes(arch)) return false;
    if (exc?.minKernel && kernelAtLeast(exc.minKernel)) return false;
    return true;
  };
  const syscalls: OciSeccomp['syscalls'] = [];
  for (const rule of profile.syscalls ?? []) {
    if (!applies(rule)) continue;
    const names = rule.names ?? (rule.name ? [rule.name] : []);
    if (names.length === 0) continue;
    syscalls.push({
      names,
      action: rule.action,
      ...(rule.errnoRet !== undefined ? { errnoRet: rule.errnoRet } : {}),
      ...(rule.args && rule.args.length > 0 ? { args: rule.args } : {}),
    });
  }
  return {
    defaultAction: profile.defaultAction,
    ...(profile.defaultErrnoRet !== undefined ? { defaultErrnoRet: profile.defaultErrnoRet } : {}),
    architectures,
    ...(profile.flags?.length ? { flags: profile.flags } : {}),
    syscalls,
  };
}

/** What `--security-opt seccomp=…` asked for. */
export type SeccompChoice =
  | { kind: 'default' }
  | { kind: 'unconfined' }
  | { kind: 'custom'; profile: SeccompProfile };

export function seccompChoice(securityOpt: readonly string[]): SeccompChoice {
  let choice: SeccompChoice = { kind: 'default' };
  for (const opt of securityOpt) {
    const m = /^seccomp[=:](.*)$/s.exec(opt);
    if (!m) continue;
    const value = m[1].trim();
    if (value === 'unconfined') choice = { kind: 'unconfined' };
    else if (value === 'builtin' || value === '') choice = { kind: 'default' };
    else choice = { kind: 'custom', profile: parseSeccompProfile(value) };
  }
  return choice;
}

/** The OCI seccomp for a container, or null for none (unconfined, or privileged as in Docker). */
export function containerSeccomp(
  securityOpt: readonly string[],
  privileged: boolean,
  capabilities: readonly string[],
  daemonDefault: SeccompProfile | null = DEFAULT_SECCOMP_PROFILE,
): OciSeccomp | null {
  const choice = seccompChoice(securityOpt);
  if (choice.kind === 'unconfined') return null;
  if (choice.kind === 'custom') return buildOciSeccomp(choice.profile, capabilities);
  if (privileged || daemonDefault === null) return null;
  return buildOciSeccomp(daemonDefault, capabilities);
}
