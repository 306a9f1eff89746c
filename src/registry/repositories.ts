import { isRepositoryName, type RepositoryName } from './names.js';
import { paths } from './paths.js';
import { listOrEmpty, type StorageDriver, statOrNull } from './storage/driver.js';
import { compareAscii } from './tags.js';

/** Directories that mark their parent as a repository. */
const REPOSITORY_MARKERS = new Set(['_layers', '_manifests', '_uploads', '_referrers']);
/** Repository names nest (`a` and `a/b` may both exist); the spec's name length bounds the depth. */
const MAX_DEPTH = 128;

/** Repositories: directories under `repositories/` holding any of the `_…` stores. */
export class RepositoryStore {
  constructor(private readonly driver: StorageDriver) {}

  async exists(name: RepositoryName): Promise<boolean> {
    const info = await statOrNull(this.driver, paths.repository(name));
    if (info === null || !info.isDir) return false;
    const children = await listOrEmpty(this.driver, paths.repository(name));
    return children.some((c) => REPOSITORY_MARKERS.has(c));
  }

  /** All repository names in ASCII order (the catalog). */
  async list(): Promise<RepositoryName[]> {
    const out: RepositoryName[] = [];
    const walk = async (prefix: string, depth: number): Promise<void> => {
      if (depth > MAX_DEPTH) return;
      const dir = prefix === '' ? paths.repositoriesRoot : `${paths.repositoriesRoot}/${prefix}`;
      const children = await listOrEmpty(this.driver, dir);
      if (prefix !== '' && children.some((c) => REPOSITORY_MARKERS.has(c)) && isRepositoryName(prefix)) {
        out.push(prefix);
      }
      for (const child of children) {
        if (child.startsWith('_') || child.startsWith('.')) continue;
        const info = await statOrNull(this.driver, `${dir}/${child}`);
        if (info?.isDir) await walk(prefix === '' ? child : `${prefix}/${child}`, depth + 1);
      }
    };
    await walk('', 0);
    return out.sort(compareAscii);
  }
}
