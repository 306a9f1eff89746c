import { type Digest, isDigest } from '../common/digest.js';
import type { RepositoryName } from './names.js';
import { DIGEST_ALGORITHMS, paths } from './paths.js';
import type { Registry } from './registry.js';
import { deleteIfExists, getContentOrNull, listOrEmpty, statOrNull } from './storage/driver.js';

export interface GcOptions {
  /** Report what would be removed, change nothing. */
  dryRun: boolean;
  /** Roots are tags only: untagged manifests (and what only they reference) go too. */
  deleteUntagged: boolean;
  /** Content written or linked, and revisions pushed, more recently than this are never removed. */
  gracePeriodSeconds: number;
  /** Upload sessions untouched for this long are removed. */
  uploadMaxAgeSeconds: number;
  /** One line per decision, for the command's output. */
  log?: (line: string) => void;
  now?: Date;
}

export interface GcReport {
  markedBlobs: number;
  deletedBlobs: Digest[];
  bytesFreed: number;
  /** Blobs nothing references but kept because they are younger than the grace period. */
  youngBlobs: number;
  deletedManifests: { name: string; digest: Digest }[];
  deletedUploads: { name: string; id: string }[];
}

interface MarkResult {
  marked: Set<Digest>;
  /** Newest time any repository linked each blob (a push in flight links before its manifest comes). */
  newestLink: Map<Digest, number>;
  /** Which repositories link each blob, to remove their links when the blob goes. */
  linkedBy: Map<Digest, RepositoryName[]>;
}

/**
 * Mark and sweep over the whole store, safe while the registry serves pushes:
 *
 * 1. (--delete-untagged) drop manifest revisions no tag reaches — through index children and
 *    referrers — unless pushed within the grace period;
 * 2. mark every blob a remaining manifest references, and the manifests themselves;
 * 3. candidates are unmarked blobs whose content and newest link are older than the grace period
 *    (an image being pushed has its layers linked before its manifest arrives);
 * 4. hide the candidates (move them to `_gc/`), mark again from scratch, put back whatever is now
 *    referenced or freshly linked, and only then delete. A manifest push re-checks its blobs after
 *    writing its revision, so either it sees the hidden blob missing and fails, or this second mark
 *    sees the new revision and keeps the blob.
 * Upload sessions idle longer than `uploadMaxAgeSeconds` are removed; content left hidden by an
 * interrupted run is put back first.
 */
