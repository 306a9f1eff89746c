import { execFile } from 'node:child_process';
import { SystemError } from '../common/errors.js';

/**
 * Thin wrapper over the OCI runtime binary (crun or runc) for the verbs the daemon calls directly;
 * `create` and `exec` go through conmon (conmon.ts). Each daemon has its own state root (`--root`), so
 * two daemons never see each other's containers and a podman on the same host is never touched.
 */
export interface RuntimeState {
  id: string;
  pid: number;
  status: 'creating' | 'created' | 'running' | 'stopped' | 'paused';
  bundle: string;
}

export class OciRuntime {
  constructor(
    readonly name: 'crun' | 'runc',
    readonly binary: string,
    readonly stateRoot: string,
  ) {}

  private exec(args: string[], timeoutMs = 30_000): Promise<string> {
    return new Promise((resolve, reject) => {
      execFile(
        this.binary,
        ['--root', this.stateRoot, ...args],
        { timeout: timeoutMs },
        (err, stdout, stderr) => {
          if (err) {
            const text = (stderr || stdout || err.message).trim();
            reject(new SystemError(cleanRuntimeMessage(text)));
            return;
          }
          resolve(stdout);
        },
      );
    });
  }

  start(id: string): Promise<void> {
    return this.exec(['start', id]).then(() => undefined);
  }

  kill(id: string, signal: number | string, all = false): Promise<void> {
    return this.exec(['kill', ...(all ? ['--all'] : []), id, String(signal)]).then(() => undefined);
  }

  pause(id: string): Promise<void> {
    return this.exec(['pause', id]).then(() => undefined);
  }

  resume(id: string): Promise<void> {
    return this.exec(['resume', id]).then(() => undefined);
  }

  async delete(id: string, force = false): Promise<void> {
    try {
      await this.exec(['delete', ...(force ? ['--force'] : []), id]);
    } catch (err) {
      // Already gone is what we wanted.
      if (/does not exist|not found|No such file/i.test((err as Error).message)) return;
      throw err;
    }
  }

  async state(id: string): Promise<RuntimeState | null> {
    try {
      const out = await this.exec(['state', id]);
      const parsed = JSON.parse(out) as {
        id: string;
        pid: number;
        status: RuntimeState['status'];
        bundle: string;
      };
      return { id: parsed.id, pid: parsed.pid, status: parsed.status, bundle: parsed.bundle };
    } catch {
      return null;
    }
  }

  async update(id: string, resourcesFile: string): Promise<void> {
    await this.exec(['update', '--resources', resourcesFile, id]);
  }
}

/** Runtime errors come as `crun: <msg>` or JSON log lines; keep the message a user can act on. */
export function cleanRuntimeMessage(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .map((l) => {
      if (l.startsWith('{')) {
        try {
          const j = JSON.parse(l) as { msg?: string };
          if (j.msg) return j.msg;
        } catch {
          // not JSON
        }
      }
      return l;
    });
  return (lines.at(-1) ?? text).replace(/^(crun|runc): /, '');
}
