import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { importBusybox, startDaemon, type TestDaemon } from '../helpers/daemon.js';

function makeTar(dir: string, entries: string[]): Buffer {
  const r = spawnSync('tar', ['-C', dir, '-cf', '-', '-P', ...entries], { maxBuffer: 16 << 20 });
  if (r.status !== 0) throw new Error(r.stderr.toString());
  return r.stdout;
}

describe('docker cp, export and diff', () => {
  let d: TestDaemon;
  let work: string;
  before(async () => {
    d = await startDaemon();
    await importBusybox(d);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-cp-'));
  });
  after(async () => {
    await d?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('copy files and directories both ways, on running and stopped containers', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'cpr',
      'bb',
      'sh',
      '-c',
      'mkdir -p /data/sub && echo inside > /data/sub/f && sleep 1000',
    ]);
    await new Promise((r) => setTimeout(r, 300));
    await d.dockerOk(['cp', 'cpr:/data', path.join(work, 'out')]);
    assert.equal(fs.readFileSync(path.join(work, 'out', 'sub', 'f'), 'utf8'), 'inside\n');
    fs.writeFileSync(path.join(work, 'in.txt'), 'from host\n');
    await d.dockerOk(['cp', path.join(work, 'in.txt'), 'cpr:/tmp/']);
    assert.equal(await d.dockerOk(['exec', 'cpr', 'cat', '/tmp/in.txt']), 'from host');
    await d.dockerOk(['cp', path.join(work, 'in.txt'), 'cpr:/tmp/renamed.txt']);
    assert.equal(await d.dockerOk(['exec', 'cpr', 'cat', '/tmp/renamed.txt']), 'from host');
    const missing = await d.docker(['cp', 'cpr:/nonexist', path.join(work, 'x')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /Could not find the file \/nonexist in container cpr/);
    await d.dockerOk(['stop', '-t', '0', 'cpr']);
    await d.dockerOk(['cp', path.join(work, 'in.txt'), 'cpr:/stopped.txt']);
    await d.dockerOk(['cp', 'cpr:/stopped.txt', path.join(work, 'back.txt')]);
    assert.equal(fs.readFileSync(path.join(work, 'back.txt'), 'utf8'), 'from host\n');
    const diff = await d.dockerOk(['diff', 'cpr']);
    assert.match(diff, /^A \/stopped\.txt$/m);
    assert.match(diff, /^A \/data$/m);
    assert.match(diff, /^C \/tmp$/m);
    await d.dockerOk(['rm', 'cpr']);
    assert.ok(
      !fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(d.root),
      'no mount left after cp on a stopped container',
    );
  });

  test('copy into a created container (before start)', async () => {
    await d.dockerOk(['create', '--name', 'cpc', 'bb', 'cat', '/copied.txt']);
    await d.dockerOk(['cp', path.join(work, 'in.txt'), 'cpc:/copied.txt']);
    const r = await d.docker(['start', '-a', 'cpc']);
    assert.equal(r.stdout, 'from host\n');
    await d.dockerOk(['rm', 'cpc']);
  });

  test('a tar with ../, absolute paths, or links pointing out never writes outside the container', async () => {
    await d.dockerOk([
      'run',
      '-d',
      '--name',
      'evil',
      'bb',
      'sh',
      '-c',
      'ln -s / /escape; ln -s /etc /etc-link; sleep 1000',
    ]);
    await new Promise((r) => setTimeout(r, 300));
    const marker = `strata-escape-${process.pid}`;
    const src = path.join(work, 'evil');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'payload'), 'pwned\n');
    const hostTarget = path.join(os.tmpdir(), marker);
    const attempts: Buffer[] = [];
    // ../ climbing out of the target directory
    attempts.push(
      spawnSync('tar', [
        '-C',
        src,
        '-cf',
        '-',
        '--transform',
        `s,^payload,../../../../../..${hostTarget},`,
        'payload',
      ]).stdout,
    );
    // absolute path
    attempts.push(
      spawnSync('tar', ['-C', src, '-cf', '-', '-P', '--transform', `s,^payload,${hostTarget},`, 'payload'])
        .stdout,
    );
    // through the container's own symlink to /
    attempts.push(
      spawnSync('tar', ['-C', src, '-cf', '-', '--transform', `s,^payload,escape${hostTarget},`, 'payload'])
        .stdout,
    );
    // a symlink created by the tar itself, then a file through it
    fs.symlinkSync(os.tmpdir(), path.join(src, 'lnk'));
    fs.mkdirSync(path.join(src, 'lnkdir'));
    fs.writeFileSync(path.join(src, 'lnkdir', marker), 'pwned\n');
    attempts.push(
      Buffer.concat([
        makeTar(src, ['lnk']).subarray(0, -1024),
        spawnSync('tar', ['-C', src, '-cf', '-', '--transform', 's,^lnkdir,lnk,', `lnkdir/${marker}`]).stdout,
      ]),
    );
    // a hard link to a host file
    attempts.push(spawnSync('tar', ['-C', '/', '-cf', '-', '--hard-dereference', 'etc/hostname']).stdout);
    for (const tar of attempts) {
      const put = await d.api('PUT', '/v1.41/containers/evil/archive?path=%2Ftmp', tar.toString('latin1'));
      assert.ok(put.status === 200 || put.status === 400, `unexpected status ${put.status} ${put.body}`);
      assert.ok(!fs.existsSync(hostTarget), 'a file was written outside the container');
    }
    // a hard link entry pointing at a host path
    const hl = spawnSync('python3', [
      '-c',
      `
import tarfile, io, sys
b = io.BytesIO()
t = tarfile.open(fileobj=b, mode='w')
i = tarfile.TarInfo('hl'); i.type = tarfile.LNKTYPE; i.linkname = '../../../../../../../etc/passwd'
t.addfile(i)
t.close()
sys.stdout.buffer.write(b.getvalue())
`,
    ]).stdout;
    const put = await d.api('PUT', '/v1.41/containers/evil/archive?path=%2Ftmp', hl.toString('latin1'));
    assert.ok(put.status >= 200);
    const st = await d.docker([
      'exec',
      'evil',
      'sh',
      '-c',
      'test -e /tmp/hl && stat -c %h /tmp/hl || echo none',
    ]);
    assert.ok(
      st.stdout.trim() === 'none' || st.stdout.trim() === '1',
      `hard link to a host file was created: ${st.stdout}`,
    );
    assert.equal(fs.statSync('/etc/passwd').nlink, 1);
    await d.dockerOk(['rm', '-f', 'evil']);
  });

  test('export writes the whole file system as a tar', async () => {
    await d.dockerOk(['run', '--name', 'exp', 'bb', 'sh', '-c', 'echo exported > /marker']);
    const tarFile = path.join(work, 'exp.tar');
    await d.dockerOk(['export', '-o', tarFile, 'exp']);
    const list = spawnSync('tar', ['-tf', tarFile]).stdout.toString();
    assert.match(list, /^(\.\/)?marker$/m);
    assert.match(list, /^(\.\/)?bin\/busybox$/m);
    await d.dockerOk(['rm', 'exp']);
  });
});
