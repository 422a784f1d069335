import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/job/errors.js";
import type { JobSpec } from "../../src/job/types.js";
import {
  type EnqueueInput,
  type JobLimits,
  validateEnqueue,
  validateJobId,
} from "../../src/job/validate.js";

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const DAY_MS = 86_400_000;

/** The server defaults of the README's table. */
const limits: JobLimits = {
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 3_600_000,
  defaultMaxAttempts: 3,
  defaultBackoffStrategy: "exponential",
  defaultBackoffBaseMs: 1000,
  defaultTtlMs: null,
  maxTtlMs: 31_536_000_000,
  maxBodyBytes: 1_048_576,
  maxUrlLength: 8192,
  maxHeaders: 64,
  maxHeaderBytes: 16_384,
  maxTags: 20,
  maxTagLength: 64,
};

/** The seed's example request (README, "REST with curl"), in the transport-neutral form. */
const seedExample: EnqueueInput = {
  method: "POST",
  url: "https://httpbin.org/post",
  headers: { "Content-Type": "application/json" },
  params: { debug: "1" },
  body: { kind: "json", value: { message: "hello" } },
  timeoutSec: 15,
  priority: 5,
  maxAttempts: 3,
  backoffStrategy: "exponential",
  backoffSeconds: 5,
  scheduledAt: null,
  ttlSeconds: 604_800,
  tags: ["demo", "external-api"],
};

const GOOD_URL = "https://example.com/hook";

/** Runs `fn` and returns the InvalidArgumentError it throws; fails the test otherwise. */
function invalid(fn: () => unknown): InvalidArgumentError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidArgumentError);
    return err as InvalidArgumentError;
  }
  throw new Error("expected an InvalidArgumentError, but nothing was thrown");
}

