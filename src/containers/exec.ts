import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import { z } from 'zod';
import { muxFrame } from '../api/hijack.js';
import { Conflict, errorMessage, NotFound } from '../common/errors.js';
import { newObjectId } from '../common/ids.js';
import { logger } from '../common/log.js';
import { type AttachConnection, connectAttach, resizeTerminal } from '../runtime/attach.js';
import { conmonExec } from '../runtime/conmon.js';
import type { OciRuntime } from '../runtime/oci.js';
import { buildCapabilities, type OciSpec } from '../runtime/spec.js';
import { resolveUser } from '../runtime/user.js';
import { mergeEnv } from './config.js';
import type { ContainerRecord } from './types.js';

const log = logger('exec');

export const execCreateSchema = z
  .object({
    Cmd: z.array(z.string()).min(1, 'No exec command specified'),
    User: z.string().nullish(),
    Privileged: z.boolean().nullish(),
    Tty: z.boolean().nullish(),
    AttachStdin: z.boolean().nullish(),
    AttachStdout: z.boolean().nullish(),
    AttachStderr: z.boolean().nullish(),
    Detach: z.boolean().nullish(),
    DetachKeys: z.string().nullish(),
    Env: z.array(z.string()).nullish(),
    WorkingDir: z.string().nullish(),
  })
  .loose();
export type ExecCreateBody = z.infer<typeof execCreateSchema>;

export interface ExecSession {
  id: string;
  containerId: string;
  config: ExecCreateBody;
  running: boolean;
  exitCode: number | null;
  pid: number;
  started: boolean;
  pendingResize: [number, number] | null;
  sessionDir: string;
}

export interface ExecHost {
  get(ref: string): ContainerRecord;
  isRunning(record: ContainerRecord): boolean;
  containerDir(id: string): string;
  runtimeOf(record: ContainerRecord): OciRuntime;
  execEvent(record: ContainerRecord, action: string, extra: Record<string, string>): void;
}

/**
 * Exec sessions (`docker exec`): each runs under its own conmon with `--exec-attach`, in a session
 * directory inside the container's bundle. Sessions live in memory only, like dockerd's; the exit code
 * is recorded before the stream is closed because clients inspect the exec right after EOF.
 */
export class ExecManager {
  private readonly sessions = new Map<string, ExecSession>();

  constructor(private readonly host: ExecHost) {}

  create(containerRef: string, body: ExecCreateBody): { Id: string } {
    const record = this.host.get(containerRef);
    if (!this.host.isRunning(record)) throw new Conflict(`Container ${record.id} is not running`);
    if (record.state.status === 'paused')
      throw new Conflict(`Container ${record.id} is paused, unpause the container before exec`);
    const id = newObjectId();
    this.sessions.set(id, {
      id,
      containerId: record.id,
      config: body,
      running: false,
      exitCode: null,
      pid: 0,
      started: false,
      pendingResize: null,
      sessionDir: path.join(this.host.containerDir(record.id), `exec-${id.slice(0, 12)}`),
    });
    this.host.execEvent(record, `exec_create: ${body.Cmd.join(' ')} `, { execID: id });
    return { Id: id };
  }

  get(id: string): ExecSession {
    const s = this.sessions.get(id);
    if (!s) throw new NotFound(`No such exec instance: ${id}`);
    return s;
  }

  idsFor(containerId: string): string[] {
    return [...this.sessions.values()].filter((s) => s.containerId === containerId).map((s) => s.id);
  }

  dropContainer(containerId: string): void {
    for (const [id, s] of this.sessions) if (s.containerId === containerId) this.sessions.delete(id);
  }

  /** Forgets one finished session (health probes are not kept like user execs). */
  remove(id: string): void {
    this.sessions.delete(id);
  }

  inspect(id: string): Record<string, unknown> {
    const s = this.get(id);
    const [entrypoint, ...args] = s.config.Cmd;
    return {
      ID: s.id,
      Running: s.running,
      ExitCode: s.exitCode,
      ProcessConfig: {
        tty: s.config.Tty ?? false,
        entrypoint,
        arguments: args,
        privileged: s.config.Privileged ?? false,
        ...(s.config.User ? { user: s.config.User } : {}),
      },
      OpenStdin: s.config.AttachStdin ?? false,
      OpenStderr: s.config.AttachStderr ?? false,
      OpenStdout: s.config.AttachStdout ?? false,
      CanRemove: false,
      ContainerID: s.containerId,
      DetachKeys: s.config.DetachKeys ?? '',
      Pid: s.pid,
    };
  }

  resize(id: string, rows: number, cols: number): void {
    const s = this.get(id);
    if (s.running) resizeTerminal(s.sessionDir, rows, cols);
    else s.pendingResize = [rows, cols];
  }

