import { type Digest, isDigest } from '../common/digest.js';
import { InvalidArgument } from '../common/errors.js';

/**
 * Docker image references (`[domain/]path[:tag][@digest]`), parsed and normalised exactly as the
 * docker/distribution `reference` package does, because the docker CLI, compose and dockerd all agree
 * on that grammar: `bb` is `docker.io/library/bb`, `localhost/x` and `127.0.0.1:5000/x` keep their
 * registry, and the familiar (display) form drops `docker.io/` and `library/` again.
 */
export interface NamedReference {
  /** Registry host (and port), e.g. `docker.io`, `127.0.0.1:5000`. */
  domain: string;
  /** Repository path inside the registry, e.g. `library/bb`. */
  path: string;
  tag: string | null;
  digest: Digest | null;
}

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DEFAULT_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const NAME_TOTAL_LENGTH_MAX = 255;

// The grammar, piece by piece, as in distribution/reference/regexp.go.
const ALPHANUMERIC = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALPHANUMERIC}(?:${SEPARATOR}${ALPHANUMERIC})*`;
const REMOTE_NAME = `${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const IPV6_ADDRESS = '\\[(?:[a-fA-F0-9:]+)\\]';
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|${IPV6_ADDRESS})`;
const DOMAIN_AND_PORT = `${HOST}(?::[0-9]+)?`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const NAME = `(?:${DOMAIN_AND_PORT}/)?${REMOTE_NAME}`;

const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
const ANCHORED_NAME_RE = new RegExp(`^(?:(${DOMAIN_AND_PORT})/)?(${REMOTE_NAME})$`);
const ANCHORED_TAG_RE = new RegExp(`^${TAG}$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;

/** `docker.io/library/bb` → the repository name with its domain. */
export function fullName(ref: NamedReference): string {
  return `${ref.domain}/${ref.path}`;
}

/** The canonical string: `docker.io/library/bb:latest`, `127.0.0.1:5000/x@sha256:…`. */
export function referenceString(ref: NamedReference): string {
  let out = fullName(ref);
  if (ref.tag !== null) out += `:${ref.tag}`;
  if (ref.digest !== null) out += `@${ref.digest}`;
  return out;
}

/** The name as users write it: `bb`, `user/app`, `127.0.0.1:5000/x`. */
export function familiarName(ref: NamedReference): string {
  if (ref.domain !== DEFAULT_DOMAIN) return fullName(ref);
  if (ref.path.startsWith(OFFICIAL_REPO_PREFIX)) {
    const rest = ref.path.slice(OFFICIAL_REPO_PREFIX.length);
    // `library/a/b` stays as it is: only single-component official names are shortened.
    if (!rest.includes('/')) return rest;
  }
  return ref.path;
}

/** The display form: `bb:latest`, `127.0.0.1:5000/x@sha256:…`. */
export function familiarString(ref: NamedReference): string {
  let out = familiarName(ref);
  if (ref.tag !== null) out += `:${ref.tag}`;
  if (ref.digest !== null) out += `@${ref.digest}`;
  return out;
}

/** A name without tag and digest gets `:latest`; anything else is returned as is. */
export function tagNameOnly(ref: NamedReference): NamedReference {
  return ref.tag === null && ref.digest === null ? { ...ref, tag: 'latest' } : ref;
}

export function trimNamed(ref: NamedReference): NamedReference {
  return { domain: ref.domain, path: ref.path, tag: null, digest: null };
}

export function withTag(ref: NamedReference, tag: string): NamedReference {
  if (!ANCHORED_TAG_RE.test(tag)) throw new InvalidArgument('invalid tag format');
  return { ...ref, tag };
}

/** True for a bare 64-hex string, which dockerd reads as an image id rather than a name. */
export function isIdentifier(value: string): boolean {
  return IDENTIFIER_RE.test(value);
}

function parseDigestPart(value: string): Digest {
  const colon = value.indexOf(':');
  const algorithm = value.slice(0, colon);
  const hex = value.slice(colon + 1);
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new InvalidArgument('unsupported digest algorithm');
  }
  const candidate = `${algorithm}:${hex}`;
  if (!isDigest(candidate)) {
    if (hex !== hex.toLowerCase()) throw new InvalidArgument('invalid checksum digest format');
    throw new InvalidArgument('invalid checksum digest length');
  }
  return candidate;
}

/**
 * Parses a fully qualified reference (the form `parseNormalizedNamed` produces). Exposed for tests and
 * for places that already hold a canonical string (database rows).
 */
