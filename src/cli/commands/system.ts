import * as os from 'node:os';
import type { EngineEvent } from '../api-types.js';
import type { CommandHandler } from '../commands.js';
import { CliError } from '../errors.js';
import { binarySize, formatTimestampNano, parseTimestampArg } from '../format.js';
import { compileFormat, compileObjectFormat } from '../listing.js';
import { textLines } from '../stream.js';
import { encodeFilters } from './shared.js';

/** version, info, events. */

const CLIENT_VERSION = '0.1.0';

function goArch(): string {
  return process.arch === 'x64' ? 'amd64' : process.arch === 'ia32' ? '386' : process.arch;
}

interface VersionComponent {
  Name?: string;
  Version?: string;
  Details?: Record<string, string> | null;
}

interface ServerVersion {
  Version?: string;
  ApiVersion?: string;
  MinAPIVersion?: string;
  GitCommit?: string;
  GoVersion?: string;
  Os?: string;
  Arch?: string;
  KernelVersion?: string;
  BuildTime?: string;
  Experimental?: boolean;
  Components?: VersionComponent[] | null;
}

function pad(label: string, width: number): string {
  return `${label}:`.padEnd(width);
}

export const versionCommand: CommandHandler = async (ctx) => {
  const format = ctx.flags.string('format');
  const template = format ? compileObjectFormat(format) : undefined;
  let server: ServerVersion | undefined;
  let serverError: unknown;
  let apiVersion = '1.41';
  try {
    const client = await ctx.client();
    server = await client.json<ServerVersion>('GET', '/version');
    apiVersion = client.apiVersion;
  } catch (err) {
    serverError = err;
  }
  const clientInfo = {
    Version: CLIENT_VERSION,
    ApiVersion: apiVersion,
    DefaultAPIVersion: '1.41',
    NodeVersion: process.version,
    Os: 'linux',
    Arch: goArch(),
  };
  if (template) {
    process.stdout.write(`${template.execute({ Client: clientInfo, Server: server ?? null })}\n`);
  } else {
    let out =
      'Client:\n' +
      ` ${pad('Version', 18)}${CLIENT_VERSION}\n` +
      ` ${pad('API version', 18)}${apiVersion}\n` +
      ` ${pad('Node version', 18)}${process.version}\n` +
      ` ${pad('OS/Arch', 18)}linux/${goArch()}\n`;
    if (server) {
      out +=
        '\nServer:\n Engine:\n' +
        `  ${pad('Version', 17)}${server.Version ?? ''}\n` +
        `  ${pad('API version', 17)}${server.ApiVersion ?? ''} (minimum version ${server.MinAPIVersion ?? ''})\n` +
        (server.GoVersion ? `  ${pad('Go version', 17)}${server.GoVersion}\n` : '') +
        `  ${pad('Git commit', 17)}${server.GitCommit ?? ''}\n` +
        `  ${pad('Built', 17)}${server.BuildTime ?? ''}\n` +
        `  ${pad('OS/Arch', 17)}${server.Os ?? ''}/${server.Arch ?? ''}\n` +
        `  ${pad('Experimental', 17)}${server.Experimental === true}\n`;
      for (const c of server.Components ?? []) {
        if (c.Name === 'Engine') continue;
        out += ` ${c.Name ?? ''}:\n  ${pad('Version', 17)}${c.Version ?? ''}\n`;
        if (c.Details?.GitCommit !== undefined) out += `  ${pad('GitCommit', 17)}${c.Details.GitCommit}\n`;
      }
    }
    process.stdout.write(out);
  }
  if (serverError) throw serverError;
  return 0;
};

interface InfoResponse {
  ID?: string;
  Name?: string;
  Containers?: number;
  ContainersRunning?: number;
  ContainersPaused?: number;
  ContainersStopped?: number;
  Images?: number;
  ServerVersion?: string;
  Driver?: string;
  DriverStatus?: [string, string][] | null;
  LoggingDriver?: string;
  CgroupDriver?: string;
  CgroupVersion?: string;
  Plugins?: { Volume?: string[] | null; Network?: string[] | null; Log?: string[] | null } | null;
  Swarm?: { LocalNodeState?: string } | null;
  Runtimes?: Record<string, unknown> | null;
  DefaultRuntime?: string;
  SecurityOptions?: string[] | null;
  KernelVersion?: string;
  OperatingSystem?: string;
  OSType?: string;
  Architecture?: string;
  NCPU?: number;
  MemTotal?: number;
  DockerRootDir?: string;
  Debug?: boolean;
  ExperimentalBuild?: boolean;
  LiveRestoreEnabled?: boolean;
  Labels?: string[] | null;
  RegistryConfig?: { InsecureRegistryCIDRs?: string[] | null } | null;
  Warnings?: string[] | null;
}

