import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
} from 'node:crypto';
import * as fs from 'node:fs';
import { jwtVerify, SignJWT } from 'jose';
import { z } from 'zod';
import type { ResourceAccess } from './scope.js';

export interface TokenOptions {
  issuer: string;
  /** The audience: the registry's service name, as in its challenges. */
  service: string;
  ttlSeconds: number;
  /** PEM file with a PKCS#8 P-256 private key; a fresh key is generated when absent. */
  signingKeyFile?: string;
  /** The key itself, as PEM (the main process's key, given to its HTTP workers). */
  signingKeyPem?: string;
}

/** A fresh P-256 signing key as PKCS#8 PEM. */
export function generateSigningKeyPem(): string {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
}

export interface IssuedToken {
  token: string;
  expiresIn: number;
  issuedAt: Date;
}

export interface TokenClaims {
  subject: string;
  access: ResourceAccess[];
}

const accessClaimSchema = z.array(
  z.object({
    type: z.enum(['repository', 'registry']),
    name: z.string(),
    actions: z.array(z.string()),
  }),
);

/**
 * Bearer tokens of Docker token authentication: ES256 JWTs whose `access` claim lists exactly the
 * grants the token endpoint decided on, bound to this registry by issuer and audience, short-lived.
 * The registry checks every request against the claim, so a token for one repository opens nothing else.
 */
export class TokenService {
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;
  private readonly keyId: string;

  constructor(private readonly options: TokenOptions) {
    if (options.signingKeyFile !== undefined) {
      this.privateKey = createPrivateKey(fs.readFileSync(options.signingKeyFile));
    } else if (options.signingKeyPem !== undefined) {
      this.privateKey = createPrivateKey(options.signingKeyPem);
    } else {
      this.privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    }
    this.publicKey = createPublicKey(this.privateKey);
    const der = this.publicKey.export({ type: 'spki', format: 'der' });
    this.keyId = createHash('sha256').update(der).digest('hex').slice(0, 32);
  }

  async issue(subject: string, access: ResourceAccess[]): Promise<IssuedToken> {
    const issuedAt = new Date(Math.floor(Date.now() / 1000) * 1000);
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: this.keyId })
      .setIssuer(this.options.issuer)
      .setAudience(this.options.service)
      .setSubject(subject)
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt)
      .setExpirationTime(Math.floor(issuedAt.getTime() / 1000) + this.options.ttlSeconds)
      .setJti(randomBytes(16).toString('hex'))
      .sign(this.privateKey);
    return { token, expiresIn: this.options.ttlSeconds, issuedAt };
  }

  /** The token's claims, or null when it is forged, expired, or meant for another service. */
  async verify(token: string): Promise<TokenClaims | null> {
    try {
      const { payload } = await jwtVerify(token, this.publicKey, {
        issuer: this.options.issuer,
        audience: this.options.service,
        algorithms: ['ES256'],
        clockTolerance: 5,
      });
      const access = accessClaimSchema.safeParse(payload.access ?? []);
      if (!access.success) return null;
      return { subject: payload.sub ?? '', access: access.data };
    } catch {
      return null;
    }
  }
}