  /**
   * Runs the session. With `client` the output streams to it (raw for a TTY, multiplexed otherwise) and
   * its input goes to the process; the returned promise settles when the process has exited and its
   * output has been delivered. Detached sessions resolve once the process started.
   */
  async start(
    id: string,
    opts: { tty: boolean; client: Duplex | null; initialInput: Buffer; clientSendsInput: boolean },
  ): Promise<void> {
    const s = this.get(id);
    if (s.started) throw new Conflict(`Error: Exec command ${id} is already running`);
    const record = this.host.get(s.containerId);
    if (!this.host.isRunning(record)) throw new Conflict(`Container ${record.id} is not running`);
    s.started = true;
    const tty = s.config.Tty ?? opts.tty;
    const attachStdin = (s.config.AttachStdin ?? false) && opts.client !== null && opts.clientSendsInput;
    const containerDir = this.host.containerDir(record.id);
    fs.mkdirSync(s.sessionDir, { recursive: true });
    const spec = JSON.parse(fs.readFileSync(path.join(containerDir, 'config.json'), 'utf8')) as OciSpec;
    const rootfs = path.join(containerDir, 'rootfs');
    const proc = spec.process;
    proc.args = s.config.Cmd;
    proc.terminal = tty;
    delete proc.consoleSize;
    if (s.config.Env && s.config.Env.length > 0) proc.env = mergeEnv(proc.env, s.config.Env);
    if (s.config.WorkingDir) proc.cwd = s.config.WorkingDir;
    if (s.config.User) {
      const user = resolveUser(rootfs, s.config.User);
      proc.user = {
        uid: user.uid,
        gid: user.gid,
        ...(user.additionalGids.length ? { additionalGids: user.additionalGids } : {}),
      };
      const caps = proc.capabilities.bounding;
      proc.capabilities.effective = user.uid === 0 ? caps : [];
      proc.capabilities.permitted = user.uid === 0 ? caps : [];
    }
    if (s.config.Privileged) {
      const caps = buildCapabilities(true, [], []);
      proc.capabilities = { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] };
    }
    const processSpecPath = path.join(s.sessionDir, 'process.json');
    fs.writeFileSync(processSpecPath, JSON.stringify(proc));

    const client = opts.client;
    let connection: AttachConnection | null = null;
    let outputDone: Promise<void> = Promise.resolve();
    const execLabel = s.config.Cmd.join(' ');
    this.host.execEvent(record, `exec_start: ${execLabel} `, { execID: id });
    try {
      const handle = await conmonExec({
        containerId: record.id,
        sessionDir: s.sessionDir,
        processSpecPath,
        tty,
        openStdin: attachStdin,
        runtime: this.host.runtimeOf(record),
        beforeStart: async () => {
          if (!client) return;
          connection = await connectAttach(s.sessionDir);
          const conn = connection;
          outputDone = new Promise<void>((resolve) => conn.onClose(resolve));
          conn.onOutput((stream, data) => {
            if (client.destroyed) return;
            client.write(tty ? data : muxFrame(stream, data));
          });
          if (!attachStdin) client.resume();
          client.on('close', () => conn.destroy());
        },
      });
      s.pid = handle.pid;
      s.running = true;
      // Input is forwarded once the process runs (until then the client's bytes wait in its paused
      // socket); the output side is connected before the start, so no output is lost.
      const conn = connection as AttachConnection | null;
      if (client && conn && attachStdin) {
        if (opts.initialInput.length > 0) conn.write(opts.initialInput);
        client.on('data', (d: Buffer) => conn.write(d));
        client.on('end', () => conn.end());
        // readRequestBody pauses the socket when it had to read the request body from it (the body
        // and the headers came in separate reads, common under load); an explicitly paused stream
        // does not start flowing when a 'data' listener is added, so the input sat unread forever.
        client.resume();
      }
      if (s.pendingResize) resizeTerminal(s.sessionDir, s.pendingResize[0], s.pendingResize[1]);
      const finish = handle.exitCode.then(async (code) => {
        // Output drains after the process ends; conmon closes the attach socket when it is done.
        await Promise.race([outputDone, new Promise((r) => setTimeout(r, 2000))]);
        s.exitCode = code;
        s.running = false;
        this.host.execEvent(record, 'exec_die', { execID: id, exitCode: String(code) });
        fs.rmSync(s.sessionDir, { recursive: true, force: true });
      });
      if (!client) {
        finish.catch((err) => log.warn('exec failed', { id, error: errorMessage(err) }));
        return;
      }
      await finish;
    } catch (err) {
      // dockerd reports a failed exec in the stream (as stdout) and gives exit code 126/127.
      const message = errorMessage(err);
      s.exitCode = /not found|no such file/i.test(message) ? 127 : 126;
      s.running = false;
      (connection as AttachConnection | null)?.destroy();
      fs.rmSync(s.sessionDir, { recursive: true, force: true });
      if (client && !client.destroyed) {
        const text = Buffer.from(`OCI runtime exec failed: exec failed: ${message}: unknown\r\n`);
        client.write(tty ? text : muxFrame(1, text));
      }
      this.host.execEvent(record, 'exec_die', { execID: id, exitCode: String(s.exitCode) });
      if (!client) throw err;
    }
  }
}
