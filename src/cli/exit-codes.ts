import { Code, ConnectError } from "@connectrpc/connect";
import { InvalidArgumentError } from "../job/errors.js";

/**
 * What `jobqueue` exits with (the README's CLI section lists them). Scripts can tell a job that
 * failed from a call that did, and a refused key from a server that is down.
 */
export const EXIT = {
  /** Done; with `--wait` and `watch`: the job succeeded. */
  ok: 0,
  /** With `--wait` and `watch`: the job failed. */
  jobFailed: 1,
  /** Bad usage or input: unknown flag, a file that does not parse, INVALID_ARGUMENT. */
  usage: 2,
  /** No such job, queue or operation (NOT_FOUND); `watch`: the job was deleted. */
  notFound: 3,
  /** The key is missing or refused, or its role may not do this (UNAUTHENTICATED, PERMISSION_DENIED). */
  refused: 4,
  /** The server cannot be reached, is unavailable or too slow (UNAVAILABLE, DEADLINE_EXCEEDED). */
  unavailable: 5,
  /** Not possible in the job's state, or a conflict (FAILED_PRECONDITION, ALREADY_EXISTS). */
  conflict: 6,
  /** With `--wait` and `watch`: the job was canceled. */
  jobCanceled: 7,
  /** Anything else, a bulk operation that failed included (the message says what). */
  error: 8,
  /**
   * A bulk action was not confirmed: the answer at the prompt was not "y", or stdin is not a
   * terminal to ask on and `--yes` was not given. Nothing was changed.
   */
  notConfirmed: 9,
  /** A bulk operation was canceled before it finished (Ctrl-C, or a CancelOperation); what it did stays done. */
  operationCanceled: 10,
  /** Interrupted (Ctrl-C) while the command waited; a bulk operation left running keeps running. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports in one line and exits with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: ExitCode,
  ) {
    super(message);
  }
}

/** The exit code and message for anything a command threw. */
export function describeFailure(err: unknown, server: string): { code: ExitCode; message: string } {
  if (err instanceof CliError) return { code: err.code, message: err.message };
  if (err instanceof InvalidArgumentError) return { code: EXIT.usage, message: err.message };
  if (err instanceof ConnectError) {
    const message = err.rawMessage;
    switch (err.code) {
      case Code.InvalidArgument:
      case Code.OutOfRange:
        return { code: EXIT.usage, message };
      case Code.NotFound:
        return { code: EXIT.notFound, message };
      case Code.Unauthenticated:
        return {
          code: EXIT.refused,
          message: `${message} (pass --api-key or set JOBQUEUE_API_KEY)`,
        };
      case Code.PermissionDenied:
        return { code: EXIT.refused, message: `${message}: this key's role may not do that` };
      case Code.Unavailable:
      case Code.DeadlineExceeded:
        return {
          code: EXIT.unavailable,
          message: /fetch failed|ECONNREFUSED|ENOTFOUND|socket/i.test(message)
            ? `cannot reach the server at ${server} (--server or JOBQUEUE_SERVER)`
            : message,
        };
      case Code.FailedPrecondition:
      case Code.AlreadyExists:
      case Code.Aborted:
        return { code: EXIT.conflict, message };
      case Code.ResourceExhausted:
        return { code: EXIT.unavailable, message };
      default:
        return { code: EXIT.error, message };
    }
  }
  return { code: EXIT.error, message: err instanceof Error ? err.message : String(err) };
}
