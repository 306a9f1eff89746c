import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  constants,
  isNativeError,
  lgetxattr,
  llistxattr,
  lremovexattr,
  lsetxattr,
  lutimesNs,
  mknod,
  mount,
  mountOverlay,
  openInRoot,
  scanDirectory,
  syncfs,
  treeSize,
  umount2,
} from '../../src/native/index.js';

let tmp = '';
const mounts: string[] = [];

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-native-'));
});

after(() => {
  // Unmount anything a failed test left behind before removing the tree.
  for (const target of mounts.reverse()) {
    try {
      umount2(target, constants.MNT_DETACH);
    } catch {
      // already unmounted
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

function isMounted(target: string): boolean {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === target);
}

function assertFsError(fn: () => unknown, code: string, syscall: string, errPath?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isNativeError(err), `expected an fs-style error, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.equal(err.errno, -(os.constants.errno as Record<string, number>)[code]);
    assert.equal(err.syscall, syscall);
    if (errPath !== undefined) assert.equal(err.path, errPath);
    assert.match(err.message, new RegExp(`^${code}: `));
    return true;
  });
}

describe('constants', () => {
  test('match the kernel values Node knows', () => {
    assert.equal(constants.S_IFCHR, fs.constants.S_IFCHR);
    assert.equal(constants.S_IFBLK, fs.constants.S_IFBLK);
    assert.equal(constants.S_IFIFO, fs.constants.S_IFIFO);
    assert.equal(constants.S_IFDIR, fs.constants.S_IFDIR);
    assert.equal(constants.O_NOFOLLOW, fs.constants.O_NOFOLLOW);
    assert.equal(constants.O_DIRECTORY, fs.constants.O_DIRECTORY);
    assert.equal(constants.O_CREAT, fs.constants.O_CREAT);
    assert.equal(constants.MS_BIND, 4096);
    assert.equal(constants.MNT_DETACH, 2);
    assert.equal(constants.XATTR_CREATE, 1);
    assert.equal(constants.XATTR_REPLACE, 2);
    assert.equal(constants.RESOLVE_IN_ROOT, 0x10);
  });
});

describe('mknod', () => {
  test('creates an overlay whiteout (0/0 char device)', () => {
    const p = path.join(tmp, 'whiteout');
    mknod(p, constants.S_IFCHR, 0, 0);
    const st = fs.lstatSync(p);
    assert.ok(st.isCharacterDevice());
    assert.equal(st.rdev, 0);
  });

  test('creates devices with major/minor and FIFOs, honouring the permission bits', () => {
    const dev = path.join(tmp, 'null');
    mknod(dev, constants.S_IFCHR | 0o600, 1, 3);
    const st = fs.lstatSync(dev, { bigint: true });
    assert.ok(st.isCharacterDevice());
    // Linux dev_t encoding of 1:3
    assert.equal(st.rdev, (1n << 8n) | 3n);
    const blk = path.join(tmp, 'blk');
    mknod(blk, constants.S_IFBLK | 0o640, 7, 0);
    assert.ok(fs.lstatSync(blk).isBlockDevice());
    const fifo = path.join(tmp, 'fifo');
    mknod(fifo, constants.S_IFIFO | 0o644, 0, 0);
    assert.ok(fs.lstatSync(fifo).isFIFO());
  });

  test('throws fs-style errors', () => {
    const p = path.join(tmp, 'twice');
    mknod(p, constants.S_IFIFO | 0o644, 0, 0);
    assertFsError(() => mknod(p, constants.S_IFIFO | 0o644, 0, 0), 'EEXIST', 'mknod', p);
    assertFsError(() => mknod(path.join(tmp, 'no/such/dir'), constants.S_IFIFO, 0, 0), 'ENOENT', 'mknod');
  });
});

describe('xattrs', () => {
  test('binary values round-trip byte for byte', () => {
    const file = path.join(tmp, 'cap');
    fs.writeFileSync(file, '');
    // cap_setuid,cap_setgid+ep as stored on newuidmap: bytes above 0x7f must survive.
    const capability = Buffer.from('0100000200c00000000000000000000000000000', 'hex');
    lsetxattr(file, 'security.capability', capability);
    assert.deepEqual(lgetxattr(file, 'security.capability'), capability);
    const binary = Buffer.from([0x00, 0xff, 0x80, 0xfe, 0x01]);
    lsetxattr(file, 'trusted.md5', binary);
    assert.deepEqual(lgetxattr(file, 'trusted.md5'), binary);
  });

  test('string values are UTF-8; absent gives null; list and remove', () => {
    const file = path.join(tmp, 'str');
    fs.writeFileSync(file, '');
    lsetxattr(file, 'user.comment', 'héllo');
    assert.deepEqual(lgetxattr(file, 'user.comment'), Buffer.from('héllo', 'utf8'));
    assert.equal(lgetxattr(file, 'user.absent'), null);
    lsetxattr(file, 'user.empty', Buffer.alloc(0));
    assert.deepEqual(lgetxattr(file, 'user.empty'), Buffer.alloc(0));
    assert.deepEqual(llistxattr(file).sort(), ['user.comment', 'user.empty']);
    lremovexattr(file, 'user.comment');
    assert.deepEqual(llistxattr(file), ['user.empty']);
    assertFsError(() => lremovexattr(file, 'user.comment'), 'ENODATA', 'lremovexattr', file);
  });

  test('XATTR_CREATE and XATTR_REPLACE', () => {
    const file = path.join(tmp, 'flags');
    fs.writeFileSync(file, '');
    assertFsError(
      () => lsetxattr(file, 'user.a', 'x', constants.XATTR_REPLACE),
      'ENODATA',
      'lsetxattr',
      file,
    );
    lsetxattr(file, 'user.a', 'x', constants.XATTR_CREATE);
    assertFsError(() => lsetxattr(file, 'user.a', 'y', constants.XATTR_CREATE), 'EEXIST', 'lsetxattr', file);
    lsetxattr(file, 'user.a', 'y', constants.XATTR_REPLACE);
    assert.equal(lgetxattr(file, 'user.a')?.toString(), 'y');
  });

  test('never follow a symlink (the target keeps its own xattrs)', () => {
    const target = path.join(tmp, 'xtarget');
    const link = path.join(tmp, 'xlink');
    fs.writeFileSync(target, '');
    fs.symlinkSync(target, link);
    lsetxattr(link, 'trusted.onlink', 'y');
    assert.equal(lgetxattr(target, 'trusted.onlink'), null);
    assert.equal(lgetxattr(link, 'trusted.onlink')?.toString(), 'y');
    assert.deepEqual(llistxattr(target), []);
    const dangling = path.join(tmp, 'dangling');
    fs.symlinkSync('/nonexistent/target', dangling);
    assert.deepEqual(llistxattr(dangling), []);
    assertFsError(() => llistxattr(path.join(tmp, 'missing')), 'ENOENT', 'llistxattr');
  });

  test('an opaque directory marker', () => {
    const dir = path.join(tmp, 'opaque');
    fs.mkdirSync(dir);
    lsetxattr(dir, 'trusted.overlay.opaque', 'y');
    assert.equal(lgetxattr(dir, 'trusted.overlay.opaque')?.toString(), 'y');
  });
});

describe('lutimesNs', () => {
  test('keeps nanoseconds, handles times before 1970, does not follow symlinks', () => {
    const file = path.join(tmp, 'times');
    fs.writeFileSync(file, '');
    lutimesNs(file, 1_000_000_001n, 1_700_000_000_123_456_789n);
    let st = fs.lstatSync(file, { bigint: true });
    assert.equal(st.mtimeNs, 1_700_000_000_123_456_789n);
    assert.equal(st.atimeNs, 1_000_000_001n);
    lutimesNs(file, -1_500_000_000n, -86_400_000_000_001n);
    st = fs.lstatSync(file, { bigint: true });
    assert.equal(st.mtimeNs, -86_400_000_000_001n);
    assert.equal(st.atimeNs, -1_500_000_000n);

    const link = path.join(tmp, 'times-link');
    fs.symlinkSync(file, link);
    lutimesNs(link, 5n, 42_000_000_007n);
    assert.equal(fs.lstatSync(link, { bigint: true }).mtimeNs, 42_000_000_007n);
    assert.equal(fs.lstatSync(file, { bigint: true }).mtimeNs, -86_400_000_000_001n);
  });

  test('rejects non-bigint times', () => {
    const file = path.join(tmp, 'times2');
    fs.writeFileSync(file, '');
    assert.throws(() => lutimesNs(file, 1 as unknown as bigint, 1n), TypeError);
  });
});

describe('mount and umount2', () => {
  test('mounts a tmpfs, then unmounts it; a second umount gives EINVAL', () => {
    const target = path.join(tmp, 'tmpfs');
    fs.mkdirSync(target);
    mount('tmpfs', target, 'tmpfs', constants.MS_NOSUID | constants.MS_NODEV, 'size=1m,mode=0700');
    mounts.push(target);
    assert.ok(isMounted(target));
    assert.equal(fs.statSync(target).mode & 0o7777, 0o700);
    fs.writeFileSync(path.join(target, 'x'), 'in tmpfs');
    umount2(target);
    assert.ok(!isMounted(target));
    assert.ok(!fs.existsSync(path.join(target, 'x')));
    assertFsError(() => umount2(target), 'EINVAL', 'umount2', target);
  });

  test('bind mount with null fstype and data; MNT_DETACH', () => {
    const source = path.join(tmp, 'bind-src');
    const target = path.join(tmp, 'bind-dst');
    fs.mkdirSync(source);
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(source, 'f'), 'bound');
    mount(source, target, null, constants.MS_BIND, null);
    mounts.push(target);
    assert.equal(fs.readFileSync(path.join(target, 'f'), 'utf8'), 'bound');
    umount2(target, constants.MNT_DETACH);
    assert.ok(!isMounted(target));
  });
});

describe('mountOverlay', () => {
  test('stacks lower dirs top first, with whiteouts and opaque dirs', () => {
    const base = path.join(tmp, 'ovl');
    const [l1, l2, upper, work, merged] = ['l1', 'l2', 'upper', 'work', 'merged'].map((d) =>
      path.join(base, d),
    );
    for (const d of [l1, l2, upper, work, merged]) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(l2, 'shadowed'), 'bottom');
    fs.writeFileSync(path.join(l2, 'deleted'), 'bottom');
    fs.mkdirSync(path.join(l2, 'dir'));
    fs.writeFileSync(path.join(l2, 'dir', 'old'), 'bottom');
    fs.writeFileSync(path.join(l1, 'shadowed'), 'top');
    mknod(path.join(l1, 'deleted'), constants.S_IFCHR, 0, 0);
    fs.mkdirSync(path.join(l1, 'dir'));
    lsetxattr(path.join(l1, 'dir'), 'trusted.overlay.opaque', 'y');
    fs.writeFileSync(path.join(l1, 'dir', 'new'), 'top');

    mountOverlay([l1, l2], upper, work, merged, 'index=off,redirect_dir=off,metacopy=off');
    mounts.push(merged);
    try {
      assert.ok(isMounted(merged));
      assert.equal(fs.readFileSync(path.join(merged, 'shadowed'), 'utf8'), 'top');
      assert.ok(!fs.existsSync(path.join(merged, 'deleted')));
      assert.deepEqual(fs.readdirSync(path.join(merged, 'dir')), ['new']);
      fs.writeFileSync(path.join(merged, 'written'), 'upper');
      assert.equal(fs.readFileSync(path.join(upper, 'written'), 'utf8'), 'upper');
      fs.rmSync(path.join(merged, 'shadowed'));
      const whiteout = fs.lstatSync(path.join(upper, 'shadowed'));
      assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0);
    } finally {
      umount2(merged);
    }
    assert.ok(!isMounted(merged));
  });

  test('read-only overlay (no upper dir) needs two lower dirs', () => {
    const base = path.join(tmp, 'ovl-ro');
    const [top, bottom, merged] = ['top', 'bottom', 'merged'].map((d) => path.join(base, d));
    for (const d of [top, bottom, merged]) fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(top, 'f'), 'ro');
    fs.writeFileSync(path.join(bottom, 'g'), 'below');
    // The kernel refuses a single lower dir without an upper dir.
    assertFsError(() => mountOverlay([top], null, null, merged), 'EINVAL', 'fsconfig');
    mountOverlay([top, bottom], null, null, merged);
    mounts.push(merged);
    try {
      assert.equal(fs.readFileSync(path.join(merged, 'f'), 'utf8'), 'ro');
      assert.equal(fs.readFileSync(path.join(merged, 'g'), 'utf8'), 'below');
      assert.throws(() => fs.writeFileSync(path.join(merged, 'h'), 'x'), { code: 'EROFS' });
    } finally {
      umount2(merged);
    }
  });

  test('60 long lower dirs (far beyond mount(2)’s one-page option limit)', () => {
    // Each lower path is ~200 bytes, so a lowerdir= string would be ~12 KB: only lowerdir+ works.
    const base = path.join(tmp, 'many', 'x'.repeat(120));
    const lowers: string[] = [];
    for (let i = 0; i < 60; i++) {
      const dir = path.join(base, `layer-${String(i).padStart(2, '0')}-${'y'.repeat(40)}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, `only-${i}`), String(i));
      fs.writeFileSync(path.join(dir, 'shared'), String(i));
      lowers.push(dir);
    }
    assert.ok(lowers.join(':').length > 4096 * 2);
    const upper = path.join(base, 'upper');
    const work = path.join(base, 'work');
    const merged = path.join(base, 'merged');
    for (const d of [upper, work, merged]) fs.mkdirSync(d);
    mountOverlay(lowers, upper, work, merged, 'index=off,redirect_dir=off,metacopy=off');
    mounts.push(merged);
    try {
      const names = fs.readdirSync(merged);
      for (let i = 0; i < 60; i++) assert.ok(names.includes(`only-${i}`), `only-${i} visible`);
      // lowers[0] is the top layer
      assert.equal(fs.readFileSync(path.join(merged, 'shared'), 'utf8'), '0');
      assert.equal(fs.readFileSync(path.join(merged, 'only-59'), 'utf8'), '59');
    } finally {
      umount2(merged);
    }
  });

  test('reports the failing parameter and the kernel message', () => {
    const base = path.join(tmp, 'ovl-err');
    const lower = path.join(base, 'lower');
    const merged = path.join(base, 'merged');
    fs.mkdirSync(lower, { recursive: true });
    fs.mkdirSync(merged);
    assertFsError(() => mountOverlay([path.join(base, 'missing')], null, null, merged), 'ENOENT', 'fsconfig');
    assert.throws(
      () => mountOverlay([lower], null, null, merged, 'no_such_option=1'),
      (err: unknown) => isNativeError(err, 'EINVAL') && /no_such_option/.test(err.message),
    );
    assert.throws(() => mountOverlay([], null, null, merged), TypeError);
    assert.ok(!isMounted(merged));
  });
});