describe("validateEnqueue", () => {
  it("turns the seed's example into a job spec with millisecond units", () => {
    const expected: JobSpec = {
      queue: "default",
      method: "POST",
      url: "https://httpbin.org/post",
      host: "httpbin.org",
      headers: { "Content-Type": "application/json" },
      params: { debug: "1" },
      body: { kind: "json", value: { message: "hello" } },
      timeoutMs: 15_000,
      priority: 5,
      maxAttempts: 3,
      backoffStrategy: "exponential",
      backoffBaseMs: 5000,
      scheduledAt: null,
      ttlMs: 604_800_000,
      tags: ["demo", "external-api"],
      idempotencyKey: null,
      secretHeaderNames: [],
      followRedirects: false,
      maxRedirects: 5,
      rateLimitKey: null,
      callbackUrl: null,
      sign: false,
      signingSecrets: [],
    };
    expect(validateEnqueue(seedExample, limits, NOW)).toEqual(expected);
  });

  it.each([
    ["https://api.example.com/v1/x?y=1", "api.example.com"],
    ["https://API.Example.COM:8443/x", "api.example.com"],
    ["http://127.0.0.1:8080/", "127.0.0.1"],
    ["http://[::1]:8080/", "[::1]"],
    ["http://user:pw@api.example.com/", "api.example.com"],
  ])("reads the host of %s as %s", (url, host) => {
    expect(validateEnqueue({ url }, limits, NOW).host).toBe(host);
  });

  it("applies the defaults when only the url is given", () => {
    expect(validateEnqueue({ url: GOOD_URL }, limits, NOW)).toEqual({
      method: "GET",
      url: GOOD_URL,
      host: "example.com",
      headers: {},
      params: {},
      body: null,
      timeoutMs: 30_000,
      priority: 0,
      maxAttempts: 3,
      backoffStrategy: "exponential",
      backoffBaseMs: 1000,
      scheduledAt: null,
      ttlMs: null,
      tags: [],
      idempotencyKey: null,
      secretHeaderNames: [],
      followRedirects: false,
      maxRedirects: 5,
      rateLimitKey: null,
      queue: "default",
      callbackUrl: null,
      sign: false,
      signingSecrets: [],
    } satisfies JobSpec);
  });

  it("takes its defaults from the limits it is given", () => {
    const other: JobLimits = {
      ...limits,
      defaultTimeoutMs: 2500,
      defaultMaxAttempts: 7,
      defaultBackoffStrategy: "linear",
      defaultBackoffBaseMs: 250,
      defaultTtlMs: 60_000,
    };
    expect(validateEnqueue({ url: GOOD_URL }, other, NOW)).toMatchObject({
      timeoutMs: 2500,
      maxAttempts: 7,
      backoffStrategy: "linear",
      backoffBaseMs: 250,
      ttlMs: 60_000,
    });
  });

  it("treats an empty method and an empty backoff strategy as absent", () => {
    const spec = validateEnqueue({ url: GOOD_URL, method: "", backoffStrategy: "" }, limits, NOW);
    expect(spec.method).toBe("GET");
    expect(spec.backoffStrategy).toBe("exponential");
  });

  it.each([
    { method: "post", expected: "POST" },
    { method: "Delete", expected: "DELETE" },
    { method: "options", expected: "OPTIONS" },
  ])("accepts method $method and uppercases it", ({ method, expected }) => {
    expect(validateEnqueue({ url: GOOD_URL, method }, limits, NOW).method).toBe(expected);
  });

  it("accepts a backoff strategy in any case", () => {
    const spec = validateEnqueue({ url: GOOD_URL, backoffStrategy: "LINEAR" }, limits, NOW);
    expect(spec.backoffStrategy).toBe("linear");
  });

  it("keeps a scheduled time within a year, rounded to the millisecond", () => {
    const at = NOW + 30 * DAY_MS + 0.4;
    expect(validateEnqueue({ url: GOOD_URL, scheduledAt: at }, limits, NOW).scheduledAt).toBe(
      NOW + 30 * DAY_MS,
    );
  });

  it("de-duplicates tags, keeping first-seen order", () => {
    const spec = validateEnqueue({ url: GOOD_URL, tags: ["b", "a", "b", "c", "a"] }, limits, NOW);
    expect(spec.tags).toEqual(["b", "a", "c"]);
  });

  it("accepts the boundaries themselves", () => {
    const spec = validateEnqueue(
      {
        url: `https://example.com/${"a".repeat(limits.maxUrlLength - "https://example.com/".length)}`,
        timeoutSec: 3600,
        priority: -1000,
        maxAttempts: 100,
        backoffSeconds: 0,
        ttlSeconds: 1,
        tags: Array.from({ length: 20 }, (_, i) => `${i}`.padEnd(64, "x")),
        idempotencyKey: "k".repeat(200),
        body: { kind: "bytes", bytes: new Uint8Array(limits.maxBodyBytes) },
        method: "PUT",
      },
      limits,
      NOW,
    );
    expect(spec).toMatchObject({
      timeoutMs: 3_600_000,
      priority: -1000,
      maxAttempts: 100,
      backoffBaseMs: 0,
      ttlMs: 1000,
      idempotencyKey: "k".repeat(200),
    });
    expect(spec.tags).toHaveLength(20);
  });

  it("allows a tab in a header value", () => {
    const spec = validateEnqueue({ url: GOOD_URL, headers: { "X-A": "a\tb" } }, limits, NOW);
    expect(spec.headers).toEqual({ "X-A": "a\tb" });
  });

  it("rejects a body over maxBodyBytes whether bytes or JSON", () => {
    const small = { ...limits, maxBodyBytes: 10 };
    const bytes = { kind: "bytes", bytes: new Uint8Array(11) } as const;
    const json = { kind: "json", value: { message: "hello" } } as const; // 19 bytes as JSON
    const text = { kind: "json", value: "ééééé" } as const; // 10 bytes: at the limit
    expect(invalid(() => validateEnqueue({ url: GOOD_URL, body: bytes }, small, NOW)).field).toBe(
      "body",
    );
    expect(invalid(() => validateEnqueue({ url: GOOD_URL, body: json }, small, NOW)).field).toBe(
      "body",
    );
    expect(validateEnqueue({ url: GOOD_URL, body: text }, small, NOW).body).toEqual(text);
  });

  const bad: { name: string; input: EnqueueInput; field: string }[] = [
    { name: "missing url", input: { url: undefined }, field: "url" },
    { name: "empty url", input: { url: "" }, field: "url" },
    { name: "relative url", input: { url: "/post" }, field: "url" },
    { name: "ftp:// url", input: { url: "ftp://example.com/file" }, field: "url" },
    { name: "javascript: url", input: { url: "javascript:alert(1)" }, field: "url" },
    { name: "file: url", input: { url: "file:///etc/passwd" }, field: "url" },
    {
      name: "url too long",
      input: { url: `https://example.com/${"a".repeat(limits.maxUrlLength)}` },
      field: "url",
    },
    { name: 'unknown method "FETCH"', input: { method: "FETCH" }, field: "method" },
    { name: "header name with a space", input: { headers: { "X Foo": "1" } }, field: "headers" },
    { name: "empty header name", input: { headers: { "": "1" } }, field: "headers" },
    {
      name: "header value with CR/LF",
      input: { headers: { "X-Foo": "a\r\nInjected: yes" } },
      field: "headers.X-Foo",
    },
    {
      name: "header value with LF",
      input: { headers: { "X-Foo": "a\nb" } },
      field: "headers.X-Foo",
    },
    {
      name: "header value with NUL",
      input: { headers: { "X-Foo": "a\0b" } },
      field: "headers.X-Foo",
    },
    {
      name: "headers over JOBQUEUE_MAX_HEADER_BYTES",
      input: { headers: { "X-Foo": "v".repeat(limits.maxHeaderBytes) } },
      field: "headers",
    },
    { name: "Host header", input: { headers: { Host: "evil.example" } }, field: "headers.Host" },
    {
      name: "header value beyond Latin-1",
      input: { headers: { "X-V": "a\u2028b" } },
      field: "headers.X-V",
    },
    {
      name: "Transfer-Encoding header",
      input: { headers: { "transfer-encoding": "chunked" } },
      field: "headers.transfer-encoding",
    },
    {
      name: "Content-Length header",
      input: { headers: { "Content-Length": "5" } },
      field: "headers.Content-Length",
    },
    {
      name: "Connection header",
      input: { headers: { Connection: "close" } },
      field: "headers.Connection",
    },
    {
      name: "the same header twice in two cases",
      input: { headers: { "X-A": "1", "x-a": "2" } },
      field: "headers.x-a",
    },
    {
      name: "secret header name with a space",
      input: { secretHeaders: ["X Bad"] },
      field: "secret_headers",
    },
    { name: "max_redirects 11", input: { maxRedirects: 11 }, field: "max_redirects" },
    {
      name: "rate_limit_key of 201 chars",
      input: { rateLimitKey: "r".repeat(201) },
      field: "rate_limit_key",
    },
    {
      name: "ttl over JOBQUEUE_MAX_TTL_SECONDS",
      input: { ttlSeconds: limits.maxTtlMs / 1000 + 1 },
      field: "ttl_seconds",
    },
    {
      name: "65 headers (JOBQUEUE_MAX_HEADERS)",
      input: {
        headers: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`X-${i}`, "1"])),
      },
      field: "headers",
    },
    { name: "empty param name", input: { params: { "": "1" } }, field: "params" },
    { name: "timeout 0", input: { timeoutSec: 0 }, field: "timeout_sec" },
    { name: "negative timeout", input: { timeoutSec: -5 }, field: "timeout_sec" },
    { name: "timeout above max", input: { timeoutSec: 3601 }, field: "timeout_sec" },
    { name: "NaN timeout", input: { timeoutSec: Number.NaN }, field: "timeout_sec" },
    {
      name: "Infinity timeout",
      input: { timeoutSec: Number.POSITIVE_INFINITY },
      field: "timeout_sec",
    },
    { name: "priority 1.5", input: { priority: 1.5 }, field: "priority" },
    { name: "priority 5000", input: { priority: 5000 }, field: "priority" },
    { name: "priority -1001", input: { priority: -1001 }, field: "priority" },
    { name: "NaN priority", input: { priority: Number.NaN }, field: "priority" },
    { name: "max_attempts 0", input: { maxAttempts: 0 }, field: "max_attempts" },
    { name: "max_attempts 1e9", input: { maxAttempts: 1e9 }, field: "max_attempts" },
    { name: "max_attempts 2.5", input: { maxAttempts: 2.5 }, field: "max_attempts" },
    {
      name: 'backoff_strategy "random"',
      input: { backoffStrategy: "random" },
      field: "backoff_strategy",
    },
    { name: "backoff_seconds -1", input: { backoffSeconds: -1 }, field: "backoff_seconds" },
    {
      name: "backoff_seconds above a day",
      input: { backoffSeconds: 86_401 },
      field: "backoff_seconds",
    },
    {
      name: "NaN backoff_seconds",
      input: { backoffSeconds: Number.NaN },
      field: "backoff_seconds",
    },
    { name: "ttl 0", input: { ttlSeconds: 0 }, field: "ttl_seconds" },
    { name: "negative ttl", input: { ttlSeconds: -1 }, field: "ttl_seconds" },
    { name: "fractional ttl", input: { ttlSeconds: 1.5 }, field: "ttl_seconds" },
    {
      name: "scheduled_at two years ahead",
      input: { scheduledAt: NOW + 2 * 365 * DAY_MS },
      field: "scheduled_at",
    },
    { name: "NaN scheduled_at", input: { scheduledAt: Number.NaN }, field: "scheduled_at" },
    {
      name: "21 tags",
      input: { tags: Array.from({ length: 21 }, (_, i) => `t${i}`) },
      field: "tags",
    },
    { name: "empty tag", input: { tags: ["ok", ""] }, field: "tags" },
    { name: "65-char tag", input: { tags: ["t".repeat(65)] }, field: "tags" },
    { name: "tag with a newline", input: { tags: ["a\nb"] }, field: "tags" },
    {
      name: "idempotency key of 201 chars",
      input: { idempotencyKey: "k".repeat(201) },
      field: "idempotency_key",
    },
    {
      name: "idempotency key with a control character",
      input: { idempotencyKey: "key\u0007" },
      field: "idempotency_key",
    },
    {
      name: "body over maxBodyBytes",
      input: { method: "POST", body: { kind: "bytes", bytes: new Uint8Array(1_048_577) } },
      field: "body",
    },
    {
      name: "body with HEAD",
      input: { method: "HEAD", body: { kind: "json", value: { a: 1 } } },
      field: "body",
    },
    {
      name: "body with lowercase head",
      input: { method: "head", body: { kind: "bytes", bytes: new Uint8Array(1) } },
      field: "body",
    },
    {
      name: "body with GET",
      input: { method: "GET", body: { kind: "json", value: { a: 1 } } },
      field: "body",
    },
    {
      name: "an empty body with get",
      input: { method: "get", body: { kind: "bytes", bytes: new Uint8Array(0) } },
      field: "body",
    },
    {
      name: "credentials in the URL and an Authorization header",
      input: { url: "https://u:p@example.com/", headers: { AUTHORIZATION: "Bearer x" } },
      field: "url",
    },
    {
      name: "credentials in the URL that are not valid percent-encoding",
      input: { url: "https://u:%E0%A4%A@example.com/" },
      field: "url",
    },
    {
      name: "credentials in the URL with a control character",
      input: { url: "https://u:a%0Ab@example.com/" },
      field: "url",
    },
  ];

  it.each(bad)("rejects $name (field $field)", ({ input, field }) => {
    const err = invalid(() => validateEnqueue({ url: GOOD_URL, ...input }, limits, NOW));
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
  });

  it("names the setting to raise when the body is too large", () => {
    const input = {
      url: GOOD_URL,
      method: "POST",
      body: { kind: "bytes", bytes: new Uint8Array(11) },
    };
    const err = invalid(() =>
      validateEnqueue(input as EnqueueInput, { ...limits, maxBodyBytes: 10 }, NOW),
    );
    expect(err.message).toContain("JOBQUEUE_MAX_BODY_BYTES");
  });

  it("names the setting that bounds timeout_sec", () => {
    const err = invalid(() => validateEnqueue({ url: GOOD_URL, timeoutSec: 3601 }, limits, NOW));
    expect(err.message).toContain("JOBQUEUE_MAX_TIMEOUT");
  });
});

