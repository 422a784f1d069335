import { describe, expect, it } from "vitest";
import {
  type AttemptContext,
  backoffDelayMs,
  type CallResult,
  classifyStatus,
  decide,
  parseRetryAfter,
  type RetryPolicy,
} from "../../src/job/retry-policy.js";
import type { BackoffStrategy } from "../../src/job/types.js";

/** A whole second, so HTTP dates (second precision) land exactly on it. */
const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);

function policy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  return {
    backoffMaxMs: 3_600_000,
    retryAfterMaxMs: 60_000,
    jitter: 0.2,
    random: () => 0,
    ...overrides,
  };
}

function ctx(overrides: Partial<AttemptContext> = {}): AttemptContext {
  return {
    attempt: 1,
    maxAttempts: 3,
    backoffStrategy: "exponential",
    backoffBaseMs: 1000,
    ...overrides,
  };
}

type Answered = Extract<CallResult, { kind: "response" }>;

function response(status: number, headers: Record<string, string> = {}): Answered {
  return {
    kind: "response",
    status,
    headers,
    body: new Uint8Array(),
    truncated: false,
    durationMs: 42,
  };
}

describe("classifyStatus", () => {
  it.each([
    { status: 200, expected: "success" },
    { status: 201, expected: "success" },
    { status: 204, expected: "success" },
    { status: 299, expected: "success" },
    { status: 408, expected: "retryable" },
    { status: 429, expected: "retryable" },
    { status: 500, expected: "retryable" },
    { status: 502, expected: "retryable" },
    { status: 503, expected: "retryable" },
    { status: 504, expected: "retryable" },
    { status: 599, expected: "retryable" },
    { status: 300, expected: "final" },
    { status: 301, expected: "final" },
    { status: 400, expected: "final" },
    { status: 401, expected: "final" },
    { status: 403, expected: "final" },
    { status: 404, expected: "final" },
    { status: 409, expected: "final" },
    { status: 422, expected: "final" },
    // The README promises retries for 5xx only; "other statuses fail at once".
    { status: 600, expected: "final" },
  ] as const)("$status is $expected", ({ status, expected }) => {
    expect(classifyStatus(status)).toBe(expected);
  });
});

describe("backoffDelayMs", () => {
  // full: the delay with random() = 0 (no jitter taken off);
  // jittered: with random() = 0.999 and jitter 0.2, i.e. round(full × 0.8002).
  const table: { strategy: BackoffStrategy; attempt: number; full: number; jittered: number }[] = [
    { strategy: "fixed", attempt: 1, full: 1000, jittered: 800 },
    { strategy: "fixed", attempt: 2, full: 1000, jittered: 800 },
    { strategy: "fixed", attempt: 3, full: 1000, jittered: 800 },
    { strategy: "fixed", attempt: 4, full: 1000, jittered: 800 },
    { strategy: "fixed", attempt: 5, full: 1000, jittered: 800 },
    { strategy: "linear", attempt: 1, full: 1000, jittered: 800 },
    { strategy: "linear", attempt: 2, full: 2000, jittered: 1600 },
    { strategy: "linear", attempt: 3, full: 3000, jittered: 2401 },
    { strategy: "linear", attempt: 4, full: 4000, jittered: 3201 },
    { strategy: "linear", attempt: 5, full: 5000, jittered: 4001 },
    { strategy: "exponential", attempt: 1, full: 1000, jittered: 800 },
    { strategy: "exponential", attempt: 2, full: 2000, jittered: 1600 },
    { strategy: "exponential", attempt: 3, full: 4000, jittered: 3201 },
    { strategy: "exponential", attempt: 4, full: 8000, jittered: 6402 },
    { strategy: "exponential", attempt: 5, full: 16000, jittered: 12803 },
  ];

  it.each(table)(
    "$strategy after attempt $attempt: $full ms, $jittered ms with jitter",
    ({ strategy, attempt, full, jittered }) => {
      const c = ctx({ backoffStrategy: strategy, attempt, backoffBaseMs: 1000 });
      expect(backoffDelayMs(c, policy({ random: () => 0 }))).toBe(full);
      const withJitter = backoffDelayMs(c, policy({ random: () => 0.999 }));
      expect(withJitter).toBe(jittered);
      expect(withJitter).toBeGreaterThanOrEqual(0.8 * full);
      expect(withJitter).toBeLessThan(full);
    },
  );

  it.each([
    { attempt: 1, expected: 1000 },
    { attempt: 2, expected: 2000 },
    { attempt: 3, expected: 4000 },
    { attempt: 4, expected: 5000 },
    { attempt: 5, expected: 5000 },
    { attempt: 100, expected: 5000 },
    { attempt: 10_000, expected: 5000 },
  ])(
    "exponential after attempt $attempt is capped at backoffMaxMs: $expected ms",
    ({ attempt, expected }) => {
      const c = ctx({ backoffStrategy: "exponential", attempt, backoffBaseMs: 1000 });
      expect(backoffDelayMs(c, policy({ backoffMaxMs: 5000 }))).toBe(expected);
    },
  );

  it("caps linear and fixed delays too", () => {
    const p = policy({ backoffMaxMs: 2500 });
    expect(backoffDelayMs(ctx({ backoffStrategy: "linear", attempt: 5 }), p)).toBe(2500);
    expect(backoffDelayMs(ctx({ backoffStrategy: "fixed", backoffBaseMs: 9000 }), p)).toBe(2500);
  });

  it("takes jitter off the capped delay, so the result never exceeds the cap", () => {
    const c = ctx({ backoffStrategy: "exponential", attempt: 10 });
    expect(backoffDelayMs(c, policy({ backoffMaxMs: 5000, random: () => 0.999 }))).toBe(4001);
  });

  it("a zero base gives a zero delay", () => {
    expect(backoffDelayMs(ctx({ backoffBaseMs: 0, attempt: 4 }), policy())).toBe(0);
  });
});

