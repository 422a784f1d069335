import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import {
  type Timestamp,
  timestampDate,
  timestampFromDate,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import {
  type CallOptions,
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";
import {
  type Attempt,
  AttemptOutcome,
  BackoffStrategy,
  BodyEncoding,
  type Job,
  JobStatus,
} from "./gen/jobqueue/v1/job_pb.js";
import {
  type EnqueueJobRequest,
  EnqueueJobRequestSchema,
  type GetJobResultResponse,
  JobQueueService,
} from "./gen/jobqueue/v1/job_queue_service_pb.js";
import { createUnaryHttpTransport } from "./unary-http.js";

export { JobQueueService };

/** The wire protocol: all three reach the same server on the same port. */
export type Protocol = "connect" | "grpc" | "grpc-web";

export interface JobQueueClientOptions {
  /** The server, e.g. "http://127.0.0.1:8080". */
  baseUrl: string;
  /** An API key (sent as `Authorization: Bearer <key>`); none when the server runs without keys. */
  apiKey?: string;
  /** Default "connect". gRPC needs HTTP/2 (cleartext h2c on http:// URLs). */
  protocol?: Protocol;
  /** HTTP version for "connect" and "grpc-web" (default "1.1"); gRPC always uses "2". */
  httpVersion?: "1.1" | "2";
  /** A deadline for every call, in milliseconds (watch streams excepted). */
  timeoutMs?: number;
  /** A transport of your own (e.g. connect-web's in a browser) instead of the one `protocol` names. */
  transport?: Transport;
}

export type JobStatusName = "queued" | "running" | "succeeded" | "failed" | "canceled";
export type BackoffStrategyName = "fixed" | "linear" | "exponential";
export type BodyEncodingName = "json" | "text" | "base64";
export type AttemptOutcomeName =
  | "running"
  | "succeeded"
  | "failed"
  | "canceled"
  | "interrupted"
  | "lost";

/** A job to submit. Only `url` is required; the server's defaults fill in the rest. */
export interface JobInput {
  url: string;
  /** Default GET, or POST when there is a body. */
  method?: string;
  headers?: Record<string, string>;
  /** Query parameters added to the URL. */
  params?: Record<string, string>;
  /**
   * The request body: any JSON value (sent as JSON; a string is sent as text), or bytes sent as
   * they are. No need to build a google.protobuf.Value.
   */
  body?: JsonValue | Uint8Array;
  timeoutSec?: number;
  priority?: number;
  maxAttempts?: number;
  backoffStrategy?: BackoffStrategyName;
  backoffSeconds?: number;
  scheduledAt?: Date;
  ttlSeconds?: number;
  tags?: string[];
  idempotencyKey?: string;
  /** Further headers to keep encrypted and masked (Authorization, Cookie... always are). */
  secretHeaders?: string[];
  followRedirects?: boolean;
  maxRedirects?: number;
  rateLimitKey?: string;
  /** POST the job's outcome (GET /jobs/{id}/result's JSON) here when it ends. */
  callbackUrl?: string;
  /** Sign the job's own call (Standard Webhooks) with your principal's signing secrets. */
  sign?: boolean;
  /** The job's own signing secret(s), `whsec_…` separated by spaces; write-only. */
  signingSecret?: string;
}

/** A job as the server reports it; unset values are null. */
export interface JobView {
  jobId: string;
  status: JobStatusName;
  attempt: number;
  maxAttempts: number;
  priority: number;
  scheduledAt: Date | null;
  createdAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  method: string;
  url: string;
  timeoutSec: number;
  tags: string[];
  /** Secret headers read as "***". */
  headers: Record<string, string>;
  params: Record<string, string>;
  body: JsonValue | Uint8Array | null;
  backoffStrategy: BackoffStrategyName | null;
  backoffSeconds: number;
  ttlSeconds: number | null;
  nextRunAt: Date | null;
  expiresAt: Date | null;
  idempotencyKey: string | null;
  lastError: string | null;
  updatedAt: Date | null;
  owner: string | null;
  secretHeaders: string[];
  followRedirects: boolean;
  maxRedirects: number;
  rateLimitKey: string | null;
  callbackUrl: string | null;
  sign: boolean;
  /** On a callback delivery: the job whose outcome it delivers. */
  callbackOf: string | null;
  /** On a job with a callback URL, once it ended: its delivery job. */
  callbackJobId: string | null;
}

/** The latest response (or error) of a job. */
export interface JobResultView {
  jobId: string;
  status: JobStatusName;
  responseStatus: number | null;
  responseHeaders: Record<string, string>;
  /** Parsed JSON, text, or base64 for binary (see `responseBodyEncoding`); null before any answer. */
  responseBody: JsonValue | null;
  responseBodyEncoding: BodyEncodingName | null;
  truncated: boolean;
  error: string | null;
  durationMs: number | null;
  attempt: number;
  finishedAt: Date | null;
}

export interface AttemptView {
  attempt: number;
  outcome: AttemptOutcomeName;
  startedAt: Date | null;
  finishedAt: Date | null;
  responseStatus: number | null;
  errorCode: string | null;
  error: string | null;
  durationMs: number | null;
  retryable: boolean;
}

export interface ListFilter {
  status?: JobStatusName[];
  /** Jobs carrying every one of these tags. */
  tags?: string[];
  createdAfter?: Date;
  createdBefore?: Date;
  pageSize?: number;
  pageToken?: string;
}

/** Per-call options: cancel with a signal, or set a deadline. */
export interface RequestOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface JobQueueClient {
  /** Submits a job; resolves once it is stored durably. */
  enqueue(
    job: JobInput,
    options?: RequestOptions,
  ): Promise<{ jobId: string; status: JobStatusName }>;
  /** Submits up to the server's batch limit in one transaction: all or none. */
  enqueueMany(
    jobs: JobInput[],
    options?: RequestOptions,
  ): Promise<{ jobId: string; status: JobStatusName }[]>;
  get(jobId: string, options?: RequestOptions): Promise<JobView>;
  result(jobId: string, options?: RequestOptions): Promise<JobResultView>;
  attempts(jobId: string, options?: RequestOptions): Promise<AttemptView[]>;
  cancel(jobId: string, options?: RequestOptions): Promise<JobView>;
  list(
    filter?: ListFilter,
    options?: RequestOptions,
  ): Promise<{ jobs: JobView[]; nextPageToken: string | null }>;
  /** The job now and after every change, until it ends (or `signal` aborts). */
  watch(jobId: string, options?: { signal?: AbortSignal }): AsyncIterable<JobView>;
  /** Resolves with the job once it has ended (succeeded, failed or canceled). */
  waitUntilDone(jobId: string, options?: { signal?: AbortSignal }): Promise<JobView>;
  /** The generated client, for what the typed layer does not cover. */
  readonly raw: Client<typeof JobQueueService>;
}

/** The gRPC status codes, as the REST API and this client name them. */
export type ErrorCode =
  | "canceled"
  | "unknown"
  | "invalid_argument"
  | "deadline_exceeded"
  | "not_found"
  | "already_exists"
  | "permission_denied"
  | "resource_exhausted"
  | "failed_precondition"
  | "aborted"
  | "out_of_range"
  | "unimplemented"
  | "internal"
  | "unavailable"
  | "data_loss"
  | "unauthenticated";

/** What every failed call throws, whatever the protocol. */
export class JobQueueError extends Error {
  override readonly name = "JobQueueError";
  constructor(
    /** Why the call failed, e.g. "invalid_argument" or "not_found". */
    readonly code: ErrorCode,
    message: string,
    /** With "invalid_argument": the field at fault, e.g. "url" or "jobs[2].url". */
    readonly field: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Converts whatever a call threw (a ConnectError, an abort) into a JobQueueError. */
  static from(err: unknown): JobQueueError {
    if (err instanceof JobQueueError) return err;
    const cerr = ConnectError.from(err);
    const field = cerr.findDetails(BadRequestSchema)[0]?.fieldViolations[0]?.field;
    return new JobQueueError(codeName(cerr.code), cerr.rawMessage, field || undefined, {
      cause: err,
    });
  }
}

/** Whether `err` is a JobQueueError (with the given code, if one is given). */
export function isJobQueueError(err: unknown, code?: ErrorCode): err is JobQueueError {
  return err instanceof JobQueueError && (code === undefined || err.code === code);
}

/** Creates a client for one server over the chosen protocol. */
export function createJobQueueClient(options: JobQueueClientOptions): JobQueueClient {
  const interceptors: Interceptor[] = [];
  if (options.apiKey) {
    const key = options.apiKey;
    interceptors.push((next) => (req) => {
      req.header.set("authorization", `Bearer ${key}`);
      return next(req);
    });
  }
  const transport = options.transport ?? transportFor(options, interceptors);
  const raw = createClient(JobQueueService, transport);
  const callOptions = (o: RequestOptions = {}): CallOptions => ({
    signal: o.signal,
    timeoutMs: o.timeoutMs ?? options.timeoutMs,
  });

  async function* watch(jobId: string, o: { signal?: AbortSignal } = {}) {
    try {
      for await (const res of raw.watchJob({ jobId }, { signal: o.signal })) {
        if (res.job) yield jobView(res.job);
      }
    } catch (err) {
      throw JobQueueError.from(err);
    }
  }

  return {
    raw,
    enqueue: (job, o) =>
      wrap(async () => {
        const res = await raw.enqueueJob(enqueueRequest(job), callOptions(o));
        return { jobId: res.jobId, status: statusName(res.status) };
      }),
    enqueueMany: (jobs, o) =>
      wrap(async () => {
        const res = await raw.enqueueJobs({ jobs: jobs.map(enqueueRequest) }, callOptions(o));
        return res.jobs.map((j) => ({ jobId: j.jobId, status: statusName(j.status) }));
      }),
    get: (jobId, o) =>
      wrap(async () => jobView(must((await raw.getJob({ jobId }, callOptions(o))).job))),
    result: (jobId, o) =>
      wrap(async () => resultView(await raw.getJobResult({ jobId }, callOptions(o)))),
    attempts: (jobId, o) =>
      wrap(async () =>
        (await raw.listJobAttempts({ jobId }, callOptions(o))).attempts.map(attemptView),
      ),
    cancel: (jobId, o) =>
      wrap(async () => jobView(must((await raw.cancelJob({ jobId }, callOptions(o))).job))),
    list: (filter = {}, o) =>
      wrap(async () => {
        const res = await raw.listJobs(
          {
            status: (filter.status ?? []).map((s) => JobStatus[s.toUpperCase() as "QUEUED"]),
            tag: filter.tags ?? [],
            createdAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
            createdBefore: filter.createdBefore
              ? timestampFromDate(filter.createdBefore)
              : undefined,
            pageSize: filter.pageSize ?? 0,
            pageToken: filter.pageToken ?? "",
          },
          callOptions(o),
        );
        return { jobs: res.jobs.map(jobView), nextPageToken: res.nextPageToken ?? null };
      }),
    watch,
    async waitUntilDone(jobId, o) {
      let last: JobView | undefined;
      for await (const job of watch(jobId, o)) last = job;
      if (!last || !["succeeded", "failed", "canceled"].includes(last.status)) {
        throw new JobQueueError("canceled", "the watch ended before the job did", undefined);
      }
      return last;
    },
  };
}

function transportFor(options: JobQueueClientOptions, interceptors: Interceptor[]): Transport {
  const { baseUrl } = options;
  switch (options.protocol ?? "connect") {
    case "grpc":
      return createGrpcTransport({ baseUrl, interceptors });
    case "grpc-web":
      return createGrpcWebTransport({
        baseUrl,
        interceptors,
        httpVersion: options.httpVersion ?? "1.1",
      });
    case "connect": {
      const streams = createConnectTransport({
        baseUrl,
        interceptors,
        httpVersion: options.httpVersion ?? "1.1",
      });
      if (options.httpVersion === "2") return streams;
      const headers: Record<string, string> = options.apiKey
        ? { authorization: `Bearer ${options.apiKey}` }
        : {};
      return createUnaryHttpTransport({ baseUrl, headers, streams });
    }
    default:
      throw new Error(`unknown protocol ${JSON.stringify(options.protocol)}`);
  }
}

async function wrap<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw JobQueueError.from(err);
  }
}

function must<T>(value: T | undefined): T {
  if (value === undefined) throw new JobQueueError("internal", "the server sent no job", undefined);
  return value;
}

function enqueueRequest(job: JobInput): EnqueueJobRequest {
  const { body } = job;
  return create(EnqueueJobRequestSchema, {
    url: job.url,
    method: job.method ?? "",
    headers: job.headers ?? {},
    params: job.params ?? {},
    payload:
      body === undefined
        ? { case: undefined }
        : body instanceof Uint8Array
          ? { case: "bodyBytes", value: body }
          : { case: "body", value: fromJson(ValueSchema, body) },
    timeoutSec: job.timeoutSec,
    priority: job.priority ?? 0,
    maxAttempts: job.maxAttempts,
    backoffStrategy: job.backoffStrategy
      ? BackoffStrategy[job.backoffStrategy.toUpperCase() as "FIXED"]
      : BackoffStrategy.UNSPECIFIED,
    backoffSeconds: job.backoffSeconds,
    scheduledAt: job.scheduledAt ? timestampFromDate(job.scheduledAt) : undefined,
    ttlSeconds: job.ttlSeconds,
    tags: job.tags ?? [],
    idempotencyKey: job.idempotencyKey ?? "",
    secretHeaders: job.secretHeaders ?? [],
    followRedirects: job.followRedirects ?? false,
    maxRedirects: job.maxRedirects,
    rateLimitKey: job.rateLimitKey ?? "",
    callbackUrl: job.callbackUrl ?? "",
    sign: job.sign ?? false,
    signingSecret: job.signingSecret ?? "",
  });
}

const date = (t: Timestamp | undefined): Date | null => (t ? timestampDate(t) : null);

function enumName<E extends Record<number, string>>(e: E, value: number): string | null {
  return value === 0 ? null : (e[value]?.toLowerCase() ?? null);
}

function statusName(status: JobStatus): JobStatusName {
  return enumName(JobStatus, status) as JobStatusName;
}

function jobView(job: Job): JobView {
  return {
    jobId: job.jobId,
    status: statusName(job.status),
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    priority: job.priority,
    scheduledAt: date(job.scheduledAt),
    createdAt: date(job.createdAt),
    startedAt: date(job.startedAt),
    finishedAt: date(job.finishedAt),
    method: job.method,
    url: job.url,
    timeoutSec: job.timeoutSec,
    tags: job.tags,
    headers: job.headers,
    params: job.params,
    body:
      job.payload.case === "body"
        ? (toJson(ValueSchema, job.payload.value) as JsonValue)
        : job.payload.case === "bodyBytes"
          ? job.payload.value
          : null,
    backoffStrategy: enumName(BackoffStrategy, job.backoffStrategy) as BackoffStrategyName | null,
    backoffSeconds: job.backoffSeconds,
    ttlSeconds: job.ttlSeconds ?? null,
    nextRunAt: date(job.nextRunAt),
    expiresAt: date(job.expiresAt),
    idempotencyKey: job.idempotencyKey ?? null,
    lastError: job.lastError ?? null,
    updatedAt: date(job.updatedAt),
    owner: job.owner ?? null,
    secretHeaders: job.secretHeaders,
    followRedirects: job.followRedirects,
    maxRedirects: job.maxRedirects,
    rateLimitKey: job.rateLimitKey ?? null,
    callbackUrl: job.callbackUrl ?? null,
    sign: job.sign,
    callbackOf: job.callbackOf ?? null,
    callbackJobId: job.callbackJobId ?? null,
  };
}

function resultView(res: GetJobResultResponse): JobResultView {
  return {
    jobId: res.jobId,
    status: statusName(res.status),
    responseStatus: res.responseStatus ?? null,
    responseHeaders: res.responseHeaders,
    responseBody: res.responseBody ? (toJson(ValueSchema, res.responseBody) as JsonValue) : null,
    responseBodyEncoding: enumName(
      BodyEncoding,
      res.responseBodyEncoding,
    ) as BodyEncodingName | null,
    truncated: res.truncated,
    error: res.error ?? null,
    durationMs: res.durationMs ?? null,
    attempt: res.attempt,
    finishedAt: date(res.finishedAt),
  };
}

function attemptView(a: Attempt): AttemptView {
  return {
    attempt: a.attempt,
    outcome: enumName(AttemptOutcome, a.outcome) as AttemptOutcomeName,
    startedAt: date(a.startedAt),
    finishedAt: date(a.finishedAt),
    responseStatus: a.responseStatus ?? null,
    errorCode: a.errorCode ?? null,
    error: a.error ?? null,
    durationMs: a.durationMs ?? null,
    retryable: a.retryable,
  };
}

function codeName(code: Code): ErrorCode {
  return Code[code]!.replace(/[A-Z]/g, (c, i) =>
    i === 0 ? c : `_${c}`,
  ).toLowerCase() as ErrorCode;
}
