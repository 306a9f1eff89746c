import { errorMessage } from '../common/errors.js';
import { logger } from '../common/log.js';
import type { Db, PartSchema } from '../store/db.js';
import type { ContainerRecord } from './types.js';

const log = logger('restart');

/**
 * Restart policies (`no`, `always`, `unless-stopped`, `on-failure[:N]`) with dockerd's back-off: the
 * delay before a restart starts at 100 ms and doubles up to one minute, and goes back to 100 ms once
 * a run lasted 10 s. The delay, the time of the next attempt and whether the user stopped the
 * container are stored, so a daemon that restarts in the middle of a back-off resumes it instead of
 * restarting at once (and a container the user stopped stays stopped).
 *
 * Lifecycle: `started` (any start; a manual one also clears the manual-stop mark) → `exited` (decide; status `restarting` during the delay) → the host's
 * `start` → … ; `stopRequested` (docker stop/kill) cancels; `forget` on removal.
 */
export const restartSchema: PartSchema = {
  part: 'restart',
  migrations: [
    `CREATE TABLE restart_state (
       container_id TEXT PRIMARY KEY,
       data TEXT NOT NULL
     )`,
  ],
};

export interface RestartHost {
  find(ref: string): ContainerRecord | null;
  all(): ContainerRecord[];
  isRunning(record: ContainerRecord): boolean;
  start(ref: string): Promise<void>;
  persist(record: ContainerRecord): void;
}

interface RestartState {
  /** Current back-off delay (0 = none yet). */
  timeoutMs: number;
  manualStop: boolean;
  /** Epoch ms of the pending restart, 0 = none. */
  nextAt: number;
}

export const DEFAULT_TIMEOUT_MS = 100;
export const MAX_TIMEOUT_MS = 60_000;
const RESET_AFTER_MS = 10_000;

/** dockerd's back-off step: reset after a long run, else 100 ms, doubling, capped at a minute. */
export function nextTimeout(current: number, ranForMs: number): number {
  let t = ranForMs >= RESET_AFTER_MS ? 0 : current;
  t = t === 0 ? DEFAULT_TIMEOUT_MS : Math.min(t * 2, MAX_TIMEOUT_MS);
  return t;
}

/** Whether dockerd's policy asks for a restart after this exit. */
export function shouldRestart(
  policy: { Name?: string | null; MaximumRetryCount?: number | null } | null | undefined,
  exitCode: number,
  restartCount: number,
  manualStop: boolean,
): boolean {
  if (manualStop) return false;
  switch (policy?.Name ?? 'no') {
    case 'always':
    case 'unless-stopped':
      return true;
    case 'on-failure': {
      const max = policy?.MaximumRetryCount ?? 0;
      return exitCode !== 0 && (max <= 0 || restartCount < max);
    }
    default:
      return false;
  }
}

export class RestartManager {
  private readonly states = new Map<string, RestartState>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  /** Start of the run being watched (for the 10 s reset rule). */
  private readonly startedAt = new Map<string, number>();
  private closed = false;
  /** Starts in progress that this manager made (the start hook tells them from manual ones). */
  private readonly policyStarts = new Set<string>();
  private readonly upsert;
  private readonly remove;

  constructor(
    db: Db,
    private readonly host: RestartHost,
  ) {
    this.upsert = db.prepare(
      'INSERT INTO restart_state (container_id, data) VALUES (?, ?) ON CONFLICT(container_id) DO UPDATE SET data = excluded.data',
    );
    this.remove = db.prepare('DELETE FROM restart_state WHERE container_id = ?');
    for (const row of db.prepare('SELECT container_id, data FROM restart_state').all() as {
      container_id: string;
      data: string;
    }[]) {
      this.states.set(row.container_id, JSON.parse(row.data) as RestartState);
    }
  }

  private state(id: string): RestartState {
    let s = this.states.get(id);
    if (!s) {
      s = { timeoutMs: 0, manualStop: false, nextAt: 0 };
      this.states.set(id, s);
    }
    return s;
  }

  private save(id: string): void {
    const s = this.states.get(id);
    if (!s) return;
    this.upsert.run(id, JSON.stringify(s));
  }

  private cancel(id: string): void {
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
  }

