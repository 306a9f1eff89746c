import { z } from 'zod';
import { InvalidArgument } from '../../common/errors.js';
import { type CommitDeps, commitContainer } from '../../containers/commit.js';
import { queryBool, type RouteTable, readJson, sendJson } from '../http.js';

export type CommitRouteDeps = CommitDeps;

/** The optional body of `POST /commit`: a container config whose set fields override the container's. */
const commitBodySchema = z.record(z.string(), z.unknown());

/** `POST /commit?container=&repo=&tag=&comment=&author=&pause=&changes=` → 201 `{"Id": …}`. */
export function registerCommitRoutes(routes: RouteTable, deps: CommitRouteDeps): void {
  routes.add('POST', '/commit', async ({ req, res, query }) => {
    const container = query.get('container') ?? '';
    if (container === '') {
      req.resume();
      throw new InvalidArgument('a container is required (query parameter "container")');
    }
    const body = await readJson(req, commitBodySchema);
    const id = await commitContainer(deps, container, {
      repo: query.get('repo') || null,
      tag: query.get('tag') || null,
      comment: query.get('comment') ?? '',
      author: query.get('author') ?? '',
      pause: queryBool(query, 'pause', true),
      changes: query.getAll('changes'),
      config: Object.keys(body).length > 0 ? body : null,
    });
    sendJson(res, 201, { Id: id });
  });
}
