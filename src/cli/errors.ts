/**
 * Errors of the `strata` command, each carrying the exit status docker's CLI would use, so
 * main.ts maps every failure to a message and a code in one place.
 */

/** A failure with a message for stderr and an exit status. */
export class CliError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 1) {
    super(message);
    this.exitCode = exitCode;
    this.name = new.target.name;
  }
}

/** The daemon answered with an error status; printed as "Error response from daemon: …". */
export class ApiError extends CliError {
  readonly status: number;
  readonly daemonMessage: string;
  constructor(status: number, daemonMessage: string) {
    super(`Error response from daemon: ${daemonMessage}`);
    this.status = status;
    this.daemonMessage = daemonMessage;
  }
}

/** The daemon could not be reached at all. */
export class DaemonUnreachableError extends CliError {
  constructor(host: string, cause?: string) {
    super(
      `Cannot connect to the Strata daemon at ${host}. Is the strata daemon running?${cause ? ` (${cause})` : ''}`,
    );
  }
}

/** Wrong number of arguments or a bad value found after flag parsing. */
export class UsageError extends CliError {}

/**
 * docker's exit status for a failed `run`/`start`: 127 when the command cannot be found, 126 when
 * it cannot be executed, 125 for any other daemon error.
 */
export function startFailureExitCode(message: string): number {
  if (/executable file not found|no such file or directory/i.test(message)) return 127;
  if (/permission denied|is a directory|not permitted/i.test(message)) return 126;
  return 125;
}

export function isNodeError(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}