export function parseReference(value: string): NamedReference {
  const m = REFERENCE_RE.exec(value);
  if (!m) {
    if (value === '') throw new InvalidArgument('repository name must have at least one component');
    if (REFERENCE_RE.test(value.toLowerCase())) {
      throw new InvalidArgument('invalid reference format: repository name must be lowercase');
    }
    throw new InvalidArgument('invalid reference format');
  }
  const [, name, tag, digest] = m;
  if (name.length > NAME_TOTAL_LENGTH_MAX) {
    throw new InvalidArgument(`repository name must not be more than ${NAME_TOTAL_LENGTH_MAX} characters`);
  }
  const nameMatch = ANCHORED_NAME_RE.exec(name);
  if (!nameMatch) throw new InvalidArgument('invalid reference format');
  const domain = nameMatch[1] ?? '';
  const path = nameMatch[2];
  return { domain, path, tag: tag ?? null, digest: digest === undefined ? null : parseDigestPart(digest) };
}

/** Splits off the registry part the way the docker CLI does (`splitDockerDomain`). */
function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const slash = name.indexOf('/');
  let domain: string;
  let remainder: string;
  const first = slash === -1 ? '' : name.slice(0, slash);
  if (slash === -1 || (!/[.:]/.test(first) && first !== 'localhost' && first.toLowerCase() === first)) {
    domain = DEFAULT_DOMAIN;
    remainder = name;
  } else {
    domain = first;
    remainder = name.slice(slash + 1);
  }
  if (domain === LEGACY_DEFAULT_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !remainder.includes('/')) remainder = OFFICIAL_REPO_PREFIX + remainder;
  return { domain, remainder };
}

/**
 * `ParseNormalizedNamed`: a user-supplied name (`bb`, `bb:1`, `user/app@sha256:…`,
 * `127.0.0.1:5000/x/y:tag`) → its fully qualified form. Bad input → 400 with dockerd's message.
 */
export function parseNormalizedNamed(value: string): NamedReference {
  if (isIdentifier(value)) {
    throw new InvalidArgument(
      `invalid repository name (${value}), cannot specify 64-byte hexadecimal strings`,
    );
  }
  const { domain, remainder } = splitDockerDomain(value);
  const tagSep = remainder.indexOf(':');
  const remoteName = tagSep === -1 ? remainder : remainder.slice(0, tagSep);
  if (remoteName.toLowerCase() !== remoteName) {
    throw new InvalidArgument('invalid reference format: repository name must be lowercase');
  }
  const ref = parseReference(`${domain}/${remainder}`);
  return ref;
}

/** What an image argument names: a digest / id, or a repository reference. */
export type AnyReference = { kind: 'digest'; digest: Digest } | { kind: 'named'; ref: NamedReference };

/**
 * `ParseAnyReference`: a 64-hex id, a `sha256:…` digest, or a name. Used to resolve image arguments,
 * where a short id prefix is tried afterwards by the caller.
 */
export function parseAnyReference(value: string): AnyReference {
  if (isIdentifier(value)) return { kind: 'digest', digest: `sha256:${value}` };
  if (isDigest(value)) return { kind: 'digest', digest: value };
  return { kind: 'named', ref: parseNormalizedNamed(value) };
}

/**
 * `FamiliarMatch`: does a `reference` filter pattern (shell glob, `path.Match` rules) match `ref`?
 * Tried on the familiar string first (`bb:latest`), then on the familiar name (`bb`).
 */
export function familiarMatch(pattern: string, ref: NamedReference): boolean {
  const re = globToRegExp(pattern);
  return re.test(familiarString(ref)) || re.test(familiarName(ref));
}

/** Go's `path.Match` syntax: `*` and `?` never match `/`; `[...]`, `[^...]` classes; `\` escapes. */
export function globToRegExp(pattern: string): RegExp {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') out += '[^/]*';
    else if (c === '?') out += '[^/]';
    else if (c === '\\' && i + 1 < pattern.length) {
      i++;
      out += escapeRegExp(pattern[i]);
    } else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end === -1) throw new InvalidArgument(`syntax error in pattern: ${pattern}`);
      let body = pattern.slice(i + 1, end);
      let negate = false;
      if (body.startsWith('^') || body.startsWith('!')) {
        negate = true;
        body = body.slice(1);
      }
      out += `[${negate ? '^' : ''}${body.replace(/[\]\\]/g, '\\$&')}]`;
      i = end;
    } else out += escapeRegExp(c);
  }
  return new RegExp(`^${out}$`);
}

function escapeRegExp(value: string): string {
  return value.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
