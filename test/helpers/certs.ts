import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

/**
 * A self-signed EC certificate for 127.0.0.1 (valid one day), written as `key.pem` and `cert.pem`
 * into `dir`. Needs openssl; throws with its stderr when it fails.
 */
export function selfSignedCertificate(dir: string): { key: string; cert: string } {
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  const gen = spawnSync('openssl', [
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
  if (gen.status !== 0) throw new Error(`openssl req failed: ${gen.stderr?.toString() ?? gen.error}`);
  return { key, cert };
}
