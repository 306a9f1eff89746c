import * as fs from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { InvalidArgument } from '../common/errors.js';
import { AccessControl } from './auth/acl.js';
import { Authorizer } from './auth/authorizer.js';
import { TokenService } from './auth/token.js';
import { loadUsersFile, UserDirectory } from './auth/users.js';
import { BlobStore } from './blobs.js';
import { type AclEntry, aclEntrySchema, type RegistryConfig, type UserEntry } from './config.js';
import { ManifestStore } from './manifests.js';
import { PullThroughCache } from './proxy/cache.js';
import { UpstreamClient } from './proxy/upstream.js';
import { ReferrersStore } from './referrers.js';
import { RepositoryStore } from './repositories.js';
import type { StorageDriver } from './storage/driver.js';
import { FilesystemDriver } from './storage/filesystem.js';
import { TagStore } from './tags.js';
import { UploadStore } from './uploads.js';

/** The hub's services wired onto one storage driver; what the HTTP routes and gc work with. */
export class Registry {
  readonly blobs: BlobStore;
  readonly uploads: UploadStore;
  readonly tags: TagStore;
  readonly referrers: ReferrersStore;
  readonly manifests: ManifestStore;
  readonly repositories: RepositoryStore;
  /** Null when the configuration has no `auth` section: every request is allowed. */
  readonly authorizer: Authorizer | null;
  /** In proxy mode (a `proxy` section) the stores are a cache of this upstream; else null. */
  readonly proxy: PullThroughCache | null;

  constructor(
    readonly config: RegistryConfig,
    readonly driver: StorageDriver = new FilesystemDriver(config.root, { directIo: config.directIo }),
  ) {
    this.blobs = new BlobStore(driver);
    this.uploads = new UploadStore(driver, this.blobs);
    this.tags = new TagStore(driver);
    this.referrers = new ReferrersStore(driver, this.blobs);
    this.manifests = new ManifestStore(driver, this.blobs, this.tags, this.referrers);
    this.repositories = new RepositoryStore(driver);
    this.authorizer = config.auth ? createAuthorizer(config) : null;
    this.proxy = config.proxy
      ? new PullThroughCache(
          { blobs: this.blobs, uploads: this.uploads, manifests: this.manifests, tags: this.tags },
          new UpstreamClient(config.proxy),
          { manifestMaxBytes: config.manifestMaxBytes, tagTtlSeconds: config.proxy.tagTtlSeconds },
        )
      : null;
  }

  /** Releases what the services hold besides storage (the upstream's idle connections). */
  close(): void {
    this.proxy?.upstream.close();
  }
}

function createAuthorizer(config: RegistryConfig): Authorizer {
  const auth = config.auth;
  if (auth === undefined) throw new Error('no auth configuration');
  const resolve = (p: string): string => path.resolve(config.baseDir, p);
  const users = new Map<string, UserEntry>(Object.entries(auth.users ?? {}));
  if (auth.usersFile !== undefined) {
    for (const [name, entry] of loadUsersFile(resolve(auth.usersFile))) users.set(name, entry);
  }
  const acl: AclEntry[] = [...(auth.acl ?? [])];
  if (auth.aclFile !== undefined) acl.push(...loadAclFile(resolve(auth.aclFile)));
  const tokens = new TokenService({
    issuer: auth.issuer,
    service: auth.service,
    ttlSeconds: auth.tokenTtlSeconds,
    signingKeyFile: auth.signingKey === undefined ? undefined : resolve(auth.signingKey),
    signingKeyPem: config.signingKeyPem,
  });
  return new Authorizer(new UserDirectory(users), new AccessControl(acl, auth.anonymousPull), tokens, {
    service: auth.service,
    realm: auth.realm,
    anonymousCatalog: auth.anonymousPull !== false,
    groupsOf: (user) => users.get(user)?.groups ?? [],
  });
}

const aclFileSchema = z.union([z.array(aclEntrySchema), z.strictObject({ acl: z.array(aclEntrySchema) })]);

function loadAclFile(file: string): AclEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new InvalidArgument(`cannot read ACL file ${file}: ${(err as Error).message}`);
  }
  const result = aclFileSchema.safeParse(json);
  if (!result.success)
    throw new InvalidArgument(`invalid ACL file ${file}: ${z.prettifyError(result.error)}`);
  return Array.isArray(result.data) ? result.data : result.data.acl;
}
