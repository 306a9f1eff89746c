import * as http from 'node:http';
import * as https from 'node:https';
import * as tls from 'node:tls';
import { z } from 'zod';
import { errorMessage } from '../../common/errors.js';
import { preferredChallenge, type RegistryChallenge } from '../../common/www-authenticate.js';
import type { ProxyConfig } from '../config.js';
import { RegistryError } from '../errors.js';
import type { RepositoryName } from '../names.js';

/** A request to the upstream registry: always a read, for one repository. */
export interface UpstreamRequest {
  method: 'GET' | 'HEAD';
  /** `/v2/<name>/…`, with its query. */
  path: string;
  /** The repository whose pull scope a token must carry. */
  name: RepositoryName;
  headers?: Record<string, string>;
}

/** Redirects followed per request (blob downloads are commonly redirected once, to a storage URL). */
const MAX_REDIRECTS = 5;
/** An upstream that sends nothing for this long is given up on (connect, headers, or mid-body). */
const UPSTREAM_IDLE_MS = 60_000;
/** A token's lifetime when the token endpoint does not say (the Docker token spec's default). */
const DEFAULT_TOKEN_SECONDS = 60;
/** Tokens are renewed this long before they expire, so one never runs out in flight. */
const TOKEN_MARGIN_MS = 5_000;
const TOKEN_RESPONSE_MAX_BYTES = 1 << 20;

const tokenResponseSchema = z.looseObject({
  token: z.string().min(1).optional(),
  access_token: z.string().min(1).optional(),
  expires_in: z.number().positive().optional(),
});

/**
 * The client of a pull-through cache's upstream registry. A request goes out without credentials
 * until the upstream challenges one (401): for `Basic` the configured username and password are sent
 * from then on; for `Bearer realm,service` a token for `repository:<name>:pull` is fetched from the
 * realm (with the credentials as Basic, when configured), kept per scope until it expires, and the
 * request is sent once more. Redirects are followed, sending credentials only to the upstream's
 * own origin. A connection that fails or stalls is UNAVAILABLE (503); every answer is the caller's
 * to judge (`upstreamStatusError`), and its body the caller's to read or discard.
 */
export class UpstreamClient {
  readonly origin: string;
  private readonly agents: { http: http.Agent; https: https.Agent };
  private readonly tokens = new Map<string, { authorization: string; expiresAt: number }>();
  private readonly pendingTokens = new Map<string, Promise<string>>();
  /** Set once the upstream asked for Basic credentials: they are sent with every request after. */
  private wantsBasic = false;

  constructor(private readonly config: ProxyConfig) {
    this.origin = new URL(config.remoteUrl).origin;
    // A configured CA adds to the usual roots (a private registry's own CA), it does not replace them.
    const ca = config.ca === undefined ? undefined : [...tls.rootCertificates, config.ca];
    this.agents = {
      http: new http.Agent({ keepAlive: true }),
      https: new https.Agent({ keepAlive: true, ca }),
    };
  }

  async send(request: UpstreamRequest): Promise<http.IncomingMessage> {
    const scope = `repository:${request.name}:pull`;
    const response = await this.follow(request, this.knownAuthorization(scope));
    if (response.statusCode !== 401) return response;
    response.resume();
    const challenge = preferredChallenge(response.headers['www-authenticate']);
    const authorization = challenge === null ? null : await this.answer(challenge, scope);
    if (authorization === null) return response;
    return this.follow(request, authorization);
  }

  /** Closes idle connections to the upstream. */
  close(): void {
    this.agents.http.destroy();
    this.agents.https.destroy();
  }

  private knownAuthorization(scope: string): string | undefined {
    const token = this.tokens.get(scope);
    if (token !== undefined && token.expiresAt > Date.now()) return token.authorization;
    return this.wantsBasic ? this.basicAuthorization() : undefined;
  }

  private basicAuthorization(): string | undefined {
    const { username, password } = this.config;
    if (username === undefined) return undefined;
    return `Basic ${Buffer.from(`${username}:${password ?? ''}`).toString('base64')}`;
  }

  /** The Authorization that answers a challenge, or null when there is none to give. */
  private async answer(challenge: RegistryChallenge, scope: string): Promise<string | null> {
    if (challenge.scheme === 'basic') {
      this.wantsBasic = true;
      return this.basicAuthorization() ?? null;
    }
    // Concurrent requests of one repository share one token request.
    let pending = this.pendingTokens.get(scope);
    if (pending === undefined) {
      pending = this.fetchToken(challenge, scope).finally(() => this.pendingTokens.delete(scope));
      this.pendingTokens.set(scope, pending);
    }
    return pending;
  }

