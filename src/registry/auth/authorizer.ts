import { RegistryError } from '../errors.js';
import { isRepositoryName } from '../names.js';
import { type AccessControl, type Action, ALL_ACTIONS, type Principal } from './acl.js';
import { formatScope, type ResourceAccess } from './scope.js';
import type { TokenService } from './token.js';
import type { UserDirectory } from './users.js';

/** Who made a request, and with what: no credentials, a password (Basic) or a token (Bearer). */
export interface Identity {
  principal: Principal;
  via: 'anonymous' | 'basic' | 'bearer';
  /** The grants of a bearer token; requests with a token are checked against these only. */
  tokenAccess?: ResourceAccess[];
}

export const ANONYMOUS_IDENTITY: Identity = { principal: { user: null, groups: [] }, via: 'anonymous' };

export interface AuthorizerOptions {
  service: string;
  /** Fixed token endpoint URL; when absent each challenge points at the Host the client used. */
  realm?: string;
  /** Whether anonymous callers may list the catalog (they see only what they may pull). */
  anonymousCatalog: boolean;
  /** Groups of a user named in a token, for deciding between 401 (ask again) and 403 (never). */
  groupsOf(user: string): readonly string[];
}

/**
 * Access control of every request. `identify` turns the Authorization header into an Identity (a bad
 * password or a forged or expired token is 401); `check` grants the access a route needs or refuses:
 * 401 with a `WWW-Authenticate: Bearer realm,service,scope` challenge when credentials could help
 * (none given, or a token lacking a scope the user could get), 403 DENIED when the ACL never allows it.
 * `grant` is the token endpoint's decision: the requested scopes cut down to what the ACL allows.
 */
export class Authorizer {
  constructor(
    private readonly users: UserDirectory,
    private readonly acl: AccessControl,
    private readonly tokens: TokenService,
    private readonly options: AuthorizerOptions,
  ) {}

  get service(): string {
    return this.options.service;
  }

  async identify(authorization: string | undefined, realm: string): Promise<Identity> {
    if (authorization === undefined || authorization.trim() === '') return ANONYMOUS_IDENTITY;
    const [scheme = '', ...rest] = authorization.trim().split(/\s+/);
    const credentials = rest.join(' ');
    if (scheme.toLowerCase() === 'basic') {
      const principal = await this.authenticateBasic(credentials);
      if (principal === null) throw this.unauthorized(realm, [], 'invalid username or password');
      return { principal, via: 'basic' };
    }
    if (scheme.toLowerCase() === 'bearer') {
      const claims = await this.tokens.verify(credentials);
      if (claims === null) throw this.unauthorized(realm, [], 'invalid or expired token', 'invalid_token');
      const user = claims.subject === '' ? null : claims.subject;
      const principal: Principal = { user, groups: user === null ? [] : this.options.groupsOf(user) };
      return { principal, via: 'bearer', tokenAccess: claims.access };
    }
    throw this.unauthorized(realm, [], `unsupported authorization scheme ${scheme}`);
  }

  /** Username and password of a Basic header checked against the user directory. */
  async authenticateBasic(credentials: string): Promise<Principal | null> {
    const decoded = Buffer.from(credentials, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return null;
    return this.users.authenticate(decoded.slice(0, colon), decoded.slice(colon + 1));
  }

  /** May `identity` perform `action` on the resource? */
  allows(identity: Identity, type: ResourceAccess['type'], name: string, action: string): boolean {
    if (identity.tokenAccess !== undefined) {
      return identity.tokenAccess.some(
        (a) => a.type === type && a.name === name && (a.actions.includes(action) || a.actions.includes('*')),
      );
    }
    return this.allowedByAcl(identity.principal, type, name, action);
  }

  /** Refuses unless `identity` holds every action of `needed`. */
  check(identity: Identity, needed: readonly ResourceAccess[], realm: string): void {
    const missing = needed.filter(
      (n) => !n.actions.every((action) => this.allows(identity, n.type, n.name, action)),
    );
    if (missing.length === 0) return;
    if (identity.principal.user === null) {
      throw this.unauthorized(realm, needed, 'authentication required');
    }
    if (identity.via === 'bearer') {
      // A narrower token than the user could have: ask the client to fetch a better one.
      const couldHave = missing.every((n) =>
        n.actions.every((action) => this.allowedByAcl(identity.principal, n.type, n.name, action)),
      );
      if (couldHave) throw this.unauthorized(realm, needed, 'insufficient scope', 'insufficient_scope');
    }
    throw new RegistryError('DENIED', undefined, { detail: missing.map(formatScope) });
  }

  /**
   * The base endpoint answers callers without credentials with a challenge even when anonymous pulls
   * are allowed: docker learns from this one response whether and where to authenticate.
   */
  requireCredentials(identity: Identity, realm: string): void {
    if (identity.via === 'anonymous') throw this.unauthorized(realm, [], 'authentication required');
  }

  /** The token endpoint's answer to a request for `requested` scopes by `principal`. */
  grant(principal: Principal, requested: readonly ResourceAccess[]): ResourceAccess[] {
    const out: ResourceAccess[] = [];
    for (const r of requested) {
      if (r.type === 'registry') {
        if (r.name === 'catalog' && this.allowedByAcl(principal, 'registry', 'catalog', '*')) {
          out.push({ type: 'registry', name: 'catalog', actions: ['*'] });
        }
        continue;
      }
      if (!isRepositoryName(r.name)) continue;
      const permitted = this.acl.permitted(principal, r.name);
      const wanted = r.actions.includes('*') ? ALL_ACTIONS : r.actions;
      const actions = ALL_ACTIONS.filter((a) => wanted.includes(a) && permitted.has(a));
      if (actions.length > 0) out.push({ type: 'repository', name: r.name, actions });
    }
    return out;
  }

  /** Repository names from `names` that `identity` may pull (what the catalog shows). */
  visibleRepositories(identity: Identity, names: readonly string[]): string[] {
    return names.filter((n) => this.allowedByAcl(identity.principal, 'repository', n, 'pull'));
  }

  async issueToken(principal: Principal, access: ResourceAccess[]): ReturnType<TokenService['issue']> {
    return this.tokens.issue(principal.user ?? '', access);
  }

  realmFor(defaultRealm: string): string {
    return this.options.realm ?? defaultRealm;
  }

  private allowedByAcl(
    principal: Principal,
    type: ResourceAccess['type'],
    name: string,
    action: string,
  ): boolean {
    if (type === 'registry')
      return name === 'catalog' && (principal.user !== null || this.options.anonymousCatalog);
    if (!(ALL_ACTIONS as readonly string[]).includes(action)) return false;
    return this.acl.isPermitted(principal, name, action as Action);
  }

  private unauthorized(
    realm: string,
    scopes: readonly ResourceAccess[],
    message: string,
    error?: string,
  ): RegistryError {
    const params = [`realm="${this.realmFor(realm)}"`, `service="${this.options.service}"`];
    if (scopes.length > 0) params.push(`scope="${scopes.map(formatScope).join(' ')}"`);
    if (error !== undefined) params.push(`error="${error}"`);
    return new RegistryError('UNAUTHORIZED', message, {
      detail: scopes.length > 0 ? scopes.map(formatScope) : undefined,
      headers: { 'WWW-Authenticate': `Bearer ${params.join(',')}` },
    });
  }
}
