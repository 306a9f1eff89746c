import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CliError } from './errors.js';
import { INDEX_SERVER } from './reference.js';

/**
 * Registry credentials of the `strata` command, kept like docker's: `~/.strata/config.json`
 * (or `$STRATA_CONFIG/config.json`), mode 0600, `auths.<server>.auth = base64(user:password)`.
 * The daemon never stores them; the CLI sends them per request in `X-Registry-Auth`.
 */

export interface AuthEntry {
  auth?: string;
  identitytoken?: string;
}

export interface CliConfig {
  auths?: Record<string, AuthEntry>;
  [key: string]: unknown;
}

export interface AuthConfig {
  username?: string;
  password?: string;
  identitytoken?: string;
  serveraddress: string;
}

export function configDir(): string {
  return process.env.STRATA_CONFIG || path.join(os.homedir(), '.strata');
}

export function configPath(): string {
  return path.join(configDir(), 'config.json');
}

export function loadConfig(): CliConfig {
  let text: string;
  try {
    text = fs.readFileSync(configPath(), 'utf8');
  } catch {
    return {};
  }
  try {
    const parsed = JSON.parse(text) as unknown;
    return typeof parsed === 'object' && parsed !== null ? (parsed as CliConfig) : {};
  } catch {
    throw new CliError(`${configPath()} is not valid JSON`);
  }
}

/** Writes the config atomically with mode 0600 (it holds passwords). */
export function saveConfig(config: CliConfig): void {
  const file = configPath();
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(config, null, '\t')}\n`, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600);
  fs.renameSync(tmp, file);
}

/** Docker Hub under any of its names → its legacy index URL; other servers → bare host[:port]. */
export function normalizeServer(server: string): string {
  const host = server.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
  if (['docker.io', 'index.docker.io', 'registry-1.docker.io'].includes(host)) return INDEX_SERVER;
  return host;
}

export function credentialsFor(server: string): AuthConfig | undefined {
  const key = normalizeServer(server);
  const entry = loadConfig().auths?.[key];
  if (!entry) return undefined;
  const decoded = entry.auth ? Buffer.from(entry.auth, 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  const username = colon >= 0 ? decoded.slice(0, colon) : decoded;
  const password = colon >= 0 ? decoded.slice(colon + 1) : '';
  if (entry.identitytoken) return { username, identitytoken: entry.identitytoken, serveraddress: key };
  return { username, password, serveraddress: key };
}

export function storeCredentials(
  server: string,
  username: string,
  password: string,
  identityToken?: string,
): void {
  const config = loadConfig();
  config.auths ??= {};
  config.auths[normalizeServer(server)] = identityToken
    ? { auth: Buffer.from(`${username}:`).toString('base64'), identitytoken: identityToken }
    : { auth: Buffer.from(`${username}:${password}`).toString('base64') };
  saveConfig(config);
}

/** Removes stored credentials; false when there were none. */
export function removeCredentials(server: string): boolean {
  const config = loadConfig();
  const key = normalizeServer(server);
  if (!config.auths?.[key]) return false;
  delete config.auths[key];
  saveConfig(config);
  return true;
}

/** X-Registry-Auth: base64url *with* padding (Go's base64.URLEncoding) of the JSON; `e30=` = `{}`. */
export function encodeRegistryAuth(auth: AuthConfig | undefined): string {
  const json = auth ? JSON.stringify(auth) : '{}';
  return Buffer.from(json).toString('base64').replaceAll('+', '-').replaceAll('/', '_');
}
