import type { AuditEvent, AuditOutcome, StoredAuditEvent } from "../audit/audit-event.js";
import type { JobStreamEvent, Progress } from "../job/events.js";
import type { JobFilter } from "../job/filter.js";
import type { Operation, RetryOverrides } from "../job/operations.js";
import type { QueueSettings } from "../job/queues.js";
import type { LimitResolver } from "../job/rate-limits.js";
import type { Schedule } from "../job/schedules.js";
import type { Attempt, AttemptEndRecord, Job, JobResult, JobStatus, NewJob } from "../job/types.js";
import type { StoreSignals } from "../notify/notifier.js";

/**
 * The one storage seam. Every driver (SQLite, the embedded default; PostgreSQL, for several
 * nodes) implements it and passes the conformance suite in test/store/conformance/. Methods are
 * noun-first and take one params object; all SQL lives behind it. Every method is atomic. The
 * rules (rate-limit admission, what a rescued job becomes) are in src/job: a driver reads the
 * rows a rule needs, asks it, and writes what it decided.
 *
 * Time: a driver reads its own clock: the injected one (SQLite; and tests, on either driver) or
 * the database's (PostgreSQL, so that leases mean the same on every node whatever their clocks).
 * Times given in params (a job's creation, a retry's run time) are taken as they are.
 *
 * Claims: a claimed job carries a lease token. Every write after the claim names the token, and
 * only the current holder's write takes effect, so a worker whose lease expired cannot overwrite
 * what happened since.
 *
 * Wake-ups: {@link signals} tells of committed changes, never before the commit: this store's
 * own, and on PostgreSQL those of other nodes that matter here (work became available, a job
 * was canceled, a job was scheduled).
 */
export interface JobStore {
  readonly signals: StoreSignals;

  /**
   * Stores a job, durably before it resolves, with its audit event in the same transaction. If a
   * kept job of the same owner has the same idempotency key, stores nothing and returns that job
   * with `inserted: false` (the audit event is still recorded).
   */
  jobInsert(job: NewJob, audit?: AuditEvent): Promise<InsertResult>;

  /** Stores several jobs in one transaction, as {@link jobInsert} would one by one, in order. */
  jobInsertMany(jobs: NewJob[], audit?: AuditEvent[]): Promise<InsertResult[]>;

  /** A job, or null if there is none or its TTL has passed. */
  jobGet(params: { id: string }): Promise<Job | null>;

  /**
   * Jobs newest first (latest finished first with a finishing-time window), filtered; `next` says
   * where another page starts. Indexed conditions cost a page; conditions checked row by row look
   * at no more than `scanLimit` jobs a page.
   */
  jobList(params: JobListParams): Promise<JobListPage>;

