import { fromJson, type MessageInitShape, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { GetCallerResponseSchema } from "../../gen/jobqueue/v1/caller_pb.js";
import {
  AttemptOutcome as AttemptOutcomePb,
  type AttemptSchema,
  type AuditEventSchema,
  BackoffStrategy as BackoffStrategyPb,
  BodyEncoding as BodyEncodingPb,
  type JobEventSchema,
  JobEventType as JobEventTypePb,
  type JobSchema,
  JobStatus as JobStatusPb,
  type NodeSchema,
  OperationKind as OperationKindPb,
  type OperationSchema,
  OperationState as OperationStatePb,
  type StatusCountsSchema,
} from "../../gen/jobqueue/v1/job_pb.js";
import type {
  EnqueueJobRequest,
  GetJobResultResponseSchema,
} from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { Role as RolePb } from "../../gen/jobqueue/v1/options_pb.js";
import type { QueueSchema as QueuePbSchema } from "../../gen/jobqueue/v1/queue_service_pb.js";
import type { StoredAuditEvent } from "../audit/audit-event.js";
import type { Caller, Role } from "../auth/principal.js";
import { InvalidArgumentError } from "../job/errors.js";
import type { EventType, JobStreamEvent } from "../job/events.js";
import type { JobFilterInput } from "../job/filter.js";
import type { Operation, OperationKind } from "../job/operations.js";
import type { QueueSettings, QueueSettingsInput } from "../job/queues.js";
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

/** Backoff strategies as the proto spells them. */
export function backoffToPb(strategy: string | undefined): BackoffStrategyPb {
  return strategy === undefined
    ? BackoffStrategyPb.UNSPECIFIED
    : (BACKOFF[strategy as BackoffStrategy] ?? BackoffStrategyPb.UNSPECIFIED);
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
    queue: req.queue,
    callbackUrl: req.callbackUrl,
    sign: req.sign,
    signingSecret: req.signingSecret,
  };
}

/**
 * A job as the wire's Job message, complete (every field set, `$typeName` too), so that protobuf's
 * `create()` takes it as it is instead of copying it field by field: a GetJobResponse 8.5 → 1.1 µs,
 * and as much per job of a list page. A literal, not a default message spread with its keys set
 * again: on Node 20's V8, spreading an object of 20 keys or more and setting keys in the same
 * literal took 4–9 µs in some cases (see storedJob in src/store/rows.ts).
 * test/rpc/convert.test.ts checks it against the message `create()` makes of the same fields.
 */
