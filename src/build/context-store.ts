import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Readable } from 'node:stream';
import { InvalidArgument, isErrnoCode, StrataError } from '../common/errors.js';
import { ensureDir } from '../common/fsutil.js';
import { readContextTar } from './tar-reader.js';

/**
 * Bodies of build-context files by content digest, for `strata build`'s context sync (a Strata
 * extension; the docker CLI's `POST /build` with a tar does not use it).
 *
 * Lifecycle: the CLI describes its context (path → digest, mode, …) and asks `missing(digests)`;
 * it uploads just those bodies as a tar whose entries are named by their sha256 hex
 * (`ingestTar`: each body is hashed on the way in and refused when it does not match its name);
 * a build then reads bodies by digest (`pathOf`), holding them (`hold`) so that a concurrent
 * `prune` (`docker builder prune`) leaves them alone. Layout: `<dir>/<hex>`, one file per body,
 * written to `<dir>/tmp` and renamed into place once verified.
 */
export class ContextStore {
  private readonly tmpDir: string;
  /** Known bodies (hex → size): filled lazily, so a start-up costs nothing. */
  private readonly sizes = new Map<string, number>();
  private readonly holds = new Map<string, number>();

  constructor(readonly dir: string) {
    ensureDir(dir, 0o700);
    this.tmpDir = path.join(dir, 'tmp');
    fs.rmSync(this.tmpDir, { recursive: true, force: true });
    ensureDir(this.tmpDir, 0o700);
  }

  pathOf(hex: string): string {
    if (!/^[0-9a-f]{64}$/.test(hex))
      throw new InvalidArgument(`invalid content digest ${JSON.stringify(hex)}`);
    return path.join(this.dir, hex);
  }

  /** The stored size of a body, or null when it is not here. */
  sizeOf(hex: string): number | null {
    const known = this.sizes.get(hex);
    if (known !== undefined) return known;
    const st = fs.statSync(this.pathOf(hex), { throwIfNoEntry: false });
    if (!st?.isFile()) return null;
    this.sizes.set(hex, st.size);
    return st.size;
  }

  /** The digests (`sha256:<hex>`) of `digests` this store lacks, each once. */
  missing(digests: Iterable<string>): string[] {
    const out = new Set<string>();
    for (const digest of digests) if (this.sizeOf(digest.slice('sha256:'.length)) === null) out.add(digest);
    return [...out];
  }

  /** Stores every file entry of an upload tar (named by its sha256 hex); returns how many were new. */
  async ingestTar(body: Readable): Promise<number> {
    let stored = 0;
    let current: { hex: string; tmp: string; fd: number; hash: ReturnType<typeof createHash> } | null = null;
    const finish = () => {
      if (current === null) return;
      const { hex, tmp, fd, hash } = current;
      current = null;
      fs.closeSync(fd);
      const actual = hash.digest('hex');
      if (actual !== hex) {
        fs.rmSync(tmp, { force: true });
        throw new InvalidArgument(`uploaded content named sha256:${hex} has the digest sha256:${actual}`);
      }
      const size = fs.statSync(tmp).size;
      fs.renameSync(tmp, this.pathOf(hex));
      if (!this.sizes.has(hex)) stored++;
      this.sizes.set(hex, size);
    };
    try {
      await readContextTar(body, {
        entry: (header) => {
          if (header.type === 'directory') return null;
          const hex = header.name.replace(/^\.\//, '');
          if (header.type !== 'file' || !/^[0-9a-f]{64}$/.test(hex)) {
            throw new InvalidArgument(
              `invalid context upload: entry ${JSON.stringify(header.name)} is not a file named by its sha256`,
            );
          }
          const tmp = path.join(this.tmpDir, `${hex}-${randomBytes(6).toString('hex')}`);
          current = { hex, tmp, fd: fs.openSync(tmp, 'wx', 0o600), hash: createHash('sha256') };
          const open = current;
          return (chunk) => {
            open.hash.update(chunk);
            let offset = 0;
            while (offset < chunk.length) offset += fs.writeSync(open.fd, chunk, offset);
          };
        },
        end: finish,
      });
      finish();
    } catch (err) {
      const open = current as { tmp: string; fd: number } | null;
      if (open !== null) {
        fs.closeSync(open.fd);
        fs.rmSync(open.tmp, { force: true });
      }
      if (err instanceof StrataError) throw err;
      throw new InvalidArgument(`invalid context upload: ${(err as Error).message}`);
    }
    return stored;
  }

  /** Keeps `hexes` from being pruned until the returned release is called. */
  hold(hexes: Iterable<string>): () => void {
    const held = [...new Set(hexes)];
    for (const hex of held) this.holds.set(hex, (this.holds.get(hex) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const hex of held) {
        const n = (this.holds.get(hex) ?? 1) - 1;
        if (n <= 0) this.holds.delete(hex);
        else this.holds.set(hex, n);
      }
    };
  }

  /** Removes the bodies no build holds (only those stored before `untilMs`, if given). */
  prune(untilMs?: number): { count: number; bytes: number } {
    let count = 0;
    let bytes = 0;
    for (const name of fs.readdirSync(this.dir)) {
      if (!/^[0-9a-f]{64}$/.test(name) || this.holds.has(name)) continue;
      const file = path.join(this.dir, name);
      try {
        const st = fs.statSync(file);
        if (untilMs !== undefined && st.mtimeMs >= untilMs) continue;
        fs.unlinkSync(file);
        count++;
        bytes += st.size;
      } catch (err) {
        if (!isErrnoCode(err, 'ENOENT')) throw err;
      }
      this.sizes.delete(name);
    }
    return { count, bytes };
  }
}
