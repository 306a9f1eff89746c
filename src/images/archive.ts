import * as posixPath from 'node:path/posix';
import { Readable } from 'node:stream';
import type { Digest } from '../common/digest.js';
import { InvalidArgument } from '../common/errors.js';
import { createTarExtract, normalizeTarHeader, pumpInto, type RawTarHeader } from '../common/tar.js';
import type { BlobInfo, ContentStore } from '../content/store.js';
import {
  archiveManifestSchema,
  type Descriptor,
  hostArchitecture,
  type ImageConfig,
  imageIndexSchema,
  imageManifestSchema,
  MediaType,
  parseImageConfig,
  parseWith,
} from './config.js';

/**
 * Image archives (`docker save` / `docker load`): the docker-archive layout (`manifest.json`,
 * `<id>/layer.tar`, `<config>.json`, `repositories`) and the OCI image layout (`oci-layout`,
 * `index.json`, `blobs/sha256/<hex>`), which Docker 25+ writes together with `manifest.json`.
 *
 * Reading never trusts a path in the archive: every regular file is streamed into the content store
 * (verified against its name when it sits under `blobs/sha256/`), and entries are then looked up by
 * their normalised archive path. Nothing is written under a name taken from the archive.
 */
export type ArchiveEntry = { kind: 'blob'; blob: BlobInfo } | { kind: 'link'; target: string };

export interface ArchiveContents {
  entries: Map<string, ArchiveEntry>;
}

function malformed(message: string): InvalidArgument {
  return new InvalidArgument(`invalid archive: ${message}`);
}

/** `./a/b/` → `a/b`; absolute paths and `..` that leave the archive are refused. */
export function normalizeArchivePath(name: string): string {
  if (name.startsWith('/')) throw malformed(`absolute path ${JSON.stringify(name)}`);
  const normalized = posixPath.normalize(name).replace(/\/+$/, '');
  if (normalized === '..' || normalized.startsWith('../')) {
    throw malformed(`path ${JSON.stringify(name)} leaves the archive`);
  }
  return normalized === '.' ? '' : normalized;
}

/** Streams every regular file of the archive into `content`; digests of new blobs go to `createdBlobs`. */
export async function readArchive(
  source: Readable,
  content: ContentStore,
  createdBlobs: Digest[],
): Promise<ArchiveContents> {
  const entries = new Map<string, ArchiveEntry>();
  const extract = createTarExtract();

  const handle = async (raw: RawTarHeader, body: AsyncIterable<Buffer>): Promise<void> => {
    const header = normalizeTarHeader(raw);
    const name = normalizeArchivePath(header.name);
    if (header.type === 'file') {
      const m = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(name);
      const expected = m ? { digest: `sha256:${m[1]}` as Digest, size: header.size } : { size: header.size };
      const result = await content.ingest(Readable.from(body, { objectMode: false }), expected);
      if (result.created) createdBlobs.push(result.digest);
      entries.set(name, { kind: 'blob', blob: { digest: result.digest, size: result.size } });
      return;
    }
    if (header.type === 'symlink' || header.type === 'link') {
      const link = header.linkname ?? '';
      if (link.startsWith('/')) throw malformed(`link ${JSON.stringify(name)} points to an absolute path`);
      // Symlinks are relative to their directory, hard links to the archive root.
      const target = header.type === 'symlink' ? posixPath.join(posixPath.dirname(name), link) : link;
      entries.set(name, { kind: 'link', target: normalizeArchivePath(target) });
    }
    for await (const _ of body) {
      // drain: directories and other entry types carry no data we use
    }
  };

  extract.on('entry', (raw, stream, next) => {
    handle(raw as RawTarHeader, stream as unknown as AsyncIterable<Buffer>).then(
      () => next(),
      (err: unknown) => next(err instanceof Error ? err : new Error(String(err))),
    );
  });
  try {
    await pumpInto(source, extract);
  } catch (err) {
    if (err instanceof InvalidArgument) throw err;
    throw malformed((err as Error).message);
  }
  return { entries };
}

/** The blob stored for an archive path, following symlinks and hard links inside the archive. */
export function lookupArchiveBlob(contents: ArchiveContents, name: string): BlobInfo {
  let current = normalizeArchivePath(name);
  for (let depth = 0; depth < 16; depth++) {
    const entry = contents.entries.get(current);
    if (!entry) throw malformed(`${JSON.stringify(name)} not found in the archive`);
    if (entry.kind === 'blob') return entry.blob;
    current = entry.target;
  }
  throw malformed(`too many levels of links at ${JSON.stringify(name)}`);
}