export function jobToPb(job: Job): MessageShape<typeof JobSchema> {
  return {
    $typeName: "jobqueue.v1.Job",
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
    queue: job.queue,
    lastErrorCode: job.lastErrorCode ?? undefined,
    callbackUrl: job.callbackUrl ?? undefined,
    sign: job.sign,
    // Write-only: a job's own signing secret reads as a mask on every read and protocol.
    signingSecret: job.sealedSigningSecret === null ? undefined : MASK,
    callbackOf: job.callbackOf ?? undefined,
    callbackJobId: job.callbackJobId ?? undefined,
    scheduleId: job.scheduleId ?? undefined,
    scheduleTick: ts(job.scheduleTick ?? null),
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

/** A job filter from the wire: enums as the validator's strings, times as epoch ms. */
export function filterFromPb(f: {
  status: JobStatusPb[];
  tag: string[];
  queue: string;
  createdAfter?: Timestamp;
  createdBefore?: Timestamp;
  finishedAfter?: Timestamp;
  finishedBefore?: Timestamp;
  updatedAfter?: Timestamp;
  host: string;
  method: string;
  urlContains: string;
  errorCode: string;
  minAttempts: number;
  jobIds?: string[];
  scheduleId?: string;
}): JobFilterInput {
  const statuses = statusesFromPb(f.status);
  if (typeof statuses === "string") {
    throw new InvalidArgumentError("status", `unknown status ${statuses}`);
  }
  const ms = (t: Timestamp | undefined) => (t ? timestampMs(t) : undefined);
  return {
    statuses,
    tags: f.tag,
    queue: f.queue || undefined,
    createdAfter: ms(f.createdAfter),
    createdBefore: ms(f.createdBefore),
    finishedAfter: ms(f.finishedAfter),
    finishedBefore: ms(f.finishedBefore),
    updatedAfter: ms(f.updatedAfter),
    host: f.host || undefined,
    method: f.method || undefined,
    urlContains: f.urlContains || undefined,
    errorCode: f.errorCode || undefined,
    minAttempts: f.minAttempts || undefined,
    jobIds: f.jobIds,
    scheduleId: f.scheduleId || undefined,
  };
}

const OPERATION_KIND: Record<OperationKind, OperationKindPb> = {
  cancel: OperationKindPb.CANCEL,
  retry: OperationKindPb.RETRY,
  delete: OperationKindPb.DELETE,
};

const OPERATION_STATE: Record<Operation["state"], OperationStatePb> = {
  running: OperationStatePb.RUNNING,
  succeeded: OperationStatePb.SUCCEEDED,
  canceled: OperationStatePb.CANCELED,
  failed: OperationStatePb.FAILED,
};

export function operationToPb(op: Operation): MessageInitShape<typeof OperationSchema> {
  return {
    operationId: op.id,
    kind: OPERATION_KIND[op.kind],
    state: OPERATION_STATE[op.state],
    estimate: BigInt(op.estimate),
    estimateCapped: op.estimateCapped,
    examined: BigInt(op.examined),
    affected: BigInt(op.affected),
    principal: op.principal ?? undefined,
    createdAt: ts(op.createdAt),
    updatedAt: ts(op.updatedAt),
    finishedAt: ts(op.finishedAt),
    error: op.error ?? undefined,
  };
}

export function countsToPb(
  c: Record<JobStatus, number>,
): MessageInitShape<typeof StatusCountsSchema> {
  return {
    queued: BigInt(c.queued),
    running: BigInt(c.running),
    succeeded: BigInt(c.succeeded),
    failed: BigInt(c.failed),
    canceled: BigInt(c.canceled),
  };
}

export function queueToPb(q: QueueSettings): MessageInitShape<typeof QueuePbSchema> {
  return {
    name: q.name,
    concurrency: q.concurrency ?? undefined,
    ratePerSecond: q.rate ? 1000 / q.rate.intervalMs : undefined,
    burst: q.rate?.burst,
    maxAttempts: q.maxAttempts ?? undefined,
    backoffStrategy:
      q.backoffStrategy === null ? BackoffStrategyPb.UNSPECIFIED : BACKOFF[q.backoffStrategy],
    backoffSeconds: q.backoffBaseMs === null ? undefined : q.backoffBaseMs / 1000,
    ttlSeconds: q.ttlMs === null ? undefined : q.ttlMs / 1000,
    paused: q.paused,
    // The default queue is made by a migration, with no time of its own (0).
    createdAt: q.createdAt > 0 ? ts(q.createdAt) : undefined,
    updatedAt: q.updatedAt > 0 ? ts(q.updatedAt) : undefined,
  };
}

/** Queue settings from the wire: absent keeps a setting, 0 resets it to the node's. */
export function queueSettingsFromPb(
  s:
    | {
        concurrency?: number;
        ratePerSecond?: number;
        burst?: number;
        maxAttempts?: number;
        backoffStrategy?: BackoffStrategyPb;
        backoffSeconds?: number;
        ttlSeconds?: number;
      }
    | undefined,
): QueueSettingsInput {
  if (!s) return {};
  const zeroIsNull = (v: number | undefined) => (v === undefined ? undefined : v === 0 ? null : v);
  return {
    concurrency: zeroIsNull(s.concurrency),
    ratePerSecond: zeroIsNull(s.ratePerSecond),
    burst: zeroIsNull(s.burst),
    maxAttempts: zeroIsNull(s.maxAttempts),
    backoffStrategy:
      s.backoffStrategy === undefined
        ? undefined
        : s.backoffStrategy === BackoffStrategyPb.UNSPECIFIED
          ? null
          : (BACKOFF_FROM_PB.get(s.backoffStrategy) ?? String(s.backoffStrategy)),
    backoffSeconds: zeroIsNull(s.backoffSeconds),
    ttlSeconds: zeroIsNull(s.ttlSeconds),
  };
}

const EVENT_TYPE: Record<EventType, JobEventTypePb> = {
  queued: JobEventTypePb.QUEUED,
  scheduled: JobEventTypePb.SCHEDULED,
  waiting: JobEventTypePb.WAITING,
  running: JobEventTypePb.RUNNING,
  progress: JobEventTypePb.PROGRESS,
  attempt_ended: JobEventTypePb.ATTEMPT_ENDED,
  retry_scheduled: JobEventTypePb.RETRY_SCHEDULED,
  succeeded: JobEventTypePb.SUCCEEDED,
  failed: JobEventTypePb.FAILED,
  canceled: JobEventTypePb.CANCELED,
  expired: JobEventTypePb.EXPIRED,
  deleted: JobEventTypePb.DELETED,
};

export function eventToPb(e: JobStreamEvent): MessageInitShape<typeof JobEventSchema> {
  return {
    cursor: e.cursor,
    at: ts(e.at),
    jobId: e.jobId,
    type: EVENT_TYPE[e.type],
    status: STATUS[e.status],
    queue: e.queue,
    tags: e.tags,
    attempt: e.attempt ?? undefined,
    node: e.node ?? undefined,
    responseStatus: e.responseStatus ?? undefined,
    errorCode: e.errorCode ?? undefined,
    error: e.error ?? undefined,
    runAt: ts(e.runAt),
    outcome: e.outcome ? OUTCOME[e.outcome as AttemptOutcome] : undefined,
    progress: e.progress
      ? {
          phase: e.progress.phase,
          responseStatus: e.progress.status,
          bytes: e.progress.bytes === undefined ? undefined : BigInt(e.progress.bytes),
        }
      : undefined,
  };
}

const ROLE_TO_PB: Record<Role, RolePb> = {
  reader: RolePb.READER,
  submitter: RolePb.SUBMITTER,
  admin: RolePb.ADMIN,
};

/**
 * GetCaller's answer: the principal and role of the caller's key; without authentication (no
 * principal) every caller may do everything, as an admin.
 */
export function callerToPb(caller: Caller): MessageInitShape<typeof GetCallerResponseSchema> {
  if (!caller.principal) return { authenticationRequired: false, role: RolePb.ADMIN };
  return {
    authenticationRequired: true,
    principal: caller.principal.name,
    role: ROLE_TO_PB[caller.principal.role],
  };
}
