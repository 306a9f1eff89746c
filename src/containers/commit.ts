import * as path from 'node:path';
import { runtimeArtifacts } from '../build/artifacts.js';
import type { Digest } from '../common/digest.js';
import { errorMessage, InvalidArgument, NotFound } from '../common/errors.js';
import type { EventBus } from '../common/events.js';
import { logger } from '../common/log.js';
import { applyChanges, type ContainerConfig } from '../images/config.js';
import { parseNormalizedNamed } from '../images/reference.js';
import type { ContainerDiffSource, CreateImageOptions, ImageRecord } from '../images/service.js';
import type { Snapshotter } from '../snapshots/snapshotter.js';
import type { ContainerRecord } from './types.js';

const log = logger('commit');

/**
 * `docker commit`: a new image made of the container's image layers plus one layer holding exactly
 * what the container changed (its upper dir, minus the runtime's own mount points), with the
 * container's config (and `--change` instructions applied) as the new image config. A running
 * container is paused while its upper dir is read, unless the caller says otherwise, so the layer
 * is a consistent snapshot.
 */
export interface CommitOptions {
  /** `repo` and `tag` of the new image (both optional). */
  repo: string | null;
  tag: string | null;
  comment: string;
  author: string;
  pause: boolean;
  /** Dockerfile instructions (`-c`): CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR, … */
  changes: readonly string[];
  /** A config from the request body; its set fields override the container's. */
  config: Record<string, unknown> | null;
}

export interface CommitDeps {
  containers: {
    get(ref: string): ContainerRecord;
    pause(ref: string): Promise<void>;
    unpause(ref: string): Promise<void>;
    containerDir(id: string): string;
  };
  images: {
    findById(id: Digest): ImageRecord | null;
    createImage(options: CreateImageOptions): Promise<Digest>;
  };
  snapshotter: Snapshotter;
  events: EventBus;
}

/** The container's config as an image config: unset (null) fields dropped. */
function imageConfigOf(record: ContainerRecord, override: Record<string, unknown> | null): ContainerConfig {
  const merged: Record<string, unknown> = { ...record.config };
  for (const [key, value] of Object.entries(override ?? {})) {
    if (value !== null && value !== undefined && value !== '') merged[key] = value;
  }
  for (const key of Object.keys(merged))
    if (merged[key] === null || merged[key] === undefined) delete merged[key];
  return merged as ContainerConfig;
}

export async function commitContainer(
  deps: CommitDeps,
  ref: string,
  options: CommitOptions,
): Promise<Digest> {
  const record = deps.containers.get(ref);
  const tags: string[] = [];
  if (options.repo) {
    const name = options.tag ? `${options.repo}:${options.tag}` : options.repo;
    const parsed = parseNormalizedNamed(name);
    if (parsed.digest !== null) throw new InvalidArgument('cannot commit to a digest reference');
    tags.push(name);
  } else if (options.tag) {
    throw new InvalidArgument('tag given without a repository');
  }
  const parent = deps.images.findById(record.imageId);
  if (parent === null) throw new NotFound(`image ${record.imageId} of container ${record.id} not found`);
  const config = applyChanges(imageConfigOf(record, options.config), options.changes);

  const dir = deps.containers.containerDir(record.id);
  const pause = options.pause && record.state.status === 'running';
  if (pause) await deps.containers.pause(record.id);
  let resumed = !pause;
  const resume = () => {
    if (resumed) return;
    resumed = true;
    deps.containers.unpause(record.id).catch((err) => {
      log.warn('unpausing after commit failed', { id: record.id, error: errorMessage(err) });
    });
  };
  const started = performance.now();
  let packedAt = 0;
  try {
    const lowers = record.chainId ? deps.snapshotter.lowerDirs(record.chainId) : [];
    const changes = runtimeArtifacts(path.join(dir, 'upper'), lowers);
    const layer: ContainerDiffSource | null = changes.isEmpty
      ? null
      : {
          containerDir: dir,
          exclude: changes.drop,
          // The container may run on as soon as its upper dir has been read.
          onPacked: () => {
            packedAt = performance.now();
            resume();
          },
        };
    if (layer === null) resume();
    const created = new Date().toISOString();
    const command = record.config.Cmd ?? [record.path, ...record.args];
    const id = await deps.images.createImage({
      parent,
      layers: layer ? [{ containerDiff: layer }] : [],
      config,
      history: [
        {
          created,
          created_by: command.join(' '),
          ...(options.author ? { author: options.author } : {}),
          ...(options.comment ? { comment: options.comment } : {}),
          ...(layer ? {} : { empty_layer: true }),
        },
      ],
      author: options.author || undefined,
      comment: options.comment || undefined,
      container: record.id,
      containerConfig: imageConfigOf(record, null),
      tags,
      created,
    });
    log.debug('committed', {
      id: record.id.slice(0, 12),
      packMs: Math.round((packedAt || performance.now()) - started),
      totalMs: Math.round(performance.now() - started),
    });
    deps.events.publish('container', 'commit', record.id, {
      ...record.config.Labels,
      comment: options.comment,
      imageID: id,
      imageRef: tags[0] ?? id,
      image: record.imageRef,
      name: record.name,
    });
    return id;
  } finally {
    resume();
  }
}