  /** Any start. A manual one (not ours) clears the manual stop. */
  started(record: ContainerRecord): void {
    const byPolicy = this.policyStarts.has(record.id);
    this.cancel(record.id);
    this.startedAt.set(record.id, Date.now());
    // No state yet and no policy: a missing row already means "no delay, not stopped by hand", so the
    // start of an ordinary container costs no database write.
    if (!this.states.has(record.id) && (record.hostConfig.RestartPolicy?.Name ?? 'no') === 'no') return;
    const s = this.state(record.id);
    s.nextAt = 0;
    if (!byPolicy) s.manualStop = false;
    this.save(record.id);
  }

  stopRequested(record: ContainerRecord): void {
    const s = this.state(record.id);
    s.manualStop = true;
    s.nextAt = 0;
    this.save(record.id);
    if (this.timers.has(record.id) || record.state.status === 'restarting') {
      this.cancel(record.id);
      if (record.state.status === 'restarting') {
        record.state.status = 'exited';
        this.host.persist(record);
      }
    }
  }

  forget(id: string): void {
    this.cancel(id);
    this.startedAt.delete(id);
    // `states` mirrors the table (loaded at start, every write goes through it).
    if (this.states.delete(id)) this.remove.run(id);
  }

  /** After an exit has been recorded: schedules a restart when the policy asks for one. */
  exited(record: ContainerRecord): void {
    if (this.closed) return;
    const s = this.state(record.id);
    const policy = record.hostConfig.RestartPolicy;
    if (!shouldRestart(policy, record.state.exitCode, record.restartCount, s.manualStop)) {
      if (s.nextAt !== 0) {
        s.nextAt = 0;
        this.save(record.id);
      }
      return;
    }
    const began = this.startedAt.get(record.id) ?? Date.parse(record.state.startedAt);
    const finished = Date.parse(record.state.finishedAt) || Date.now();
    s.timeoutMs = nextTimeout(s.timeoutMs, Number.isFinite(began) ? finished - began : 0);
    s.nextAt = Date.now() + s.timeoutMs;
    this.save(record.id);
    this.schedule(record, s.timeoutMs);
  }

  private schedule(record: ContainerRecord, delayMs: number): void {
    this.cancel(record.id);
    record.state.status = 'restarting';
    this.host.persist(record);
    const timer = setTimeout(
      () => {
        this.timers.delete(record.id);
        void this.restartNow(record.id);
      },
      Math.max(0, delayMs),
    );
    this.timers.set(record.id, timer);
  }

  private async restartNow(id: string): Promise<void> {
    const record = this.host.find(id);
    if (!record || this.closed) return;
    if (record.state.status !== 'restarting' || this.host.isRunning(record)) return;
    record.state.status = 'exited';
    record.restartCount += 1;
    this.host.persist(record);
    this.policyStarts.add(id);
    try {
      await this.host.start(id);
    } catch (err) {
      log.warn('restart failed', { id, error: errorMessage(err) });
      // A failed start counts as a failed run (dockerd: exit code 128 or the start error's code).
      const current = this.host.find(id);
      if (current && !this.host.isRunning(current)) this.exited(current);
    } finally {
      this.policyStarts.delete(id);
    }
  }

  /**
   * After the daemon restarted (and recorded exits that happened while it was down): containers that
   * were waiting for a restart get it at the stored time; `always`/`unless-stopped` containers that
   * are down without a manual stop are started, as dockerd does at start-up.
   */
  resume(): void {
    const now = Date.now();
    for (const record of this.host.all()) {
      if (this.host.isRunning(record) || this.timers.has(record.id)) continue;
      const s = this.states.get(record.id);
      if (record.state.status === 'restarting') {
        this.schedule(record, s && s.nextAt > 0 ? s.nextAt - now : DEFAULT_TIMEOUT_MS);
        continue;
      }
      const name = record.hostConfig.RestartPolicy?.Name ?? 'no';
      if (record.hasStarted && (name === 'always' || name === 'unless-stopped') && !s?.manualStop) {
        this.schedule(record, s && s.nextAt > now ? s.nextAt - now : 0);
      }
    }
  }

  close(): void {
    this.closed = true;
    for (const id of [...this.timers.keys()]) this.cancel(id);
  }
}
