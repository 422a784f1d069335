import { InvalidArgumentError } from "./errors.js";
import { fitsAsJson, JSON_BODY_MAX_DEPTH, JSON_BODY_MAX_VALUES } from "./response-body.js";
import { parseSigningSecrets } from "./signing.js";
import {
  BACKOFF_STRATEGIES,
  type BackoffStrategy,
  HTTP_METHODS,
  type HttpMethod,
  type JobSpec,
  type RequestBody,
} from "./types.js";

/** A submit as it arrives from any transport, before validation. Absent means "use the default". */
export interface EnqueueInput {
  method?: string;
  url?: string;
  headers?: Record<string, string>;
  /** Names of further headers to treat as secrets. */
  secretHeaders?: string[];
  params?: Record<string, string>;
  body?: RequestBody | null;
  timeoutSec?: number;
  priority?: number;
  maxAttempts?: number;
  backoffStrategy?: string;
  backoffSeconds?: number;
  /** Epoch milliseconds. */
  scheduledAt?: number | null;
  ttlSeconds?: number;
  tags?: string[];
  idempotencyKey?: string;
  followRedirects?: boolean;
  maxRedirects?: number;
  rateLimitKey?: string;
  /** The named queue; default `default`. */
  queue?: string;
  /** Where the outcome is POSTed when the job ends. */
  callbackUrl?: string;
  /** Sign the job's own call (Standard Webhooks). */
  sign?: boolean;
  /** The job's own signing secrets, `whsec_…`, separated by spaces. */
  signingSecret?: string;
}

/** Server-side defaults and bounds for a submit; each bound names the setting that sets it. */
export interface JobLimits {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  defaultMaxAttempts: number;
  defaultBackoffStrategy: BackoffStrategy;
  defaultBackoffBaseMs: number;
  /** null keeps finished jobs. */
  defaultTtlMs: number | null;
  maxTtlMs: number;
  maxBodyBytes: number;
  maxUrlLength: number;
  maxHeaders: number;
  /** Names and values of all headers together. */
  maxHeaderBytes: number;
  maxTags: number;
  maxTagLength: number;
  /**
   * The outbound policy's verdict on a destination that can be judged without DNS (an IP literal,
   * a denied or local name): a reason to refuse it, or null.
   */
  refuseDestination?: (url: URL) => string | null;
}

/** Fixed bounds, not worth a setting each. */
export const LIMITS = {
  paramCount: 100,
  priorityMin: -1000,
  priorityMax: 1000,
  maxAttemptsMax: 100,
  backoffSecondsMax: 86_400,
  scheduleAheadMaxMs: 366 * 86_400_000,
  idempotencyKeyMaxLength: 200,
  rateLimitKeyMaxLength: 200,
  maxRedirectsDefault: 5,
  maxRedirectsMax: 10,
} as const;

/** Headers that are secrets whatever the job says. */
export const DEFAULT_SECRET_HEADERS = [
  "authorization",
  "proxy-authorization",
  "cookie",
  "x-api-key",
];

/**
 * Headers a job may not set: the client (undici) sets them from the URL and the body, and letting
 * a job set them invites request smuggling or a mismatch between the connection and the request.
 */
export const FORBIDDEN_HEADERS = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
  "expect",
]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: the range starts at NUL on purpose
const NOT_LATIN1 = /[^\u0000-\u00ff]/;

/**
 * Turns a submit into a complete, valid job spec, or throws {@link InvalidArgumentError} naming the
 * first field that is wrong. Pure: `now` is the only notion of time.
 */
