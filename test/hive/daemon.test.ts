import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { TarInputEntry } from '../../src/common/tar.js';
import { RegistryProcess } from '../distribution/helpers.js';
import { REPO_ROOT, type RunResult, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { dockerArchive, tarOf } from '../images/helpers.js';

/**
 * The hive through the daemon: an image whose base layer sets keys and whose second layer changes
 * and deletes some (whiteouts), two containers changing it independently, an application in busybox
 * using it with cat and shell redirection, the CLI's reg verbs, the image view, and bad input.
 */

const HIVE = '.strata/hive';

function hiveFiles(files: Record<string, string>): TarInputEntry[] {
  const entries: TarInputEntry[] = [];
  const dirs = new Set<string>();
  for (const [rel, data] of Object.entries(files)) {
    const full = `${HIVE}/${rel}`;
    const parts = full.split('/');
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join('/');
      if (!dirs.has(dir)) {
        dirs.add(dir);
        entries.push({ name: dir, type: 'directory' });
      }
    }
    entries.push({ name: full, type: 'file', data });
  }
  return entries;
}

function busyboxLayer(): Buffer {
  const r = spawnSync('bash', [path.join(REPO_ROOT, 'scripts', 'busybox-rootfs.sh')], {
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`busybox-rootfs.sh failed: ${r.stderr}`);
  return r.stdout;
}

function ok(r: RunResult, what: string): string {
  assert.equal(r.code, 0, `${what} exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

describe('registry hive through the daemon', () => {
  let d: TestDaemon;
  let work: string;
  const reg = (...args: string[]) => d.strata(['reg', ...args]);
  const regOk = async (...args: string[]) => ok(await reg(...args), `strata reg ${args.join(' ')}`);

  before(async () => {
    d = await startDaemon();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-hive-it-'));
    const base = await tarOf(
      hiveFiles({
        'HKLM/Software/Acme/@': 'REG_SZ\nAcme default\n',
        'HKLM/Software/Acme/@Name': 'REG_SZ\nbase\n',
        'HKLM/Software/Acme/@Count': 'REG_DWORD\n1\n',
        'HKLM/Software/Acme/@Removed': 'REG_SZ\ngoes away\n',
        'HKLM/Software/Acme/Plugins/@A': 'REG_SZ\nplugin a\n',
        'HKLM/Software/Acme/Legacy/@Old': 'REG_SZ\nold\n',
        'HKCU/Software/Acme/@Theme': 'REG_SZ\nlight\n',
      }),
    );
    const changes = await tarOf([
      { name: '.strata', type: 'directory' },
      { name: HIVE, type: 'directory' },
      { name: `${HIVE}/HKLM`, type: 'directory' },
      { name: `${HIVE}/HKLM/Software`, type: 'directory' },
      { name: `${HIVE}/HKLM/Software/Acme`, type: 'directory' },
      { name: `${HIVE}/HKLM/Software/Acme/@Count`, type: 'file', data: 'REG_DWORD\n2\n' },
      { name: `${HIVE}/HKLM/Software/Acme/.wh.@Removed`, type: 'file', data: '' },
      { name: `${HIVE}/HKLM/Software/Acme/.wh.Legacy`, type: 'file', data: '' },
      { name: `${HIVE}/HKLM/Software/Acme/Plugins`, type: 'directory' },
      { name: `${HIVE}/HKLM/Software/Acme/Plugins/@B`, type: 'file', data: 'REG_MULTI_SZ\nb1\nb2\n' },
    ]);
    const { archive } = await dockerArchive({
      layers: [busyboxLayer(), base, changes],
      repoTags: ['hive:latest'],
      config: { config: { Cmd: ['sh'] } },
    });
    await d.dockerOk(['load'], { input: archive });
  });
  after(async () => {
    await d?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('the image view merges the layers: changed values, whiteouts for deleted values and keys', async () => {
    const out = await regOk('query', '--image', 'hive', 'HKLM\\Software\\Acme', '/s');
    assert.equal(
      out,
      '\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\n' +
        '    (Default)    REG_SZ    Acme default\n' +
        '    Count    REG_DWORD    0x2\n' +
        '    Name    REG_SZ    base\n\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins\n' +
        '    A    REG_SZ    plugin a\n' +
        '    B    REG_MULTI_SZ    b1\\0b2\n\n',
    );
    const api = await d.api(
      'GET',
      '/images/hive:latest/registry?key=hklm%5Csoftware%5Cacme%5Cplugins&value=b',
    );
    assert.equal(api.status, 200, api.body);
    assert.deepEqual(JSON.parse(api.body), {
      Keys: [
        {
          Key: 'HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins',
          Values: [{ Name: 'B', Type: 'REG_MULTI_SZ', Data: ['b1', 'b2'] }],
          Subkeys: [],
        },
      ],
    });
    const legacy = await reg('query', '--image', 'hive', 'HKLM\\Software\\Acme\\Legacy');
    assert.equal(legacy.code, 1);
    assert.equal(
      legacy.stderr.trim(),
      'ERROR: The system was unable to find the specified registry key or value.',
    );
    const put = await d.api('PUT', '/images/hive/registry/value', { Key: 'HKLM\\X', Name: 'v', Data: 'x' });
    assert.equal(put.status, 404);
  });

  test('two containers change values independently and see only their own changes', async () => {
    await d.dockerOk(['run', '-d', '--name', 'one', 'hive', 'sleep', '1000']);
    await d.dockerOk(['create', '--name', 'two', 'hive', 'sleep', '1000']);
    // A running container and a stopped one.
    await regOk('add', 'one', 'HKLM\\Software\\Acme', '/v', 'Count', '/t', 'REG_DWORD', '/d', '0x10', '/f');
    await regOk('delete', 'one', 'HKLM\\Software\\Acme', '/v', 'Name', '/f');
    await regOk(
      'add',
      'one',
      'HKLM\\Software\\Acme\\OnlyOne',
      '/v',
      'Q',
      '/t',
      'REG_QWORD',
      '/d',
      '18446744073709551615',
    );
    await regOk('add', 'two', 'hklm\\software\\acme', '/v', 'count', '/t', 'REG_DWORD', '/d', '20', '/f');
    await regOk('delete', 'two', 'HKLM\\Software\\Acme\\Plugins', '/f');
    await regOk('add', 'two', 'HKCU\\Software\\Acme', '/v', 'Theme', '/d', 'dark', '/f');

    assert.equal(
      await regOk('query', 'one', 'HKLM\\Software\\Acme'),
      '\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\n' +
        '    (Default)    REG_SZ    Acme default\n' +
        '    Count    REG_DWORD    0x10\n\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\\OnlyOne\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins\n',
    );
    assert.equal(
      await regOk('query', 'two', 'HKLM\\Software\\Acme'),
      '\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\n' +
        '    (Default)    REG_SZ    Acme default\n' +
        '    Count    REG_DWORD    0x14\n' +
        '    Name    REG_SZ    base\n\n',
    );
    assert.match(
      await regOk('query', 'one', 'HKCU\\Software\\Acme', '/v', 'Theme'),
      /Theme {4}REG_SZ {4}light/,
    );
    assert.match(
      await regOk('query', 'two', 'HKCU\\Software\\Acme', '/v', 'Theme'),
      /Theme {4}REG_SZ {4}dark/,
    );
    // The image is untouched.
    assert.match(
      await regOk('query', '--image', 'hive', 'HKLM\\Software\\Acme', '/v', 'Count'),
      /Count {4}REG_DWORD {4}0x2\n/,
    );

    // Plain file changes: docker diff shows each value as a file, deletions as D.
    const diffOne = await d.dockerOk(['diff', 'one']);
    assert.match(diffOne, /^C \/\.strata\/hive\/HKLM\/Software\/Acme\/@Count$/m);
    assert.match(diffOne, /^D \/\.strata\/hive\/HKLM\/Software\/Acme\/@Name$/m);
    assert.match(diffOne, /^A \/\.strata\/hive\/HKLM\/Software\/Acme\/OnlyOne\/@Q$/m);
    const diffTwo = await d.dockerOk(['diff', 'two']);
    assert.match(diffTwo, /^D \/\.strata\/hive\/HKLM\/Software\/Acme\/Plugins$/m);
    assert.doesNotMatch(diffTwo, /OnlyOne|@Name/);
  });

  test('an application in busybox reads and writes values with cat and shell redirection', async () => {
    const hive = '/.strata/hive/HKLM/Software/Acme';
    assert.equal(await d.dockerOk(['exec', 'one', 'cat', `${hive}/@Count`]), 'REG_DWORD\n16');
    assert.equal(
      await d.dockerOk(['exec', 'one', 'sh', '-c', `sed -n 2p ${hive}/OnlyOne/@Q`]),
      '18446744073709551615',
    );
    // Atomic write by rename, as documented; then a REG_MULTI_SZ with echo and a key removed with rm.
    await d.dockerOk([
      'exec',
      'one',
      'sh',
      '-c',
      `printf 'REG_SZ\\nwritten by the app\\n' > ${hive}/.greeting.tmp && mv ${hive}/.greeting.tmp ${hive}/@Greeting && ` +
        `mkdir -p ${hive}/Lists && echo 'REG_MULTI_SZ\nx\ny z' > ${hive}/Lists/@Items && ` +
        `v=$(sed -n 2p ${hive}/@Count) && printf 'REG_DWORD\\n%d\\n' $((v + 1)) > ${hive}/@Count && rm -r ${hive}/OnlyOne`,
    ]);
    const out = await regOk('query', 'one', 'HKLM\\Software\\Acme', '/s');
    assert.equal(
      out,
      '\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\n' +
        '    (Default)    REG_SZ    Acme default\n' +
        '    Count    REG_DWORD    0x11\n' +
        '    Greeting    REG_SZ    written by the app\n\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\\Lists\n' +
        '    Items    REG_MULTI_SZ    x\\0y z\n\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins\n' +
        '    A    REG_SZ    plugin a\n' +
        '    B    REG_MULTI_SZ    b1\\0b2\n\n',
    );
    // A change made from outside while the container is stopped is what the application reads next.
    await d.dockerOk(['stop', '-t', '0', 'one']);
    await regOk('add', 'one', 'HKLM\\Software\\Acme', '/v', 'Greeting', '/d', 'set while stopped', '/f');
    await d.dockerOk(['start', 'one']);
    assert.equal(await d.dockerOk(['exec', 'one', 'cat', `${hive}/@Greeting`]), 'REG_SZ\nset while stopped');
  });

  test('export and import through the CLI: UTF-16 LE with BOM, every type, into another container', async () => {
    await regOk('add', 'one', 'HKLM\\Software\\Types', '/ve', '/d', 'default');
    await regOk(
      'add',
      'one',
      'HKLM\\Software\\Types',
      '/v',
      'Expand',
      '/t',
      'REG_EXPAND_SZ',
      '/d',
      '%PATH%;C:\\bin',
    );
    await regOk(
      'add',
      'one',
      'HKLM\\Software\\Types',
      '/v',
      'Multi',
      '/t',
      'REG_MULTI_SZ',
      '/d',
      'a#b c',
      '/s',
      '#',
    );
    await regOk('add', 'one', 'HKLM\\Software\\Types', '/v', 'Dword', '/t', 'REG_DWORD', '/d', '4294967295');
    await regOk(
      'add',
      'one',
      'HKLM\\Software\\Types',
      '/v',
      'Qword',
      '/t',
      'REG_QWORD',
      '/d',
      '0x123456789abcdef0',
    );
    await regOk('add', 'one', 'HKLM\\Software\\Types', '/v', 'Binary', '/t', 'REG_BINARY', '/d', '00ff10');
    await regOk('add', 'one', 'HKLM\\Software\\Types', '/v', 'None', '/t', 'REG_NONE');
    await regOk('add', 'one', 'HKLM\\Software\\Types\\Empty');
    const file = path.join(work, 'types.reg');
    await regOk('export', 'one', 'HKLM\\Software\\Types', file);
    const bytes = fs.readFileSync(file);
    assert.deepEqual([...bytes.subarray(0, 2)], [0xff, 0xfe]);
    assert.equal(
      bytes.subarray(2).toString('utf16le'),
      'Windows Registry Editor Version 5.00\r\n\r\n' +
        '[HKEY_LOCAL_MACHINE\\Software\\Types]\r\n' +
        '@="default"\r\n' +
        '"Binary"=hex:00,ff,10\r\n' +
        '"Dword"=dword:ffffffff\r\n' +
        '"Expand"=hex(2):25,00,50,00,41,00,54,00,48,00,25,00,3b,00,43,00,3a,00,5c,00,62,\\\r\n' +
        '  00,69,00,6e,00,00,00\r\n' +
        '"Multi"=hex(7):61,00,00,00,62,00,20,00,63,00,00,00,00,00\r\n' +
        '"None"=hex(0):\r\n' +
        '"Qword"=hex(b):f0,de,bc,9a,78,56,34,12\r\n\r\n' +
        '[HKEY_LOCAL_MACHINE\\Software\\Types\\Empty]\r\n\r\n',
    );
    const exists = await reg('export', 'one', 'HKLM\\Software\\Types', file);
    assert.equal(exists.code, 1);
    assert.match(exists.stderr, /^ERROR: File .*types\.reg already exists; pass \/y to overwrite it\./);

    await regOk('import', 'two', file);
    assert.equal(
      await regOk('query', 'two', 'HKLM\\Software\\Types', '/s'),
      await regOk('query', 'one', 'HKLM\\Software\\Types', '/s'),
    );
    const again = path.join(work, 'again.reg');
    await regOk('export', 'two', 'HKLM\\Software\\Types', again);
    assert.deepEqual(fs.readFileSync(again), bytes);

    // A UTF-8 file with deletions, from stdin.
    await ok(
      await d.strata(['reg', 'import', 'two', '-'], {
        input:
          'Windows Registry Editor Version 5.00\n\n[-HKEY_LOCAL_MACHINE\\Software\\Types\\Empty]\n' +
          '[HKEY_LOCAL_MACHINE\\Software\\Types]\n"Binary"=-\n"Added"="ünïcødé"\n',
      }),
      'import from stdin',
    );
    const after = await regOk('query', 'two', 'HKLM\\Software\\Types');
    assert.match(after, /Added {4}REG_SZ {4}ünïcødé/);
    assert.doesNotMatch(after, /Binary|Empty/);
  });

  test('bad input is refused with a clear error and changes nothing', async () => {
    const before = await regOk('query', 'two', 'HKLM', '/s');
    const diffBefore = await d.dockerOk(['diff', 'two']);
    const bad = path.join(work, 'bad.reg');
    fs.writeFileSync(
      bad,
      'Windows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\Software\\Acme]\r\n"Fine"="x"\r\n"Big"=dword:1ffffffff\r\n',
    );
    const cases: [string[], RegExp][] = [
      [['import', 'two', bad], /^ERROR: invalid \.reg file: line 5: REG_DWORD data out of range/],
      [
        ['add', 'two', 'HKLM\\Software\\Acme', '/v', 'D', '/t', 'REG_DWORD', '/d', '0x1FFFFFFFF'],
        /^ERROR: REG_DWORD data out of range \(0 to 0xFFFFFFFF\): 0x1FFFFFFFF/,
      ],
      [
        ['add', 'two', 'HKLM\\Software\\Acme', '/v', 'D', '/t', 'REG_WORD', '/d', '1'],
        /^ERROR: unknown value type "REG_WORD"/,
      ],
      [['add', 'two', 'HKLM\\Software\\..\\System', '/v', 'D', '/d', '1'], /^ERROR: invalid key name "\.\."/],
      [
        ['add', 'two', `HKLM\\${'k'.repeat(300)}`, '/v', 'D', '/d', '1'],
        /^ERROR: invalid key name .*longer than 255 characters/,
      ],
      [
        ['add', 'two', 'HKLM\\Software\\Acme', '/v', 'Count', '/t', 'REG_DWORD', '/d', '1'],
        /^ERROR: Value Count exists; pass \/f to overwrite it\./,
      ],
      [
        ['delete', 'two', 'HKLM\\Software\\Acme'],
        /^ERROR: Permanently delete the registry key HKLM\\Software\\Acme\? Pass \/f to delete without confirmation\./,
      ],
      [['query', 'nosuch', 'HKLM'], /^ERROR: No such container: nosuch/],
      [['query', 'two', 'HKXX\\Software'], /^ERROR: invalid key path .*unknown root key "HKXX"/],
      [
        ['add', 'two', 'HKLM\\Software\\Acme', '/v', 'a', '/v', 'b'],
        /^ERROR: Invalid syntax\. \/v is given twice/,
      ],
    ];
    for (const [args, message] of cases) {
      const r = await reg(...args);
      assert.equal(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
    }
    // The Engine API refuses the same things with 400.
    const api: [string, string, unknown, RegExp][] = [
      [
        'PUT',
        '/containers/two/registry/value',
        { Key: 'HKLM\\X', Name: 'v', Type: 'REG_DWORD', Data: 0x1ffffffff },
        /out of range/,
      ],
      ['PUT', '/containers/two/registry/value', { Key: 'HKLM\\X', Name: 'a\u0000b', Data: 'x' }, /NUL/],
      ['PUT', '/containers/two/registry/value', { Key: 'HKLM\\a\u0000b', Data: 'x' }, /NUL/],
      [
        'PUT',
        '/containers/two/registry/value',
        { Key: 'HKLM\\X', Type: 'REG_FOO', Data: 'x' },
        /unknown value type/,
      ],
      ['GET', '/containers/two/registry?key=HKLM%5C..%5Cx', undefined, /invalid key name/],
      ['POST', '/containers/two/registry/import', 'REGEDIT5\r\n', /first line must be/],
    ];
    for (const [method, url, body, message] of api) {
      const r = await d.api(method, url, body);
      assert.equal(r.status, 400, `${method} ${url}: ${r.body}`);
      assert.match(JSON.parse(r.body).message, message);
    }
    assert.equal(await regOk('query', 'two', 'HKLM', '/s'), before);
    assert.equal(await d.dockerOk(['diff', 'two']), diffBefore);
  });

  test('query /f searches keys, value names and data', async () => {
    const out = await regOk('query', 'one', 'HKLM\\Software', '/f', 'plugin', '/s');
    assert.equal(
      out,
      '\nHKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins\n' +
        '    A    REG_SZ    plugin a\n' +
        'End of search: 2 match(es) found.\n',
    );
    const none = await reg('query', 'one', 'HKLM\\Software', '/f', 'nothing-like-this', '/s');
    assert.equal(none.code, 1);
    assert.equal(none.stdout, 'End of search: 0 match(es) found.\n');
  });

  test('commit carries exactly the container hive changes into the new image', async () => {
    await d.dockerOk(['commit', 'one', 'hive-committed']);
    for (const root of ['HKLM', 'HKCU']) {
      assert.equal(
        await regOk('query', '--image', 'hive-committed', root, '/s'),
        await regOk('query', 'one', root, '/s'),
        root,
      );
    }
    // Container two's changes stay out; the base image is unchanged.
    assert.match(
      await regOk('query', '--image', 'hive-committed', 'HKCU\\Software\\Acme'),
      /Theme {4}REG_SZ {4}light/,
    );
    assert.match(
      await regOk('query', '--image', 'hive-committed', 'HKLM\\Software\\Acme', '/v', 'Count'),
      /0x11\n/,
    );
    assert.match(await regOk('query', '--image', 'hive', 'HKLM\\Software\\Acme', '/v', 'Count'), /0x2\n/);
    // A container of the committed image reads the committed values as files.
    const value = await d.dockerOk([
      'run',
      '--rm',
      'hive-committed',
      'cat',
      '/.strata/hive/HKLM/Software/Acme/@Greeting',
    ]);
    assert.equal(value, 'REG_SZ\nset while stopped');
  });

  test('Dockerfile: COPY of a strata reg convert output, RUN writing and deleting values', async () => {
    const context = path.join(work, 'context');
    fs.mkdirSync(context);
    const settings = path.join(work, 'settings.reg');
    const text =
      'Windows Registry Editor Version 5.00\r\n\r\n[HKEY_LOCAL_MACHINE\\Software\\Acme]\r\n"Installed"=dword:00000001\r\n\r\n' +
      '[HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins]\r\n"C"="plugin c"\r\n';
    fs.writeFileSync(settings, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]));
    assert.match(
      ok(await reg('convert', settings, path.join(context, 'hive')), 'convert'),
      /Wrote 2 value\(s\)/,
    );
    fs.writeFileSync(
      path.join(context, 'Dockerfile'),
      'FROM hive\nCOPY hive/ /.strata/hive/\n' +
        "RUN printf 'REG_SZ\\nbuilt\\n' > /.strata/hive/HKLM/Software/Acme/@BuildInfo && rm /.strata/hive/HKLM/Software/Acme/Plugins/@A\n",
    );
    await d.dockerOk(['build', '-q', '-t', 'hive-built', context]);
    assert.equal(
      await regOk('query', '--image', 'hive-built', 'HKLM\\Software\\Acme', '/s'),
      '\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\n' +
        '    (Default)    REG_SZ    Acme default\n' +
        '    BuildInfo    REG_SZ    built\n' +
        '    Count    REG_DWORD    0x2\n' +
        '    Installed    REG_DWORD    0x1\n' +
        '    Name    REG_SZ    base\n\n' +
        'HKEY_LOCAL_MACHINE\\Software\\Acme\\Plugins\n' +
        '    B    REG_MULTI_SZ    b1\\0b2\n' +
        '    C    REG_SZ    plugin c\n\n',
    );
  });

  test('push to the Strata registry and pull into another daemon carry the hive, whiteouts included', async () => {
    const registry = await RegistryProcess.strata();
    const other = await startDaemon();
    try {
      const images = ['hive'];
      if ((await d.docker(['image', 'inspect', 'hive-committed'])).code === 0) images.push('hive-committed');
      for (const image of images) {
        const remote = `127.0.0.1:${registry.port}/${image}:v1`;
        await d.dockerOk(['tag', image, remote]);
        await d.dockerOk(['push', remote]);
        await other.dockerOk(['pull', remote]);
        const query = (daemon: TestDaemon, ref: string) =>
          daemon.strata(['reg', 'query', '--image', ref, 'HKLM\\Software\\Acme', '/s']);
        const here = ok(await query(d, image), `query ${image} here`);
        assert.equal(ok(await query(other, remote), `query ${remote} there`), here);
        assert.doesNotMatch(here, /Removed|Legacy/);
      }
      // And a container on the other side sees the same files.
      const remote = `127.0.0.1:${registry.port}/hive:v1`;
      const listing = await other.dockerOk([
        'run',
        '--rm',
        remote,
        'ls',
        '-a',
        '/.strata/hive/HKLM/Software/Acme',
      ]);
      assert.deepEqual(listing.split('\n').sort(), ['.', '..', '@', '@Count', '@Name', 'Plugins']);
    } finally {
      await other.cleanup();
      await registry.stop();
    }
  });

  test('a hostile image cannot make the daemon write outside the container', async () => {
    const evil = await tarOf([{ name: '.strata', type: 'symlink', linkname: '/etc' }]);
    const { archive } = await dockerArchive({ layers: [busyboxLayer(), evil], repoTags: ['evil:latest'] });
    await d.dockerOk(['load'], { input: archive });
    await d.dockerOk(['create', '--name', 'evil', 'evil', 'sh']);
    const hostEtc = fs.readdirSync('/etc').sort();
    const r = await reg('add', 'evil', 'HKLM\\Software\\X', '/v', 'v', '/d', 'x');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /symbolic link/);
    assert.deepEqual(fs.readdirSync('/etc').sort(), hostEtc);
    assert.equal(fs.existsSync('/etc/hive'), false);
  });
});
