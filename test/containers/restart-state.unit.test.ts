import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { RestartManager, restartSchema } from '../../src/containers/restart.js';
import type { ContainerRecord } from '../../src/containers/types.js';
import { migrate } from '../../src/store/db.js';

/** The restart bookkeeping writes rows only for containers that need them. */
describe('restart state rows', () => {
  const setup = () => {
    const db = new Database(':memory:');
    migrate(db, [restartSchema]);
    const records: ContainerRecord[] = [];
    const manager = new RestartManager(db, {
      find: (ref) => records.find((r) => r.id === ref) ?? null,
      all: () => records,
      isRunning: (r) => r.state.status === 'running',
      start: async () => undefined,
      persist: () => undefined,
    });
    const row = (id: string) =>
      (
        db.prepare('SELECT data FROM restart_state WHERE container_id = ?').get(id) as
          | { data: string }
          | undefined
      )?.data;
    const record = (id: string, policy: string) =>
      ({
        id,
        hostConfig: { RestartPolicy: { Name: policy, MaximumRetryCount: 0 } },
        state: { status: 'running', exitCode: 0, startedAt: new Date().toISOString(), finishedAt: '' },
        restartCount: 0,
      }) as unknown as ContainerRecord;
    return { manager, row, record, close: () => manager.close() };
  };

  test('a container without a policy costs no write until it is stopped by hand', () => {
    const { manager, row, record, close } = setup();
    const c = record('a'.repeat(64), 'no');
    manager.started(c);
    assert.equal(row(c.id), undefined);
    manager.stopRequested(c);
    assert.equal(JSON.parse(row(c.id) ?? '{}').manualStop, true);
    manager.started(c);
    assert.equal(JSON.parse(row(c.id) ?? '{}').manualStop, false, 'a manual start clears the mark');
    manager.forget(c.id);
    assert.equal(row(c.id), undefined);
    close();
  });

  test('a container with a policy has its row from the first start', () => {
    const { manager, row, record, close } = setup();
    const c = record('b'.repeat(64), 'always');
    manager.started(c);
    assert.deepEqual(JSON.parse(row(c.id) ?? '{}'), { timeoutMs: 0, manualStop: false, nextAt: 0 });
    manager.forget(c.id);
    assert.equal(row(c.id), undefined);
    close();
  });
});
