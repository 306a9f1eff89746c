import * as os from 'node:os';
import * as posixPath from 'node:path/posix';
import { z } from 'zod';
import { type Digest, isDigest } from '../common/digest.js';
import { InvalidArgument } from '../common/errors.js';

/**
 * Image configs and manifests as they appear on the wire and in archives (OCI image spec and Docker
 * image spec v1.2 / manifest v2 schema 2), validated once where they enter. Objects are loose: unknown
 * fields are kept, because the config bytes are the image's identity and tools add their own fields.
 */
export const digestSchema = z.custom<Digest>(
  (value) => typeof value === 'string' && isDigest(value),
  'invalid digest',
);

/** Docker's strslice: a JSON array of strings, or a single string meaning a one-element array. */
const strSlice = z.union([z.array(z.string()), z.string().transform((s) => [s])]);

const emptyObject = z.looseObject({});

export const healthConfigSchema = z.looseObject({
  Test: z.array(z.string()).nullish(),
  Interval: z.number().optional(),
  Timeout: z.number().optional(),
  StartPeriod: z.number().optional(),
  StartInterval: z.number().optional(),
  Retries: z.number().optional(),
});
export type HealthConfig = z.infer<typeof healthConfigSchema>;

/** The runtime defaults of an image (`config` in the image config; `Config` in inspect). */
export const containerConfigSchema = z.looseObject({
  Hostname: z.string().optional(),
  Domainname: z.string().optional(),
  User: z.string().optional(),
  AttachStdin: z.boolean().optional(),
  AttachStdout: z.boolean().optional(),
  AttachStderr: z.boolean().optional(),
  ExposedPorts: z.record(z.string(), emptyObject).nullish(),
  Tty: z.boolean().optional(),
  OpenStdin: z.boolean().optional(),
  StdinOnce: z.boolean().optional(),
  Env: z.array(z.string()).nullish(),
  Cmd: strSlice.nullish(),
  Healthcheck: healthConfigSchema.nullish(),
  ArgsEscaped: z.boolean().optional(),
  Image: z.string().optional(),
  Volumes: z.record(z.string(), emptyObject).nullish(),
  WorkingDir: z.string().optional(),
  Entrypoint: strSlice.nullish(),
  NetworkDisabled: z.boolean().optional(),
  MacAddress: z.string().optional(),
  OnBuild: z.array(z.string()).nullish(),
  Labels: z.record(z.string(), z.string()).nullish(),
  StopSignal: z.string().optional(),
  StopTimeout: z.number().nullish(),
  Shell: z.array(z.string()).nullish(),
});
export type ContainerConfig = z.infer<typeof containerConfigSchema>;

export const historySchema = z.looseObject({
  created: z.string().optional(),
  created_by: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  empty_layer: z.boolean().optional(),
});
export type HistoryEntry = z.infer<typeof historySchema>;

export const imageConfigSchema = z.looseObject({
  architecture: z.string().optional(),
  os: z.string().optional(),
  variant: z.string().optional(),
  'os.version': z.string().optional(),
  created: z.string().optional(),
  author: z.string().optional(),
  comment: z.string().optional(),
  container: z.string().optional(),
  container_config: containerConfigSchema.nullish(),
  docker_version: z.string().optional(),
  config: containerConfigSchema.nullish(),
  parent: z.string().optional(),
  rootfs: z.looseObject({
    type: z.literal('layers'),
    diff_ids: z.array(digestSchema),
  }),
  history: z.array(historySchema).nullish(),
});
export type ImageConfig = z.infer<typeof imageConfigSchema>;