export const infoCommand: CommandHandler = async (ctx) => {
  const format = ctx.flags.string('format');
  const template = format ? compileObjectFormat(format) : undefined;
  const client = await ctx.client();
  const info = await client.json<InfoResponse>('GET', '/info');
  if (template) {
    process.stdout.write(`${template.execute({ ...info, ClientInfo: { Version: CLIENT_VERSION } })}\n`);
    return 0;
  }
  const lines: string[] = [
    'Client:',
    ` Version:    ${CLIENT_VERSION}`,
    ' Debug Mode: false',
    '',
    'Server:',
    ` Containers: ${info.Containers ?? 0}`,
    `  Running: ${info.ContainersRunning ?? 0}`,
    `  Paused: ${info.ContainersPaused ?? 0}`,
    `  Stopped: ${info.ContainersStopped ?? 0}`,
    ` Images: ${info.Images ?? 0}`,
    ` Server Version: ${info.ServerVersion ?? ''}`,
    ` Storage Driver: ${info.Driver ?? ''}`,
    ...(info.DriverStatus ?? []).map(([k, v]) => `  ${k}: ${v}`),
    ` Logging Driver: ${info.LoggingDriver ?? ''}`,
    ` Cgroup Driver: ${info.CgroupDriver ?? ''}`,
    ` Cgroup Version: ${info.CgroupVersion ?? ''}`,
    ' Plugins:',
    `  Volume: ${(info.Plugins?.Volume ?? []).join(' ')}`,
    `  Network: ${(info.Plugins?.Network ?? []).join(' ')}`,
    `  Log: ${(info.Plugins?.Log ?? []).join(' ')}`,
    ` Swarm: ${info.Swarm?.LocalNodeState ?? 'inactive'}`,
    ` Runtimes: ${Object.keys(info.Runtimes ?? {})
      .sort()
      .join(' ')}`,
    ` Default Runtime: ${info.DefaultRuntime ?? ''}`,
  ];
  if ((info.SecurityOptions ?? []).length > 0) {
    lines.push(' Security Options:');
    for (const opt of info.SecurityOptions ?? []) lines.push(`  ${opt.replace(/^name=/, '')}`);
  }
  lines.push(
    ` Kernel Version: ${info.KernelVersion ?? ''}`,
    ` Operating System: ${info.OperatingSystem ?? ''}`,
    ` OSType: ${info.OSType ?? ''}`,
    ` Architecture: ${info.Architecture ?? ''}`,
    ` CPUs: ${info.NCPU ?? 0}`,
    ` Total Memory: ${binarySize(info.MemTotal ?? 0)}`,
    ` Name: ${info.Name ?? os.hostname()}`,
    ` ID: ${info.ID ?? ''}`,
    ` Root Dir: ${info.DockerRootDir ?? ''}`,
    ` Debug Mode: ${info.Debug === true}`,
    ` Experimental: ${info.ExperimentalBuild === true}`,
  );
  if ((info.Labels ?? []).length > 0) {
    lines.push(' Labels:');
    for (const l of info.Labels ?? []) lines.push(`  ${l}`);
  }
  if ((info.RegistryConfig?.InsecureRegistryCIDRs ?? []).length > 0) {
    lines.push(' Insecure Registries:');
    for (const r of info.RegistryConfig?.InsecureRegistryCIDRs ?? []) lines.push(`  ${r}`);
  }
  lines.push(` Live Restore Enabled: ${info.LiveRestoreEnabled === true}`, '');
  process.stdout.write(`${lines.join('\n')}\n`);
  for (const w of info.Warnings ?? []) process.stderr.write(`${w}\n`);
  return 0;
};

/** docker's default event line: time, type, action, actor id and sorted attributes. */
export function formatEventLine(event: EngineEvent, timeNano?: bigint): string {
  const nanos =
    timeNano ??
    (event.timeNano ? BigInt(Math.round(event.timeNano)) : BigInt(event.time ?? 0) * 1_000_000_000n);
  let line = nanos > 0n ? `${formatTimestampNano(nanos)} ` : '';
  line += `${event.Type ?? ''} ${event.Action ?? event.status ?? ''} ${event.Actor?.ID ?? event.id ?? ''}`;
  const attrs = event.Actor?.Attributes ?? {};
  const keys = Object.keys(attrs).sort();
  if (keys.length > 0) line += ` (${keys.map((k) => `${k}=${attrs[k]}`).join(', ')})`;
  return `${line}\n`;
}

export const eventsCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  let format = flags.string('format');
  if (format === 'json') format = '{{json .}}';
  const rawJson = format !== undefined && format.trim() === '{{json .}}';
  const template =
    format && !rawJson ? compileFormat(format.replaceAll('\\t', '\t').replaceAll('\\n', '\n')) : undefined;
  const timeArg = (name: string): string | undefined => {
    const value = flags.string(name);
    if (value === undefined) return undefined;
    try {
      return parseTimestampArg(value);
    } catch (err) {
      throw new CliError(`invalid value for "--${name}": ${(err as Error).message}`);
    }
  };
  const client = await ctx.client();
  const res = await client.request('GET', '/events', {
    query: { filters: encodeFilters(flags.list('filter')), since: timeArg('since'), until: timeArg('until') },
  });
  for await (const line of textLines(res)) {
    if (rawJson) {
      // The daemon's own JSON keeps timeNano exact (it exceeds a double's precision).
      process.stdout.write(`${line}\n`);
      continue;
    }
    const event = JSON.parse(line) as EngineEvent;
    if (template) {
      process.stdout.write(`${template.execute(event)}\n`);
      continue;
    }
    const exactNano = /"timeNano":\s*(\d+)/.exec(line)?.[1];
    process.stdout.write(formatEventLine(event, exactNano ? BigInt(exactNano) : undefined));
  }
  return 0;
};
