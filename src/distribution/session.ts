import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import { errorMessage } from '../common/errors.js';
import { statusLine } from '../common/status-line.js';
import { preferredChallenge, type RegistryChallenge } from '../common/www-authenticate.js';
import { hasCredentials, type RegistryCredentials } from './auth.js';
import { RegistryUnreachable, registryError, Unauthorized } from './errors.js';
import type { RegistryEndpoint, RegistryHosts } from './hosts.js';
import { type RegistryTransport, readResponse } from './transport.js';

/**
 * One conversation with one registry, under one set of credentials: what a pull, a push or a login
 * needs. Lifecycle:
 *  1. `ping()` — `GET /v2/`: decides TLS or plain HTTP (plain only for insecure registries) and learns
 *     the authentication challenge (none, Basic, or Bearer with a token realm).
 *  2. `request(…)` — every registry call; Basic credentials or a bearer token for the session's
 *     scopes (`repository:<name>:pull,push`) are attached. A 401 carrying a new challenge gets one
 *     retry with a fresh token (bodies that are streams are never retried: callers make a small
 *     request first, e.g. POST before the PUT of a blob).
 *  3. `addScope(…)` when the operation grows (a cross-repository mount needs pull on the source).
 * Tokens are cached for the session's life, bounded by their `expires_in`.
 */
export interface SessionRequest {
  headers?: Record<string, string>;
  body?: Buffer | Readable;
  bodyLength?: number;
  signal?: AbortSignal;
}

const tokenResponseSchema = z.looseObject({
  token: z.string().optional(),
  access_token: z.string().optional(),
  expires_in: z.number().optional(),
});

/** Scheme that worked last for a host; shared by the sessions of one daemon. */
export type SchemeCache = Map<string, 'https' | 'http'>;

export class RegistrySession {
  readonly host: string;
  private base: URL | null = null;
  private challenge: RegistryChallenge | null = null;
  private readonly scopes: Set<string>;
  private token: { value: string; scopes: string; expiresAt: number } | null = null;

  constructor(
    private readonly transport: RegistryTransport,
    private readonly hosts: RegistryHosts,
    private readonly schemes: SchemeCache,
    /** The reference domain (`docker.io`, `127.0.0.1:5000`). */
    readonly domain: string,
    readonly credentials: RegistryCredentials,
    scopes: readonly string[] = [],
    /** Where to reach the registry instead of the domain's own host: a mirror, at its own scheme. */
    private readonly endpoint: RegistryEndpoint | null = null,
  ) {
    this.host = endpoint?.host ?? hosts.endpointHost(domain);
    this.scopes = new Set(scopes);
  }

  get insecure(): boolean {
    return this.hosts.isInsecure(this.host);
  }

  /** The mirror this session talks to, if it is one. */
  get mirror(): RegistryEndpoint | null {
    return this.endpoint;
  }

  get hasCredentials(): boolean {
    return hasCredentials(this.credentials);
  }

  /** `http://127.0.0.1:5000/v2/` once pinged. */
  get baseUrl(): string {
    return new URL('/v2/', this.base ?? `https://${this.host}`).toString();
  }

  async ping(signal?: AbortSignal): Promise<void> {
    const cached = this.schemes.get(this.host);
    let candidates: Array<'https' | 'http'> = this.insecure ? ['https', 'http'] : ['https'];
    if (cached === 'http' && this.insecure) candidates = ['http', 'https'];
    // A mirror is spoken to at the scheme it was configured with, and no other.
    if (this.endpoint !== null) candidates = [this.endpoint.scheme];
    let failure: unknown = null;
    let failedUrl = '';
    for (const scheme of candidates) {
      const url = new URL(`${scheme}://${this.host}/v2/`);
      let res: IncomingMessage;
      try {
        res = await this.transport.send(url, { method: 'GET', signal, insecureTls: this.insecure });
      } catch (err) {
        if (signal?.aborted) throw err;
        failure = err;
        failedUrl = url.toString();
        continue;
      }
      res.resume();
      this.base = new URL(`${scheme}://${this.host}`);
      this.schemes.set(this.host, scheme);
      if (res.statusCode === 401) this.challenge = preferredChallenge(res.headers['www-authenticate']);
      return;
    }
    throw unreachable('Get', failedUrl, failure);
  }

  addScope(scope: string): void {
    if (this.scopes.has(scope)) return;
    this.scopes.add(scope);
    this.token = null;
  }

  url(pathAndQuery: string): URL {
    if (this.base === null) throw new Error('registry session used before ping');
    return new URL(pathAndQuery, this.base);
  }

  /** A registry call with authentication; resolves with the response whatever its status. */
  async request(
    method: string,
    target: string | URL,
    options: SessionRequest = {},
  ): Promise<IncomingMessage> {
    const url = typeof target === 'string' ? this.url(target) : target;
    const retriable = options.body === undefined || Buffer.isBuffer(options.body);
    for (let attempt = 0; ; attempt++) {
      const authorization = await this.authorization(options.signal);
      let res: IncomingMessage;
      try {
        res = await this.transport.send(url, {
          method,
          headers: { ...options.headers, ...(authorization ? { Authorization: authorization } : {}) },
          body: options.body,
          bodyLength: options.bodyLength,
          signal: options.signal,
          insecureTls: this.insecure,
        });
      } catch (err) {
        if (options.signal?.aborted) throw err;
        throw unreachable(
          method === 'GET' ? 'Get' : method === 'HEAD' ? 'Head' : method,
          url.toString(),
          err,
        );
      }
      if (res.statusCode !== 401 || attempt > 0 || !retriable) return res;
      const challenge = preferredChallenge(res.headers['www-authenticate']);
      if (challenge === null) return res;
      // A challenge the session did not know yet (or a token lacking a scope): authenticate again.
      res.resume();
      this.challenge = challenge;
      for (const scope of (challenge.params.scope ?? '').split(' ').filter(Boolean)) this.scopes.add(scope);
      this.token = null;
    }
  }