/** Parses and validates config bytes (already bounded in size by the caller). */
export function parseImageConfig(data: Buffer | string): ImageConfig {
  let value: unknown;
  try {
    value = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch (err) {
    throw new InvalidArgument(`invalid image config: ${(err as Error).message}`);
  }
  return parseWith(imageConfigSchema, value, 'image config');
}

export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new InvalidArgument(`invalid ${what}${where}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data;
}

// ---------------------------------------------------------------------------------------------
// Manifests and archive metadata

export const MediaType = {
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
} as const;

export const descriptorSchema = z.looseObject({
  mediaType: z.string(),
  digest: digestSchema,
  size: z.number().int().nonnegative(),
  annotations: z.record(z.string(), z.string()).nullish(),
  platform: z
    .looseObject({ architecture: z.string(), os: z.string(), variant: z.string().optional() })
    .nullish(),
});
export type Descriptor = z.infer<typeof descriptorSchema>;

export const imageManifestSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  config: descriptorSchema,
  layers: z.array(descriptorSchema),
});
export type ImageManifest = z.infer<typeof imageManifestSchema>;

export const imageIndexSchema = z.looseObject({
  schemaVersion: z.literal(2),
  mediaType: z.string().optional(),
  manifests: z.array(descriptorSchema),
});
export type ImageIndex = z.infer<typeof imageIndexSchema>;

/** `manifest.json` of a docker-archive (`docker save`). */
export const archiveManifestSchema = z.array(
  z.looseObject({
    Config: z.string(),
    RepoTags: z.array(z.string()).nullish(),
    Layers: z.array(z.string()),
    Parent: z.string().optional(),
  }),
);
export type ArchiveManifest = z.infer<typeof archiveManifestSchema>;

// ---------------------------------------------------------------------------------------------
// Presentation helpers

/** This host's architecture in Go/OCI terms. */
export function hostArchitecture(): string {
  const arch = os.arch();
  const map: Record<string, string> = {
    x64: 'amd64',
    ia32: '386',
    arm64: 'arm64',
    arm: 'arm',
    s390x: 's390x',
  };
  return map[arch] ?? arch;
}

/**
 * The container config with every field dockerd prints (Go's struct, in its field order), so clients
 * that index into `Config` never meet a missing key.
 */
export function fullContainerConfig(cfg: ContainerConfig | null | undefined): Record<string, unknown> {
  const c = cfg ?? {};
  const out: Record<string, unknown> = {
    Hostname: c.Hostname ?? '',
    Domainname: c.Domainname ?? '',
    User: c.User ?? '',
    AttachStdin: c.AttachStdin ?? false,
    AttachStdout: c.AttachStdout ?? false,
    AttachStderr: c.AttachStderr ?? false,
  };
  if (c.ExposedPorts && Object.keys(c.ExposedPorts).length > 0) out.ExposedPorts = c.ExposedPorts;
  Object.assign(out, {
    Tty: c.Tty ?? false,
    OpenStdin: c.OpenStdin ?? false,
    StdinOnce: c.StdinOnce ?? false,
    Env: c.Env ?? null,
    Cmd: c.Cmd ?? null,
  });
  if (c.Healthcheck) out.Healthcheck = c.Healthcheck;
  if (c.ArgsEscaped) out.ArgsEscaped = true;
  Object.assign(out, {
    Image: c.Image ?? '',
    Volumes: c.Volumes ?? null,
    WorkingDir: c.WorkingDir ?? '',
    Entrypoint: c.Entrypoint ?? null,
  });
  if (c.NetworkDisabled) out.NetworkDisabled = true;
  if (c.MacAddress) out.MacAddress = c.MacAddress;
  out.OnBuild = c.OnBuild ?? null;
  out.Labels = c.Labels ?? null;
  if (c.StopSignal) out.StopSignal = c.StopSignal;
  if (c.StopTimeout !== undefined && c.StopTimeout !== null) out.StopTimeout = c.StopTimeout;
  if (c.Shell) out.Shell = c.Shell;
  return out;
}

// ---------------------------------------------------------------------------------------------
// `--change` (docker import -c, docker commit -c): Dockerfile instructions applied to a config

/** The instructions dockerd accepts in `changes` (`validCommitCommands`). */
const CHANGE_INSTRUCTIONS = new Set([
  'cmd',
  'entrypoint',
  'env',
  'expose',
  'healthcheck',
  'label',
  'onbuild',
  'stopsignal',
  'user',
  'volume',
  'workdir',
]);

/**
 * Applies `changes` (one Dockerfile instruction each) to a copy of `base` and returns it. Unknown or
 * disallowed instructions and malformed arguments → 400, like dockerd.
 */
export function applyChanges(base: ContainerConfig, changes: readonly string[]): ContainerConfig {
  const cfg: ContainerConfig = structuredClone(base);
  let cmdSet = false;
  for (const raw of changes) {
    // A change may span several lines (Dockerfile continuation) or hold several instructions.
    for (const line of logicalLines(raw)) {
      const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(line);
      if (!m) continue;
      const instruction = m[1].toLowerCase();
      const rest = m[2].trim();
      if (!CHANGE_INSTRUCTIONS.has(instruction)) {
        throw new InvalidArgument(`${instruction} is not a valid change command`);
      }
      const env = envMap(cfg.Env);
      switch (instruction) {
        case 'cmd':
          cfg.Cmd = commandLine(rest, cfg.Shell);
          cmdSet = true;
          break;
        case 'entrypoint':
          cfg.Entrypoint = commandLine(rest, cfg.Shell);
          // Dockerfile rule: a new ENTRYPOINT drops an inherited CMD unless CMD is set alongside.
          if (!cmdSet) cfg.Cmd = null;
          break;
        case 'env':
          for (const [key, value] of keyValuePairs('ENV', rest, env)) {
            const list = [...(cfg.Env ?? [])];
            const index = list.findIndex((e) => e.split('=')[0] === key);
            if (index === -1) list.push(`${key}=${value}`);
            else list[index] = `${key}=${value}`;
            cfg.Env = list;
            env.set(key, value);
          }
          break;
        case 'label': {
          const labels = { ...(cfg.Labels ?? {}) };
          for (const [key, value] of keyValuePairs('LABEL', rest, env)) labels[key] = value;
          cfg.Labels = labels;
          break;
        }
        case 'expose': {
          const ports = { ...(cfg.ExposedPorts ?? {}) };
          const words = processWords(rest, env);
          if (words.length === 0) throw new InvalidArgument('EXPOSE requires at least one argument');
          for (const word of words) for (const port of parsePortSpec(word)) ports[port] = {};
          cfg.ExposedPorts = ports;
          break;
        }
        case 'user': {
          const words = processWords(rest, env);
          if (words.length !== 1) throw new InvalidArgument('USER requires exactly one argument');
          cfg.User = words[0];
          break;
        }
        case 'workdir': {
          const words = processWords(rest, env);
          if (words.length !== 1) throw new InvalidArgument('WORKDIR requires exactly one argument');
          const current = cfg.WorkingDir || '/';
          cfg.WorkingDir = posixPath.resolve(current, words[0]);
          break;
        }
        case 'volume': {
          const list = jsonStringArray(rest) ?? processWords(rest, env);
          if (list.length === 0) throw new InvalidArgument('VOLUME requires at least one argument');
          const volumes = { ...(cfg.Volumes ?? {}) };
          for (const v of list) {
            if (v.trim() === '') throw new InvalidArgument('VOLUME specified can not be an empty string');
            volumes[v] = {};
          }
          cfg.Volumes = volumes;
          break;
        }
        case 'stopsignal': {
          const words = processWords(rest, env);
          if (words.length !== 1) throw new InvalidArgument('STOPSIGNAL requires exactly one argument');
          if (!isValidSignal(words[0])) throw new InvalidArgument(`Invalid signal: ${words[0]}`);
          cfg.StopSignal = words[0];
          break;
        }
        case 'onbuild': {
          const trigger = /^(\S+)/.exec(rest)?.[1]?.toUpperCase();
          if (trigger === undefined) throw new InvalidArgument('ONBUILD requires at least one argument');
          if (trigger === 'ONBUILD') {
            throw new InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
          }
          if (trigger === 'FROM' || trigger === 'MAINTAINER') {
            throw new InvalidArgument(`${trigger} isn't allowed as an ONBUILD trigger`);
          }
          cfg.OnBuild = [...(cfg.OnBuild ?? []), rest];
          break;
        }
        case 'healthcheck':
          cfg.Healthcheck = parseHealthcheck(rest);
          break;
      }
    }
  }
  return cfg;
}