describe("credentials in the URL", () => {
  it.each([
    ["https://ann:s3cret@example.com/a?b=1", "https://example.com/a?b=1", "ann:s3cret"],
    ["https://ann@example.com/", "https://example.com/", "ann:"],
    ["https://:tok@example.com/", "https://example.com/", ":tok"],
    ["https://a%40b.c:p%3Aq%20r@example.com:8443/", "https://example.com:8443/", "a@b.c:p:q r"],
    ["https://j%C3%B6rg:%E2%82%AC@example.com/", "https://example.com/", "jörg:€"],
  ])(
    "%s: the URL loses them, a sealed Authorization: Basic header carries them",
    (url, bare, pair) => {
      const spec = validateEnqueue({ url, headers: { "X-A": "1" } }, limits, NOW);
      expect(spec.url).toBe(bare);
      expect(spec.headers).toEqual({
        "X-A": "1",
        Authorization: `Basic ${Buffer.from(pair, "utf8").toString("base64")}`,
      });
      expect(spec.secretHeaderNames).toEqual(["Authorization"]);
    },
  );

  it("counts the header they become against the header limits", () => {
    const err = invalid(() =>
      validateEnqueue(
        { url: "https://u:p@example.com/", headers: { "X-A": "1" } },
        { ...limits, maxHeaders: 1 },
        NOW,
      ),
    );
    expect(err.field).toBe("headers");
  });
});

