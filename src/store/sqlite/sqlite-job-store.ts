import { randomUUID } from "node:crypto";
import {
  accessSync,
  closeSync,
  fdatasync,
  constants as fsConstants,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
} from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import type { AuditEvent, AuditOutcome, StoredAuditEvent } from "../../audit/audit-event.js";
import { type Candidate, createAdmission } from "../../job/admission.js";
import {
  type CallbackSettings,
  DEFAULT_CALLBACK_SETTINGS,
  reportsOutcome,
  terminalTransition,
} from "../../job/callbacks.js";
import { type Clock, systemClock } from "../../job/clock.js";
import {
  CursorExpiredError,
  IdempotencyConflictError,
  InvalidArgumentError,
  QueueNotFoundError,
} from "../../job/errors.js";
import type { JobStreamEvent, Progress } from "../../job/events.js";
import type { JobFilter } from "../../job/filter.js";
import { isConflict } from "../../job/idempotency.js";
import { jobIdFactory } from "../../job/job-ids.js";
import {
  actionable,
  actionableStatuses,
  type Operation,
  type RetryOverrides,
  retryPlan,
} from "../../job/operations.js";
import { queueBudget } from "../../job/queue-rate.js";
import type { QueueSettings } from "../../job/queues.js";
import type { LimitResolver } from "../../job/rate-limits.js";
import { LOST_ATTEMPT, LOST_ERROR, rescuedStatus } from "../../job/rescue.js";
import type { Schedule } from "../../job/schedules.js";
import type {
  Attempt,
  AttemptEndRecord,
  Job,
  JobResult,
  JobStatus,
  NewJob,
} from "../../job/types.js";
import { createNotifier, type Notifier, type StoreSignals } from "../../notify/notifier.js";
import {
  type AuditListParams,
  type CancelResult,
  type ClaimParams,
  type ClaimResult,
  type DurationRow,
  type FinishAttemptParams,
  type InsertResult,
  type JobListPage,
  type JobListParams,
  type JobStats,
  type JobStore,
  type Lease,
  type ListCursor,
  type NodeBeat,
  type NodeInfo,
  type QueueActivity,
  type QueueClaim,
  type QueueCounts,
  type RescuedJob,
  type ResultRecord,
  StoreUnavailableError,
  type ThroughputRow,
} from "../job-store.js";
import { pageOf } from "../list-page.js";
import {
  type AttemptRow,
  type AuditRow,
  claimedJob,
  cursorOf,
  type EventRow,
  encodeRequestBody,
  type JobRow,
  type NodeRow,
  type OperationRow,
  type QueueRow,
  queueColumns,
  type ResultRow,
  rowToAttempt,
  rowToAudit,
  rowToEvent,
  rowToJob,
  rowToNode,
  rowToOperation,
  rowToQueue,
  rowToResult,
  rowToSchedule,
  type ScheduleRow,
  scheduleColumns,
  statusOf,
  storedJob,
} from "../rows.js";
import { listQuery } from "./list-query.js";
import { prepareNamed } from "./named-params.js";
import { type ObjectRows, objectRows } from "./object-rows.js";
import { createReopeningStore } from "./reopening-store.js";
import { readJobStats } from "./sqlite-stats.js";

/** What a terminal UPDATE returns: what the finish needs, and whether the job reports. */
type EndedRow = Pick<JobRow, "id" | "bucket" | "attempt" | "callback_url" | "callback_of">;

const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

export interface SqliteJobStoreOptions {
  /** A file path, or ":memory:" for tests that do not need a file. */
  path: string;
  /** How long a write waits for another connection's lock before failing. */
  busyTimeoutMs?: number;
  /** Where the store's time comes from; the system clock unless a test injects one. */
  clock?: Clock;
  /**
   * Free space the disk holding the database must have for the store to report itself ready
   * (its probe fails below it, so readiness turns off before writes start failing). 0: no check.
   */
  minFreeBytes?: number;
  /** Told of each group commit once it is durable: how many writes, and how long it took. */
  onCommit?: (commit: { writes: number; ms: number }) => void;
  /** How callback deliveries are made (src/job/callbacks.ts). */
  callbacks?: CallbackSettings;
}

/**
 * The embedded default store: one better-sqlite3 connection in WAL mode. A commit is on disk (the
 * WAL fdatasynced, as `synchronous=FULL` would, but on libuv's thread pool) before a write's
 * promise resolves and before any read can see it. A crash or a power cut after an acknowledged
 * enqueue cannot lose the job, and a result never reads as stored before it is. WAL lets readers
 * run alongside the writer; numbered migrations in ./migrations are applied in order, each in its
 * own transaction. Signals are in-process: SQLite is the one-node case.
 *
 * Storage faults (disk full, read-only file or directory, I/O errors, a failed fsync) reach
 * callers as {@link StoreUnavailableError} naming the path and what is wrong, reads included. A
 * failed fsync means that what was committed may not be on disk: the connection then refuses
 * every read and write (none is acknowledged) until it is reopened, and SQLite recovers the
 * database from its WAL on open. Reopening is tried at most once a second, and by every probe;
 * a database that cannot be opened at start (a read-only directory, a full disk) is opened the
 * same way once it can be (see ./reopening-store.ts).
 */
export function createSqliteJobStore(options: SqliteJobStoreOptions): JobStore {
  const signals = createNotifier();
  return createReopeningStore({
    path: options.path,
    clock: options.clock ?? systemClock,
    signals,
    minFreeBytes: options.path === ":memory:" ? 0 : (options.minFreeBytes ?? 0),
    open: () => openSqliteJobStore(options, signals),
    fault: (error) => storageFault(error, options.path),
    isMethod: (name) =>
      typeof (SqliteJobStore.prototype as unknown as Record<string, unknown>)[name] === "function",
  });
}

