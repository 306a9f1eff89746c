import { InvalidArgument, StrataError } from '../common/errors.js';

/**
 * Build errors. Every error about the Dockerfile names its line: parse errors as dockerd's classic
 * builder words them (`Dockerfile parse error line 3: unknown instruction: FOO`), errors while a
 * step runs as `Dockerfile line 5: COPY failed: …`. A failing RUN keeps dockerd's exact message and
 * carries the command's exit code, which the docker CLI turns into its own exit status.
 */
export class DockerfileParseError extends InvalidArgument {
  constructor(
    readonly line: number,
    readonly detail: string,
  ) {
    super(`Dockerfile parse error line ${line}: ${detail}`);
  }
}

/** A step failed for a reason other than its command's exit status. */
export class BuildStepError extends StrataError {
  constructor(
    readonly line: number,
    readonly detail: string,
    status = 400,
  ) {
    super(status, 'BUILD_STEP', `Dockerfile line ${line}: ${detail}`);
  }
}

/** A RUN command exited with a non-zero status. */
export class RunFailedError extends StrataError {
  constructor(
    readonly command: string[],
    readonly exitCode: number,
  ) {
    super(500, 'RUN_FAILED', `The command '${command.join(' ')}' returned a non-zero code: ${exitCode}`);
  }
}

/** The client went away (Ctrl-C): the build stopped and cleaned up. */
export class BuildCancelledError extends StrataError {
  constructor() {
    super(499, 'CANCELLED', 'build cancelled: the client disconnected');
  }
}
