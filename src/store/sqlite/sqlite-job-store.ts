import { randomUUID } from "node:crypto";
import {
  closeSync,
  fdatasync,
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
import type {
  Attempt,
  AttemptOutcome,
  BackoffStrategy,
  BodyEncoding,
  ErrorCode,
  HttpMethod,
  Job,
  JobResult,
  JobStatus,
  NewJob,
  RequestBody,
} from "../../job/types.js";
import type { LimitResolver } from "../../worker/rate-limits.js";
import type {
  AuditListParams,
  CancelResult,
  ClaimResult,
  FinishAttemptParams,
  JobListParams,
  JobStore,
  Lease,
  RescuedJob,
} from "../job-store.js";

const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

export interface SqliteJobStoreOptions {
  /** A file path, or ":memory:" for tests that do not need a file. */
  path: string;
  /** How long a write waits for another connection's lock before failing. */
  busyTimeoutMs?: number;
}

/**
 * The embedded default store: one better-sqlite3 connection in WAL mode. A commit is on disk (the
 * WAL fdatasynced, as `synchronous=FULL` would, but on libuv's thread pool) before a write's
 * promise resolves and before any read can see it. A crash or a power cut after an acknowledged
 * enqueue cannot lose the job, and a result never reads as stored before it is. WAL lets readers
 * run alongside the writer; numbered migrations in ./migrations are applied in order, each in its
 * own transaction.
 */
export function createSqliteJobStore(options: SqliteJobStoreOptions): JobStore {
  if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
  const db = new Database(options.path);
  const mode = db.pragma("journal_mode = WAL", { simple: true });
  if (!db.memory && mode !== "wal") {
    db.close();
    throw new Error(
      `${options.path}: SQLite could not use WAL mode (it reported "${String(mode)}"); the store needs it (is the file on a network file system?)`,
    );
  }
  // Commits write the WAL; the store fsyncs it itself, off the event loop, before it reports a
  // write done (SqliteJobStore.sync): the durability of FULL without blocking on the disk.
  db.pragma("synchronous = NORMAL");
  db.pragma(`busy_timeout = ${options.busyTimeoutMs ?? 5000}`);
  db.pragma("foreign_keys = ON");
  migrate(db);
  return new SqliteJobStore(db);
}

/** Applies the numbered .sql migrations that the database has not seen yet. */
function migrate(db: Database.Database): void {
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

type State =
  | "available"
  | "scheduled"
  | "waiting"
  | "running"
  | "succeeded"
  | "failed"
  | "canceled";

/** The states each public status covers. */
const STATES_OF: Record<JobStatus, State[]> = {
  queued: ["available", "scheduled", "waiting"],
  running: ["running"],
  succeeded: ["succeeded"],
  failed: ["failed"],
  canceled: ["canceled"],
};

function statusOf(state: State): JobStatus {
  return state === "available" || state === "scheduled" || state === "waiting" ? "queued" : state;
}

interface JobRow {
  id: string;
  state: State;
  attempt: number;
  max_attempts: number;
  priority: number;
  run_at: number;
  scheduled_at: number | null;
  created_at: number;
  updated_at: number;
  started_at: number | null;
  finished_at: number | null;
  expires_at: number | null;
  method: HttpMethod;
  url: string;
  headers: string;
  sealed_headers: string | null;
  secret_header_names: string;
  params: string;
  body_kind: "json" | "bytes" | null;
  body: Buffer | null;
  timeout_ms: number;
  backoff_strategy: BackoffStrategy;
  backoff_base_ms: number;
  ttl_ms: number | null;
  tags: string;
  idempotency_key: string | null;
  follow_redirects: number;
  max_redirects: number;
  rate_limit_key: string | null;
  bucket: string;
  rate_reserved: number;
  owner: string | null;
  last_error: string | null;
  lease_token: string | null;
  lease_expires_at: number | null;
}

interface AttemptRow {
  job_id: string;
  attempt: number;
  outcome: AttemptOutcome;
  started_at: number;
  finished_at: number | null;
  response_status: number | null;
  error_code: ErrorCode | null;
  error: string | null;
  duration_ms: number | null;
  retryable: number;
}

interface ResultRow {
  job_id: string;
  attempt: number;
  response_status: number | null;
  response_headers: string | null;
  body: Buffer | null;
  body_encoding: BodyEncoding | null;
  truncated: number;
  error: string | null;
  duration_ms: number;
  finished_at: number;
}

interface AuditRow {
  id: number;
  at: number;
  principal: string | null;
  action: string;
  job_id: string | null;
  remote_address: string | null;
  protocol: string;
  outcome: AuditOutcome;
  detail: string | null;
}

const LOST_ERROR =
  "the worker stopped renewing its lease (it died or hung); the call was abandoned";

/** A write run in a group commit, waiting for its outcome to be durable. */
interface PendingWrite {
  op: () => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

class SqliteJobStore implements JobStore {
  private closed = false;
  private readonly listStatements = new Map<string, Database.Statement>();
  private readonly s: ReturnType<typeof prepareStatements>;

  /** Writes waiting for the next group commit, in arrival order. */
  private pending: PendingWrite[] = [];
  private flushScheduled = false;
  /** The WAL, fsynced after each group commit; null for an in-memory database. */
  private readonly walFd: number | null;
  /** The fsync of the last group commit, while it runs (on libuv's thread pool). */
  private syncing: Promise<void> | null = null;
  /** Set when an fsync failed: what was committed may not be on disk, so nothing more is. */
  private syncFailure: Error | null = null;

  constructor(private readonly db: Database.Database) {
    this.s = prepareStatements(db);
    this.walFd = db.memory ? null : openWal(db.name);
  }

  /**
   * Runs a write in the next group commit: every write that arrives before the event loop's next
   * check phase (or while the previous commit is being fsynced) shares one transaction, so one
   * fsync makes them all durable. Each promise settles once the transaction is on disk. If a write
   * throws, the batch is rolled back and each write runs again in a transaction of its own, so one
   * failing write does not undo the others.
   */
  private write<T>(op: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new Error("the store is closed"));
    if (this.syncFailure) return Promise.reject(this.syncFailure);
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ op, resolve: resolve as (v: unknown) => void, reject });
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
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    if (this.closed) {
      for (const w of batch) w.reject(new Error("the store is closed"));
      return;
    }
    const settle: (() => void)[] = [];
    try {
      const values = this.db.transaction(() => batch.map((w) => w.op())).immediate();
      for (const [i, v] of values.entries()) settle.push(() => batch[i]!.resolve(v));
    } catch {
      // Rare: find the culprit by running each write alone.
      for (const w of batch) {
        try {
          const v = this.db.transaction(w.op).immediate();
          settle.push(() => w.resolve(v));
        } catch (error) {
          settle.push(() => w.reject(error));
        }
      }
    }
    this.sync(batch, settle);
  }

  /**
   * Makes the last commit durable, then settles its writes. The connection runs with
   * `synchronous=NORMAL`, so SQLite's commit only writes the WAL; fdatasync of the WAL here gives
   * what `synchronous=FULL` gives (the commit is on disk before anyone hears of it) without
   * blocking the event loop for the disk. Reads wait for it too (see {@link durable}), so nothing
   * reads as done before it is on disk.
   */
  private sync(batch: PendingWrite[], settle: (() => void)[]): void {
    const fd = this.walFd;
    if (fd === null) {
      for (const f of settle) f();
      return;
    }
    this.syncing = new Promise((done) => {
      fdatasync(fd, (err) => {
        this.syncing = null;
        if (err) {
          this.syncFailure = new Error(`the database could not be written to disk: ${err.message}`);
          for (const w of batch) w.reject(this.syncFailure);
        } else {
          for (const f of settle) f();
        }
        done();
        if (this.pending.length > 0) this.scheduleFlush();
      });
    });
  }

  /** Resolves once every commit so far is on disk: reads wait for it, so they see only that. */
  private async durable(): Promise<void> {
    while (this.syncing) await this.syncing;
  }

  async jobInsert(job: NewJob, audit?: AuditEvent): Promise<{ job: Job; inserted: boolean }> {
    return this.write(() => {
      const res = this.insertOne(job);
      if (audit) this.insertAudit({ ...audit, jobId: res.job.id });
      return res;
    });
  }

  async jobInsertMany(
    jobs: NewJob[],
    audit?: AuditEvent[],
  ): Promise<{ job: Job; inserted: boolean }[]> {
    return this.write(() =>
      jobs.map((job, i) => {
        const res = this.insertOne(job);
        const event = audit?.[i];
        if (event) this.insertAudit({ ...event, jobId: res.job.id });
        return res;
      }),
    );
  }

  /** Inserts a job, or finds the kept job with its idempotency key. Runs inside a transaction. */
  private insertOne(job: NewJob): { job: Job; inserted: boolean } {
    if (job.idempotencyKey !== null) {
      const existing = this.s.getByIdempotencyKey.get(job.owner ?? "", job.idempotencyKey) as
        | JobRow
        | undefined;
      if (existing) {
        if (existing.expires_at === null || existing.expires_at > job.createdAt) {
          return { job: rowToJob(existing), inserted: false };
        }
        this.s.deleteJob.run(existing.id);
      }
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
      follow_redirects: job.followRedirects ? 1 : 0,
      max_redirects: job.maxRedirects,
      rate_limit_key: job.rateLimitKey,
      bucket: job.bucket,
      owner: job.owner,
    });
    for (const tag of job.tags) this.s.insertTag.run(tag, job.id);
    const stored: Job = {
      ...job,
      status: "queued",
      attempt: 0,
      startedAt: null,
      finishedAt: null,
      expiresAt: null,
      lastError: null,
      updatedAt: job.createdAt,
    };
    return { job: stored, inserted: true };
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

  async jobGet({ id, now }: { id: string; now: number }): Promise<Job | null> {
    if (this.syncing) await this.durable();
    const row = this.s.getJob.get(id, now) as JobRow | undefined;
    return row ? rowToJob(row) : null;
  }

  /**
   * Lists newest first without sorting the table: with tags, it walks the first tag's index in id
   * order; with statuses, one walk of the (state, id) index per state, merged; otherwise the
   * primary index. Each walk stops after a page, so a page costs about the same whether ten or a
   * million jobs match.
   */
  async jobList(params: JobListParams): Promise<{ jobs: Job[]; more: boolean }> {
    if (this.syncing) await this.durable();
    const { sql, args } = listQuery(params);
    const rows = this.cached(sql).all(...args) as JobRow[];
    const more = rows.length > params.limit;
    return { jobs: rows.slice(0, params.limit).map(rowToJob), more };
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
    const list = (p: Partial<JobListParams>) => listQuery({ now: 0, limit: 50, ...p }).sql;
    return {
      claim: plan(SQL.claim),
      candidates: plan(SQL.candidates),
      promoteScheduled: plan(SQL.promoteScheduled),
      nextScheduledAt: plan(SQL.nextScheduledAt),
      expiredLeases: plan(SQL.expiredLeases),
      listAll: plan(list({})),
      listByStatus: plan(list({ statuses: ["queued", "running"] })),
      listByTag: plan(list({ tags: ["a", "b"], statuses: ["queued"] })),
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

  async jobCancel(params: {
    id: string;
    now: number;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<CancelResult> {
    const { id, now } = params;
    return this.write((): CancelResult => {
      const result = this.cancelOne(id, now, params.ownedBy);
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

  private cancelOne(id: string, now: number, ownedBy: string | undefined): CancelResult {
    const row = this.s.getJob.get(id, now) as JobRow | undefined;
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
    const updated = this.s.cancelJob.get({ id, now }) as JobRow;
    // A running job frees a slot; an available or scheduled one may have been promoted from
    // waiting to take one. Either way the next waiting job gets its turn (the claim re-checks).
    if (row.state !== "waiting") this.s.promoteOneWaiting.run(now, row.bucket);
    return { kind: "canceled", job: rowToJob(updated), wasRunning: row.state === "running" };
  }

  async jobClaim(params: {
    now: number;
    limit: number;
    leaseMs: number;
    worker: string;
    limits?: LimitResolver;
  }): Promise<ClaimResult> {
    if (params.limit <= 0) return { jobs: [], deferredUntil: null };
    // Random, so that no other claim (another process, a restart) can ever hold the same token.
    const token = `${params.worker}:${randomUUID()}`;
    const leaseExpiresAt = params.now + params.leaseMs;
    return this.write((): ClaimResult => {
      let rows: JobRow[];
      let deferredUntil: number | null = null;
      if (!params.limits) {
        rows = this.s.claim.all({
          now: params.now,
          limit: params.limit,
          token,
          lease_expires_at: leaseExpiresAt,
        }) as JobRow[];
      } else {
        const granted = this.admit(params.now, params.limit, params.limits);
        deferredUntil = granted.deferredUntil;
        rows = granted.ids.map(
          (id) =>
            this.s.claimOne.get({
              id,
              now: params.now,
              token,
              lease_expires_at: leaseExpiresAt,
            }) as JobRow,
        );
      }
      rows.sort(claimOrder);
      const jobs = rows.map((row) => {
        this.s.insertAttempt.run({
          job_id: row.id,
          attempt: row.attempt,
          lease_token: token,
          started_at: params.now,
        });
        return { ...rowToJob(row), leaseToken: token };
      });
      return { jobs, deferredUntil };
    });
  }

  /**
   * Picks up to `limit` available jobs that their bucket admits now, in claim order. A job whose
   * bucket is at its concurrency limit moves to waiting; one whose bucket's rate budget is spent
   * is rescheduled to the next free slot, which it reserves (GCRA: `tat` is the theoretical time
   * of the bucket's next call). Neither counts an attempt or holds a worker. A reserved job that
   * then has to wait for concurrency gives its slot up: it runs when a call ends, perhaps long
   * after the slot, and without a fresh check it could call right after another.
   */
  private admit(
    now: number,
    limit: number,
    limits: LimitResolver,
  ): { ids: string[]; deferredUntil: number | null } {
    const ids: string[] = [];
    const running = new Map<string, number>();
    let deferredUntil: number | null = null;
    for (let round = 0; ids.length < limit && round < 10; round++) {
      // Jobs picked in earlier rounds are still available (they start running after this loop).
      const fetch = ids.length + (limit - ids.length) * 4;
      const candidates = this.s.availableCandidates.all(fetch) as Pick<
        JobRow,
        "id" | "bucket" | "rate_reserved"
      >[];
      let skipped = 0;
      for (const c of candidates) {
        if (ids.length >= limit) break;
        if (ids.includes(c.id)) continue;
        const l = limits(c.bucket);
        if (l?.concurrency != null) {
          const n = running.get(c.bucket) ?? (this.s.countRunning.get(c.bucket) as number);
          if (n >= l.concurrency) {
            this.s.setWaiting.run(now, c.id);
            skipped++;
            continue;
          }
          running.set(c.bucket, n + 1);
        }
        if (l?.intervalMs != null) {
          const runAt = this.rateSlot(c, l.intervalMs, (l.burst - 1) * l.intervalMs, now);
          if (runAt !== null) {
            this.s.reserveSlot.run(runAt, now, c.id);
            deferredUntil = deferredUntil === null ? runAt : Math.min(deferredUntil, runAt);
            if (l.concurrency != null) running.set(c.bucket, running.get(c.bucket)! - 1);
            skipped++;
            continue;
          }
        }
        ids.push(c.id);
      }
      // Stop when the candidates ran out or none was held back (nothing more to find).
      if (candidates.length < fetch || skipped === 0) break;
    }
    return { ids, deferredUntil };
  }

  /**
   * The rate check of one candidate: null if its bucket lets it call now (the call is counted),
   * else the time it must wait for, its slot reserved. Two clocks per bucket (GCRA): `tat`, the
   * next free slot in the plan (reservations move it ahead), and `actual_tat`, the next free slot
   * after the calls really made. A new job takes the next planned slot, so it queues behind jobs
   * that reserved earlier; every job, reserved or not, also waits for the actual clock, so
   * reserved slots that come due together (a busy pool, a restart after downtime) are spread out
   * again instead of going out at once.
   */
  private rateSlot(
    c: Pick<JobRow, "bucket" | "rate_reserved">,
    interval: number,
    tolerance: number,
    now: number,
  ): number | null {
    const state = this.s.getRate.get(c.bucket) as { tat: number; actual_tat: number } | undefined;
    let tat = Math.max(state?.tat ?? now, now);
    const actual = Math.max(state?.actual_tat ?? now, now);
    const save = (nextTat: number, nextActual: number) =>
      this.s.setRate.run(c.bucket, Math.ceil(Math.max(nextTat, nextActual)), Math.ceil(nextActual));
    if (c.rate_reserved === 0) {
      if (tat - now > tolerance) {
        save(tat + interval, state?.actual_tat ?? now);
        return Math.ceil(tat - tolerance);
      }
      tat += interval;
    }
    if (actual - now > tolerance) {
      save(tat, state?.actual_tat ?? now);
      return Math.ceil(actual - tolerance);
    }
    save(tat, actual + interval);
    return null;
  }

  async jobRenewLeases(params: {
    leases: Lease[];
    now: number;
    leaseMs: number;
  }): Promise<Set<string>> {
    const held = new Set<string>();
    if (params.leases.length === 0) return held;
    await this.write(() => {
      for (const lease of params.leases) {
        const r = this.s.renewLease.run(params.now + params.leaseMs, lease.jobId, lease.token);
        if (r.changes === 1) held.add(lease.jobId);
      }
    });
    return held;
  }

  async jobFinishAttempt(p: FinishAttemptParams): Promise<boolean> {
    return this.write(() => {
      this.s.closeAttempt.run({
        job_id: p.lease.jobId,
        lease_token: p.lease.token,
        now: p.now,
        outcome: p.end.outcome,
        response_status: p.end.responseStatus,
        error_code: p.end.errorCode,
        error: p.end.error,
        duration_ms: p.end.durationMs,
        retryable: p.end.retryable ? 1 : 0,
      });
      if (p.next === null) return false;
      const key = { id: p.lease.jobId, token: p.lease.token, now: p.now };
      let row: { bucket: string } | undefined;
      switch (p.next.status) {
        case "succeeded":
          row = this.s.finishJob.get({ ...key, state: "succeeded", error: null }) as typeof row;
          break;
        case "failed":
          row = this.s.finishJob.get({
            ...key,
            state: "failed",
            error: p.end.error,
          }) as typeof row;
          break;
        case "queued":
          row = this.s.requeueJob.get({
            ...key,
            state: p.next.runAt > p.now ? "scheduled" : "available",
            run_at: p.next.runAt,
            error: p.end.error,
          }) as typeof row;
          break;
        case "released":
          row = this.s.releaseJob.get(key) as typeof row;
          break;
      }
      if (!row) return false;
      this.s.promoteOneWaiting.run(p.now, row.bucket);
      if (p.result) this.writeResult(p.result);
      return true;
    });
  }

  private writeResult(r: JobResult): void {
    this.s.upsertResult.run({
      job_id: r.jobId,
      attempt: r.attempt,
      response_status: r.response?.status ?? null,
      response_headers: r.response ? JSON.stringify(r.response.headers) : null,
      body: r.response ? Buffer.from(r.response.body) : null,
      body_encoding: r.response?.bodyEncoding ?? null,
      truncated: r.response?.truncated ? 1 : 0,
      error: r.error,
      duration_ms: r.durationMs,
      finished_at: r.finishedAt,
    });
  }

  async jobRescueExpired({ now, limit }: { now: number; limit: number }): Promise<RescuedJob[]> {
    return this.write(() => {
      const expired = this.s.expiredLeases.all(now, limit) as Pick<
        JobRow,
        "id" | "lease_token" | "attempt" | "max_attempts" | "bucket"
      >[];
      return expired.map((row): RescuedJob => {
        this.s.closeAttempt.run({
          job_id: row.id,
          lease_token: row.lease_token,
          now,
          outcome: "lost",
          response_status: null,
          error_code: "lease_expired",
          error: LOST_ERROR,
          duration_ms: null,
          retryable: 1,
        });
        const key = { id: row.id, token: row.lease_token, now };
        const status = row.attempt >= row.max_attempts ? "failed" : "queued";
        if (status === "failed")
          this.s.finishJob.get({ ...key, state: "failed", error: LOST_ERROR });
        else this.s.requeueJob.get({ ...key, state: "available", run_at: now, error: LOST_ERROR });
        this.s.promoteOneWaiting.run(now, row.bucket);
        this.writeResult({
          jobId: row.id,
          attempt: row.attempt,
          response: null,
          error: LOST_ERROR,
          durationMs: 0,
          finishedAt: now,
        });
        return { jobId: row.id, status };
      });
    });
  }

  async jobPromoteScheduled({ now, limit }: { now: number; limit: number }): Promise<number> {
    return this.write(() => this.s.promoteScheduled.run(now, now, limit).changes);
  }

  async jobNextScheduledAt(): Promise<number | null> {
    if (this.syncing) await this.durable();
    return (this.s.nextScheduledAt.get() as number | null | undefined) ?? null;
  }

  async jobPromoteWaiting({ limit }: { limit: number }): Promise<number> {
    return this.write(() => this.s.promoteWaiting.run(limit).changes);
  }

  async jobDeleteExpired({ now, limit }: { now: number; limit: number }): Promise<number> {
    return this.write(() => this.s.deleteExpired.run(now, limit).changes);
  }

  async jobNextExpiry(): Promise<number | null> {
    if (this.syncing) await this.durable();
    return (this.s.nextExpiry.get() as number | null | undefined) ?? null;
  }

  async attemptList({ jobId }: { jobId: string }): Promise<Attempt[]> {
    if (this.syncing) await this.durable();
    return (this.s.listAttempts.all(jobId) as AttemptRow[]).map(rowToAttempt);
  }

  async resultGet({ jobId }: { jobId: string }): Promise<JobResult | null> {
    if (this.syncing) await this.durable();
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
    if (this.syncing) await this.durable();
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
    const sql = `SELECT * FROM audit_events ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
    args.push(p.limit + 1);
    const rows = this.cached(sql).all(...args) as AuditRow[];
    return { events: rows.slice(0, p.limit).map(rowToAudit), more: rows.length > p.limit };
  }

  async auditDeleteBefore({ before, limit }: { before: number; limit: number }): Promise<number> {
    return this.write(() => this.s.deleteAuditBefore.run(before, limit).changes);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    // Writes already accepted are committed and made durable first.
    while (this.syncing || this.pending.length > 0) {
      if (this.syncing) await this.durable();
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

/** The statements whose plans {@link SqliteJobStore.explainHotQueries} reports. */
const SQL = {
  claim: `UPDATE jobs SET state = 'running', attempt = attempt + 1, rate_reserved = 0,
        lease_token = @token, lease_expires_at = @lease_expires_at,
        started_at = COALESCE(started_at, @now), updated_at = @now
      WHERE id IN (
        SELECT id FROM jobs INDEXED BY jobs_claim WHERE state = 'available'
        ORDER BY priority DESC, run_at, id LIMIT @limit)
      RETURNING *`,
  candidates: `SELECT id, bucket, rate_reserved FROM jobs INDEXED BY jobs_claim
      WHERE state = 'available' ORDER BY priority DESC, run_at, id LIMIT ?`,
  promoteScheduled: `UPDATE jobs SET state = 'available', updated_at = ?
      WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_scheduled
        WHERE state = 'scheduled' AND run_at <= ? ORDER BY run_at LIMIT ?)`,
  nextScheduledAt:
    "SELECT MIN(run_at) FROM jobs INDEXED BY jobs_scheduled WHERE state = 'scheduled'",
  expiredLeases: `SELECT id, lease_token, attempt, max_attempts, bucket
      FROM jobs INDEXED BY jobs_lease WHERE state = 'running' AND lease_expires_at <= ? LIMIT ?`,
};

/** The SQL of a list page and its arguments; see {@link SqliteJobStore.jobList}. */
function listQuery(params: JobListParams): { sql: string; args: unknown[] } {
  const limit = params.limit + 1;
  const filters: string[] = ["(j.expires_at IS NULL OR j.expires_at > ?)"];
  const args: unknown[] = [params.now];
  const [firstTag, ...otherTags] = params.tags ?? [];
  for (const tag of otherTags) {
    filters.push("EXISTS (SELECT 1 FROM job_tags o WHERE o.tag = ? AND o.job_id = j.id)");
    args.push(tag);
  }
  if (params.ownedBy !== undefined) {
    filters.push("j.owner = ?");
    args.push(params.ownedBy);
  }
  if (params.createdAfter !== undefined) {
    filters.push("j.created_at > ?");
    args.push(params.createdAfter);
  }
  if (params.createdBefore !== undefined) {
    filters.push("j.created_at < ?");
    args.push(params.createdBefore);
  }
  if (params.afterId !== undefined) {
    filters.push("j.id < ?");
    args.push(params.afterId);
  }
  const states = params.statuses?.length ? params.statuses.flatMap((s) => STATES_OF[s]) : null;
  const where = filters.join(" AND ");
  if (firstTag !== undefined) {
    const stateFilter = states ? ` AND j.state IN (${states.map(() => "?").join(", ")})` : "";
    return {
      // CROSS JOIN fixes the order: walk the tag's entries newest first, look each job up.
      sql: `SELECT j.* FROM job_tags t CROSS JOIN jobs j ON j.id = t.job_id
        WHERE t.tag = ? AND ${where}${stateFilter} ORDER BY t.job_id DESC LIMIT ?`,
      args: [firstTag, ...args, ...(states ?? []), limit],
    };
  }
  if (states) {
    const branch = `SELECT * FROM (SELECT j.* FROM jobs j INDEXED BY jobs_state
        WHERE j.state = ? AND ${where} ORDER BY j.id DESC LIMIT ?)`;
    return {
      sql: `${states.map(() => branch).join(" UNION ALL ")} ORDER BY id DESC LIMIT ?`,
      args: [...states.flatMap((state) => [state, ...args, limit]), limit],
    };
  }
  return {
    sql: `SELECT j.* FROM jobs j WHERE ${where} ORDER BY j.id DESC LIMIT ?`,
    args: [...args, limit],
  };
}

function prepareStatements(db: Database.Database) {
  const clearLease = "lease_token = NULL, lease_expires_at = NULL";
  const held = "id = @id AND lease_token = @token AND state = 'running'";
  const expiry = "CASE WHEN ttl_ms IS NULL THEN NULL ELSE @now + ttl_ms END";
  const startRunning = `state = 'running', attempt = attempt + 1, rate_reserved = 0,
        lease_token = @token, lease_expires_at = @lease_expires_at,
        started_at = COALESCE(started_at, @now), updated_at = @now`;
  return {
    insertJob: db.prepare(`INSERT INTO jobs (
        id, state, run_at, scheduled_at, created_at, updated_at, max_attempts, priority, method, url,
        headers, sealed_headers, secret_header_names, params, body_kind, body, timeout_ms,
        backoff_strategy, backoff_base_ms, ttl_ms, tags, idempotency_key, follow_redirects,
        max_redirects, rate_limit_key, bucket, owner)
      VALUES (
        @id, @state, @run_at, @scheduled_at, @created_at, @created_at, @max_attempts, @priority,
        @method, @url, @headers, @sealed_headers, @secret_header_names, @params, @body_kind, @body,
        @timeout_ms, @backoff_strategy, @backoff_base_ms, @ttl_ms, @tags, @idempotency_key,
        @follow_redirects, @max_redirects, @rate_limit_key, @bucket, @owner)`),
    insertTag: db.prepare("INSERT OR IGNORE INTO job_tags (tag, job_id) VALUES (?, ?)"),
    insertAudit: db.prepare(`INSERT INTO audit_events
        (at, principal, action, job_id, remote_address, protocol, outcome, detail)
      VALUES (@at, @principal, @action, @job_id, @remote_address, @protocol, @outcome, @detail)`),
    getJob: db.prepare(
      "SELECT * FROM jobs WHERE id = ? AND (expires_at IS NULL OR expires_at > ?)",
    ),
    getByIdempotencyKey: db.prepare(
      "SELECT * FROM jobs WHERE COALESCE(owner, '') = ? AND idempotency_key = ?",
    ),
    deleteJob: db.prepare("DELETE FROM jobs WHERE id = ?"),
    cancelJob: db.prepare(`UPDATE jobs SET state = 'canceled', finished_at = @now,
        updated_at = @now, expires_at = ${expiry}, ${clearLease}
      WHERE id = @id RETURNING *`),
    claim: db.prepare(SQL.claim),
    claimOne: db.prepare(`UPDATE jobs SET ${startRunning} WHERE id = @id RETURNING *`),
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
      WHERE id IN (SELECT id FROM jobs WHERE state = 'waiting' LIMIT ?)`),
    promoteScheduled: db.prepare(SQL.promoteScheduled),
    nextScheduledAt: db.prepare(SQL.nextScheduledAt).pluck(),
    insertAttempt:
      db.prepare(`INSERT INTO attempts (job_id, attempt, lease_token, outcome, started_at)
      VALUES (@job_id, @attempt, @lease_token, 'running', @started_at)`),
    renewLease: db.prepare(
      "UPDATE jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'running'",
    ),
    closeAttempt: db.prepare(`UPDATE attempts SET outcome = @outcome, finished_at = @now,
        response_status = @response_status, error_code = @error_code, error = @error,
        duration_ms = @duration_ms, retryable = @retryable
      WHERE job_id = @job_id AND lease_token = @lease_token AND finished_at IS NULL`),
    closeOpenAttemptsOfJob: db.prepare(`UPDATE attempts SET outcome = @outcome, finished_at = @now,
        error_code = @error_code, error = @error, duration_ms = @now - started_at
      WHERE job_id = @job_id AND finished_at IS NULL`),
    finishJob: db.prepare(`UPDATE jobs SET state = @state, finished_at = @now, updated_at = @now,
        expires_at = ${expiry}, last_error = @error, ${clearLease}
      WHERE ${held} RETURNING bucket`),
    requeueJob: db.prepare(`UPDATE jobs SET state = @state, run_at = @run_at, updated_at = @now,
        last_error = @error, ${clearLease}
      WHERE ${held} RETURNING bucket`),
    releaseJob: db.prepare(`UPDATE jobs SET state = 'available', run_at = @now, updated_at = @now,
        attempt = attempt - 1, started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END,
        ${clearLease}
      WHERE ${held} RETURNING bucket`),
    upsertResult: db.prepare(`INSERT INTO results (job_id, attempt, response_status,
        response_headers, body, body_encoding, truncated, error, duration_ms, finished_at)
      VALUES (@job_id, @attempt, @response_status, @response_headers, @body, @body_encoding,
        @truncated, @error, @duration_ms, @finished_at)
      ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,
        response_status = excluded.response_status, response_headers = excluded.response_headers,
        body = excluded.body, body_encoding = excluded.body_encoding,
        truncated = excluded.truncated, error = excluded.error,
        duration_ms = excluded.duration_ms, finished_at = excluded.finished_at`),
    expiredLeases: db.prepare(SQL.expiredLeases),
    deleteExpired: db.prepare(
      "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE expires_at <= ? LIMIT ?)",
    ),
    nextExpiry: db.prepare("SELECT MIN(expires_at) FROM jobs WHERE expires_at IS NOT NULL").pluck(),
    listAttempts: db.prepare("SELECT * FROM attempts WHERE job_id = ? ORDER BY id"),
    getResult: db.prepare("SELECT * FROM results WHERE job_id = ?"),
    deleteAuditBefore: db.prepare(
      "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ? LIMIT ?)",
    ),
  };
}

function claimOrder(a: JobRow, b: JobRow): number {
  return b.priority - a.priority || a.run_at - b.run_at || (a.id < b.id ? -1 : 1);
}

function encodeRequestBody(body: RequestBody | null): {
  kind: "json" | "bytes" | null;
  bytes: Buffer | null;
} {
  if (body === null) return { kind: null, bytes: null };
  if (body.kind === "bytes") return { kind: "bytes", bytes: Buffer.from(body.bytes) };
  return { kind: "json", bytes: Buffer.from(JSON.stringify(body.value)) };
}

function decodeRequestBody(kind: JobRow["body_kind"], bytes: Buffer | null): RequestBody | null {
  if (kind === null || bytes === null) return null;
  if (kind === "bytes") return { kind: "bytes", bytes: new Uint8Array(bytes) };
  return { kind: "json", value: JSON.parse(bytes.toString("utf8")) };
}

function rowToJob(row: JobRow): Job {
  return {
    id: row.id,
    status: statusOf(row.state),
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    priority: row.priority,
    runAt: row.run_at,
    scheduledAt: row.scheduled_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    expiresAt: row.expires_at,
    method: row.method,
    url: row.url,
    headers: JSON.parse(row.headers),
    sealedHeaders: row.sealed_headers,
    secretHeaderNames: JSON.parse(row.secret_header_names),
    params: JSON.parse(row.params),
    body: decodeRequestBody(row.body_kind, row.body),
    timeoutMs: row.timeout_ms,
    backoffStrategy: row.backoff_strategy,
    backoffBaseMs: row.backoff_base_ms,
    ttlMs: row.ttl_ms,
    tags: JSON.parse(row.tags),
    idempotencyKey: row.idempotency_key,
    followRedirects: row.follow_redirects === 1,
    maxRedirects: row.max_redirects,
    rateLimitKey: row.rate_limit_key,
    bucket: row.bucket,
    owner: row.owner,
    lastError: row.last_error,
  };
}

function rowToAttempt(row: AttemptRow): Attempt {
  return {
    jobId: row.job_id,
    attempt: row.attempt,
    outcome: row.outcome,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    responseStatus: row.response_status,
    errorCode: row.error_code,
    error: row.error,
    durationMs: row.duration_ms,
    retryable: row.retryable === 1,
  };
}

function rowToResult(row: ResultRow): JobResult {
  return {
    jobId: row.job_id,
    attempt: row.attempt,
    response:
      row.response_status === null
        ? null
        : {
            status: row.response_status,
            headers: row.response_headers ? JSON.parse(row.response_headers) : {},
            body: row.body ? new Uint8Array(row.body) : new Uint8Array(),
            bodyEncoding: row.body_encoding ?? "base64",
            truncated: row.truncated === 1,
          },
    error: row.error,
    durationMs: row.duration_ms,
    finishedAt: row.finished_at,
  };
}

function rowToAudit(row: AuditRow): StoredAuditEvent {
  return {
    id: row.id,
    at: row.at,
    principal: row.principal,
    action: row.action,
    jobId: row.job_id,
    remoteAddress: row.remote_address,
    protocol: row.protocol,
    outcome: row.outcome,
    detail: row.detail,
  };
}
