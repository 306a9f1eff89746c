import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Digest } from '../common/digest.js';
import {
  encodeTarHeader,
  TAR_TRAILER,
  type TarEntry,
  type TarEntryHeader,
  tarPadding,
} from '../common/tar.js';
import { LayerWriter } from './extract.js';
import { type PackOptions, walkUpperDir } from './pack.js';

/**
 * Upper dir → layer, in one pass (commit, RUN steps): each entry's tar bytes go to `sink` (the
 * content store's blob, which hashes them: the diff id), and the same entry is applied to the new layer
 * directory from the same bytes, so the file contents are read once and nothing is re-read or
 * re-parsed. The tar is byte for byte what `packLayer` streams, and the directory is what unpacking
 * that tar gives (both use the same walk, and the same `LayerWriter` as `extractLayer`).
 * Synchronous: the caller pauses the container, or it has stopped, while the upper dir is read.
 */
export interface DiffLayerOptions extends PackOptions {
  /** Tar entry names to leave out (directories with a trailing `/`): the runtime's mount points. */
  exclude?: ReadonlySet<string>;
}

/**
 * Receives the layer tar's bytes in order (a chunk may be reused once `write` returns) and hashes
 * them: `digest()`, the sha256 of everything written, is the diff id. The content store's
 * `SyncBlobWriter` is one, so the bytes are hashed once, by the store that keeps them.
 */
export interface TarSink {
  write(chunk: Buffer): void;
  digest(): Digest;
}

/** A sink that only hashes (tests, or a layer whose tar is not kept). */
export function hashingSink(): TarSink {
  const hash = createHash('sha256');
  return {
    write: (chunk) => void hash.update(chunk),
    digest: () => `sha256:${hash.digest('hex')}`,
  };
}

export interface DiffLayerResult {
  diffId: Digest;
  /** Bytes of file content plus symlink targets (as `extractLayer` counts them). */
  size: number;
  /** Bytes of the tar. */
  tarSize: number;
}

const CHUNK = 1 << 20;

function headerOf(entry: TarEntry): TarEntryHeader {
  return {
    name: entry.name,
    type: entry.type,
    rawType: entry.type,
    mode: entry.mode & 0o7777,
    uid: entry.uid,
    gid: entry.gid,
    size: entry.type === 'file' ? (entry.size ?? 0) : 0,
    mtimeNs: entry.mtimeNs,
    atimeNs: null,
    linkname: entry.linkname ?? null,
    devmajor: entry.devmajor ?? 0,
    devminor: entry.devminor ?? 0,
    uname: '',
    gname: '',
    xattrs: new Map(entry.xattrs ?? []),
    pax: null,
  };
}

/** Packs `upperDir` into `sink` and unpacks it into `targetDir` (existing, empty) at the same time. */
export function packAndUnpackDiff(
  upperDir: string,
  targetDir: string,
  sink: TarSink,
  options: DiffLayerOptions = {},
): DiffLayerResult {
  const layer = new LayerWriter(targetDir);
  let tarSize = 0;
  const emit = (chunk: Buffer) => {
    if (chunk.length === 0) return;
    sink.write(chunk);
    tarSize += chunk.length;
  };
  const buffer = Buffer.allocUnsafe(CHUNK);
  for (const { entry, source } of walkUpperDir(upperDir.replace(/\/+$/, ''), '', options, new Map())) {
    const tarName = entry.type === 'directory' ? `${entry.name}/` : entry.name;
    if (options.exclude?.has(tarName)) continue;
    emit(encodeTarHeader(entry));
    const file = layer.begin(headerOf(entry));
    if (file === null) continue;
    const size = entry.size ?? 0;
    let sourceFd: number | null = null;
    try {
      if (source !== undefined && size > 0) {
        sourceFd = fs.openSync(source, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      }
      // Exactly `size` bytes, as TarWriter.addFromFd: a file that grew is cut, one that shrank padded.
      for (let position = 0; position < size; ) {
        const length = Math.min(CHUNK, size - position);
        let filled = 0;
        while (filled < length) {
          const n = fs.readSync(sourceFd!, buffer, filled, length - filled, position + filled);
          if (n === 0) break;
          filled += n;
        }
        buffer.fill(0, filled, length);
        const chunk = buffer.subarray(0, length);
        emit(chunk);
        layer.writeBody(file, chunk);
        position += length;
      }
      emit(tarPadding(size));
      layer.finishFile(file);
    } catch (err) {
      layer.abortFile(file);
      throw err;
    } finally {
      if (sourceFd !== null) fs.closeSync(sourceFd);
    }
  }
  emit(TAR_TRAILER);
  layer.finish();
  return { diffId: sink.digest(), size: layer.size, tarSize };
}
