import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { REPO_ROOT, type RunOptions, type RunResult, type TestDaemon } from '../helpers/daemon.js';

/** Helpers for driving the `strata` command in integration tests. */

export async function strataOk(d: TestDaemon, args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await d.strata(args, opts);
  if (r.code !== 0) {
    throw new Error(
      `strata ${args.join(' ')} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}\ndaemon log tail:\n${d.log().slice(-2000)}`,
    );
  }
  return r.stdout;
}

export function describeResult(r: RunResult): string {
  return `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

/** Retries `check` until it stops throwing (containers start asynchronously). */
export async function eventually<T>(check: () => Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

export function busyboxTar(): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(REPO_ROOT, 'scripts', 'busybox-rootfs.sh')], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`busybox-rootfs.sh exited ${code}`)),
    );
  });
}

/** Imports the busybox test image through `strata import` itself. */
export async function importBusyboxWithStrata(d: TestDaemon, tag = 'bb:latest'): Promise<string> {
  return (await strataOk(d, ['import', '-c', 'CMD ["sh"]', '-', tag], { input: await busyboxTar() })).trim();
}