  /** The Authorization header the next request would carry (for requests sent outside `request`). */
  authorizationHeader(signal?: AbortSignal): Promise<string | undefined> {
    return this.authorization(signal);
  }

  private async authorization(signal?: AbortSignal): Promise<string | undefined> {
    if (this.challenge === null) return undefined;
    if (this.challenge.scheme === 'basic') {
      const { username, password } = this.credentials;
      if (username === undefined) return undefined;
      return `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
    }
    if (this.credentials.registryToken) return `Bearer ${this.credentials.registryToken}`;
    const key = [...this.scopes].sort().join(' ');
    if (this.token && this.token.scopes === key && this.token.expiresAt > Date.now()) {
      return `Bearer ${this.token.value}`;
    }
    const value = await this.fetchToken(signal);
    return `Bearer ${value}`;
  }

  /** Docker token authentication: a token for the session's scopes from the challenge's realm. */
  private async fetchToken(signal?: AbortSignal): Promise<string> {
    const challenge = this.challenge;
    const realm = challenge?.params.realm;
    if (!challenge || !realm) throw new Unauthorized('the registry asked for a token without naming a realm');
    const scopes = [...this.scopes].sort();
    const url = new URL(realm);
    const headers: Record<string, string> = {};
    let body: Buffer | undefined;
    let method = 'GET';
    const { username, password, identityToken } = this.credentials;
    if (identityToken) {
      method = 'POST';
      const form = new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: identityToken,
        client_id: 'strata',
        service: challenge.params.service ?? '',
        scope: scopes.join(' '),
      });
      body = Buffer.from(form.toString());
      headers['Content-Type'] = 'application/x-www-form-urlencoded';
    } else {
      if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
      for (const scope of scopes) url.searchParams.append('scope', scope);
      if (username !== undefined) {
        url.searchParams.set('account', username);
        headers.Authorization = `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
      }
    }
    let res: IncomingMessage;
    try {
      res = await this.transport.send(url, {
        method,
        headers,
        body,
        signal,
        insecureTls: this.hosts.isInsecure(url.host),
      });
    } catch (err) {
      if (signal?.aborted) throw err;
      throw unreachable(method === 'GET' ? 'Get' : 'Post', url.toString(), err);
    }
    const data = await readResponse(res, 1024 * 1024);
    if (res.statusCode === 401 || res.statusCode === 403) {
      const detail = registryError(res.statusCode, data).message;
      throw new Unauthorized(
        this.hasCredentials
          ? `unauthorized: ${detail.replace(/^unauthorized: /, '')}`
          : 'no basic auth credentials',
      );
    }
    if (res.statusCode !== 200) throw registryError(res.statusCode ?? 500, data);
    let parsed: z.infer<typeof tokenResponseSchema>;
    try {
      parsed = tokenResponseSchema.parse(JSON.parse(data.toString('utf8')));
    } catch {
      throw new Unauthorized(`the token server at ${url.origin} answered with something that is not a token`);
    }
    const value = parsed.token ?? parsed.access_token;
    if (!value) throw new Unauthorized(`the token server at ${url.origin} answered without a token`);
    // Refresh a little early; tokens without expires_in live 60 s (the spec's default).
    const lifetime = Math.max(10, (parsed.expires_in ?? 60) - 5) * 1000;
    this.token = { value, scopes: scopes.join(' '), expiresAt: Date.now() + lifetime };
    return value;
  }

  /**
   * `docker login`: checks the credentials against `/v2/` (for token registries, by getting a token
   * with them first). Wrong credentials → 401 `login attempt to … failed with status: 401 Unauthorized`.
   */
  async verifyCredentials(signal?: AbortSignal): Promise<void> {
    await this.ping(signal);
    if (this.challenge === null) return;
    const refused = (status: number): Unauthorized =>
      new Unauthorized(`login attempt to ${this.baseUrl} failed with status: ${statusLine(status)}`);
    if (this.challenge.scheme === 'bearer' && !this.credentials.registryToken) {
      try {
        await this.fetchToken(signal);
      } catch (err) {
        if (err instanceof Unauthorized) throw refused(401);
        throw err;
      }
    }
    const res = await this.request('GET', '/v2/', { signal });
    res.resume();
    if (res.statusCode === 401 || res.statusCode === 403) throw refused(res.statusCode);
  }
}

/** A network failure in Go's words where it matters (`dial tcp …: connect: connection refused`). */
function unreachable(verb: string, url: string, err: unknown): RegistryUnreachable {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  let detail = errorMessage(err);
  try {
    const { host, hostname } = new URL(url);
    if (code === 'ECONNREFUSED') detail = `dial tcp ${host}: connect: connection refused`;
    else if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
      detail = `dial tcp: lookup ${hostname}: no such host`;
  } catch {
    // keep Node's message
  }
  return new RegistryUnreachable(`${verb} "${url}": ${detail}`, { cause: err });
}