describe("decide", () => {
  it("a 2xx succeeds", () => {
    expect(decide(ctx(), response(201), NOW, policy())).toEqual({
      next: "succeeded",
      end: {
        outcome: "succeeded",
        responseStatus: 201,
        errorCode: null,
        error: null,
        retryable: false,
        durationMs: 42,
      },
    });
  });

  it.each([
    { attempt: 1, delay: 1000 },
    { attempt: 2, delay: 2000 },
    { attempt: 3, delay: 4000 },
  ])(
    "a retryable status after attempt $attempt of 5 retries at now + $delay ms",
    ({ attempt, delay }) => {
      expect(decide(ctx({ attempt, maxAttempts: 5 }), response(503), NOW, policy())).toEqual({
        next: "retry",
        runAt: NOW + delay,
        end: {
          outcome: "failed",
          responseStatus: 503,
          errorCode: "http_status",
          error: "HTTP 503",
          retryable: true,
          durationMs: 42,
        },
      });
    },
  );

  it("the retry delay includes jitter", () => {
    const d = decide(ctx(), response(500), NOW, policy({ random: () => 0.5 }));
    expect(d).toMatchObject({ next: "retry", runAt: NOW + 900 });
  });

  it.each([408, 429, 500, 504])("%i on the last attempt fails", (status) => {
    const d = decide(ctx({ attempt: 3, maxAttempts: 3 }), response(status), NOW, policy());
    expect(d.next).toBe("failed");
    expect(d).not.toHaveProperty("runAt");
    expect(d.end).toMatchObject({ outcome: "failed", responseStatus: status, retryable: true });
  });

  it("a single-attempt job fails on its first retryable error", () => {
    const d = decide(ctx({ attempt: 1, maxAttempts: 1 }), response(503), NOW, policy());
    expect(d.next).toBe("failed");
  });

  it.each([300, 301, 400, 401, 403, 404, 409, 422])(
    "final status %i fails at once, not retryable, though attempts remain",
    (status) => {
      const d = decide(ctx({ attempt: 1, maxAttempts: 10 }), response(status), NOW, policy());
      expect(d).toEqual({
        next: "failed",
        end: expect.objectContaining({
          outcome: "failed",
          responseStatus: status,
          errorCode: "http_status",
          retryable: false,
        }),
      });
      expect(d.end.error).toContain(String(status));
    },
  );

  it.each([301, 302, 307, 308])("a %i error message says redirects are not followed", (status) => {
    const d = decide(ctx(), response(status, { location: "https://x.test/" }), NOW, policy());
    expect(d.next).toBe("failed");
    expect(d.end.error).toMatch(/redirect/i);
  });

  it("a 3xx that a job following redirects could not follow does not blame follow_redirects", () => {
    const d = decide({ ...ctx(), followRedirects: true }, response(300), NOW, policy());
    expect(d.end.error).toBe("HTTP 300");
  });

  it("a non-redirect error message does not mention redirects", () => {
    expect(decide(ctx(), response(404), NOW, policy()).end.error).toBe("HTTP 404");
  });

  it.each(["network", "timeout"] as const)(
    "a %s error is retried while attempts remain",
    (code) => {
      const result = { kind: "error", code, message: `boom: ${code}`, durationMs: 7 } as const;
      expect(decide(ctx({ attempt: 2, maxAttempts: 3 }), result, NOW, policy())).toEqual({
        next: "retry",
        runAt: NOW + 2000,
        end: {
          outcome: "failed",
          responseStatus: null,
          errorCode: code,
          error: `boom: ${code}`,
          retryable: true,
          durationMs: 7,
        },
      });
      const last = decide(ctx({ attempt: 3, maxAttempts: 3 }), result, NOW, policy());
      expect(last.next).toBe("failed");
      expect(last.end).toMatchObject({ errorCode: code, retryable: true });
    },
  );

  describe("Retry-After", () => {
    it.each([
      { header: "30", status: 503, expected: 30_000 },
      { header: "30", status: 429, expected: 30_000 },
      { header: " 45 ", status: 429, expected: 45_000 },
      // Capped by retryAfterMaxMs (60 s here).
      { header: "120", status: 503, expected: 60_000 },
      { header: "99999999999", status: 503, expected: 60_000 },
      // Shorter than the backoff: the backoff stands.
      { header: "0", status: 503, expected: 1000 },
    ])("delta-seconds $header on $status → delay $expected ms", ({ header, status, expected }) => {
      const d = decide(ctx(), response(status, { "retry-after": header }), NOW, policy());
      expect(d).toMatchObject({ next: "retry", runAt: NOW + expected });
    });

    it.each([
      { aheadMs: 45_000, expected: 45_000 },
      { aheadMs: 10 * 60_000, expected: 60_000 },
      { aheadMs: -60_000, expected: 1000 },
    ])("an HTTP date $aheadMs ms ahead → delay $expected ms", ({ aheadMs, expected }) => {
      const header = new Date(NOW + aheadMs).toUTCString();
      const d = decide(ctx(), response(503, { "retry-after": header }), NOW, policy());
      expect(d).toMatchObject({ next: "retry", runAt: NOW + expected });
    });

    it("may exceed backoffMaxMs (its own cap is retryAfterMaxMs)", () => {
      const p = policy({ backoffMaxMs: 5000, retryAfterMaxMs: 3_600_000 });
      const d = decide(ctx(), response(503, { "retry-after": "600" }), NOW, p);
      expect(d).toMatchObject({ next: "retry", runAt: NOW + 600_000 });
    });

    it("does not shorten a longer backoff", () => {
      const c = ctx({ attempt: 4, maxAttempts: 5 });
      const d = decide(c, response(503, { "retry-after": "2" }), NOW, policy());
      expect(d).toMatchObject({ next: "retry", runAt: NOW + 8000 });
    });

    it.each([
      "soon",
      "",
      "1.5",
      "-1",
      // Not an HTTP date, but Date.parse reads it as 1 Jan 2099.
      "soon 2099",
    ])("an invalid value %j is ignored: the backoff stands", (header) => {
      const d = decide(ctx(), response(503, { "retry-after": header }), NOW, policy());
      expect(d).toMatchObject({ next: "retry", runAt: NOW + 1000 });
    });

    it.each([400, 404, 301])("on a non-retryable %i it is ignored: the job fails", (status) => {
      const d = decide(ctx(), response(status, { "retry-after": "5" }), NOW, policy());
      expect(d.next).toBe("failed");
      expect(d.end.retryable).toBe(false);
    });

    it("on the last attempt it does not bring a retry", () => {
      const c = ctx({ attempt: 3, maxAttempts: 3 });
      expect(decide(c, response(429, { "retry-after": "5" }), NOW, policy()).next).toBe("failed");
    });
  });
});

describe("parseRetryAfter", () => {
  it.each([
    { value: "0", expected: 0 },
    { value: "1", expected: 1000 },
    { value: "120", expected: 120_000 },
    { value: "  7  ", expected: 7000 },
    { value: new Date(NOW + 90_000).toUTCString(), expected: 90_000 },
    { value: "Wed, 15 Jan 2025 12:01:00 GMT", expected: 60_000 },
    // A date in the past means "now".
    { value: "Wed, 21 Oct 2015 07:28:00 GMT", expected: 0 },
    // The obsolete RFC 850 and asctime forms are HTTP dates too.
    { value: "Sunday, 06-Nov-94 08:49:37 GMT", expected: 0 },
    { value: "Sun Nov  6 08:49:37 1994", expected: 0 },
    { value: "", expected: null },
    { value: "   ", expected: null },
    { value: "soon", expected: null },
    { value: "in 5 minutes", expected: null },
    { value: "0x10", expected: null },
    { value: "1e3", expected: null },
    // Neither delta-seconds (digits only) nor an HTTP date.
    { value: "1.5", expected: null },
    { value: "-1", expected: null },
    { value: "+5", expected: null },
    { value: "soon 2099", expected: null },
  ])("$value → $expected", ({ value, expected }) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });
});