describe("a body and the method", () => {
  it("a body without a method makes a POST; without a body the method is GET", () => {
    const body = { kind: "json", value: { a: 1 } } as const;
    expect(validateEnqueue({ url: GOOD_URL, body }, limits, NOW).method).toBe("POST");
    expect(validateEnqueue({ url: GOOD_URL, method: "", body }, limits, NOW).method).toBe("POST");
    expect(validateEnqueue({ url: GOOD_URL }, limits, NOW).method).toBe("GET");
    expect(validateEnqueue({ url: GOOD_URL, body: null }, limits, NOW).method).toBe("GET");
  });

  it.each(["DELETE", "OPTIONS", "PUT", "PATCH", "POST"])("%s may carry a body", (method) => {
    const body = { kind: "json", value: "x" } as const;
    expect(validateEnqueue({ url: GOOD_URL, method, body }, limits, NOW).body).toEqual(body);
  });
});

describe("validateJobId", () => {
  const ULID = "01KB6Q7W0R8J6W4PZ8RZ1Q3M0E";

  it.each([
    { id: `j_${ULID}`, expected: `j_${ULID}` },
    { id: `j_${ULID.toLowerCase()}`, expected: `j_${ULID}` },
    { id: `J_${ULID}`, expected: `j_${ULID}` },
  ])("accepts $id as $expected", ({ id, expected }) => {
    expect(validateJobId(id)).toBe(expected);
  });

  it.each([
    "",
    "123",
    "j_short",
    ULID,
    `j_${ULID}X`,
    `j_${ULID.slice(0, 25)}`,
    // I, L, O and U are not in the ULID alphabet.
    `j_${ULID.slice(0, 25)}U`,
    `x_${ULID}`,
  ])("rejects %j", (id) => {
    expect(invalid(() => validateJobId(id)).field).toBe("job_id");
  });
});

