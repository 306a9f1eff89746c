import { UsageError } from './errors.js';

/**
 * Image references as the docker CLI normalises them before calling the API:
 * `bb` → `docker.io/library/bb:latest`, `127.0.0.1:5055/bb:v1` stays on that registry.
 */
export interface ImageReference {
  /** Registry host (with port): `docker.io`, `127.0.0.1:5055`. */
  domain: string;
  /** Repository path inside the registry: `library/bb`. */
  path: string;
  tag?: string;
  digest?: string;
}

export const DEFAULT_DOMAIN = 'docker.io';
/** The key docker uses for Docker Hub credentials. */
export const INDEX_SERVER = 'https://index.docker.io/v1/';

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;

export function parseReference(ref: string): ImageReference {
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw invalid(ref);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw invalid(ref);
  }
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  if (
    first &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())
  ) {
    domain = first;
    path = rest.slice(slash + 1);
  }
  if (domain === 'index.docker.io') domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = `library/${path}`;
  if (path === '' || !path.split('/').every((c) => COMPONENT.test(c))) {
    if (path !== path.toLowerCase())
      throw new UsageError(`invalid reference format: repository name (${path}) must be lowercase`);
    throw invalid(ref);
  }
  return { domain, path, tag, digest };
}

function invalid(ref: string): UsageError {
  return new UsageError(`invalid reference format: "${ref}"`);
}

/** `docker.io/library/bb`, `127.0.0.1:5055/bb`. */
export function repositoryName(ref: ImageReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** Adds `:latest` when neither tag nor digest is given (as `docker pull` does). */
export function withDefaultTag(ref: ImageReference): ImageReference {
  return ref.tag || ref.digest ? ref : { ...ref, tag: 'latest' };
}

/** Full form: `docker.io/library/bb:latest`, `host/repo@sha256:…`. */
export function formatReference(ref: ImageReference): string {
  return `${repositoryName(ref)}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** Short form as docker displays it: `bb:latest`, `127.0.0.1:5055/bb:v1`. */
export function familiarName(ref: ImageReference): string {
  let name = repositoryName(ref);
  if (ref.domain === DEFAULT_DOMAIN) name = ref.path.startsWith('library/') ? ref.path.slice(8) : ref.path;
  return `${name}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** The credentials key for a registry: Docker Hub is stored under its legacy index URL. */
export function registryKey(domain: string): string {
  return domain === DEFAULT_DOMAIN ? INDEX_SERVER : domain;
}
