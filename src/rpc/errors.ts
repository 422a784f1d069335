import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  CursorExpiredError,
  IdempotencyConflictError,
  InvalidArgumentError,
  JobNotFoundError,
  JobStateError,
  OperationNotFoundError,
  QueueExistsError,
  QueueNotFoundError,
  ScheduleNotFoundError,
  WatcherBehindError,
  withoutStack,
} from "../job/errors.js";
import { StoreUnavailableError } from "../store/job-store.js";
import { CALL_RECORD, type CallRecord, recordError, recordOk } from "./access-log.js";
import { clientFaultOf } from "./malformed-input.js";

/** The Retry-After of a call the store could not serve (readiness probes again every second). */
export const STORE_RETRY_AFTER_SECONDS = 2;

/**
 * The one place where domain errors become transport codes. Clients get a clear message (and, for
 * bad input, a google.rpc.BadRequest detail naming the field); anything unexpected is logged with
 * its cause and reaches the client only as "internal error".
 */
export function toConnectError(err: unknown, logger: Logger): ConnectError {
  if (err instanceof ConnectError) {
    const fault = clientFaultOf(err);
    if (fault) return fault;
    if (err.code === Code.Internal || err.code === Code.Unknown) {
      logger.error({ err }, "request failed");
      return new ConnectError("internal error", Code.Internal);
    }
    return err;
  }
  // Client errors are answered, not logged: made without a stack (see src/job/errors.ts).
  if (err instanceof InvalidArgumentError) {
    return withoutStack(
      () =>
        new ConnectError(err.message, Code.InvalidArgument, undefined, [
          {
            desc: BadRequestSchema,
            value: { fieldViolations: [{ field: err.field, description: err.problem }] },
          },
        ]),
    );
  }
  if (
    err instanceof JobNotFoundError ||
    err instanceof QueueNotFoundError ||
    err instanceof OperationNotFoundError ||
    err instanceof ScheduleNotFoundError
  ) {
    return withoutStack(() => new ConnectError(err.message, Code.NotFound));
  }
  if (err instanceof CursorExpiredError) {
    return withoutStack(() => new ConnectError(err.message, Code.OutOfRange));
  }
  if (err instanceof WatcherBehindError) {
    return withoutStack(() => new ConnectError(err.message, Code.ResourceExhausted));
  }
  if (err instanceof QueueExistsError) {
    return withoutStack(() => new ConnectError(err.message, Code.AlreadyExists));
  }
  if (err instanceof JobStateError) {
    return withoutStack(() => new ConnectError(err.message, Code.FailedPrecondition));
  }
  if (err instanceof IdempotencyConflictError) {
    return withoutStack(() => new ConnectError(err.message, Code.AlreadyExists));
  }
  if (err instanceof StoreUnavailableError) {
    // Readiness reports it (and logs it once); the caller is told what is wrong and when to retry.
    const cerr = withoutStack(
      () => new ConnectError(`the job store is unavailable: ${err.message}`, Code.Unavailable),
    );
    cerr.metadata.set("retry-after", String(STORE_RETRY_AFTER_SECONDS));
    return cerr;
  }
  logger.error({ err }, "request failed");
  return new ConnectError("internal error", Code.Internal);
}

/**
 * The errors stage of the pipeline: whatever a handler (or a later interceptor) throws leaves as a
 * {@link ConnectError} chosen by {@link toConnectError}, for unary calls and for the messages of a
 * stream alike. Handlers throw domain errors and never pick a code themselves.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    const record = req.contextValues.get(CALL_RECORD);
    try {
      const res = await next(req);
      if (!res.stream) {
        recordOk(record);
        return res;
      }
      return { ...res, message: mapStreamErrors(res.message, logger, record) };
    } catch (err) {
      const cerr = toConnectError(err, logger);
      recordError(record, cerr);
      throw cerr;
    }
  };
}

async function* mapStreamErrors<T>(
  messages: AsyncIterable<T>,
  logger: Logger,
  record: CallRecord | null,
): AsyncIterable<T> {
  try {
    yield* messages;
    recordOk(record);
  } catch (err) {
    const cerr = toConnectError(err, logger);
    recordError(record, cerr);
    throw cerr;
  }
}

/** The field named by an invalid-argument error, if any. */
export function violatedField(err: ConnectError): string | undefined {
  return err.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field;
}

const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.Canceled]: 499,
  [Code.InvalidArgument]: 400,
  [Code.DeadlineExceeded]: 504,
  [Code.NotFound]: 404,
  [Code.AlreadyExists]: 409,
  [Code.PermissionDenied]: 403,
  [Code.ResourceExhausted]: 429,
  [Code.FailedPrecondition]: 409,
  [Code.Aborted]: 409,
  // Only an event cursor older than the retention is out of range: gone, as Kubernetes says.
  [Code.OutOfRange]: 410,
  [Code.Unimplemented]: 501,
  [Code.Unavailable]: 503,
  [Code.Unauthenticated]: 401,
};

/** The HTTP status REST answers for a code (409 for a failed precondition, as REST clients expect). */
export function httpStatusOf(code: Code): number {
  return HTTP_STATUS[code] ?? 500;
}

/** Connect's snake_case name of a code ("invalid_argument"). */
export function codeName(code: Code): string {
  return Code[code]!.replace(/[A-Z]/g, (c, i) => (i === 0 ? c : `_${c}`)).toLowerCase();
}