/** Joins `\`-continued lines and drops blank lines and `#` comments. */
function logicalLines(text: string): string[] {
  const out: string[] = [];
  let current = '';
  for (const line of text.split(/\r?\n/)) {
    if (current === '' && /^\s*(#|$)/.test(line)) continue;
    if (/\\\s*$/.test(line)) {
      current += line.replace(/\\\s*$/, '');
      continue;
    }
    out.push(current + line);
    current = '';
  }
  if (current.trim() !== '') out.push(current);
  return out;
}

function jsonStringArray(text: string): string[] | null {
  if (!text.startsWith('[')) return null;
  try {
    const value: unknown = JSON.parse(text);
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
  } catch {
    // not JSON: the shell form
  }
  return null;
}

/** CMD/ENTRYPOINT: the JSON (exec) form, else the shell form run through the image's shell. */
function commandLine(text: string, shell: string[] | null | undefined): string[] {
  const json = jsonStringArray(text);
  if (json !== null) return json;
  return [...(shell && shell.length > 0 ? shell : ['/bin/sh', '-c']), text];
}

function envMap(env: string[] | null | undefined): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of env ?? []) {
    const eq = entry.indexOf('=');
    if (eq > 0) map.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return map;
}

/** ENV/LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`. */
function keyValuePairs(name: string, text: string, env: Map<string, string>): Array<[string, string]> {
  if (text === '') throw new InvalidArgument(`${name} requires at least one argument`);
  const rawWords = splitRaw(text);
  if (!rawWords[0].includes('=')) {
    const key = processWord(rawWords[0], env);
    const valueText = text.slice(text.indexOf(rawWords[0]) + rawWords[0].length).trim();
    if (valueText === '') throw new InvalidArgument(`${name} must have two arguments`);
    return [[key, processWord(valueText, env)]];
  }
  const pairs: Array<[string, string]> = [];
  for (const raw of rawWords) {
    const eq = raw.indexOf('=');
    if (eq === -1) {
      throw new InvalidArgument(`Syntax error - can't find = in "${raw}". Must be of the form: name=value`);
    }
    const key = processWord(raw.slice(0, eq), env);
    if (key === '') throw new InvalidArgument(`${name} names can not be blank`);
    pairs.push([key, processWord(raw.slice(eq + 1), env)]);
  }
  return pairs;
}

/** Splits on unquoted whitespace, keeping quotes and escapes in the words. */
function splitRaw(text: string): string[] {
  const words: string[] = [];
  let current = '';
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === null && /\s/.test(c)) {
      if (current !== '') words.push(current);
      current = '';
      continue;
    }
    if (c === '\\' && quote !== "'" && i + 1 < text.length) {
      current += c + text[++i];
      continue;
    }
    if (quote === null && (c === '"' || c === "'")) quote = c;
    else if (c === quote) quote = null;
    current += c;
  }
  if (quote !== null)
    throw new InvalidArgument(`unexpected end of statement while looking for matching ${quote}`);
  if (current !== '') words.push(current);
  return words;
}

