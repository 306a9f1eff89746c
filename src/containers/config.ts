import * as os from 'node:os';
import { InvalidArgument } from '../common/errors.js';
import type { ContainerConfig, CreateBody } from './types.js';

/** The parts of an image config that a container inherits (Docker's `Config` in the image). */
export interface ImageRunConfig {
  Env?: string[] | null;
  Cmd?: string[] | null;
  Entrypoint?: string[] | null;
  WorkingDir?: string | null;
  User?: string | null;
  ExposedPorts?: Record<string, unknown> | null;
  Labels?: Record<string, string> | null;
  Volumes?: Record<string, unknown> | null;
  StopSignal?: string | null;
  Healthcheck?: unknown;
  OnBuild?: string[] | null;
  Shell?: string[] | null;
}

const NAME_RE = /^\/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export function validateContainerName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new InvalidArgument(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
  }
  return name.replace(/^\//, '');
}

function asList(value: string[] | string | null | undefined): string[] | null {
  if (value === null || value === undefined) return null;
  return typeof value === 'string' ? [value] : value;
}

function envKey(entry: string): string {
  const i = entry.indexOf('=');
  return i < 0 ? entry : entry.slice(0, i);
}

/** Image env first, request env overriding by key (Docker's merge). */
export function mergeEnv(imageEnv: string[], requestEnv: string[]): string[] {
  const out = [...imageEnv];
  for (const entry of requestEnv) {
    if (!entry.includes('=')) {
      // `-e NAME` without a value means "take it from the client's environment"; the CLI resolves it.
      continue;
    }
    const key = envKey(entry);
    const i = out.findIndex((e) => envKey(e) === key);
    if (i >= 0) out[i] = entry;
    else out.push(entry);
  }
  return out;
}

export interface MergedConfig {
  config: ContainerConfig & {
    Env: string[];
    Cmd: string[] | null;
    Entrypoint: string[] | null;
    Labels: Record<string, string>;
  };
  path: string;
  args: string[];
}

/** Merges a create request with the image's config, as dockerd does. */
export function mergeCreateConfig(
  body: CreateBody,
  image: ImageRunConfig,
  id: string,
  imageRef: string,
): MergedConfig {
  const requestEntrypoint = asList(body.Entrypoint);
  const requestCmd = asList(body.Cmd);
  let entrypoint: string[] | null;
  let cmd: string[] | null;
  if (requestEntrypoint !== null) {
    // `--entrypoint ""` resets the image's entrypoint; an explicit entrypoint drops the image's CMD.
    entrypoint = requestEntrypoint.length === 1 && requestEntrypoint[0] === '' ? null : requestEntrypoint;
    cmd = requestCmd && requestCmd.length > 0 ? requestCmd : null;
  } else {
    entrypoint = image.Entrypoint && image.Entrypoint.length > 0 ? image.Entrypoint : null;
    cmd = requestCmd && requestCmd.length > 0 ? requestCmd : (image.Cmd ?? null);
  }
  const argv = [...(entrypoint ?? []), ...(cmd ?? [])];
  if (argv.length === 0) throw new InvalidArgument('No command specified');
  const labels = { ...(image.Labels ?? {}), ...(body.Labels ?? {}) };
  const config: MergedConfig['config'] = {
    ...body,
    Hostname: body.Hostname || id.slice(0, 12),
    Domainname: body.Domainname ?? '',
    User: body.User || image.User || '',
    AttachStdin: body.AttachStdin ?? false,
    AttachStdout: body.AttachStdout ?? false,
    AttachStderr: body.AttachStderr ?? false,
    Tty: body.Tty ?? false,
    OpenStdin: body.OpenStdin ?? false,
    StdinOnce: body.StdinOnce ?? false,
    Env: mergeEnv(image.Env ?? [], body.Env ?? []),
    Cmd: cmd,
    Image: imageRef,
    Volumes: body.Volumes && Object.keys(body.Volumes).length > 0 ? body.Volumes : (image.Volumes ?? null),
    WorkingDir: body.WorkingDir || image.WorkingDir || '',
    Entrypoint: entrypoint,
    OnBuild: image.OnBuild ?? null,
    Labels: labels,
    ...(body.ExposedPorts || image.ExposedPorts
      ? { ExposedPorts: { ...(image.ExposedPorts ?? {}), ...(body.ExposedPorts ?? {}) } }
      : {}),
    ...(body.StopSignal || image.StopSignal
      ? { StopSignal: body.StopSignal || image.StopSignal || undefined }
      : {}),
    ...(body.Healthcheck || image.Healthcheck
      ? { Healthcheck: (body.Healthcheck ?? image.Healthcheck) as ContainerConfig['Healthcheck'] }
      : {}),
  };
  delete (config as Record<string, unknown>).HostConfig;
  delete (config as Record<string, unknown>).NetworkingConfig;
  return { config, path: argv[0], args: argv.slice(1) };
}

/** Signal names (`KILL`, `SIGKILL`) or numbers → signal number; 400 for anything else. */
export function parseSignal(value: string | null | undefined, fallback: number): number {
  if (value === null || value === undefined || value === '') return fallback;
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n < 1 || n > 64) throw new InvalidArgument(`Invalid signal: ${value}`);
    return n;
  }
  const name = value.toUpperCase().startsWith('SIG') ? value.toUpperCase() : `SIG${value.toUpperCase()}`;
  const n = (os.constants.signals as Record<string, number>)[name];
  if (n === undefined) throw new InvalidArgument(`Invalid signal: ${value}`);
  return n;
}

/** Shell-quotes a command line the way `docker ps` shows it. */
export function quoteCommand(argv: string[]): string {
  return argv
    .map((a) => (a === '' ? "''" : /[^\w@%+=:,./-]/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a))
    .join(' ');
}
