import type { ServerResponse } from 'node:http';
import type { Right } from '../access/acl.js';
import type { Principal } from '../access/principal.js';
import type { AccessControl } from '../access/service.js';
import { Forbidden, InvalidArgument } from '../common/errors.js';
import { DEFAULT_CAPABILITIES } from '../runtime/spec.js';
import { type ApiRequest, readBody } from './http.js';
import { Router } from './router.js';

/**
 * The API's authorization middleware: one table that says, per route, what a principal needs.
 *
 *  - container routes need a right on the container (acl.ts): view, exec, control or remove;
 *  - creating containers is open, but the features that reach the host (privileged, host
 *    namespaces, bind mounts of host paths, devices, extra capabilities, seccomp off, another
 *    container's namespaces) are for admins — or, for `container:<x>`, for holders of exec on x;
 *  - images, networks and volumes: everyone may use and inspect them; only their owner (who pulled,
 *    built, loaded, tagged or created them first) and admins may remove, tag, push or change them;
 *  - other container sub-resources need view to read and control to change; prunes and any other
 *    write this table does not know are for admins.
 *
 * List responses (`ps`, `system df`) and the event stream are filtered to what the principal may view.
 * Admins (root on the unix socket, or listed in the auth config) skip every check.
 */
export interface AuthDeps {
  access: AccessControl;
  /** Container id of an exec session, or null. */
  execContainer(execId: string): string | null;
  /** Image id of a reference, or null. */
  imageId(ref: string): string | null;
}

interface CheckContext {
  r: ApiRequest;
  principal: Principal;
  params: Record<string, string>;
}

type Check = (c: CheckContext) => void | Promise<void>;

const SAFE_CAPABILITIES = new Set([
  ...DEFAULT_CAPABILITIES,
  'CAP_NET_ADMIN',
  'CAP_NET_BROADCAST',
  'CAP_IPC_LOCK',
  'CAP_SYS_NICE',
  'CAP_LEASE',
  'CAP_WAKE_ALARM',
]);

function adminOnly(what: string): Check {
  return ({ principal }) => {
    if (!principal.admin)
      throw new Forbidden(`access denied: ${what} is for admins (${principal.id} is not one)`);
  };
}

const allowed: Check = () => undefined;

/** Reads a JSON body for inspection and puts it back for the route handler. */
async function peekJson(r: ApiRequest): Promise<Record<string, unknown>> {
  const body = await readBody(r.req);
  Object.defineProperty(r.req, Symbol.asyncIterator, {
    configurable: true,
    value: async function* replay() {
      if (body.length > 0) yield body;
    },
  });
  if (body.length === 0) return {};
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {}; // the route reports the syntax error
  }
}

function asStrings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

export class ApiAuthorizer {
  private readonly rules = new Router();

  constructor(private readonly deps: AuthDeps) {
    this.registerRules();
  }

  /** The middleware: authenticate, check, then run the route with the principal in scope. */
  async handle(r: ApiRequest, method: string, path: string, next: () => Promise<void>): Promise<void> {
    const principal = this.deps.access.authenticate(r.req.socket, r.req.headers.authorization);
    const match = this.rules.match(method, path);
    if (!principal.admin) {
      const reads = method === 'GET' || method === 'HEAD';
      const container = /^\/containers\/([^/]+)\//.exec(path);
      if (match) {
        await (match.handler as unknown as Check)({ r, principal, params: match.params });
      } else if (container) {
        // Other container sub-resources (e.g. the hive under /containers/{id}/registry): reading
        // needs view, changing needs control.
        const params = { id: decodeURIComponent(container[1]) };
        this.containerRight(reads ? 'view' : 'control')({ r, principal, params });
      } else if (!reads) {
        await adminOnly(`${method} ${path}`)({ r, principal, params: {} });
      }
      this.filterResponse(r, method, path, principal);
    }
    await this.deps.access.run(principal, next);
  }

  private containerRight(right: Right, param = 'id'): Check {
    return ({ principal, params }) => {
      const id = this.deps.access.containerId(params[param] ?? '');
      if (id === null) return; // the route answers 404
      this.deps.access.requireContainer(principal, id, right);
    };
  }

