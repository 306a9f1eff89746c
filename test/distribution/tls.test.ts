import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { RegistryHosts } from '../../src/distribution/hosts.js';
import { RegistrySession } from '../../src/distribution/session.js';
import { RegistryTransport, registryCertificateAuthorities } from '../../src/distribution/transport.js';
import { selfSignedCertificate } from '../helpers/certs.js';
import { STRATA_BIN, startDaemon, type TestDaemon } from '../helpers/daemon.js';
import { busyboxTar, loadImage, RegistryProcess, runOutput, tempDir, which } from './helpers.js';

/**
 * TLS and plain HTTP: a registry that only speaks TLS (self-signed certificate) on loopback works
 * through the daemon, since loopback registries are insecure ones (TLS tried first, certificate not
 * verified); a registry that is not insecure gets verified TLS only — no plain-HTTP fallback and no
 * self-signed certificate.
 */
const OPENSSL = which('openssl');

/** Every host treated as a secure registry, as a non-loopback one without --insecure-registry is. */
class SecureHosts extends RegistryHosts {
  override isInsecure(): boolean {
    return false;
  }
}

function session(hosts: RegistryHosts, domain: string): RegistrySession {
  return new RegistrySession(new RegistryTransport(), hosts, new Map(), domain, {}, []);
}

describe('registries over TLS and plain HTTP', {
  skip: OPENSSL === null ? 'openssl not installed' : false,
}, () => {
  let tlsRegistry: RegistryProcess;
  let plainRegistry: RegistryProcess;
  let d: TestDaemon;
  let cert: string;

  before(async () => {
    const dir = tempDir('tls');
    const generated = selfSignedCertificate(dir);
    cert = generated.cert;
    const key = generated.key;
    [tlsRegistry, plainRegistry, d] = await Promise.all([
      RegistryProcess.strata({ config: { tls: { cert, key } } }),
      RegistryProcess.strata(),
      startDaemon(),
    ]);
  });

  after(async () => {
    await d?.cleanup();
    await Promise.allSettled([tlsRegistry?.stop(), plainRegistry?.stop()]);
  });

  test('a loopback registry with a self-signed certificate: push and pull over TLS', async () => {
    const R = tlsRegistry.address;
    await loadImage(d, { tag: `${R}/secure/bb:v1`, layers: [await busyboxTar()], label: 'tls' });
    const pushed = await d.dockerOk(['push', `${R}/secure/bb:v1`]);
    assert.match(pushed, /v1: digest: sha256:/);
    await d.dockerOk(['rmi', `${R}/secure/bb:v1`]);
    await d.dockerOk(['pull', `${R}/secure/bb:v1`]);
    assert.equal(await runOutput(d, `${R}/secure/bb:v1`, ['echo', 'over tls']), 'over tls');
  });

  test('a secure registry is never spoken to in plain HTTP, and its certificate is verified', async () => {
    const insecure = session(new RegistryHosts(), plainRegistry.address);
    await insecure.ping();
    assert.equal(insecure.baseUrl, `http://${plainRegistry.address}/v2/`, 'loopback may fall back to HTTP');

    await assert.rejects(
      session(new SecureHosts(), plainRegistry.address).ping(),
      (err: Error & { status?: number }) => {
        assert.equal(err.status, 500);
        assert.match(err.message, new RegExp(`^Get "https://${plainRegistry.address}/v2/"`));
        return true;
      },
    );
    await assert.rejects(
      session(new SecureHosts(), tlsRegistry.address).ping(),
      /self[- ]signed certificate/,
    );
  });

  test('the CA bundle of NODE_EXTRA_CA_CERTS, moved aside by bin/strata, verifies a registry', async () => {
    const saved = process.env.STRATA_EXTRA_CA_CERTS;
    process.env.STRATA_EXTRA_CA_CERTS = cert;
    try {
      const cas = registryCertificateAuthorities();
      assert.ok(cas && cas.length > 1, "Node's roots stay trusted next to the extra bundle");
      assert.equal(cas.at(-1), fs.readFileSync(cert, 'utf8'));
      const verified = session(new SecureHosts(), tlsRegistry.address);
      await verified.ping();
      assert.equal(verified.baseUrl, `https://${tlsRegistry.address}/v2/`);
    } finally {
      if (saved === undefined) delete process.env.STRATA_EXTRA_CA_CERTS;
      else process.env.STRATA_EXTRA_CA_CERTS = saved;
    }
    assert.equal(registryCertificateAuthorities({}), undefined, 'without the variable: Node defaults');
  });

  test('bin/strata starts Node without NODE_EXTRA_CA_CERTS and passes the bundle on', async () => {
    const root = tempDir('ca-env');
    const child = spawn(STRATA_BIN, ['registry', 'serve', '--root', root, '--addr', '127.0.0.1:0'], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: cert },
      stdio: 'ignore',
    });
    try {
      // The shebang's env execs node in the same process: its environment is the one Node started with.
      let environ = '';
      for (let i = 0; i < 100 && !environ.includes('STRATA_EXTRA_CA_CERTS='); i++) {
        await new Promise((r) => setTimeout(r, 50));
        environ = fs.readFileSync(`/proc/${child.pid}/environ`, 'utf8');
      }
      const vars = new Map(
        environ.split('\0').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      assert.equal(vars.get('STRATA_EXTRA_CA_CERTS'), cert);
      assert.equal(vars.get('NODE_EXTRA_CA_CERTS'), '');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
