import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { InvalidArgument, NotFound } from '../../src/common/errors.js';
import { packEntries, readTarEntries, type TarInputEntry } from '../../src/common/tar.js';
import { lgetxattr, lsetxattr, lutimesNs } from '../../src/native/index.js';
import {
  archiveFromRoot,
  containerAbsPath,
  exportRoot,
  extractArchiveToRoot,
  formatGoTime,
  statInRoot,
} from '../../src/snapshots/archive.js';
import { TempDir } from './helpers.js';

let tmp: TempDir;
let root = '';
const CAPABILITY = Buffer.from('0100000200c00000000000000000000000000000', 'hex');

function names(entries: Awaited<ReturnType<typeof readTarEntries>>): string[] {
  return entries.map((e) => e.header.name);
}

before(() => {
  tmp = new TempDir('archive');
  root = tmp.join('rootfs');
  const r = (p: string) => path.join(root, p);
  fs.mkdirSync(r('etc/conf.d'), { recursive: true });
  fs.writeFileSync(r('etc/passwd'), 'container passwd\n');
  fs.writeFileSync(r('etc/conf.d/app.conf'), 'x=1\n');
  fs.mkdirSync(r('tmp'));
  fs.chmodSync(r('tmp'), 0o1777);
  fs.writeFileSync(r('suid'), 'elf');
  fs.chmodSync(r('suid'), 0o4755);
  lsetxattr(r('suid'), 'security.capability', CAPABILITY);
  fs.symlinkSync('/etc', r('etclink'));
  fs.symlinkSync('/', r('evil'));
  fs.symlinkSync('/nowhere/at/all', r('dangling'));
  fs.symlinkSync('../../../../../../../../../etc/passwd', r('climb'));
  fs.writeFileSync(r('h1'), 'hard');
  fs.linkSync(r('h1'), r('etc/h2'));
  lutimesNs(r('etc/passwd'), 0n, 1_700_000_000_123_456_789n);
});
after(() => tmp.cleanup());

describe('containerAbsPath and formatGoTime', () => {
  test('keep a trailing /. or /, as dockerd does', () => {
    assert.equal(containerAbsPath('etc'), '/etc');
    assert.equal(containerAbsPath('/etc/../etc//passwd'), '/etc/passwd');
    assert.equal(containerAbsPath('/etc/'), '/etc/');
    assert.equal(containerAbsPath('/etc/.'), '/etc/.');
    assert.equal(containerAbsPath('/'), '/');
    assert.equal(containerAbsPath('.'), '/.');
  });

  test('RFC 3339 with nanoseconds', () => {
    assert.equal(formatGoTime(1_700_000_000_123_456_789n), '2023-11-14T22:13:20.123456789Z');
    assert.equal(formatGoTime(1_700_000_000_500_000_000n), '2023-11-14T22:13:20.5Z');
    assert.equal(formatGoTime(0n), '1970-01-01T00:00:00Z');
  });
});

describe('statInRoot', () => {
  test('a file, a directory, a symlink (not followed), and Go mode bits', () => {
    const passwd = statInRoot(root, '/etc/passwd', 'c1');
    assert.deepEqual(passwd, {
      name: 'passwd',
      size: 'container passwd\n'.length,
      mode: 0o644,
      mtime: '2023-11-14T22:13:20.123456789Z',
      linkTarget: '',
    });
    assert.equal(statInRoot(root, '/tmp').mode, 2 ** 31 + 2 ** 20 + 0o777);
    assert.equal(statInRoot(root, '/suid').mode, 2 ** 23 + 0o755);
    const link = statInRoot(root, '/etclink');
    assert.equal(link.mode, 2 ** 27 + 0o777);
    assert.equal(link.linkTarget, '/etc');
    assert.equal(statInRoot(root, '/etclink/').name, 'etclink');
    assert.ok(statInRoot(root, '/etclink/').mode >= 2 ** 31, 'a directory once the symlink is followed');
    assert.equal(statInRoot(root, '/dangling').linkTarget, '/nowhere/at/all');
    assert.equal(statInRoot(root, '/climb').linkTarget, '/etc/passwd');
    assert.equal(statInRoot(root, '/').name, '/');
  });

  test('paths through container symlinks stay in the container', () => {
    // /evil -> / : on the host this would be the host's /etc/passwd
    assert.equal(statInRoot(root, '/evil/etc/passwd').size, 'container passwd\n'.length);
    assert.equal(statInRoot(root, '/evil/evil/../etc/passwd').size, 'container passwd\n'.length);
  });

  test('missing paths are NotFound with dockerd’s message', () => {
    assert.throws(
      () => statInRoot(root, '/nope/x', 'c1'),
      (err: unknown) =>
        err instanceof NotFound && err.message === 'Could not find the file /nope/x in container c1',
    );
    assert.throws(() => statInRoot(root, '/etc/passwd/x', 'c1'), NotFound);
    assert.throws(() => statInRoot(root, '/dangling/', 'c1'), NotFound);
  });
});