/** Dockerfile word processing: quotes removed, escapes applied, `$VAR`/`${VAR}` expanded. */
export function processWord(text: string, env: Map<string, string>): string {
  return lex(text, env, false)[0] ?? '';
}

export function processWords(text: string, env: Map<string, string>): string[] {
  return lex(text, env, true);
}

function lex(text: string, env: Map<string, string>, splitOnSpace: boolean): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let i = 0;
  const expand = (): string => {
    // at text[i] === '$'
    const next = text[i + 1];
    if (next === '{') {
      const end = text.indexOf('}', i + 2);
      if (end === -1) throw new InvalidArgument(`missing '}' in ${JSON.stringify(text)}`);
      const body = text.slice(i + 2, end);
      i = end + 1;
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])([\s\S]*))?$/.exec(body);
      if (!m) throw new InvalidArgument(`bad substitution: \${${body}}`);
      const value = env.get(m[1]);
      if (m[2] === '-') return value === undefined || value === '' ? m[3] : value;
      if (m[2] === '+') return value === undefined || value === '' ? '' : m[3];
      return value ?? '';
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
    if (!m) {
      i++;
      return '$';
    }
    i += 1 + m[0].length;
    return env.get(m[0]) ?? '';
  };
  while (i < text.length) {
    const c = text[i];
    if (splitOnSpace && /\s/.test(c)) {
      if (inWord) words.push(current);
      current = '';
      inWord = false;
      i++;
      continue;
    }
    inWord = true;
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end === -1) throw new InvalidArgument("unexpected end of statement while looking for matching '");
      current += text.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length && '"\\$'.includes(text[i + 1])) {
          current += text[i + 1];
          i += 2;
        } else if (text[i] === '$') current += expand();
        else current += text[i++];
      }
      if (i >= text.length)
        throw new InvalidArgument('unexpected end of statement while looking for matching "');
      i++;
    } else if (c === '\\' && i + 1 < text.length) {
      current += text[i + 1];
      i += 2;
    } else if (c === '$') current += expand();
    else {
      current += c;
      i++;
    }
  }
  if (inWord) words.push(current);
  return words;
}

