import { RegistryError } from '../errors.js';
import { MediaType } from '../manifest-format.js';
import { parseDigestParam } from '../names.js';
import { paginate, type RequestContext, sendJson } from './context.js';

/** GET /v2/: the API is here (what `docker login` probes, with credentials when auth is on). */
export async function base(ctx: RequestContext): Promise<void> {
  sendJson(ctx.res, 200, {});
}

/** GET /v2/<name>/tags/list[?n=&last=]: tags in ASCII order, paginated with a `Link` header. */
export async function listTags(ctx: RequestContext): Promise<void> {
  const { registry, name } = ctx;
  if (!(await registry.repositories.exists(name))) {
    throw new RegistryError('NAME_UNKNOWN', undefined, { detail: { name } });
  }
  const tags = await registry.tags.list(name);
  const { page, link } = paginate(tags, ctx.query, `/v2/${name}/tags/list`);
  sendJson(ctx.res, 200, { name, tags: page }, link === undefined ? {} : { Link: link });
}

/** GET /v2/_catalog[?n=&last=]: repository names, only those the caller may pull. */
export async function listCatalog(ctx: RequestContext): Promise<void> {
  const { registry } = ctx;
  let names: string[] = await registry.repositories.list();
  if (registry.authorizer !== null) names = registry.authorizer.visibleRepositories(ctx.identity, names);
  const { page, link } = paginate(names, ctx.query, '/v2/_catalog');
  sendJson(ctx.res, 200, { repositories: page }, link === undefined ? {} : { Link: link });
}

/**
 * GET /v2/<name>/referrers/<digest>[?artifactType=]: an OCI index of the manifests whose subject is
 * `digest` — empty, never 404, when there are none (spec 1.1).
 */
export async function listReferrers(ctx: RequestContext): Promise<void> {
  const subject = parseDigestParam(ctx.params.digest ?? '');
  const artifactType = ctx.query.get('artifactType') ?? undefined;
  const manifests = await ctx.registry.referrers.list(ctx.name, subject, artifactType);
  const headers: Record<string, string> =
    artifactType === undefined ? {} : { 'OCI-Filters-Applied': 'artifactType' };
  sendJson(
    ctx.res,
    200,
    { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests },
    headers,
    MediaType.ociIndex,
  );
}
