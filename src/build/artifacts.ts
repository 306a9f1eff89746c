import * as fs from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { lgetxattr } from '../native/index.js';

/**
 * Mount points the runtime leaves in a container's upper dir. crun creates the targets of the
 * container's bind mounts (/etc/hostname, /etc/hosts, /etc/resolv.conf: empty 0700 files) and of
 * /proc, /sys and /dev when the image lacks them. dockerd keeps them in a separate "init" layer;
 * here they are left out of the layer tar instead, so a commit or a RUN step holds exactly what the
 * process changed.
 */
const MOUNT_FILES = ['etc/hostname', 'etc/hosts', 'etc/resolv.conf'];
const MOUNT_DIRS = ['proc', 'sys', 'dev'];

function lstat(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
    throw err;
  }
}

function isOpaque(dir: string): boolean {
  if (!lstat(dir)?.isDirectory()) return false;
  return lgetxattr(dir, 'trusted.overlay.opaque')?.toString() === 'y';
}

/** True when one of the lower layers (top first) has `rel`, whiteouts respected. */
function inLowerLayers(lowerDirs: readonly string[], rel: string): boolean {
  for (const layer of lowerDirs) {
    const st = lstat(`${layer}/${rel}`);
    if (st) return !(st.isCharacterDevice() && st.rdev === 0);
    const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    if (parent !== '' && isOpaque(`${layer}/${parent}`)) return false;
  }
  return false;
}

export interface LayerChanges {
  /** Tar entry names to leave out (directories with a trailing `/`). */
  drop: Set<string>;
  /** True when the upper dir holds nothing but runtime mount points. */
  isEmpty: boolean;
}

/** Looks at an upper dir and decides which of its entries are runtime artifacts. */
export function runtimeArtifacts(upperDir: string, lowerDirs: readonly string[]): LayerChanges {
  const drop = new Set<string>();
  for (const rel of MOUNT_FILES) {
    const st = lstat(`${upperDir}/${rel}`);
    if (st?.isFile() && st.size === 0 && (st.mode & 0o777) === 0o700 && !inLowerLayers(lowerDirs, rel)) {
      drop.add(rel);
    }
  }
  for (const rel of MOUNT_DIRS) {
    const st = lstat(`${upperDir}/${rel}`);
    if (
      st?.isDirectory() &&
      fs.readdirSync(`${upperDir}/${rel}`).length === 0 &&
      !inLowerLayers(lowerDirs, rel)
    ) {
      drop.add(`${rel}/`);
    }
  }
  const etc = `${upperDir}/etc`;
  if (lstat(etc)?.isDirectory() && !isOpaque(etc)) {
    const rest = fs.readdirSync(etc).filter((name) => !drop.has(`etc/${name}`));
    if (rest.length === 0) drop.add('etc/');
  }
  const remaining = fs
    .readdirSync(upperDir)
    .filter((name) => !drop.has(`${name}/`) && !(name === 'etc' && drop.has('etc/')));
  return { drop, isEmpty: remaining.length === 0 };
}

const BLOCK = 512;

function octal(block: Buffer, offset: number, length: number): number {
  const text = block
    .toString('latin1', offset, offset + length)
    .replace(/\0.*$/s, '')
    .trim();
  return text === '' ? 0 : Number.parseInt(text, 8);
}

function headerName(block: Buffer): string {
  const name = block.toString('utf8', 0, 100).replace(/\0.*$/s, '');
  const prefix = block.toString('utf8', 345, 500).replace(/\0.*$/s, '');
  return prefix === '' ? name : `${prefix}/${name}`;
}

function paxPath(data: Buffer): string | null {
  let offset = 0;
  while (offset < data.length) {
    const space = data.indexOf(0x20, offset);
    if (space < 0) break;
    const length = Number.parseInt(data.toString('ascii', offset, space), 10);
    if (!Number.isFinite(length) || length <= 0) break;
    const record = data.toString('utf8', space + 1, offset + length - 1);
    if (record.startsWith('path=')) return record.slice(5);
    offset += length;
  }
  return null;
}

/**
 * Drops the named entries (header, PAX header and body) from an uncompressed tar stream, block by
 * block, without re-encoding anything else.
 */
export class TarEntryFilter extends Transform {
  private buffered: Buffer = Buffer.alloc(0);
  /** Bytes of the current entry body (padded) still to pass or skip. */
  private remaining = 0;
  private skipping = false;
  private pax: Buffer[] = [];
  private paxRemaining = 0;
  private paxData: Buffer[] = [];
  private trailer = false;

  constructor(private readonly dropNames: ReadonlySet<string>) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    try {
      this.process();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    if (this.buffered.length > 0) this.push(this.buffered);
    callback();
  }

  private process(): void {
    while (this.buffered.length > 0) {
      if (this.trailer) {
        this.push(this.buffered);
        this.buffered = Buffer.alloc(0);
        return;
      }
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, this.buffered.length);
        if (!this.skipping) this.push(this.buffered.subarray(0, n));
        this.buffered = this.buffered.subarray(n);
        this.remaining -= n;
        continue;
      }
      if (this.paxRemaining > 0) {
        const n = Math.min(this.paxRemaining, this.buffered.length);
        const part = this.buffered.subarray(0, n);
        this.pax.push(part);
        this.paxData.push(part);
        this.buffered = this.buffered.subarray(n);
        this.paxRemaining -= n;
        continue;
      }
      if (this.buffered.length < BLOCK) return;
      const block = this.buffered.subarray(0, BLOCK);
      this.buffered = this.buffered.subarray(BLOCK);
      if (block.every((b) => b === 0)) {
        this.trailer = true;
        this.push(block);
        continue;
      }
      const type = String.fromCharCode(block[156]);
      const size = octal(block, 124, 12);
      const padded = Math.ceil(size / BLOCK) * BLOCK;
      if (type === 'x') {
        this.pax = [Buffer.from(block)];
        this.paxData = [];
        this.paxRemaining = padded;
        continue;
      }
      const name = paxPath(Buffer.concat(this.paxData)) ?? headerName(block);
      const keep = !this.dropNames.has(name);
      if (keep) {
        for (const part of this.pax) this.push(part);
        this.push(block);
      }
      this.pax = [];
      this.paxData = [];
      this.skipping = !keep;
      this.remaining = type === '0' || type === '\0' || type === '7' ? padded : 0;
    }
  }
}
