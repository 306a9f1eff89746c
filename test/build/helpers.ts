import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, type RunOptions, type RunResult, type TestDaemon } from '../helpers/daemon.js';

/** Helpers for the build integration tests: fixture contexts, builds through the docker CLI. */
export const FIXTURES = path.join(REPO_ROOT, 'test', 'build', 'fixtures');

const scratchDirs: string[] = [];

/** A private copy of `test/build/fixtures/<name>` (tests add generated files to it). */
export function fixtureContext(name: string): string {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `strata-build-${name}-`));
  scratchDirs.push(base);
  const dir = path.join(base, name);
  fs.cpSync(path.join(FIXTURES, name), dir, { recursive: true, preserveTimestamps: true });
  return dir;
}

/** An empty temporary context directory. */
export function emptyContext(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-build-ctx-'));
  scratchDirs.push(dir);
  return dir;
}

export function removeContexts(): void {
  for (const dir of scratchDirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export function build(d: TestDaemon, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return d.docker(['build', ...args], { timeoutMs: 180_000, ...opts });
}

/** Builds and returns the output and the image id the daemon reported (`Successfully built`). */
export async function buildOk(
  d: TestDaemon,
  args: string[],
  opts: RunOptions = {},
): Promise<{ stdout: string; id: string }> {
  const r = await build(d, args, opts);
  assert.equal(r.code, 0, `docker build ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`);
  const m = /Successfully built ([0-9a-f]{12})/.exec(r.stdout);
  assert.ok(m, `no image id in:\n${r.stdout}`);
  return { stdout: r.stdout, id: m[1] };
}

/**
 * Runs a shell script in a fresh container of `image` and returns its output (trimmed), read from
 * the container log after it exited: `docker run` of a very short process occasionally loses the end
 * of its attached output (a container-attach race outside the build code), the log never does.
 */
export function sh(d: TestDaemon, image: string, script: string): Promise<string> {
  return runOutput(d, ['--entrypoint', '/bin/sh', image, '-c', script]);
}

/** `docker run <args>` (image and command included) → its output, from the log; exit code checked. */
export async function runOutput(d: TestDaemon, args: string[]): Promise<string> {
  const id = await d.dockerOk(['run', '-d', '--network', 'none', ...args]);
  try {
    const code = await d.dockerOk(['wait', id]);
    const logs = await d.docker(['logs', id]);
    assert.equal(code, '0', `docker run ${args.join(' ')} failed:\n${logs.stdout}${logs.stderr}`);
    return logs.stdout.trim();
  } finally {
    await d.docker(['rm', '-f', id]);
  }
}

export async function inspectConfig(d: TestDaemon, image: string): Promise<Record<string, unknown>> {
  return JSON.parse(await d.dockerOk(['image', 'inspect', '-f', '{{json .Config}}', image]));
}

/** Mounts below `dir` (nothing of a build may stay mounted). */
export function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m?.startsWith(dir) ?? false);
}
