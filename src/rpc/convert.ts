import { fromJson, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import {
  AttemptOutcome as AttemptOutcomePb,
  type AttemptSchema,
  type AuditEventSchema,
  BackoffStrategy as BackoffStrategyPb,
  BodyEncoding as BodyEncodingPb,
  type JobSchema,
  JobStatus as JobStatusPb,
  type NodeSchema,
} from "../../gen/jobqueue/v1/job_pb.js";
import type {
  EnqueueJobRequest,
  GetJobResultResponseSchema,
} from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import type { StoredAuditEvent } from "../audit/audit-event.js";
import { InvalidArgumentError } from "../job/errors.js";
import { presentResponseBody } from "../job/response-body.js";
import type {
  Attempt,
  AttemptOutcome,
  BackoffStrategy,
  BodyEncoding,
  Job,
  JobResult,
  JobStatus,
  JsonValue,
} from "../job/types.js";
import type { EnqueueInput } from "../job/validate.js";
import type { NodeInfo } from "../store/job-store.js";

/** Conversions between the generated messages and the domain. Nothing else happens here. */

const STATUS: Record<JobStatus, JobStatusPb> = {
  queued: JobStatusPb.QUEUED,
  running: JobStatusPb.RUNNING,
  succeeded: JobStatusPb.SUCCEEDED,
  failed: JobStatusPb.FAILED,
  canceled: JobStatusPb.CANCELED,
};

const STATUS_FROM_PB = new Map(Object.entries(STATUS).map(([k, v]) => [v, k as JobStatus]));

const BACKOFF: Record<BackoffStrategy, BackoffStrategyPb> = {
  fixed: BackoffStrategyPb.FIXED,
  linear: BackoffStrategyPb.LINEAR,
  exponential: BackoffStrategyPb.EXPONENTIAL,
};

const BACKOFF_FROM_PB = new Map(Object.entries(BACKOFF).map(([k, v]) => [v, k]));

const ENCODING: Record<BodyEncoding, BodyEncodingPb> = {
  json: BodyEncodingPb.JSON,
  text: BodyEncodingPb.TEXT,
  base64: BodyEncodingPb.BASE64,
};

const OUTCOME: Record<AttemptOutcome, AttemptOutcomePb> = {
  running: AttemptOutcomePb.RUNNING,
  succeeded: AttemptOutcomePb.SUCCEEDED,
  failed: AttemptOutcomePb.FAILED,
  canceled: AttemptOutcomePb.CANCELED,
  interrupted: AttemptOutcomePb.INTERRUPTED,
  lost: AttemptOutcomePb.LOST,
};

/** What a secret header's value reads as. */
export const MASK = "***";

function ts(ms: number | null): Timestamp | undefined {
  return ms === null ? undefined : timestampFromMs(ms);
}

export function statusToPb(status: JobStatus): JobStatusPb {
  return STATUS[status];
}

/** Statuses from a request; an unknown number reads as a string the validator will name. */
export function statusesFromPb(values: JobStatusPb[]): JobStatus[] | string {
  const out: JobStatus[] = [];
  for (const v of values) {
    const s = STATUS_FROM_PB.get(v);
    if (!s) return String(v);
    out.push(s);
  }
  return out;
}

export function enqueueInputFromPb(req: EnqueueJobRequest): EnqueueInput {
  let body: EnqueueInput["body"] = null;
  if (req.payload.case === "body") {
    let value: JsonValue;
    try {
      value = toJson(ValueSchema, req.payload.value) as JsonValue;
    } catch (err) {
      // Binary protobuf can say what JSON cannot: a Value of no kind, NaN, Infinity.
      throw new InvalidArgumentError("body", `is not a JSON value (${(err as Error).message})`);
    }
    body = value === null ? null : { kind: "json", value };
  } else if (req.payload.case === "bodyBytes") {
    body = { kind: "bytes", bytes: req.payload.value };
  }
  return {
    method: req.method,
    url: req.url,
    headers: req.headers,
    params: req.params,
    body,
    timeoutSec: req.timeoutSec,
    priority: req.priority,
    maxAttempts: req.maxAttempts,
    backoffStrategy:
      req.backoffStrategy === BackoffStrategyPb.UNSPECIFIED
        ? undefined
        : (BACKOFF_FROM_PB.get(req.backoffStrategy) ?? String(req.backoffStrategy)),
    backoffSeconds: req.backoffSeconds,
    scheduledAt: req.scheduledAt ? timestampMs(req.scheduledAt) : null,
    ttlSeconds: req.ttlSeconds,
    tags: req.tags,
    idempotencyKey: req.idempotencyKey,
    secretHeaders: req.secretHeaders,
    followRedirects: req.followRedirects,
    maxRedirects: req.maxRedirects,
    rateLimitKey: req.rateLimitKey,
  };
}

export function jobToPb(job: Job): MessageInitShape<typeof JobSchema> {
  return {
    jobId: job.id,
    status: STATUS[job.status],
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    priority: job.priority,
    scheduledAt: ts(job.scheduledAt),
    createdAt: ts(job.createdAt),
    startedAt: ts(job.startedAt),
    finishedAt: ts(job.finishedAt),
    method: job.method,
    url: job.url,
    timeoutSec: job.timeoutMs / 1000,
    tags: job.tags,
    // Secret headers are shown by name only, on every read and every protocol.
    headers: { ...job.headers, ...Object.fromEntries(job.secretHeaderNames.map((n) => [n, MASK])) },
    secretHeaders: job.secretHeaderNames,
    followRedirects: job.followRedirects,
    maxRedirects: job.maxRedirects,
    rateLimitKey: job.rateLimitKey ?? undefined,
    owner: job.owner ?? undefined,
    params: job.params,
    payload:
      job.body === null
        ? { case: undefined }
        : job.body.kind === "bytes"
          ? { case: "bodyBytes", value: job.body.bytes }
          : { case: "body", value: fromJson(ValueSchema, job.body.value) },
    backoffStrategy: BACKOFF[job.backoffStrategy],
    backoffSeconds: job.backoffBaseMs / 1000,
    ttlSeconds: job.ttlMs === null ? undefined : Math.round(job.ttlMs / 1000),
    nextRunAt: job.status === "queued" ? ts(job.runAt) : undefined,
    expiresAt: ts(job.expiresAt),
    idempotencyKey: job.idempotencyKey ?? undefined,
    lastError: job.lastError ?? undefined,
    updatedAt: ts(job.updatedAt),
  };
}

export function attemptToPb(a: Attempt): MessageInitShape<typeof AttemptSchema> {
  return {
    attempt: a.attempt,
    outcome: OUTCOME[a.outcome],
    startedAt: ts(a.startedAt),
    finishedAt: ts(a.finishedAt),
    responseStatus: a.responseStatus ?? undefined,
    errorCode: a.errorCode ?? undefined,
    error: a.error ?? undefined,
    durationMs: a.durationMs ?? undefined,
    retryable: a.retryable,
    node: a.node ?? undefined,
  };
}

export function nodeToPb(n: NodeInfo): MessageInitShape<typeof NodeSchema> {
  return {
    nodeId: n.id,
    startedAt: ts(n.startedAt),
    heartbeatAt: ts(n.heartbeatAt),
    version: n.version,
    concurrency: n.concurrency,
    inFlight: n.inFlight,
    leader: n.leader,
  };
}

export function resultToPb(
  job: Job,
  result: JobResult | null,
): MessageInitShape<typeof GetJobResultResponseSchema> {
  const response = result?.response ?? null;
  const body = response ? presentResponseBody(response.body, response.bodyEncoding) : null;
  return {
    jobId: job.id,
    status: STATUS[job.status],
    responseStatus: response?.status,
    responseHeaders: response?.headers ?? {},
    responseBody: body ? fromJson(ValueSchema, body.value) : undefined,
    responseBodyEncoding: body ? ENCODING[body.encoding] : BodyEncodingPb.UNSPECIFIED,
    truncated: response?.truncated ?? false,
    error: result?.error ?? undefined,
    durationMs: result?.durationMs,
    attempt: result?.attempt ?? 0,
    finishedAt: result ? ts(result.finishedAt) : undefined,
  };
}

export function auditToPb(e: StoredAuditEvent): MessageInitShape<typeof AuditEventSchema> {
  return {
    id: BigInt(e.id),
    time: timestampFromMs(e.at),
    principal: e.principal ?? undefined,
    action: e.action,
    jobId: e.jobId ?? undefined,
    remoteAddress: e.remoteAddress ?? undefined,
    protocol: e.protocol,
    outcome: e.outcome,
    detail: e.detail ?? undefined,
  };
}
