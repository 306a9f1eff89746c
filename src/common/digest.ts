import { createHash, type Hash } from 'node:crypto';
import { InvalidArgument } from './errors.js';

/** An OCI digest string: `<algorithm>:<hex>`. Only sha256 and sha512 are produced or accepted. */
export type Digest = `sha256:${string}` | `sha512:${string}`;

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function isDigest(value: string): value is Digest {
  return DIGEST_RE.test(value);
}

export function parseDigest(value: string): Digest {
  if (!isDigest(value)) throw new InvalidArgument(`invalid digest: ${JSON.stringify(value)}`);
  return value;
}

export function digestAlgorithm(digest: Digest): 'sha256' | 'sha512' {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function digestHex(digest: Digest): string {
  return digest.slice(digest.indexOf(':') + 1);
}

export function sha256(data: string | Buffer): Digest {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export function newHash(algorithm: 'sha256' | 'sha512' = 'sha256'): Hash {
  return createHash(algorithm);
}

/** Chain id of a layer stack (OCI image spec): chain(L0) = diffId(L0); chain(Ln) = sha256(chain(Ln-1) + " " + diffId(Ln)). */
export function chainIds(diffIds: readonly Digest[]): Digest[] {
  const out: Digest[] = [];
  for (const diffId of diffIds) {
    const parent = out.at(-1);
    out.push(parent === undefined ? diffId : sha256(`${parent} ${diffId}`));
  }
  return out;
}

/** The 12-hex short form docker prints for ids. */
export function shortId(idOrDigest: string): string {
  const hex = idOrDigest.includes(':') ? idOrDigest.slice(idOrDigest.indexOf(':') + 1) : idOrDigest;
  return hex.slice(0, 12);
}