describe('archiveFromRoot', () => {
  test('a directory is archived under its base name, recursively', async () => {
    const entries = await readTarEntries(archiveFromRoot(root, '/etc'));
    assert.deepEqual(names(entries), ['etc/', 'etc/conf.d/', 'etc/conf.d/app.conf', 'etc/h2', 'etc/passwd']);
    assert.equal(entries.find((e) => e.header.name === 'etc/passwd')?.body.toString(), 'container passwd\n');
  });

  test('/. gives the contents; a file gives one entry; a symlink itself unless followed by /', async () => {
    assert.deepEqual(names(await readTarEntries(archiveFromRoot(root, '/etc/.'))), [
      './',
      './conf.d/',
      './conf.d/app.conf',
      './h2',
      './passwd',
    ]);
    const [suid] = await readTarEntries(archiveFromRoot(root, '/suid'));
    assert.equal(suid.header.name, 'suid');
    assert.equal(suid.header.mode, 0o4755);
    assert.deepEqual(suid.header.xattrs.get('security.capability'), CAPABILITY);
    const link = await readTarEntries(archiveFromRoot(root, '/etclink'));
    assert.deepEqual(
      link.map((e) => [e.header.name, e.header.type, e.header.linkname]),
      [['etclink', 'symlink', '/etc']],
    );
    assert.deepEqual(names(await readTarEntries(archiveFromRoot(root, '/etclink/'))).slice(0, 2), [
      'etclink/',
      'etclink/conf.d/',
    ]);
    // through /evil -> / the container's file, never the host's
    const [passwd] = await readTarEntries(archiveFromRoot(root, '/evil/etc/passwd'));
    assert.equal(passwd.body.toString(), 'container passwd\n');
  });

  test('the root gives entries named from /', async () => {
    const all = names(await readTarEntries(archiveFromRoot(root, '/')));
    assert.equal(all[0], '/');
    assert.ok(all.includes('/etc/passwd'));
  });

  test('NotFound is thrown before streaming', () => {
    assert.throws(() => archiveFromRoot(root, '/missing', 'c1'), NotFound);
  });
});

describe('exportRoot', () => {
  test('the whole tree, names relative, hard links as links', async () => {
    const entries = await readTarEntries(exportRoot(root));
    const byName = new Map(entries.map((e) => [e.header.name, e.header]));
    assert.ok(!byName.has('./') && !byName.has('/'));
    for (const name of ['climb', 'dangling', 'etc/', 'etc/passwd', 'etclink', 'evil', 'h1', 'suid', 'tmp/']) {
      assert.ok(byName.has(name), name);
    }
    // etc/h2 sorts first, so h1 is the link
    assert.equal(byName.get('etc/h2')?.type, 'file');
    assert.equal(byName.get('h1')?.type, 'link');
    assert.equal(byName.get('h1')?.linkname, 'etc/h2');
    assert.equal(byName.get('tmp/')?.mode, 0o1777);
    assert.equal(byName.get('evil')?.linkname, '/');
  });
});