  private async fetchToken(challenge: RegistryChallenge, scope: string): Promise<string> {
    const realm = challenge.params.realm;
    let url: URL;
    try {
      url = new URL(realm ?? '');
    } catch {
      throw badGateway('the upstream registry challenged without a usable token realm', { realm });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw badGateway('the upstream registry challenged without a usable token realm', { realm });
    if (challenge.params.service !== undefined) url.searchParams.set('service', challenge.params.service);
    url.searchParams.set('scope', scope);
    const basic = this.basicAuthorization();
    const response = await this.exchange('GET', url, basic === undefined ? {} : { Authorization: basic });
    if (response.statusCode !== 200) {
      response.resume();
      throw upstreamStatusError(
        response.statusCode ?? 0,
        badGateway('the upstream token endpoint is missing'),
      );
    }
    const body = await readUpstreamBody(response, TOKEN_RESPONSE_MAX_BYTES, () =>
      badGateway('the upstream token response is too large'),
    );
    let parsed: z.infer<typeof tokenResponseSchema>;
    try {
      parsed = tokenResponseSchema.parse(JSON.parse(body.toString('utf8')));
    } catch {
      throw badGateway('the upstream token endpoint answered no token');
    }
    const token = parsed.token ?? parsed.access_token;
    if (token === undefined) throw badGateway('the upstream token endpoint answered no token');
    const authorization = `Bearer ${token}`;
    const lifetimeMs = (parsed.expires_in ?? DEFAULT_TOKEN_SECONDS) * 1000;
    this.tokens.set(scope, {
      authorization,
      expiresAt: Date.now() + Math.max(0, lifetimeMs - TOKEN_MARGIN_MS),
    });
    return authorization;
  }

  /** Sends the request, following redirects; credentials go to the upstream's origin only. */
  private async follow(request: UpstreamRequest, authorization?: string): Promise<http.IncomingMessage> {
    let url = new URL(request.path, this.origin);
    for (let hop = 0; ; hop++) {
      const headers: Record<string, string> = { ...request.headers };
      if (authorization !== undefined && url.origin === this.origin) headers.Authorization = authorization;
      const response = await this.exchange(request.method, url, headers);
      const location = response.headers.location;
      if (!isRedirect(response.statusCode) || location === undefined) return response;
      response.resume();
      if (hop >= MAX_REDIRECTS) throw badGateway('the upstream registry redirected too often');
      url = new URL(location, url);
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        throw badGateway('the upstream registry redirected to a non-HTTP URL');
    }
  }

  private exchange(method: string, url: URL, headers: Record<string, string>): Promise<http.IncomingMessage> {
    const secure = url.protocol === 'https:';
    const send = secure ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        { method, headers, agent: secure ? this.agents.https : this.agents.http },
        resolve,
      );
      req.setTimeout(UPSTREAM_IDLE_MS, () =>
        req.destroy(new Error('the upstream registry stopped answering')),
      );
      req.on('error', (err) => reject(unavailable(url, err)));
      req.end();
    });
  }
}

function isRedirect(status: number | undefined): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308;
}

function unavailable(url: URL, err: unknown): RegistryError {
  return new RegistryError('UNAVAILABLE', 'the upstream registry is unreachable', {
    detail: { upstream: url.origin, error: errorMessage(err) },
    cause: err,
  });
}

/** 502: the upstream answered, but not with anything this cache can pass on. */
export function badGateway(message: string, detail?: unknown): RegistryError {
  return new RegistryError('UNKNOWN', message, { status: 502, detail });
}

export function isUpstreamUnavailable(err: unknown): boolean {
  return err instanceof RegistryError && err.registryCode === 'UNAVAILABLE';
}

/**
 * What a cache's client is told when the upstream answered `status` instead of the content: `notFound`
 * for 404, UNAVAILABLE for a server error (a stale tag may then be served), 429 passed on, and 502 for
 * the rest — a 401 or 403 here means the upstream refused this cache's own credentials, which no
 * client of the cache can fix.
 */
export function upstreamStatusError(status: number, notFound: RegistryError): RegistryError {
  if (status === 404) return notFound;
  if (status === 429) return new RegistryError('TOOMANYREQUESTS', 'the upstream registry is rate limiting');
  if (status >= 500)
    return new RegistryError('UNAVAILABLE', `the upstream registry failed (${status})`, {
      detail: { status },
    });
  if (status === 401 || status === 403)
    return badGateway("the upstream registry refused access: check the proxy's credentials", { status });
  return badGateway(`the upstream registry answered ${status}`, { status });
}

/** The response's declared length, or null when absent (chunked) or malformed. */
export function declaredLength(response: http.IncomingMessage): number | null {
  const value = response.headers['content-length'];
  if (value === undefined || !/^\d+$/.test(value)) return null;
  return Number(value);
}

/** Reads a small upstream body whole, giving up (and cutting the connection) past `maxBytes`. */
export async function readUpstreamBody(
  response: http.IncomingMessage,
  maxBytes: number,
  tooLarge: () => RegistryError,
): Promise<Buffer> {
  const declared = declaredLength(response);
  if (declared !== null && declared > maxBytes) {
    response.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of response) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > maxBytes) {
        response.destroy();
        throw tooLarge();
      }
      chunks.push(buf);
    }
  } catch (err) {
    if (err instanceof RegistryError) throw err;
    throw new RegistryError('UNAVAILABLE', 'the upstream registry broke off its answer', {
      detail: { error: errorMessage(err) },
      cause: err,
    });
  }
  return Buffer.concat(chunks, total);
}
