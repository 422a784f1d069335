/**
 * The job domain: plain data, no I/O. Times are epoch milliseconds, durations carry their unit.
 */

export const JOB_STATUSES = ["queued", "running", "succeeded", "failed", "canceled"] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses a job never leaves. */
export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set([
  "succeeded",
  "failed",
  "canceled",
]);

export function isTerminal(status: JobStatus): boolean {
  return TERMINAL_STATUSES.has(status);
}

export const HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export const BACKOFF_STRATEGIES = ["fixed", "linear", "exponential"] as const;
export type BackoffStrategy = (typeof BACKOFF_STRATEGIES)[number];

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** A request body as submitted: a JSON value (a string is sent as text) or raw bytes. */
export type RequestBody = { kind: "json"; value: JsonValue } | { kind: "bytes"; bytes: Uint8Array };

/** What a client asks for; validated into a {@link NewJob}. */
export interface JobSpec {
  method: HttpMethod;
  url: string;
  /** The URL's host name, in lowercase. */
  host: string;
  /** Every header as given, secret ones included. */
  headers: Record<string, string>;
  /** Names of the headers in `headers` that are secrets: kept encrypted, shown masked. */
  secretHeaderNames: string[];
  params: Record<string, string>;
  body: RequestBody | null;
  timeoutMs: number;
  priority: number;
  maxAttempts: number;
  backoffStrategy: BackoffStrategy;
  backoffBaseMs: number;
  /** Earliest first run, if the client set one. */
  scheduledAt: number | null;
  /** Keep the job this long after it ends; null keeps it. */
  ttlMs: number | null;
  tags: string[];
  idempotencyKey: string | null;
  /** Follow 3xx redirects, up to `maxRedirects` hops, each checked by the outbound policy. */
  followRedirects: boolean;
  maxRedirects: number;
  /** Jobs with the same key share one rate and concurrency budget instead of their host's. */
  rateLimitKey: string | null;
  /** The named queue it runs in (its settings: concurrency, rate, defaults, paused). */
  queue: string;
  /** Where its outcome is POSTed when it ends (src/job/callbacks.ts), or null. */
  callbackUrl: string | null;
  /** Whether its own call is signed per Standard Webhooks (src/job/signing.ts). */
  sign: boolean;
  /** Its own signing secrets (`whsec_…`), in clear: only until they are sealed. */
  signingSecrets: string[];
}

/** A validated job about to be stored: its secret headers sealed, apart from the others. */
export interface NewJob extends Omit<JobSpec, "headers" | "signingSecrets"> {
  id: string;
  createdAt: number;
  /** When the first attempt may start: scheduledAt or createdAt. */
  runAt: number;
  /** The non-secret headers. */
  headers: Record<string, string>;
  /** The secret headers, encrypted (see src/secrets/secret-box.ts); null when there are none. */
  sealedHeaders: string | null;
  /** The principal that submitted the job; null when the server runs without authentication. */
  owner: string | null;
  /** The budget the job's calls count against: its rate limit key, or its URL's host. */
  bucket: string;
  /**
   * A digest of what was asked for, kept with an idempotency key: a repeated submit with the same
   * key and another request is a conflict, not the first job (src/job/idempotency.ts).
   */
  requestHash: string | null;
  /** The URL's host, lowercase (a filter and a grouping). */
  host: string;
  /**
   * The job's own signing secrets, sealed like secret headers (for the job `callbackOf` names
   * when it is a delivery, which signs with its source's secrets); null when it has none.
   */
  sealedSigningSecret: string | null;
  /** On a callback delivery: the job whose outcome it delivers. */
  callbackOf: string | null;
  /** The schedule that enqueued the job (src/job/schedules.ts), if one did. */
  scheduleId?: string | null;
  /**
   * The schedule's tick (epoch ms) the job runs for; a store keeps one job per schedule and tick.
   * Null for a run triggered by hand.
   */
  scheduleTick?: number | null;
}

/** A stored job. */
export interface Job extends NewJob {
  status: JobStatus;
  attempt: number;
  /** While running: when its lease runs out unless the worker renews it. */
  leaseExpiresAt: number | null;
  /** The error code of the latest failed attempt, if any. */
  lastErrorCode: ErrorCode | null;
  startedAt: number | null;
  finishedAt: number | null;
  expiresAt: number | null;
  lastError: string | null;
  updatedAt: number;
  /** On a job with a callback URL, once it ended: its delivery job. */
  callbackJobId: string | null;
}

export const BODY_ENCODINGS = ["json", "text", "base64"] as const;
export type BodyEncoding = (typeof BODY_ENCODINGS)[number];

/** A response as kept: the body bytes as received (up to the cap) and how to present them. */
export interface StoredResponse {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
  bodyEncoding: BodyEncoding;
  truncated: boolean;
}

/** The latest finished attempt of a job: its response if the target answered, its error if not. */
export interface JobResult {
  jobId: string;
  attempt: number;
  response: StoredResponse | null;
  error: string | null;
  durationMs: number;
  finishedAt: number;
}

export const ATTEMPT_OUTCOMES = [
  "running",
  "succeeded",
  "failed",
  "canceled",
  "interrupted",
  "lost",
] as const;
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number];

/** Machine-readable reasons an attempt did not succeed. */
export type ErrorCode =
  | "http_status"
  | "timeout"
  | "network"
  | "destination_blocked"
  | "too_many_redirects"
  | "secret_unreadable"
  | "canceled"
  | "interrupted"
  | "lease_expired";

export interface Attempt {
  jobId: string;
  attempt: number;
  outcome: AttemptOutcome;
  startedAt: number;
  finishedAt: number | null;
  responseStatus: number | null;
  errorCode: ErrorCode | null;
  error: string | null;
  durationMs: number | null;
  retryable: boolean;
  /** The node that made the call. */
  node: string | null;
}

/** How an attempt ended, as its history row records it. */
export interface AttemptEndRecord {
  outcome: Exclude<AttemptOutcome, "running">;
  responseStatus: number | null;
  errorCode: ErrorCode | null;
  error: string | null;
  retryable: boolean;
  /** Null when nobody measured it (a lost attempt). */
  durationMs: number | null;
}