describe('openInRoot', () => {
  test('resolves .., absolute paths and symlinks inside the root', () => {
    const root = path.join(tmp, 'root');
    fs.mkdirSync(path.join(root, 'etc'), { recursive: true });
    fs.writeFileSync(path.join(root, 'etc', 'passwd'), 'container passwd');
    fs.symlinkSync('/', path.join(root, 'evil'));
    fs.symlinkSync('../../../../../../etc', path.join(root, 'up'));
    fs.symlinkSync('/etc/passwd', path.join(root, 'abs'));

    for (const rel of [
      '../../etc/passwd',
      '/etc/passwd',
      'evil/etc/passwd',
      'up/passwd',
      'abs',
      'evil/evil/abs',
    ]) {
      const fd = openInRoot(root, rel, constants.O_RDONLY);
      try {
        assert.equal(fs.readFileSync(fd, 'utf8'), 'container passwd', rel);
      } finally {
        fs.closeSync(fd);
      }
    }
  });

  test('creates files inside the root only, also through a root fd', () => {
    const root = path.join(tmp, 'root2');
    fs.mkdirSync(root);
    fs.symlinkSync('/', path.join(root, 'evil'));
    const outside = path.join(tmp, 'must-not-exist');
    const rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      const rel = `evil/${path.relative('/', outside)}`;
      assertFsError(
        () => openInRoot(rootFd, rel, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600),
        'ENOENT',
        'openat2',
        rel,
      );
      const fd = openInRoot(
        rootFd,
        '../../created',
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL,
        0o640,
      );
      fs.writeSync(fd, 'inside');
      fs.closeSync(fd);
    } finally {
      fs.closeSync(rootFd);
    }
    assert.ok(!fs.existsSync(outside));
    assert.equal(fs.readFileSync(path.join(root, 'created'), 'utf8'), 'inside');
    assert.equal(fs.statSync(path.join(root, 'created')).mode & 0o777, 0o640 & ~process.umask());
  });

  test('O_NOFOLLOW, O_PATH, extra RESOLVE flags, magic links refused', () => {
    const root = path.join(tmp, 'root3');
    fs.mkdirSync(path.join(root, 'd'), { recursive: true });
    fs.symlinkSync('d', path.join(root, 'link'));
    assertFsError(
      () => openInRoot(root, 'link', constants.O_RDONLY | constants.O_NOFOLLOW),
      'ELOOP',
      'openat2',
    );
    const pathFd = openInRoot(root, 'link', constants.O_PATH | constants.O_NOFOLLOW);
    assert.ok(fs.fstatSync(pathFd).isSymbolicLink());
    fs.closeSync(pathFd);
    const dirFd = openInRoot(root, '', constants.O_RDONLY | constants.O_DIRECTORY);
    assert.ok(fs.fstatSync(dirFd).isDirectory());
    fs.closeSync(dirFd);
    assertFsError(
      () => openInRoot(root, 'link', constants.O_RDONLY, 0, constants.RESOLVE_NO_SYMLINKS),
      'ELOOP',
      'openat2',
    );
    // /proc/self/fd/N is a magic link: refused even with the real / as root.
    const fd = fs.openSync(root, 'r');
    try {
      assertFsError(() => openInRoot('/', `proc/self/fd/${fd}`, constants.O_RDONLY), 'ELOOP', 'openat2');
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('syncfs', () => {
  test('flushes the file system of an existing path; ENOENT otherwise', () => {
    syncfs(tmp);
    assertFsError(() => syncfs(path.join(tmp, 'nope')), 'ENOENT', 'open');
  });
});

describe('scanDirectory', () => {
  test('gives every entry with the figures fs.lstatSync gives, symlinks not followed', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'scan-'));
    fs.writeFileSync(path.join(dir, 'file'), 'twelve bytes');
    fs.chmodSync(path.join(dir, 'file'), 0o640);
    fs.mkdirSync(path.join(dir, 'sub'));
    fs.symlinkSync('/etc/passwd', path.join(dir, 'link'));
    mknod(path.join(dir, 'fifo'), constants.S_IFIFO | 0o600, 0, 0);
    const names = ['é-utf8 name', 'file', 'sub', 'link', 'fifo'];
    fs.writeFileSync(path.join(dir, names[0]), '');
    const scanned = scanDirectory(dir);
    assert.deepEqual(scanned.map((e) => e.name).sort(), [...names].sort(), 'no . or ..');
    for (const e of scanned) {
      const st = fs.lstatSync(path.join(dir, e.name));
      assert.deepEqual(
        { mode: e.mode, size: e.size, mtimeMs: e.mtimeMs, ctimeMs: e.ctimeMs, ino: e.ino },
        { mode: st.mode, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino },
        e.name,
      );
    }
    assert.deepEqual(scanDirectory(path.join(dir, 'sub')), []);
  });

  test('a missing directory or a file throws an fs-shaped error', () => {
    assert.throws(
      () => scanDirectory(path.join(tmp, 'does-not-exist')),
      (err: unknown) => isNativeError(err, 'ENOENT') && err.syscall === 'scandir',
    );
    const file = path.join(tmp, 'not-a-dir');
    fs.writeFileSync(file, '');
    assert.throws(
      () => scanDirectory(file),
      (err: unknown) => isNativeError(err, 'ENOTDIR'),
    );
  });
});

describe('treeSize', () => {
  test('counts files and symlinks below a directory, hard links once, symlinked dirs not followed', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'size-'));
    fs.mkdirSync(path.join(dir, 'a/b/c'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'top'), Buffer.alloc(1000));
    fs.writeFileSync(path.join(dir, 'a/b/c/deep'), Buffer.alloc(234));
    fs.linkSync(path.join(dir, 'top'), path.join(dir, 'a/hardlink'));
    fs.symlinkSync('/usr', path.join(dir, 'a/usr-link')); // 4 bytes, never followed
    mknod(path.join(dir, 'fifo'), constants.S_IFIFO | 0o600, 0, 0);
    assert.equal(treeSize(dir), 1000 + 234 + 4);
    assert.equal(treeSize(path.join(dir, 'a/b')), 234);
    assert.equal(treeSize(path.join(tmp, 'no-such-dir')), 0, 'a layer removed meanwhile is empty');
  });
});