  private execRight(): Check {
    return ({ principal, params }) => {
      const id = this.deps.execContainer(params.id ?? '');
      if (id !== null) this.deps.access.requireContainer(principal, id, 'exec');
    };
  }

  private ownerOf(kind: 'image' | 'network' | 'volume', what: string): Check {
    return ({ principal, params }) => {
      const ref = params.name ?? params.id ?? '';
      const access = this.deps.access;
      let ids: string[];
      if (kind === 'image') {
        const id = this.deps.imageId(ref);
        if (id === null) return;
        ids = [id];
      } else {
        ids = [
          ref,
          `name:${ref}`,
          ...access.store.ids(kind).filter((i) => /^[0-9a-f]{12,}$/.test(ref) && i.startsWith(ref)),
        ];
      }
      if (!ids.some((id) => access.mayManage(principal, kind, id)))
        throw new Forbidden(`access denied: only the owner or an admin may ${what} ${kind} ${ref}`);
    };
  }

  /** Create-time checks on the request body (non-admins). */
  private async checkCreate({ r, principal }: CheckContext): Promise<void> {
    const body = await peekJson(r);
    const host = (
      typeof body.HostConfig === 'object' && body.HostConfig !== null ? body.HostConfig : {}
    ) as Record<string, unknown>;
    const deny = (feature: string) => {
      throw new Forbidden(
        `access denied: ${principal.id} may not create containers with ${feature} (admins only)`,
      );
    };
    if (host.Privileged === true) deny('--privileged');
    for (const cap of asStrings(host.CapAdd)) {
      const name = cap.toUpperCase().startsWith('CAP_') ? cap.toUpperCase() : `CAP_${cap.toUpperCase()}`;
      if (!SAFE_CAPABILITIES.has(name)) deny(`--cap-add ${cap}`);
    }
    for (const bind of asStrings(host.Binds))
      if (bind.startsWith('/')) deny(`a bind mount of a host path (${bind.split(':')[0]})`);
    for (const m of Array.isArray(host.Mounts) ? host.Mounts : []) {
      if ((m as { Type?: unknown }).Type === 'bind') deny('a bind mount of a host path');
    }
    if (Array.isArray(host.Devices) && host.Devices.length > 0) deny('--device');
    if (asStrings(host.DeviceCgroupRules).length > 0) deny('--device-cgroup-rule');
    if (typeof host.CgroupParent === 'string' && host.CgroupParent !== '') deny('--cgroup-parent');
    for (const opt of asStrings(host.SecurityOpt)) {
      if (/^(seccomp|apparmor)[=:]/.test(opt) && !/[=:]builtin$/.test(opt))
        deny(`--security-opt ${opt.split(/[=:]/)[0]}=…`);
      if (/^systempaths[=:]unconfined$/.test(opt) || /^label[=:]disable$/.test(opt))
        deny(`--security-opt ${opt}`);
    }
    const modes: [string, string][] = [
      ['NetworkMode', 'network'],
      ['PidMode', 'pid'],
      ['IpcMode', 'ipc'],
      ['UTSMode', 'uts'],
      ['UsernsMode', 'userns'],
    ];
    for (const [field, flag] of modes) {
      const mode = host[field];
      if (mode === 'host') deny(`--${flag} host`);
      if (typeof mode === 'string' && mode.startsWith('container:')) {
        this.containerRight('exec')({ r, principal, params: { id: mode.slice('container:'.length) } });
      }
    }
    for (const from of asStrings(host.VolumesFrom)) {
      this.containerRight('exec')({ r, principal, params: { id: from.split(':')[0] } });
    }
    if (body.StrataAcl !== undefined && typeof body.StrataAcl !== 'string' && !Array.isArray(body.StrataAcl))
      throw new InvalidArgument('StrataAcl must be an ACL string or a list of {Principal, Rights}');
  }

