/**
 * Typed domain errors. The RPC layer maps each to a transport code in one place
 * (src/rpc/errors.ts); messages are safe to show to clients.
 *
 * They are the client's errors, answered and never logged with a stack, so they are made without
 * one: capturing a stack trace was ~3% of the server's time answering 404s (and the ConnectError
 * made from it as much again).
 */

/** Runs `make` with stack capture off. */
export function withoutStack<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

function stackless(): number {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  return limit;
}

/** Bad input: names the field and what is wrong with it. */
export class InvalidArgumentError extends Error {
  override readonly name = "InvalidArgumentError";
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    const limit = stackless();
    super(`${field}: ${problem}`);
    Error.stackTraceLimit = limit;
  }
}

export class JobNotFoundError extends Error {
  override readonly name = "JobNotFoundError";
  constructor(readonly jobId: string) {
    const limit = stackless();
    super(`job ${jobId} not found`);
    Error.stackTraceLimit = limit;
  }
}

/** The job is in a state that does not allow the operation (e.g. cancelling a finished job). */
export class JobStateError extends Error {
  override readonly name = "JobStateError";
  constructor(message: string) {
    const limit = stackless();
    super(message);
    Error.stackTraceLimit = limit;
  }
}

/**
 * An idempotency key reused with a different request: the first job stands, and the new request
 * is refused rather than silently answered with it.
 */
export class IdempotencyConflictError extends Error {
  override readonly name = "IdempotencyConflictError";
  constructor(
    readonly key: string,
    readonly jobId: string,
  ) {
    super(
      `idempotency_key ${JSON.stringify(key)} was used for job ${jobId} with a different request`,
    );
  }
}

/** A queue that does not exist (or no longer does). */
export class QueueNotFoundError extends Error {
  override readonly name = "QueueNotFoundError";
  constructor(readonly queue: string) {
    super(`queue ${JSON.stringify(queue)} does not exist`);
  }
}

/** A queue created under a name already in use (a state error, answered as ALREADY_EXISTS). */
export class QueueExistsError extends JobStateError {
  constructor(readonly queue: string) {
    super(`queue ${JSON.stringify(queue)} already exists`);
  }
}

/** An operation (a bulk action) that does not exist, or is not the caller's. */
export class OperationNotFoundError extends Error {
  override readonly name = "OperationNotFoundError";
  constructor(readonly operationId: string) {
    super(`operation ${operationId} not found`);
  }
}

/**
 * A stream cursor older than the event retention (JOBQUEUE_EVENT_RETENTION_SECONDS): the events
 * after it are gone. The stream's equivalent of HTTP 410 Gone: list again, then watch from the
 * list's cursor.
 */
export class CursorExpiredError extends Error {
  override readonly name = "CursorExpiredError";
  constructor(readonly cursor: string) {
    super(
      `cursor ${cursor} is older than the event retention; list the jobs again and watch from the cursor the list returns`,
    );
  }
}

/**
 * A watcher that fell too far behind the event stream (its buffer filled while its client did not
 * read): it is ended, and resumes after the cursor of the last message it got.
 */
export class WatcherBehindError extends Error {
  override readonly name = "WatcherBehindError";
  constructor(readonly cursor: string) {
    super(
      `the watcher fell behind the event stream and was ended; watch again after cursor ${cursor}`,
    );
  }
}

/** A schedule that does not exist, or is not the caller's. */
export class ScheduleNotFoundError extends Error {
  override readonly name = "ScheduleNotFoundError";
  constructor(readonly scheduleId: string) {
    super(`schedule ${scheduleId} not found`);
  }
}
