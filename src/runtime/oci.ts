import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isErrnoCode, SystemError } from '../common/errors.js';
import { SeccompFilterCache } from './seccomp-cache.js';

/**
 * Thin wrapper over the OCI runtime binary (crun or runc) for the verbs the daemon calls directly;
 * `create` and `exec` go through conmon (conmon.ts). Each daemon has its own state root (`--root`), so
 * two daemons never see each other's containers and a podman on the same host is never touched.
 *
 * The two verbs of every container's life, `start` and the `delete` after its exit, are done without
 * spawning crun when crun's state allows it (a spawn costs 10–50 ms here, far more under load): crun's
 * `start` is one byte written to `<state>/<id>/exec.fifo`, and deleting a stopped container is removing
 * its cgroups and its state directory. Anything unexpected (runc, no fifo, processes left in the
 * cgroup) falls back to the real command, which also gives the real error message.
 */
export interface RuntimeState {
  id: string;
  pid: number;
  status: 'creating' | 'created' | 'running' | 'stopped' | 'paused';
  bundle: string;
}

export class OciRuntime {
  /** crun only: compiled seccomp filters reused across containers (seccomp-cache.ts). */
  private readonly seccompFilters: SeccompFilterCache | null;

  constructor(
    readonly name: 'crun' | 'runc',
    readonly binary: string,
    readonly stateRoot: string,
  ) {
    this.seccompFilters = name === 'crun' ? new SeccompFilterCache() : null;
  }

  /** Last touches of a spec before `create`; returns a token for `created`. */
  prepareSpec(spec: { annotations?: Record<string, string>; linux?: unknown }): string | null {
    return this.seccompFilters?.prepare(spec) ?? null;
  }

  /** After a successful `create` of a spec `prepareSpec` returned `token` for. */
  created(id: string, token: string | null): void {
    this.seccompFilters?.learn(path.join(this.stateRoot, id), token);
  }

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

  async start(id: string): Promise<void> {
    if (this.name === 'crun' && this.startThroughFifo(id)) return;
    await this.exec(['start', id]);
  }

  /**
   * crun's own `start` (libcrun_container_start, crun 1.x): open `exec.fifo` for writing, unlink it,
   * write one byte; the container's init, blocked reading the fifo since `create`, then execs the
   * process. The spec never has poststart hooks or a notify socket, the only other things it does.
   * Returns false when the fifo is absent or has no reader (the init died): `crun start` reports that.
   */
  private startThroughFifo(id: string): boolean {
    const fifo = path.join(this.stateRoot, id, 'exec.fifo');
    let fd: number;
    try {
      fd = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
    } catch {
      return false;
    }
    try {
      if (!fs.fstatSync(fd).isFIFO()) return false;
      fs.unlinkSync(fifo);
      fs.writeSync(fd, Buffer.of(0));
      return true;
    } finally {
      fs.closeSync(fd);
    }
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

  /**
   * Deletes a container whose process has exited (conmon wrote its exit file), as `crun delete` does
   * for a stopped container: rmdir its cgroup in every hierarchy, remove its state directory. Falls
   * back to `delete --force` (which kills what is left) when the init still runs, a cgroup is busy
   * (`--pid host` children) or the runtime is not crun.
   */
  async deleteStopped(id: string): Promise<void> {
    if (this.name === 'crun' && (await this.deleteStoppedInProcess(id))) return;
    await this.delete(id, true);
  }

  /** The file system work runs on libuv's thread pool: a cgroup rmdir costs the kernel ~0.5 ms each. */
  private async deleteStoppedInProcess(id: string): Promise<boolean> {
    const dir = path.join(this.stateRoot, id);
    let status: {
      pid?: number;
      'process-start-time'?: number;
      'cgroup-path'?: string;
      'systemd-cgroup'?: boolean;
    };
    try {
      status = JSON.parse(fs.readFileSync(path.join(dir, 'status'), 'utf8')) as typeof status;
    } catch (err) {
      if (isErrnoCode(err, 'ENOENT') && !fs.existsSync(dir)) return true;
      return false;
    }
    if (status['systemd-cgroup']) return false;
    if (status.pid && processRuns(status.pid, status['process-start-time'])) return false;
    const cgroup = status['cgroup-path'] ?? '';
    if (cgroup !== '') {
      if (!cgroup.startsWith('/') || cgroup.split('/').includes('..')) return false;
      const removed = await Promise.all(
        cgroupMountPoints().map((root) =>
          fs.promises.rmdir(`${root}${cgroup}`).then(
            () => true,
            (err: unknown) => isErrnoCode(err, 'ENOENT'),
          ),
        ),
      );
      if (removed.includes(false)) return false;
    }
    await fs.promises.rm(dir, { recursive: true, force: true });
    return true;
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

/** True when `pid` runs and is the process that started at `startTime` (clock ticks, /proc/<pid>/stat). */
function processRuns(pid: number, startTime: number | undefined): boolean {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // Fields after the command name (which may hold spaces and parentheses): state is field 3.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return false;
  return startTime === undefined || Number(fields[19]) === startTime;
}

let cgroupRoots: string[] | null = null;

/** Mount points of every cgroup hierarchy (v1 controllers, named ones, the v2 tree), read once. */
export function cgroupMountPoints(): string[] {
  if (cgroupRoots) return cgroupRoots;
  const roots = new Set<string>();
  try {
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const sep = line.indexOf(' - ');
      if (sep < 0) continue;
      const fstype = line.slice(sep + 3).split(' ')[0];
      if (fstype === 'cgroup' || fstype === 'cgroup2') roots.add(line.split(' ')[4]);
    }
  } catch {
    // no /proc: nothing to clean
  }
  cgroupRoots = [...roots];
  return cgroupRoots;
}
