import type { BackoffStrategy, ErrorCode } from "./types.js";

/** What one HTTP call came to, as the dispatcher reports it. Never an exception. */
export type CallResult =
  | {
      kind: "response";
      status: number;
      headers: Record<string, string>;
      body: Uint8Array;
      truncated: boolean;
      durationMs: number;
    }
  | {
      kind: "error";
      /** timeout and network failures are retried; a refused destination or redirect loop is not. */
      code: "timeout" | "network" | "destination_blocked" | "too_many_redirects";
      message: string;
      durationMs: number;
    }
  /** Stopped from our side (cancel, shutdown, lost lease); the caller knows why. */
  | { kind: "aborted"; durationMs: number };

export interface RetryPolicy {
  /** Upper bound on any backoff delay. */
  backoffMaxMs: number;
  /** Upper bound on a delay asked for by a Retry-After header. */
  retryAfterMaxMs: number;
  /** Fraction of the delay that jitter may take off (0.2 → the delay lands in [0.8d, d]). */
  jitter: number;
  /** A number in [0, 1); injectable so tests are exact. */
  random: () => number;
}

/** How an attempt ended, as recorded in its history row. */
export interface AttemptEnd {
  outcome: "succeeded" | "failed";
  responseStatus: number | null;
  errorCode: ErrorCode | null;
  error: string | null;
  retryable: boolean;
  durationMs: number;
}

/** A job's fate after an attempt: data, not control flow. */
export type Decision =
  | { next: "succeeded"; end: AttemptEnd }
  | { next: "retry"; runAt: number; end: AttemptEnd }
  | { next: "failed"; end: AttemptEnd };

export interface AttemptContext {
  /** The attempt that just ended, 1-based. */
  attempt: number;
  maxAttempts: number;
  backoffStrategy: BackoffStrategy;
  backoffBaseMs: number;
  /** Whether the job follows redirects (a 3xx that reaches here was not followed for a reason). */
  followRedirects?: boolean;
}

/** Whether a status is success, worth retrying, or a final failure. */
export function classifyStatus(status: number): "success" | "retryable" | "final" {
  if (status >= 200 && status < 300) return "success";
  if (status === 408 || status === 429 || (status >= 500 && status < 600)) return "retryable";
  return "final";
}

/**
 * Decides what happens to a job after an attempt that produced a response or an error
 * (aborted calls are the pool's to settle). Pure: same inputs, same decision.
 */
export function decide(
  ctx: AttemptContext,
  result: Exclude<CallResult, { kind: "aborted" }>,
  now: number,
  policy: RetryPolicy,
): Decision {
  let end: AttemptEnd;
  let retryAfterMs: number | null = null;
  if (result.kind === "response") {
    const cls = classifyStatus(result.status);
    if (cls === "success") {
      return {
        next: "succeeded",
        end: {
          outcome: "succeeded",
          responseStatus: result.status,
          errorCode: null,
          error: null,
          retryable: false,
          durationMs: result.durationMs,
        },
      };
    }
    const unfollowed = result.status >= 300 && result.status < 400 && !ctx.followRedirects;
    end = {
      outcome: "failed",
      responseStatus: result.status,
      errorCode: "http_status",
      error: `HTTP ${result.status}${unfollowed ? " (redirects are followed only with follow_redirects)" : ""}`,
      retryable: cls === "retryable",
      durationMs: result.durationMs,
    };
    const header = result.headers["retry-after"];
    if (end.retryable && header !== undefined) retryAfterMs = parseRetryAfter(header, now);
  } else {
    end = {
      outcome: "failed",
      responseStatus: null,
      errorCode: result.code,
      error: result.message,
      retryable: result.code === "timeout" || result.code === "network",
      durationMs: result.durationMs,
    };
  }

  if (!end.retryable || ctx.attempt >= ctx.maxAttempts) return { next: "failed", end };

  let delay = backoffDelayMs(ctx, policy);
  if (retryAfterMs !== null)
    delay = Math.max(delay, Math.min(retryAfterMs, policy.retryAfterMaxMs));
  return { next: "retry", runAt: now + delay, end };
}

/** The delay before the retry that follows attempt `ctx.attempt`, jitter and cap applied. */
export function backoffDelayMs(ctx: AttemptContext, policy: RetryPolicy): number {
  const base = ctx.backoffBaseMs;
  const n = ctx.attempt;
  let raw: number;
  switch (ctx.backoffStrategy) {
    case "fixed":
      raw = base;
      break;
    case "linear":
      raw = base * n;
      break;
    case "exponential":
      raw = base * 2 ** Math.min(n - 1, 52);
      break;
  }
  const capped = Math.min(raw, policy.backoffMaxMs);
  return Math.round(capped * (1 - policy.jitter * policy.random()));
}

// The three HTTP-date forms of RFC 9110 §5.6.7: IMF-fixdate, RFC 850 and asctime.
const HTTP_DATE = [
  /^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/,
  /^[A-Z][a-z]{5,8}, \d{2}-[A-Z][a-z]{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$/,
  /^[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/,
];

/** Parses a Retry-After value (delta seconds or an HTTP date) into a delay in ms; null if invalid. */
export function parseRetryAfter(value: string, now: number): number | null {
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  if (!HTTP_DATE.some((re) => re.test(trimmed))) return null;
  const date = Date.parse(trimmed);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}
