import { StrataError } from '../common/errors.js';
import { statusLine } from '../common/status-line.js';

/**
 * Errors of registry transfers. Messages follow dockerd's wording, since the docker CLI prints them
 * as they are ("manifest for x:v1 not found: manifest unknown: manifest unknown").
 */

/** 401: the registry refused the credentials (docker login with a wrong password). */
export class Unauthorized extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(401, 'UNAUTHORIZED', message, options);
  }
}

/** 501: an Engine API feature Strata does not offer (docker search). */
export class NotImplemented extends StrataError {
  constructor(message: string) {
    super(501, 'NOT_IMPLEMENTED', message);
  }
}

/** 500: the registry could not be reached (connection refused, DNS, TLS). */
export class RegistryUnreachable extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(500, 'REGISTRY_UNREACHABLE', message, options);
  }
}

/** One entry of a registry's error body (`{"errors":[{"code","message","detail"}]}`). */
export interface RegistryErrorEntry {
  code: string;
  message: string;
}

/**
 * A registry answered with an error status. `message` reads like Docker's errcode errors
 * (`denied: requested access to the resource is denied`); the HTTP status is kept for callers that
 * tell 404 from the rest. Surfaces as 404, 401 or 403 when the registry said so, else 500.
 */
export class RegistryResponseError extends StrataError {
  constructor(
    readonly httpStatus: number,
    readonly entries: RegistryErrorEntry[],
    message: string,
  ) {
    super(
      httpStatus === 404 || httpStatus === 401 || httpStatus === 403 ? httpStatus : 500,
      entries[0]?.code ?? 'REGISTRY_ERROR',
      message,
    );
  }

  hasCode(code: string): boolean {
    return this.entries.some((e) => e.code === code);
  }
}

/** `MANIFEST_UNKNOWN` → `manifest unknown: <message>`, as Go's errcode package prints it. */
export function formatRegistryErrors(entries: readonly RegistryErrorEntry[]): string {
  return entries
    .map((e) => {
      const code = e.code.toLowerCase().replace(/_/g, ' ');
      return e.message ? `${code}: ${e.message}` : code;
    })
    .join('; ');
}

/** Parses an error body; a body that is not the spec's JSON gives no entries. */
export function parseRegistryErrors(body: Buffer): RegistryErrorEntry[] {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return [];
  }
  if (typeof value !== 'object' || value === null) return [];
  const errors = (value as { errors?: unknown }).errors;
  if (!Array.isArray(errors)) {
    // Token servers answer OAuth-style: {"error":"…","error_description":"…"} or {"details":"…"}.
    const v = value as { error?: unknown; error_description?: unknown; details?: unknown };
    const text = [v.error, v.error_description, v.details].filter((x) => typeof x === 'string').join(': ');
    return text ? [{ code: 'UNKNOWN', message: text }] : [];
  }
  return errors
    .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
    .map((e) => ({
      code: typeof e.code === 'string' ? e.code : 'UNKNOWN',
      message: typeof e.message === 'string' ? e.message : '',
    }));
}

/** The error for a registry response with an unexpected status and its (bounded) body. */
export function registryError(status: number, body: Buffer): RegistryResponseError {
  const entries = parseRegistryErrors(body);
  const message =
    entries.length > 0
      ? formatRegistryErrors(entries)
      : `received unexpected HTTP status: ${statusLine(status)}`;
  return new RegistryResponseError(status, entries, message);
}
