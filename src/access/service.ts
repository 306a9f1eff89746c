import { AsyncLocalStorage } from 'node:async_hooks';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Forbidden, StrataError } from '../common/errors.js';
import type { EngineEvent, EventBus } from '../common/events.js';
import { logger } from '../common/log.js';
import { peerCredentials } from '../native/index.js';
import {
  type AclEntry,
  allows,
  isOwner,
  type ObjectAcl,
  parseAclText,
  type Right,
  rightChecker,
} from './acl.js';
import type { AuthConfig } from './config.js';
import { certPrincipal, type Principal, unixPrincipal } from './principal.js';
import type { AclStore, ObjectKind } from './store.js';

const log = logger('access');

/** 401: the request carries credentials we do not accept. */
export class Unauthorized extends StrataError {
  constructor(message: string) {
    super(401, 'UNAUTHORIZED', message);
  }
}

/** What the access part needs to know about containers (kept narrow: no dependency on the service). */
export interface ContainerLookup {
  /** Full id of a container reference (id, prefix, name), or null. */
  idOf(ref: string): string | null;
  /** The ACL a new container asked for (`strata.acl` label or `StrataAcl` create field), or null. */
  requestedAcl(id: string): AclEntry[] | null;
}

/**
 * Authentication and ownership: turns a connection or request into a Principal, runs each request
 * with its principal in scope (AsyncLocalStorage), and records owners when objects are created by
 * listening to the engine's events — a container's `create` event fires inside its create request,
 * so the principal in scope is its creator. Decisions about individual routes live in api/auth.ts.
 */
export class AccessControl {
  private readonly scope = new AsyncLocalStorage<Principal>();
  private readonly socketPrincipals = new WeakMap<object, Principal>();

  constructor(
    readonly store: AclStore,
    readonly config: AuthConfig,
    private readonly containers: ContainerLookup,
  ) {}

  /**
   * The principal of a request: a bearer token when one is sent (explicit credentials win), else the
   * TLS client certificate, else the unix-socket peer. Throws Unauthorized for an unknown token.
   */
  authenticate(socket: Socket, authorization: string | undefined): Principal {
    const bearer = authorization && /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
    if (bearer) {
      const p = this.config.principalForToken(bearer);
      if (!p) throw new Unauthorized('invalid bearer token');
      return p;
    }
    const cached = this.socketPrincipals.get(socket);
    if (cached) return cached;
    let principal: Principal;
    const tlsSocket = socket as TLSSocket;
    if (tlsSocket.encrypted) {
      const cert = tlsSocket.getPeerCertificate();
      const cn = cert?.subject?.CN;
      if (!tlsSocket.authorized || !cn)
        throw new Unauthorized('a verified TLS client certificate is required');
      principal = certPrincipal(Array.isArray(cn) ? cn[0] : cn, (p) => this.config.isAdmin(p));
    } else {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof fd !== 'number' || fd < 0) throw new Unauthorized('cannot identify the client');
      const cred = peerCredentials(fd);
      principal = unixPrincipal(cred.uid, cred.gid, cred.groups, (p) => this.config.isAdmin(p));
    }
    this.socketPrincipals.set(socket, principal);
    return principal;
  }

  run<T>(principal: Principal, fn: () => T): T {
    return this.scope.run(principal, fn);
  }

  /** The principal of the request in progress, if any. */
  current(): Principal | undefined {
    return this.scope.getStore();
  }

  acl(kind: ObjectKind, id: string): ObjectAcl | null {
    return this.store.get(kind, id);
  }

  containerId(ref: string): string | null {
    return this.containers.idOf(ref);
  }

  mayContainer(principal: Principal, id: string, right: Right): boolean {
    return allows(principal, this.store.get('container', id), right);
  }

  /** `mayContainer(principal, id, right)` as a predicate over ids, for filtering lists. */
  containerFilter(principal: Principal, right: Right): (id: string) => boolean {
    const check = rightChecker(principal, right);
    return (id) => check(this.store.get('container', id));
  }

  /** 403 unless `principal` holds `right` on container `id`. */
  requireContainer(principal: Principal, id: string, right: Right): void {
    if (!this.mayContainer(principal, id, right))
      throw new Forbidden(
        `access denied: ${principal.id} lacks the "${right}" right on container ${id.slice(0, 12)}`,
      );
  }

  /** Owners and admins only (images, networks, volumes; changing a container's ACL). */
  mayManage(principal: Principal, kind: ObjectKind, id: string): boolean {
    if (principal.admin) return true;
    const acl = this.store.get(kind, id);
    return acl !== null && isOwner(principal, acl);
  }

  /** Records owners from engine events (create → owner; destroy/delete → forget). */
  watch(events: EventBus): () => void {
    return events.subscribe((e) => {
      try {
        this.onEvent(e);
      } catch (err) {
        log.warn('recording an owner failed', { error: (err as Error).message });
      }
    });
  }

  /**
   * Drops a record once the current event has reached every listener (the event stream still needs
   * the owner to decide who may see a `destroy`).
   */
  private forgetLater(kind: ObjectKind, id: string): void {
    setImmediate(() => this.store.delete(kind, id));
  }

  private onEvent(e: EngineEvent): void {
    const principal = this.current();
    const id = e.Actor.ID;
    switch (e.Type) {
      case 'container':
        if (e.Action === 'create' && principal) {
          let entries: AclEntry[] = [];
          try {
            entries = this.containers.requestedAcl(id) ?? [];
          } catch (err) {
            log.warn('ignoring an invalid ACL on a new container', { id, error: (err as Error).message });
          }
          this.store.set('container', id, { owner: principal.id, entries });
        } else if (e.Action === 'destroy') this.forgetLater('container', id);
        return;
      case 'image':
        if (e.Action === 'delete') this.forgetLater('image', id);
        else if (principal && id.startsWith('sha256:') && !this.store.get('image', id))
          this.store.set('image', id, { owner: principal.id, entries: [] });
        return;
      case 'network':
      case 'volume': {
        const kind = e.Type;
        const name = e.Actor.Attributes.name;
        if (e.Action === 'create' && principal) {
          this.store.set(kind, id, { owner: principal.id, entries: [] });
          if (name && name !== id) this.store.set(kind, `name:${name}`, { owner: principal.id, entries: [] });
        } else if (e.Action === 'destroy') {
          this.forgetLater(kind, id);
          if (name) this.forgetLater(kind, `name:${name}`);
        }
        return;
      }
      default:
    }
  }
}

/** Parses the `strata.acl` label / `StrataAcl` create field (text or a list of entries). */
export function requestedAclFrom(labels: Record<string, string>, field: unknown): AclEntry[] | null {
  if (typeof field === 'string') return parseAclText(field);
  if (Array.isArray(field)) {
    return parseAclText(
      field
        .map((e) => {
          const entry = e as { Principal?: unknown; Rights?: unknown };
          return `${String(entry.Principal)}=${Array.isArray(entry.Rights) ? entry.Rights.join(',') : ''}`;
        })
        .join(';'),
    );
  }
  const label = labels['strata.acl'];
  return label !== undefined ? parseAclText(label) : null;
}
