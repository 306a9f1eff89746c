import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connectToDaemon } from '../../src/cli/connect.js';
import { canConnect, run, STRATA_BIN, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { busyboxTar, describeResult, importBusyboxWithStrata, strataOk } from './helpers.js';

/** The `strata` command against a real Strata daemon: images and system commands. */
describe('strata CLI: images', () => {
  let d: TestDaemon;
  let work: string;
  let imageId: string;

  before(async () => {
    d = await startDaemon();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-img-'));
    imageId = await importBusyboxWithStrata(d);
  });

  after(async () => {
    await d?.cleanup();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test("import prints the image id; images lists it in docker's table", async () => {
    assert.match(imageId, /^sha256:[0-9a-f]{64}$/);
    const table = await strataOk(d, ['images']);
    const [header, ...rows] = table.trimEnd().split('\n');
    assert.match(header, /^REPOSITORY {3,}TAG {7}IMAGE ID {7}CREATED {2,}SIZE$/);
    const row = rows.find((r) => r.startsWith('bb '));
    assert.ok(row, table);
    assert.match(row, new RegExp(`^bb\\s+latest\\s+${imageId.slice(7, 19)}\\s+.* ago\\s+\\d(\\.\\d+)?MB$`));
    assert.equal((await strataOk(d, ['images', '-q'])).trim(), imageId.slice(7, 19));
    assert.equal((await strataOk(d, ['image', 'ls', '--no-trunc', '-q'])).trim(), imageId);
    assert.equal(
      (await strataOk(d, ['images', '--format', '{{.Repository}}:{{.Tag}}', 'bb'])).trim(),
      'bb:latest',
    );
  });

  test('import applies --change and --message', async () => {
    const id = (
      await strataOk(
        d,
        [
          'import',
          '-c',
          'ENV GREETING=hello',
          '-c',
          'CMD ["sh", "-c", "echo $GREETING"]',
          '-m',
          'from the cli',
          '-',
          'greet:v1',
        ],
        {
          input: await busyboxTar(),
        },
      )
    ).trim();
    assert.match(id, /^sha256:/);
    assert.equal(await strataOk(d, ['run', '--rm', 'greet:v1']), 'hello\n');
    const history = await strataOk(d, ['history', 'greet:v1']);
    assert.match(history.split('\n')[0], /^IMAGE {10}CREATED {2,}CREATED BY {2,}SIZE {6}COMMENT$/);
    assert.match(history, /from the cli/);
    assert.equal(
      (await strataOk(d, ['image', 'inspect', '-f', '{{json .Config.Cmd}} {{.Comment}}', 'greet:v1'])).trim(),
      '["sh","-c","echo $GREETING"] from the cli',
    );
  });

  test('tag, rmi and an image in use', async () => {
    await strataOk(d, ['tag', 'bb', 'mytag']);
    await strataOk(d, ['tag', 'bb:latest', '127.0.0.1:5055/bb:v1']);
    const names = (await strataOk(d, ['images', '--format', '{{.Repository}}:{{.Tag}} {{.ID}}']))
      .trim()
      .split('\n');
    assert.ok(names.includes(`mytag:latest ${imageId.slice(7, 19)}`), names.join('\n'));
    assert.ok(names.includes(`127.0.0.1:5055/bb:v1 ${imageId.slice(7, 19)}`), names.join('\n'));
    assert.equal(
      await strataOk(d, ['rmi', 'mytag', '127.0.0.1:5055/bb:v1']),
      'Untagged: mytag:latest\nUntagged: 127.0.0.1:5055/bb:v1\n',
    );
    const missing = await d.strata(['rmi', 'nosuch:tag']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^Error response from daemon: .*nosuch/);

    await strataOk(d, ['tag', 'greet:v1', 'greet:keep']);
    await strataOk(d, ['create', '--name', 'user', 'greet:v1']);
    assert.equal(
      await strataOk(d, ['rmi', 'greet:keep']),
      'Untagged: greet:keep\n',
      'one of two tags is only untagged',
    );
    const refused = await d.strata(['rmi', 'greet:v1']);
    assert.equal(refused.code, 1, describeResult(refused));
    assert.match(refused.stderr, /^Error response from daemon: /);
    assert.equal((await d.strata(['image', 'inspect', 'greet:v1'])).code, 0, 'an image in use stays');
    await strataOk(d, ['rm', 'user']);
  });

  test('save -o / load -i and save | load round-trip an image', async () => {
    const file = path.join(work, 'bb.tar');
    await strataOk(d, ['save', '-o', file, 'bb:latest']);
    assert.ok(fs.statSync(file).size > 1_000_000);
    await strataOk(d, ['tag', 'bb', 'copy:v1']);
    await strataOk(d, ['rmi', 'copy:v1']);
    const loaded = await strataOk(d, ['load', '-i', file]);
    assert.match(loaded, /Loaded image: bb:latest/);
    const piped = await run(
      'sh',
      [
        '-c',
        `"${process.execPath}" "${STRATA_BIN}" save bb:latest | "${process.execPath}" "${STRATA_BIN}" load`,
      ],
      { env: { STRATA_HOST: `unix://${d.socket}` } },
    );
    assert.equal(piped.code, 0, describeResult(piped));
    assert.match(piped.stdout, /Loaded image: bb:latest/);
    const tty = await d.strata(['load', '-i', path.join(work, 'does-not-exist.tar')]);
    assert.equal(tty.code, 1);
    assert.match(tty.stderr, /no such file or directory/);
  });

  test('image prune removes dangling images only', async () => {
    const dangling = (
      await strataOk(d, ['import', '-', 'dangling:v1'], { input: await busyboxTar() })
    ).trim();
    await strataOk(d, ['tag', 'dangling:v1', 'dangling:v2']);
    await strataOk(d, ['rmi', 'dangling:v1']);
    const out = await strataOk(d, ['image', 'prune', '-f']);
    assert.match(out, /Total reclaimed space: /);
    assert.equal((await d.strata(['image', 'inspect', 'dangling:v2'])).code, 0, 'a tagged image survives');
    await strataOk(d, ['rmi', 'dangling:v2']);
    assert.equal((await d.strata(['image', 'inspect', dangling])).code, 1);
  });

  test("pull reports the daemon's error for an unreachable registry", async () => {
    const r = await d.strata(['pull', '127.0.0.1:1/nothing:v1'], { timeoutMs: 60_000 });
    assert.equal(r.code, 1, describeResult(r));
    assert.ok(r.stderr.length > 0);
  });

  test('version and info show the client and the server', async () => {
    const version = await strataOk(d, ['version']);
    assert.match(version, /^Client:\n Version: +0\.1\.0\n API version: +1\.41\n/);
    assert.match(
      version,
      /\nServer:\n Engine:\n {2}Version: +\S+\n {2}API version: +1\.41 \(minimum version [\d.]+\)\n/,
    );
    assert.equal((await strataOk(d, ['version', '--format', '{{.Server.ApiVersion}}'])).trim(), '1.41');
    const info = await strataOk(d, ['info']);
    assert.match(
      info,
      /\nServer:\n Containers: \d+\n {2}Running: \d+\n {2}Paused: \d+\n {2}Stopped: \d+\n Images: \d+\n/,
    );
    assert.match(info, /\n Root Dir: .+\n/);
    assert.equal((await strataOk(d, ['info', '--format', '{{.OSType}}'])).trim(), 'linux');
  });

  test('an explicit -H or STRATA_HOST that does not answer is an error, never a new daemon', async () => {
    const nowhere = path.join(work, 'nowhere.sock');
    const r = await run(process.execPath, [STRATA_BIN, '-H', `unix://${nowhere}`, 'ps'], {
      env: { STRATA_HOST: '' },
    });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr.trim(),
      `Cannot connect to the Strata daemon at unix://${nowhere}. Is the strata daemon running?`,
    );
    const viaEnv = await run(process.execPath, [STRATA_BIN, 'images'], {
      env: { STRATA_HOST: `unix://${nowhere}` },
    });
    assert.equal(viaEnv.code, 1);
    assert.match(viaEnv.stderr, /Cannot connect to the Strata daemon/);
    assert.equal(fs.existsSync(nowhere), false);
    // -H wins over STRATA_HOST.
    const both = await run(
      process.execPath,
      [STRATA_BIN, '-H', `unix://${d.socket}`, 'version', '-f', '{{.Server.ApiVersion}}'],
      {
        env: { STRATA_HOST: `unix://${nowhere}` },
      },
    );
    assert.equal(both.stdout.trim(), '1.41', describeResult(both));
  });
});

describe('strata CLI: starting the daemon on demand', () => {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-autostart-'));
  const socket = path.join(base, 'run', 'strata.sock');
  const root = path.join(base, 'root');
  const logFile = path.join(base, 'daemon.log');
  let daemonPid: number | undefined;

  after(async () => {
    if (daemonPid) {
      try {
        process.kill(daemonPid, 'SIGTERM');
      } catch {
        // already gone
      }
      for (let i = 0; i < 100 && (await canConnect(socket)); i++)
        await new Promise((r) => setTimeout(r, 100));
    }
    fs.rmSync(base, { recursive: true, force: true });
  });

  test('starts a detached daemon for the default socket, notes it once, then reuses it', async () => {
    const saved = process.env.STRATA_HOST;
    delete process.env.STRATA_HOST;
    const notes: string[] = [];
    try {
      const client = await connectToDaemon({
        defaultSocket: socket,
        daemonArgs: ['--root', root],
        logFile,
        notify: (line) => notes.push(line),
      });
      const info = await client.json<{ DockerRootDir?: string }>('GET', '/info');
      client.close();
      assert.equal(notes.length, 1);
      assert.match(
        notes[0],
        new RegExp(`^Started the Strata daemon \\(pid (\\d+), log ${logFile.replaceAll('.', '\\.')}\\)$`),
      );
      daemonPid = Number(/pid (\d+)/.exec(notes[0])?.[1]);
      assert.ok(await canConnect(socket));
      assert.ok(fs.statSync(logFile).size > 0, 'the daemon logs to the file');
      assert.ok(
        info.DockerRootDir === undefined || info.DockerRootDir === root,
        `root ${info.DockerRootDir}`,
      );

      const again = await connectToDaemon({
        defaultSocket: socket,
        daemonArgs: ['--root', root],
        logFile,
        notify: (l) => notes.push(l),
      });
      again.close();
      assert.equal(notes.length, 1, 'a running daemon is reused');
      assert.equal(fs.existsSync(path.join(base, 'run', 'autostart.lock')), false);
    } finally {
      if (saved !== undefined) process.env.STRATA_HOST = saved;
    }
  });
});