  private registerRules(): void {
    const add = (method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD', path: string, check: Check) =>
      this.rules.add(method, path, check as unknown as () => void);
    const view = this.containerRight('view');
    const exec = this.containerRight('exec');
    const control = this.containerRight('control');

    // Containers
    add('GET', '/containers/json', allowed);
    add('POST', '/containers/create', (c) => this.checkCreate(c));
    add('POST', '/containers/prune', adminOnly('container prune'));
    for (const p of ['json', 'logs', 'stats', 'top', 'changes', 'export', 'archive', 'acl'])
      add('GET', `/containers/:id/${p}`, view);
    add('HEAD', '/containers/:id/archive', view);
    add('POST', '/containers/:id/wait', view);
    add('POST', '/containers/:id/exec', async (c) => {
      exec(c);
      const body = await peekJson(c.r);
      if (body.Privileged === true) adminOnly('exec --privileged')(c);
    });
    add('POST', '/containers/:id/attach', exec);
    add('POST', '/containers/:id/resize', exec);
    add('PUT', '/containers/:id/archive', exec);
    for (const p of ['start', 'stop', 'kill', 'restart', 'pause', 'unpause', 'update', 'rename'])
      add('POST', `/containers/:id/${p}`, control);
    add('DELETE', '/containers/:id', this.containerRight('remove'));
    const manageAcl: Check = ({ principal, params }) => {
      const id = this.deps.access.containerId(params.id ?? '');
      if (id !== null && !this.deps.access.mayManage(principal, 'container', id))
        throw new Forbidden(
          `access denied: only the owner or an admin may change the ACL of container ${id.slice(0, 12)}`,
        );
    };
    add('PUT', '/containers/:id/acl', manageAcl);
    add('POST', '/containers/:id/acl', manageAcl);
    add('POST', '/commit', ({ r, principal }) =>
      this.containerRight('view')({ r, principal, params: { id: r.query.get('container') ?? '' } }),
    );
    add('POST', '/exec/:id/start', this.execRight());
    add('POST', '/exec/:id/resize', this.execRight());
    add('GET', '/exec/:id/json', this.execRight());

    // Images: open to use; owners and admins change them.
    for (const p of ['/images/create', '/images/load', '/build', '/auth']) add('POST', p, allowed);
    // Context sync (strata build): the store is content-addressed, as open as `/build` itself.
    for (const p of ['/build/context/check', '/build/context/upload']) add('POST', p, allowed);
    add('POST', '/images/prune', adminOnly('image prune'));
    add('POST', '/build/prune', adminOnly('build cache prune'));
    add('POST', '/images/:name+/tag', this.ownerOf('image', 'tag'));
    add('POST', '/images/:name+/push', this.ownerOf('image', 'push'));
    add('DELETE', '/images/:name+', this.ownerOf('image', 'remove'));

    // Networks and volumes: likewise.
    add('POST', '/networks/create', allowed);
    add('POST', '/networks/prune', adminOnly('network prune'));
    add('DELETE', '/networks/:id', this.ownerOf('network', 'remove'));
    const connect: Check = async (c) => {
      const body = await peekJson(c.r);
      const container = typeof body.Container === 'string' ? body.Container : '';
      control({ ...c, params: { id: container } });
    };
    add('POST', '/networks/:id/connect', connect);
    add('POST', '/networks/:id/disconnect', connect);
    add('POST', '/volumes/create', allowed);
    add('POST', '/volumes/prune', adminOnly('volume prune'));
    add('DELETE', '/volumes/:name', this.ownerOf('volume', 'remove'));
  }

  /**
   * Drops what the principal may not view: list routes filter their records with
   * `r.visibleContainer` before encoding; the event stream is filtered here.
   */
  private filterResponse(r: ApiRequest, method: string, path: string, principal: Principal): void {
    if (method !== 'GET') return;
    const visible = this.deps.access.containerFilter(principal, 'view');
    r.visibleContainer = visible;
    if (path === '/events') {
      const write = r.res.write.bind(r.res) as (chunk: unknown, ...rest: unknown[]) => boolean;
      r.res.write = ((chunk: unknown, ...rest: unknown[]) => {
        const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '';
        try {
          const event = JSON.parse(text) as { Type?: string; Actor?: { ID?: unknown } };
          const id = event.Actor?.ID;
          if (event.Type === 'container' && !(typeof id === 'string' && visible(id))) return true;
        } catch {
          // not an event line: pass through
        }
        return write(chunk, ...rest);
      }) as ServerResponse['write'];
    }
  }
}
