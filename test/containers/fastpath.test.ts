import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { constants, mount, umount2 } from '../../src/native/index.js';
import { cgroupMountPoints } from '../../src/runtime/oci.js';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

/**
 * The hot path of a container's life (create → start → exit → wait → rm): crun is run by conmon for
 * `create` only, the seccomp filter is compiled once per profile, nothing is left behind, and the
 * phases can be traced (STRATA_TRACE). The daemon finds a logging wrapper as `crun` on its PATH, so
 * the tests see every time crun is spawned.
 */
async function eventually(check: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('container start/stop fast path', () => {
  let d: TestDaemon;
  let tmp = '';
  let crunLog = '';
  let traceFile = '';

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-fastpath-'));
    crunLog = path.join(tmp, 'crun.log');
    traceFile = path.join(tmp, 'trace.log');
    const bin = path.join(tmp, 'bin');
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, 'crun'),
      `#!/bin/sh\necho "$*" >> '${crunLog}'\nexec /usr/bin/crun "$@"\n`,
      {
        mode: 0o755,
      },
    );
    d = await startDaemon({
      env: { PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}`, STRATA_TRACE: traceFile },
    });
    await importBusybox(d);
  });

  after(async () => {
    await d?.cleanup();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const crunVerbs = (id: string): string[] =>
    (fs.existsSync(crunLog) ? fs.readFileSync(crunLog, 'utf8') : '')
      .split('\n')
      .filter((l) => l.includes(id))
      .map((l) => l.replace(/^--root \S+ /, '').split(' ')[0]);

  const leftovers = (id: string): string[] => {
    const found: string[] = [];
    for (const rt of ['crun', 'runc']) {
      const state = path.join(d.root, 'runtime', rt, id);
      if (fs.existsSync(state)) found.push(state);
    }
    for (const root of cgroupMountPoints()) {
      const cgroup = `${root}/strata/${id}`;
      if (fs.existsSync(cgroup)) found.push(cgroup);
    }
    for (const entry of fs.readdirSync(path.join(d.root, 'containers')))
      if (entry.includes(id)) found.push(path.join(d.root, 'containers', entry));
    if (fs.existsSync(path.join(d.root, 'exits', id))) found.push('exit file');
    if (fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(id)) found.push('mount');
    return found;
  };

  test('crun runs only for create; start, exit and rm leave nothing behind', async () => {
    const id = await d.dockerOk(['run', '-d', 'bb', 'sh', '-c', 'echo out; exit 4']);
    assert.equal(await d.dockerOk(['wait', id]), '4');
    assert.equal(await d.dockerOk(['logs', id]), 'out');
    await d.dockerOk(['rm', id]);
    assert.ok(!fs.existsSync(path.join(d.root, 'containers', id)), 'gone for clients at once');
    await eventually(() => leftovers(id).length === 0, `no leftovers of ${id}: ${leftovers(id).join(', ')}`);
    assert.deepEqual(crunVerbs(id), ['create'], 'conmon ran `crun create`; start and delete needed no crun');

    // --rm: removal happens in the daemon once the process exits.
    const cidfile = path.join(tmp, 'cid');
    assert.equal(await d.dockerOk(['run', '--rm', '--cidfile', cidfile, 'bb', 'echo', 'hi']), 'hi');
    const rmId = fs.readFileSync(cidfile, 'utf8').trim();
    await eventually(
      () => leftovers(rmId).length === 0,
      `no leftovers of ${rmId}: ${leftovers(rmId).join(', ')}`,
    );
    assert.deepEqual(crunVerbs(rmId), ['create']);
    assert.equal((await d.docker(['inspect', rmId])).code, 1);
  });

  test('a restarted container is started and stopped the same way', async () => {
    const id = await d.dockerOk(['run', '-d', 'bb', 'sleep', '30']);
    await d.dockerOk(['restart', '-t', '0', id]);
    assert.equal(await d.dockerOk(['inspect', '-f', '{{.State.Running}}', id]), 'true');
    assert.equal(await d.dockerOk(['exec', id, 'echo', 'alive']), 'alive');
    await d.dockerOk(['rm', '-f', id]);
    await eventually(() => leftovers(id).length === 0, `no leftovers of ${id}: ${leftovers(id).join(', ')}`);
    // kill goes through crun; start (twice) and the deletes after each exit do not.
    assert.deepEqual(
      crunVerbs(id).filter((v) => v !== 'kill' && v !== 'exec'),
      ['create', 'create'],
    );
  });

  test('the compiled seccomp filter of a profile serves the next container with that profile', async () => {
    const profile = path.join(tmp, 'no-mkdir.json');
    fs.writeFileSync(
      profile,
      JSON.stringify({
        defaultAction: 'SCMP_ACT_ALLOW',
        syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
      }),
    );
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const id = await d.dockerOk([
        'run',
        '-d',
        '--security-opt',
        `seccomp=${profile}`,
        'bb',
        'sh',
        '-c',
        'grep ^Seccomp: /proc/self/status; mkdir /tmp/d || echo refused',
      ]);
      await d.dockerOk(['wait', id]);
      assert.equal(await d.dockerOk(['logs', id]), 'Seccomp:\t2\nrefused');
      ids.push(id);
    }
    const annotation = (id: string) =>
      (
        JSON.parse(fs.readFileSync(path.join(d.root, 'containers', id, 'config.json'), 'utf8')) as {
          annotations?: Record<string, string>;
        }
      ).annotations?.['run.oci.seccomp_bpf_data'];
    assert.equal(annotation(ids[0]), undefined, 'the first container has crun compile the profile');
    assert.match(annotation(ids[1]) ?? '', /^[A-Za-z0-9+/]+=*$/, 'the second gets the compiled filter');
    await d.dockerOk(['rm', ...ids]);
  });

  test('conmon is spawned and reaped: no zombie children of the daemon', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(await d.dockerOk(['run', '-d', 'bb', 'sleep', '30']));
    const pid = d.process.pid ?? 0;
    const zombies = () =>
      fs
        .readdirSync(`/proc/${pid}/task`)
        .flatMap((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/))
        .filter(Boolean)
        .filter((child) => {
          try {
            const stat = fs.readFileSync(`/proc/${child}/stat`, 'utf8');
            return stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
          } catch {
            return false;
          }
        });
    await eventually(() => zombies().length === 0, 'no zombie children');
    for (const id of ids) {
      const conmon = Number(
        fs.readFileSync(path.join(d.root, 'containers', id, 'conmon.pid'), 'utf8').trim(),
      );
      const stat = fs.readFileSync(`/proc/${conmon}/stat`, 'utf8');
      assert.equal(
        stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1],
        '1',
        'conmon is re-parented to PID 1',
      );
    }
    await d.dockerOk(['rm', '-f', ...ids]);
  });

  test('STRATA_TRACE records the phases of create, start, exit and remove', async () => {
    const id = await d.dockerOk(['create', 'bb', 'true']);
    await d.dockerOk(['start', '-a', id]);
    await d.dockerOk(['rm', id]);
    const short = id.slice(0, 12);
    const lines = fs.readFileSync(traceFile, 'utf8').split('\n');
    const line = (kind: string) => lines.find((l) => l.split(' ')[2] === kind && l.split(' ')[3] === short);
    assert.match(line('create') ?? '', /^TRACE \d+\.\d{3} create \w{12} .*db=[\d.]+ .*total=[\d.]+/);
    assert.match(
      line('start') ?? '',
      / mount=[\d.]+ .*conmon-spawned=[\d.]+ pid-message=[\d.]+ .*total=[\d.]+/,
    );
    assert.match(line('exit') ?? '', / waiters=[\d.]+ .*total=/);
    assert.match(line('remove') ?? '', / unmount=[\d.]+ .*total=/);
    assert.ok(line('exit-seen'), 'the moment the exit file was seen');
    assert.ok(
      lines.some((l) => l.includes(` api ${short} `) && l.endsWith(`POST /containers/${id}/start 204`)),
      'API requests with their status',
    );
  });

  test('a removed container whose deletion a crash interrupted is swept at start-up', async () => {
    await d.kill();
    const trash = path.join(d.root, 'containers', `.removed-${'e'.repeat(64)}`);
    const rootfs = path.join(trash, 'rootfs');
    fs.mkdirSync(rootfs, { recursive: true });
    fs.writeFileSync(path.join(trash, 'ctr.log'), 'old');
    mount('tmpfs', rootfs, 'tmpfs', 0, 'size=1m');
    try {
      await d.restart();
      assert.ok(!fs.existsSync(trash));
      assert.ok(!fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(trash));
    } finally {
      try {
        umount2(rootfs, constants.MNT_DETACH);
      } catch {
        // swept by the daemon
      }
    }
  });
});
