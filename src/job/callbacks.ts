import { bucketOf } from "./rate-limits.js";
import { presentResponseBody } from "./response-body.js";
import { isTerminal, type Job, type JobResult, type JsonValue, type NewJob } from "./types.js";

/**
 * Callbacks: a job with a callback URL that reaches a terminal status (succeeded, failed,
 * canceled) gets a delivery job, created in the same transaction as that transition (so an
 * acknowledged outcome cannot be lost): a POST of the job's outcome, the JSON that
 * `GET /jobs/{job_id}/result` answers, to the callback URL. The delivery is a job like any other
 * (retried with backoff, under the outbound policy, listed, cancelable), tagged `callback` and
 * linked both ways (its `callbackOf`, the source's `callbackJobId`). A delivery never gets a
 * callback of its own, so nothing loops.
 *
 * Drivers call {@link terminalTransition} after writing a terminal status (and its result) and
 * write what it returns; they decide nothing themselves.
 */

/** How deliveries are made; from the server's settings (README: Callbacks and signed calls). */
export interface CallbackSettings {
  /** The delivered JSON at most, in bytes (JOBQUEUE_CALLBACK_MAX_BYTES). */
  maxBytes: number;
  /** Attempts of a delivery (JOBQUEUE_CALLBACK_MAX_ATTEMPTS). */
  maxAttempts: number;
  /** Bound on one delivery attempt (JOBQUEUE_DEFAULT_TIMEOUT). */
  timeoutMs: number;
  /** Exponential backoff base between attempts (JOBQUEUE_DEFAULT_BACKOFF_SECONDS). */
  backoffBaseMs: number;
}

export const DEFAULT_CALLBACK_SETTINGS: CallbackSettings = {
  maxBytes: 65_536,
  maxAttempts: 5,
  timeoutMs: 30_000,
  backoffBaseMs: 1_000,
};

/** The tag every delivery job carries. */
export const CALLBACK_TAG = "callback";

/** The JSON of `GET /jobs/{job_id}/result` (REST), field for field. */
export type ResultJson = { [key: string]: JsonValue };

/**
 * A job's outcome as REST shows it at `GET /jobs/{job_id}/result`: snake_case names, lowercase
 * status, RFC 3339 times, null for what is unset. (test/job/callbacks.test.ts holds it equal to
 * the transport's encoding.)
 */
export function resultJson(job: Job, result: JobResult | null): ResultJson {
  const response = result?.response ?? null;
  const body = response ? presentResponseBody(response.body, response.bodyEncoding) : null;
  return {
    job_id: job.id,
    status: job.status,
    response_status: response?.status ?? null,
    response_headers: response?.headers ?? {},
    response_body: body ? body.value : null,
    response_body_encoding: body ? body.encoding : null,
    truncated: response?.truncated ?? false,
    error: result?.error ?? null,
    duration_ms: result?.durationMs ?? null,
    attempt: result?.attempt ?? 0,
    finished_at: result ? rfc3339(result.finishedAt) : null,
  };
}

/**
 * The delivered JSON: {@link resultJson}, within `maxBytes`. When it is larger, the response
 * body is left out (and `truncated` set), then the response headers, then the error is cut:
 * the receiver reads the whole result with `GET /jobs/{job_id}/result`.
 */
export function callbackBody(job: Job, result: JobResult | null, maxBytes: number): ResultJson {
  const json = resultJson(job, result);
  const fits = () => Buffer.byteLength(JSON.stringify(json)) <= maxBytes;
  if (fits()) return json;
  json.response_body = null;
  json.truncated = true;
  if (fits()) return json;
  json.response_headers = {};
  if (fits()) return json;
  if (typeof json.error === "string") json.error = json.error.slice(0, 256);
  return json;
}

/** What a terminal transition creates besides itself. */
export interface TerminalEffects {
  /** The delivery job to insert, with the source's `callbackJobId` set to its id; or null. */
  callback: NewJob | null;
}

/** Whether a job reports its outcome when it ends: it has a callback URL and is no delivery. */
export function reportsOutcome(job: Pick<Job, "callbackUrl" | "callbackOf">): boolean {
  return job.callbackUrl !== null && job.callbackOf === null;
}

/**
 * What a job's terminal transition creates: a delivery job when the job has a callback URL and is
 * not itself a delivery. `job` is the job as it is after the transition, `result` its latest
 * result (as `GET /jobs/{job_id}/result` would read it), `id` the delivery's id if one is made.
 */
export function terminalTransition(p: {
  job: Job;
  result: JobResult | null;
  id: string;
  now: number;
  settings: CallbackSettings;
}): TerminalEffects {
  const { job, settings } = p;
  if (!isTerminal(job.status) || !reportsOutcome(job) || job.callbackUrl === null) {
    return { callback: null };
  }
  // A job retried after it ended reports each ending; its callbackJobId names the latest.
  const url = job.callbackUrl;
  const host = new URL(url).hostname.toLowerCase();
  return {
    callback: {
      id: p.id,
      createdAt: p.now,
      runAt: p.now,
      scheduledAt: null,
      queue: job.queue,
      method: "POST",
      url,
      headers: { "content-type": "application/json" },
      secretHeaderNames: [],
      sealedHeaders: null,
      params: {},
      body: { kind: "json", value: callbackBody(job, p.result, settings.maxBytes) },
      timeoutMs: settings.timeoutMs,
      priority: job.priority,
      maxAttempts: settings.maxAttempts,
      backoffStrategy: "exponential",
      backoffBaseMs: settings.backoffBaseMs,
      ttlMs: job.ttlMs,
      tags: [CALLBACK_TAG],
      idempotencyKey: null,
      requestHash: null,
      followRedirects: false,
      maxRedirects: 5,
      rateLimitKey: null,
      bucket: bucketOf(host, null),
      host,
      owner: job.owner,
      callbackUrl: null,
      // Signed when a secret is known: the source's own (sealed for the source), or its owner's.
      sign: true,
      sealedSigningSecret: job.sealedSigningSecret,
      callbackOf: job.id,
    },
  };
}

/** RFC 3339 in UTC as protobuf's JSON writes a millisecond time: no fraction when it is 0. */
function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(".000Z", "Z");
}
