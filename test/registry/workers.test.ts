import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { request, sleep, spawnRegistry } from './helpers.js';

/**
 * `strata registry serve --workers 2`: two HTTP processes on one socket and one storage. Every request
 * of these tests goes over a new connection, and the cluster hands connections to the workers in
 * turn, so each step of an upload and each use of a token meets either worker.
 */
const digestOf = (data: Buffer): string => `sha256:${createHash('sha256').update(data).digest('hex')}`;

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function isAlive(pid: number): boolean {
  try {
    const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return state.slice(state.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

let dir: string;
let reg: Awaited<ReturnType<typeof spawnRegistry>>;

describe('registry workers', () => {
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-registry-workers-'));
    const config = path.join(dir, 'config.json');
    fs.writeFileSync(
      config,
      JSON.stringify({
        auth: {
          service: 'strata-test',
          issuer: 'strata-test',
          users: { alice: { password: bcrypt.hashSync('alice-pw', 4) } },
          acl: [{ repository: 'team/**', users: ['alice'], actions: ['pull', 'push'] }],
        },
      }),
    );
    reg = await spawnRegistry(['--root', path.join(dir, 'data'), '--config', config, '--workers', '2']);
  });

  after(async () => {
    const workers = reg?.child.pid ? childPids(reg.child.pid) : [];
    await reg?.stop();
    // The workers leave after the main process; one still starting could create files under `dir`
    // after it was removed, so wait for them first.
    for (let i = 0; i < 50 && workers.some(isAlive); i++) await sleep(100);
    for (let i = 0; i < 30 && fs.existsSync(dir); i++) {
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
      await sleep(100);
    }
  });

  test('runs two HTTP processes under the main one', async () => {
    const pid = reg.child.pid ?? 0;
    for (let i = 0; i < 50 && childPids(pid).length < 2; i++) await sleep(100);
    assert.equal(childPids(pid).length, 2);
  });

  test('a token issued by one worker opens the other; an upload moves between them', async () => {
    const basic = `Basic ${Buffer.from('alice:alice-pw').toString('base64')}`;
    const tokenRes = await request(
      reg.url,
      'GET',
      '/token?service=strata-test&scope=repository:team/app:pull,push',
      { headers: { Authorization: basic } },
    );
    assert.equal(tokenRes.status, 200);
    const auth = { Authorization: `Bearer ${(tokenRes.json as { token: string }).token}` };
    for (let i = 0; i < 4; i++) {
      assert.equal((await request(reg.url, 'GET', '/v2/', { headers: auth })).status, 200);
    }

    const data = randomBytes(3 * 1024 * 1024 + 11);
    const digest = digestOf(data);
    const start = await request(reg.url, 'POST', '/v2/team/app/blobs/uploads/', { headers: auth });
    assert.equal(start.status, 202);
    let location = String(start.headers.location);
    const pieces = [data.subarray(0, 1_000_000), data.subarray(1_000_000, 2_000_000)];
    let offset = 0;
    for (const piece of pieces) {
      const patch = await request(reg.url, 'PATCH', location, {
        headers: {
          ...auth,
          'Content-Type': 'application/octet-stream',
          'Content-Range': `${offset}-${offset + piece.length - 1}`,
        },
        body: piece,
      });
      assert.equal(patch.status, 202, patch.text);
      offset += piece.length;
      assert.equal(patch.headers.range, `0-${offset - 1}`);
      location = String(patch.headers.location);
      // The session's state is on disk: the other worker reports the same offset.
      const status = await request(reg.url, 'GET', location, { headers: auth });
      assert.equal(status.headers.range, `0-${offset - 1}`);
    }
    const sep = location.includes('?') ? '&' : '?';
    const done = await request(reg.url, 'PUT', `${location}${sep}digest=${digest}`, {
      headers: { ...auth, 'Content-Type': 'application/octet-stream' },
      body: data.subarray(offset),
    });
    assert.equal(done.status, 201, done.text);
    for (let i = 0; i < 2; i++) {
      const blob = await request(reg.url, 'GET', `/v2/team/app/blobs/${digest}`, { headers: auth });
      assert.equal(blob.status, 200);
      assert.ok(blob.body.equals(data));
    }
    const wrong = await request(reg.url, 'POST', `/v2/team/app/blobs/uploads/?digest=${digestOf(data)}`, {
      headers: { ...auth, 'Content-Type': 'application/octet-stream' },
      body: data.subarray(1),
    });
    assert.equal(wrong.status, 400);
    assert.equal((wrong.json as { errors: Array<{ code: string }> }).errors[0]?.code, 'DIGEST_INVALID');
  });

  test('workers end with the main process, even when it is killed', async () => {
    const pid = reg.child.pid ?? 0;
    const workers = childPids(pid);
    assert.equal(workers.length, 2);
    reg.child.kill('SIGKILL');
    for (let i = 0; i < 50 && workers.some(isAlive); i++) await sleep(100);
    assert.deepEqual(workers.filter(isAlive), []);
  });
});
