import { PassThrough } from 'node:stream';
import { errorMessage } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { logger } from '../common/log.js';
import type { ExecManager } from './exec.js';
import type { ContainerRecord } from './types.js';

const log = logger('health');

/**
 * Health checks (`HEALTHCHECK` in the image, `--health-*` on run): while a container runs, its probe
 * command is executed in it every Interval (as `docker exec` would, under conmon). Status `starting`
 * → `healthy` on the first success; `unhealthy` after Retries failures in a row (failures inside
 * StartPeriod do not count while still starting). Each change emits `health_status: <status>`; the
 * last five results are kept for inspect (State.Health.Log), as dockerd does.
 */
export interface HealthLogEntry {
  Start: string;
  End: string;
  ExitCode: number;
  Output: string;
}

export interface HealthState {
  Status: 'starting' | 'healthy' | 'unhealthy';
  FailingStreak: number;
  Log: HealthLogEntry[];
}

interface Probe {
  argv: string[];
  intervalMs: number;
  timeoutMs: number;
  startPeriodMs: number;
  retries: number;
}

const NS_PER_MS = 1_000_000;
const DEFAULT_MS = 30_000;
const MAX_OUTPUT = 4096;

/** The probe of a container config, or null when it has none (or `NONE`). */
export function probeOf(healthcheck: ContainerRecord['config']['Healthcheck']): Probe | null {
  const test = healthcheck?.Test ?? [];
  if (test.length === 0 || test[0] === 'NONE') return null;
  let argv: string[];
  if (test[0] === 'CMD') argv = test.slice(1);
  else if (test[0] === 'CMD-SHELL') argv = ['/bin/sh', '-c', test.slice(1).join(' ')];
  else argv = ['/bin/sh', '-c', test.join(' ')];
  if (argv.length === 0) return null;
  const ms = (ns: number | null | undefined, fallback: number) =>
    ns && ns > 0 ? Math.max(1, Math.round(ns / NS_PER_MS)) : fallback;
  return {
    argv,
    intervalMs: ms(healthcheck?.Interval, DEFAULT_MS),
    timeoutMs: ms(healthcheck?.Timeout, DEFAULT_MS),
    startPeriodMs: ms(healthcheck?.StartPeriod, 0),
    retries: healthcheck?.Retries && healthcheck.Retries > 0 ? healthcheck.Retries : 3,
  };
}

/** Reads the payloads out of a multiplexed exec stream (8-byte frame headers). */
export function demux(data: Buffer): string {
  const out: Buffer[] = [];
  let off = 0;
  while (off + 8 <= data.length) {
    const len = data.readUInt32BE(off + 4);
    out.push(data.subarray(off + 8, Math.min(data.length, off + 8 + len)));
    off += 8 + len;
  }
  return Buffer.concat(out).toString('utf8');
}

export interface HealthHost {
  find(ref: string): ContainerRecord | null;
  isRunning(record: ContainerRecord): boolean;
  execs: ExecManager;
}

export class HealthMonitor {
  private readonly states = new Map<string, HealthState>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly generation = new Map<string, number>();

  constructor(
    private readonly host: HealthHost,
    private readonly events: EventBus,
  ) {}

  stateOf(id: string): HealthState | undefined {
    return this.states.get(id);
  }

  /** A container (re)started: status `starting`, first probe after one interval. */
  start(record: ContainerRecord): void {
    this.stop(record.id);
    const probe = probeOf(record.config.Healthcheck);
    if (!probe) {
      this.states.delete(record.id);
      return;
    }
    const generation = (this.generation.get(record.id) ?? 0) + 1;
    this.generation.set(record.id, generation);
    this.states.set(record.id, { Status: 'starting', FailingStreak: 0, Log: [] });
    const startedAt = Date.now();
    const loop = () => {
      const timer = setTimeout(async () => {
        if (this.generation.get(record.id) !== generation) return;
        await this.runProbe(record.id, probe, startedAt, generation);
        if (this.generation.get(record.id) === generation) loop();
      }, probe.intervalMs);
      this.timers.set(record.id, timer);
    };
    loop();
  }

  /** The container stopped: no more probes (the last status stays visible). */
  stop(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
    this.generation.set(id, (this.generation.get(id) ?? 0) + 1);
  }

  forget(id: string): void {
    this.stop(id);
    this.states.delete(id);
    this.generation.delete(id);
  }

  close(): void {
    for (const id of [...this.timers.keys()]) this.stop(id);
  }

  private async runProbe(id: string, probe: Probe, startedAt: number, generation: number): Promise<void> {
    const record = this.host.find(id);
    const state = this.states.get(id);
    if (!record || !state || !this.host.isRunning(record) || record.state.status === 'paused') return;
    const start = new Date();
    let exitCode = -1;
    let output = '';
    let execId = '';
    try {
      execId = this.host.execs.create(id, { Cmd: probe.argv, AttachStdout: true, AttachStderr: true }).Id;
      const sink = new PassThrough();
      const chunks: Buffer[] = [];
      let size = 0;
      sink.on('data', (d: Buffer) => {
        if (size < MAX_OUTPUT * 2) chunks.push(d);
        size += d.length;
      });
      const run = this.host.execs.start(execId, {
        tty: false,
        client: sink,
        initialInput: Buffer.alloc(0),
        clientSendsInput: false,
      });
      let timedOut = false;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          timedOut = true;
          const pid = this.host.execs.get(execId).pid;
          if (pid > 0) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // already gone
            }
          }
          resolve();
        }, probe.timeoutMs);
      });
      await Promise.race([run, timeout]);
      clearTimeout(timer);
      if (timedOut) {
        exitCode = -1;
        output = `Health check exceeded timeout (${probe.timeoutMs / 1000}s)`;
        run.catch(() => undefined);
      } else {
        exitCode = this.host.execs.get(execId).exitCode ?? -1;
        output = demux(Buffer.concat(chunks)).slice(0, MAX_OUTPUT);
      }
    } catch (err) {
      exitCode = -1;
      output = errorMessage(err);
    } finally {
      if (execId) this.host.execs.remove(execId);
    }
    if (this.generation.get(id) !== generation) return;
    const entry: HealthLogEntry = {
      Start: start.toISOString(),
      End: new Date().toISOString(),
      ExitCode: exitCode,
      Output: output,
    };
    state.Log = [...state.Log, entry].slice(-5);
    const previous = state.Status;
    if (exitCode === 0) {
      state.Status = 'healthy';
      state.FailingStreak = 0;
    } else if (!(previous === 'starting' && Date.now() - startedAt < probe.startPeriodMs)) {
      state.FailingStreak += 1;
      if (state.FailingStreak >= probe.retries) state.Status = 'unhealthy';
    }
    if (state.Status !== previous) {
      log.debug('health status changed', { id: id.slice(0, 12), status: state.Status });
      this.events.publish('container', `health_status: ${state.Status}`, id, {
        ...record.config.Labels,
        image: record.imageRef,
        name: record.name,
      });
    }
  }
}

/** ` (healthy)`, ` (health: starting)`, ` (unhealthy)` for `docker ps`. */
export function healthSuffix(state: HealthState | undefined): string {
  if (!state) return '';
  return state.Status === 'starting' ? ' (health: starting)' : ` (${state.Status})`;
}
