import { z } from 'zod';

/**
 * Credentials as clients hand them to the daemon, and the registry's authentication challenges.
 *
 * The docker CLI sends `X-Registry-Auth: base64url(JSON)` on pull and push (`e30=` = `{}` when it has
 * nothing), dockerode uses the standard alphabet, `POST /auth` carries the same JSON as its body.
 * A registry answers a request it wants credentials for with `401` and
 * `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (Docker token auth) or `Basic realm="…"`.
 */
export interface RegistryCredentials {
  username?: string;
  password?: string;
  /** OAuth2 refresh token from an earlier login (`IdentityToken`). */
  identityToken?: string;
  /** A bearer token to send as is. */
  registryToken?: string;
}

export const authConfigSchema = z.looseObject({
  username: z.string().nullish(),
  password: z.string().nullish(),
  auth: z.string().nullish(),
  email: z.string().nullish(),
  serveraddress: z.string().nullish(),
  identitytoken: z.string().nullish(),
  registrytoken: z.string().nullish(),
});
export type AuthConfig = z.infer<typeof authConfigSchema>;

/** The credentials of an auth config; `auth` (base64 `user:password`) fills in what is missing. */
export function credentialsOf(config: AuthConfig): RegistryCredentials {
  const out: RegistryCredentials = {};
  let username = config.username ?? '';
  let password = config.password ?? '';
  if ((username === '' || password === '') && config.auth) {
    const decoded = Buffer.from(config.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      username ||= decoded.slice(0, colon);
      password ||= decoded.slice(colon + 1);
    }
  }
  if (username !== '') out.username = username;
  if (password !== '') out.password = password;
  if (config.identitytoken) out.identityToken = config.identitytoken;
  if (config.registrytoken) out.registryToken = config.registrytoken;
  return out;
}

/**
 * Decodes `X-Registry-Auth`. Either base64 alphabet, with or without padding; anything that does not
 * decode to a JSON object means "no credentials", as dockerd treats it.
 */
export function parseRegistryAuthHeader(value: string | string[] | undefined): RegistryCredentials {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text || text.trim() === '') return {};
  const normalized = text.trim().replace(/-/g, '+').replace(/_/g, '/');
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(normalized, 'base64').toString('utf8'));
  } catch {
    return {};
  }
  const parsed = authConfigSchema.safeParse(json);
  return parsed.success ? credentialsOf(parsed.data) : {};
}

export function hasCredentials(credentials: RegistryCredentials): boolean {
  return (
    credentials.username !== undefined ||
    credentials.identityToken !== undefined ||
    credentials.registryToken !== undefined
  );
}