export function validateEnqueue(input: EnqueueInput, limits: JobLimits, now: number): JobSpec {
  const body = input.body ?? null;
  // Like curl -d: a body without a method is a POST. A GET or HEAD that names its method and
  // carries a body is refused: servers and proxies ignore or reject such bodies.
  const method = validateMethod(input.method, body !== null ? "POST" : "GET");
  const target = parseUrl(input.url, limits);
  const { url, credentials } = splitCredentials(target);
  const given = input.headers ?? {};
  if (credentials !== null) {
    const other = Object.keys(given).find((n) => n.toLowerCase() === "authorization");
    if (other !== undefined) {
      throw new InvalidArgumentError(
        "url",
        `carries credentials (user:password@) and headers set ${other} too; send one of them`,
      );
    }
  }
  // Credentials in the URL become a sealed Authorization header, so that they are never stored,
  // shown or logged in clear with the URL.
  const headers = validateHeaders(
    credentials === null ? given : { ...given, Authorization: credentials },
    limits,
  );
  const secretHeaderNames = validateSecretNames(input.secretHeaders ?? [], headers, limits);
  const params = validateParams(input.params ?? {});
  if (body !== null) {
    if (method === "GET" || method === "HEAD") {
      throw new InvalidArgumentError(
        "body",
        `a ${method} request cannot carry a body; use POST, PUT or PATCH (or leave method out: a job with a body defaults to POST)`,
      );
    }
    const text = body.kind === "json" ? jsonText(body.value) : null;
    const size = body.kind === "bytes" ? body.bytes.byteLength : Buffer.byteLength(text ?? "");
    if (size > limits.maxBodyBytes) {
      throw new InvalidArgumentError(
        "body",
        `is ${size} bytes; at most ${limits.maxBodyBytes} (JOBQUEUE_MAX_BODY_BYTES)`,
      );
    }
    // A job is read back with its body as JSON: it must stay readable by every client.
    if (
      body.kind === "json" &&
      typeof body.value !== "string" &&
      !fitsAsJson(Buffer.from(text ?? ""))
    ) {
      throw new InvalidArgumentError(
        "body",
        `nests deeper than ${JSON_BODY_MAX_DEPTH} levels or holds more than ${JSON_BODY_MAX_VALUES} values; send it as body_bytes or a string`,
      );
    }
  }

  const timeoutMs =
    input.timeoutSec === undefined
      ? limits.defaultTimeoutMs
      : secondsToMs("timeout_sec", input.timeoutSec, {
          min: 0.001,
          max: limits.maxTimeoutMs / 1000,
          setting: "JOBQUEUE_MAX_TIMEOUT",
        });

  const priority = integerIn(
    "priority",
    input.priority ?? 0,
    LIMITS.priorityMin,
    LIMITS.priorityMax,
  );
  const maxAttempts = integerIn(
    "max_attempts",
    input.maxAttempts ?? limits.defaultMaxAttempts,
    1,
    LIMITS.maxAttemptsMax,
  );

  let backoffStrategy = limits.defaultBackoffStrategy;
  if (input.backoffStrategy !== undefined && input.backoffStrategy !== "") {
    const s = input.backoffStrategy.toLowerCase();
    if (!(BACKOFF_STRATEGIES as readonly string[]).includes(s)) {
      throw new InvalidArgumentError(
        "backoff_strategy",
        `unknown strategy ${JSON.stringify(input.backoffStrategy)}; use one of ${BACKOFF_STRATEGIES.join(", ")}`,
      );
    }
    backoffStrategy = s as BackoffStrategy;
  }
  const backoffBaseMs =
    input.backoffSeconds === undefined
      ? limits.defaultBackoffBaseMs
      : secondsToMs("backoff_seconds", input.backoffSeconds, {
          min: 0,
          max: LIMITS.backoffSecondsMax,
        });

  let scheduledAt: number | null = null;
  if (input.scheduledAt !== undefined && input.scheduledAt !== null) {
    if (!Number.isFinite(input.scheduledAt)) {
      throw new InvalidArgumentError("scheduled_at", "is not a valid time");
    }
    if (input.scheduledAt > now + LIMITS.scheduleAheadMaxMs) {
      throw new InvalidArgumentError("scheduled_at", "is more than a year ahead");
    }
    scheduledAt = Math.round(input.scheduledAt);
  }

  const ttlMs =
    input.ttlSeconds === undefined
      ? limits.defaultTtlMs
      : integerIn(
          "ttl_seconds",
          input.ttlSeconds,
          1,
          limits.maxTtlMs / 1000,
          "JOBQUEUE_MAX_TTL_SECONDS",
        ) * 1000;

  const tags = validateTags(input.tags ?? [], limits);
  const idempotencyKey = optionalKey(
    "idempotency_key",
    input.idempotencyKey,
    LIMITS.idempotencyKeyMaxLength,
  );
  const rateLimitKey = optionalKey(
    "rate_limit_key",
    input.rateLimitKey,
    LIMITS.rateLimitKeyMaxLength,
  );

  const followRedirects = input.followRedirects ?? false;
  const maxRedirects =
    input.maxRedirects === undefined || input.maxRedirects === 0
      ? LIMITS.maxRedirectsDefault
      : integerIn("max_redirects", input.maxRedirects, 1, LIMITS.maxRedirectsMax);

  const queue = validateQueueName(input.queue);

  const callbackUrl =
    input.callbackUrl === undefined || input.callbackUrl === ""
      ? null
      : validateCallbackUrl(input.callbackUrl, limits);
  const signingSecrets =
    input.signingSecret === undefined || input.signingSecret === ""
      ? []
      : parseSigningSecrets(input.signingSecret, "signing_secret");

  return {
    callbackUrl,
    sign: input.sign === true || signingSecrets.length > 0,
    signingSecrets,
    queue,
    method,
    url,
    host: target.hostname.toLowerCase(),
    headers,
    secretHeaderNames,
    params,
    body,
    timeoutMs,
    priority,
    maxAttempts,
    backoffStrategy,
    backoffBaseMs,
    scheduledAt,
    ttlMs,
    tags,
    idempotencyKey,
    followRedirects,
    maxRedirects,
    rateLimitKey,
  };
}