/** `80`, `80/udp`, `8000-8002/tcp` → `80/tcp`-style keys. */
export function parsePortSpec(spec: string): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/(\w+))?$/.exec(spec);
  if (!m) throw new InvalidArgument(`Invalid containerPort: ${spec}`);
  const proto = (m[3] ?? 'tcp').toLowerCase();
  if (!['tcp', 'udp', 'sctp'].includes(proto)) throw new InvalidArgument(`Invalid proto: ${proto}`);
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start < 1 || start > 65535 || end < start || end > 65535) {
    throw new InvalidArgument(`Invalid containerPort: ${spec}`);
  }
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

function isValidSignal(value: string): boolean {
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    return n >= 1 && n <= 64;
  }
  const name = value.toUpperCase().startsWith('SIG') ? value.toUpperCase() : `SIG${value.toUpperCase()}`;
  if (/^SIGRTM(IN|AX)([+-]\d+)?$/.test(name)) return true;
  return name in os.constants.signals;
}

/** Go `time.ParseDuration` subset: `1h2m3.5s`, `300ms`, `10us`, `0`. Returns nanoseconds. */
export function parseGoDuration(text: string): number {
  if (text === '0') return 0;
  const unitNs: Record<string, number> = { ns: 1, us: 1e3, µs: 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let consumed = 0;
  let negative = false;
  let body = text;
  if (body.startsWith('-') || body.startsWith('+')) {
    negative = body.startsWith('-');
    body = body.slice(1);
  }
  re.lastIndex = 0;
  for (let m = re.exec(body); m !== null; m = re.exec(body)) {
    total += Number(m[1]) * unitNs[m[2]];
    consumed = re.lastIndex;
  }
  if (body === '' || consumed !== body.length) throw new InvalidArgument(`time: invalid duration "${text}"`);
  return Math.round(negative ? -total : total);
}

function parseHealthcheck(text: string): HealthConfig {
  let rest = text;
  const health: HealthConfig = {};
  for (;;) {
    const m = /^--([a-z-]+)=(\S*)\s*/.exec(rest);
    if (!m) break;
    rest = rest.slice(m[0].length);
    const [, flag, value] = m;
    const duration = (): number => {
      const ns = parseGoDuration(value);
      if (ns !== 0 && ns < 1e6) throw new InvalidArgument(`Interval "${flag}" cannot be less than 1ms`);
      if (ns < 0) throw new InvalidArgument(`Interval "${flag}" cannot be negative`);
      return ns;
    };
    if (flag === 'interval') health.Interval = duration();
    else if (flag === 'timeout') health.Timeout = duration();
    else if (flag === 'start-period') health.StartPeriod = duration();
    else if (flag === 'start-interval') health.StartInterval = duration();
    else if (flag === 'retries') {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 0)
        throw new InvalidArgument(`--retries must be a non-negative integer`);
      health.Retries = n;
    } else throw new InvalidArgument(`Unknown flag: ${flag}`);
  }
  const m = /^(\S+)\s*([\s\S]*)$/.exec(rest);
  if (!m) throw new InvalidArgument('HEALTHCHECK requires an argument');
  const kind = m[1].toUpperCase();
  if (kind === 'NONE') {
    if (m[2].trim() !== '' || Object.keys(health).length > 0) {
      throw new InvalidArgument('HEALTHCHECK NONE takes no arguments');
    }
    return { Test: ['NONE'] };
  }
  if (kind !== 'CMD') throw new InvalidArgument(`Unknown type "${kind}" in HEALTHCHECK (try CMD)`);
  const args = m[2].trim();
  if (args === '') throw new InvalidArgument('Missing command after HEALTHCHECK CMD');
  const json = jsonStringArray(args);
  health.Test = json !== null ? ['CMD', ...json] : ['CMD-SHELL', args];
  return health;
}

/** Rejects an unknown digest-looking value early with a readable message. */
export function requireDigest(value: string, what: string): Digest {
  if (!isDigest(value)) throw new InvalidArgument(`invalid ${what}: ${JSON.stringify(value)}`);
  return value;
}
