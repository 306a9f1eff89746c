import { once } from 'node:events';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InvalidArgument } from '../../common/errors.js';
import type { ContainerService } from '../../containers/service.js';
import { archiveFromRoot, exportRoot, extractArchiveToRoot, statInRoot } from '../../snapshots/archive.js';
import { queryBool, type RouteTable, sendEmpty } from '../http.js';

/** `docker cp` (archive GET/HEAD/PUT) and `docker export`. */
export function registerArchiveRoutes(routes: RouteTable, deps: { containers: ContainerService }): void {
  const svc = deps.containers;

  const statHeader = (stat: unknown) => Buffer.from(JSON.stringify(stat)).toString('base64');
  const requirePath = (value: string | null): string => {
    if (value === null || value === '') throw new InvalidArgument('Path cannot be empty');
    return value;
  };

  routes.add('HEAD', '/containers/:id/archive', async (r) => {
    const containerPath = requirePath(r.query.get('path'));
    await svc.withRootfs(r.params.id, async (rootfs) => {
      const stat = statInRoot(rootfs, containerPath, r.params.id);
      r.res.writeHead(200, {
        'X-Docker-Container-Path-Stat': statHeader(stat),
        'Content-Type': 'application/x-tar',
      });
      r.res.end();
    });
  });

  routes.add('GET', '/containers/:id/archive', async (r) => {
    const containerPath = requirePath(r.query.get('path'));
    await svc.withRootfs(r.params.id, async (rootfs) => {
      const stat = statInRoot(rootfs, containerPath, r.params.id);
      const tar: Readable = archiveFromRoot(rootfs, containerPath);
      r.res.writeHead(200, {
        'X-Docker-Container-Path-Stat': statHeader(stat),
        'Content-Type': 'application/x-tar',
      });
      await pipeline(tar, r.res);
    });
  });

  routes.add('PUT', '/containers/:id/archive', async (r) => {
    const containerPath = requirePath(r.query.get('path'));
    await svc.withRootfs(r.params.id, async (rootfs) => {
      // A refused archive must not reset the connection: feed the extractor through a PassThrough so
      // its failure does not destroy the request; the server drains the rest and answers.
      const body = new PassThrough();
      r.req.pipe(body);
      r.req.once('error', (err) => body.destroy(err));
      body.once('close', () => r.req.unpipe(body));
      await extractArchiveToRoot(rootfs, containerPath, body, {
        noOverwriteDirNonDir: queryBool(r.query, 'noOverwriteDirNonDir'),
        copyUIDGID: queryBool(r.query, 'copyUIDGID'),
        containerRef: r.params.id,
      });
    });
    sendEmpty(r.res, 200);
  });

  routes.add('GET', '/containers/:id/export', async (r) => {
    await svc.withRootfs(r.params.id, async (rootfs) => {
      r.res.writeHead(200, { 'Content-Type': 'application/x-tar' });
      const tar = exportRoot(rootfs);
      r.res.on('close', () => tar.destroy());
      await pipeline(tar, r.res);
    });
    if (!r.res.writableEnded) await once(r.res, 'finish');
  });
}