/** The queue every job is in unless it names another; it always exists. */
export const DEFAULT_QUEUE = "default";

/** Names: lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit. */
const QUEUE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** A queue's name, or `default` when none is given. */
export function validateQueueName(raw: string | undefined, field = "queue"): string {
  if (raw === undefined || raw === "") return DEFAULT_QUEUE;
  if (!QUEUE_NAME.test(raw)) {
    throw new InvalidArgumentError(
      field,
      `${JSON.stringify(raw)} is not a queue name: 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return raw;
}

function validateMethod(raw: string | undefined, fallback: HttpMethod): HttpMethod {
  if (raw === undefined || raw === "") return fallback;
  const m = raw.toUpperCase();
  if (!(HTTP_METHODS as readonly string[]).includes(m)) {
    throw new InvalidArgumentError(
      "method",
      `unknown method ${JSON.stringify(raw)}; use one of ${HTTP_METHODS.join(", ")}`,
    );
  }
  return m as HttpMethod;
}

/**
 * Checks a URL a job will call: absolute, http or https, short enough, allowed by the policy.
 * Returns it parsed (parsing is the dear part: the enqueue reads its host and credentials from
 * this one parse).
 */
function parseUrl(raw: string | undefined, limits: JobLimits, field = "url"): URL {
  if (raw === undefined || raw === "") throw new InvalidArgumentError(field, "is required");
  if (raw.length > limits.maxUrlLength) {
    throw new InvalidArgumentError(
      field,
      `is longer than ${limits.maxUrlLength} characters (JOBQUEUE_MAX_URL_LENGTH)`,
    );
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidArgumentError(field, `is not an absolute URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError(
      field,
      `scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not allowed; use http or https`,
    );
  }
  if (url.hostname === "") throw new InvalidArgumentError(field, "has no host");
  const refusal = limits.refuseDestination?.(url);
  if (refusal) throw new InvalidArgumentError(field, refusal);
  return url;
}

/**
 * Checks a callback URL as {@link parseUrl} checks a job's URL (the field named
 * `callback_url`). Credentials in it are refused: a delivery has no secret headers to carry them.
 */
export function validateCallbackUrl(raw: string, limits: JobLimits): string {
  const url = parseUrl(raw, limits, "callback_url");
  if (url.username !== "" || url.password !== "") {
    throw new InvalidArgumentError(
      "callback_url",
      "carries credentials (user:password@); verify deliveries by their signature instead",
    );
  }
  return url.href;
}

/**
 * Takes `user:password@` out of a URL: returns the URL without it and, if it had any, the
 * `Basic` credentials (RFC 7617) it stood for, percent-decoded. Changes `url` when it had them.
 */
export function splitCredentials(url: URL): { url: string; credentials: string | null } {
  if (url.username === "" && url.password === "") return { url: url.href, credentials: null };
  let pair: string;
  try {
    pair = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
  } catch {
    throw new InvalidArgumentError(
      "url",
      "has credentials (user:password@) that are not valid percent-encoding",
    );
  }
  if (CONTROL.test(pair)) {
    throw new InvalidArgumentError(
      "url",
      "has credentials (user:password@) with control characters",
    );
  }
  url.username = "";
  url.password = "";
  return { url: url.href, credentials: `Basic ${Buffer.from(pair, "utf8").toString("base64")}` };
}

function validateHeaders(
  headers: Record<string, string>,
  limits: JobLimits,
): Record<string, string> {
  const entries = Object.entries(headers);
  if (entries.length > limits.maxHeaders) {
    throw new InvalidArgumentError(
      "headers",
      `has ${entries.length} headers; at most ${limits.maxHeaders} (JOBQUEUE_MAX_HEADERS)`,
    );
  }
  const seen = new Set<string>();
  let bytes = 0;
  for (const [name, value] of entries) {
    if (!TOKEN.test(name)) {
      throw new InvalidArgumentError(
        "headers",
        `${JSON.stringify(name)} is not a valid header name`,
      );
    }
    const lower = name.toLowerCase();
    if (FORBIDDEN_HEADERS.has(lower)) {
      throw new InvalidArgumentError(
        `headers.${name}`,
        "may not be set by a job: the server sets it from the URL and the body",
      );
    }
    if (seen.has(lower)) {
      throw new InvalidArgumentError(
        `headers.${name}`,
        "is given twice (names are case-insensitive)",
      );
    }
    seen.add(lower);
    if (typeof value !== "string") {
      throw new InvalidArgumentError(`headers.${name}`, "must be a string");
    }
    if (CONTROL.test(value.replaceAll("\t", " "))) {
      throw new InvalidArgumentError(
        `headers.${name}`,
        "contains control characters (CR, LF, NUL)",
      );
    }
    if (NOT_LATIN1.test(value)) {
      throw new InvalidArgumentError(
        `headers.${name}`,
        "contains characters HTTP headers cannot carry (beyond Latin-1); encode the value",
      );
    }
    bytes += name.length + value.length;
  }
  if (bytes > limits.maxHeaderBytes) {
    throw new InvalidArgumentError(
      "headers",
      `hold ${bytes} bytes; at most ${limits.maxHeaderBytes} (JOBQUEUE_MAX_HEADER_BYTES)`,
    );
  }
  return { ...headers };
}

/** The names (as given) of the headers that are secrets: the defaults and the job's own. */
function validateSecretNames(
  extra: string[],
  headers: Record<string, string>,
  limits: JobLimits,
): string[] {
  if (extra.length > limits.maxHeaders) {
    throw new InvalidArgumentError(
      "secret_headers",
      `has more than ${limits.maxHeaders} names (JOBQUEUE_MAX_HEADERS)`,
    );
  }
  for (const name of extra) {
    if (typeof name !== "string" || !TOKEN.test(name)) {
      throw new InvalidArgumentError(
        "secret_headers",
        `${JSON.stringify(name)} is not a valid header name`,
      );
    }
  }
  const secret = new Set([...DEFAULT_SECRET_HEADERS, ...extra.map((n) => n.toLowerCase())]);
  return Object.keys(headers).filter((n) => secret.has(n.toLowerCase()));
}

function validateParams(params: Record<string, string>): Record<string, string> {
  const entries = Object.entries(params);
  if (entries.length > LIMITS.paramCount) {
    throw new InvalidArgumentError("params", `has more than ${LIMITS.paramCount} entries`);
  }
  for (const [name, value] of entries) {
    if (name === "") throw new InvalidArgumentError("params", "has an empty name");
    if (typeof value !== "string") {
      throw new InvalidArgumentError(`params.${name}`, "must be a string");
    }
  }
  return { ...params };
}

function validateTags(tags: string[], limits: JobLimits): string[] {
  if (tags.length > limits.maxTags) {
    throw new InvalidArgumentError(
      "tags",
      `has ${tags.length} tags; at most ${limits.maxTags} (JOBQUEUE_MAX_TAGS)`,
    );
  }
  for (const tag of tags) {
    if (typeof tag !== "string" || tag === "") {
      throw new InvalidArgumentError("tags", "contains an empty tag");
    }
    if (tag.length > limits.maxTagLength) {
      throw new InvalidArgumentError(
        "tags",
        `tag ${JSON.stringify(tag.slice(0, 20))}… is longer than ${limits.maxTagLength} characters (JOBQUEUE_MAX_TAG_LENGTH)`,
      );
    }
    if (CONTROL.test(tag)) {
      throw new InvalidArgumentError("tags", "a tag contains control characters");
    }
  }
  return [...new Set(tags)];
}

function optionalKey(field: string, value: string | undefined, maxLength: number): string | null {
  if (value === undefined || value === "") return null;
  if (value.length > maxLength) {
    throw new InvalidArgumentError(field, `is longer than ${maxLength} characters`);
  }
  if (CONTROL.test(value)) throw new InvalidArgumentError(field, "contains control characters");
  return value;
}

function integerIn(
  field: string,
  value: number,
  min: number,
  max: number,
  setting?: string,
): number {
  if (!Number.isInteger(value)) throw new InvalidArgumentError(field, "must be an integer");
  if (value < min || value > max) {
    const where = setting ? ` (${setting})` : "";
    throw new InvalidArgumentError(
      field,
      `must be between ${min} and ${max}${where} (got ${value})`,
    );
  }
  return value;
}

function secondsToMs(
  field: string,
  seconds: number,
  bounds: { min: number; max: number; setting?: string },
): number {
  if (!Number.isFinite(seconds)) throw new InvalidArgumentError(field, "must be a finite number");
  if (seconds < bounds.min || seconds > bounds.max) {
    const where = bounds.setting ? ` (${bounds.setting})` : "";
    throw new InvalidArgumentError(
      field,
      `must be between ${bounds.min} and ${bounds.max} seconds${where} (got ${seconds})`,
    );
  }
  return Math.round(seconds * 1000);
}

function jsonText(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value);
}

// A ULID is 26 Crockford base32 characters; the first is at most 7 (128 bits in all).
const JOB_ID = /^j_[0-7][0-9A-HJKMNP-TV-Z]{25}$/i;

/**
 * Checks the form of a job id, so that a typo reads as such rather than as a missing job, and
 * returns it in canonical form (ULIDs are case-insensitive).
 */
export function validateJobId(jobId: string): string {
  if (jobId === "") throw new InvalidArgumentError("job_id", "is required");
  if (!JOB_ID.test(jobId)) {
    throw new InvalidArgumentError("job_id", `${JSON.stringify(jobId)} is not a job id (j_<ULID>)`);
  }
  return `j_${jobId.slice(2).toUpperCase()}`;
}
