/**
 * All errors that cross a part's boundary carry an HTTP status, so the API layer maps them in one
 * place (src/api/errors.ts) instead of at every route. Messages follow dockerd's wording where the
 * docker CLI or compose match on it (e.g. "No such container: x").
 */
export class StrataError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
    this.code = code;
    this.name = new.target.name;
  }
}

/** 400: a request value is malformed (bad reference, bad flag value, bad JSON field). */
export class InvalidArgument extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(400, 'INVALID_ARGUMENT', message, options);
  }
}

/** 404: the named object does not exist. */
export class NotFound extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(404, 'NOT_FOUND', message, options);
  }
}

/** 409: the object exists but is in a state that forbids the operation. */
export class Conflict extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(409, 'CONFLICT', message, options);
  }
}

/** 403: the operation is forbidden (e.g. removing a network with endpoints, an ACL denial). */
export class Forbidden extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(403, 'FORBIDDEN', message, options);
  }
}

/** 304: the operation was a no-op (start of a running container, stop of a stopped one). */
export class NotModified extends StrataError {
  constructor(message = 'not modified') {
    super(304, 'NOT_MODIFIED', message);
  }
}

/** 500: something failed on our side (runtime error, I/O error). */
export class SystemError extends StrataError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(500, 'SYSTEM', message, options);
  }
}

/** The message of any thrown value, for logs and error bodies. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/** True when `err` is a Node system error with the given code (ENOENT, EEXIST, ...). */
export function isErrnoCode(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}