describe('extractArchiveToRoot', () => {
  const tarOf = (entries: TarInputEntry[]) => packEntries(entries);

  test('extracts into a directory; owners are root unless copyUIDGID', async () => {
    fs.mkdirSync(path.join(root, 'dest'));
    await extractArchiveToRoot(
      root,
      '/dest',
      tarOf([
        {
          name: 'app',
          type: 'directory',
          mode: 0o750,
          uid: 1000,
          gid: 1000,
          mtimeNs: 1_600_000_000_000_000_000n,
        },
        { name: 'app/run.sh', type: 'file', mode: 0o4755, uid: 1000, gid: 1000, data: '#!/bin/sh\n' },
        {
          name: 'app/cap',
          type: 'file',
          data: 'x',
          xattrs: new Map([['security.capability', CAPABILITY]]),
        },
        { name: 'app/link', type: 'symlink', linkname: 'run.sh' },
        { name: 'app/hard', type: 'link', linkname: 'app/run.sh' },
        { name: 'app/fifo', type: 'fifo', mode: 0o640 },
      ]),
    );
    const r = (p: string) => path.join(root, 'dest', p);
    const dir = fs.lstatSync(r('app'), { bigint: true });
    assert.equal(dir.mode & 0o7777n, 0o750n);
    assert.equal(dir.uid, 0n);
    assert.equal(dir.mtimeNs, 1_600_000_000_000_000_000n);
    assert.equal(fs.readFileSync(r('app/run.sh'), 'utf8'), '#!/bin/sh\n');
    assert.equal(fs.lstatSync(r('app/run.sh')).mode & 0o7777, 0o4755);
    assert.equal(fs.lstatSync(r('app/run.sh')).uid, 0);
    assert.deepEqual(lgetxattr(r('app/cap'), 'security.capability'), CAPABILITY);
    assert.equal(fs.readlinkSync(r('app/link')), 'run.sh');
    assert.equal(fs.lstatSync(r('app/hard')).ino, fs.lstatSync(r('app/run.sh')).ino);
    assert.ok(fs.lstatSync(r('app/fifo')).isFIFO());
    assert.equal(fs.lstatSync(r('app/fifo')).mode & 0o777, 0o640);

    await extractArchiveToRoot(
      root,
      '/dest',
      tarOf([{ name: 'owned', type: 'file', uid: 1000, gid: 2000, data: 'o' }]),
      { copyUIDGID: true },
    );
    assert.equal(fs.lstatSync(r('owned')).uid, 1000);
    assert.equal(fs.lstatSync(r('owned')).gid, 2000);
  });

  test('replaces files; noOverwriteDirNonDir refuses type changes', async () => {
    fs.mkdirSync(path.join(root, 'dest2/sub'), { recursive: true });
    fs.writeFileSync(path.join(root, 'dest2/file'), 'old');
    await extractArchiveToRoot(root, '/dest2', tarOf([{ name: 'file', type: 'file', data: 'new' }]));
    assert.equal(fs.readFileSync(path.join(root, 'dest2/file'), 'utf8'), 'new');
    await assert.rejects(
      extractArchiveToRoot(root, '/dest2', tarOf([{ name: 'sub', type: 'file', data: 'x' }]), {
        noOverwriteDirNonDir: true,
      }),
      /cannot overwrite directory/,
    );
    await assert.rejects(
      extractArchiveToRoot(root, '/dest2', tarOf([{ name: 'file', type: 'directory' }]), {
        noOverwriteDirNonDir: true,
      }),
      /cannot overwrite non-directory/,
    );
    // without the flag, a directory is replaced by a file
    await extractArchiveToRoot(root, '/dest2', tarOf([{ name: 'sub', type: 'file', data: 'was a dir' }]));
    assert.equal(fs.readFileSync(path.join(root, 'dest2/sub'), 'utf8'), 'was a dir');
  });

  test('a missing destination is NotFound; a file is not an extraction point', async () => {
    await assert.rejects(
      extractArchiveToRoot(root, '/nope', tarOf([{ name: 'x', type: 'file' }]), { containerRef: 'c1' }),
      (err: unknown) =>
        err instanceof NotFound && err.message === 'Could not find the file /nope in container c1',
    );
    await assert.rejects(
      extractArchiveToRoot(root, '/etc/passwd', tarOf([{ name: 'x', type: 'file' }])),
      (err: unknown) =>
        err instanceof InvalidArgument && err.message === 'extraction point is not a directory',
    );
  });

  describe('never writes outside the root', () => {
    const marker = `strata-cp-${randomBytes(6).toString('hex')}`;
    const outside = () => tmp.join('outside');
    before(() => {
      fs.mkdirSync(outside());
      // A container symlink that points at the host directory by its absolute host path.
      fs.symlinkSync(outside(), path.join(root, 'hostpath'));
    });

    const nothingOutside = (passwdLinks: number) => {
      assert.ok(!fs.existsSync(path.join('/etc', marker)));
      assert.ok(!fs.existsSync(path.join('/', marker)));
      assert.ok(!fs.existsSync(tmp.join(marker)));
      assert.deepEqual(fs.readdirSync(outside()), []);
      assert.equal(fs.statSync('/etc/passwd').nlink, passwdLinks);
      assert.notEqual(fs.readFileSync('/etc/passwd', 'utf8'), 'owned\n');
    };

    test('../../etc/x entries are refused', async () => {
      const links = fs.statSync('/etc/passwd').nlink;
      await assert.rejects(
        extractArchiveToRoot(root, '/etc', tarOf([{ name: `../../etc/${marker}`, type: 'file', data: 'x' }])),
        (err: unknown) =>
          err instanceof InvalidArgument && /outside of the extraction directory/.test(err.message),
      );
      await assert.rejects(
        extractArchiveToRoot(root, '/', tarOf([{ name: `../${marker}`, type: 'file', data: 'x' }])),
        InvalidArgument,
      );
      nothingOutside(links);
    });

    test('container symlinks (/evil -> /, absolute host paths) resolve inside the root', async () => {
      const links = fs.statSync('/etc/passwd').nlink;
      await extractArchiveToRoot(
        root,
        '/evil',
        tarOf([
          { name: `evil/etc/${marker}`, type: 'file', data: 'x' },
          { name: `/${marker}`, type: 'file', data: 'abs' },
          // a symlink created by this tar, then a file through it
          { name: 'esc', type: 'symlink', linkname: '../../../../../../..' },
          { name: `esc/etc/${marker}-2`, type: 'file', data: 'y' },
        ]),
      );
      nothingOutside(links);
      assert.equal(fs.readFileSync(path.join(root, 'etc', marker), 'utf8'), 'x');
      assert.equal(fs.readFileSync(path.join(root, marker), 'utf8'), 'abs');
      assert.equal(fs.readFileSync(path.join(root, 'etc', `${marker}-2`), 'utf8'), 'y');

      // hostpath -> <host tmp>/outside does not exist inside the container: refused, as dockerd's
      // MkdirAll in its chroot refuses it, and nothing lands in the host directory.
      await assert.rejects(
        extractArchiveToRoot(root, '/', tarOf([{ name: `hostpath/${marker}`, type: 'file', data: 'h' }])),
        { code: 'ENOENT' },
      );
      await assert.rejects(
        extractArchiveToRoot(root, '/hostpath', tarOf([{ name: marker, type: 'file', data: 'h' }])),
        NotFound,
      );
      // Once the target exists inside the root, the same symlink leads there.
      fs.mkdirSync(path.join(root, outside()), { recursive: true });
      await extractArchiveToRoot(root, '/hostpath', tarOf([{ name: marker, type: 'file', data: 'h' }]));
      assert.equal(fs.readFileSync(path.join(root, outside(), marker), 'utf8'), 'h');
      nothingOutside(links);
    });

    test('hard links to /etc/passwd link the container’s file, through symlinks too', async () => {
      const links = fs.statSync('/etc/passwd').nlink;
      fs.mkdirSync(path.join(root, 'dest3'));
      await assert.rejects(
        extractArchiveToRoot(
          root,
          '/dest3',
          tarOf([{ name: 'pw', type: 'link', linkname: '../../../../etc/passwd' }]),
        ),
        (err: unknown) =>
          err instanceof InvalidArgument && /outside of the extraction directory/.test(err.message),
      );
      await extractArchiveToRoot(
        root,
        '/',
        tarOf([
          { name: `${marker}-pw`, type: 'link', linkname: '/etc/passwd' },
          { name: `${marker}-pw2`, type: 'link', linkname: 'evil/etc/passwd' },
          { name: 'etc/passwd', type: 'file', data: 'owned\n' },
        ]),
      );
      nothingOutside(links);
      const containerPasswd = path.join(root, 'etc/passwd');
      assert.equal(fs.readFileSync(containerPasswd, 'utf8'), 'owned\n');
      assert.equal(fs.readFileSync(path.join(root, `${marker}-pw`), 'utf8'), 'container passwd\n');
      assert.equal(
        fs.lstatSync(path.join(root, `${marker}-pw`)).ino,
        fs.lstatSync(path.join(root, `${marker}-pw2`)).ino,
      );
    });
  });

  test('garbage input is an invalid archive', async () => {
    await assert.rejects(
      extractArchiveToRoot(root, '/tmp', Readable.from([Buffer.alloc(1024, 9)])),
      /invalid tar archive/,
    );
  });
});
