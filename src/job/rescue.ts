import type { AttemptEndRecord } from "./types.js";

/** Why a rescued attempt ended, as its attempt row and the job's result say. */
export const LOST_ERROR =
  "the worker stopped renewing its lease (it died or hung); the call was abandoned";

/** How an attempt whose lease expired is closed. */
export const LOST_ATTEMPT: AttemptEndRecord = {
  outcome: "lost",
  responseStatus: null,
  errorCode: "lease_expired",
  error: LOST_ERROR,
  retryable: true,
  durationMs: null,
};

/**
 * What a running job whose lease expired (its worker died or hung) becomes: queued again at once
 * if it has attempts left, failed if the lost attempt was its last. The lost attempt counts: the
 * call may have reached the target.
 */
export function rescuedStatus(job: { attempt: number; maxAttempts: number }): "queued" | "failed" {
  return job.attempt >= job.maxAttempts ? "failed" : "queued";
}