/** Opens one connection: the file (created if need be) in WAL mode, its migrations applied. */
function openSqliteJobStore(options: SqliteJobStoreOptions, notifier: Notifier): SqliteJobStore {
  if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
  const db = new Database(options.path);
  try {
    const mode = db.pragma("journal_mode = WAL", { simple: true });
    if (!db.memory && mode !== "wal") {
      throw new Error(
        `${options.path}: SQLite could not use WAL mode (it reported "${String(mode)}"); the store needs it (is the file on a network file system?)`,
      );
    }
    // Commits write the WAL; the store fsyncs it itself, off the event loop, before it reports a
    // write done (SqliteJobStore.sync): the durability of FULL without blocking on the disk.
    db.pragma("synchronous = NORMAL");
    db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
    db.pragma("foreign_keys = ON");
    // Statement journals in memory, not in temporary files: every write whose triggers may have
    // to be undone alone (the event and count triggers of each insert, claim and finish) wrote
    // about 6 pages to a temporary file per statement (strace: 190,715 pwrite calls for 30,000
    // inserts, 3,893 with this). Durability is the WAL's: a statement journal only undoes a
    // statement inside a transaction and is never read after a crash. Sorts and temporary tables
    // go to memory too: the store's queries walk indexes (see explainHotQueries), so theirs are small.
    db.pragma("temp_store = MEMORY");
    migrate(db);
    return new SqliteJobStore(
      db,
      options.clock ?? systemClock,
      notifier,
      options.onCommit,
      options.callbacks ?? DEFAULT_CALLBACK_SETTINGS,
    );
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * Applies the numbered .sql migrations that the database has not seen yet. The connection's
 * defensive mode is off meanwhile: a migration may edit a table's definition in the schema table
 * (SQLite's procedure for changing a CHECK constraint without copying the table, as 009 does).
 */
function migrate(db: Database.Database): void {
  db.unsafeMode(true);
  try {
    applyMigrations(db);
  } finally {
    db.unsafeMode(false);
  }
}

function applyMigrations(db: Database.Database): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  const isApplied = db.prepare("SELECT 1 FROM schema_migrations WHERE version = ?").pluck();
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .sort();
  for (const file of files) {
    const version = Number.parseInt(file, 10);
    if (isApplied.get(version)) continue;
    const sql = readFileSync(join(MIGRATIONS_DIR, file), "utf8");
    db.transaction(() => {
      // Checked again under the write lock: another process may have applied it meanwhile.
      if (isApplied.get(version)) return;
      db.exec(sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)").run(
        version,
        file,
        Date.now(),
      );
    }).immediate();
  }
}

/** Signals to send once a write is durable. */
type Effects = (() => void)[];

/** A write run in a group commit, waiting for its outcome to be durable. */
interface PendingWrite {
  op: (effects: Effects) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  /** Runs after the other writes of its group commit (claims: they then see every insert). */
  last: boolean;
}

class SqliteJobStore implements JobStore {
  private closed = false;
  private readonly listStatements = new Map<string, Database.Statement>();
  private readonly jobRowStatements = new Map<string, ObjectRows<JobRow>>();
  /** Ids of the callback deliveries this store creates. */
  private readonly nextJobId = jobIdFactory();
  private readonly s: ReturnType<typeof prepareStatements>;
  private readonly notifier: Notifier;
  readonly signals: StoreSignals;

  /** Writes waiting for the next group commit, in arrival order. */
  private pending: PendingWrite[] = [];
  /** How many of {@link pending} run last in their commit. */
  private lastWrites = 0;
  private flushScheduled = false;
  /** The WAL, fsynced after each group commit; null for an in-memory database. */
  private readonly walFd: number | null;
  /** When the last group commit began (performance.now()), for {@link onCommit}. */
  private commitStarted = 0;
  /** The fsync of the last group commit, while it runs (on libuv's thread pool). */
  private syncing: Promise<void> | null = null;
  /**
   * Set when an fsync failed: what was committed may not be on disk, so this connection reads and
   * writes nothing more; it is closed and the database reopened (see {@link failure}).
   */
  private syncFailure: StoreUnavailableError | null = null;
  /**
   * Runs writes in one IMMEDIATE transaction. Made once: better-sqlite3 builds four functions and
   * their properties for each transaction() (3.9 µs), which was once per group commit.
   */
  private readonly runWrites: Database.Transaction<
    (writes: PendingWrite[], effects: Effects) => unknown[]
  >;

  constructor(
    private readonly db: Database.Database,
    private readonly clock: Clock,
    notifier: Notifier,
    private readonly onCommit: ((commit: { writes: number; ms: number }) => void) | undefined,
    private readonly callbacks: CallbackSettings,
  ) {
    this.notifier = notifier;
    this.signals = notifier;
    this.s = prepareStatements(db);
    this.walFd = db.memory ? null : openWal(db.name);
    this.runWrites = db.transaction((writes, effects) => writes.map((w) => w.op(effects)));
  }

  /**
   * Runs a write in the next group commit: every write that arrives before the event loop's next
   * check phase (or while the previous commit is being fsynced) shares one transaction, so one
   * fsync makes them all durable. Each promise settles once the transaction is on disk, and then
   * the signals the write registered are sent. If a write throws, the batch is rolled back and
   * each write runs again in a transaction of its own, so one failing write does not undo the
   * others.
   */
  private write<T>(op: (effects: Effects) => T, last = false): Promise<T> {
    if (this.closed) return Promise.reject(new StoreUnavailableError("the store is closed"));
    if (this.syncFailure) return Promise.reject(this.syncFailure);
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, resolve: resolve as (v: unknown) => void, reject, last });
      if (last) this.lastWrites++;
      this.scheduleFlush();
    });
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /**
   * Commits the pending writes in one transaction, then fsyncs the WAL off the event loop and
   * settles them. Commits and fsyncs alternate: writes that arrive during an fsync wait for it and
   * go into the next commit together.
   */
  private flush(): void {
    this.flushScheduled = false;
    if (this.syncing) return; // the fsync's end flushes again
    let batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    if (this.lastWrites > 0 && this.lastWrites < batch.length) {
      batch = [...batch.filter((w) => !w.last), ...batch.filter((w) => w.last)];
    }
    this.lastWrites = 0;
    if (this.closed) {
      for (const w of batch) w.reject(new StoreUnavailableError("the store is closed"));
      return;
    }
    this.commitStarted = performance.now();
    const settle: (() => void)[] = [];
    const effects: Effects = [];
    try {
      const values = this.runWrites.immediate(batch, effects);
      for (const [i, v] of values.entries()) settle.push(() => batch[i]!.resolve(v));
    } catch {
      // Rare: find the culprit by running each write alone.
      effects.length = 0;
      for (const w of batch) {
        const own: Effects = [];
        try {
          const [v] = this.runWrites.immediate([w], own);
          settle.push(() => w.resolve(v));
          effects.push(...own);
        } catch (error) {
          settle.push(() => w.reject(this.unavailable(error) ?? error));
        }
      }
    }
    this.sync(batch, settle, effects);
  }

  /** A StoreUnavailableError for an error that says the database cannot be written now. */
  private unavailable(error: unknown): StoreUnavailableError | null {
    return storageFault(error, this.db.name);
  }

  /**
   * Why this connection refuses everything (an fsync failed), or null: a broken connection must
   * be replaced by a new one (SQLite recovers the database from its WAL when it is opened again).
   */
  get failure(): StoreUnavailableError | null {
    return this.syncFailure;
  }

  /**
   * Makes the last commit durable, then settles its writes and sends their signals. The
   * connection runs with `synchronous=NORMAL`, so SQLite's commit only writes the WAL; fdatasync
   * of the WAL here gives what `synchronous=FULL` gives (the commit is on disk before anyone hears
   * of it) without blocking the event loop for the disk. Reads wait for it too (see
   * {@link settled}), so nothing reads as done before it is on disk.
   */
  private sync(batch: PendingWrite[], settle: (() => void)[], effects: Effects): void {
    const done = () => {
      this.onCommit?.({ writes: batch.length, ms: performance.now() - this.commitStarted });
      for (const f of settle) f();
      for (const f of effects) f();
      // Most writes append events (triggers): the stream's readers look.
      this.notifier.eventsAppended();
    };
    const fd = this.walFd;
    if (fd === null) {
      done();
      return;
    }
    this.syncing = new Promise((finished) => {
      fdatasync(fd, (err) => {
        this.syncing = null;
        if (err) {
          this.syncFailure = new StoreUnavailableError(
            `${this.db.name} could not be flushed to disk (fsync failed: ${err.code ?? err.message}); the database is reopened before it takes writes again`,
            { cause: err },
          );
          for (const w of batch) w.reject(this.syncFailure);
          // Writes queued meanwhile were not acknowledged either: none is run on this connection.
          for (const w of this.pending.splice(0)) w.reject(this.syncFailure);
          this.lastWrites = 0;
        } else {
          done();
        }
        finished();
        if (this.pending.length > 0) this.scheduleFlush();
      });
    });
  }

  /**
   * Resolves once every write queued so far is committed and on disk. Reads wait for it, so a
   * read sees every write queued before it and nothing that is not yet durable: whoever acts on
   * a signal (even one sent as a write is queued, see {@link wakeForDue}) sees the change. When
   * nothing is pending, reads go straight through.
   */
  private settled(): Promise<void> | undefined {
    // What this connection shows may not be on disk: nothing is read until it is reopened.
    if (this.syncFailure) return Promise.reject(this.syncFailure);
    // Writes not yet committed: an empty write joins their commit and settles with it.
    if (this.pending.length > 0) return this.write(() => undefined);
    // Only an fsync under way: it makes every write so far durable, so the read waits for it. An
    // empty write here would be a commit and an fsync of its own, and reads arriving during that
    // fsync would queue the next: under read load the disk was synced about 120 times a second
    // with nothing to write (strace of `GET /jobs/{id}` under wrk).
    if (this.syncing) {
      return this.syncing.then(() => {
        if (this.syncFailure) throw this.syncFailure;
      });
    }
    return undefined;
  }

  async now(): Promise<number> {
    return this.clock.now();
  }

  async jobInsert(job: NewJob, audit?: AuditEvent): Promise<InsertResult> {
    const write = this.write((fx) => {
      const res = this.insertOne(job, fx);
      if (audit) this.insertAudit({ ...audit, jobId: res.job.id });
      return res;
    });
    this.wakeForDue([job]);
    return write;
  }

  async jobInsertMany(jobs: NewJob[], audit?: AuditEvent[]): Promise<InsertResult[]> {
    const write = this.write((fx) =>
      jobs.map((job, i) => {
        const res = this.insertOne(job, fx);
        const event = audit?.[i];
        if (event) this.insertAudit({ ...event, jobId: res.job.id });
        return res;
      }),
    );
    this.wakeForDue(jobs);
    return write;
  }

  /**
   * Wakes the workers as soon as due jobs are on their way into the group commit, not after it:
   * the claim they make then joins the same commit, after the insert, so it sees the jobs, and a
   * job can start after one fsync instead of two. This is safe here because every write of this
   * store goes through one ordered queue (the claim can never run before the insert), and the
   * claim's own promise resolves only once the commit is on disk, so no call starts for a job
   * that is not durable.
   */
  private wakeForDue(jobs: NewJob[]): void {
    if (jobs.some((j) => j.runAt <= j.createdAt)) this.notifier.jobsAvailable();
  }

  /** Inserts a job, or finds the kept job with its idempotency key. Runs inside a transaction. */
  private insertOne(job: NewJob, fx: Effects): InsertResult {
    if (job.queue !== "default" && !this.s.queueExists.get(job.queue)) {
      throw new QueueNotFoundError(job.queue);
    }
    if (job.idempotencyKey !== null) {
      const existing = this.s.getByIdempotencyKey.get(job.owner ?? "", job.idempotencyKey) as
        | JobRow
        | undefined;
      if (existing) {
        if (existing.expires_at === null || existing.expires_at > job.createdAt) {
          if (isConflict(existing.request_hash, job.requestHash)) {
            throw new IdempotencyConflictError(job.idempotencyKey, existing.id);
          }
          return { job: rowToJob(existing), inserted: false };
        }
        this.deleteWithEvent(existing.id, "expired", job.createdAt);
      }
    }
    if (job.scheduleId && job.scheduleTick !== null && job.scheduleTick !== undefined) {
      // One job per schedule and tick (the unique index jobs_schedule_tick holds it too).
      const existing = this.s.getByScheduleTick.get(job.scheduleId, job.scheduleTick) as
        | JobRow
        | undefined;
      if (existing) return { job: rowToJob(existing), inserted: false };
    }
    const body = encodeRequestBody(job.body);
    this.s.insertJob.run({
      id: job.id,
      state: job.runAt > job.createdAt ? "scheduled" : "available",
      run_at: job.runAt,
      scheduled_at: job.scheduledAt,
      created_at: job.createdAt,
      max_attempts: job.maxAttempts,
      priority: job.priority,
      method: job.method,
      url: job.url,
      headers: JSON.stringify(job.headers),
      sealed_headers: job.sealedHeaders,
      secret_header_names: JSON.stringify(job.secretHeaderNames),
      params: JSON.stringify(job.params),
      body_kind: body.kind,
      body: body.bytes,
      timeout_ms: job.timeoutMs,
      backoff_strategy: job.backoffStrategy,
      backoff_base_ms: job.backoffBaseMs,
      ttl_ms: job.ttlMs,
      tags: JSON.stringify(job.tags),
      idempotency_key: job.idempotencyKey,
      request_hash: job.requestHash,
      follow_redirects: job.followRedirects ? 1 : 0,
      max_redirects: job.maxRedirects,
      rate_limit_key: job.rateLimitKey,
      bucket: job.bucket,
      owner: job.owner,
      queue: job.queue,
      host: job.host,
      callback_url: job.callbackUrl,
      sign: job.sign ? 1 : 0,
      sealed_signing_secret: job.sealedSigningSecret,
      callback_of: job.callbackOf,
      schedule_id: job.scheduleId ?? null,
      schedule_tick: job.scheduleTick ?? null,
    });
    for (const tag of job.tags) this.s.insertTag.run(tag, job.id);
    fx.push(() => {
      this.notifier.jobChanged({ jobId: job.id, status: "queued" });
      if (job.runAt > job.createdAt) this.notifier.jobScheduled(job.runAt);
    });
    return { job: storedJob(job), inserted: true };
  }

  private insertAudit(e: AuditEvent): void {
    this.s.insertAudit.run({
      at: e.at,
      principal: e.principal,
      action: e.action,
      job_id: e.jobId,
      remote_address: e.remoteAddress,
      protocol: e.protocol,
      outcome: e.outcome,
      detail: e.detail,
    });
  }

  async jobGet({ id }: { id: string }): Promise<Job | null> {
    const now = this.clock.now();
    await this.settled();
    const row = this.s.getJob.get(id, now);
    return row ? rowToJob(row) : null;
  }

  /**
   * Lists newest first without sorting the table: with tags, it walks the first tag's index in id
   * order; with statuses, one walk of the (state, id) index per state, merged; otherwise the
   * primary index. Each walk stops after a page, so a page costs about the same whether ten or a
   * million jobs match.
   */
  async jobList(params: JobListParams): Promise<JobListPage> {
    const now = this.clock.now();
    await this.settled();
    const q = listQuery(params, now);
    const { rows, next } = pageOf(q, this.cachedJobRows(q.sql).all(...q.args), params.limit);
    return { jobs: rows.map(rowToJob), next };
  }

  async jobCount(params: {
    filter: JobFilter;
    ownedBy?: string;
    cap: number;
  }): Promise<{ count: number; capped: boolean }> {
    const now = this.clock.now();
    await this.settled();
    // The walk of a list page as wide as the cap (a bounded scan reads cap + 1 rows at most).
    const q = listQuery(
      { ...params.filter, ownedBy: params.ownedBy, limit: params.cap, scanLimit: params.cap + 1 },
      now,
    );
    // Counted by SQLite: no row is made into a JavaScript object (10,000 jobs' rows, bodies
    // included, took 510 ms of the event loop with 50,000 jobs stored, the count 8 ms; with a
    // host condition 685 and 29).
    const { n, examined } = this.cached(
      `SELECT count(id) AS n, max(${q.scanned ? "examined" : "0"}) AS examined FROM (${q.sql})`,
    ).get(...q.args) as { n: number; examined: number | null };
    const examinedAll = q.scanned && examined === q.walkLimit;
    return { count: Math.min(n, params.cap), capped: n > params.cap || examinedAll };
  }

  /**
   * The query plans of the statements whose cost must not grow with the number of jobs (claiming,
   * promoting, rescuing, listing a page), for tests that guard against a plan that sorts or scans
   * the whole table.
   */
  explainHotQueries(): Record<string, string[]> {
    const plan = (sql: string) => {
      const named = [...new Set(sql.match(/@\w+/g) ?? [])].map((n) => n.slice(1));
      const bind = named.length
        ? [Object.fromEntries(named.map((n) => [n, 0]))]
        : new Array((sql.match(/\?/g) ?? []).length).fill(0);
      const rows = this.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...bind) as {
        detail: string;
      }[];
      return rows.map((r) => r.detail);
    };
    const list = (p: Partial<JobListParams>) => listQuery({ limit: 50, ...p }, 0).sql;
    return {
      claim: plan(SQL.claim),
      candidates: plan(SQL.candidates),
      promoteScheduled: plan(SQL.promoteScheduled),
      nextScheduledAt: plan(SQL.nextScheduledAt),
      expiredLeases: plan(SQL.expiredLeases),
      listAll: plan(list({})),
      listByStatus: plan(list({ statuses: ["queued", "running"] })),
      listByTag: plan(list({ tags: ["a", "b"], statuses: ["queued"] })),
      listByQueue: plan(list({ queue: "q" })),
      listFinished: plan(list({ statuses: ["failed"], finishedAfter: 1 })),
    };
  }

  private cached(sql: string): Database.Statement {
    let stmt = this.listStatements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      if (this.listStatements.size < 256) this.listStatements.set(sql, stmt);
    }
    return stmt;
  }

  /** {@link cached} for a query of whole job rows (a page of a list), read by {@link objectRows}. */
  private cachedJobRows(sql: string): ObjectRows<JobRow> {
    let rows = this.jobRowStatements.get(sql);
    if (!rows) {
      rows = objectRows<JobRow>(this.db.prepare(sql));
      if (this.jobRowStatements.size < 256) this.jobRowStatements.set(sql, rows);
    }
    return rows;
  }

  async jobCancel(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<CancelResult> {
    const now = this.clock.now();
    return this.write((fx): CancelResult => {
      const result = this.cancelOne(params.id, now, params.ownedBy, fx);
      if (params.audit) {
        const outcome: AuditOutcome =
          result.kind === "canceled"
            ? "ok"
            : result.kind === "not-found"
              ? "not_found"
              : "failed_precondition";
        this.insertAudit(params.audit(outcome));
      }
      return result;
    });
  }

  private cancelOne(
    id: string,
    now: number,
    ownedBy: string | undefined,
    fx: Effects,
  ): CancelResult {
    const row = this.s.getJob.get(id, now);
    if (!row || (ownedBy !== undefined && row.owner !== ownedBy)) return { kind: "not-found" };
    if (statusOf(row.state) !== "queued" && row.state !== "running") {
      return { kind: "already-finished", job: rowToJob(row) };
    }
    this.s.closeOpenAttemptsOfJob.run({
      job_id: id,
      now,
      outcome: "canceled",
      error_code: "canceled",
      error: "canceled while the call was in flight",
    });
    const updated = this.s.cancelJob.get({ id, now })!;
    // A running job frees a slot; an available or scheduled one may have been promoted from
    // waiting to take one. Either way the next waiting job gets its turn (the claim re-checks).
    if (row.state !== "waiting") this.promoteOneWaiting(now, row.bucket, fx);
    fx.push(() => this.notifier.jobChanged({ jobId: id, status: "canceled" }));
    const job = this.ended(updated, now, fx);
    return { kind: "canceled", job, wasRunning: row.state === "running" };
  }

  /**
   * Writes what a terminal transition creates (src/job/callbacks.ts): the callback delivery, in
   * the transaction of the transition, linked from the job. Returns the job as it is then.
   */
  private ended(row: JobRow, now: number, fx: Effects): Job {
    const job = rowToJob(row);
    if (!reportsOutcome(job)) return job;
    const result = this.s.getResult.get(job.id) as ResultRow | undefined;
    const { callback } = terminalTransition({
      job,
      result: result ? rowToResult(result) : null,
      id: this.nextJobId(now),
      now,
      settings: this.callbacks,
    });
    if (callback === null) return job;
    this.insertOne(callback, fx);
    this.s.setCallbackJob.run(callback.id, job.id);
    fx.push(() => this.notifier.jobsAvailable());
    return { ...job, callbackJobId: callback.id };
  }

  /**
   * {@link ended} after a terminal UPDATE that returned only the columns a finish needs: the
   * whole row is read only for a job that reports its outcome.
   */
  private endedMoved(moved: EndedRow, now: number, fx: Effects): void {
    if (!reportsOutcome({ callbackUrl: moved.callback_url, callbackOf: moved.callback_of })) return;
    this.ended(this.s.getJobRow.get(moved.id)!, now, fx);
  }

  private promoteOneWaiting(now: number, bucket: string, fx: Effects): void {
    if (this.s.promoteOneWaiting.run(now, bucket).changes > 0) {
      fx.push(() => this.notifier.jobsAvailable());
    }
  }

  async jobClaim(params: ClaimParams): Promise<ClaimResult> {
    if (params.limit <= 0 || params.queues.length === 0) return { jobs: [], deferredUntil: null };
    const now = this.clock.now();
    // Random, so that no other claim (another process, a restart) can ever hold the same token.
    const token = randomUUID();
    return this.write((fx): ClaimResult => {
      const rows: JobRow[] = [];
      let deferredUntil: number | null = null;
      for (const queue of params.queues) {
        const left = Math.min(queue.limit, params.limit - rows.length);
        if (left <= 0) continue;
        const got = this.claimFrom(queue, left, now, token, params);
        rows.push(...got.rows);
        if (got.deferredUntil !== null) {
          deferredUntil = Math.min(deferredUntil ?? got.deferredUntil, got.deferredUntil);
        }
      }
      const jobs = rows.map((row) => {
        this.s.insertAttempt.run({
          job_id: row.id,
          attempt: row.attempt,
          lease_token: token,
          started_at: now,
          node: params.node,
        });
        return claimedJob(row, token);
      });
      const deferred = deferredUntil;
      fx.push(() => {
        for (const job of jobs) this.notifier.jobChanged({ jobId: job.id, status: "running" });
        if (deferred !== null) this.notifier.jobScheduled(deferred);
      });
      return { jobs, deferredUntil };
      // Last in its commit: a claim queued while the previous commit is fsynced then sees the jobs
      // enqueued after it was asked for, instead of leaving them for a claim one commit later.
    }, true);
  }

  /** Claims up to `limit` jobs of one queue, within its rate and the buckets' limits. */
  private claimFrom(
    queue: QueueClaim,
    limit: number,
    now: number,
    token: string,
    params: ClaimParams,
  ): { rows: JobRow[]; deferredUntil: number | null } {
    const leaseExpiresAt = now + params.leaseMs;
    let deferredUntil: number | null = null;
    // The queue's rate across nodes: take no more than its budget allows now.
    const tat = queue.rate
      ? ((this.s.getQueueRate.get(queue.name) as number | undefined) ?? null)
      : null;
    if (queue.rate) {
      const budget = queueBudget(tat, queue.rate, now, limit);
      limit = budget.allowed;
      deferredUntil = budget.nextSlotAt;
    }
    let rows: JobRow[] = [];
    if (limit > 0 && !params.limits) {
      rows = this.s.claim.all({
        now,
        token,
        lease_expires_at: leaseExpiresAt,
        queue: queue.name,
        limit,
      });
    } else if (limit > 0) {
      const admitted = this.admit(now, queue.name, limit, params.limits!);
      if (admitted.deferredUntil !== null) {
        deferredUntil = Math.min(deferredUntil ?? admitted.deferredUntil, admitted.deferredUntil);
      }
      rows = admitted.ids.map(
        (id) =>
          this.s.claimOne.get({
            now,
            token,
            lease_expires_at: leaseExpiresAt,
            queue: queue.name,
            id,
          })!,
      );
    }
    if (queue.rate && rows.length > 0) {
      this.s.setQueueRate.run(queue.name, queueBudget(tat, queue.rate, now, rows.length).tat);
    }
    rows.sort(claimOrder);
    return { rows, deferredUntil };
  }

  /** Runs the admission of src/job/admission.ts over the available jobs; returns those to claim. */
  private admit(
    now: number,
    queue: string,
    limit: number,
    limits: LimitResolver,
  ): { ids: readonly string[]; deferredUntil: number | null } {
    const admission = createAdmission({ now, limit, limits });
    while (admission.wantsMore()) {
      const candidates = (
        this.s.availableCandidates.all(queue, admission.fetchSize()) as Pick<
          JobRow,
          "id" | "bucket" | "rate_reserved"
        >[]
      ).map(
        (r): Candidate => ({ id: r.id, bucket: r.bucket, rateReserved: r.rate_reserved === 1 }),
      );
      for (const bucket of admission.unknownBuckets(candidates)) {
        const rate = this.s.getRate.get(bucket) as { tat: number; actual_tat: number } | undefined;
        admission.learn(bucket, {
          running: this.s.countRunning.get(bucket) as number,
          tat: rate?.tat ?? null,
          actualTat: rate?.actual_tat ?? null,
        });
      }
      const round = admission.decide(candidates);
      for (const id of round.wait) this.s.setWaiting.run(now, id);
      for (const r of round.reserve) this.s.reserveSlot.run(r.runAt, now, r.id);
    }
    for (const r of admission.changedRates()) this.s.setRate.run(r.bucket, r.tat, r.actualTat);
    return { ids: admission.claimed, deferredUntil: admission.deferredUntil };
  }

  async jobRenewLeases(params: { leases: Lease[]; leaseMs: number }): Promise<Set<string>> {
    const held = new Set<string>();
    if (params.leases.length === 0) return held;
    const expiresAt = this.clock.now() + params.leaseMs;
    await this.write(() => {
      for (const lease of params.leases) {
        const r = this.s.renewLease.run(expiresAt, lease.jobId, lease.token);
        if (r.changes === 1) held.add(lease.jobId);
      }
    });
    return held;
  }

  async jobFinishAttempt(p: FinishAttemptParams): Promise<boolean> {
    const now = this.clock.now();
    return this.write((fx) => {
      this.closeAttempt(p.lease, p.end, now);
      if (p.next === null) return false;
      const { jobId: id, token } = p.lease;
      let row: Pick<JobRow, "bucket" | "attempt"> | undefined;
      let ended: EndedRow | undefined;
      let status: JobStatus;
      switch (p.next.status) {
        case "succeeded":
        case "failed":
          status = p.next.status;
          ended = this.s.finishJob.get({
            id,
            token,
            now,
            state: status,
            error: status === "failed" ? p.end.error : null,
            error_code: status === "failed" ? p.end.errorCode : null,
          }) as EndedRow | undefined;
          row = ended;
          break;
        case "queued": {
          status = "queued";
          const runAt = p.next.runAt;
          row = this.s.requeueJob.get({
            id,
            token,
            now,
            state: runAt > now ? "scheduled" : "available",
            run_at: runAt,
            error: p.end.error,
            error_code: p.end.errorCode,
          }) as typeof row;
          if (row) {
            fx.push(() => {
              if (runAt > now) this.notifier.jobScheduled(runAt);
              else this.notifier.jobsAvailable();
            });
          }
          break;
        }
        case "released":
          status = "queued";
          row = this.s.releaseJob.get({ id, token, now }) as typeof row;
          if (row) fx.push(() => this.notifier.jobsAvailable());
          break;
      }
      if (!row) return false;
      this.promoteOneWaiting(now, row.bucket, fx);
      if (p.result) this.writeResult(p.lease.jobId, row.attempt, p.result, now);
      if (ended) this.endedMoved(ended, now, fx);
      fx.push(() => this.notifier.jobChanged({ jobId: p.lease.jobId, status }));
      return true;
    });
  }

  private closeAttempt(lease: Lease, end: AttemptEndRecord, now: number): void {
    this.s.closeAttempt.run({
      job_id: lease.jobId,
      lease_token: lease.token,
      now,
      outcome: end.outcome,
      response_status: end.responseStatus,
      error_code: end.errorCode,
      error: end.error,
      duration_ms: end.durationMs,
      retryable: end.retryable ? 1 : 0,
    });
  }

  private writeResult(jobId: string, attempt: number, r: ResultRecord, now: number): void {
    this.s.upsertResult.run({
      job_id: jobId,
      attempt,
      response_status: r.response?.status ?? null,
      response_headers: r.response ? JSON.stringify(r.response.headers) : null,
      body: r.response ? Buffer.from(r.response.body) : null,
      body_encoding: r.response?.bodyEncoding ?? null,
      truncated: r.response?.truncated ? 1 : 0,
      error: r.error,
      duration_ms: r.durationMs,
      finished_at: now,
    });
  }

  async jobRescueExpired({ limit }: { limit: number }): Promise<RescuedJob[]> {
    const now = this.clock.now();
    return this.write((fx) => {
      const expired = this.s.expiredLeases.all(now, limit) as Pick<
        JobRow,
        "id" | "lease_token" | "attempt" | "max_attempts" | "bucket"
      >[];
      const rescued = expired.map((row): RescuedJob => {
        const lease = { jobId: row.id, token: row.lease_token! };
        this.closeAttempt(lease, LOST_ATTEMPT, now);
        const { id, lease_token: token } = row;
        const status = rescuedStatus({ attempt: row.attempt, maxAttempts: row.max_attempts });
        let ended: EndedRow | undefined;
        if (status === "failed") {
          ended = this.s.finishJob.get({
            id,
            token,
            now,
            state: "failed",
            error: LOST_ERROR,
            error_code: LOST_ATTEMPT.errorCode,
          }) as EndedRow | undefined;
        } else {
          this.s.requeueJob.get({
            id,
            token,
            now,
            state: "available",
            run_at: now,
            error: LOST_ERROR,
            error_code: LOST_ATTEMPT.errorCode,
          });
        }
        this.promoteOneWaiting(now, row.bucket, fx);
        this.writeResult(
          row.id,
          row.attempt,
          { response: null, error: LOST_ERROR, durationMs: 0 },
          now,
        );
        if (ended) this.endedMoved(ended, now, fx);
        return { jobId: row.id, status };
      });
      fx.push(() => {
        for (const r of rescued) this.notifier.jobChanged({ jobId: r.jobId, status: r.status });
        if (rescued.some((r) => r.status === "queued")) this.notifier.jobsAvailable();
      });
      return rescued;
    });
  }

  async jobPromoteScheduled({ limit }: { limit: number }): Promise<number> {
    const now = this.clock.now();
    return this.write((fx) => {
      const n = this.s.promoteScheduled.run(now, now, limit).changes;
      if (n > 0) fx.push(() => this.notifier.jobsAvailable());
      return n;
    });
  }

  async jobNextScheduledAt(): Promise<number | null> {
    await this.settled();
    return (this.s.nextScheduledAt.get() as number | null | undefined) ?? null;
  }

  async jobPromoteWaiting({ limit }: { limit: number }): Promise<number> {
    return this.write((fx) => {
      const n = this.s.promoteWaiting.run(limit).changes;
      if (n > 0) fx.push(() => this.notifier.jobsAvailable());
      return n;
    });
  }

  async jobDeleteExpired({ limit }: { limit: number }): Promise<number> {
    const now = this.clock.now();
    return this.write(() => {
      const ids = this.s.expiredIds.all(now, limit) as string[];
      for (const id of ids) this.deleteWithEvent(id, "expired", now);
      return ids.length;
    });
  }

  /** Deletes a job (its attempts, result and tags go with it) and appends why to the stream. */
  private deleteWithEvent(id: string, type: "expired" | "deleted", now: number): void {
    this.s.goneEvent.run({ id, type, now });
    this.s.deleteJob.run(id);
  }

  async jobNextExpiry(): Promise<number | null> {
    await this.settled();
    return (this.s.nextExpiry.get() as number | null | undefined) ?? null;
  }

  async attemptList({ jobId }: { jobId: string }): Promise<Attempt[]> {
    await this.settled();
    return (this.s.listAttempts.all(jobId) as AttemptRow[]).map(rowToAttempt);
  }

  async resultGet({ jobId }: { jobId: string }): Promise<JobResult | null> {
    await this.settled();
    const row = this.s.getResult.get(jobId) as ResultRow | undefined;
    return row ? rowToResult(row) : null;
  }

  async auditInsert(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.write(() => {
      for (const e of events) this.insertAudit(e);
    });
  }

  async auditList(p: AuditListParams): Promise<{ events: StoredAuditEvent[]; more: boolean }> {
    await this.settled();
    const where: string[] = [];
    const args: unknown[] = [];
    const eq = (column: string, value: unknown) => {
      if (value === undefined) return;
      where.push(`${column} = ?`);
      args.push(value);
    };
    eq("principal", p.principal);
    eq("action", p.action);
    eq("job_id", p.jobId);
    eq("outcome", p.outcome);
    if (p.since !== undefined) {
      where.push("at >= ?");
      args.push(p.since);
    }
    if (p.until !== undefined) {
      where.push("at < ?");
      args.push(p.until);
    }
    if (p.beforeId !== undefined) {
      where.push("id < ?");
      args.push(p.beforeId);
    }
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ? + 0`;
    args.push(p.limit + 1);
    const rows = this.cached(sql).all(...args) as AuditRow[];
    return { events: rows.slice(0, p.limit).map(rowToAudit), more: rows.length > p.limit };
  }

  async auditDeleteBefore({ before, limit }: { before: number; limit: number }): Promise<number> {
    return this.write(() => this.s.deleteAuditBefore.run(before, limit).changes);
  }

  async jobRetry(params: {
    id: string;
    ownedBy?: string;
    overrides: RetryOverrides | null;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<
    { kind: "retried"; job: Job } | { kind: "not-retryable"; job: Job } | { kind: "not-found" }
  > {
    const now = this.clock.now();
    return this.write((fx) => {
      const row = this.s.getJob.get(params.id, now);
      type Result =
        | { kind: "retried"; job: Job }
        | { kind: "not-retryable"; job: Job }
        | { kind: "not-found" };
      let result: Result;
      if (!row || (params.ownedBy !== undefined && row.owner !== params.ownedBy)) {
        result = { kind: "not-found" };
      } else if (!actionable("retry", statusOf(row.state))) {
        result = { kind: "not-retryable", job: rowToJob(row) };
      } else {
        result = { kind: "retried", job: rowToJob(this.retryOne(row, params.overrides, now, fx)) };
      }
      if (params.audit) {
        this.insertAudit(
          params.audit(
            result.kind === "retried"
              ? "ok"
              : result.kind === "not-found"
                ? "not_found"
                : "failed_precondition",
          ),
        );
      }
      return result;
    });
  }

  /**
   * Puts a failed or canceled job back in the queue (src/job/operations.ts `retryPlan`); throws
   * QueueNotFoundError if its queue no longer exists.
   */
  private retryOne(
    row: JobRow,
    overrides: RetryOverrides | null,
    now: number,
    fx: Effects,
  ): JobRow {
    // A queue deleted since the job ended: back in it, the job would wait where nobody claims.
    if (row.queue !== "default" && !this.s.queueExists.get(row.queue)) {
      throw new QueueNotFoundError(row.queue);
    }
    const plan = retryPlan({ attempt: row.attempt, maxAttempts: row.max_attempts }, overrides, now);
    const updated = this.s.retryJob.get({
      id: row.id,
      now,
      run_at: plan.runAt,
      max_attempts: plan.maxAttempts,
      state: plan.runAt > now ? "scheduled" : "available",
    }) as JobRow;
    fx.push(() => {
      this.notifier.jobChanged({ jobId: row.id, status: "queued" });
      if (plan.runAt > now) this.notifier.jobScheduled(plan.runAt);
      else this.notifier.jobsAvailable();
    });
    return updated;
  }

  async jobDelete(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<{ kind: "deleted" } | { kind: "not-finished"; job: Job } | { kind: "not-found" }> {
    const now = this.clock.now();
    return this.write(() => {
      const row = this.s.getJob.get(params.id, now);
      let result: { kind: "deleted" } | { kind: "not-finished"; job: Job } | { kind: "not-found" };
      if (!row || (params.ownedBy !== undefined && row.owner !== params.ownedBy)) {
        result = { kind: "not-found" };
      } else if (!actionable("delete", statusOf(row.state))) {
        result = { kind: "not-finished", job: rowToJob(row) };
      } else {
        this.deleteWithEvent(row.id, "deleted", now);
        result = { kind: "deleted" };
      }
      if (params.audit) {
        this.insertAudit(
          params.audit(
            result.kind === "deleted"
              ? "ok"
              : result.kind === "not-found"
                ? "not_found"
                : "failed_precondition",
          ),
        );
      }
      return result;
    });
  }

  async statsCounts(): Promise<QueueCounts[]> {
    await this.settled();
    const byQueue = new Map<string, QueueCounts>();
    for (const row of this.s.counts.all() as {
      queue: string;
      state: JobRow["state"];
      n: number;
    }[]) {
      let entry = byQueue.get(row.queue);
      if (!entry) {
        entry = { queue: row.queue, counts: emptyCounts() };
        byQueue.set(row.queue, entry);
      }
      entry.counts[statusOf(row.state)] += row.n;
    }
    return [...byQueue.values()].sort((a, b) => (a.queue < b.queue ? -1 : 1));
  }

  async statsActivity(params: { queue?: string }): Promise<QueueActivity[]> {
    await this.settled();
    const running = new Map(
      (this.s.runningByQueue.all() as { queue: string; n: number }[]).map((r) => [r.queue, r.n]),
    );
    const queues = params.queue ? [params.queue] : (this.s.queueNames.all() as string[]);
    return queues.map((queue) => ({
      queue,
      oldestQueuedAt: (this.s.headOfQueue.get(queue) as number | undefined) ?? null,
      running: running.get(queue) ?? 0,
    }));
  }

  async statsThroughput(params: { sinceMinute: number; queue?: string }): Promise<ThroughputRow[]> {
    await this.settled();
    const rows = (
      params.queue === undefined
        ? this.s.throughput.all(params.sinceMinute)
        : this.s.throughputOfQueue.all(params.sinceMinute, params.queue)
    ) as { minute: number; queue: string; state: ThroughputRow["status"]; n: number }[];
    return rows.map((r) => ({ minute: r.minute, queue: r.queue, status: r.state, count: r.n }));
  }

  async statsDurations(params: {
    sinceMs: number;
    queue?: string;
    limit: number;
  }): Promise<DurationRow[]> {
    await this.settled();
    // One ordered read per status, so each walks the (state, finished_at) index backwards.
    const of = (state: string) => `SELECT COALESCE(j.host, '') AS host, r.duration_ms AS durationMs,
        j.finished_at AS finishedAt
      FROM jobs j JOIN results r ON r.job_id = j.id
      WHERE j.state = '${state}' AND j.finished_at IS NOT NULL AND j.finished_at >= @since
        ${params.queue === undefined ? "" : "AND j.queue = @queue"}
      ORDER BY j.finished_at DESC LIMIT @limit + 0`;
    const bind = {
      since: params.sinceMs,
      limit: params.limit,
      ...(params.queue === undefined ? {} : { queue: params.queue }),
    };
    return ["succeeded", "failed"].flatMap(
      (state) => this.cached(of(state)).all(bind) as DurationRow[],
    );
  }

  async statsGroups(params: {
    by: "host" | "tag";
    queue?: string;
    limit: number;
    scanCap: number;
  }): Promise<{ groups: { key: string; queued: number; running: number }[]; capped: boolean }> {
    await this.settled();
    const active = `SELECT id, host, state FROM jobs
      WHERE state IN ('available', 'scheduled', 'waiting', 'running')
      ${params.queue === undefined ? "" : "AND queue = @queue"} LIMIT @cap + 0`;
    const grouped =
      params.by === "host"
        ? `SELECT COALESCE(host, '') AS key, SUM(state <> 'running') AS queued,
             SUM(state = 'running') AS running FROM (${active}) GROUP BY key`
        : `SELECT t.tag AS key, SUM(a.state <> 'running') AS queued,
             SUM(a.state = 'running') AS running
           FROM (${active}) a JOIN job_tags t ON t.job_id = a.id GROUP BY t.tag`;
    const bind = {
      cap: params.scanCap + 1,
      limit: params.limit,
      ...(params.queue === undefined ? {} : { queue: params.queue }),
    };
    const groups = this.cached(
      `${grouped} ORDER BY queued + running DESC, key LIMIT @limit + 0`,
    ).all(bind) as { key: string; queued: number; running: number }[];
    const seen = this.cached(`SELECT count(*) FROM (${active})`).pluck().get(bind) as number;
    return { groups, capped: seen > params.scanCap };
  }

  async statsCompact({ keepMinutes }: { keepMinutes: number }): Promise<void> {
    const minute = Math.floor(this.clock.now() / 60_000) - keepMinutes;
    await this.write(() => {
      this.s.dropThroughput.run(minute);
      this.s.dropZeroCounts.run();
    });
  }

  async queueCreate(q: Omit<QueueSettings, "createdAt" | "updatedAt">): Promise<boolean> {
    const now = this.clock.now();
    return this.write((fx) => {
      const created =
        this.s.insertQueue.run({ ...queueColumns(q), paused: q.paused ? 1 : 0, now }).changes === 1;
      if (created) fx.push(() => this.notifier.queuesChanged());
      return created;
    });
  }

  async queueUpdate(q: Omit<QueueSettings, "createdAt" | "updatedAt">): Promise<boolean> {
    const now = this.clock.now();
    return this.write((fx) => {
      const updated =
        this.s.updateQueue.run({ ...queueColumns(q), paused: q.paused ? 1 : 0, now }).changes === 1;
      if (updated) fx.push(() => this.notifier.queuesChanged());
      return updated;
    });
  }

  async queueGet({ name }: { name: string }): Promise<QueueSettings | null> {
    await this.settled();
    const row = this.s.getQueue.get(name) as QueueRow | undefined;
    return row ? rowToQueue(row) : null;
  }

  async queueList(): Promise<QueueSettings[]> {
    await this.settled();
    return (this.s.listQueues.all() as QueueRow[]).map(rowToQueue);
  }

  async queueDelete({ name }: { name: string }): Promise<"deleted" | "not-found" | "not-empty"> {
    return this.write((fx) => {
      if (!this.s.queueExists.get(name)) return "not-found";
      if (name === "default" || ((this.s.activeInQueue.get(name) as number | null) ?? 0) > 0) {
        return "not-empty";
      }
      this.s.deleteQueue.run(name);
      this.s.deleteQueueRate.run(name);
      fx.push(() => this.notifier.queuesChanged());
      return "deleted";
    });
  }

  async scheduleCreate(schedule: Schedule): Promise<void> {
    const c = scheduleColumns(schedule);
    await this.write(() => {
      this.s.insertSchedule.run({ ...c, paused: c.paused ? 1 : 0 });
    });
  }

  async scheduleGet({ id }: { id: string }): Promise<Schedule | null> {
    await this.settled();
    const row = this.s.getSchedule.get(id) as ScheduleRow | undefined;
    return row ? rowToSchedule(row) : null;
  }

  async scheduleList(params: {
    ownedBy?: string;
    afterId?: string;
    limit: number;
  }): Promise<Schedule[]> {
    await this.settled();
    const rows = this.s.listSchedules.all({
      owner: params.ownedBy ?? null,
      after: params.afterId ?? null,
      limit: params.limit,
    }) as ScheduleRow[];
    return rows.map(rowToSchedule);
  }

  async scheduleUpdate(schedule: Schedule): Promise<boolean> {
    const c = scheduleColumns(schedule);
    return this.write(
      () => this.s.updateSchedule.run({ ...c, paused: c.paused ? 1 : 0 }).changes === 1,
    );
  }

  async scheduleDelete({ id }: { id: string }): Promise<boolean> {
    return this.write(() => this.s.deleteSchedule.run(id).changes === 1);
  }

  async scheduleDue(params: { dueBy: number; limit: number }): Promise<Schedule[]> {
    await this.settled();
    return (this.s.dueSchedules.all(params) as ScheduleRow[]).map(rowToSchedule);
  }

  async scheduleAdvance(params: {
    id: string;
    from: number | null;
    updatedAt: number;
    nextRunAt: number | null;
    bufferedTick: number | null;
    lastRun: { at: number; jobId: string } | null;
  }): Promise<boolean> {
    return this.write(
      () =>
        this.s.advanceSchedule.run({
          id: params.id,
          from: params.from,
          updated_at: params.updatedAt,
          next_run_at: params.nextRunAt,
          buffered_tick: params.bufferedTick,
          last_run_at: params.lastRun?.at ?? null,
          last_job_id: params.lastRun?.jobId ?? null,
        }).changes === 1,
    );
  }

  async operationCreate(op: Operation): Promise<void> {
    await this.write((fx) => {
      this.s.insertOperation.run(operationColumns(op));
      fx.push(() => this.notifier.operationsChanged());
    });
  }

  async operationGet({ id }: { id: string }): Promise<Operation | null> {
    await this.settled();
    const row = this.s.getOperation.get(id) as OperationRow | undefined;
    return row ? rowToOperation(row) : null;
  }

  async operationList(params: {
    state?: Operation["state"];
    owner?: string;
    limit: number;
  }): Promise<Operation[]> {
    await this.settled();
    const where: string[] = [];
    const args: unknown[] = [];
    if (params.state !== undefined) {
      where.push("state = ?");
      args.push(params.state);
    }
    if (params.owner !== undefined) {
      where.push("owner = ?");
      args.push(params.owner);
    }
    const sql = `SELECT * FROM operations ${where.length ? `WHERE ${where.join(" AND ")}` : ""}
      ORDER BY id DESC LIMIT ? + 0`;
    return (this.cached(sql).all(...args, params.limit) as OperationRow[]).map(rowToOperation);
  }

  async operationCancel({ id }: { id: string }): Promise<boolean> {
    const now = this.clock.now();
    return this.write((fx) => {
      const done =
        this.s.endOperation.run({ id, state: "canceled", now, error: null }).changes === 1;
      if (done) fx.push(() => this.notifier.operationsChanged());
      return done;
    });
  }

  async operationStep(params: {
    id: string;
    batch: number;
    scan: number;
    audit: (op: Operation) => AuditEvent;
  }): Promise<Operation | null> {
    const now = this.clock.now();
    return this.write((fx) => {
      const row = this.s.getOperation.get(params.id) as OperationRow | undefined;
      if (row?.state !== "running") return null;
      const op = rowToOperation(row);
      const statuses = narrowStatuses(op);
      let next: ListCursor | null = null;
      let matched: JobRow[] = [];
      if (statuses.length > 0) {
        const q = listQuery(
          {
            ...op.filter,
            statuses,
            ownedBy: op.owner ?? undefined,
            after: op.cursor === null ? undefined : (JSON.parse(op.cursor) as ListCursor),
            idAtMost: op.upperId,
            limit: params.batch,
            scanLimit: params.scan,
          },
          now,
        );
        ({ rows: matched, next } = pageOf(
          q,
          this.cachedJobRows(q.sql).all(...q.args),
          params.batch,
        ));
      }
      let affected = 0;
      for (const job of matched) {
        if (!actionable(op.kind, statusOf(job.state))) continue;
        if (op.kind === "cancel") {
          if (this.cancelOne(job.id, now, undefined, fx).kind === "canceled") affected++;
        } else if (op.kind === "retry") {
          try {
            this.retryOne(job, op.overrides, now, fx);
            affected++;
          } catch {
            // An override this job cannot take (max_attempts not above its attempts), or a queue
            // that no longer exists: left alone.
          }
        } else {
          this.deleteWithEvent(job.id, "deleted", now);
          affected++;
        }
      }
      const stepped: Operation = {
        ...op,
        examined: op.examined + matched.length,
        affected: op.affected + affected,
        cursor: next === null ? op.cursor : JSON.stringify(next),
        updatedAt: now,
        ...(next === null ? { state: "succeeded" as const, finishedAt: now } : {}),
      };
      this.s.stepOperation.run({
        id: op.id,
        examined: stepped.examined,
        affected: stepped.affected,
        cursor: stepped.cursor,
        state: stepped.state,
        now,
        finished_at: stepped.finishedAt,
      });
      if (stepped.state !== "running") {
        this.insertAudit(params.audit(stepped));
        fx.push(() => this.notifier.operationsChanged());
      }
      return stepped;
    });
  }

  async eventList({
    after,
    limit,
  }: {
    after: string | null;
    limit: number;
  }): Promise<{ events: JobStreamEvent[]; head: string }> {
    await this.settled();
    const horizon = this.s.eventHorizon.get() as number;
    const from = after === null ? horizon : parseCursor(after);
    if (from < horizon) throw new CursorExpiredError(after!);
    const events = (this.s.listEvents.all(from, limit) as EventRow[]).map(rowToEvent);
    return { events, head: events.at(-1)?.cursor ?? cursorOf(from) };
  }

  async eventHead(): Promise<string> {
    await this.settled();
    return cursorOf(this.s.eventHead.get() as number);
  }

  async eventAppend(params: { jobId: string; attempt: number; progress: Progress }): Promise<void> {
    const now = this.clock.now();
    await this.write(() =>
      this.s.appendProgress.run({
        id: params.jobId,
        attempt: params.attempt,
        detail: JSON.stringify(params.progress),
        now,
      }),
    );
  }

  async eventDeleteBefore({ before, limit }: { before: number; limit: number }): Promise<number> {
    return this.write(() => {
      const gone = this.s.deleteOldEvents.all(before, limit) as number[];
      if (gone.length > 0) this.s.raiseHorizon.run(Math.max(...gone));
      return gone.length;
    });
  }

  async nodeHeartbeat(node: NodeBeat): Promise<void> {
    const now = this.clock.now();
    await this.write(() =>
      this.s.upsertNode.run({
        id: node.id,
        started_at: node.startedAt,
        heartbeat_at: now,
        version: node.version,
        concurrency: node.concurrency,
        in_flight: node.inFlight,
      }),
    );
  }

  async nodeList({ withinMs }: { withinMs: number }): Promise<NodeInfo[]> {
    const now = this.clock.now();
    await this.settled();
    return (this.s.listNodes.all(now, now - withinMs) as NodeRow[]).map(rowToNode);
  }

  async nodeDelete(params: { id: string } | { silentForMs: number }): Promise<number> {
    const now = this.clock.now();
    return this.write(() =>
      "id" in params
        ? this.s.deleteNode.run(params.id).changes
        : this.s.deleteSilentNodes.run(now - params.silentForMs).changes,
    );
  }

  async leaderAttemptElect({ node, ttlMs }: { node: string; ttlMs: number }): Promise<boolean> {
    const now = this.clock.now();
    return this.write(() => {
      const row = this.s.elect.get({ node, now, expires_at: now + ttlMs }) as
        | { node: string }
        | undefined;
      return row?.node === node;
    });
  }

  async leaderResign({ node }: { node: string }): Promise<void> {
    await this.write((fx) => {
      if (this.s.resign.run(node).changes > 0) fx.push(() => this.notifier.leaderResigned());
    });
  }

  async probe(): Promise<void> {
    const now = this.clock.now();
    await this.write(() => this.s.probe.run(now));
  }

  async jobStats({ cap }: { cap: number }): Promise<JobStats> {
    await this.settled();
    return readJobStats(this.db, cap);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Writes already accepted are committed and made durable first.
    while (this.syncing || this.pending.length > 0) {
      if (this.syncing) await this.syncing;
      else this.flush();
    }
    this.closed = true;
    if (this.walFd !== null) closeSync(this.walFd);
    this.db.close();
  }
}

/**
 * Opens the database's WAL (which WAL mode keeps for as long as a connection is open) to fsync it
 * after each commit, and fsyncs the directory once so the WAL's entry in it is durable too.
 */
function openWal(dbPath: string): number {
  const fd = openSync(`${dbPath}-wal`, "r");
  const dir = openSync(dirname(dbPath), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return fd;
}

/**
 * A StoreUnavailableError saying what is wrong with the storage of the database at `path`, for an
 * error of SQLite or of the file system that means the database cannot serve now (disk full,
 * read-only file or directory, I/O error, locked, damaged); null for any other error.
 */
export function storageFault(error: unknown, path: string): StoreUnavailableError | null {
  if (error instanceof StoreUnavailableError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return null;
  let reason: string;
  if (code.startsWith("SQLITE_FULL") || code === "ENOSPC") {
    reason = `the disk holding ${path} is full`;
  } else if (
    code.startsWith("SQLITE_READONLY") ||
    code.startsWith("SQLITE_CANTOPEN") ||
    code.startsWith("SQLITE_IOERR") ||
    code.startsWith("SQLITE_PERM") ||
    ["EROFS", "EACCES", "EPERM", "EIO"].includes(code)
  ) {
    // SQLite says "readonly", "cannot open" or "I/O error" for a file system mounted read-only or
    // a directory it cannot create its WAL in: the file system tells which.
    const unwritable = unwritableOf(path);
    if (unwritable) reason = unwritable;
    else if (code.startsWith("SQLITE_READONLY")) reason = `the database ${path} is read-only`;
    else if (code.startsWith("SQLITE_CANTOPEN")) reason = `the database ${path} cannot be opened`;
    else if (code.startsWith("SQLITE_PERM") || code === "EPERM" || code === "EACCES") {
      reason = `the database ${path} may not be written (permission denied)`;
    } else reason = `an I/O error occurred on ${path}`;
  } else if (code === "SQLITE_BUSY" || code === "SQLITE_LOCKED") {
    reason = `another process holds the write lock of ${path}`;
  } else if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") {
    reason = `the database ${path} is damaged; restore it from a backup`;
  } else {
    return null;
  }
  return new StoreUnavailableError(`${reason} (${code})`, { cause: error });
}

/** Which of the database's directory and file cannot be written, and why; null if both can. */
function unwritableOf(path: string): string | null {
  if (path === ":memory:") return null;
  const places: [string, string][] = [
    ["directory", dirname(path)],
    ["file", path],
  ];
  for (const [what, place] of places) {
    try {
      accessSync(place, fsConstants.W_OK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") continue;
      if (code === "EROFS") return `the file system holding ${path} is read-only`;
      return `the ${what} ${place} cannot be written (${code})`;
    }
  }
  return null;
}

/**
 * The statements whose plans {@link SqliteJobStore.explainHotQueries} reports.
 *
 * Every LIMIT of this store reads `LIMIT ? + 0`, never `LIMIT ?`: SQLite plans with the value of a
 * LIMIT that is a lone parameter, so binding one (better-sqlite3 binds on every run) makes it
 * prepare the statement again. That was a parse and a plan per claim, list page and event read
 * (an empty list page 29 µs, 6 µs as an expression).
 */
const SQL = {
  claim: `UPDATE jobs SET state = 'running', attempt = attempt + 1, rate_reserved = 0,
        lease_token = @token, lease_expires_at = @lease_expires_at,
        started_at = COALESCE(started_at, @now), updated_at = @now
      WHERE id IN (
        SELECT id FROM jobs INDEXED BY jobs_claim WHERE state = 'available' AND queue = @queue
        ORDER BY priority DESC, run_at, id LIMIT @limit + 0)
      RETURNING *`,
  candidates: `SELECT id, bucket, rate_reserved FROM jobs INDEXED BY jobs_claim
      WHERE state = 'available' AND queue = ? ORDER BY priority DESC, run_at, id LIMIT ? + 0`,
  promoteScheduled: `UPDATE jobs SET state = 'available', updated_at = ?
      WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_scheduled
        WHERE state = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT ? + 0)`,
  nextScheduledAt:
    "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_scheduled WHERE state = 'scheduled'",
  expiredLeases: `SELECT id, lease_token, attempt, max_attempts, bucket
      FROM jobs INDEXED BY jobs_lease WHERE state = 'running' AND lease_expires_at <= ? LIMIT ? + 0`,
};

function prepareStatements(db: Database.Database) {
  const clearLease = "lease_token = NULL, lease_expires_at = NULL";
  const held = "id = @id AND lease_token = @token AND state = 'running'";
  const expiry = "CASE WHEN ttl_ms IS NULL THEN NULL ELSE @now + ttl_ms END";
  const startRunning = `state = 'running', attempt = attempt + 1, rate_reserved = 0,
        lease_token = @token, lease_expires_at = @lease_expires_at,
        started_at = COALESCE(started_at, @now), updated_at = @now`;
  return {
    insertJob: prepareNamed(
      db,
      `INSERT INTO jobs (
        id, state, run_at, scheduled_at, created_at, updated_at, max_attempts, priority, method, url,
        headers, sealed_headers, secret_header_names, params, body_kind, body, timeout_ms,
        backoff_strategy, backoff_base_ms, ttl_ms, tags, idempotency_key, request_hash,
        follow_redirects, max_redirects, rate_limit_key, bucket, owner, queue, host,
        callback_url, sign, sealed_signing_secret, callback_of, schedule_id, schedule_tick)
      VALUES (
        @id, @state, @run_at, @scheduled_at, @created_at, @created_at, @max_attempts, @priority,
        @method, @url, @headers, @sealed_headers, @secret_header_names, @params, @body_kind, @body,
        @timeout_ms, @backoff_strategy, @backoff_base_ms, @ttl_ms, @tags, @idempotency_key,
        @request_hash, @follow_redirects, @max_redirects, @rate_limit_key, @bucket, @owner,
        @queue, @host, @callback_url, @sign, @sealed_signing_secret, @callback_of, @schedule_id,
        @schedule_tick)`,
    ),
    setCallbackJob: db.prepare("UPDATE jobs SET callback_job_id = ? WHERE id = ?"),
    insertSchedule: prepareNamed(
      db,
      `INSERT INTO schedules (id, owner, description, template,
        sealed_headers, cron, time_zone, jitter_ms, start_at, end_at, overlap_policy, catch_up,
        catch_up_window_ms, paused, next_run_at, last_run_at, last_job_id, buffered_tick,
        created_at, updated_at)
      VALUES (@id, @owner, @description, @template, @sealed_headers, @cron, @time_zone, @jitter_ms,
        @start_at, @end_at, @overlap_policy, @catch_up, @catch_up_window_ms, @paused, @next_run_at,
        @last_run_at, @last_job_id, @buffered_tick, @created_at, @updated_at)`,
    ),
    getSchedule: db.prepare("SELECT * FROM schedules WHERE id = ?"),
    listSchedules: prepareNamed(
      db,
      `SELECT * FROM schedules
      WHERE (@owner IS NULL OR owner = @owner) AND (@after IS NULL OR id < @after)
      ORDER BY id DESC LIMIT @limit + 0`,
    ),
    updateSchedule: prepareNamed(
      db,
      `UPDATE schedules SET description = @description,
        template = @template, sealed_headers = @sealed_headers, cron = @cron,
        time_zone = @time_zone, jitter_ms = @jitter_ms, start_at = @start_at, end_at = @end_at,
        overlap_policy = @overlap_policy, catch_up = @catch_up,
        catch_up_window_ms = @catch_up_window_ms, paused = @paused, next_run_at = @next_run_at,
        last_run_at = @last_run_at, last_job_id = @last_job_id, buffered_tick = @buffered_tick,
        updated_at = @updated_at
      WHERE id = @id`,
    ),
    deleteSchedule: db.prepare("DELETE FROM schedules WHERE id = ?"),
    dueSchedules: prepareNamed(
      db,
      `SELECT * FROM schedules
      WHERE paused = 0 AND (next_run_at <= @dueBy OR buffered_tick IS NOT NULL)
      ORDER BY next_run_at LIMIT @limit + 0`,
    ),
    advanceSchedule: prepareNamed(
      db,
      `UPDATE schedules SET next_run_at = @next_run_at,
        buffered_tick = @buffered_tick,
        last_run_at = COALESCE(@last_run_at, last_run_at),
        last_job_id = COALESCE(@last_job_id, last_job_id)
      WHERE id = @id AND next_run_at IS @from AND updated_at = @updated_at`,
    ),
    getByScheduleTick: db.prepare("SELECT * FROM jobs WHERE schedule_id = ? AND schedule_tick = ?"),
    insertTag: db.prepare("INSERT OR IGNORE INTO job_tags (tag, job_id) VALUES (?, ?)"),
    insertAudit: prepareNamed(
      db,
      `INSERT INTO audit_events
        (at, principal, action, job_id, remote_address, protocol, outcome, detail)
      VALUES (@at, @principal, @action, @job_id, @remote_address, @protocol, @outcome, @detail)`,
    ),
    getJob: objectRows<JobRow>(
      db.prepare("SELECT * FROM jobs WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)"),
    ),
    getByIdempotencyKey: db.prepare(
      "SELECT * FROM jobs WHERE COALESCE(owner, '') = ? AND idempotency_key = ?",
    ),
    deleteJob: db.prepare("DELETE FROM jobs WHERE id = ?"),
    cancelJob: objectRows<JobRow>(
      prepareNamed(
        db,
        `UPDATE jobs SET state = 'canceled', finished_at = @now,
        updated_at = @now, expires_at = ${expiry}, ${clearLease}
      WHERE id = @id RETURNING *`,
      ),
    ),
    claim: objectRows<JobRow>(prepareNamed(db, SQL.claim)),
    claimOne: objectRows<JobRow>(
      prepareNamed(
        db,
        `UPDATE jobs SET ${startRunning} WHERE id = @id AND queue = @queue RETURNING *`,
      ),
    ),
    getQueueRate: db.prepare("SELECT tat FROM queue_rates WHERE queue = ?").pluck(),
    setQueueRate: db.prepare(`INSERT INTO queue_rates (queue, tat) VALUES (?, ?)
      ON CONFLICT (queue) DO UPDATE SET tat = excluded.tat`),
    queueExists: db.prepare("SELECT 1 FROM queues WHERE name = ?").pluck(),
    availableCandidates: db.prepare(SQL.candidates),
    // Running jobs are few (the workers' concurrency), so walking their lease index is cheap.
    countRunning: db
      .prepare(
        "SELECT COUNT(*) FROM jobs INDEXED BY jobs_lease WHERE state = 'running' AND bucket = ?",
      )
      .pluck(),
    // A rate slot is only good at its time: a job held back past it must be judged again.
    setWaiting: db.prepare(
      "UPDATE jobs SET state = 'waiting', rate_reserved = 0, updated_at = ? WHERE id = ?",
    ),
    getRate: db.prepare("SELECT tat, actual_tat FROM rate_limits WHERE bucket = ?"),
    setRate: db.prepare(`INSERT INTO rate_limits (bucket, tat, actual_tat) VALUES (?, ?, ?)
      ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat, actual_tat = excluded.actual_tat`),
    reserveSlot: db.prepare(`UPDATE jobs SET state = 'scheduled', run_at = ?, rate_reserved = 1,
        updated_at = ? WHERE id = ?`),
    promoteOneWaiting: db.prepare(`UPDATE jobs SET state = 'available', updated_at = ?
      WHERE id = (SELECT id FROM jobs WHERE state = 'waiting' AND bucket = ?
        ORDER BY priority DESC, run_at, id LIMIT 1)`),
    promoteWaiting: db.prepare(`UPDATE jobs SET state = 'available'
      WHERE id IN (SELECT id FROM jobs WHERE state = 'waiting' LIMIT ? + 0)`),
    promoteScheduled: db.prepare(SQL.promoteScheduled),
    nextScheduledAt: db.prepare(SQL.nextScheduledAt).pluck(),
    insertAttempt: prepareNamed(
      db,
      `INSERT INTO attempts (job_id, attempt, lease_token, outcome, started_at, node)
      VALUES (@job_id, @attempt, @lease_token, 'running', @started_at, @node)`,
    ),
    renewLease: db.prepare(
      "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'running'",
    ),
    closeAttempt: prepareNamed(
      db,
      `UPDATE attempts SET outcome = @outcome, finished_at = @now,
        response_status = @response_status, error_code = @error_code, error = @error,
        duration_ms = @duration_ms, retryable = @retryable
      WHERE job_id = @job_id AND lease_token = @lease_token AND finished_at IS NULL`,
    ),
    closeOpenAttemptsOfJob: prepareNamed(
      db,
      `UPDATE attempts SET outcome = @outcome, finished_at = @now,
        error_code = @error_code, error = @error, duration_ms = @now - started_at
      WHERE job_id = @job_id AND finished_at IS NULL`,
    ),
    finishJob: prepareNamed(
      db,
      `UPDATE jobs SET state = @state, finished_at = @now, updated_at = @now,
        expires_at = ${expiry}, last_error = @error, last_error_code = @error_code, ${clearLease}
      WHERE ${held} RETURNING id, bucket, attempt, callback_url, callback_of`,
    ),
    getJobRow: objectRows<JobRow>(db.prepare("SELECT * FROM jobs WHERE id = ?")),
    requeueJob: prepareNamed(
      db,
      `UPDATE jobs SET state = @state, run_at = @run_at, updated_at = @now,
        last_error = @error, last_error_code = @error_code, ${clearLease}
      WHERE ${held} RETURNING bucket, attempt`,
    ),
    releaseJob: prepareNamed(
      db,
      `UPDATE jobs SET state = 'available', run_at = @now, updated_at = @now,
        attempt = attempt - 1, started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END,
        ${clearLease}
      WHERE ${held} RETURNING bucket, attempt`,
    ),
    upsertResult: prepareNamed(
      db,
      `INSERT INTO results (job_id, attempt, response_status,
        response_headers, body, body_encoding, truncated, error, duration_ms, finished_at)
      VALUES (@job_id, @attempt, @response_status, @response_headers, @body, @body_encoding,
        @truncated, @error, @duration_ms, @finished_at)
      ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,
        response_status = excluded.response_status, response_headers = excluded.response_headers,
        body = excluded.body, body_encoding = excluded.body_encoding,
        truncated = excluded.truncated, error = excluded.error,
        duration_ms = excluded.duration_ms, finished_at = excluded.finished_at`,
    ),
    expiredLeases: db.prepare(SQL.expiredLeases),
    expiredIds: db
      .prepare("SELECT id FROM jobs INDEXED BY jobs_expiry WHERE expires_at <= ? LIMIT ? + 0")
      .pluck(),
    goneEvent: prepareNamed(
      db,
      `INSERT INTO job_events (at, job_id, type, status, queue, owner, tags)
      SELECT @now, id, @type,
        CASE WHEN state IN ('available', 'scheduled', 'waiting') THEN 'queued' ELSE state END,
        queue, owner, tags
      FROM jobs WHERE id = @id`,
    ),
    listEvents: db.prepare("SELECT * FROM job_events WHERE seq > ? ORDER BY seq LIMIT ? + 0"),
    eventHead: db
      .prepare(`SELECT MAX(COALESCE((SELECT MAX(seq) FROM job_events), 0),
        (SELECT seq FROM event_horizon WHERE id = 1))`)
      .pluck(),
    eventHorizon: db.prepare("SELECT seq FROM event_horizon WHERE id = 1").pluck(),
    appendProgress: prepareNamed(
      db,
      `INSERT INTO job_events (at, job_id, type, status, queue, owner,
        tags, attempt, detail)
      SELECT @now, id, 'progress', 'running', queue, owner, tags, @attempt, @detail
      FROM jobs WHERE id = @id AND state = 'running' AND attempt = @attempt`,
    ),
    deleteOldEvents: db
      .prepare(`DELETE FROM job_events WHERE seq IN (
          SELECT seq FROM job_events INDEXED BY job_events_at WHERE at < ? ORDER BY at LIMIT ? + 0)
        RETURNING seq`)
      .pluck(),
    raiseHorizon: db.prepare("UPDATE event_horizon SET seq = MAX(seq, ?) WHERE id = 1"),
    nextExpiry: db.prepare("SELECT MIN(expires_at) FROM jobs WHERE expires_at IS NOT NULL").pluck(),
    listAttempts: db.prepare("SELECT * FROM attempts WHERE job_id = ? ORDER BY id"),
    getResult: db.prepare("SELECT * FROM results WHERE job_id = ?"),
    deleteAuditBefore: db.prepare(
      "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ? LIMIT ? + 0)",
    ),
    retryJob: prepareNamed(
      db,
      `UPDATE jobs SET state = @state, run_at = @run_at,
        max_attempts = @max_attempts, finished_at = NULL, expires_at = NULL, rate_reserved = 0,
        updated_at = @now, lease_token = NULL, lease_expires_at = NULL
      WHERE id = @id RETURNING *`,
    ),
    counts: db.prepare("SELECT queue, state, n FROM job_counts WHERE n <> 0"),
    runningByQueue: db.prepare(`SELECT queue, COUNT(*) AS n FROM jobs INDEXED BY jobs_lease
      WHERE state = 'running' GROUP BY queue`),
    queueNames: db.prepare("SELECT name FROM queues ORDER BY name").pluck(),
    // The job next in line: when it became due (the head of the claim order).
    headOfQueue: db
      .prepare(`SELECT run_at FROM jobs INDEXED BY jobs_claim WHERE state = 'available' AND queue = ?
        ORDER BY priority DESC, run_at, id LIMIT 1`)
      .pluck(),
    throughput: db.prepare(
      "SELECT minute, queue, state, n FROM job_throughput WHERE minute >= ? ORDER BY minute",
    ),
    throughputOfQueue: db.prepare(`SELECT minute, queue, state, n FROM job_throughput
      WHERE minute >= ? AND queue = ? ORDER BY minute`),
    dropThroughput: db.prepare("DELETE FROM job_throughput WHERE minute < ?"),
    dropZeroCounts: db.prepare("DELETE FROM job_counts WHERE n = 0"),
    insertQueue: prepareNamed(
      db,
      `INSERT INTO queues (name, concurrency, rate_interval_ms, rate_burst,
        max_attempts, backoff_strategy, backoff_base_ms, ttl_ms, paused, created_at, updated_at)
      VALUES (@name, @concurrency, @rate_interval_ms, @rate_burst, @max_attempts,
        @backoff_strategy, @backoff_base_ms, @ttl_ms, @paused, @now, @now)
      ON CONFLICT (name) DO NOTHING`,
    ),
    updateQueue: prepareNamed(
      db,
      `UPDATE queues SET concurrency = @concurrency,
        rate_interval_ms = @rate_interval_ms, rate_burst = @rate_burst,
        max_attempts = @max_attempts, backoff_strategy = @backoff_strategy,
        backoff_base_ms = @backoff_base_ms, ttl_ms = @ttl_ms, paused = @paused, updated_at = @now
      WHERE name = @name`,
    ),
    getQueue: db.prepare("SELECT * FROM queues WHERE name = ?"),
    listQueues: db.prepare("SELECT * FROM queues ORDER BY name"),
    activeInQueue: db
      .prepare(`SELECT SUM(n) FROM job_counts WHERE queue = ?
        AND state IN ('available', 'scheduled', 'waiting', 'running')`)
      .pluck(),
    deleteQueue: db.prepare("DELETE FROM queues WHERE name = ?"),
    deleteQueueRate: db.prepare("DELETE FROM queue_rates WHERE queue = ?"),
    insertOperation: prepareNamed(
      db,
      `INSERT INTO operations (id, kind, filter, overrides, owner,
        principal, state, estimate, estimate_capped, examined, affected, upper_id, cursor, error,
        created_at, updated_at, finished_at)
      VALUES (@id, @kind, @filter, @overrides, @owner, @principal, @state, @estimate,
        @estimate_capped, @examined, @affected, @upper_id, @cursor, @error, @created_at,
        @updated_at, @finished_at)`,
    ),
    getOperation: db.prepare("SELECT * FROM operations WHERE id = ?"),
    stepOperation: prepareNamed(
      db,
      `UPDATE operations SET examined = @examined, affected = @affected,
        cursor = @cursor, state = @state, updated_at = @now, finished_at = @finished_at
      WHERE id = @id`,
    ),
    endOperation: prepareNamed(
      db,
      `UPDATE operations SET state = @state, error = @error,
        updated_at = @now, finished_at = @now WHERE id = @id AND state = 'running'`,
    ),
    upsertNode: prepareNamed(
      db,
      `INSERT INTO nodes
        (id, started_at, heartbeat_at, version, concurrency, in_flight)
      VALUES (@id, @started_at, @heartbeat_at, @version, @concurrency, @in_flight)
      ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
        version = excluded.version, concurrency = excluded.concurrency,
        in_flight = excluded.in_flight`,
    ),
    listNodes: db.prepare(`SELECT n.*, (l.node IS NOT NULL) AS leader FROM nodes n
      LEFT JOIN leader l ON l.node = n.id AND l.expires_at > ?
      WHERE n.heartbeat_at >= ? ORDER BY n.id`),
    deleteNode: db.prepare("DELETE FROM nodes WHERE id = ?"),
    deleteSilentNodes: db.prepare("DELETE FROM nodes WHERE heartbeat_at < ?"),
    // Takes the term when there is none or it expired, renews it when it is ours; else keeps it.
    elect: prepareNamed(
      db,
      `INSERT INTO leader (name, node, elected_at, expires_at)
      VALUES ('maintenance', @node, @now, @expires_at)
      ON CONFLICT (name) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at,
        elected_at = CASE WHEN leader.node = excluded.node THEN leader.elected_at
                          ELSE excluded.elected_at END
      WHERE leader.node = excluded.node OR leader.expires_at <= @now
      RETURNING node`,
    ),
    resign: db.prepare("DELETE FROM leader WHERE name = 'maintenance' AND node = ?"),
    probe: db.prepare(`INSERT INTO store_probe (id, at) VALUES (1, ?)
      ON CONFLICT (id) DO UPDATE SET at = excluded.at`),
  };
}

/** Zero jobs in every status. */
function emptyCounts(): Record<JobStatus, number> {
  return { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 };
}

/** The statuses an operation's walk reads: its filter's, narrowed to those its action applies to. */
function narrowStatuses(op: Operation): JobStatus[] {
  const applicable = actionableStatuses(op.kind);
  return op.filter.statuses ? op.filter.statuses.filter((s) => applicable.includes(s)) : applicable;
}

/** The columns of an operation, as the SQLite driver writes them. */
function operationColumns(op: Operation) {
  return {
    id: op.id,
    kind: op.kind,
    filter: JSON.stringify(op.filter),
    overrides: op.overrides === null ? null : JSON.stringify(op.overrides),
    owner: op.owner,
    principal: op.principal,
    state: op.state,
    estimate: op.estimate,
    estimate_capped: op.estimateCapped ? 1 : 0,
    examined: op.examined,
    affected: op.affected,
    upper_id: op.upperId,
    cursor: op.cursor,
    error: op.error,
    created_at: op.createdAt,
    updated_at: op.updatedAt,
    finished_at: op.finishedAt,
  };
}

/** A SQLite cursor (the event's seq); anything else is a client's mistake. */
function parseCursor(cursor: string): number {
  if (!/^\d{16}$/.test(cursor)) {
    throw new InvalidArgumentError("after_cursor", "is not a cursor this server gave out");
  }
  return Number(cursor);
}

function claimOrder(a: JobRow, b: JobRow): number {
  return b.priority - a.priority || a.run_at - b.run_at || (a.id < b.id ? -1 : 1);
}
