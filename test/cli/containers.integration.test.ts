import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { run, STRATA_BIN, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { describeResult, eventually, importBusyboxWithStrata, strataOk } from './helpers.js';

/** The `strata` command against a real Strata daemon: containers. */
describe('strata CLI: containers', () => {
  let d: TestDaemon;
  let work: string;

  before(async () => {
    d = await startDaemon();
    await importBusyboxWithStrata(d);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cli-it-'));
  });

  after(async () => {
    await d?.cleanup();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('run prints output, keeps stderr apart and exits with the container status', async () => {
    const r = await d.strata(['run', '--rm', 'bb:latest', 'sh', '-c', 'echo hi; echo oops >&2; exit 3']);
    assert.equal(r.code, 3, describeResult(r));
    assert.equal(r.stdout, 'hi\n');
    assert.equal(r.stderr, 'oops\n');
    assert.equal((await strataOk(d, ['ps', '-aq'])).trim(), '', '--rm removed the container');
  });

  test('run -i forwards piped stdin and ends it', async () => {
    const r = await d.strata(['run', '-i', '--rm', 'bb', 'cat'], { input: 'x\nsecond line\n' });
    assert.equal(r.code, 0, describeResult(r));
    assert.equal(r.stdout, 'x\nsecond line\n');
  });

  test('run applies -e, --env-file, -w, -u, --hostname, --entrypoint and -l', async () => {
    const envFile = path.join(work, 'env');
    fs.writeFileSync(envFile, 'FROM_FILE=yes\n# comment\n');
    const out = await strataOk(d, [
      'run',
      '--rm',
      '-e',
      'A=1',
      '-e',
      'B=two words',
      '--env-file',
      envFile,
      '-w',
      '/tmp',
      '-u',
      '65534',
      '--hostname',
      'boxy',
      'bb',
      'sh',
      '-c',
      'echo "$A|$B|$FROM_FILE|$(pwd)|$(id -u)|$(hostname)"',
    ]);
    assert.equal(out, '1|two words|yes|/tmp|65534|boxy\n');
    assert.equal(await strataOk(d, ['run', '--rm', '--entrypoint', 'echo', 'bb', '-n', 'a', 'b']), 'a b');
    const id = (
      await strataOk(d, ['run', '-d', '-l', 'tier=front', '--name', 'labelled', 'bb', 'true'])
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.equal(
      (await strataOk(d, ['inspect', '-f', '{{index .Config.Labels "tier"}}', 'labelled'])).trim(),
      'front',
    );
    await strataOk(d, ['rm', '-f', 'labelled']);
  });

  test('run failures exit like docker: 127 for a missing command, 125 for bad flags and missing images', async () => {
    const missing = await d.strata(['run', '--rm', 'bb', 'nonexistentcmd']);
    assert.equal(missing.code, 127, describeResult(missing));
    assert.match(missing.stderr, /Error response from daemon: .*nonexistentcmd/);
    const badFlag = await d.strata(['run', '--bogus', 'bb']);
    assert.equal(badFlag.code, 125);
    assert.match(badFlag.stderr, /unknown flag: --bogus/);
    const badValue = await d.strata(['run', '-m', '1q', 'bb']);
    assert.equal(badValue.code, 125);
    assert.match(badValue.stderr, /invalid argument "1q" for "-m, --memory" flag/);
    const noImage = await d.strata(['run', '--rm', '127.0.0.1:1/nosuchimage:v9', 'true']);
    assert.equal(noImage.code, 125, describeResult(noImage));
    assert.match(noImage.stderr, /Unable to find image '127\.0\.0\.1:1\/nosuchimage:v9' locally/);
    const noArgs = await d.strata(['rm']);
    assert.equal(noArgs.code, 1);
    assert.match(noArgs.stderr, /'strata rm' requires at least 1 argument/);
  });

  test('a detached container shows in ps, logs, exec, top and inspect', async () => {
    const id = (
      await strataOk(d, [
        'run',
        '-d',
        '--name',
        'web',
        'bb',
        'sh',
        '-c',
        'echo started; echo warn >&2; while true; do sleep 1; done',
      ])
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);

    const table = await strataOk(d, ['ps']);
    const [header, ...rows] = table.trimEnd().split('\n');
    assert.match(header, /^CONTAINER ID {3}IMAGE {5,}COMMAND {2,}CREATED {2,}STATUS {2,}PORTS {2,}NAMES$/);
    const row = rows.find((r) => r.startsWith(id.slice(0, 12)));
    assert.ok(row, table);
    assert.match(row, /\bbb\s+"sh -c [^"]{6,13}…"\s+.*Up .*\s+web$/);
    assert.equal((await strataOk(d, ['ps', '-q', '--filter', 'name=web'])).trim(), id.slice(0, 12));
    assert.equal((await strataOk(d, ['ps', '-q', '--no-trunc', '--filter', 'name=web'])).trim(), id);
    assert.equal(await strataOk(d, ['ps', '-q', '--filter', 'name=nosuch']), '');
    assert.match(
      await strataOk(d, ['ps', '--format', '{{.Names}}|{{.State}}|{{.Status}}']),
      /^web\|running\|Up /m,
    );
    const json = JSON.parse(
      (await strataOk(d, ['ps', '--filter', 'name=web', '--format', '{{json .}}'])).trim(),
    ) as Record<string, string>;
    assert.equal(json.Names, 'web');
    assert.equal(json.ID, id.slice(0, 12));

    await eventually(async () => {
      const logs = await d.strata(['logs', 'web']);
      assert.equal(logs.stdout, 'started\n');
      assert.equal(logs.stderr, 'warn\n');
    });
    assert.match(
      await strataOk(d, ['logs', '-t', 'web']),
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z started\n$/,
    );

    const exit4 = await d.strata(['exec', 'web', 'sh', '-c', 'echo out; echo err >&2; exit 4']);
    assert.equal(exit4.code, 4, describeResult(exit4));
    assert.equal(exit4.stdout, 'out\n');
    assert.equal(exit4.stderr, 'err\n');
    assert.equal(
      await strataOk(d, ['exec', '-i', 'web', 'cat'], { input: 'through exec\n' }),
      'through exec\n',
    );
    assert.equal(
      await strataOk(d, [
        'exec',
        '-e',
        'X=9',
        '-w',
        '/tmp',
        '-u',
        '65534',
        'web',
        'sh',
        '-c',
        'echo $X $(pwd) $(id -u)',
      ]),
      '9 /tmp 65534\n',
    );
    await strataOk(d, ['exec', '-d', 'web', 'touch', '/tmp/flag']);
    await eventually(async () => assert.equal((await d.strata(['exec', 'web', 'ls', '/tmp/flag'])).code, 0));
    const notFound = await d.strata(['exec', 'web', 'nosuchbinary']);
    assert.ok(notFound.code === 126 || notFound.code === 127, describeResult(notFound));

    const top = await strataOk(d, ['top', 'web']);
    assert.match(top.split('\n')[0], /PID/);
    assert.match(top, /sleep|sh -c/);

    assert.equal(
      (await strataOk(d, ['inspect', '-f', '{{.State.Status}} {{.Name}}', 'web'])).trim(),
      'running /web',
    );
    const inspected = JSON.parse(await strataOk(d, ['container', 'inspect', 'web'])) as { Id: string }[];
    assert.equal(inspected[0].Id, id);
    const missing = await d.strata(['inspect', 'web', 'nosuchthing']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No such object: nosuchthing/);
    assert.equal((JSON.parse(missing.stdout) as unknown[]).length, 1, 'found objects are still printed');
  });

  test('stop, start, restart, pause, unpause, kill, wait and rm', async () => {
    await strataOk(d, ['run', '-d', '--name', 'life', 'bb', 'sleep', '1000']);
    const status = async (): Promise<string> =>
      (await strataOk(d, ['inspect', '-f', '{{.State.Status}}', 'life'])).trim();

    assert.equal(await strataOk(d, ['pause', 'life']), 'life\n');
    assert.equal(await status(), 'paused');
    assert.match(await strataOk(d, ['ps', '--filter', 'name=life', '--format', '{{.Status}}']), /\(Paused\)/);
    assert.equal(await strataOk(d, ['unpause', 'life']), 'life\n');
    assert.equal(await status(), 'running');

    assert.equal(await strataOk(d, ['stop', '-t', '1', 'life']), 'life\n');
    assert.equal(await status(), 'exited');
    assert.match(
      await strataOk(d, ['ps', '-a', '--filter', 'name=life', '--format', '{{.Status}}']),
      /^Exited \(\d+\) .* ago$/m,
    );
    assert.equal(await strataOk(d, ['start', 'life']), 'life\n');
    assert.equal(await status(), 'running');
    assert.equal(await strataOk(d, ['restart', '-t', '1', 'life']), 'life\n');
    assert.equal(await status(), 'running');

    const rmRunning = await d.strata(['rm', 'life']);
    assert.equal(rmRunning.code, 1);
    assert.match(rmRunning.stderr, /^Error response from daemon: .*running/);

    const waiter = d.strata(['wait', 'life']);
    assert.equal(await strataOk(d, ['kill', '-s', 'KILL', 'life']), 'life\n');
    const waited = await waiter;
    assert.equal(waited.stdout.trim(), '137', describeResult(waited));
    const killStopped = await d.strata(['kill', 'life']);
    assert.equal(killStopped.code, 1);
    assert.match(killStopped.stderr, /Error response from daemon:/);
    assert.equal(await strataOk(d, ['rm', 'life']), 'life\n');
    const gone = await d.strata(['rm', 'life']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /No such container: life/);
  });

  test('create, start -a, wait, rename, diff, export and container prune', async () => {
    const id = (
      await strataOk(d, [
        'create',
        '--name',
        'c1',
        'bb',
        'sh',
        '-c',
        'echo created-run; echo x > /newfile; exit 2',
      ])
    ).trim();
    assert.match(id, /^[0-9a-f]{64}$/);
    assert.match(
      await strataOk(d, ['ps', '-a', '--filter', 'name=c1', '--format', '{{.Status}}']),
      /^Created$/m,
    );
    const started = await d.strata(['start', '-a', 'c1']);
    assert.equal(started.code, 2, describeResult(started));
    assert.equal(started.stdout, 'created-run\n');
    assert.equal(await strataOk(d, ['wait', 'c1']), '2\n');
    await strataOk(d, ['rename', 'c1', 'c2']);
    assert.equal((await strataOk(d, ['inspect', '-f', '{{.Name}}', 'c2'])).trim(), '/c2');
    assert.match(await strataOk(d, ['diff', 'c2']), /^A \/newfile$/m);
    const tarFile = path.join(work, 'c2.tar');
    await strataOk(d, ['export', '-o', tarFile, 'c2']);
    const listing = spawnSync('tar', ['-tf', tarFile], { encoding: 'utf8' });
    assert.match(listing.stdout, /^(\.\/)?newfile$/m);
    assert.match(listing.stdout, /^(\.\/)?bin\/busybox$/m);
    const viaStdout = await run(
      'sh',
      ['-c', `"${process.execPath}" "${STRATA_BIN}" export c2 | tar -t | grep -c newfile`],
      {
        env: { STRATA_HOST: `unix://${d.socket}` },
      },
    );
    assert.equal(viaStdout.stdout.trim(), '1');

    const pruned = await strataOk(d, ['container', 'prune', '-f']);
    assert.match(pruned, new RegExp(`^Deleted Containers:\\n(.*\\n)*${id}\\n`));
    assert.match(pruned, /Total reclaimed space: /);
    assert.equal((await d.strata(['inspect', 'c2'])).code, 1);
  });

  test('attach follows a running container to its exit status', async () => {
    await strataOk(d, ['run', '-d', '--name', 'att', 'bb', 'sh', '-c', 'sleep 4; echo attached-out; exit 4']);
    const r = await d.strata(['attach', 'att']);
    assert.equal(r.code, 4, describeResult(r));
    assert.equal(r.stdout, 'attached-out\n');
    const stopped = await d.strata(['attach', 'att']);
    assert.equal(stopped.code, 1);
    assert.match(stopped.stderr, /You cannot attach to a stopped container/);
    await strataOk(d, ['rm', 'att']);
  });

  test('logs --tail, --since, --until and -f', async () => {
    await strataOk(d, ['run', '--name', 'lg', 'bb', 'sh', '-c', 'echo one; echo two; echo three']);
    assert.equal(await strataOk(d, ['logs', 'lg']), 'one\ntwo\nthree\n');
    assert.equal(await strataOk(d, ['logs', '--tail', '2', 'lg']), 'two\nthree\n');
    assert.equal(await strataOk(d, ['logs', '--since', '10m', 'lg']), 'one\ntwo\nthree\n');
    assert.equal(await strataOk(d, ['logs', '--until', '2000-01-01T00:00:00Z', 'lg']), '');
    await strataOk(d, ['run', '-d', '--name', 'lgf', 'bb', 'sh', '-c', 'echo a; sleep 1; echo b']);
    const followed = await d.strata(['logs', '-f', 'lgf'], { timeoutMs: 20_000 });
    assert.equal(followed.code, 0, describeResult(followed));
    assert.equal(followed.stdout, 'a\nb\n', 'follow ends when the container exits');
    await strataOk(d, ['rm', 'lg', 'lgf']);
  });

  test('cp copies files and directories both ways', async () => {
    await strataOk(d, [
      'run',
      '-d',
      '--name',
      'cpc',
      'bb',
      'sh',
      '-c',
      'mkdir -p /data/sub && echo inside > /data/sub/f && sleep 1000',
    ]);
    await eventually(async () =>
      assert.equal((await d.strata(['exec', 'cpc', 'test', '-f', '/data/sub/f'])).code, 0),
    );
    await strataOk(d, ['cp', 'cpc:/data', path.join(work, 'out')]);
    assert.equal(fs.readFileSync(path.join(work, 'out', 'sub', 'f'), 'utf8'), 'inside\n');
    fs.mkdirSync(path.join(work, 'into'));
    await strataOk(d, ['cp', 'cpc:/data', path.join(work, 'into')]);
    assert.equal(fs.readFileSync(path.join(work, 'into', 'data', 'sub', 'f'), 'utf8'), 'inside\n');
    await strataOk(d, ['cp', 'cpc:/data/sub/f', path.join(work, 'single.txt')]);
    assert.equal(fs.readFileSync(path.join(work, 'single.txt'), 'utf8'), 'inside\n');

    fs.writeFileSync(path.join(work, 'in.txt'), 'from host\n');
    fs.mkdirSync(path.join(work, 'tree', 'deep'), { recursive: true });
    fs.writeFileSync(path.join(work, 'tree', 'deep', 'x'), 'deep file\n');
    await strataOk(d, ['cp', path.join(work, 'in.txt'), 'cpc:/tmp/']);
    assert.equal(await strataOk(d, ['exec', 'cpc', 'cat', '/tmp/in.txt']), 'from host\n');
    await strataOk(d, ['cp', path.join(work, 'in.txt'), 'cpc:/tmp/renamed.txt']);
    assert.equal(await strataOk(d, ['exec', 'cpc', 'cat', '/tmp/renamed.txt']), 'from host\n');
    await strataOk(d, ['cp', path.join(work, 'tree'), 'cpc:/tmp/']);
    assert.equal(await strataOk(d, ['exec', 'cpc', 'cat', '/tmp/tree/deep/x']), 'deep file\n');

    const tarOut = await run(
      'sh',
      ['-c', `"${process.execPath}" "${STRATA_BIN}" cp cpc:/data/sub/f - | tar -t`],
      {
        env: { STRATA_HOST: `unix://${d.socket}` },
      },
    );
    assert.equal(tarOut.stdout.trim(), 'f');
    const missing = await d.strata(['cp', 'cpc:/nonexist', path.join(work, 'x')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Error response from daemon: .*nonexist/);
    await strataOk(d, ['rm', '-f', 'cpc']);
  });

  test('events replays container events with --since/--until, filters and formats', async () => {
    await strataOk(d, ['run', '--rm', '--name', 'evc', '-l', 'lab=1', 'bb', 'true']);
    const lines = await strataOk(d, [
      'events',
      '--since',
      '1m',
      '--until',
      '0s',
      '--filter',
      'container=evc',
    ]);
    assert.match(
      lines,
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}(Z|[+-]\d\d:\d\d) container create [0-9a-f]{64} \(.*name=evc.*\)$/m,
    );
    assert.match(lines, / container die [0-9a-f]{64} \(.*exitCode=0.*\)$/m);
    const actions = await strataOk(d, [
      'events',
      '--since',
      '1m',
      '--until',
      '0s',
      '--filter',
      'container=evc',
      '--format',
      '{{.Action}}',
    ]);
    const list = actions.trim().split('\n');
    for (const action of ['create', 'start', 'die', 'destroy']) assert.ok(list.includes(action), actions);
    const json = await strataOk(d, [
      'events',
      '--since',
      '1m',
      '--until',
      '0s',
      '--filter',
      'event=destroy',
      '--format',
      '{{json .}}',
    ]);
    const event = JSON.parse(json.trim().split('\n').at(-1)!) as {
      Action: string;
      Actor: { Attributes: Record<string, string> };
    };
    assert.equal(event.Action, 'destroy');
    assert.equal(event.Actor.Attributes.name, 'evc');
  });
});

function tmux(args: string[]): string {
  const r = spawnSync('tmux', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

async function waitForPane(session: string, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  return eventually(async () => {
    const text = tmux(['capture-pane', '-p', '-t', session]);
    assert.match(text, pattern);
    return text;
  }, timeoutMs);
}

const hasTmux = spawnSync('tmux', ['-V']).status === 0;

describe('strata CLI: interactive terminals', { skip: hasTmux ? false : 'tmux is not installed' }, () => {
  let d: TestDaemon;
  const sessions: string[] = [];

  before(async () => {
    d = await startDaemon();
    await importBusyboxWithStrata(d);
  });

  after(async () => {
    for (const s of sessions) spawnSync('tmux', ['kill-session', '-t', s]);
    await d?.cleanup();
  });

  function startSession(name: string, strataArgs: string): void {
    sessions.push(name);
    const command = `STRATA_HOST=unix://${d.socket} "${process.execPath}" "${STRATA_BIN}" ${strataArgs}; echo "EXIT=$?"; sleep 60`;
    tmux(['new-session', '-d', '-s', name, '-x', '120', '-y', '30', command]);
  }

  test('run -it gives a working shell with the terminal size and its exit status', async () => {
    const session = `strata-it-${process.pid}`;
    startSession(session, 'run -it --rm --name itc bb sh');
    await waitForPane(session, /^\/ # ?$/m);
    await new Promise((r) => setTimeout(r, 300));
    tmux(['send-keys', '-t', session, 'echo hello-$((6*7))', 'Enter']);
    await waitForPane(session, /^hello-42\s*$/m);
    tmux(['send-keys', '-t', session, 'stty size; tty', 'Enter']);
    await waitForPane(session, /^30 120\s*$/m);
    await waitForPane(session, /^\/dev\/pts\/\d+\s*$/m);
    tmux(['resize-window', '-t', session, '-x', '100', '-y', '25']);
    await new Promise((r) => setTimeout(r, 300));
    tmux(['send-keys', '-t', session, 'clear; stty size', 'Enter']);
    await waitForPane(session, /^25 100\s*\n\/ # ?$/m);
    // ash asks the terminal for the cursor position after each prompt; typing before the answer
    // can swallow the echo, so give it a moment.
    await new Promise((r) => setTimeout(r, 300));
    tmux(['send-keys', '-t', session, 'exit 5', 'Enter']);
    await waitForPane(session, /EXIT=5$/m);
    assert.equal((await d.strata(['inspect', 'itc'])).code, 1, '--rm removed it');
  });

  test('exec -it runs an interactive shell in a running container', async () => {
    await strataOk(d, ['run', '-d', '--name', 'host', 'bb', 'sleep', '1000']);
    const session = `strata-exec-it-${process.pid}`;
    startSession(session, 'exec -it host sh');
    await waitForPane(session, /^\/ # ?$/m);
    await new Promise((r) => setTimeout(r, 300));
    tmux(['send-keys', '-t', session, 'echo in-exec-$((2+3)); exit 7', 'Enter']);
    await waitForPane(session, /^in-exec-5\s*$/m);
    await waitForPane(session, /EXIT=7$/m);
    await strataOk(d, ['rm', '-f', 'host']);
  });

  test('-it without a terminal is refused', async () => {
    const r = await d.strata(['run', '-it', '--rm', 'bb', 'true'], { input: '' });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the input device is not a TTY/);
  });
});
