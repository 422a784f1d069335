/**
 * Typed domain errors. The RPC layer maps each to a transport code in one place
 * (src/rpc/errors.ts); messages are safe to show to clients.
 */

/** Bad input: names the field and what is wrong with it. */
export class InvalidArgumentError extends Error {
  override readonly name = "InvalidArgumentError";
  constructor(
    readonly field: string,
    readonly problem: string,
  ) {
    super(`${field}: ${problem}`);
  }
}

export class JobNotFoundError extends Error {
  override readonly name = "JobNotFoundError";
  constructor(readonly jobId: string) {
    super(`job ${jobId} not found`);
  }
}

/** The job is in a state that does not allow the operation (e.g. cancelling a finished job). */
export class JobStateError extends Error {
  override readonly name = "JobStateError";
  constructor(message: string) {
    super(message);
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
