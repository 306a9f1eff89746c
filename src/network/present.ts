import type { ContainerRecord } from '../containers/types.js';
import { parsePortKey } from './ports.js';
import { endpointsConfigOf, type NetworkService, networkModeOf } from './service.js';
import type { NetworkRecord } from './store.js';

/** Engine API shapes of networks and of a container's network settings (§4, §5.1 of engine-api.md). */
export function inspectNetwork(
  svc: NetworkService,
  n: NetworkRecord,
  containerName: (id: string) => string,
  withContainers = true,
): Record<string, unknown> {
  const containers: Record<string, unknown> = {};
  if (withContainers) {
    for (const e of svc.activeEndpoints(n.id)) {
      containers[e.containerId] = {
        Name: containerName(e.containerId),
        EndpointID: e.endpointId,
        MacAddress: e.mac,
        IPv4Address: `${e.ip}/${e.prefixLen}`,
        IPv6Address: '',
      };
    }
  }
  return {
    Name: n.name,
    Id: n.id,
    Created: n.created,
    Scope: 'local',
    Driver: n.driver,
    EnableIPv6: n.enableIPv6,
    IPAM: n.ipam,
    Internal: n.internal,
    Attachable: n.attachable,
    Ingress: n.ingress,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: containers,
    Options: n.options,
    Labels: n.labels,
  };
}

/** An endpoint with every field at its zero value, as dockerd shows one not (yet) attached. */
export function emptyEndpoint(): Record<string, unknown> {
  return {
    IPAMConfig: null,
    Links: null,
    Aliases: null,
    NetworkID: '',
    EndpointID: '',
    Gateway: '',
    IPAddress: '',
    IPPrefixLen: 0,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    MacAddress: '',
    DriverOpts: null,
  };
}

/** NetworkSettings.Networks of a container: configured networks, with addresses while it runs. */
export function containerNetworks(
  svc: NetworkService,
  r: ContainerRecord,
): Record<string, Record<string, unknown>> {
  const mode = networkModeOf(r);
  if (mode.kind === 'container') return {};
  const out: Record<string, Record<string, unknown>> = {};
  const live = svc.endpointsOf(r.id);
  for (const [name, settings] of Object.entries(endpointsConfigOf(r))) {
    const network = svc.find(settings.NetworkID ?? name) ?? svc.find(name);
    const e = network ? live.find((x) => x.networkId === network.id) : undefined;
    const aliases = settings.Aliases && settings.Aliases.length > 0 ? [...settings.Aliases] : null;
    out[name] = {
      ...emptyEndpoint(),
      IPAMConfig: settings.IPAMConfig ?? null,
      Links: settings.Links ?? null,
      Aliases:
        e && network && !network.predefined ? [...new Set([r.id.slice(0, 12), ...(aliases ?? [])])] : aliases,
      NetworkID: network?.id ?? settings.NetworkID ?? '',
      ...(e
        ? {
            EndpointID: e.endpointId,
            Gateway: e.gateway,
            IPAddress: e.ip,
            IPPrefixLen: e.prefixLen,
            MacAddress: e.mac,
          }
        : {}),
    };
  }
  return out;
}

/** `{"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"}],"5000/tcp":null}` (running containers). */
export function portMap(svc: NetworkService, r: ContainerRecord, running: boolean): Record<string, unknown> {
  if (!running) return {};
  const out: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  const mode = networkModeOf(r);
  if (mode.kind !== 'bridge') return out;
  for (const key of Object.keys(r.config.ExposedPorts ?? {})) {
    const { port, protocol } = parsePortKey(key);
    out[`${port}/${protocol}`] = null;
  }
  for (const m of svc.portsOf(r.id)) {
    const key = `${m.containerPort}/${m.protocol}`;
    const list = out[key] ?? [];
    list.push({ HostIp: m.hostIp === '' ? '0.0.0.0' : m.hostIp, HostPort: String(m.hostPort) });
    out[key] = list;
  }
  return out;
}

/** The `Ports` list of `docker ps`. */
export function portList(
  svc: NetworkService,
  r: ContainerRecord,
  running: boolean,
): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  const published = new Set<string>();
  if (running) {
    for (const m of svc.portsOf(r.id)) {
      published.add(`${m.containerPort}/${m.protocol}`);
      out.push({
        IP: m.hostIp === '' ? '0.0.0.0' : m.hostIp,
        PrivatePort: m.containerPort,
        PublicPort: m.hostPort,
        Type: m.protocol,
      });
    }
  }
  for (const key of Object.keys(r.config.ExposedPorts ?? {})) {
    const { port, protocol } = parsePortKey(key);
    if (!published.has(`${port}/${protocol}`)) out.push({ PrivatePort: port, Type: protocol });
  }
  return out;
}

/** The whole NetworkSettings object of container inspect. */
export function networkSettings(
  svc: NetworkService,
  r: ContainerRecord,
  running: boolean,
): Record<string, unknown> {
  const networks = containerNetworks(svc, r);
  const bridge = svc.endpointsOf(r.id).find((e) => svc.networkById(e.networkId)?.name === 'bridge');
  return {
    Bridge: '',
    SandboxID: running ? r.id : '',
    HairpinMode: false,
    LinkLocalIPv6Address: '',
    LinkLocalIPv6PrefixLen: 0,
    Ports: portMap(svc, r, running),
    SandboxKey: running && r.state.pid > 0 ? `/proc/${r.state.pid}/ns/net` : '',
    SecondaryIPAddresses: null,
    SecondaryIPv6Addresses: null,
    EndpointID: bridge?.endpointId ?? '',
    Gateway: bridge?.gateway ?? '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    IPAddress: bridge?.ip ?? '',
    IPPrefixLen: bridge?.prefixLen ?? 0,
    IPv6Gateway: '',
    MacAddress: bridge?.mac ?? '',
    Networks: networks,
  };
}
