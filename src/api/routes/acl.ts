import { z } from 'zod';
import {
  aclEntrySchema,
  checkPrincipalName,
  editEntries,
  formatAclText,
  normalizeEntries,
  type ObjectAcl,
  parseAclText,
} from '../../access/acl.js';
import type { AccessControl } from '../../access/service.js';
import { Forbidden, InvalidArgument, NotFound } from '../../common/errors.js';
import type { ContainerService } from '../../containers/service.js';
import { type RouteTable, readJson, sendJson } from '../http.js';

/**
 * Container ACL endpoints (Strata's own; who may call them is decided in api/auth.ts):
 *
 *   GET  /containers/{id}/acl   → {"Owner":"user:alice","Entries":[{"Principal":…,"Rights":[…]}],"Text":"…"}
 *   PUT  /containers/{id}/acl   {"Entries":[…]} or {"Text":"user:bob=view"} replaces the list;
 *                               an admin may also set "Owner"
 *   POST /containers/{id}/acl   {"Grant":[…],"Revoke":[{"Principal":…,"Rights"?:[…]}]} edits it
 *   GET  /acl/whoami            → the caller's principal, groups and admin flag
 */
const putSchema = z.object({
  Entries: z.array(aclEntrySchema).optional(),
  Text: z.string().optional(),
  Owner: z.string().optional(),
});

const postSchema = z.object({
  Grant: z.array(aclEntrySchema).optional(),
  Revoke: z.array(z.object({ Principal: z.string(), Rights: z.array(z.string()).optional() })).optional(),
});

export interface AclRouteDeps {
  containers: ContainerService;
  access: AccessControl;
}

export function registerAclRoutes(routes: RouteTable, deps: AclRouteDeps): void {
  const aclOf = (ref: string): { id: string; acl: ObjectAcl } => {
    const id = deps.containers.get(ref).id;
    return { id, acl: deps.access.acl('container', id) ?? { owner: 'user:root', entries: [] } };
  };
  const show = (acl: ObjectAcl) => ({
    Owner: acl.owner,
    Entries: acl.entries,
    Text: formatAclText(acl.entries),
  });

  routes.add('GET', '/containers/:id/acl', (r) => {
    sendJson(r.res, 200, show(aclOf(r.params.id).acl));
  });

  routes.add('PUT', '/containers/:id/acl', async (r) => {
    const body = await readJson(r.req, putSchema);
    const { id, acl } = aclOf(r.params.id);
    if (body.Entries === undefined && body.Text === undefined && body.Owner === undefined)
      throw new InvalidArgument('nothing to change: give Entries, Text or Owner');
    let owner = acl.owner;
    if (body.Owner !== undefined) {
      if (!deps.access.current()?.admin)
        throw new Forbidden('access denied: only an admin may change the owner');
      owner = checkPrincipalName(body.Owner);
    }
    const entries =
      body.Text !== undefined
        ? parseAclText(body.Text)
        : body.Entries
          ? normalizeEntries(body.Entries)
          : acl.entries;
    const next = { owner, entries };
    deps.access.store.set('container', id, next);
    sendJson(r.res, 200, show(next));
  });

  routes.add('POST', '/containers/:id/acl', async (r) => {
    const body = await readJson(r.req, postSchema);
    const { id, acl } = aclOf(r.params.id);
    const entries = editEntries(acl.entries, {
      grant: body.Grant ? normalizeEntries(body.Grant) : [],
      revoke: body.Revoke ?? [],
    });
    const next = { owner: acl.owner, entries };
    deps.access.store.set('container', id, next);
    sendJson(r.res, 200, show(next));
  });

  routes.add('GET', '/acl/whoami', (r) => {
    const p = deps.access.current();
    if (!p) throw new NotFound('no principal');
    sendJson(r.res, 200, { Principal: p.id, Aliases: p.aliases, Groups: p.groups, Admin: p.admin });
  });
}
