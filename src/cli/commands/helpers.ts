import type { EngineClient } from '../client.js';
import { ApiError, CliError, UsageError } from '../errors.js';
import { humanSize } from '../format.js';
import { compileObjectFormat } from '../listing.js';

/**
 * Helpers of the network, volume, stats, df and build commands: key=value maps as the docker CLI
 * converts them, natural sort, Go's time.Time printing for RFC 3339 strings, the inspect/remove
 * loops and the prune reports.
 */

/** docker's ConvertKVStringsToMap: `k=v` → {k: 'v'}, a bare `k` → {k: ''}; keys sorted. */
export function keyValueMap(entries: string[]): Record<string, string> {
  const map = new Map<string, string>();
  for (const e of entries) {
    const eq = e.indexOf('=');
    if (eq < 0) map.set(e, '');
    else map.set(e.slice(0, eq), e.slice(eq + 1));
  }
  // Sorted like a Go map in JSON, so bodies match the docker CLI's byte for byte.
  const out: Record<string, string> = {};
  for (const key of [...map.keys()].sort()) out[key] = map.get(key)!;
  return out;
}

/** Labels (`--label k=v`): as keyValueMap, but an empty key is refused as docker does. */
export function labelMap(entries: string[]): Record<string, string> {
  for (const e of entries) {
    if (e.startsWith('=')) throw new UsageError(`invalid label '${e}': empty name`, 125);
  }
  return keyValueMap(entries);
}

/** fvbommel/sortorder's NaturalLess: digit runs compare as numbers ("a2" < "a10"). */
export function naturalCompare(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const ca = a[i];
    const cb = b[j];
    const da = ca >= '0' && ca <= '9';
    const db = cb >= '0' && cb <= '9';
    if (da && db) {
      let ei = i;
      while (ei < a.length && a[ei] >= '0' && a[ei] <= '9') ei++;
      let ej = j;
      while (ej < b.length && b[ej] >= '0' && b[ej] <= '9') ej++;
      const na = a.slice(i, ei).replace(/^0+(?=\d)/, '');
      const nb = b.slice(j, ej).replace(/^0+(?=\d)/, '');
      if (na.length !== nb.length) return na.length - nb.length;
      if (na !== nb) return na < nb ? -1 : 1;
      if (ei - i !== ej - j) return ei - i - (ej - j);
      i = ei;
      j = ej;
      continue;
    }
    if (ca !== cb) return ca < cb ? -1 : 1;
    i++;
    j++;
  }
  return a.length - i - (b.length - j);
}

/**
 * Go's time.Time String() for an RFC 3339 time stamp as the daemon sends it, keeping its zone:
 * "2026-11-29T04:19:07.5Z" → "2026-11-29 04:19:07.5 +0000 UTC". Unparsable input is returned as is.
 */
export function goTimeString(rfc3339: string | undefined): string {
  if (!rfc3339) return '0001-01-01 00:00:00 +0000 UTC';
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(rfc3339);
  if (!m) return rfc3339;
  const fraction = m[3] ? m[3].replace(/0+$/, '').replace(/^\.$/, '') : '';
  const zone = m[4] === 'Z' ? '+0000 UTC' : `${m[4].replace(':', '')} ${m[4].replace(':', '')}`;
  return `${m[1]} ${m[2]}${fraction} ${zone}`;
}

/** Parses an RFC 3339 time stamp to milliseconds (0 when absent or invalid). */
export function parseTime(rfc3339: string | undefined): number {
  const ms = rfc3339 ? Date.parse(rfc3339) : Number.NaN;
  return Number.isNaN(ms) ? 0 : ms;
}

/**
 * `network inspect` / `volume inspect`: GET each object, print the found ones as one JSON array
 * (4-space indent) or through --format, and the daemon's errors for the others (exit 1).
 */
export async function inspectEach(
  client: EngineClient,
  names: string[],
  pathOf: (name: string) => string,
  format: string | undefined,
  query?: Record<string, boolean | undefined>,
): Promise<number> {
  const template = format ? compileObjectFormat(format) : undefined;
  const found: unknown[] = [];
  const errors: string[] = [];
  for (const name of names) {
    try {
      found.push(await client.json<unknown>('GET', pathOf(name), { query }));
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      errors.push(err.message);
    }
  }
  if (template) process.stdout.write(found.map((obj) => `${template.execute(obj)}\n`).join(''));
  else process.stdout.write(`${JSON.stringify(found, null, 4)}\n`);
  if (errors.length > 0) {
    process.stderr.write(`${errors.join('\n')}\n`);
    return 1;
  }
  return 0;
}

/**
 * Runs `action` per name, printing the name after each success and each error on stderr as
 * docker does; `ignoreMissing` skips 404s silently (`network rm -f`).
 */
export async function removeEach(
  names: string[],
  action: (name: string) => Promise<void>,
  ignoreMissing = false,
): Promise<number> {
  let status = 0;
  for (const name of names) {
    try {
      await action(name);
      process.stdout.write(`${name}\n`);
    } catch (err) {
      if (!(err instanceof CliError)) throw err;
      if (ignoreMissing && err instanceof ApiError && err.status === 404) continue;
      process.stderr.write(`${err.message}\n`);
      status = 1;
    }
  }
  return status;
}

/** "Deleted Networks:\nn1\nn2\n\n" (nothing when the list is empty). */
export function deletedSection(title: string, items: string[] | null | undefined): string {
  if (!items || items.length === 0) return '';
  return `${title}:\n${items.map((i) => `${i}\n`).join('')}\n`;
}

export function reclaimedLine(bytes: number): string {
  return `Total reclaimed space: ${humanSize(bytes, 4)}\n`;
}

/** True when the daemon does not know the route at all (an endpoint not implemented yet). */
export function isMissingRoute(err: unknown): boolean {
  return err instanceof ApiError && err.status === 404 && /page not found/i.test(err.daemonMessage);
}