  /**
   * Cancels a queued or running job: it becomes `canceled` at once and its lease is dropped (an
   * open attempt is closed as canceled), so the worker's later writes do not take; the node
   * running it hears of it through {@link signals}. With `ownedBy`, a job of another owner reads
   * as not found. The audit event is recorded in the same transaction, whatever the outcome.
   */
  jobCancel(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<CancelResult>;

  /**
   * Claims up to `limit` available jobs from the given queues (each queue's in priority high to
   * low, then run time, then age order, up to its own limit and within its rate) that no other
   * claim holds, marks them running under a new lease, counts the attempt and opens its history
   * row, recording `node`. With `limits`, admission follows src/job/admission.ts: a job whose
   * bucket is at its concurrency limit moves to waiting, one whose bucket has no rate budget now
   * is rescheduled to the slot it reserves; neither uses an attempt.
   */
  jobClaim(params: ClaimParams): Promise<ClaimResult>;

  /**
   * Runs a failed or canceled job again on its id (src/job/operations.ts `retryPlan`: attempts
   * keep counting, the cap rises), with its audit event. Another status is `not-retryable`. A job
   * whose queue was deleted since is refused with QueueNotFoundError (nothing is written).
   */
  jobRetry(params: {
    id: string;
    ownedBy?: string;
    overrides: RetryOverrides | null;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<
    { kind: "retried"; job: Job } | { kind: "not-retryable"; job: Job } | { kind: "not-found" }
  >;

  /** Deletes a finished job with its attempts and result; an unfinished one is `not-finished`. */
  jobDelete(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<{ kind: "deleted" } | { kind: "not-finished"; job: Job } | { kind: "not-found" }>;

  /** Counts jobs matching a filter, up to `cap` (then `capped`). */
  jobCount(params: { filter: JobFilter; ownedBy?: string; cap: number }): Promise<{
    count: number;
    capped: boolean;
  }>;

  /** Extends the leases still held; returns the ids of the jobs whose lease was extended. */
  jobRenewLeases(params: { leases: Lease[]; leaseMs: number }): Promise<Set<string>>;

  /**
   * Ends a claimed attempt: closes its history row if still open, stores the result if given and,
   * if the lease is still held, moves the job on. Returns whether the lease was held.
   */
  jobFinishAttempt(params: FinishAttemptParams): Promise<boolean>;

  /**
   * Rescues up to `limit` running jobs whose lease has expired (their worker died): the open
   * attempt is closed as lost, and the job becomes what src/job/rescue.ts says. Concurrent
   * rescuers never rescue one job twice.
   */
  jobRescueExpired(params: { limit: number }): Promise<RescuedJob[]>;

  /** Makes up to `limit` scheduled jobs whose run time has come available; returns how many. */
  jobPromoteScheduled(params: { limit: number }): Promise<number>;

  /** The earliest run time of a scheduled job, or null if none is scheduled. */
  jobNextScheduledAt(): Promise<number | null>;

  /**
   * Makes waiting jobs available again so that the next claim re-checks their bucket (when
   * limits may have changed). Returns how many.
   */
  jobPromoteWaiting(params: { limit: number }): Promise<number>;

  /** Deletes up to `limit` jobs whose TTL has passed, with their attempts and results. */
  jobDeleteExpired(params: { limit: number }): Promise<number>;

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

  /** Jobs by queue and status, from counters kept with every change (cheap at any size). */
  statsCounts(): Promise<QueueCounts[]>;

  /**
   * Per queue: the creation time of its oldest queued job (null when none) and its calls in
   * flight (running jobs).
   */
  statsActivity(params: { queue?: string }): Promise<QueueActivity[]>;

  /** Jobs that ended per minute from `sinceMinute` (epoch ms / 60000) on, by queue and status. */
  statsThroughput(params: { sinceMinute: number; queue?: string }): Promise<ThroughputRow[]>;

  /**
   * The call durations of the latest jobs that succeeded or failed at or after `sinceMs` (their
   * last attempt's, as their result keeps it), with their destination host: at most `limit` of
   * each of the two statuses, newest first, read along the finished-jobs index.
   */
  statsDurations(params: {
    sinceMs: number;
    queue?: string;
    limit: number;
  }): Promise<DurationRow[]>;

  /**
   * Active jobs (queued or running) counted by host or by tag, the largest groups first, reading
   * at most `scanCap` jobs (`capped` says the counts are a lower bound).
   */
  statsGroups(params: {
    by: "host" | "tag";
    queue?: string;
    limit: number;
    scanCap: number;
  }): Promise<{
    groups: { key: string; queued: number; running: number }[];
    capped: boolean;
  }>;

  /** Folds counter deltas into totals and drops throughput older than `keepMinutes`. */
  statsCompact(params: { keepMinutes: number }): Promise<void>;

  /** Creates a queue; false if one has the name. */
  queueCreate(settings: Omit<QueueSettings, "createdAt" | "updatedAt">): Promise<boolean>;

  /** Replaces a queue's settings (pause state included); false if there is no such queue. */
  queueUpdate(settings: Omit<QueueSettings, "createdAt" | "updatedAt">): Promise<boolean>;

  queueGet(params: { name: string }): Promise<QueueSettings | null>;

  /** Every queue, by name. */
  queueList(): Promise<QueueSettings[]>;

  /** Deletes a queue with no queued or running job; `default` cannot be deleted. */
  queueDelete(params: { name: string }): Promise<"deleted" | "not-found" | "not-empty">;

  /** Stores a new schedule (src/job/schedules.ts). */
  scheduleCreate(schedule: Schedule): Promise<void>;

  scheduleGet(params: { id: string }): Promise<Schedule | null>;

  /** Schedules newest first, after the id `afterId` (exclusive); `ownedBy` filters. */
  scheduleList(params: { ownedBy?: string; afterId?: string; limit: number }): Promise<Schedule[]>;

  /** Replaces a schedule (all but its id, owner and creation time); false if there is none. */
  scheduleUpdate(schedule: Schedule): Promise<boolean>;

  /** Deletes a schedule (its jobs stay); false if there is none. */
  scheduleDelete(params: { id: string }): Promise<boolean>;

  /**
   * Unpaused schedules whose next tick is at or before `dueBy`, or that hold a buffered tick,
   * soonest first, at most `limit`.
   */
  scheduleDue(params: { dueBy: number; limit: number }): Promise<Schedule[]>;

  /**
   * Records what a tick did: moves the next tick from `from` (only if it is still `from` and the
   * schedule is unchanged since `updatedAt`: a change or another node's advance wins) and sets the
   * buffered tick, and the last run if one was enqueued. Returns whether it took.
   */
  scheduleAdvance(params: {
    id: string;
    from: number | null;
    updatedAt: number;
    nextRunAt: number | null;
    bufferedTick: number | null;
    lastRun: { at: number; jobId: string } | null;
  }): Promise<boolean>;

  /** Records a bulk action to be worked through by {@link operationStep}. */
  operationCreate(op: Operation): Promise<void>;

  operationGet(params: { id: string }): Promise<Operation | null>;

  /** Operations newest first; `state` filters. */
  operationList(params: {
    state?: Operation["state"];
    owner?: string;
    limit: number;
  }): Promise<Operation[]>;

  /** Stops a running operation between batches; false if it was not running. */
  operationCancel(params: { id: string }): Promise<boolean>;

  /**
   * Works one batch of a running operation in one transaction: looks at up to `scan` jobs below
   * its cursor that match its filter, applies its action (src/job/operations.ts) to up to
   * `batch` of them, moves the cursor, and ends the operation (with its audit event) once no job
   * is left. Returns the operation as it is after the batch, or null if it is not running.
   */
  operationStep(params: {
    id: string;
    batch: number;
    scan: number;
    audit: (op: Operation) => AuditEvent;
  }): Promise<Operation | null>;

  /**
   * Events after `after` (a cursor; null: from the oldest kept), oldest first, at most `limit`,
   * never one a reader could later find before another it got (see the drivers). `head` is
   * where the stream is after them. A cursor older than the retention is a
   * {@link CursorExpiredError}.
   */
  eventList(params: { after: string | null; limit: number }): Promise<{
    events: JobStreamEvent[];
    head: string;
  }>;

  /** The cursor of the newest event a reader may see now (watch from it: only what follows). */
  eventHead(): Promise<string>;

  /** Appends a progress event of a running attempt (how far the call has come). */
  eventAppend(params: { jobId: string; attempt: number; progress: Progress }): Promise<void>;

  /** Deletes up to `limit` events older than `before`; readers behind them get CursorExpired. */
  eventDeleteBefore(params: { before: number; limit: number }): Promise<number>;

  /** Records that a node is alive, with what it runs; creates its row on the first beat. */
  nodeHeartbeat(node: NodeBeat): Promise<void>;

  /** Nodes whose last heartbeat is at most `withinMs` old, by id. */
  nodeList(params: { withinMs: number }): Promise<NodeInfo[]>;

  /** Forgets a node (it stopped), or every node silent for longer than `silentForMs`. */
  nodeDelete(params: { id: string } | { silentForMs: number }): Promise<number>;

  /**
   * Becomes or stays the leader of the maintenance services for `ttlMs` from now, unless another
   * node holds an unexpired term. Returns whether `node` is the leader now.
   */
  leaderAttemptElect(params: { node: string; ttlMs: number }): Promise<boolean>;

  /** Gives the leadership up if `node` holds it, so that another node can take it at once. */
  leaderResign(params: { node: string }): Promise<void>;

  /**
   * Checks that the store accepts writes now (a durable write of its own). Throws
   * {@link StoreUnavailableError} saying what is wrong.
   */
  probe(): Promise<void>;

  /**
   * Counts for metrics, each read bounded by `cap` rows so that it costs the same with a million
   * jobs kept (see {@link JobStats}).
   */
  jobStats(params: { cap: number }): Promise<JobStats>;

  /** The store's current time (see the time note above), epoch milliseconds. */
  now(): Promise<number>;

  /** Stops listening and releases the store's connections, after accepted writes. Idempotent. */
  close(): Promise<void>;
}

/**
 * The store cannot serve now (the database is unreachable, the disk is full or failing, the file
 * is read-only). The message says what is wrong and is safe to show; callers answer 503 /
 * UNAVAILABLE and try again later. Nothing it refused was acknowledged, and nothing it refused
 * was stored, with one exception: a write whose commit reached the disk's cache but whose fsync
 * failed may be found stored once the database is reopened (retry with the same idempotency key).
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** What {@link JobStore.jobStats} reads. Counts at `cap` mean "at least that many". */
export interface JobStats {
  /** Jobs in each status, each counted up to `cap`. */
  statuses: Record<JobStatus, number>;
  /** Queued jobs due now, waiting for a worker (the queue depth), counted up to `cap`. */
  due: number;
  /** The run time of the due job that has waited longest, or null when none is due. */
  oldestDueAt: number | null;
  /**
   * Jobs held back by their bucket's limits (JOBQUEUE_HOST_LIMITS), per bucket: waiting for a
   * concurrency slot (counted among the first `cap` waiting jobs), and rescheduled to a rate slot
   * (among the first `cap` scheduled ones). Buckets with neither are left out.
   */
  heldBack: { bucket: string; waiting: number; rateDeferred: number }[];
}

export interface InsertResult {
  job: Job;
  inserted: boolean;
}

export interface JobListParams extends JobFilter {
  /** Only jobs of this owner. */
  ownedBy?: string;
  /**
   * Continue after this position (exclusive): older jobs; with a finishing-time window, jobs that
   * finished earlier.
   */
  after?: ListCursor;
  /** Only jobs with ids up to this one (those created before a bulk action started). */
  idAtMost?: string;
  limit: number;
  /**
   * At most this many jobs looked at, when the filter has conditions checked row by row
   * (src/job/filter.ts `isScanned`); the page may then be short, with `next` to continue.
   */
  scanLimit?: number;
}

/** A position in a list: the last job listed or looked at. */
export interface ListCursor {
  id: string;
  /** Set when the list is ordered by finishing time. */
  finishedAt?: number;
}

export interface JobListPage {
  jobs: Job[];
  /** Where the next page starts; null when no job is left. */
  next: ListCursor | null;
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

export interface ClaimParams {
  /** The queues to claim from, in this order, each up to its own limit. */
  queues: QueueClaim[];
  /** Jobs at most in all. */
  limit: number;
  leaseMs: number;
  node: string;
  limits?: LimitResolver;
}

export interface QueueClaim {
  name: string;
  /** Jobs at most from this queue. */
  limit: number;
  /** The queue's rate across all nodes (src/job/queue-rate.ts), if it has one. */
  rate: { intervalMs: number; burst: number } | null;
}

export interface ClaimResult {
  jobs: ClaimedJob[];
  /**
   * The earliest time a job held back by a rate budget may go (a slot reserved for a destination,
   * or the queue's next free slot), if any was held back.
   */
  deferredUntil: number | null;
}

/** Jobs of one queue by status. */
export interface QueueCounts {
  queue: string;
  counts: Record<JobStatus, number>;
}

export interface QueueActivity {
  queue: string;
  oldestQueuedAt: number | null;
  running: number;
}

export interface ThroughputRow {
  minute: number;
  queue: string;
  status: Extract<JobStatus, "succeeded" | "failed" | "canceled">;
  count: number;
}

/** One ended job's call duration and destination (statsDurations). */
export interface DurationRow {
  /** The URL's host; "" when unknown. */
  host: string;
  durationMs: number;
  finishedAt: number;
}

export type { AttemptEndRecord };

/** Where a job goes after an attempt. `released` puts it back without counting the attempt. */
export type NextState =
  | { status: "succeeded" }
  | { status: "failed" }
  | { status: "queued"; runAt: number }
  | { status: "released" };

export interface FinishAttemptParams {
  lease: Lease;
  end: AttemptEndRecord;
  /** Null only closes the attempt row (e.g. after a cancel, when the job has already ended). */
  next: NextState | null;
  /** The attempt's outcome to keep as the job's result; stored with the store's time. */
  result: ResultRecord | null;
  /**
   * Whether the job reports its outcome (src/job/callbacks.ts `reportsOutcome`, fixed when it was
   * stored). A driver may take it as the cue to end the job in a transaction that also writes the
   * delivery; what is written is decided from the stored job, whatever this says.
   */
  reportsOutcome?: boolean;
}

/** A result as the worker hands it over; the store adds the job, the attempt and the time. */
export type ResultRecord = Omit<JobResult, "jobId" | "attempt" | "finishedAt">;

export interface RescuedJob {
  jobId: string;
  status: Extract<JobStatus, "queued" | "failed">;
}

/** What a node reports of itself at each heartbeat. */
export interface NodeBeat {
  id: string;
  startedAt: number;
  version: string;
  concurrency: number;
  inFlight: number;
}

export interface NodeInfo extends NodeBeat {
  heartbeatAt: number;
  /** Whether it holds the maintenance leadership now. */
  leader: boolean;
}
