import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { errorMessage, InvalidArgument, SystemError } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import type { CgroupCapabilities } from '../runtime/cgroup-host.js';
import { containerCgroupPath, containerCgroupPaths } from '../runtime/cgroup-host.js';
import { checkResourceUpdate, liftLimits, ociResources, resourceFieldsSchema } from '../runtime/resources.js';
import type { Db } from '../store/db.js';
import type { ContainerService } from './service.js';
import { ContainerTable } from './store.js';

/**
 * `docker update`: changes a container's resource limits (and restart policy). The new values are
 * checked against what the container has (resources.ts), applied to the running container's cgroup
 * through `crun update --resources` — so they take effect at once — and then stored in its record,
 * so the next start uses them too. A runtime refusal leaves the record unchanged.
 */
export const updateBodySchema = resourceFieldsSchema
  .extend({
    RestartPolicy: z
      .object({ Name: z.string().nullish(), MaximumRetryCount: z.number().int().nullish() })
      .loose()
      .nullish(),
  })
  .loose();

export type UpdateBody = z.infer<typeof updateBodySchema>;

export interface ContainerUpdaterDeps {
  containers: ContainerService;
  db: Db;
  events: EventBus;
  caps: CgroupCapabilities;
}

export class ContainerUpdater {
  private readonly table: ContainerTable;

  constructor(private readonly deps: ContainerUpdaterDeps) {
    this.table = new ContainerTable(deps.db);
  }

  async update(ref: string, body: UpdateBody): Promise<{ Warnings: string[] | null }> {
    const svc = this.deps.containers;
    const record = svc.get(ref);
    const running = svc.isRunning(record);
    const { merged, warnings } = checkResourceUpdate(record.hostConfig, body, this.deps.caps, running);
    const restart = body.RestartPolicy?.Name;
    if (restart !== undefined && restart !== null && restart !== '') {
      if (!['no', 'always', 'on-failure', 'unless-stopped'].includes(restart))
        throw new InvalidArgument(`invalid restart policy '${restart}'`);
      if (record.hostConfig.AutoRemove && restart !== 'no')
        throw new InvalidArgument(
          'Restart policy cannot be updated because AutoRemove is enabled for the container',
        );
      merged.RestartPolicy = { Name: restart, MaximumRetryCount: body.RestartPolicy?.MaximumRetryCount ?? 0 };
    }
    const next = { ...record.hostConfig, ...merged };
    if (running) {
      const file = path.join(svc.containerDir(record.id), 'update-resources.json');
      fs.writeFileSync(file, JSON.stringify(ociResources(next, true)));
      try {
        await svc.runtimeOf(record).update(record.id, file);
        const paths = containerCgroupPaths(this.deps.caps.version, containerCgroupPath(record.id));
        liftLimits(next, this.deps.caps.version, (c) => paths.dir(c));
      } catch (err) {
        throw new SystemError(`Cannot update container ${record.id}: ${errorMessage(err)}`);
      } finally {
        fs.rmSync(file, { force: true });
      }
    }
    record.hostConfig = next;
    this.table.save(record);
    this.deps.events.publish('container', 'update', record.id, {
      ...record.config.Labels,
      image: record.imageRef,
      name: record.name,
    });
    return { Warnings: warnings.length > 0 ? warnings : null };
  }
}