export async function collectGarbage(registry: Registry, options: GcOptions): Promise<GcReport> {
  const log = options.log ?? (() => {});
  const now = (options.now ?? new Date()).getTime();
  const cutoff = now - options.gracePeriodSeconds * 1000;
  const report: GcReport = {
    markedBlobs: 0,
    deletedBlobs: [],
    bytesFreed: 0,
    youngBlobs: 0,
    deletedManifests: [],
    deletedUploads: [],
  };
  if (!options.dryRun) await restoreQuarantine(registry, log);

  const repositories = await registry.repositories.list();
  const droppedRevisions = new Set<string>();
  if (options.deleteUntagged) {
    for (const name of repositories) {
      for (const digest of await untaggedRevisions(registry, name, cutoff)) {
        droppedRevisions.add(`${name}@${digest}`);
        report.deletedManifests.push({ name, digest });
        log(`${options.dryRun ? 'would delete' : 'deleting'} untagged manifest ${name}@${digest}`);
        if (!options.dryRun) await dropRevision(registry, name, digest);
      }
    }
  }

  for (const name of repositories) {
    for (const id of await staleUploads(registry, name, now - options.uploadMaxAgeSeconds * 1000)) {
      report.deletedUploads.push({ name, id });
      log(`${options.dryRun ? 'would delete' : 'deleting'} stale upload ${name}/${id}`);
      if (!options.dryRun) await deleteIfExists(registry.driver, paths.uploadDir(name, id));
    }
  }

  const first = await mark(registry, options.dryRun ? droppedRevisions : new Set());
  report.markedBlobs = first.marked.size;
  const candidates: { digest: Digest; size: number }[] = [];
  for await (const digest of registry.blobs.allContent()) {
    if (first.marked.has(digest)) continue;
    const info = await registry.blobs.statContent(digest);
    if (info === null) continue;
    if (info.modTime.getTime() >= cutoff || (first.newestLink.get(digest) ?? 0) >= cutoff) {
      report.youngBlobs++;
      continue;
    }
    candidates.push({ digest, size: info.size });
  }

  if (options.dryRun) {
    for (const c of candidates) {
      log(`would delete blob ${c.digest} (${c.size} bytes)`);
      report.deletedBlobs.push(c.digest);
      report.bytesFreed += c.size;
    }
    return report;
  }

  const hidden: typeof candidates = [];
  for (const c of candidates) {
    try {
      await registry.driver.move(paths.blobData(c.digest), paths.quarantine(c.digest));
      hidden.push(c);
    } catch {
      // vanished meanwhile (another delete); nothing to do
    }
  }
  const second = await mark(registry, new Set());
  for (const c of hidden) {
    const revived = second.marked.has(c.digest) || (second.newestLink.get(c.digest) ?? 0) >= cutoff;
    if (revived) {
      log(`keeping blob ${c.digest}: referenced while gc ran`);
      await putBack(registry, c.digest);
      continue;
    }
    await deleteIfExists(registry.driver, paths.quarantine(c.digest));
    for (const name of second.linkedBy.get(c.digest) ?? []) {
      // Dangling links go too, unless one was just written by an upload of the same bytes.
      const link = await statOrNull(registry.driver, paths.layerLink(name, c.digest));
      if (link !== null && link.modTime.getTime() < cutoff) {
        await deleteIfExists(registry.driver, paths.layerDir(name, c.digest));
      }
    }
    log(`deleted blob ${c.digest} (${c.size} bytes)`);
    report.deletedBlobs.push(c.digest);
    report.bytesFreed += c.size;
  }
  return report;
}

async function mark(registry: Registry, skipRevisions: ReadonlySet<string>): Promise<MarkResult> {
  const result: MarkResult = { marked: new Set(), newestLink: new Map(), linkedBy: new Map() };
  for (const name of await registry.repositories.list()) {
    for (const digest of await registry.manifests.revisions(name)) {
      if (skipRevisions.has(`${name}@${digest}`)) continue;
      result.marked.add(digest);
      const content = await registry.blobs.readSmall(digest);
      if (content !== null) for (const d of referencedDigests(content)) result.marked.add(d);
    }
    for (const algorithm of DIGEST_ALGORITHMS) {
      const dir = `${paths.layersRoot(name)}/${algorithm}`;
      for (const hex of await listOrEmpty(registry.driver, dir)) {
        const digest = `${algorithm}:${hex}`;
        if (!isDigest(digest)) continue;
        const info = await statOrNull(registry.driver, paths.layerLink(name, digest));
        if (info === null) continue;
        const time = info.modTime.getTime();
        if (time > (result.newestLink.get(digest) ?? 0)) result.newestLink.set(digest, time);
        const repos = result.linkedBy.get(digest) ?? [];
        repos.push(name);
        result.linkedBy.set(digest, repos);
      }
    }
  }
  return result;
}

/** Digests a stored manifest names, read leniently: gc must not lose references over a strict schema. */
export function referencedDigests(content: Buffer): Digest[] {
  let json: unknown;
  try {
    json = JSON.parse(content.toString('utf8'));
  } catch {
    return [];
  }
  if (typeof json !== 'object' || json === null) return [];
  const out: Digest[] = [];
  const add = (d: unknown): void => {
    if (typeof d === 'object' && d !== null) {
      const digest = (d as { digest?: unknown }).digest;
      if (typeof digest === 'string' && isDigest(digest)) out.push(digest);
    }
  };
  const m = json as { config?: unknown; layers?: unknown; manifests?: unknown; blobs?: unknown };
  add(m.config);
  for (const list of [m.layers, m.manifests, m.blobs]) {
    if (Array.isArray(list)) list.forEach(add);
  }
  return out;
}

