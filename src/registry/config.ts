import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { InvalidArgument } from '../common/errors.js';
import { DEFAULT_MANIFEST_MAX_BYTES } from './manifests.js';

/**
 * The registry's configuration file (JSON). Every field is optional; without a file the registry
 * serves without authentication from `/var/lib/strata-registry` on `127.0.0.1:5000`.
 *
 * {
 *   "addr": "127.0.0.1:5000",                 listen address; --addr wins
 *   "workers": 2,                             HTTP processes on the storage (node:cluster); default 1; --workers wins
 *   "root": "/var/lib/strata-registry",       storage root; --root wins
 *   "tls": { "cert": "cert.pem", "key": "key.pem" },            serve HTTPS with this PEM pair
 *   "storage": { "driver": "filesystem",
 *                "directIo": false },          true: upload data written around the page cache (O_DIRECT)
 *   "delete": { "enabled": true },            false: DELETE answers 405 UNSUPPORTED
 *   "manifests": { "maxBytes": 4194304 },     larger manifests are refused with 413
 *   "gc": { "gracePeriodSeconds": 3600,       gc never removes content linked or written this recently
 *           "uploadMaxAgeSeconds": 604800 },  gc removes upload sessions older than this
 *   "auth": {                                 present = every request needs a grant
 *     "service": "strata-registry",           the token audience and the challenge's service
 *     "issuer": "strata-registry",
 *     "realm": "https://hub.example/token",   token endpoint URL; default <scheme>://<Host>/token
 *     "tokenTtlSeconds": 300,
 *     "signingKey": "token-key.pem",          PKCS#8 P-256 key signing tokens; default: new key per start
 *     "users": { "alice": { "password": "$2b$10$…", "groups": ["dev"] } },   bcrypt hashes
 *     "usersFile": "users.json",              same shape as "users", or htpasswd lines `name:$2y$…`
 *     "acl": [ { "repository": "dev/**", "users": ["alice"], "groups": ["ops"],
 *                "actions": ["pull", "push", "delete"] } ],
 *     "aclFile": "acl.json",                  a JSON array of the same entries (or {"acl": [...]})
 *     "anonymousPull": false                  true, or repository patterns anyone may pull
 *   },
 *   "proxy": {                                present = a pull-through cache (mirror) of another registry
 *     "remoteUrl": "https://registry-1.docker.io",   the upstream (http or https, no path); alias "remoteurl"
 *     "username": "u", "password": "p",      optional: sent to the upstream only when it asks
 *     "tagTtlSeconds": 0,                     a tag resolved upstream this recently is served unasked; 0: ask always
 *     "ca": "upstream-ca.pem"                 optional: CA certificates (PEM) trusted for an https upstream,
 *   }                                         besides the usual roots (a private registry's own CA)
 * }
 *
 * ACL patterns match whole names: `*` stays within one path component, `**` crosses `/`, and
 * `${user}` stands for the authenticated user's name. In `users`, `*` means any authenticated user
 * and `anonymous` means a request without credentials. A user gets the union of the matching entries.
 * Relative file names are resolved against the configuration file's directory.
 * With `proxy` the local storage is a cache of the upstream (see proxy/cache.ts): pulls fill it, pushes
 * and deletes answer 405; `auth` still guards the cache's own clients.
 */
const actionSchema = z.enum(['pull', 'push', 'delete', '*']);

export const aclEntrySchema = z.strictObject({
  repository: z.string().min(1),
  users: z.array(z.string()).default([]),
  groups: z.array(z.string()).default([]),
  actions: z.array(actionSchema).min(1),
});
export type AclEntry = z.infer<typeof aclEntrySchema>;

export const userSchema = z.strictObject({
  password: z.string().min(1),
  groups: z.array(z.string()).default([]),
});
export const usersSchema = z.record(z.string().min(1), userSchema);
export type UserEntry = z.infer<typeof userSchema>;

const authSchema = z.strictObject({
  service: z.string().min(1).default('strata-registry'),
  issuer: z.string().min(1).default('strata-registry'),
  realm: z.string().url().optional(),
  tokenTtlSeconds: z.number().int().positive().default(300),
  signingKey: z.string().optional(),
  users: usersSchema.optional(),
  usersFile: z.string().optional(),
  acl: z.array(aclEntrySchema).optional(),
  aclFile: z.string().optional(),
  anonymousPull: z.union([z.boolean(), z.array(z.string())]).default(false),
});
export type AuthConfig = z.infer<typeof authSchema>;

/** An upstream registry's base URL: http(s), no credentials, path, query or fragment. */
const remoteUrlSchema = z.string().superRefine((value, ctx) => {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'remoteUrl must be an http:// or https:// URL' });
    return;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    ctx.addIssue({ code: 'custom', message: 'remoteUrl must be an http:// or https:// URL' });
  else if (url.username !== '' || url.password !== '')
    ctx.addIssue({
      code: 'custom',
      message: 'remoteUrl must not hold credentials: use username and password',
    });
  else if (url.pathname !== '/' || url.search !== '' || url.hash !== '')
    ctx.addIssue({ code: 'custom', message: 'remoteUrl must be the registry origin, without a path' });
});

