import { InvalidArgumentError } from "./errors.js";
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
}

/** Server-side defaults and bounds for a submit. */
export interface JobLimits {
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  defaultMaxAttempts: number;
  defaultBackoffStrategy: BackoffStrategy;
  defaultBackoffBaseMs: number;
  /** null keeps finished jobs. */
  defaultTtlMs: number | null;
  maxBodyBytes: number;
}

export const LIMITS = {
  urlMaxLength: 8192,
  headerCount: 100,
  headerValueMaxLength: 8192,
  paramCount: 100,
  priorityMin: -1000,
  priorityMax: 1000,
  maxAttemptsMax: 100,
  backoffSecondsMax: 86_400,
  ttlSecondsMax: 10 * 365 * 86_400,
  scheduleAheadMaxMs: 366 * 86_400_000,
  tagCount: 20,
  tagMaxLength: 64,
  idempotencyKeyMaxLength: 200,
} as const;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Turns a submit into a complete, valid job spec, or throws {@link InvalidArgumentError} naming the
 * first field that is wrong. Pure: `now` is the only notion of time.
 */
export function validateEnqueue(input: EnqueueInput, limits: JobLimits, now: number): JobSpec {
  const method = validateMethod(input.method);
  const url = validateUrl(input.url);
  const headers = validateHeaders(input.headers ?? {});
  const params = validateParams(input.params ?? {});
  const body = input.body ?? null;
  if (body !== null) {
    if (method === "HEAD")
      throw new InvalidArgumentError("body", "a HEAD request cannot have a body");
    const size = body.kind === "bytes" ? body.bytes.byteLength : jsonSize(body.value);
    if (size > limits.maxBodyBytes) {
      throw new InvalidArgumentError(
        "body",
        `is ${size} bytes; at most ${limits.maxBodyBytes} (JOBQUEUE_MAX_BODY_BYTES)`,
      );
    }
  }

  const timeoutMs =
    input.timeoutSec === undefined
      ? limits.defaultTimeoutMs
      : secondsToMs("timeout_sec", input.timeoutSec, {
          min: 0.001,
          max: limits.maxTimeoutMs / 1000,
          hint: "JOBQUEUE_MAX_TIMEOUT",
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
      : integerIn("ttl_seconds", input.ttlSeconds, 1, LIMITS.ttlSecondsMax) * 1000;

  const tags = validateTags(input.tags ?? []);

  let idempotencyKey: string | null = null;
  if (input.idempotencyKey !== undefined && input.idempotencyKey !== "") {
    if (input.idempotencyKey.length > LIMITS.idempotencyKeyMaxLength) {
      throw new InvalidArgumentError(
        "idempotency_key",
        `is longer than ${LIMITS.idempotencyKeyMaxLength} characters`,
      );
    }
    if (CONTROL.test(input.idempotencyKey)) {
      throw new InvalidArgumentError("idempotency_key", "contains control characters");
    }
    idempotencyKey = input.idempotencyKey;
  }

  return {
    method,
    url,
    headers,
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
  };
}

function validateMethod(raw: string | undefined): HttpMethod {
  if (raw === undefined || raw === "") return "GET";
  const m = raw.toUpperCase();
  if (!(HTTP_METHODS as readonly string[]).includes(m)) {
    throw new InvalidArgumentError(
      "method",
      `unknown method ${JSON.stringify(raw)}; use one of ${HTTP_METHODS.join(", ")}`,
    );
  }
  return m as HttpMethod;
}

function validateUrl(raw: string | undefined): string {
  if (raw === undefined || raw === "") throw new InvalidArgumentError("url", "is required");
  if (raw.length > LIMITS.urlMaxLength) {
    throw new InvalidArgumentError("url", `is longer than ${LIMITS.urlMaxLength} characters`);
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidArgumentError("url", `is not an absolute URL: ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new InvalidArgumentError(
      "url",
      `scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not allowed; use http or https`,
    );
  }
  if (url.hostname === "") throw new InvalidArgumentError("url", "has no host");
  return url.href;
}

function validateHeaders(headers: Record<string, string>): Record<string, string> {
  const entries = Object.entries(headers);
  if (entries.length > LIMITS.headerCount) {
    throw new InvalidArgumentError("headers", `has more than ${LIMITS.headerCount} entries`);
  }
  const out: Record<string, string> = {};
  for (const [name, value] of entries) {
    if (!TOKEN.test(name)) {
      throw new InvalidArgumentError(
        "headers",
        `${JSON.stringify(name)} is not a valid header name`,
      );
    }
    if (typeof value !== "string") {
      throw new InvalidArgumentError(`headers.${name}`, "must be a string");
    }
    if (CONTROL.test(value.replaceAll("\t", " "))) {
      throw new InvalidArgumentError(
        `headers.${name}`,
        "contains control characters (CR, LF, NUL)",
      );
    }
    if (value.length > LIMITS.headerValueMaxLength) {
      throw new InvalidArgumentError(
        `headers.${name}`,
        `is longer than ${LIMITS.headerValueMaxLength} characters`,
      );
    }
    out[name] = value;
  }
  return out;
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

function validateTags(tags: string[]): string[] {
  if (tags.length > LIMITS.tagCount) {
    throw new InvalidArgumentError("tags", `has more than ${LIMITS.tagCount} tags`);
  }
  for (const tag of tags) {
    if (typeof tag !== "string" || tag === "") {
      throw new InvalidArgumentError("tags", "contains an empty tag");
    }
    if (tag.length > LIMITS.tagMaxLength) {
      throw new InvalidArgumentError(
        "tags",
        `tag ${JSON.stringify(tag.slice(0, 20))}… is longer than ${LIMITS.tagMaxLength} characters`,
      );
    }
    if (CONTROL.test(tag))
      throw new InvalidArgumentError("tags", "a tag contains control characters");
  }
  return [...new Set(tags)];
}

function integerIn(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value)) throw new InvalidArgumentError(field, "must be an integer");
  if (value < min || value > max) {
    throw new InvalidArgumentError(field, `must be between ${min} and ${max} (got ${value})`);
  }
  return value;
}

function secondsToMs(
  field: string,
  seconds: number,
  bounds: { min: number; max: number; hint?: string },
): number {
  if (!Number.isFinite(seconds)) throw new InvalidArgumentError(field, "must be a finite number");
  if (seconds < bounds.min || seconds > bounds.max) {
    const where = bounds.hint ? ` (${bounds.hint})` : "";
    throw new InvalidArgumentError(
      field,
      `must be between ${bounds.min} and ${bounds.max} seconds${where} (got ${seconds})`,
    );
  }
  return Math.round(seconds * 1000);
}

function jsonSize(value: unknown): number {
  return Buffer.byteLength(typeof value === "string" ? value : JSON.stringify(value));
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
