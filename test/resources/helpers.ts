import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Helpers shared by the resource, security and ACL integration tests. */

/** A container's cgroup file on the host (v1: per-controller hierarchy; v2: the one tree). */
export function cgroupFile(controller: string, id: string, file: string): string {
  const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');
  return v2 ? `/sys/fs/cgroup/strata/${id}/${file}` : `/sys/fs/cgroup/${controller}/strata/${id}/${file}`;
}

export function readCgroup(controller: string, id: string, file: string): string {
  return fs.readFileSync(cgroupFile(controller, id, file), 'utf8').trim();
}

export const isCgroupV2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers');

export async function waitFor<T>(
  what: string,
  fn: () => T | null | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A loop block device over a small sparse file (block-device tests; the VM's own disk is not readable). */
export function createLoopDevice(dir: string, sizeMb = 16): { device: string; detach: () => void } {
  const file = path.join(dir, `loop-${process.pid}-${Date.now()}.img`);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeMb * 1024 * 1024);
  const device = execFileSync('losetup', ['-f', '--show', file], { encoding: 'utf8' }).trim();
  return {
    device,
    detach: () => {
      try {
        execFileSync('losetup', ['-d', device]);
      } catch {
        // already detached
      }
      fs.rmSync(file, { force: true });
    },
  };
}

/** The host's hard limit for a resource, from /proc/self/limits (null for unlimited). */
export function hostHardLimit(label: string): number | null {
  const line = fs
    .readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(label));
  const hard = line?.slice(label.length).trim().split(/\s+/)[1];
  return hard === undefined || hard === 'unlimited' ? null : Number(hard);
}

interface DockerRunner {
  docker(args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/**
 * `docker run` whose output comes from the container's log (`run -d`, `wait`, `logs`) rather than the
 * attach stream: these tests are about what happens inside the container, and the log cannot lose
 * output of a process that exits within milliseconds. A create/start refusal is returned as is
 * (exit 125 and the daemon's message).
 */
export async function runLogged(
  d: DockerRunner,
  flags: string[],
  command: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const started = await d.docker(['run', '-d', ...flags, 'bb', ...command]);
  if (started.code !== 0) return started;
  const id = started.stdout.trim();
  try {
    const waited = await d.docker(['wait', id]);
    const logs = await d.docker(['logs', id]);
    return { code: Number(waited.stdout.trim()), stdout: logs.stdout, stderr: logs.stderr };
  } finally {
    await d.docker(['rm', '-f', id]);
  }
}

/**
 * useradd/userdel/groupadd with retries: they refuse to run while another process holds the
 * /etc/passwd lock (test files running side by side add users too).
 */
export async function accountCommand(cmd: string, args: string[]): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      execFileSync(cmd, args, { stdio: 'pipe' });
      return;
    } catch (err) {
      const text = String((err as { stderr?: Buffer }).stderr ?? err);
      if (attempt >= 20 || !/lock|try again/i.test(text)) throw err;
      await sleep(250);
    }
  }
}
