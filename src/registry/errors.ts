import { StrataError } from '../common/errors.js';

/**
 * The error codes of the OCI Distribution Spec (v1.1, "Error Codes"), each with the HTTP status a
 * registry answers with by default and the spec's description as the message, plus docker/distribution's
 * generic UNKNOWN and UNAVAILABLE (a pull-through cache's upstream failing). A route throws a
 * RegistryError; the server turns it into `{"errors":[{"code","message","detail"}]}` in one place.
 */
export const ERROR_CODES = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: {
    status: 400,
    message: 'manifest references a manifest or blob unknown to registry',
  },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
  UNKNOWN: { status: 500, message: 'unknown error' },
  UNAVAILABLE: { status: 503, message: 'service unavailable' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** One entry of the spec's error body. */
export interface ErrorEntry {
  code: ErrorCode;
  message: string;
  detail?: unknown;
}

export interface RegistryErrorOptions {
  /** Overrides the code's default status (416 for out-of-order chunks, 413 for oversized manifests). */
  status?: number;
  detail?: unknown;
  /** Further entries, for requests that fail for several reasons at once (several missing blobs). */
  more?: ErrorEntry[];
  /** Extra response headers (a 416 carries `Range`/`Location`, a 401 its challenge). */
  headers?: Record<string, string>;
  cause?: unknown;
}

export class RegistryError extends StrataError {
  readonly registryCode: ErrorCode;
  readonly detail: unknown;
  readonly more: ErrorEntry[];
  readonly headers: Record<string, string>;

  constructor(code: ErrorCode, message?: string, options: RegistryErrorOptions = {}) {
    super(options.status ?? ERROR_CODES[code].status, code, message ?? ERROR_CODES[code].message, {
      cause: options.cause,
    });
    this.registryCode = code;
    this.detail = options.detail;
    this.more = options.more ?? [];
    this.headers = options.headers ?? {};
  }

  /** The `errors` array of the response body. */
  entries(): ErrorEntry[] {
    const first: ErrorEntry = { code: this.registryCode, message: this.message };
    if (this.detail !== undefined) first.detail = this.detail;
    return [first, ...this.more];
  }
}

export function registryError(
  code: ErrorCode,
  message?: string,
  options?: RegistryErrorOptions,
): RegistryError {
  return new RegistryError(code, message, options);
}
