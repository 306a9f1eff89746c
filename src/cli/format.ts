/**
 * Output formatting shared by the listing commands: docker's tab-aligned tables, its human
 * durations and sizes (the go-units package's rules), id truncation and time stamps.
 */

/** Go's `%.<precision>g`: shortest of %e/%f, trailing zeros removed (so 999999 B → "1e+03kB", as docker). */
export function formatGoFloat(value: number, precision: number): string {
  if (value === 0) return '0';
  if (!Number.isFinite(value)) return String(value);
  const exp = Number(value.toExponential(precision - 1).split('e')[1]);
  if (exp < -4 || exp >= precision) {
    const [mantissa, e] = value.toExponential(precision - 1).split('e');
    const n = Number(e);
    return `${trimZeros(mantissa)}e${n < 0 ? '-' : '+'}${String(Math.abs(n)).padStart(2, '0')}`;
  }
  return trimZeros(value.toFixed(Math.max(0, precision - 1 - exp)));
}

function trimZeros(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

const DECIMAL_UNITS = ['B', 'kB', 'MB', 'GB', 'TB', 'PB', 'EB', 'ZB', 'YB'];
const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB', 'ZiB', 'YiB'];

function scaledSize(size: number, base: number, units: string[], precision: number): string {
  let i = 0;
  while (size >= base && i < units.length - 1) {
    size /= base;
    i++;
  }
  return `${formatGoFloat(size, precision)}${units[i]}`;
}

/** Decimal size as docker prints image and container sizes: 1982401 → "1.98MB". */
export function humanSize(bytes: number, precision = 3): string {
  return scaledSize(bytes, 1000, DECIMAL_UNITS, precision);
}

/** Binary size as `docker info` prints memory: "31.27GiB". */
export function binarySize(bytes: number): string {
  return scaledSize(bytes, 1024, BINARY_UNITS, 4);
}

/** go-units HumanDuration: "Less than a second", "5 seconds", "About a minute", "3 hours", … */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(seconds / 60);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.round(ms / 3_600_000);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3_600_000 / 24 / 365)} years`;
}

/** "6 seconds ago" for a unix time in seconds. */
export function timeAgo(unixSeconds: number, nowMs = Date.now()): string {
  return `${humanDuration(Math.max(0, nowMs - unixSeconds * 1000))} ago`;
}

/** Truncates to `max` characters with a trailing "…" (docker's formatter.Ellipsis). */
export function ellipsis(s: string, max: number): string {
  const chars = Array.from(s);
  if (chars.length <= max) return s;
  if (max <= 1) return chars.slice(0, max).join('');
  return `${chars.slice(0, max - 1).join('')}…`;
}

/** "sha256:6caa8d855dc5…" → "6caa8d855dc5"; plain ids are cut to 12 characters. */
export function shortId(id: string): string {
  const hex = id.startsWith('sha256:') ? id.slice(7) : id;
  return hex.slice(0, 12);
}

export interface TableOptions {
  minWidth?: number;
  padding?: number;
}

/**
 * Aligns tab-separated lines like Go's text/tabwriter as docker configures it (minwidth 10,
 * padding 3): every tab-terminated cell is padded to its column's width; the last cell of a line
 * is written as is.
 */
export function alignTable(lines: string[], opts: TableOptions = {}): string {
  const minWidth = opts.minWidth ?? 10;
  const padding = opts.padding ?? 3;
  const rows = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  for (const cells of rows) {
    for (let i = 0; i < cells.length - 1; i++) {
      widths[i] = Math.max(widths[i] ?? 0, Math.max(minWidth, displayWidth(cells[i]) + padding));
    }
  }
  return rows
    .map((cells) =>
      cells.map((c, i) => (i < cells.length - 1 ? c + ' '.repeat(widths[i] - displayWidth(c)) : c)).join(''),
    )
    .map((l) => `${l}\n`)
    .join('');
}

function displayWidth(s: string): number {
  return Array.from(s).length;
}

/** RFC 3339 with exactly nine fractional digits in local time (docker's RFC3339NanoFixed). */
export function formatTimestampNano(timeNano: bigint): string {
  const ms = Number(timeNano / 1_000_000n);
  const nanos = Number(timeNano % 1_000_000_000n);
  const d = new Date(ms);
  const offsetMin = -d.getTimezoneOffset();
  const pad = (n: number, w = 2): string => String(n).padStart(w, '0');
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(nanos, 9)}`;
  const zone =
    offsetMin === 0
      ? 'Z'
      : `${offsetMin < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(offsetMin) / 60))}:${pad(Math.abs(offsetMin) % 60)}`;
  return `${date}T${time}${zone}`;
}

