import type { NewJob } from "../src/job/types.js";
import type { FinishAttemptParams } from "../src/store/job-store.js";

const RESPONSE_BODY = new TextEncoder().encode('{"ok":true}');

/**
 * A job as the server would store a plain GET of `url` with the defaults (3 attempts, exponential
 * backoff, 30 s timeout, no tags, no secrets), due at `now`; `over` changes any field.
 */
export function benchJob(id: string, now: number, url: string, over: Partial<NewJob> = {}): NewJob {
  const host = new URL(url).hostname;
  return {
    id,
    createdAt: now,
    runAt: now,
    method: "GET",
    url,
    headers: {},
    params: {},
    body: null,
    timeoutMs: 30_000,
    priority: 0,
    maxAttempts: 3,
    backoffStrategy: "exponential",
    backoffBaseMs: 1_000,
    scheduledAt: null,
    ttlMs: null,
    tags: [],
    idempotencyKey: null,
    secretHeaderNames: [],
    sealedHeaders: null,
    followRedirects: false,
    maxRedirects: 5,
    rateLimitKey: null,
    owner: null,
    bucket: host,
    host,
    queue: "default",
    requestHash: null,
    callbackUrl: null,
    sign: false,
    sealedSigningSecret: null,
    callbackOf: null,
    ...over,
  };
}

/** The end of a claimed job's attempt as the worker writes it when the target answered 200 {"ok":true}. */
export function benchSuccess(job: { id: string; leaseToken: string }): FinishAttemptParams {
  return {
    lease: { jobId: job.id, token: job.leaseToken },
    end: {
      outcome: "succeeded",
      responseStatus: 200,
      errorCode: null,
      error: null,
      retryable: false,
      durationMs: 1,
    },
    next: { status: "succeeded" },
    result: {
      response: {
        status: 200,
        headers: { "content-type": "application/json", "content-length": "11" },
        body: RESPONSE_BODY,
        bodyEncoding: "json",
        truncated: false,
      },
      error: null,
      durationMs: 1,
    },
  };
}
