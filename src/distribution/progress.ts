import { shortId } from '../common/digest.js';
import type { ProgressMessage } from '../images/service.js';

/**
 * Docker's JSON progress messages for pulls and pushes: `{"status","progressDetail","progress","id"}`.
 * The docker CLI draws its bars from `progressDetail`; `progress` is the bar dockerd pre-renders
 * (`[=====>      ]  41.47kB/1.982MB`), kept for clients that print it as is.
 */
export type ProgressSink = (message: ProgressMessage) => void;

const BAR_WIDTH = 50;
const UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];

/** go-units HumanSize: decimal units, four significant digits (`41.47kB`, `1.982MB`, `128B`). */
export function humanSize(bytes: number): string {
  let size = bytes;
  let unit = 0;
  while (size >= 1000 && unit < UNITS.length - 1) {
    size /= 1000;
    unit++;
  }
  return `${Number(size.toPrecision(4))}${UNITS[unit]}`;
}

/** dockerd's rendering of a progress bar with counts. */
export function progressBar(current: number, total: number): string {
  if (current <= 0 && total <= 0) return '';
  if (total <= 0) return humanSize(current).padStart(8);
  const filled = Math.min(BAR_WIDTH, Math.floor(Math.floor((current / total) * 100) / 2));
  const bar = `[${'='.repeat(filled)}>${' '.repeat(Math.max(0, BAR_WIDTH - filled))}] `;
  const counts =
    current > total
      ? humanSize(current).padStart(8)
      : `${humanSize(current).padStart(8)}/${humanSize(total)}`;
  return bar + counts;
}

/** A status line for one layer (`Pulling fs layer`, `Pushed`, …). */
export function layerStatus(id: string, status: string): ProgressMessage {
  return { status, progressDetail: {}, id };
}

/** A progress line for one layer (`Downloading`, `Extracting`, `Pushing`). */
export function layerProgress(id: string, status: string, current: number, total: number): ProgressMessage {
  return { status, progressDetail: { current, total }, progress: progressBar(current, total), id };
}

/** The id dockerd shows for a layer: 12 hex digits of a digest. */
export function layerId(digest: string): string {
  return shortId(digest);
}

/** Emits byte-count progress for one layer at most every `intervalMs`, plus the final count. */
export class ThrottledProgress {
  private last = 0;
  constructor(
    private readonly sink: ProgressSink,
    private readonly id: string,
    private readonly status: string,
    private readonly total: number,
    private readonly intervalMs = 100,
  ) {}

  update(current: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.last < this.intervalMs) return;
    this.last = now;
    this.sink(layerProgress(this.id, this.status, current, this.total));
  }
}