/** Go's time.Time default String() in local time: "2026-11-29 04:14:45 +0000 UTC". */
export function formatGoTime(unixSeconds: number): string {
  const d = new Date(unixSeconds * 1000);
  const pad = (n: number): string => String(n).padStart(2, '0');
  const offsetMin = -d.getTimezoneOffset();
  const sign = offsetMin < 0 ? '-' : '+';
  const zoneName = offsetMin === 0 ? 'UTC' : (Intl.DateTimeFormat().resolvedOptions().timeZone ?? '');
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())} ` +
    `${sign}${pad(Math.floor(Math.abs(offsetMin) / 60))}${pad(Math.abs(offsetMin) % 60)} ${zoneName}`
  );
}

const DURATION_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Parses a Go duration ("1h30m", "10s", "1.5m") into milliseconds; undefined when it is not one. */
export function parseGoDuration(value: string): number | undefined {
  const m = /^([+-])?((?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/.exec(value);
  if (!m) return value === '0' ? 0 : undefined;
  let total = 0;
  for (const part of value.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) {
    total += Number(part[1]) * DURATION_UNITS[part[2]];
  }
  return m[1] === '-' ? -total : total;
}

/**
 * Converts a `--since`/`--until` value to the API's unix-seconds string, as the docker CLI does:
 * a Go duration is relative to now ("10m" = ten minutes ago), a number is a unix time stamp, and
 * anything else must be an RFC 3339 / ISO date.
 */
export function parseTimestampArg(value: string, nowMs = Date.now()): string {
  if (/^\d+(\.\d+)?$/.test(value)) return value;
  const duration = parseGoDuration(value);
  if (duration !== undefined) return secondsString(nowMs - duration);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new Error(`invalid value for time: "${value}"`);
  const fraction = /\.(\d+)/.exec(value.split('T')[1] ?? '')?.[1];
  const whole = Math.floor(ms / 1000);
  return fraction ? `${whole}.${fraction.padEnd(9, '0').slice(0, 9)}` : String(whole);
}

function secondsString(ms: number): string {
  const whole = Math.floor(ms / 1000);
  const nanos = Math.round((ms - whole * 1000) * 1e6);
  return nanos === 0 ? String(whole) : `${whole}.${String(nanos).padStart(9, '0')}`;
}

/** Quotes a string the way Go's strconv.Quote does for printable text. */
export function goQuote(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16)}`);
}

export interface ApiPort {
  IP?: string;
  PrivatePort: number;
  PublicPort?: number;
  Type: string;
}

/**
 * The PORTS column: "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 5000/tcp", with consecutive
 * ports folded into ranges ("8080-8081->80-81/tcp") as docker's DisplayablePorts does.
 */
export function formatPorts(ports: ApiPort[] | null | undefined): string {
  if (!ports || ports.length === 0) return '';
  const groups = new Map<string, ApiPort[]>();
  const order: string[] = [];
  for (const p of ports) {
    const key = p.PublicPort ? `${p.IP ?? ''}|${p.Type}|pub` : `|${p.Type}|priv`;
    if (!groups.has(key)) {
      groups.set(key, []);
      order.push(key);
    }
    groups.get(key)!.push(p);
  }
  const out: string[] = [];
  for (const key of order) {
    const list = [...groups.get(key)!].sort((a, b) => a.PrivatePort - b.PrivatePort);
    let start = list[0];
    let prev = list[0];
    const flush = (last: ApiPort): void => {
      out.push(formatPortRange(start, last));
    };
    for (const p of list.slice(1)) {
      const consecutive =
        p.PrivatePort === prev.PrivatePort + 1 &&
        (p.PublicPort === undefined || p.PublicPort === (prev.PublicPort ?? 0) + 1);
      if (!consecutive) {
        flush(prev);
        start = p;
      }
      prev = p;
    }
    flush(prev);
  }
  return [...new Set(out)].join(', ');
}

function formatPortRange(first: ApiPort, last: ApiPort): string {
  const priv =
    first.PrivatePort === last.PrivatePort
      ? `${first.PrivatePort}`
      : `${first.PrivatePort}-${last.PrivatePort}`;
  if (!first.PublicPort) return `${priv}/${first.Type}`;
  const pub =
    first.PublicPort === last.PublicPort ? `${first.PublicPort}` : `${first.PublicPort}-${last.PublicPort}`;
  const ip = first.IP?.includes(':') ? `[${first.IP}]` : (first.IP ?? '');
  return `${ip}:${pub}->${priv}/${first.Type}`;
}