export interface LoadLayer {
  blob: BlobInfo;
  /** Declared media type (OCI layout), or null when the layer's compression is to be sniffed. */
  mediaType: string | null;
}

export interface LoadItem {
  configDigest: Digest;
  configBytes: Buffer;
  config: ImageConfig;
  layers: LoadLayer[];
  /** References as written in the archive (`bb:latest`, `docker.io/library/bb:latest`). */
  repoTags: string[];
}

function readJsonBlob(content: ContentStore, blob: BlobInfo, what: string): unknown {
  const data = content.readSmall(blob.digest);
  try {
    return JSON.parse(data.toString('utf8'));
  } catch (err) {
    throw malformed(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

function loadConfig(content: ContentStore, blob: BlobInfo): { bytes: Buffer; config: ImageConfig } {
  const bytes = content.readSmall(blob.digest);
  return { bytes, config: parseImageConfig(bytes) };
}

/** Works out which images an archive holds, validating every manifest and config before any unpack. */
export function planLoad(contents: ArchiveContents, content: ContentStore): LoadItem[] {
  let items: LoadItem[];
  if (contents.entries.has('manifest.json')) {
    items = planDockerArchive(contents, content);
  } else if (contents.entries.has('index.json')) {
    items = planOciLayout(contents, content);
  } else {
    throw malformed('no manifest.json or index.json (only docker-archive and OCI layouts are supported)');
  }
  for (const item of items) {
    if (item.config.rootfs.diff_ids.length !== item.layers.length) {
      throw malformed(
        `image ${item.configDigest} lists ${item.layers.length} layers but its config has ${item.config.rootfs.diff_ids.length} diff ids`,
      );
    }
  }
  return items;
}

function planDockerArchive(contents: ArchiveContents, content: ContentStore): LoadItem[] {
  const raw = readJsonBlob(content, lookupArchiveBlob(contents, 'manifest.json'), 'manifest.json');
  const manifest = parseWith(archiveManifestSchema, raw, 'manifest.json');
  return manifest.map((entry) => {
    const configBlob = lookupArchiveBlob(contents, entry.Config);
    const { bytes, config } = loadConfig(content, configBlob);
    return {
      configDigest: configBlob.digest,
      configBytes: bytes,
      config,
      layers: entry.Layers.map((layerPath) => ({
        blob: lookupArchiveBlob(contents, layerPath),
        mediaType: null,
      })),
      repoTags: entry.RepoTags ?? [],
    };
  });
}

const LAYER_MEDIA_TYPES = new Set<string>([
  MediaType.ociLayer,
  MediaType.ociLayerGzip,
  MediaType.dockerLayer,
  MediaType.dockerLayerGzip,
]);

function ociBlob(contents: ArchiveContents, descriptor: Descriptor): BlobInfo {
  const hex = descriptor.digest.slice(descriptor.digest.indexOf(':') + 1);
  const algorithm = descriptor.digest.slice(0, descriptor.digest.indexOf(':'));
  const blob = lookupArchiveBlob(contents, `blobs/${algorithm}/${hex}`);
  if (blob.digest !== descriptor.digest || blob.size !== descriptor.size) {
    throw malformed(`blob ${descriptor.digest} does not match its descriptor`);
  }
  return blob;
}

function planOciLayout(contents: ArchiveContents, content: ContentStore): LoadItem[] {
  const raw = readJsonBlob(content, lookupArchiveBlob(contents, 'index.json'), 'index.json');
  const index = parseWith(imageIndexSchema, raw, 'index.json');
  const items: LoadItem[] = [];
  for (const descriptor of index.manifests) {
    const manifestDescriptor = choosePlatformManifest(contents, content, descriptor, 0);
    const manifest = parseWith(
      imageManifestSchema,
      readJsonBlob(content, ociBlob(contents, manifestDescriptor), 'manifest'),
      'image manifest',
    );
    const configBlob = ociBlob(contents, manifest.config);
    const { bytes, config } = loadConfig(content, configBlob);
    const layers = manifest.layers.map((layer) => {
      if (!LAYER_MEDIA_TYPES.has(layer.mediaType)) {
        throw new InvalidArgument(`unsupported layer media type ${layer.mediaType}`);
      }
      return { blob: ociBlob(contents, layer), mediaType: layer.mediaType };
    });
    items.push({
      configDigest: configBlob.digest,
      configBytes: bytes,
      config,
      layers,
      repoTags: ociReferenceNames(descriptor),
    });
  }
  return items;
}

/** For an image index, the manifest for this host's platform (else the first one). */
function choosePlatformManifest(
  contents: ArchiveContents,
  content: ContentStore,
  descriptor: Descriptor,
  depth: number,
): Descriptor {
  const isIndex =
    descriptor.mediaType === MediaType.ociIndex || descriptor.mediaType === MediaType.dockerManifestList;
  if (!isIndex) return descriptor;
  if (depth > 4) throw malformed('image indexes nested too deeply');
  const nested = parseWith(
    imageIndexSchema,
    readJsonBlob(content, ociBlob(contents, descriptor), 'image index'),
    'image index',
  );
  const arch = hostArchitecture();
  const chosen =
    nested.manifests.find((m) => m.platform?.os === 'linux' && m.platform.architecture === arch) ??
    nested.manifests.find((m) => m.platform?.architecture !== 'unknown');
  if (!chosen) throw malformed('image index lists no manifest');
  return choosePlatformManifest(contents, content, chosen, depth + 1);
}

function ociReferenceNames(descriptor: Descriptor): string[] {
  const annotations = descriptor.annotations ?? {};
  const full = annotations['io.containerd.image.name'];
  if (full) return [full];
  const refName = annotations['org.opencontainers.image.ref.name'];
  // A bare tag (`latest`) names no repository: such an image loads untagged, as with Docker.
  if (refName && (refName.includes('/') || refName.includes(':'))) return [refName];
  return [];
}

// ---------------------------------------------------------------------------------------------
// Writing: a minimal ustar writer for `docker save`, streaming file bodies with back-pressure.

export interface OutputEntry {
  name: string;
  type: 'file' | 'directory' | 'symlink';
  mode?: number;
  /** Seconds since the epoch. */
  mtime?: number;
  linkname?: string;
  /** The body of a small file. */
  data?: Buffer;
  /** For a large file: its exact size and a function opening its content. */
  size?: number;
  open?: () => Promise<Readable> | Readable;
}

const BLOCK = 512;

function writeOctal(header: Buffer, offset: number, length: number, value: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii');
}

function writeSize(header: Buffer, value: number): void {
  if (value < 8 ** 11) {
    writeOctal(header, 124, 12, value);
    return;
  }
  // GNU base-256 for sizes of 8 GiB and more.
  header[124] = 0x80;
  let v = BigInt(value);
  for (let i = 135; i > 124; i--) {
    header[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

function ustarHeader(entry: OutputEntry, size: number): Buffer {
  const header = Buffer.alloc(BLOCK);
  let name = entry.type === 'directory' && !entry.name.endsWith('/') ? `${entry.name}/` : entry.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', name.length - 2);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
    if (cut <= 0 || Buffer.byteLength(name) > 100 || Buffer.byteLength(prefix) > 155) {
      throw new Error(`archive path too long: ${entry.name}`);
    }
  }
  header.write(name, 0, 100, 'utf8');
  writeOctal(header, 100, 8, entry.mode ?? (entry.type === 'directory' ? 0o755 : 0o644));
  writeOctal(header, 108, 8, 0);
  writeOctal(header, 116, 8, 0);
  writeSize(header, size);
  writeOctal(header, 136, 12, Math.max(0, Math.floor(entry.mtime ?? 0)));
  header.write('        ', 148, 8, 'ascii');
  header.write(entry.type === 'directory' ? '5' : entry.type === 'symlink' ? '2' : '0', 156, 1, 'ascii');
  if (entry.linkname) header.write(entry.linkname, 157, 100, 'utf8');
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  header.write(prefix, 345, 155, 'utf8');
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii');
  return header;
}

async function* tarChunks(
  entries: AsyncIterable<OutputEntry> | Iterable<OutputEntry>,
): AsyncGenerator<Buffer> {
  for await (const entry of entries) {
    const size = entry.type !== 'file' ? 0 : (entry.data?.length ?? entry.size ?? 0);
    yield ustarHeader(entry, size);
    if (entry.type !== 'file') continue;
    if (entry.data) {
      yield entry.data;
    } else if (entry.open) {
      let written = 0;
      const body = await entry.open();
      for await (const chunk of body as AsyncIterable<Buffer>) {
        written += chunk.length;
        if (written > size) throw new Error(`${entry.name}: content longer than the ${size} bytes recorded`);
        yield chunk;
      }
      if (written !== size)
        throw new Error(`${entry.name}: content is ${written} bytes, ${size} were recorded`);
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad > 0) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(BLOCK * 2);
}

/** A tar stream of `entries`, produced as the reader pulls (never more than one chunk ahead). */
export function writeTar(entries: AsyncIterable<OutputEntry> | Iterable<OutputEntry>): Readable {
  return Readable.from(tarChunks(entries), { objectMode: false, highWaterMark: 1 << 20 });
}
