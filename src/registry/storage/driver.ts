import type { FileHandle } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import type { DigestHandle } from '../../native/index.js';

/**
 * The registry's storage driver: the few primitives every store of the hub is written on, as in
 * docker/distribution. Paths are logical, `/`-separated and absolute (`/docker/registry/v2/blobs/…`);
 * the driver maps them onto its medium. Callers only build paths from validated names, tags and digests.
 *
 * How the stores use it:
 * - an upload session creates `_uploads/<id>/data` with `writer(path, false)` and each PATCH appends to it
 *   with `writer(path, true)`; `stat` gives the offset a client resumes from;
 * - finishing an upload `move`s the verified data to `blobs/<alg>/<xx>/<hex>/data` — the one atomic step
 *   that makes a blob visible — and `putContent` writes the repository's link to it;
 * - pulls `stat` the blob and stream it with `reader(path, offset, length)` (ranges are cheap);
 * - manifests, tags and links are small files read with `getContent` and replaced with `putContent`;
 * - listing tags, repositories and referrers is `list`; deleting is `delete` (recursive);
 * - garbage collection `list`s and `stat`s everything, then `delete`s what nothing references.
 * A new backend (S3, …) implements these and nothing else.
 */
export interface StorageDriver {
  /** Reads a whole small file (links, manifests). Throws PathNotFoundError. */
  getContent(path: string): Promise<Buffer>;
  /**
   * Replaces a whole file atomically: readers see the old content or the new, never a mix. The content
   * is durable when this resolves unless `durable: false` (bookkeeping a crash may lose).
   */
  putContent(path: string, content: Buffer | string, options?: { durable?: boolean }): Promise<void>;
  /** Streams a file from `offset`, `length` bytes or to its end. Throws PathNotFoundError. */
  reader(path: string, offset?: number, length?: number): Promise<Readable>;
  /**
   * A writer that creates (append=false truncates) or appends to a file. `observe`, when given, is
   * handed every byte in order before it is stored and may take its time (an upload's running
   * digest, computed off the event loop). Bytes a `close` after a failure keeps are not observed:
   * the caller drops its digest then.
   */
  writer(path: string, append: boolean, observe?: (data: Buffer) => Promise<void>): Promise<FileWriter>;
  /** Size, modification time and kind of a file or directory. Throws PathNotFoundError. */
  stat(path: string): Promise<FileInfo>;
  /** Names of the direct children of a directory (not full paths), unsorted. Throws PathNotFoundError. */
  list(path: string): Promise<string[]>;
  /** Moves a file atomically, replacing the destination; creates parent directories. */
  move(sourcePath: string, destPath: string): Promise<void>;
  /** Deletes a file or a directory tree. Throws PathNotFoundError when nothing is there. */
  delete(path: string): Promise<void>;
  /**
   * Optional fast path for serving blobs: writes `length` bytes from `offset` into `dest` (a socket)
   * and ends it. Drivers without it are served through `reader`.
   */
  copyTo?(path: string, offset: number, length: number, dest: Writable): Promise<void>;
  /**
   * Optional fast path for upload bodies: creates (append=false) or appends to a file with a body
   * read straight from its connection (see http/socket-body.ts), hashing every byte into `digest` on
   * the way. Resolves to the file's new size. On failure the bytes that arrived stay in the file (an
   * interrupted chunk, resumable) and the digest no longer matches the file.
   */
  receive?(path: string, append: boolean, body: SocketBody, digest: DigestHandle | null): Promise<number>;
  /**
   * Optional, for drivers on a local file system: the file opened for reading, so that a download can
   * be sent from it with sendfile. Throws PathNotFoundError.
   */
  openFile?(path: string): Promise<FileHandle>;
}

/** A request body the driver may read from the connection itself (see http/socket-body.ts). */
export interface SocketBody {
  readonly kind: 'socket';
  /** The connection's descriptor (the driver's addon call reads a dup of it). */
  readonly fd: number;
  /** Bytes of the body in all (its Content-Length), or null for a chunked body: known at its end. */
  readonly length: number | null;
  /** A transfer with nothing arriving for this long fails (ETIMEDOUT). */
  readonly idleMs: number;
  /** Set to 1 when the connection closes: the transfer stops. */
  readonly cancel: Int32Array;
  /** The start of the body Node had already read with the headers (still coded when chunked); taken once. */
  takePrefix(): Buffer;
  /** Gives up on the body: nothing reads it and the connection closes after the response. */
  resume(): void;
}

export interface FileInfo {
  path: string;
  size: number;
  modTime: Date;
  isDir: boolean;
}

/**
 * A stream of bytes into one file. After the stream has finished, `commit` makes the written bytes
 * durable (fsync) and releases the file; `close` releases it keeping what was written (an interrupted
 * chunk of a resumable upload); `cancel` releases and removes it.
 */
export interface FileWriter {
  readonly stream: Writable;
  /** Bytes in the file: what was there when opened for append plus what was written since. */
  size(): number;
  commit(): Promise<void>;
  close(): Promise<void>;
  cancel(): Promise<void>;
}

export class PathNotFoundError extends Error {
  readonly path: string;
  constructor(path: string) {
    super(`path not found: ${path}`);
    this.name = 'PathNotFoundError';
    this.path = path;
  }
}

export function isPathNotFound(err: unknown): err is PathNotFoundError {
  return err instanceof PathNotFoundError;
}

/** `getContent` that answers null instead of throwing when the file is absent. */
export async function getContentOrNull(driver: StorageDriver, path: string): Promise<Buffer | null> {
  try {
    return await driver.getContent(path);
  } catch (err) {
    if (isPathNotFound(err)) return null;
    throw err;
  }
}

export async function statOrNull(driver: StorageDriver, path: string): Promise<FileInfo | null> {
  try {
    return await driver.stat(path);
  } catch (err) {
    if (isPathNotFound(err)) return null;
    throw err;
  }
}

export async function listOrEmpty(driver: StorageDriver, path: string): Promise<string[]> {
  try {
    return await driver.list(path);
  } catch (err) {
    if (isPathNotFound(err)) return [];
    throw err;
  }
}

/** `delete` that ignores a path that is already gone. */
export async function deleteIfExists(driver: StorageDriver, path: string): Promise<boolean> {
  try {
    await driver.delete(path);
    return true;
  } catch (err) {
    if (isPathNotFound(err)) return false;
    throw err;
  }
}
