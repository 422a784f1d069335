import type { NewJob } from "../src/job/types.js";

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