/** Revisions of a repository that no tag reaches (directly, via index children, or as referrers). */
async function untaggedRevisions(
  registry: Registry,
  name: RepositoryName,
  cutoff: number,
): Promise<Digest[]> {
  const revisions = await registry.manifests.revisions(name);
  const children = new Map<Digest, Digest[]>();
  const referrersOf = new Map<Digest, Digest[]>();
  for (const digest of revisions) {
    const content = await registry.blobs.readSmall(digest);
    if (content === null) continue;
    children.set(digest, referencedDigests(content));
    const subject = subjectDigest(content);
    if (subject !== undefined) referrersOf.set(subject, [...(referrersOf.get(subject) ?? []), digest]);
  }
  const reachable = new Set<Digest>((await registry.tags.all(name)).values());
  const queue = [...reachable];
  // Each digest enters the queue once, so this ends after at most |revisions| + |tags| rounds.
  while (queue.length > 0) {
    const digest = queue.pop() as Digest;
    for (const next of [...(children.get(digest) ?? []), ...(referrersOf.get(digest) ?? [])]) {
      if (!reachable.has(next)) {
        reachable.add(next);
        queue.push(next);
      }
    }
  }
  const out: Digest[] = [];
  for (const digest of revisions) {
    if (reachable.has(digest)) continue;
    const info = await statOrNull(registry.driver, paths.revisionLink(name, digest));
    if (info !== null && info.modTime.getTime() < cutoff) out.push(digest);
  }
  return out;
}

/** Drops an untagged revision; if a tag appeared meanwhile (a push raced gc), the revision is restored. */
async function dropRevision(registry: Registry, name: RepositoryName, digest: Digest): Promise<void> {
  try {
    await registry.manifests.delete(name, digest);
  } catch {
    return;
  }
  const retagged = [...(await registry.tags.all(name)).values()].includes(digest);
  if (retagged) await registry.driver.putContent(paths.revisionLink(name, digest), digest);
}

async function staleUploads(registry: Registry, name: RepositoryName, before: number): Promise<string[]> {
  const out: string[] = [];
  for (const id of await listOrEmpty(registry.driver, paths.uploadsRoot(name))) {
    const started = await getContentOrNull(registry.driver, paths.uploadStartedAt(name, id));
    const startedAt = started === null ? 0 : new Date(started.toString('utf8').trim()).getTime() || 0;
    const data = await statOrNull(registry.driver, paths.uploadData(name, id));
    const lastWrite = data?.modTime.getTime() ?? 0;
    if (Math.max(startedAt, lastWrite) < before) out.push(id);
  }
  return out;
}

function subjectDigest(content: Buffer): Digest | undefined {
  try {
    const json = JSON.parse(content.toString('utf8')) as { subject?: { digest?: unknown } } | null;
    const digest = json?.subject?.digest;
    return typeof digest === 'string' && isDigest(digest) ? digest : undefined;
  } catch {
    return undefined;
  }
}

async function putBack(registry: Registry, digest: Digest): Promise<void> {
  // A client may have uploaded the same bytes again meanwhile; either copy is the right content.
  if ((await registry.blobs.statContent(digest)) !== null) {
    await deleteIfExists(registry.driver, paths.quarantine(digest));
    return;
  }
  await registry.driver.move(paths.quarantine(digest), paths.blobData(digest));
}

/** Content hidden by a gc run that did not finish goes back where it was. */
async function restoreQuarantine(registry: Registry, log: (line: string) => void): Promise<void> {
  for (const algorithm of await listOrEmpty(registry.driver, paths.quarantineRoot)) {
    for (const hex of await listOrEmpty(registry.driver, `${paths.quarantineRoot}/${algorithm}`)) {
      const digest = `${algorithm}:${hex}`;
      if (!isDigest(digest)) continue;
      log(`restoring ${digest} hidden by an interrupted gc`);
      await putBack(registry, digest);
    }
  }
}
