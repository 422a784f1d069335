import type { AuditEvent, AuditOutcome, StoredAuditEvent } from "../audit/audit-event.js";
import type {
  Attempt,
  AttemptOutcome,
  ErrorCode,
  Job,
  JobResult,
  JobStatus,
  NewJob,
} from "../job/types.js";
import type { LimitResolver } from "../worker/rate-limits.js";

/**
 * The one storage seam. Every driver (SQLite now, PostgreSQL next) implements it and passes the
 * conformance suite in test/store-conformance.ts. Methods are noun-first and take one params
 * object; all SQL lives behind it. Every method is atomic.
 *
 * Claims: a claimed job carries a lease token. Every write after the claim names the token, and
 * only the current holder's write takes effect, so a worker whose lease expired cannot overwrite
 * what happened since.
 */
export interface JobStore {
  /**
   * Stores a job, durably before it resolves, with its audit event in the same transaction. If a
   * kept job of the same owner has the same idempotency key, stores nothing and returns that job
   * with `inserted: false` (the audit event is still recorded).
   */
  jobInsert(job: NewJob, audit?: AuditEvent): Promise<{ job: Job; inserted: boolean }>;

  /** Stores several jobs in one transaction, as {@link jobInsert} would one by one, in order. */
  jobInsertMany(jobs: NewJob[], audit?: AuditEvent[]): Promise<{ job: Job; inserted: boolean }[]>;

  /** A job, or null if there is none or its TTL has passed. */
  jobGet(params: { id: string; now: number }): Promise<Job | null>;

  /** Jobs newest first, filtered; `more` says whether another page follows. */
  jobList(params: JobListParams): Promise<{ jobs: Job[]; more: boolean }>;

  /**
   * Cancels a queued or running job: it becomes `canceled` at once and its lease is dropped (an
   * open attempt is closed as canceled), so the worker's later writes do not take. With `ownedBy`,
   * a job of another owner reads as not found. The audit event is recorded in the same
   * transaction, whatever the outcome.
   */
  jobCancel(params: {
    id: string;
    now: number;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<CancelResult>;

  /**
   * Claims up to `limit` available jobs (priority high to low, then run time, then age), marks
   * them running under a new lease, counts the attempt and opens its history row. With `limits`,
   * a job whose bucket is at its concurrency limit moves to waiting, and one whose bucket has no
   * rate budget now is rescheduled to the slot it reserves; neither uses an attempt.
   */
  jobClaim(params: {
    now: number;
    limit: number;
    leaseMs: number;
    worker: string;
    limits?: LimitResolver;
  }): Promise<ClaimResult>;

  /** Extends the leases still held; returns the ids of the jobs whose lease was extended. */
  jobRenewLeases(params: { leases: Lease[]; now: number; leaseMs: number }): Promise<Set<string>>;

  /**
   * Ends a claimed attempt: closes its history row if still open, stores the result if given and,
   * if the lease is still held, moves the job on. Returns whether the lease was held.
   */
  jobFinishAttempt(params: FinishAttemptParams): Promise<boolean>;

  /**
   * Rescues running jobs whose lease expired before `now` (their worker died): the open attempt is
   * closed as lost, and the job goes back to the queue, or fails if it has no attempts left.
   */
  jobRescueExpired(params: { now: number; limit: number }): Promise<RescuedJob[]>;

  /** Makes up to `limit` scheduled jobs whose run time has come available; returns how many. */
  jobPromoteScheduled(params: { now: number; limit: number }): Promise<number>;

  /** The earliest run time of a scheduled job, or null if none is scheduled. */
  jobNextScheduledAt(): Promise<number | null>;

  /**
   * Makes waiting jobs available again so that the next claim re-checks their bucket (at start-up,
   * when limits may have changed). Returns how many.
   */
  jobPromoteWaiting(params: { limit: number }): Promise<number>;

  /** Deletes up to `limit` jobs whose TTL has passed, with their attempts and results. */
  jobDeleteExpired(params: { now: number; limit: number }): Promise<number>;

  /** The earliest expiry of a kept job, or null if none expires. */
  jobNextExpiry(): Promise<number | null>;

  /** The attempts of a job, oldest first. */
  attemptList(params: { jobId: string }): Promise<Attempt[]>;

  /** The latest finished attempt's result of a job, or null before the first ends. */
  resultGet(params: { jobId: string }): Promise<JobResult | null>;

  /** Records audit events (those not recorded with the change they describe). */
  auditInsert(events: AuditEvent[]): Promise<void>;

  /** Audit events newest first, filtered; `more` says whether another page follows. */
  auditList(params: AuditListParams): Promise<{ events: StoredAuditEvent[]; more: boolean }>;

  /** Deletes up to `limit` audit events older than `before`; returns how many. */
  auditDeleteBefore(params: { before: number; limit: number }): Promise<number>;

  /** Releases the store's connections. Idempotent. */
  close(): Promise<void>;
}

export interface JobListParams {
  now: number;
  statuses?: JobStatus[];
  /** Every one must match. */
  tags?: string[];
  createdAfter?: number;
  createdBefore?: number;
  /** Only jobs of this owner. */
  ownedBy?: string;
  /** Continue after this job id (exclusive), i.e. with older jobs. */
  afterId?: string;
  limit: number;
}

export interface AuditListParams {
  principal?: string;
  action?: string;
  jobId?: string;
  outcome?: AuditOutcome;
  since?: number;
  until?: number;
  /** Continue with events older than this id. */
  beforeId?: number;
  limit: number;
}

export type CancelResult =
  | { kind: "canceled"; job: Job; wasRunning: boolean }
  | { kind: "already-finished"; job: Job }
  | { kind: "not-found" };

export interface Lease {
  jobId: string;
  token: string;
}

export interface ClaimedJob extends Job {
  leaseToken: string;
}

export interface ClaimResult {
  jobs: ClaimedJob[];
  /** The earliest run time given to a job rescheduled for its rate budget, if any was. */
  deferredUntil: number | null;
}

export interface AttemptEndRecord {
  outcome: Exclude<AttemptOutcome, "running">;
  responseStatus: number | null;
  errorCode: ErrorCode | null;
  error: string | null;
  retryable: boolean;
  durationMs: number;
}

/** Where a job goes after an attempt. `released` puts it back without counting the attempt. */
export type NextState =
  | { status: "succeeded" }
  | { status: "failed" }
  | { status: "queued"; runAt: number }
  | { status: "released" };

export interface FinishAttemptParams {
  lease: Lease;
  now: number;
  end: AttemptEndRecord;
  /** Null only closes the attempt row (e.g. after a cancel, when the job has already ended). */
  next: NextState | null;
  result: JobResult | null;
}

export interface RescuedJob {
  jobId: string;
  status: Extract<JobStatus, "queued" | "failed">;
}