describe("callback_url, sign and signing_secret", () => {
  const secret = `whsec_${Buffer.alloc(32, 7).toString("base64")}`;

  it("takes a callback URL checked like url, and a signing secret that implies sign", () => {
    expect(
      validateEnqueue({ url: GOOD_URL, callbackUrl: "https://hooks.example/done" }, limits, NOW),
    ).toMatchObject({ callbackUrl: "https://hooks.example/done", sign: false, signingSecrets: [] });
    expect(
      validateEnqueue({ url: GOOD_URL, signingSecret: `${secret} ${secret}` }, limits, NOW),
    ).toMatchObject({ callbackUrl: null, sign: true, signingSecrets: [secret, secret] });
    expect(validateEnqueue({ url: GOOD_URL, sign: true }, limits, NOW)).toMatchObject({
      sign: true,
    });
  });

  it.each([
    ["ftp://example.com/x", /scheme "ftp" is not allowed/],
    ["/relative", /is not an absolute URL/],
    [`https://example.com/${"x".repeat(9000)}`, /is longer than/],
    ["https://u:p@example.com/x", /carries credentials/],
  ])("refuses callback_url %s, naming it", (callbackUrl, problem) => {
    const err = invalid(() => validateEnqueue({ url: GOOD_URL, callbackUrl }, limits, NOW));
    expect(err.field).toBe("callback_url");
    expect(err.problem).toMatch(problem);
  });

  it("refuses a callback_url the outbound policy refuses", () => {
    const strict: JobLimits = {
      ...limits,
      refuseDestination: (url) => (url.hostname === "10.0.0.1" ? "private (10.0.0.0/8)" : null),
    };
    const err = invalid(() =>
      validateEnqueue({ url: GOOD_URL, callbackUrl: "http://10.0.0.1/x" }, strict, NOW),
    );
    expect(err.field).toBe("callback_url");
  });

  it("refuses a signing secret that is not whsec_<base64>, without repeating it", () => {
    const err = invalid(() =>
      validateEnqueue({ url: GOOD_URL, signingSecret: "hunter2-hunter2" }, limits, NOW),
    );
    expect(err.field).toBe("signing_secret");
    expect(err.message).not.toContain("hunter2");
  });
});
