import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Conflict, Forbidden, InvalidArgument, NotFound } from '../../src/common/errors.js';
import { Hive, NOT_FOUND_MESSAGE } from '../../src/hive/hive.js';
import { HIVE_DIR_COMPONENTS, parseKeyPath } from '../../src/hive/names.js';
import { formatRegFile } from '../../src/hive/regfile.js';
import { convertRegFile } from '../../src/hive/service.js';
import { LayerStorage, RootStorage } from '../../src/hive/storage.js';
import type { RegValue } from '../../src/hive/values.js';
import { constants, lsetxattr, mknod } from '../../src/native/index.js';

const key = parseKeyPath;

/** Every path below `dir` with its type and, for files, content: a before/after fingerprint. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of fs.readdirSync(d).sort()) {
      const p = path.join(d, name);
      const st = fs.lstatSync(p);
      const rel = path.relative(dir, p);
      if (st.isDirectory()) {
        out.push(`${rel}/`);
        walk(p);
      } else if (st.isFile()) out.push(`${rel}=${fs.readFileSync(p, 'utf8')}`);
      else out.push(`${rel} (other)`);
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

const EVERY_TYPE: RegValue[] = [
  { name: '', type: 'REG_SZ', data: 'default' },
  { name: 'Bin', type: 'REG_BINARY', data: Buffer.from([0, 1, 0xfe, 0xff]) },
  { name: 'Count', type: 'REG_DWORD', data: 0xffffffff },
  { name: 'Expand', type: 'REG_EXPAND_SZ', data: '%PATH%;C:\\bin' },
  { name: 'List', type: 'REG_MULTI_SZ', data: ['one', 'two words', 'ünï'] },
  { name: 'Nothing', type: 'REG_NONE', data: Buffer.alloc(0) },
  { name: 'Big', type: 'REG_QWORD', data: 0xffffffffffffffffn },
  { name: 'Text', type: 'REG_SZ', data: 'multi\nline "quoted" \\ text' },
];

describe('Hive on a directory tree (RootStorage)', () => {
  let base: string;
  let root: string;
  let hiveDir: string;
  let storage: RootStorage;
  let hive: Hive;
  before(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hive-'));
    root = path.join(base, 'rootfs');
    fs.mkdirSync(root);
    hiveDir = path.join(root, ...HIVE_DIR_COMPONENTS);
    storage = new RootStorage(root, HIVE_DIR_COMPONENTS);
    hive = new Hive(storage);
  });
  after(() => {
    storage.close();
    fs.rmSync(base, { recursive: true, force: true });
  });

  test('values land as documented files; the hive directory is created on first write', () => {
    assert.equal(fs.existsSync(path.join(root, '.strata')), false);
    assert.equal(
      hive.setValue(
        key('HKLM\\Software\\Acme App'),
        { name: 'Version', type: 'REG_SZ', data: '1.0' },
        { overwrite: false },
      ),
      true,
    );
    hive.setValue(
      key('HKLM\\Software\\Acme App'),
      { name: '', type: 'REG_DWORD', data: 7 },
      { overwrite: false },
    );
    hive.setValue(
      key('HKLM\\Software\\Acme App\\.ext'),
      { name: 'a/b', type: 'REG_MULTI_SZ', data: ['x', 'y'] },
      { overwrite: false },
    );
    assert.deepEqual(snapshot(hiveDir), [
      'HKLM/',
      'HKLM/Software/',
      'HKLM/Software/Acme App/',
      'HKLM/Software/Acme App/%2Eext/',
      'HKLM/Software/Acme App/%2Eext/@a%2Fb=REG_MULTI_SZ\nx\ny\n',
      'HKLM/Software/Acme App/@=REG_DWORD\n7\n',
      'HKLM/Software/Acme App/@Version=REG_SZ\n1.0\n',
    ]);
    assert.equal(fs.statSync(path.join(root, '.strata')).mode & 0o777, 0o755);
  });

  test('lookups are case-insensitive and keep the stored case', () => {
    const [listing] = hive.query(key('hklm\\SOFTWARE\\acme app'));
    assert.equal(listing.path, 'HKEY_LOCAL_MACHINE\\Software\\Acme App');
    assert.deepEqual(
      listing.values.map((v) => v.name),
      ['', 'Version'],
    );
    assert.deepEqual(listing.subkeys, ['.ext']);
    // Writing through another spelling replaces the existing value and keeps its name.
    hive.setValue(
      key('HKLM\\software\\ACME APP'),
      { name: 'VERSION', type: 'REG_SZ', data: '2.0' },
      { overwrite: true },
    );
    assert.equal(
      fs.readFileSync(path.join(hiveDir, 'HKLM/Software/Acme App/@Version'), 'utf8'),
      'REG_SZ\n2.0\n',
    );
    assert.equal(fs.existsSync(path.join(hiveDir, 'HKLM/Software/Acme App/@VERSION')), false);
    assert.deepEqual(hive.query(key('HKLM\\Software\\Acme App'), { value: 'version' })[0].values, [
      { name: 'Version', type: 'REG_SZ', data: '2.0' },
    ]);
  });

  test('an existing value is only replaced with overwrite; missing keys and values are NotFound', () => {
    assert.throws(
      () =>
        hive.setValue(
          key('HKLM\\Software\\Acme App'),
          { name: 'version', type: 'REG_SZ', data: 'x' },
          { overwrite: false },
        ),
      (err: unknown) => err instanceof Conflict && /already exists/.test(err.message),
    );
    assert.equal(
      fs.readFileSync(path.join(hiveDir, 'HKLM/Software/Acme App/@Version'), 'utf8'),
      'REG_SZ\n2.0\n',
    );
    const notFound = (err: unknown) => err instanceof NotFound && err.message === NOT_FOUND_MESSAGE;
    assert.throws(() => hive.query(key('HKLM\\Software\\Missing')), notFound);
    assert.throws(() => hive.query(key('HKLM\\Software\\Acme App'), { value: 'Missing' }), notFound);
    assert.throws(() => hive.deleteValue(key('HKLM\\Software\\Acme App'), 'Missing'), notFound);
    assert.throws(() => hive.deleteKey(key('HKLM\\Software\\Missing')), notFound);
    assert.throws(() => hive.deleteKey(key('HKLM')), /cannot delete the root key HKEY_LOCAL_MACHINE/);
    // Root keys exist even before anything is written under them.
    assert.deepEqual(hive.query(key('HKCU')), [{ path: 'HKEY_CURRENT_USER', values: [], subkeys: [] }]);
  });

  test('temporary, foreign and non-regular entries are not part of the hive', () => {
    const dir = path.join(hiveDir, 'HKLM/Software/Acme App');
    fs.writeFileSync(path.join(dir, '.strata-tmp-abc'), 'REG_SZ\nhalf-written\n');
    fs.writeFileSync(path.join(dir, 'README'), 'not a value');
    fs.writeFileSync(path.join(dir, '@bad%zz'), 'REG_SZ\nx\n');
    fs.mkdirSync(path.join(dir, '@notakey'));
    fs.symlinkSync('/etc/passwd', path.join(dir, '@Passwd'));
    mknod(path.join(dir, '@Fifo'), constants.S_IFIFO | 0o644, 0, 0);
    const [listing] = hive.query(key('HKLM\\Software\\Acme App'));
    assert.deepEqual(
      listing.values.map((v) => v.name),
      ['', 'Version'],
    );
    assert.deepEqual(listing.subkeys, ['.ext']);
    assert.throws(() => hive.query(key('HKLM\\Software\\Acme App'), { value: 'Passwd' }), NotFound);
    // Writing a value whose name is a symlink replaces the link; its target is untouched.
    const passwd = fs.readFileSync('/etc/passwd', 'utf8');
    hive.setValue(
      key('HKLM\\Software\\Acme App'),
      { name: 'Passwd', type: 'REG_SZ', data: 'mine' },
      { overwrite: false },
    );
    assert.equal(fs.readFileSync('/etc/passwd', 'utf8'), passwd);
    assert.ok(fs.lstatSync(path.join(dir, '@Passwd')).isFile());
    for (const name of ['.strata-tmp-abc', 'README', '@bad%zz', '@notakey', '@Fifo', '@Passwd']) {
      fs.rmSync(path.join(dir, name), { recursive: true });
    }
  });

  test('a symlink on the way into the hive is refused and nothing is written outside', () => {
    const outside = path.join(base, 'outside');
    fs.mkdirSync(outside);
    const other = path.join(base, 'rootfs2');
    fs.mkdirSync(other);
    fs.symlinkSync(outside, path.join(other, '.strata'));
    const hostile = new RootStorage(other, HIVE_DIR_COMPONENTS);
    try {
      const h = new Hive(hostile);
      assert.throws(
        () => h.setValue(key('HKLM\\X'), { name: 'v', type: 'REG_SZ', data: 'x' }, { overwrite: true }),
        (err: unknown) => err instanceof InvalidArgument && /symbolic link/.test(err.message),
      );
      // A key directory swapped for a symlink (as a running container could do) is refused too.
      fs.rmSync(path.join(other, '.strata'));
      fs.mkdirSync(path.join(other, '.strata/hive/HKLM'), { recursive: true });
      fs.symlinkSync(outside, path.join(other, '.strata/hive/HKLM/Evil'));
      assert.throws(
        () =>
          h.setValue(
            key('HKLM\\Evil\\Deeper'),
            { name: 'v', type: 'REG_SZ', data: 'x' },
            { overwrite: true },
          ),
        /symbolic link|a file of that name is in the way/,
      );
      assert.throws(() => h.query(key('HKLM\\Evil')), NotFound);
    } finally {
      hostile.close();
    }
    assert.deepEqual(fs.readdirSync(outside), []);
  });

  test('new entries take the owner of their key; a replaced value keeps its owner and mode', () => {
    const dir = path.join(hiveDir, 'HKCU');
    hive.createKey(key('HKCU\\App'));
    fs.chownSync(path.join(dir, 'App'), 1000, 1000);
    hive.setValue(key('HKCU\\App\\Sub'), { name: 'v', type: 'REG_DWORD', data: 1 }, { overwrite: false });
    const sub = fs.statSync(path.join(dir, 'App/Sub'));
    const value = fs.statSync(path.join(dir, 'App/Sub/@v'));
    assert.deepEqual(
      [sub.uid, sub.gid, value.uid, value.gid, value.mode & 0o777],
      [1000, 1000, 1000, 1000, 0o644],
    );
    fs.chmodSync(path.join(dir, 'App/Sub/@v'), 0o600);
    hive.setValue(key('HKCU\\App\\Sub'), { name: 'v', type: 'REG_DWORD', data: 2 }, { overwrite: true });
    const replaced = fs.statSync(path.join(dir, 'App/Sub/@v'));
    assert.deepEqual([replaced.uid, replaced.mode & 0o777], [1000, 0o600]);
    assert.equal(fs.readFileSync(path.join(dir, 'App/Sub/@v'), 'utf8'), 'REG_DWORD\n2\n');
  });

  test('delete a value, all values, a key tree', () => {
    hive.setValue(key('HKCU\\Del\\A\\B'), { name: 'x', type: 'REG_SZ', data: '1' }, { overwrite: false });
    hive.setValue(key('HKCU\\Del'), { name: 'one', type: 'REG_SZ', data: '1' }, { overwrite: false });
    hive.setValue(key('HKCU\\Del'), { name: 'two', type: 'REG_SZ', data: '2' }, { overwrite: false });
    hive.deleteValue(key('HKCU\\del'), 'ONE');
    assert.deepEqual(
      hive.query(key('HKCU\\Del'))[0].values.map((v) => v.name),
      ['two'],
    );
    assert.equal(hive.deleteAllValues(key('HKCU\\Del')), 1);
    assert.deepEqual(hive.query(key('HKCU\\Del'))[0], {
      path: 'HKEY_CURRENT_USER\\Del',
      values: [],
      subkeys: ['A'],
    });
    hive.deleteKey(key('HKCU\\DEL\\a'));
    assert.deepEqual(hive.query(key('HKCU\\Del'))[0].subkeys, []);
    assert.equal(fs.existsSync(path.join(hiveDir, 'HKCU/Del/A')), false);
  });

  test('export → import round-trips every type into another hive', () => {
    for (const value of EVERY_TYPE)
      hive.setValue(key('HKLM\\Software\\Types\\Nested'), value, { overwrite: false });
    hive.createKey(key('HKLM\\Software\\Types\\Empty'));
    const exported = hive.exportKey(key('HKLM\\Software\\Types'));
    assert.deepEqual([...exported.subarray(0, 2)], [0xff, 0xfe]);
    const text = exported.subarray(2).toString('utf16le');
    assert.match(
      text,
      /^Windows Registry Editor Version 5\.00\r\n\r\n\[HKEY_LOCAL_MACHINE\\Software\\Types\]\r\n\r\n\[HKEY_LOCAL_MACHINE\\Software\\Types\\Empty\]\r\n\r\n\[HKEY_LOCAL_MACHINE\\Software\\Types\\Nested\]\r\n@="default"\r\n/,
    );

    const second = path.join(base, 'second');
    fs.mkdirSync(second);
    const other = new RootStorage(second, HIVE_DIR_COMPONENTS);
    try {
      const copy = new Hive(other);
      assert.deepEqual(copy.importRegFile(exported), {
        keysCreated: 3,
        keysDeleted: 0,
        valuesSet: EVERY_TYPE.length,
        valuesDeleted: 0,
      });
      assert.deepEqual(
        copy.query(key('HKLM\\Software\\Types'), { recursive: true }),
        hive.query(key('HKLM\\Software\\Types'), { recursive: true }),
      );
      assert.deepEqual(copy.exportKey(key('HKLM\\Software\\Types')), exported);
    } finally {
      other.close();
    }
  });

  test('import applies deletions; a malformed file changes nothing', () => {
    const before = snapshot(hiveDir);
    const bad = Buffer.from(
      'Windows Registry Editor Version 5.00\r\n\r\n[-HKLM\\Software\\Acme App]\r\n[HKLM\\Software\\Types]\r\n"New"="x"\r\n"v"=dword:1ffffffff\r\n',
    );
    assert.throws(() => hive.importRegFile(bad), /line 6: REG_DWORD data out of range/);
    assert.deepEqual(snapshot(hiveDir), before);

    const good = Buffer.from(
      'Windows Registry Editor Version 5.00\r\n\r\n[-HKLM\\Software\\Types\\Empty]\r\n[-HKLM\\Software\\NotThere]\r\n' +
        '[HKLM\\Software\\Types\\Nested]\r\n"Count"=-\r\n"NotThere"=-\r\n"Added"="yes"\r\n',
    );
    assert.deepEqual(hive.importRegFile(good), {
      keysCreated: 0,
      keysDeleted: 1,
      valuesSet: 1,
      valuesDeleted: 1,
    });
    const [types] = hive.query(key('HKLM\\Software\\Types'));
    assert.deepEqual(types.subkeys, ['Nested']);
    const names = hive.query(key('HKLM\\Software\\Types\\Nested'))[0].values.map((v) => v.name);
    assert.ok(names.includes('Added') && !names.includes('Count'));
  });

  test('recursive query and query of one value across a tree', () => {
    const all = hive.query(key('HKLM\\Software'), { recursive: true });
    assert.deepEqual(
      all.map((k) => k.path),
      [
        'HKEY_LOCAL_MACHINE\\Software',
        'HKEY_LOCAL_MACHINE\\Software\\Acme App',
        'HKEY_LOCAL_MACHINE\\Software\\Acme App\\.ext',
        'HKEY_LOCAL_MACHINE\\Software\\Types',
        'HKEY_LOCAL_MACHINE\\Software\\Types\\Nested',
      ],
    );
    const defaults = hive.query(key('HKLM\\Software'), { recursive: true, value: '' });
    assert.deepEqual(
      defaults.map((k) => [k.path, k.values.map((v) => v.data)]),
      [
        ['HKEY_LOCAL_MACHINE\\Software\\Acme App', [7]],
        ['HKEY_LOCAL_MACHINE\\Software\\Types\\Nested', ['default']],
      ],
    );
  });

  test('a malformed value file is reported with its path', () => {
    fs.writeFileSync(path.join(hiveDir, 'HKLM/Software/Types/@Broken'), 'REG_DWORD\nnot a number\n');
    assert.throws(
      () => hive.query(key('HKLM\\Software\\Types')),
      (err: unknown) =>
        err instanceof InvalidArgument &&
        /malformed value file \/HKLM\/Software\/Types\/@Broken: invalid REG_DWORD/.test(err.message),
    );
    fs.rmSync(path.join(hiveDir, 'HKLM/Software/Types/@Broken'));
  });
});

describe('Hive of an image (LayerStorage)', () => {
  let base: string;
  let layers: string[];
  before(() => {
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hive-layers-'));
    const layer = (n: number, files: Record<string, string | null>, opaque: string[] = []) => {
      const dir = path.join(base, `l${n}`);
      for (const [rel, content] of Object.entries(files)) {
        const abs = path.join(dir, '.strata/hive', rel);
        fs.mkdirSync(path.dirname(abs), { recursive: true });
        if (content === null) mknod(abs, constants.S_IFCHR, 0, 0);
        else if (rel.endsWith('/')) fs.mkdirSync(abs, { recursive: true });
        else fs.writeFileSync(abs, content);
      }
      for (const rel of opaque) lsetxattr(path.join(dir, '.strata/hive', rel), 'trusted.overlay.opaque', 'y');
      return dir;
    };
    const bottom = layer(0, {
      'HKLM/Software/Acme/@Name': 'REG_SZ\nbase\n',
      'HKLM/Software/Acme/@Count': 'REG_DWORD\n1\n',
      'HKLM/Software/Acme/@Removed': 'REG_SZ\nx\n',
      'HKLM/Software/Acme/Plugins/@A': 'REG_SZ\na\n',
      'HKLM/Software/Acme/Plugins/@B': 'REG_SZ\nb\n',
      'HKLM/Software/Acme/Legacy/@Old': 'REG_SZ\nold\n',
    });
    const middle = layer(1, {
      'HKLM/Software/Acme/@Count': 'REG_DWORD\n2\n',
      'HKLM/Software/Acme/@Removed': null,
      'HKLM/Software/Acme/Legacy': null,
      'HKLM/Software/Acme/Plugins/@C': 'REG_SZ\nc\n',
    });
    const top = layer(2, { 'HKLM/Software/Acme/Plugins/@Only': 'REG_SZ\nonly\n' }, [
      'HKLM/Software/Acme/Plugins',
    ]);
    layers = [top, middle, bottom];
  });
  after(() => fs.rmSync(base, { recursive: true, force: true }));

  test('merges layers top first: changes win, whiteouts delete values and keys, opaque keys hide lower values', () => {
    const hive = new Hive(new LayerStorage(layers, HIVE_DIR_COMPONENTS));
    const all = hive.query(key('HKLM\\software\\acme'), { recursive: true });
    assert.deepEqual(
      all.map((k) => [k.path, k.values.map((v) => `${v.name}=${v.data}`), k.subkeys]),
      [
        ['HKEY_LOCAL_MACHINE\\Software\\Acme', ['Count=2', 'Name=base'], ['Plugins']],
        ['HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins', ['Only=only'], []],
      ],
    );
    assert.throws(() => hive.query(key('HKLM\\Software\\Acme\\Legacy')), NotFound);
    // Without the top layer the middle one's view shows through.
    const lower = new Hive(new LayerStorage(layers.slice(1), HIVE_DIR_COMPONENTS));
    assert.deepEqual(
      lower.query(key('HKLM\\Software\\Acme\\Plugins'))[0].values.map((v) => v.name),
      ['A', 'B', 'C'],
    );
  });

  test("an image's hive is read-only", () => {
    const hive = new Hive(new LayerStorage(layers, HIVE_DIR_COMPONENTS));
    assert.throws(
      () =>
        hive.setValue(
          key('HKLM\\Software\\Acme'),
          { name: 'x', type: 'REG_SZ', data: '' },
          { overwrite: true },
        ),
      Forbidden,
    );
    assert.throws(() => hive.deleteKey(key('HKLM\\Software\\Acme')), Forbidden);
  });

  test('an image without layers or without a hive has empty root keys', () => {
    const hive = new Hive(new LayerStorage([], HIVE_DIR_COMPONENTS));
    assert.deepEqual(hive.query(key('HKLM')), [{ path: 'HKEY_LOCAL_MACHINE', values: [], subkeys: [] }]);
    assert.throws(() => hive.query(key('HKLM\\Software')), NotFound);
  });
});

describe('strata reg convert', () => {
  test('writes the hive layout into a directory; a bad file creates nothing', () => {
    const base = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hive-convert-'));
    try {
      const reg = formatRegFile([
        { path: 'HKEY_LOCAL_MACHINE\\Software\\Acme', values: EVERY_TYPE.slice(0, 3) },
        { path: 'HKEY_CURRENT_USER\\Software\\Acme\\Empty', values: [] },
      ]);
      const out = path.join(base, 'hive');
      assert.deepEqual(convertRegFile(reg, out), {
        keysCreated: 2,
        keysDeleted: 0,
        valuesSet: 3,
        valuesDeleted: 0,
      });
      assert.deepEqual(snapshot(out), [
        'HKCU/',
        'HKCU/Software/',
        'HKCU/Software/Acme/',
        'HKCU/Software/Acme/Empty/',
        'HKLM/',
        'HKLM/Software/',
        'HKLM/Software/Acme/',
        'HKLM/Software/Acme/@=REG_SZ\ndefault\n',
        'HKLM/Software/Acme/@Bin=REG_BINARY\n0001feff\n',
        'HKLM/Software/Acme/@Count=REG_DWORD\n4294967295\n',
      ]);
      const bad = path.join(base, 'bad');
      assert.throws(
        () => convertRegFile(Buffer.from('REGEDIT4\n[HKLM\\X]\n"v"=hex(8):00\n'), bad),
        /unsupported value type hex\(8\)/,
      );
      assert.equal(fs.existsSync(bad), false);
    } finally {
      fs.rmSync(base, { recursive: true, force: true });
    }
  });
});
