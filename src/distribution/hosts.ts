import * as net from 'node:net';
import { InvalidArgument } from '../common/errors.js';
import { DEFAULT_DOMAIN } from '../images/reference.js';

/**
 * Which registries may be spoken to over plain HTTP, and where a reference's domain lives.
 *
 * TLS (verified) is the rule. Registries on loopback and those named with the daemon's
 * `--insecure-registry HOST[:PORT]` (or an IPv4 CIDR) are tried with TLS first (certificate not
 * verified) and plain HTTP next, as dockerd does for insecure registries.
 */
export const DOCKER_HUB_HOST = 'registry-1.docker.io';
const INDEX_SERVER_NAMES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** A registry reached at a fixed scheme and host: a mirror (`--registry-mirror http://host:port`). */
export interface RegistryEndpoint {
  scheme: 'https' | 'http';
  /** `host[:port]`. */
  host: string;
}

export class RegistryHosts {
  private readonly insecureHosts = new Set<string>();
  private readonly insecureCidrs: Array<{ base: number; mask: number }> = [];
  /** Mirrors of Docker Hub, tried in order before it for pulls of `docker.io` images. */
  readonly mirrors: readonly RegistryEndpoint[];

  constructor(insecureRegistries: readonly string[] = [], registryMirrors: readonly string[] = []) {
    for (const entry of insecureRegistries) this.addInsecure(entry);
    this.mirrors = registryMirrors.map(parseMirror);
  }

  private addInsecure(entry: string): void {
    const value = entry
      .trim()
      .replace(/^[a-z]+:\/\//i, '')
      .replace(/\/+$/, '');
    const cidr = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(value);
    if (cidr) {
      const bits = Number(cidr[2]);
      if (!net.isIPv4(cidr[1]) || bits > 32) throw new InvalidArgument(`invalid insecure registry ${entry}`);
      const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0;
      this.insecureCidrs.push({ base: (ipv4ToInt(cidr[1]) & mask) >>> 0, mask });
      return;
    }
    if (value === '' || value.includes('/')) throw new InvalidArgument(`invalid insecure registry ${entry}`);
    this.insecureHosts.add(value.toLowerCase());
  }

  /** The host (and port) to connect to for a reference domain (`docker.io` → the Hub's API host). */
  endpointHost(domain: string): string {
    return INDEX_SERVER_NAMES.has(domain) ? DOCKER_HUB_HOST : domain;
  }

  /** True when plain HTTP (and unverified TLS) is allowed for `host[:port]`. */
  isInsecure(hostAndPort: string): boolean {
    const lower = hostAndPort.toLowerCase();
    if (this.insecureHosts.has(lower)) return true;
    const hostname = hostnameOf(lower);
    if (this.insecureHosts.has(hostname)) return true;
    if (isLoopback(hostname)) return true;
    if (net.isIPv4(hostname)) {
      const ip = ipv4ToInt(hostname);
      return this.insecureCidrs.some((c) => (ip & c.mask) >>> 0 === c.base);
    }
    return false;
  }
}

/**
 * A `--registry-mirror` value, as dockerd takes it: an http or https URL of a host (and port), with
 * no credentials, path, query or fragment. Plain http is the mirror's own choice, as in dockerd.
 */
export function parseMirror(value: string): RegistryEndpoint {
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new InvalidArgument(`invalid registry mirror ${JSON.stringify(value)}: not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgument(
      `invalid registry mirror ${JSON.stringify(value)}: the scheme must be http or https`,
    );
  if (url.username !== '' || url.password !== '')
    throw new InvalidArgument(
      `invalid registry mirror ${JSON.stringify(value)}: credentials are not allowed`,
    );
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '')
    throw new InvalidArgument(`invalid registry mirror ${JSON.stringify(value)}: only scheme, host and port`);
  return { scheme: url.protocol === 'http:' ? 'http' : 'https', host: url.host };
}

/** A mirror as `docker info` lists it: `http://127.0.0.1:5000/`. */
export function mirrorUrl(mirror: RegistryEndpoint): string {
  return `${mirror.scheme}://${mirror.host}/`;
}

/** `docker login`'s server address (`127.0.0.1:5000`, `http://x:5000/`, `https://index.docker.io/v1/`) → domain. */
export function serverAddressDomain(serverAddress: string | null | undefined): string {
  const value = (serverAddress ?? '').trim();
  if (value === '') return DEFAULT_DOMAIN;
  const withoutScheme = value.replace(/^[a-z]+:\/\//i, '');
  const host = withoutScheme.split('/')[0] ?? '';
  if (host === '') throw new InvalidArgument(`invalid server address ${JSON.stringify(serverAddress)}`);
  return INDEX_SERVER_NAMES.has(host.toLowerCase()) ? DEFAULT_DOMAIN : host.toLowerCase();
}

function hostnameOf(hostAndPort: string): string {
  if (hostAndPort.startsWith('[')) return hostAndPort.slice(1, hostAndPort.indexOf(']'));
  const colon = hostAndPort.lastIndexOf(':');
  return colon === -1 ? hostAndPort : hostAndPort.slice(0, colon);
}

function isLoopback(hostname: string): boolean {
  if (hostname === 'localhost' || hostname === '::1') return true;
  return net.isIPv4(hostname) && hostname.startsWith('127.');
}

function ipv4ToInt(ip: string): number {
  return ip.split('.').reduce((acc, part) => ((acc << 8) | Number(part)) >>> 0, 0);
}
