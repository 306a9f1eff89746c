import * as net from 'node:net';
import { escapePath } from '../client.js';
import type { CommandHandler } from '../commands.js';
import { CliError } from '../errors.js';
import type { FlagValues } from '../flags.js';
import { shortId } from '../format.js';
import { compileFormat, type Row, renderRows } from '../listing.js';
import {
  deletedSection,
  goTimeString,
  inspectEach,
  keyValueMap,
  labelMap,
  naturalCompare,
  removeEach,
} from './helpers.js';
import { confirm, encodeFilters } from './shared.js';

/** `network create|ls|inspect|rm|connect|disconnect|prune` (engine-api.md §4 Networks). */

/** pflag's `strings` flags: each value is a comma-separated list. */
function csvList(flags: FlagValues, name: string): string[] {
  return flags.list(name).flatMap((v) => v.split(','));
}

export interface IpamConfig {
  Subnet: string;
  IPRange?: string;
  Gateway?: string;
  AuxiliaryAddresses?: Record<string, string>;
}

export interface NetworkCreateBody {
  Driver: string;
  Scope: string;
  EnableIPv4?: boolean;
  EnableIPv6?: boolean;
  IPAM: { Driver: string; Options: Record<string, string>; Config: IpamConfig[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigOnly: boolean;
  ConfigFrom: { Network: string } | null;
  Options: Record<string, string>;
  Labels: Record<string, string>;
  Name: string;
  CheckDuplicate: boolean;
}

interface Cidr {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

function parseCidr(value: string): Cidr | undefined {
  const m = /^(.+)\/(\d{1,3})$/.exec(value);
  if (!m) return undefined;
  const kind = net.isIP(m[1]);
  const prefix = Number(m[2]);
  if (kind === 0 || prefix > (kind === 4 ? 32 : 128)) return undefined;
  return { address: m[1], prefix, family: kind === 4 ? 'ipv4' : 'ipv6' };
}

/** docker's subnetMatches: whether `data` (an address or the address of a CIDR) lies in `subnet`. */
function subnetMatches(subnet: string, data: string): boolean {
  const s = parseCidr(subnet);
  if (!s) throw new CliError(`invalid subnet: invalid CIDR address: ${subnet}`);
  let ip = data;
  if (data.includes('/')) {
    const d = parseCidr(data);
    if (!d) throw new CliError(`invalid CIDR address: ${data}`);
    ip = d.address;
  }
  const kind = net.isIP(ip);
  if (kind === 0 || (kind === 4) !== (s.family === 'ipv4')) return false;
  const list = new net.BlockList();
  list.addSubnet(s.address, s.prefix, s.family);
  return list.check(ip, s.family);
}

/** `--subnet/--ip-range/--gateway/--aux-address` → IPAM.Config, with the docker CLI's checks. */
export function ipamConfig(
  subnets: string[],
  ranges: string[],
  gateways: string[],
  aux: string[],
): IpamConfig[] {
  if (subnets.length < ranges.length || subnets.length < gateways.length) {
    throw new CliError('every ip-range or gateway must have a corresponding subnet');
  }
  const configs = new Map<string, IpamConfig & { AuxiliaryAddresses: Record<string, string> }>();
  for (const s of subnets) {
    for (const k of configs.keys()) {
      if (subnetMatches(s, k) || subnetMatches(k, s)) {
        throw new CliError('multiple overlapping subnet configuration is not supported');
      }
    }
    configs.set(s, { Subnet: s, AuxiliaryAddresses: {} });
  }
  const place = (value: string, what: 'IPRange' | 'Gateway', label: string): void => {
    let match = false;
    for (const s of subnets) {
      if (!subnetMatches(s, value)) continue;
      const config = configs.get(s)!;
      const existing = config[what];
      if (existing) {
        throw new CliError(
          what === 'IPRange'
            ? `cannot configure multiple ranges (${value}, ${existing}) on the same subnet (${s})`
            : `cannot configure multiple gateways (${value}, ${existing}) for the same subnet (${s})`,
        );
      }
      config[what] = value;
      match = true;
    }
    if (!match) throw new CliError(`no matching subnet for ${label} ${value}`);
  };
  for (const r of ranges) place(r, 'IPRange', 'range');
  for (const g of gateways) place(g, 'Gateway', 'gateway');
  for (const [key, address] of Object.entries(keyValueMap(aux))) {
    let match = false;
    for (const s of subnets) {
      if (!subnetMatches(s, address)) continue;
      configs.get(s)!.AuxiliaryAddresses[key] = address;
      match = true;
    }
    if (!match) throw new CliError(`no matching subnet for aux-address ${address}`);
  }
  return [...configs.values()].map(({ AuxiliaryAddresses, ...rest }) =>
    Object.keys(AuxiliaryAddresses).length > 0 ? { ...rest, AuxiliaryAddresses } : rest,
  );
}

/** The `POST /networks/create` body exactly as docker CLI 28 builds it. */
export function networkCreateBody(flags: FlagValues, name: string): NetworkCreateBody {
  const configFrom = flags.string('config-from');
  return {
    Driver: flags.string('driver') ?? 'bridge',
    Scope: flags.string('scope') ?? '',
    ...(flags.has('ipv4') ? { EnableIPv4: flags.bool('ipv4') } : {}),
    ...(flags.has('ipv6') ? { EnableIPv6: flags.bool('ipv6') } : {}),
    IPAM: {
      Driver: flags.string('ipam-driver') ?? 'default',
      Options: keyValueMap(flags.list('ipam-opt')),
      Config: ipamConfig(
        csvList(flags, 'subnet'),
        csvList(flags, 'ip-range'),
        csvList(flags, 'gateway'),
        flags.list('aux-address'),
      ),
    },
    Internal: flags.bool('internal'),
    Attachable: flags.bool('attachable'),
    Ingress: flags.bool('ingress'),
    ConfigOnly: flags.bool('config-only'),
    ConfigFrom: configFrom ? { Network: configFrom } : null,
    Options: keyValueMap(flags.list('opt')),
    Labels: labelMap(flags.list('label')),
    Name: name,
    CheckDuplicate: true,
  };
}

export const networkCreateCommand: CommandHandler = async (ctx) => {
  const body = networkCreateBody(ctx.flags, ctx.args[0]);
  const client = await ctx.client();
  const res = await client.json<{ Id: string; Warning?: string }>('POST', '/networks/create', { json: body });
  if (res.Warning) process.stderr.write(`${res.Warning}\n`);
  process.stdout.write(`${res.Id}\n`);
  return 0;
};

export interface NetworkSummary {
  Name?: string;
  Id?: string;
  Created?: string;
  Scope?: string;
  Driver?: string;
  EnableIPv4?: boolean;
  EnableIPv6?: boolean;
  Internal?: boolean;
  Labels?: Record<string, string> | null;
}

/** The fields `network ls --format` can use, named as docker's network formatter names them. */
export function networkRow(n: NetworkSummary, truncate: boolean): Row {
  const labels = n.Labels ?? {};
  return {
    CreatedAt: goTimeString(n.Created),
    Driver: n.Driver ?? '',
    ID: truncate ? shortId(n.Id ?? '') : (n.Id ?? ''),
    IPv4: String(n.EnableIPv4 === true),
    IPv6: String(n.EnableIPv6 === true),
    Internal: String(n.Internal === true),
    Label: (name: unknown) => labels[String(name)] ?? '',
    Labels: Object.keys(labels)
      .sort()
      .map((k) => `${k}=${labels[k]}`)
      .join(','),
    Name: n.Name ?? '',
    Scope: n.Scope ?? '',
  };
}

const NETWORK_HEADERS: Record<string, string> = {
  ID: 'NETWORK ID',
  Name: 'NAME',
  Driver: 'DRIVER',
  Scope: 'SCOPE',
  IPv4: 'IPV4',
  IPv6: 'IPV6',
  Internal: 'INTERNAL',
  Labels: 'LABELS',
  CreatedAt: 'CREATED AT',
};

export const networkLsCommand: CommandHandler = async (ctx) => {
  const { flags } = ctx;
  const format = flags.string('format');
  if (format) compileFormat(format.replace(/^table/, ''));
  const client = await ctx.client();
  const list = await client.json<NetworkSummary[] | null>('GET', '/networks', {
    query: { filters: encodeFilters(flags.list('filter')) },
  });
  const sorted = [...(list ?? [])].sort((a, b) => naturalCompare(a.Name ?? '', b.Name ?? ''));
  const rows = sorted.map((n) => networkRow(n, !flags.bool('no-trunc')));
  process.stdout.write(
    renderRows(rows, {
      format,
      defaultTable: 'table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}',
      headers: NETWORK_HEADERS,
      quiet: flags.bool('quiet'),
      quietFormat: '{{.ID}}',
    }),
  );
  return 0;
};

export const networkInspectCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return inspectEach(client, ctx.args, (n) => `/networks/${escapePath(n)}`, ctx.flags.string('format'), {
    verbose: ctx.flags.bool('verbose') || undefined,
  });
};

export const networkRmCommand: CommandHandler = async (ctx) => {
  const client = await ctx.client();
  return removeEach(
    ctx.args,
    async (name) => {
      // docker looks the network up first (to warn about swarm ingress networks), then removes it.
      await client.json<NetworkSummary>('GET', `/networks/${escapePath(name)}`).catch(() => undefined);
      await client.call('DELETE', `/networks/${escapePath(name)}`);
    },
    ctx.flags.bool('force'),
  );
};

/** The endpoint settings of `network connect`, field for field as docker CLI 28 sends them. */
export function connectBody(flags: FlagValues, container: string): Record<string, unknown> {
  const ipam: Record<string, unknown> = {};
  if (flags.string('ip')) ipam.IPv4Address = flags.string('ip');
  if (flags.string('ip6')) ipam.IPv6Address = flags.string('ip6');
  if (csvList(flags, 'link-local-ip').length > 0) ipam.LinkLocalIPs = csvList(flags, 'link-local-ip');
  const links = flags.list('link');
  return {
    Container: container,
    EndpointConfig: {
      IPAMConfig: ipam,
      Links: links.length > 0 ? links : null,
      Aliases: csvList(flags, 'alias'),
      MacAddress: '',
      DriverOpts: keyValueMap(csvList(flags, 'driver-opt')),
      GwPriority: flags.int('gw-priority') ?? 0,
      NetworkID: '',
      EndpointID: '',
      Gateway: '',
      IPAddress: '',
      IPPrefixLen: 0,
      IPv6Gateway: '',
      GlobalIPv6Address: '',
      GlobalIPv6PrefixLen: 0,
      DNSNames: null,
    },
  };
}

export const networkConnectCommand: CommandHandler = async (ctx) => {
  const [network, container] = ctx.args;
  const client = await ctx.client();
  await client.call('POST', `/networks/${escapePath(network)}/connect`, {
    json: connectBody(ctx.flags, container),
  });
  return 0;
};

export const networkDisconnectCommand: CommandHandler = async (ctx) => {
  const [network, container] = ctx.args;
  const client = await ctx.client();
  await client.call('POST', `/networks/${escapePath(network)}/disconnect`, {
    json: { Container: container, Force: ctx.flags.bool('force') },
  });
  return 0;
};

export const networkPruneCommand: CommandHandler = async (ctx) => {
  if (
    !ctx.flags.bool('force') &&
    !(await confirm('WARNING! This will remove all custom networks not used by at least one container.'))
  ) {
    return 0;
  }
  const client = await ctx.client();
  const report = await client.json<{ NetworksDeleted?: string[] | null }>('POST', '/networks/prune', {
    query: { filters: encodeFilters(ctx.flags.list('filter')) },
  });
  process.stdout.write(deletedSection('Deleted Networks', report?.NetworksDeleted));
  return 0;
};
