import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Principal } from '../auth/acl.js';
import type { Authorizer } from '../auth/authorizer.js';
import { parseScopes } from '../auth/scope.js';
import { RegistryError } from '../errors.js';
import { readBody, sendJson } from './context.js';

/** Form bodies of OAuth2 token requests are tiny; anything larger is refused. */
const FORM_MAX_BYTES = 64 * 1024;

/**
 * The token endpoint of Docker token authentication.
 *
 * GET  /token?service=…&scope=repository:<name>:pull,push[&scope=…]  with optional Basic credentials
 * POST /token  (OAuth2 form: grant_type=password, username, password, scope, service)
 *
 * Without credentials the caller is anonymous and gets what the ACL grants anonymous users; wrong
 * credentials are 401 (that is how `docker login` learns a password is wrong). The token carries the
 * requested scopes cut down to the caller's grants — possibly none.
 */
export async function serveToken(
  req: IncomingMessage,
  res: ServerResponse,
  query: URLSearchParams,
  authorizer: Authorizer,
): Promise<void> {
  let principal: Principal = { user: null, groups: [] };
  let scopes = query.getAll('scope');
  if (req.method === 'POST') {
    const form = new URLSearchParams((await readBody(req, FORM_MAX_BYTES)).toString('utf8'));
    const grantType = form.get('grant_type');
    if (grantType !== 'password') {
      sendJson(res, 400, {
        error: 'unsupported_grant_type',
        error_description: 'only grant_type=password is supported',
      });
      return;
    }
    const found = await authorizer.authenticateBasic(
      Buffer.from(`${form.get('username') ?? ''}:${form.get('password') ?? ''}`).toString('base64'),
    );
    if (found === null) throw badCredentials();
    principal = found;
    scopes = [...scopes, ...form.getAll('scope')];
  } else {
    req.resume();
    const header = req.headers.authorization;
    if (header !== undefined && header.trim() !== '') {
      const [scheme = '', credentials = ''] = header.trim().split(/\s+/, 2);
      if (scheme.toLowerCase() !== 'basic') throw badCredentials();
      const found = await authorizer.authenticateBasic(credentials);
      if (found === null) throw badCredentials();
      principal = found;
    }
  }
  const access = authorizer.grant(principal, parseScopes(scopes));
  const issued = await authorizer.issueToken(principal, access);
  const body: Record<string, string | number> = {
    token: issued.token,
    access_token: issued.token,
    expires_in: issued.expiresIn,
    issued_at: issued.issuedAt.toISOString(),
  };
  if (req.method === 'POST')
    body.scope = access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ');
  sendJson(res, 200, body, { 'Cache-Control': 'no-store' });
}

function badCredentials(): RegistryError {
  return new RegistryError('UNAUTHORIZED', 'invalid username or password', {
    headers: { 'WWW-Authenticate': 'Basic realm="strata-registry"' },
  });
}