const proxySchema = z.preprocess(
  // docker/distribution spells it `remoteurl`.
  (value) => {
    if (typeof value !== 'object' || value === null || !('remoteurl' in value) || 'remoteUrl' in value)
      return value;
    const { remoteurl, ...rest } = value as Record<string, unknown>;
    return { ...rest, remoteUrl: remoteurl };
  },
  z
    .strictObject({
      remoteUrl: remoteUrlSchema,
      username: z.string().min(1).optional(),
      password: z.string().optional(),
      tagTtlSeconds: z.number().int().nonnegative().optional(),
      ca: z.string().min(1).optional(),
    })
    .refine((p) => p.password === undefined || p.username !== undefined, {
      message: 'a proxy password needs a username',
    }),
);

/** The upstream of a pull-through cache, as the registry uses it. */
export interface ProxyConfig {
  remoteUrl: string;
  username?: string;
  password?: string;
  /** How long a tag the upstream resolved is served without asking it again; 0: always ask. */
  tagTtlSeconds: number;
  /** PEM of CA certificates trusted for an https upstream besides Node's roots (the file's text). */
  ca?: string;
}

export const configSchema = z.strictObject({
  addr: z.string().optional(),
  root: z.string().optional(),
  tls: z.strictObject({ cert: z.string(), key: z.string() }).optional(),
  storage: z.strictObject({ driver: z.literal('filesystem'), directIo: z.boolean().optional() }).optional(),
  delete: z.strictObject({ enabled: z.boolean() }).optional(),
  manifests: z.strictObject({ maxBytes: z.number().int().positive() }).optional(),
  gc: z
    .strictObject({
      gracePeriodSeconds: z.number().int().nonnegative().optional(),
      uploadMaxAgeSeconds: z.number().int().nonnegative().optional(),
    })
    .optional(),
  auth: authSchema.optional(),
  proxy: proxySchema.optional(),
  workers: z.number().int().min(1).max(64).optional(),
});
export type ConfigFile = z.infer<typeof configSchema>;

/** The effective settings, after defaults and command-line flags. */
export interface RegistryConfig {
  root: string;
  host: string;
  port: number;
  tls?: { cert: string; key: string };
  deleteEnabled: boolean;
  manifestMaxBytes: number;
  gracePeriodSeconds: number;
  uploadMaxAgeSeconds: number;
  auth?: AuthConfig;
  /** Present in proxy mode: the upstream the local storage caches. */
  proxy?: ProxyConfig;
  /** HTTP server processes sharing the storage (node:cluster); 1 serves from the main process. */
  workers: number;
  /** Blob data through O_DIRECT where the file system allows it (see storage/filesystem.ts). */
  directIo: boolean;
  /** PEM of the token signing key when it is not a file (handed to workers, so they agree on it). */
  signingKeyPem?: string;
  /** Directory against which relative file names of the config are resolved. */
  baseDir: string;
}

/**
 * One HTTP process unless configured: on this project's 2-CPU host a second one shared the CPUs with
 * the clients and measured no faster (see the bench notes), but on a many-core server `--workers`
 * lets concurrent pulls use the cores.
 */
export const DEFAULT_WORKERS = 1;

export const DEFAULT_ROOT = '/var/lib/strata-registry';
export const DEFAULT_ADDR = '127.0.0.1:5000';

export function loadConfigFile(file: string): ConfigFile {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgument(`cannot read registry config ${file}: ${(err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgument(`registry config ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const result = configSchema.safeParse(json);
  if (!result.success) {
    throw new InvalidArgument(`invalid registry config ${file}: ${z.prettifyError(result.error)}`);
  }
  return result.data;
}

export function resolveConfig(
  file: ConfigFile,
  flags: { root?: string; addr?: string; workers?: number },
  baseDir = process.cwd(),
): RegistryConfig {
  const addr = flags.addr ?? file.addr ?? DEFAULT_ADDR;
  const { host, port } = parseAddr(addr);
  const resolve = (p: string): string => path.resolve(baseDir, p);
  return {
    root: path.resolve(flags.root ?? (file.root === undefined ? DEFAULT_ROOT : resolve(file.root))),
    host,
    port,
    tls: file.tls ? { cert: resolve(file.tls.cert), key: resolve(file.tls.key) } : undefined,
    deleteEnabled: file.delete?.enabled ?? true,
    manifestMaxBytes: file.manifests?.maxBytes ?? DEFAULT_MANIFEST_MAX_BYTES,
    gracePeriodSeconds: file.gc?.gracePeriodSeconds ?? 3600,
    uploadMaxAgeSeconds: file.gc?.uploadMaxAgeSeconds ?? 7 * 24 * 3600,
    auth: file.auth,
    proxy: file.proxy && {
      ...file.proxy,
      tagTtlSeconds: file.proxy.tagTtlSeconds ?? 0,
      ca: file.proxy.ca === undefined ? undefined : readCaFile(resolve(file.proxy.ca)),
    },
    workers: flags.workers ?? file.workers ?? DEFAULT_WORKERS,
    directIo: file.storage?.directIo ?? false,
    baseDir,
  };
}

/** The PEM text of a proxy's `ca` file (read once here, so that workers get the text itself). */
function readCaFile(file: string): string {
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new InvalidArgument(`cannot read the proxy's CA file ${file}: ${(err as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new InvalidArgument(`the proxy's CA file ${file} holds no PEM certificate`);
  return pem;
}

/** `HOST:PORT`, `:PORT` (all interfaces) or `[v6]:PORT`. */
export function parseAddr(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535)
    throw new InvalidArgument(`invalid address ${JSON.stringify(addr)}: want HOST:PORT`);
  const host = match[1] ?? match[2] ?? '';
  return { host: host === '' ? '0.0.0.0' : host, port };
}
