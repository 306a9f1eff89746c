import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as tls from 'node:tls';
import { importBusybox, run, STRATA_BIN, startDaemon, type TestDaemon } from '../helpers/daemon.js';

/**
 * The TCP listener speaks TLS with client certificates only (`docker --tlsverify`); a client without a
 * certificate, with one from another CA, or without TLS at all is refused; the daemon will not open a
 * TCP listener without TLS. Certificates are made with openssl for this test; loopback only.
 */
function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function makeCa(dir: string, name: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      '-subj',
      `/CN=${name}`,
    ],
    dir,
  );
}

function makeCert(dir: string, ca: string, name: string, cn: string, ext: string): void {
  openssl(
    [
      'req',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}-key.pem`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${cn}`,
    ],
    dir,
  );
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}-key.pem`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '1',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe('TCP listener with TLS client certificates', () => {
  let d: TestDaemon;
  let certs = '';
  let port = 0;
  let host = '';

  before(async () => {
    certs = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-tls-'));
    makeCa(certs, 'ca');
    makeCa(certs, 'other-ca');
    makeCert(
      certs,
      'ca',
      'server',
      'localhost',
      'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n',
    );
    makeCert(certs, 'ca', 'one', 'client-one', 'extendedKeyUsage=clientAuth\n');
    makeCert(certs, 'ca', 'two', 'client-two', 'extendedKeyUsage=clientAuth\n');
    makeCert(certs, 'other-ca', 'rogue', 'client-one', 'extendedKeyUsage=clientAuth\n');
    port = await freePort();
    host = `tcp://127.0.0.1:${port}`;
    d = await startDaemon({
      extraArgs: [
        '--host',
        host,
        '--tlsverify',
        '--tlscacert',
        path.join(certs, 'ca.pem'),
        '--tlscert',
        path.join(certs, 'server.pem'),
        '--tlskey',
        path.join(certs, 'server-key.pem'),
      ],
    });
    await importBusybox(d);
  });
  after(async () => {
    await d?.cleanup();
    fs.rmSync(certs, { recursive: true, force: true });
  });

  const tlsDocker = (client: string, args: string[]) =>
    run(
      'docker',
      [
        '--tlsverify',
        '--tlscacert',
        path.join(certs, 'ca.pem'),
        '--tlscert',
        path.join(certs, `${client}.pem`),
        '--tlskey',
        path.join(certs, `${client}-key.pem`),
        '-H',
        host,
        ...args,
      ],
      {
        env: { DOCKER_HOST: '', DOCKER_CONFIG: path.join(certs, 'cfg') },
      },
    );

  test('docker --tlsverify works: run with attach, exec, ps', async () => {
    const r = await tlsDocker('one', ['run', '--name', 'overtls', 'bb', 'echo', 'via-tls']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'via-tls\n');
    const piped = await run(
      'docker',
      [
        '--tlsverify',
        '--tlscacert',
        path.join(certs, 'ca.pem'),
        '--tlscert',
        path.join(certs, 'one.pem'),
        '--tlskey',
        path.join(certs, 'one-key.pem'),
        '-H',
        host,
        'run',
        '--rm',
        '-i',
        'bb',
        'cat',
      ],
      { input: 'stdin over tls\n', env: { DOCKER_HOST: '' } },
    );
    assert.equal(piped.stdout, 'stdin over tls\n');
    assert.equal((await tlsDocker('one', ['ps', '-a', '--format', '{{.Names}}'])).stdout.trim(), 'overtls');
  });

  test('the certificate subject is the principal: another client sees nothing until granted', async () => {
    const who = await tlsDocker('two', ['ps', '-a', '-q']);
    assert.equal(who.code, 0, who.stderr);
    assert.equal(who.stdout.trim(), '');
    const denied = await tlsDocker('two', ['inspect', 'overtls']);
    assert.match(denied.stderr, /cert:client-two lacks the "view" right/);
    const grant = await d.api('POST', '/containers/overtls/acl', {
      Grant: [{ Principal: 'cert:client-two', Rights: ['view'] }],
    });
    assert.equal(grant.status, 200, grant.body);
    assert.equal(
      (await tlsDocker('two', ['inspect', '-f', '{{.Name}}', 'overtls'])).stdout.trim(),
      '/overtls',
    );
  });

  test('clients without a valid certificate are refused', async () => {
    const plain = await run('docker', ['-H', host, 'ps'], {
      env: { DOCKER_HOST: '', DOCKER_TLS_VERIFY: '' },
    });
    assert.notEqual(plain.code, 0);
    const rogue = await tlsDocker('rogue', ['ps']);
    assert.notEqual(rogue.code, 0);
    // A TLS client that offers no certificate is cut off in the handshake.
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect(
        { host: '127.0.0.1', port, ca: fs.readFileSync(path.join(certs, 'ca.pem')), servername: 'localhost' },
        () => {
          socket.write('GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n');
        },
      );
      let data = '';
      socket.on('data', (c: Buffer) => {
        data += c.toString();
      });
      socket.on('error', (err) => resolve(`error ${err.message}`));
      socket.on('close', () => resolve(data === '' ? 'closed' : data));
    });
    assert.doesNotMatch(outcome, /200 OK/);
  });

  test('the daemon refuses a TCP listener without TLS', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'strata-notls-'));
    try {
      const r = await run(
        process.execPath,
        [
          STRATA_BIN,
          'daemon',
          '--root',
          path.join(dir, 'root'),
          '--socket',
          path.join(dir, 's.sock'),
          '--host',
          `tcp://127.0.0.1:${await freePort()}`,
        ],
        { timeoutMs: 30_000 },
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /refusing to listen on TCP without --tlsverify/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
