import { createHash, timingSafeEqual } from 'node:crypto';
import * as fs from 'node:fs';
import { z } from 'zod';
import { type Principal, principalNames, tokenPrincipal } from './principal.js';

/**
 * The daemon's auth configuration (`strata daemon --auth-config FILE`), JSON:
 *
 *   { "tokens": [ { "name": "ci", "token": "…", "groups": ["devs"], "admin": false },
 *                 { "name": "ops", "tokenSha256": "<hex of sha256(token)>" } ],
 *     "admins": [ "user:alice", "group:wheel", "cert:admin-client", "token:ops" ] }
 *
 * A client sends a token as `Authorization: Bearer <token>` (the docker CLI does so from
 * `HttpHeaders` in its config.json). Storing only `tokenSha256` keeps the secret out of the file.
 */
const configSchema = z.object({
  tokens: z
    .array(
      z
        .object({
          name: z.string().regex(/^[A-Za-z0-9_.@-]+$/),
          token: z.string().min(16).optional(),
          tokenSha256: z
            .string()
            .regex(/^[0-9a-f]{64}$/)
            .optional(),
          groups: z.array(z.string()).optional(),
          admin: z.boolean().optional(),
        })
        .refine((t) => t.token !== undefined || t.tokenSha256 !== undefined, {
          message: 'each token needs "token" or "tokenSha256"',
        }),
    )
    .optional(),
  admins: z.array(z.string()).optional(),
});

export type AuthConfigFile = z.infer<typeof configSchema>;

export class AuthConfig {
  private readonly tokens: { hash: Buffer; principal: Principal }[];
  private readonly admins: Set<string>;

  constructor(file: AuthConfigFile = {}) {
    this.admins = new Set(file.admins ?? []);
    this.tokens = (file.tokens ?? []).map((t) => {
      const hash = t.tokenSha256
        ? Buffer.from(t.tokenSha256, 'hex')
        : createHash('sha256')
            .update(t.token ?? '')
            .digest();
      const p = tokenPrincipal(t.name, t.groups ?? [], t.admin ?? false);
      p.admin = p.admin || this.isAdmin(p);
      return { hash, principal: p };
    });
  }

  static load(path: string | undefined): AuthConfig {
    if (!path) return new AuthConfig();
    const parsed = configSchema.safeParse(JSON.parse(fs.readFileSync(path, 'utf8')));
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new Error(`auth config ${path}: ${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
    }
    return new AuthConfig(parsed.data);
  }

  get hasTokens(): boolean {
    return this.tokens.length > 0;
  }

  /** The principal of a bearer token, or null when no configured token matches. */
  principalForToken(token: string): Principal | null {
    const hash = createHash('sha256').update(token).digest();
    let found: Principal | null = null;
    for (const t of this.tokens) if (timingSafeEqual(t.hash, hash)) found = t.principal;
    return found ? { ...found, groups: [...found.groups], aliases: [...found.aliases] } : null;
  }

  isAdmin(p: Principal): boolean {
    return principalNames(p).some((n) => n !== '*' && this.admins.has(n));
  }
}
