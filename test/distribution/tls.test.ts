import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RegistryHosts } from '../../src/distribution/hosts.js';
import { RegistrySession } from '../../src/distribution/session.js';
import { RegistryTransport } from '../../src/distribution/transport.js';
import { startDaemon, type TestDaemon } from '../helpers/daemon.js';
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

  before(async () => {
    const dir = tempDir('tls');
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    const gen = spawnSync(OPENSSL as string, [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ]);
    assert.equal(gen.status, 0, gen.stderr?.toString());
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
});
