import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AuditEvent, AuditOutcome, StoredAuditEvent } from "../../audit/audit-event.js";
import { type Candidate, createAdmission } from "../../job/admission.js";
import {
  type CallbackSettings,
  DEFAULT_CALLBACK_SETTINGS,
  reportsOutcome,
  terminalTransition,
} from "../../job/callbacks.js";
import type { Clock } from "../../job/clock.js";
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
import { LOST_ATTEMPT, LOST_ERROR, rescuedStatus } from "../../job/rescue.js";
import type { Schedule } from "../../job/schedules.js";
import type { Attempt, Job, JobResult, NewJob } from "../../job/types.js";
import { createNotifier, type Notifier } from "../../notify/notifier.js";
import {
  type AuditListParams,
  type CancelResult,
  type ClaimedJob,
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
import { connect, type Db, type Transaction } from "./client.js";
import { joinSql, listQuery } from "./list-query.js";
import { readJobStats } from "./postgres-stats.js";
import type { Sql as SqlFragment } from "./sql.js";

const MIGRATIONS_DIR = fileURLToPath(new URL("./migrations/", import.meta.url));

export interface PostgresJobStoreOptions {
  /** A postgres:// URL. */
  url: string;
  /** The schema the tables live in; created if missing. */
  schema: string;
  /** Connections at most (LISTEN takes one more). */
  poolSize?: number;
  /** Injected time for tests; by default the database's clock is the store's. */
  clock?: Clock;
  /** Seconds to wait for a connection before the store reports itself unavailable. */
  connectTimeoutSeconds?: number;
  /** How callback deliveries are made (src/job/callbacks.ts). */
  callbacks?: CallbackSettings;
}

type Sql = Db;
type Tx = Transaction;
type Query = Db | Transaction;
type Fragment = SqlFragment;

/**
 * The store for several nodes sharing one PostgreSQL database (client: `pg`, for the reasons in
 * ./client.ts). Claims take due rows with `FOR UPDATE SKIP LOCKED`, so nodes never
 * hand one job to two workers and never wait for each other; every write after a claim checks the
 * lease token. Wake-ups travel by `NOTIFY` sent inside the committing transaction, so no node
 * hears of a row before it is visible; the node that made the change signals its own listeners
 * after the commit, without the round trip. Lease times use the database's clock.
 *
 * Lock order, to stay clear of deadlocks: a statement that writes a job and its attempt rows locks
 * the job row first. Claims under rate limits lock their buckets with transaction-scoped advisory
 * locks that they only try (a bucket another node is admitting now is left for the next claim).
 */
export async function createPostgresJobStore(options: PostgresJobStoreOptions): Promise<JobStore> {
  const sql = connect({
    url: options.url,
    schema: options.schema,
    poolSize: options.poolSize ?? 10,
    connectTimeoutMs: (options.connectTimeoutSeconds ?? 10) * 1000,
  });
  try {
    await migrate(sql, options.schema);
    const store = new PostgresJobStore(
      sql,
      options.schema,
      options.clock ?? null,
      options.callbacks ?? DEFAULT_CALLBACK_SETTINGS,
    );
    await store.listen();
    return store;
  } catch (err) {
    await sql.end().catch(() => {});
    throw unavailable(err, options.url) ?? err;
  }
}

/**
 * Applies the numbered .sql migrations the schema has not seen, each in its own transaction under
 * an advisory lock, so nodes starting together apply each one once (the others wait, then see it
 * recorded).
 */
async function migrate(sql: Sql, schema: string): Promise<void> {
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d+_.+\.sql$/.test(f))
    .sort();
  for (const file of files) {
    const version = Number.parseInt(file, 10);
    await sql.begin(async (tx) => {
      await tx`SELECT pg_advisory_xact_lock(hashtextextended(${`jobqueue:migrate:${schema}`}, 0))`;
      await tx`CREATE SCHEMA IF NOT EXISTS ${tx(schema)}`;
      await tx`CREATE TABLE IF NOT EXISTS schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)`;
      const [applied] = await tx`SELECT 1 FROM schema_migrations WHERE version = ${version}`;
      if (applied) return;
      await tx.unsafe(readFileSync(join(MIGRATIONS_DIR, file), "utf8"));
      await tx`INSERT INTO schema_migrations (version, name, applied_at)
        VALUES (${version}, ${file}, ${Date.now()})`;
    });
  }
}

/** Transient conflicts a transaction is simply run again for. */
const RETRYABLE = new Set(["40001", "40P01"]);

class PostgresJobStore implements JobStore {
  private readonly notifier: Notifier = createNotifier();
  readonly signals = this.notifier;
  /** Tags this process's notifications, so it does not act twice on its own. */
  private readonly origin = randomUUID().slice(0, 8);
  private readonly channel: string;
  private unlisten: (() => Promise<void>) | null = null;
  private closed: Promise<void> | null = null;
  /** Ids of the callback deliveries this store creates. */
  private readonly nextJobId = jobIdFactory();

  constructor(
    private readonly sql: Sql,
    schema: string,
    private readonly clock: Clock | null,
    private readonly callbacks: CallbackSettings,
  ) {
    this.channel = `jq_${schema}`;
  }

  /** Subscribes to the other nodes' wake-ups. After each (re)connect it wakes the workers. */
  async listen(): Promise<void> {
    const { unlisten } = await this.sql.listen(
      this.channel,
      (payload) => this.onNotification(payload),
      // Called on the first LISTEN and on every re-LISTEN after a lost connection: whatever was
      // sent meanwhile is gone, so look for work now.
      () => this.notifier.jobsAvailable(),
    );
    this.unlisten = unlisten;
  }

  private onNotification(payload: string): void {
    const [origin, kind, arg] = payload.split(":", 3);
    if (origin === this.origin) return;
    if (kind === "a") this.notifier.jobsAvailable();
    else if (kind === "q") this.notifier.queuesChanged();
    else if (kind === "o") this.notifier.operationsChanged();
    else if (kind === "c" && arg) this.notifier.jobChanged({ jobId: arg, status: "canceled" });
    else if (kind === "s" && arg) this.notifier.jobScheduled(Number(arg));
    else if (kind === "r") this.notifier.leaderResigned();
  }

  private note(kind: "a" | "r" | "q" | "o" | `c:${string}` | `s:${number}`): string {
    return `${this.origin}:${kind}`;
  }

  /** The injected time, or null for the database's (statements read COALESCE(t, jq_now())). */
  private t(): number | null {
    return this.clock ? this.clock.now() : null;
  }

  private nowOf(q: Query, t: number | null) {
    return q`COALESCE(${t}::bigint, jq_now())`;
  }

  /** Runs a statement or transaction; a database that cannot serve becomes StoreUnavailableError. */
  private async run<T>(fn: () => PromiseLike<T>): Promise<T> {
    for (let tries = 1; ; tries++) {
      try {
        return await fn();
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code === "string" && RETRYABLE.has(code) && tries < 5) continue;
        throw unavailable(err) ?? err;
      }
    }
  }

  /** A transaction; its events, if it wrote any, are looked for by the stream's readers after it. */
  private async tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const result = await this.run(() => this.sql.begin(fn) as Promise<T>);
    this.notifier.eventsAppended();
    return result;
  }

  async now(): Promise<number> {
    if (this.clock) return this.clock.now();
    const [row] = await this.run(() => this.sql`SELECT jq_now() AS now`);
    return row!.now as number;
  }

  async jobInsert(job: NewJob, audit?: AuditEvent): Promise<InsertResult> {
    const [res] = await this.jobInsertMany([job], audit ? [audit] : undefined);
    return res!;
  }

  async jobInsertMany(jobs: NewJob[], audit?: AuditEvent[]): Promise<InsertResult[]> {
    const results = await this.tx(async (tx) => {
      // The queues must exist; a share lock holds them against a concurrent DeleteQueue.
      const named = [...new Set(jobs.map((j) => j.queue))].filter((n) => n !== "default");
      if (named.length > 0) {
        const found = await tx<{ name: string }>`SELECT name FROM queues
          WHERE name = ANY(${named}) FOR SHARE`;
        const missing = named.find((n) => !found.some((f) => f.name === n));
        if (missing !== undefined) throw new QueueNotFoundError(missing);
      }
      const out: InsertResult[] = new Array(jobs.length);
      const plain: number[] = [];
      // Keyed jobs one by one, in order (a key repeated within the batch names the first job).
      for (const [i, job] of jobs.entries()) {
        if (job.scheduleTick !== null && job.scheduleTick !== undefined) {
          out[i] = await this.insertTicked(tx, job);
        } else if (job.idempotencyKey === null) plain.push(i);
        else out[i] = await this.insertKeyed(tx, job);
      }
      for (let from = 0; from < plain.length; from += INSERT_CHUNK) {
        const chunk = plain.slice(from, from + INSERT_CHUNK).map((i) => jobs[i]!);
        await this.insertRows(tx, chunk);
        for (const [k, job] of chunk.entries()) {
          out[plain[from + k]!] = { job: storedJob(job), inserted: true };
        }
      }
      const events = (audit ?? []).flatMap((e, i) => (e ? [{ ...e, jobId: out[i]!.job.id }] : []));
      if (events.length > 0) await this.insertAudit(tx, events);
      if (jobs.some((j, i) => out[i]!.inserted && j.runAt <= j.createdAt)) {
        await tx`SELECT pg_notify(${this.channel}, ${this.note("a")})`;
      }
      const later = jobs.filter((j, i) => out[i]!.inserted && j.runAt > j.createdAt);
      if (later.length > 0) {
        const first = Math.min(...later.map((j) => j.runAt));
        await tx`SELECT pg_notify(${this.channel}, ${this.note(`s:${first}`)})`;
      }
      return out;
    });
    for (const [i, r] of results.entries()) {
      if (!r.inserted) continue;
      const job = jobs[i]!;
      this.notifier.jobChanged({ jobId: job.id, status: "queued" });
      if (job.runAt > job.createdAt) this.notifier.jobScheduled(job.runAt);
    }
    if (jobs.some((j, i) => results[i]!.inserted && j.runAt <= j.createdAt)) {
      this.notifier.jobsAvailable();
    }
    return results;
  }

  /** Inserts a job with an idempotency key, or finds the kept job that holds the key. */
  private async insertKeyed(tx: Tx, job: NewJob): Promise<InsertResult> {
    const key = job.idempotencyKey!;
    const owner = job.owner ?? "";
    const existing = async () => {
      const [row] = await tx<JobRow>`SELECT * FROM jobs
        WHERE COALESCE(owner, '') = ${owner} AND idempotency_key = ${key} FOR UPDATE`;
      return row;
    };
    const kept = (row: JobRow): InsertResult => {
      if (isConflict(row.request_hash, job.requestHash)) {
        throw new IdempotencyConflictError(key, row.id);
      }
      return { job: rowToJob(row), inserted: false };
    };
    const found = await existing();
    if (found) {
      if (found.expires_at === null || found.expires_at > job.createdAt) return kept(found);
      await this.deleteWithEvent(tx, [found.id], "expired", tx`${job.createdAt}::bigint`);
    }
    const inserted = await this.insertRows(tx, [job], true);
    if (inserted === 1) return { job: storedJob(job), inserted: true };
    // Another node inserted the key between our look and our insert: its job stands.
    const raced = await existing();
    if (!raced) throw new Error(`idempotency key ${key}: conflict without a row`);
    return kept(raced);
  }

  /**
   * Inserts a schedule's job for a tick, or finds the job another node inserted for it: the unique
   * index on (schedule_id, schedule_tick) lets one insert win, the other reads the winner's row
   * (ON CONFLICT DO NOTHING waits for a concurrent insert of the same key to commit or roll back).
   */
  private async insertTicked(tx: Tx, job: NewJob): Promise<InsertResult> {
    const inserted = await this.insertRows(tx, [job], "tick");
    if (inserted === 1) return { job: storedJob(job), inserted: true };
    const [row] = await tx<JobRow>`SELECT * FROM jobs
      WHERE schedule_id = ${job.scheduleId!} AND schedule_tick = ${job.scheduleTick!}`;
    if (!row)
      throw new Error(
        `schedule ${job.scheduleId} tick ${job.scheduleTick}: conflict without a row`,
      );
    return { job: rowToJob(row), inserted: false };
  }

  /**
   * Inserts jobs and their tags; with `onConflict`, a taken idempotency key (`true`) or schedule
   * tick (`"tick"`) inserts nothing.
   */
  private async insertRows(
    tx: Tx,
    jobs: NewJob[],
    onKeyConflict: boolean | "tick" = false,
  ): Promise<number> {
    const rows = jobs.map((job) => {
      const body = encodeRequestBody(job.body);
      return {
        id: job.id,
        state: job.runAt > job.createdAt ? "scheduled" : "available",
        run_at: job.runAt,
        scheduled_at: job.scheduledAt,
        created_at: job.createdAt,
        updated_at: job.createdAt,
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
        follow_redirects: job.followRedirects,
        max_redirects: job.maxRedirects,
        rate_limit_key: job.rateLimitKey,
        bucket: job.bucket,
        owner: job.owner,
        queue: job.queue,
        host: job.host,
        callback_url: job.callbackUrl,
        sign: job.sign,
        sealed_signing_secret: job.sealedSigningSecret,
        callback_of: job.callbackOf,
        schedule_id: job.scheduleId ?? null,
        schedule_tick: job.scheduleTick ?? null,
      };
    });
    const result =
      onKeyConflict === "tick"
        ? await tx`INSERT INTO jobs ${tx(rows)}
          ON CONFLICT (schedule_id, schedule_tick) WHERE schedule_tick IS NOT NULL DO NOTHING`
        : onKeyConflict
          ? await tx`INSERT INTO jobs ${tx(rows)}
          ON CONFLICT ((COALESCE(owner, '')), idempotency_key)
            WHERE idempotency_key IS NOT NULL DO NOTHING`
          : await tx`INSERT INTO jobs ${tx(rows)}`;
    if (result.count === 0) return 0;
    const tags = jobs.flatMap((job) =>
      [...new Set(job.tags)].map((tag) => ({ tag, job_id: job.id })),
    );
    if (tags.length > 0) await tx`INSERT INTO job_tags ${tx(tags)}`;
    return result.count;
  }

  private async insertAudit(q: Query, events: AuditEvent[]): Promise<void> {
    const rows = events.map((e) => ({
      at: e.at,
      principal: e.principal,
      action: e.action,
      job_id: e.jobId,
      remote_address: e.remoteAddress,
      protocol: e.protocol,
      outcome: e.outcome,
      detail: e.detail,
    }));
    for (let from = 0; from < rows.length; from += INSERT_CHUNK) {
      await q`INSERT INTO audit_events ${q(rows.slice(from, from + INSERT_CHUNK))}`;
    }
  }

  async jobGet({ id }: { id: string }): Promise<Job | null> {
    const t = this.t();
    const [row] = await this.run(
      () => this.sql<JobRow>`SELECT * FROM jobs WHERE id = ${id}
        AND (expires_at IS NULL OR expires_at > ${this.nowOf(this.sql, t)})`,
    );
    return row ? rowToJob(row) : null;
  }

  /**
   * Lists newest first without sorting the table: with tags, it walks the first tag's entries;
   * with statuses, one walk of the (state, id) index per state, merged; otherwise the primary key.
   * Each walk stops after a page.
   */
  async jobList(params: JobListParams): Promise<JobListPage> {
    const q = this.sql;
    const l = listQuery(q, params, this.nowOf(q, this.t()));
    const rows = await this.run(() => l.query as unknown as Promise<JobRow[]>);
    const { rows: page, next } = pageOf(l, rows, params.limit);
    return { jobs: page.map(rowToJob), next };
  }

  async jobCount(params: {
    filter: JobFilter;
    ownedBy?: string;
    cap: number;
  }): Promise<{ count: number; capped: boolean }> {
    const q = this.sql;
    const l = listQuery(
      q,
      { ...params.filter, ownedBy: params.ownedBy, limit: params.cap, scanLimit: params.cap + 1 },
      this.nowOf(q, this.t()),
    );
    // Counted by the database: no row crosses the wire (see the SQLite driver).
    const examinedOf = l.scanned ? q`max(c.examined)` : q`0`;
    const [row] = await this.run(
      () => q<{ n: string; examined: string | null }>`
        SELECT count(c.id) AS n, ${examinedOf} AS examined FROM (${l.query}) c`,
    );
    const n = Number(row!.n);
    const examinedAll = l.scanned && Number(row!.examined) === l.walkLimit;
    return { count: Math.min(n, params.cap), capped: n > params.cap || examinedAll };
  }

  async jobCancel(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<CancelResult> {
    const t = this.t();
    const result = await this.tx(async (tx): Promise<CancelResult> => {
      const now = this.nowOf(tx, t);
      const [row] = await tx<JobRow>`SELECT * FROM jobs WHERE id = ${params.id}
        AND (expires_at IS NULL OR expires_at > ${now}) FOR UPDATE`;
      let res: CancelResult;
      if (!row || (params.ownedBy !== undefined && row.owner !== params.ownedBy)) {
        res = { kind: "not-found" };
      } else if (!actionable("cancel", statusOf(row.state))) {
        res = { kind: "already-finished", job: rowToJob(row) };
      } else {
        res = await this.cancelLocked(tx, row, now);
      }
      if (params.audit) {
        await this.insertAudit(tx, [params.audit(outcomeOf(res.kind === "canceled", res.kind))]);
      }
      return res;
    });
    if (result.kind === "canceled") this.afterCancel(params.id);
    return result;
  }

  /** Cancels a queued or running job whose row this transaction has locked. */
  private async cancelLocked(
    tx: Tx,
    row: JobRow,
    now: Fragment,
  ): Promise<CancelResult & { kind: "canceled" }> {
    await tx`UPDATE attempts SET outcome = 'canceled', finished_at = ${now},
        error_code = 'canceled', error = 'canceled while the call was in flight',
        duration_ms = ${now} - started_at
      WHERE job_id = ${row.id} AND finished_at IS NULL`;
    const [updated] = await tx<JobRow>`UPDATE jobs SET state = 'canceled',
        finished_at = ${now}, updated_at = ${now},
        expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ${now} + ttl_ms END,
        lease_token = NULL, lease_expires_at = NULL
      WHERE id = ${row.id} RETURNING *`;
    // A running job frees a slot; an available or scheduled one may have been promoted from
    // waiting to take one. Either way the next waiting job gets its turn.
    if (row.state !== "waiting") await this.promoteOneWaiting(tx, now, row.bucket);
    await tx`SELECT pg_notify(${this.channel}, ${this.note(`c:${row.id}`)})`;
    const job = await this.ended(tx, updated!);
    return { kind: "canceled", job, wasRunning: row.state === "running" };
  }

  /**
   * Writes what a terminal transition creates (src/job/callbacks.ts): the callback delivery, in
   * the transaction of the transition, linked from the job. `row` is the job as the transition
   * left it (locked by this transaction). Returns the job as it is then.
   */
  private async ended(tx: Tx, row: JobRow): Promise<Job> {
    const job = rowToJob(row);
    if (!reportsOutcome(job)) return job;
    const [result] = await tx<ResultRow>`SELECT * FROM results WHERE job_id = ${job.id}`;
    const now = job.finishedAt ?? job.updatedAt;
    const { callback } = terminalTransition({
      job,
      result: result ? rowToResult(result) : null,
      id: this.nextJobId(now),
      now,
      settings: this.callbacks,
    });
    if (callback === null) return job;
    await this.insertRows(tx, [callback]);
    await tx`UPDATE jobs SET callback_job_id = ${callback.id} WHERE id = ${job.id}`;
    await tx`SELECT pg_notify(${this.channel}, ${this.note("a")})`;
    return { ...job, callbackJobId: callback.id };
  }

  private afterCancel(id: string): void {
    this.notifier.jobChanged({ jobId: id, status: "canceled" });
    this.notifier.jobsAvailable();
  }

  async jobRetry(params: {
    id: string;
    ownedBy?: string;
    overrides: RetryOverrides | null;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<
    { kind: "retried"; job: Job } | { kind: "not-retryable"; job: Job } | { kind: "not-found" }
  > {
    const t = this.t();
    type Result =
      | { kind: "retried"; job: Job }
      | { kind: "not-retryable"; job: Job }
      | { kind: "not-found" };
    const result = await this.tx(async (tx): Promise<Result> => {
      const now = await this.nowValue(tx, t);
      const [row] = await tx<JobRow>`SELECT * FROM jobs WHERE id = ${params.id}
        AND (expires_at IS NULL OR expires_at > ${now}) FOR UPDATE`;
      let res: Result;
      if (!row || (params.ownedBy !== undefined && row.owner !== params.ownedBy)) {
        res = { kind: "not-found" };
      } else if (!actionable("retry", statusOf(row.state))) {
        res = { kind: "not-retryable", job: rowToJob(row) };
      } else {
        res = {
          kind: "retried",
          job: rowToJob(await this.retryLocked(tx, row, params.overrides, now)),
        };
      }
      if (params.audit) {
        await this.insertAudit(tx, [params.audit(outcomeOf(res.kind === "retried", res.kind))]);
      }
      return res;
    });
    if (result.kind === "retried") this.afterRetry([result.job]);
    return result;
  }

  /** The store's time inside a transaction, as a number (the injected one, or the database's). */
  private async nowValue(tx: Tx, t: number | null): Promise<number> {
    if (t !== null) return t;
    const [row] = await tx`SELECT jq_now() AS now`;
    return row!.now as number;
  }

  /**
   * Puts a failed or canceled job, locked by this transaction, back in the queue; throws
   * QueueNotFoundError if its queue no longer exists (share-locked against a DeleteQueue, as an
   * enqueue does).
   */
  private async retryLocked(
    tx: Tx,
    row: JobRow,
    overrides: RetryOverrides | null,
    now: number,
  ): Promise<JobRow> {
    if (row.queue !== "default") {
      const [found] = await tx`SELECT name FROM queues WHERE name = ${row.queue} FOR SHARE`;
      if (!found) throw new QueueNotFoundError(row.queue);
    }
    const plan = retryPlan({ attempt: row.attempt, maxAttempts: row.max_attempts }, overrides, now);
    const state = plan.runAt > now ? "scheduled" : "available";
    const [updated] = await tx<JobRow>`UPDATE jobs SET state = ${state}, run_at = ${plan.runAt},
        max_attempts = ${plan.maxAttempts}, finished_at = NULL, expires_at = NULL,
        rate_reserved = false, updated_at = ${now}, lease_token = NULL, lease_expires_at = NULL
      WHERE id = ${row.id} RETURNING *`;
    await tx`SELECT pg_notify(${this.channel}, ${this.note(state === "available" ? "a" : `s:${plan.runAt}`)})`;
    return updated!;
  }

  private afterRetry(jobs: Job[]): void {
    for (const job of jobs) {
      this.notifier.jobChanged({ jobId: job.id, status: "queued" });
      if (job.runAt > job.updatedAt) this.notifier.jobScheduled(job.runAt);
    }
    if (jobs.length > 0) this.notifier.jobsAvailable();
  }

  async jobDelete(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<{ kind: "deleted" } | { kind: "not-finished"; job: Job } | { kind: "not-found" }> {
    const t = this.t();
    return this.tx(async (tx) => {
      const now = this.nowOf(tx, t);
      const [row] = await tx<JobRow>`SELECT * FROM jobs WHERE id = ${params.id}
        AND (expires_at IS NULL OR expires_at > ${now}) FOR UPDATE`;
      let res: { kind: "deleted" } | { kind: "not-finished"; job: Job } | { kind: "not-found" };
      if (!row || (params.ownedBy !== undefined && row.owner !== params.ownedBy)) {
        res = { kind: "not-found" };
      } else if (!actionable("delete", statusOf(row.state))) {
        res = { kind: "not-finished", job: rowToJob(row) };
      } else {
        await this.deleteWithEvent(tx, [row.id], "deleted", now);
        res = { kind: "deleted" };
      }
      if (params.audit) {
        await this.insertAudit(tx, [params.audit(outcomeOf(res.kind === "deleted", res.kind))]);
      }
      return res;
    });
  }

  /** Makes the first waiting job of a bucket available, telling every node. */
  private async promoteOneWaiting(tx: Tx, now: Fragment, bucket: string) {
    await tx`WITH promoted AS (
        UPDATE jobs SET state = 'available', updated_at = ${now}
        WHERE id = (SELECT id FROM jobs WHERE state = 'waiting' AND bucket = ${bucket}
          ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id)
      SELECT pg_notify(${this.channel}, ${this.note("a")}) FROM promoted`;
  }

  async jobClaim(params: ClaimParams): Promise<ClaimResult> {
    if (params.limit <= 0 || params.queues.length === 0) return { jobs: [], deferredUntil: null };
    const token = randomUUID();
    const t = this.t();
    const { rows, deferredUntil } = await this.tx(async (tx) => {
      const rows: JobRow[] = [];
      let deferredUntil: number | null = null;
      for (const queue of params.queues) {
        const left = Math.min(queue.limit, params.limit - rows.length);
        if (left <= 0) continue;
        const got = await this.claimFrom(tx, t, token, queue, left, params);
        rows.push(...got.rows);
        if (got.deferredUntil !== null) {
          deferredUntil = Math.min(deferredUntil ?? got.deferredUntil, got.deferredUntil);
        }
      }
      return { rows, deferredUntil };
    });
    const jobs: ClaimedJob[] = rows.map((row) => claimedJob(row, token));
    for (const job of jobs) this.notifier.jobChanged({ jobId: job.id, status: "running" });
    if (deferredUntil !== null) this.notifier.jobScheduled(deferredUntil);
    return { jobs, deferredUntil };
  }

  /** Claims up to `limit` jobs of one queue, within its rate and the buckets' limits. */
  private async claimFrom(
    tx: Tx,
    t: number | null,
    token: string,
    queue: QueueClaim,
    limit: number,
    params: ClaimParams,
  ): Promise<{ rows: JobRow[]; deferredUntil: number | null }> {
    let deferred: number | null = null;
    // The queue's rate across nodes: claims of a rate-limited queue take turns (a claim that
    // finds another node claiming from it now leaves the budget to that one).
    const rate = queue.rate;
    let clock: { now: number; tat: number | null } | null = null;
    if (rate) {
      const [lock] = await tx`SELECT pg_try_advisory_xact_lock(
          hashtextextended(${`jobqueue:queue:${this.channel}:${queue.name}`}, 0)) AS ok`;
      if (!lock!.ok) return { rows: [], deferredUntil: null };
      const [row] = await tx`SELECT COALESCE(${t}::bigint, jq_now()) AS now,
          (SELECT tat FROM queue_rates WHERE queue = ${queue.name}) AS tat`;
      clock = { now: row!.now as number, tat: (row!.tat as number | null) ?? null };
      const budget = queueBudget(clock.tat, rate, clock.now, limit);
      limit = budget.allowed;
      deferred = budget.nextSlotAt;
      if (limit === 0) return { rows: [], deferredUntil: deferred };
    }
    let claimed: { rows: JobRow[]; deferredUntil: number | null };
    if (!params.limits) {
      const now = this.nowOf(tx, t);
      const rows = await tx<JobRow>`WITH picked AS (
          SELECT id FROM jobs WHERE state = 'available' AND queue = ${queue.name}
          ORDER BY priority DESC, run_at, id LIMIT ${limit} FOR UPDATE SKIP LOCKED),
        claimed AS (
          UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, rate_reserved = false,
            lease_token = ${token}, lease_expires_at = ${now} + ${params.leaseMs}::bigint,
            started_at = COALESCE(j.started_at, ${now}), updated_at = ${now}
          FROM picked WHERE j.id = picked.id RETURNING j.*),
        opened AS (
          INSERT INTO attempts (job_id, attempt, lease_token, outcome, started_at, node)
          SELECT id, attempt, ${token}, 'running', ${now}, ${params.node} FROM claimed)
        SELECT * FROM claimed`;
      claimed = { rows, deferredUntil: null };
    } else {
      claimed = await this.claimLimited(tx, t, token, queue.name, limit, params);
    }
    if (rate && clock && claimed.rows.length > 0) {
      const tat = queueBudget(clock.tat, rate, clock.now, claimed.rows.length).tat;
      await tx`INSERT INTO queue_rates (queue, tat) VALUES (${queue.name}, ${tat})
        ON CONFLICT (queue) DO UPDATE SET tat = excluded.tat`;
    }
    claimed.rows.sort(claimOrder);
    const all = [deferred, claimed.deferredUntil].filter((x): x is number => x !== null);
    return { rows: claimed.rows, deferredUntil: all.length ? Math.min(...all) : null };
  }

  /** A claim under bucket limits: the admission of src/job/admission.ts, then the claim. */
  private async claimLimited(
    tx: Tx,
    t: number | null,
    token: string,
    queue: string,
    limit: number,
    params: ClaimParams,
  ): Promise<{ rows: JobRow[]; deferredUntil: number | null }> {
    const [{ now }] = (await tx`SELECT COALESCE(${t}::bigint, jq_now()) AS now`) as unknown as [
      { now: number },
    ];
    const admission = createAdmission({ now, limit, limits: params.limits! });
    while (admission.wantsMore()) {
      const candidates = (
        await tx<Pick<JobRow, "id" | "bucket" | "rate_reserved">>`
          SELECT id, bucket, rate_reserved FROM jobs
          WHERE state = 'available' AND queue = ${queue}
          ORDER BY priority DESC, run_at, id LIMIT ${admission.fetchSize()} FOR UPDATE SKIP LOCKED`
      ).map(
        (r): Candidate => ({ id: r.id, bucket: r.bucket, rateReserved: Boolean(r.rate_reserved) }),
      );
      for (const bucket of admission.unknownBuckets(candidates)) {
        const [lock] = await tx`SELECT pg_try_advisory_xact_lock(
            hashtextextended(${`jobqueue:bucket:${this.channel}:${bucket}`}, 0)) AS ok`;
        if (!lock!.ok) {
          admission.learn(bucket, null);
          continue;
        }
        const [state] = await tx`SELECT
            (SELECT count(*) FROM jobs WHERE state = 'running' AND bucket = ${bucket}) AS running,
            (SELECT tat FROM rate_limits WHERE bucket = ${bucket}) AS tat,
            (SELECT actual_tat FROM rate_limits WHERE bucket = ${bucket}) AS actual_tat`;
        admission.learn(bucket, {
          running: state!.running as number,
          tat: state!.tat as number | null,
          actualTat: state!.actual_tat as number | null,
        });
      }
      const round = admission.decide(candidates);
      if (round.wait.length > 0) {
        await tx`UPDATE jobs SET state = 'waiting', rate_reserved = false, updated_at = ${now}
          WHERE id = ANY(${round.wait})`;
      }
      if (round.reserve.length > 0) {
        await tx`UPDATE jobs SET state = 'scheduled', run_at = r.run_at, rate_reserved = true,
            updated_at = ${now}
          FROM unnest(${round.reserve.map((r) => r.id)}::text[],
                      ${round.reserve.map((r) => r.runAt)}::bigint[]) AS r(id, run_at)
          WHERE jobs.id = r.id`;
      }
    }
    for (const r of admission.changedRates()) {
      await tx`INSERT INTO rate_limits (bucket, tat, actual_tat)
        VALUES (${r.bucket}, ${r.tat}, ${r.actualTat})
        ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat, actual_tat = excluded.actual_tat`;
    }
    if (admission.deferredUntil !== null) {
      await tx`SELECT pg_notify(${this.channel}, ${this.note(`s:${admission.deferredUntil}`)})`;
    }
    const ids = [...admission.claimed];
    if (ids.length === 0) return { rows: [], deferredUntil: admission.deferredUntil };
    const rows = await tx<JobRow>`WITH claimed AS (
        UPDATE jobs SET state = 'running', attempt = attempt + 1, rate_reserved = false,
          lease_token = ${token}, lease_expires_at = ${now + params.leaseMs},
          started_at = COALESCE(started_at, ${now}), updated_at = ${now}
        WHERE id = ANY(${ids}) RETURNING *),
      opened AS (
        INSERT INTO attempts (job_id, attempt, lease_token, outcome, started_at, node)
        SELECT id, attempt, ${token}, 'running', ${now}, ${params.node} FROM claimed)
      SELECT * FROM claimed`;
    return { rows, deferredUntil: admission.deferredUntil };
  }

  async jobRenewLeases(params: { leases: Lease[]; leaseMs: number }): Promise<Set<string>> {
    if (params.leases.length === 0) return new Set();
    const t = this.t();
    const rows = await this.run(
      () => this.sql<{ id: string }>`UPDATE jobs
        SET lease_expires_at = ${this.nowOf(this.sql, t)} + ${params.leaseMs}::bigint
        FROM unnest(${params.leases.map((l) => l.jobId)}::text[],
                    ${params.leases.map((l) => l.token)}::text[]) AS l(id, token)
        WHERE jobs.id = l.id AND jobs.lease_token = l.token AND jobs.state = 'running'
        RETURNING jobs.id`,
    );
    return new Set(rows.map((r) => r.id));
  }

  /**
   * One statement: move the job on if the lease is held, close its attempt, promote a waiting job
   * of its bucket, keep the result, and NOTIFY when that made work available or scheduled it, all
   * in one round trip. A lease no longer held changes nothing: whoever took the job over (a
   * cancel, the rescuer) closed the attempt already.
   */
  async jobFinishAttempt(p: FinishAttemptParams): Promise<boolean> {
    const q = this.sql;
    const t = this.t();
    const now = this.nowOf(q, t);
    const { jobId: id, token } = p.lease;
    const held = q`id = ${id} AND lease_token = ${token} AND state = 'running'`;
    const clearLease = q`lease_token = NULL, lease_expires_at = NULL`;
    const close = q`UPDATE attempts SET outcome = ${p.end.outcome}, finished_at = ${now},
        response_status = ${p.end.responseStatus}, error_code = ${p.end.errorCode},
        error = ${p.end.error}, duration_ms = ${p.end.durationMs}, retryable = ${p.end.retryable}
      WHERE job_id = ${id} AND lease_token = ${token} AND finished_at IS NULL`;
    const next = p.next;
    if (next === null) {
      await this.run(() => close);
      return false;
    }
    let move: Fragment;
    switch (next.status) {
      case "succeeded":
      case "failed":
        move = q`UPDATE jobs SET state = ${next.status}, finished_at = ${now},
            updated_at = ${now},
            expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ${now} + ttl_ms END,
            last_error = ${next.status === "failed" ? p.end.error : null},
            last_error_code = ${next.status === "failed" ? p.end.errorCode : null}, ${clearLease}
          WHERE ${held} RETURNING bucket, attempt, state`;
        break;
      case "queued":
        move = q`UPDATE jobs SET
            state = CASE WHEN ${next.runAt}::bigint > ${now} THEN 'scheduled' ELSE 'available' END,
            run_at = ${next.runAt}, updated_at = ${now}, last_error = ${p.end.error},
            last_error_code = ${p.end.errorCode}, ${clearLease}
          WHERE ${held} RETURNING bucket, attempt, state`;
        break;
      case "released":
        move = q`UPDATE jobs SET state = 'available', run_at = ${now}, updated_at = ${now},
            attempt = attempt - 1,
            started_at = CASE WHEN attempt = 1 THEN NULL ELSE started_at END, ${clearLease}
          WHERE ${held} RETURNING bucket, attempt, state`;
        break;
    }
    const runAt = next.status === "queued" ? next.runAt : 0;
    const r = p.result;
    // `closed` reads `moved`, so the job row is locked before its attempt row, as everywhere.
    const statement = (q: Query) => q`WITH moved AS (${move}),
          closed AS (${close} AND EXISTS (SELECT 1 FROM moved)),
          promoted AS (
            UPDATE jobs SET state = 'available', updated_at = ${now}
            WHERE id = (SELECT w.id FROM jobs w, moved
              WHERE w.state = 'waiting' AND w.bucket = moved.bucket
              ORDER BY w.priority DESC, w.run_at, w.id LIMIT 1 FOR UPDATE OF w SKIP LOCKED)
            RETURNING id),
          kept AS (
            INSERT INTO results (job_id, attempt, response_status, response_headers, body,
              body_encoding, truncated, error, duration_ms, finished_at)
            SELECT ${id}, moved.attempt, ${r?.response?.status ?? null},
              ${r?.response ? JSON.stringify(r.response.headers) : null},
              ${r?.response ? Buffer.from(r.response.body) : null}::bytea,
              ${r?.response?.bodyEncoding ?? null}, ${r?.response?.truncated ?? false},
              ${r?.error ?? null}, ${r?.durationMs ?? 0}, ${now}
            FROM moved WHERE ${r !== null}
            ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,
              response_status = excluded.response_status,
              response_headers = excluded.response_headers, body = excluded.body,
              body_encoding = excluded.body_encoding, truncated = excluded.truncated,
              error = excluded.error, duration_ms = excluded.duration_ms,
              finished_at = excluded.finished_at),
          woke AS (
            SELECT pg_notify(${this.channel}, ${this.note("a")})
            WHERE EXISTS (SELECT 1 FROM promoted)
              OR EXISTS (SELECT 1 FROM moved WHERE state = 'available')),
          scheduled AS (
            SELECT pg_notify(${this.channel}, ${this.note(`s:${runAt}`)})
            FROM moved WHERE state = 'scheduled')
        SELECT (SELECT state FROM moved) AS state,
          EXISTS (SELECT 1 FROM promoted) AS promoted,
          (SELECT count(*) FROM woke) + (SELECT count(*) FROM scheduled) AS notified`;
    let delivery = false;
    // A job that reports its outcome ends in a transaction that also writes its delivery; the
    // others keep the one round trip.
    const rows =
      p.reportsOutcome && (next.status === "succeeded" || next.status === "failed")
        ? await this.run(() =>
            this.sql.begin(async (tx) => {
              const out = await statement(tx);
              if ((out[0] as { state: string | null } | undefined)?.state) {
                const [ended] = await tx<JobRow>`SELECT * FROM jobs WHERE id = ${id}`;
                delivery = (await this.ended(tx, ended!)).callbackJobId !== null;
              }
              return out;
            }),
          )
        : await this.run(() => statement(q));
    const row = rows[0] as { state: string | null; promoted: boolean } | undefined;
    this.notifier.eventsAppended();
    if (!row?.state) return false;
    if (delivery) this.notifier.jobsAvailable();
    const status = next.status === "released" ? "queued" : next.status;
    this.notifier.jobChanged({ jobId: id, status });
    if (row.state === "scheduled") this.notifier.jobScheduled(runAt);
    if (row.state === "available" || row.promoted) this.notifier.jobsAvailable();
    return true;
  }

  async jobRescueExpired({ limit }: { limit: number }): Promise<RescuedJob[]> {
    const t = this.t();
    let delivered = false;
    const rescued = await this.tx(async (tx) => {
      const now = this.nowOf(tx, t);
      const expired = await tx<
        Pick<
          JobRow,
          | "id"
          | "lease_token"
          | "attempt"
          | "max_attempts"
          | "bucket"
          | "callback_url"
          | "callback_of"
        >
      >`SELECT id, lease_token, attempt, max_attempts, bucket, callback_url, callback_of FROM jobs
        WHERE state = 'running' AND lease_expires_at <= ${now}
        LIMIT ${limit} FOR UPDATE SKIP LOCKED`;
      const out: RescuedJob[] = [];
      // Jobs that failed and report their outcome: their deliveries are written after the loop.
      const reporting: string[] = [];
      for (const row of expired) {
        const status = rescuedStatus({ attempt: row.attempt, maxAttempts: row.max_attempts });
        const end = LOST_ATTEMPT;
        await tx`UPDATE attempts SET outcome = ${end.outcome}, finished_at = ${now},
            error_code = ${end.errorCode}, error = ${end.error}, retryable = ${end.retryable}
          WHERE job_id = ${row.id} AND lease_token = ${row.lease_token} AND finished_at IS NULL`;
        if (status === "failed") {
          await tx`UPDATE jobs SET state = 'failed', finished_at = ${now}, updated_at = ${now},
              expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ${now} + ttl_ms END,
              last_error = ${LOST_ERROR}, last_error_code = ${end.errorCode},
              lease_token = NULL, lease_expires_at = NULL
            WHERE id = ${row.id}`;
          if (reportsOutcome({ callbackUrl: row.callback_url, callbackOf: row.callback_of })) {
            reporting.push(row.id);
          }
        } else {
          await tx`UPDATE jobs SET state = 'available', run_at = ${now}, updated_at = ${now},
              last_error = ${LOST_ERROR}, last_error_code = ${end.errorCode},
              lease_token = NULL, lease_expires_at = NULL
            WHERE id = ${row.id}`;
        }
        await this.promoteOneWaiting(tx, now, row.bucket);
        await tx`INSERT INTO results (job_id, attempt, response_status, response_headers, body,
            body_encoding, truncated, error, duration_ms, finished_at)
          VALUES (${row.id}, ${row.attempt}, NULL, NULL, NULL, NULL, false, ${LOST_ERROR}, 0, ${now})
          ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt,
            response_status = NULL, response_headers = NULL, body = NULL, body_encoding = NULL,
            truncated = false, error = excluded.error, duration_ms = 0,
            finished_at = excluded.finished_at`;
        out.push({ jobId: row.id, status });
      }
      for (const id of reporting) {
        const [ended] = await tx<JobRow>`SELECT * FROM jobs WHERE id = ${id}`;
        if ((await this.ended(tx, ended!)).callbackJobId !== null) delivered = true;
      }
      if (out.some((r) => r.status === "queued")) {
        await tx`SELECT pg_notify(${this.channel}, ${this.note("a")})`;
      }
      return out;
    });
    for (const r of rescued) this.notifier.jobChanged({ jobId: r.jobId, status: r.status });
    if (rescued.some((r) => r.status === "queued") || delivered) this.notifier.jobsAvailable();
    return rescued;
  }

  async jobPromoteScheduled({ limit }: { limit: number }): Promise<number> {
    const t = this.t();
    const q = this.sql;
    const now = this.nowOf(q, t);
    const [row] = await this.run(
      () => q`WITH promoted AS (
          UPDATE jobs SET state = 'available', updated_at = ${now}
          WHERE id IN (SELECT id FROM jobs WHERE state = 'scheduled' AND run_at <= ${now}
            ORDER BY run_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
          RETURNING 1),
        counted AS (SELECT count(*) AS total FROM promoted)
        SELECT total AS n,
          (SELECT pg_notify(${this.channel}, ${this.note("a")}) WHERE total > 0) AS woke
        FROM counted`,
    );
    const n = row!.n as number;
    if (n > 0) this.notifier.jobsAvailable();
    return n;
  }

  async jobNextScheduledAt(): Promise<number | null> {
    const [row] = await this.run(
      () => this.sql`SELECT min(run_at) AS at FROM jobs WHERE state = 'scheduled'`,
    );
    return (row!.at as number | null) ?? null;
  }

  async jobPromoteWaiting({ limit }: { limit: number }): Promise<number> {
    const q = this.sql;
    const t = this.t();
    const [row] = await this.run(
      () => q`WITH promoted AS (
          UPDATE jobs SET state = 'available', updated_at = ${this.nowOf(q, t)}
          WHERE id IN (SELECT id FROM jobs WHERE state = 'waiting'
            LIMIT ${limit} FOR UPDATE SKIP LOCKED)
          RETURNING 1),
        counted AS (SELECT count(*) AS total FROM promoted)
        SELECT total AS n,
          (SELECT pg_notify(${this.channel}, ${this.note("a")}) WHERE total > 0) AS woke
        FROM counted`,
    );
    const n = row!.n as number;
    if (n > 0) this.notifier.jobsAvailable();
    return n;
  }

  async jobDeleteExpired({ limit }: { limit: number }): Promise<number> {
    const t = this.t();
    return this.tx(async (tx) => {
      const now = this.nowOf(tx, t);
      const ids = await tx<{ id: string }>`SELECT id FROM jobs WHERE expires_at <= ${now}
        LIMIT ${limit} FOR UPDATE SKIP LOCKED`;
      if (ids.length > 0)
        await this.deleteWithEvent(
          tx,
          ids.map((r) => r.id),
          "expired",
          now,
        );
      return ids.length;
    });
  }

  /** Deletes jobs (their attempts, results and tags go with them) and appends why to the stream. */
  private async deleteWithEvent(tx: Tx, ids: string[], type: "expired" | "deleted", now: Fragment) {
    await tx`INSERT INTO job_events (at, job_id, type, status, queue, owner, tags)
      SELECT ${now}, id, ${type},
        CASE WHEN state IN ('available', 'scheduled', 'waiting') THEN 'queued' ELSE state END,
        queue, owner, tags
      FROM jobs WHERE id = ANY(${ids}::text[])`;
    await tx`DELETE FROM jobs WHERE id = ANY(${ids}::text[])`;
  }

  async jobNextExpiry(): Promise<number | null> {
    const [row] = await this.run(
      () => this.sql`SELECT min(expires_at) AS at FROM jobs WHERE expires_at IS NOT NULL`,
    );
    return (row!.at as number | null) ?? null;
  }

  async attemptList({ jobId }: { jobId: string }): Promise<Attempt[]> {
    const rows = await this.run(
      () => this.sql<AttemptRow>`SELECT * FROM attempts WHERE job_id = ${jobId} ORDER BY id`,
    );
    return rows.map(rowToAttempt);
  }

  async resultGet({ jobId }: { jobId: string }): Promise<JobResult | null> {
    const [row] = await this.run(
      () => this.sql<ResultRow>`SELECT * FROM results WHERE job_id = ${jobId}`,
    );
    return row ? rowToResult(row) : null;
  }

  async auditInsert(events: AuditEvent[]): Promise<void> {
    if (events.length === 0) return;
    await this.run(() => this.insertAudit(this.sql, events));
  }

  async auditList(p: AuditListParams): Promise<{ events: StoredAuditEvent[]; more: boolean }> {
    const q = this.sql;
    const where = [q`true`];
    if (p.principal !== undefined) where.push(q`principal = ${p.principal}`);
    if (p.action !== undefined) where.push(q`action = ${p.action}`);
    if (p.jobId !== undefined) where.push(q`job_id = ${p.jobId}`);
    if (p.outcome !== undefined) where.push(q`outcome = ${p.outcome}`);
    if (p.since !== undefined) where.push(q`at >= ${p.since}`);
    if (p.until !== undefined) where.push(q`at < ${p.until}`);
    if (p.beforeId !== undefined) where.push(q`id < ${p.beforeId}`);
    const rows = await this.run(
      () => q<AuditRow>`SELECT * FROM audit_events WHERE ${and(q, where)}
        ORDER BY id DESC LIMIT ${p.limit + 1}`,
    );
    return { events: rows.slice(0, p.limit).map(rowToAudit), more: rows.length > p.limit };
  }

  async auditDeleteBefore({ before, limit }: { before: number; limit: number }): Promise<number> {
    const res = await this.run(
      () => this.sql`DELETE FROM audit_events WHERE id IN (
        SELECT id FROM audit_events WHERE at < ${before} LIMIT ${limit})`,
    );
    return res.count;
  }

  async statsCounts(): Promise<QueueCounts[]> {
    const rows = await this.run(
      () => this.sql<{ queue: string; state: JobRow["state"]; n: number }>`
        SELECT queue, state, sum(n)::bigint AS n FROM (
          SELECT queue, state, n FROM job_counts
          UNION ALL SELECT queue, state, n FROM job_stat_deltas WHERE minute IS NULL) c
        GROUP BY queue, state HAVING sum(n) <> 0`,
    );
    const byQueue = new Map<string, QueueCounts>();
    for (const row of rows) {
      let entry = byQueue.get(row.queue);
      if (!entry) {
        entry = {
          queue: row.queue,
          counts: { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 },
        };
        byQueue.set(row.queue, entry);
      }
      entry.counts[statusOf(row.state)] += Number(row.n);
    }
    return [...byQueue.values()].sort((a, b) => (a.queue < b.queue ? -1 : 1));
  }

  async statsActivity(params: { queue?: string }): Promise<QueueActivity[]> {
    const q = this.sql;
    const rows = await this.run(
      () => q<{ queue: string; oldest: number | null; running: number }>`
        SELECT name AS queue,
          (SELECT run_at FROM jobs WHERE state = 'available' AND queue = qs.name
            ORDER BY priority DESC, run_at, id LIMIT 1) AS oldest,
          (SELECT count(*) FROM jobs WHERE state = 'running' AND queue = qs.name) AS running
        FROM queues qs
        ${params.queue === undefined ? q`` : q`WHERE name = ${params.queue}`}
        ORDER BY name`,
    );
    return rows.map((r) => ({
      queue: r.queue,
      oldestQueuedAt: r.oldest ?? null,
      running: Number(r.running),
    }));
  }

  async statsThroughput(params: { sinceMinute: number; queue?: string }): Promise<ThroughputRow[]> {
    const q = this.sql;
    const queue = params.queue === undefined ? q`` : q`AND queue = ${params.queue}`;
    const rows = await this.run(
      () => q<{ minute: number; queue: string; state: ThroughputRow["status"]; n: number }>`
        SELECT minute, queue, state, sum(n)::bigint AS n FROM (
          SELECT minute, queue, state, n FROM job_throughput WHERE minute >= ${params.sinceMinute} ${queue}
          UNION ALL SELECT minute, queue, state, n FROM job_stat_deltas
            WHERE minute >= ${params.sinceMinute} ${queue}) t
        GROUP BY minute, queue, state ORDER BY minute`,
    );
    return rows.map((r) => ({
      minute: r.minute,
      queue: r.queue,
      status: r.state,
      count: Number(r.n),
    }));
  }

  async statsDurations(params: {
    sinceMs: number;
    queue?: string;
    limit: number;
  }): Promise<DurationRow[]> {
    const q = this.sql;
    const queue = params.queue === undefined ? q`` : q`AND j.queue = ${params.queue}`;
    // One ordered read per status, so each walks the (state, finished_at) index backwards.
    const of = (state: string) =>
      this.run(
        () => q<{ host: string; duration_ms: number; finished_at: string | number }>`
          SELECT COALESCE(j.host, '') AS host, r.duration_ms, j.finished_at
          FROM jobs j JOIN results r ON r.job_id = j.id
          WHERE j.state = ${state} AND j.finished_at IS NOT NULL AND j.finished_at >= ${params.sinceMs}
            ${queue}
          ORDER BY j.finished_at DESC LIMIT ${params.limit}`,
      );
    const rows = (await Promise.all([of("succeeded"), of("failed")])).flat();
    return rows.map((r) => ({
      host: r.host,
      durationMs: Number(r.duration_ms),
      finishedAt: Number(r.finished_at),
    }));
  }

  async statsGroups(params: {
    by: "host" | "tag";
    queue?: string;
    limit: number;
    scanCap: number;
  }): Promise<{ groups: { key: string; queued: number; running: number }[]; capped: boolean }> {
    const q = this.sql;
    const active = q`SELECT id, host, state FROM jobs
      WHERE state IN ('available', 'scheduled', 'waiting', 'running')
      ${params.queue === undefined ? q`` : q`AND queue = ${params.queue}`} LIMIT ${params.scanCap + 1}`;
    const [groups, [seen]] = await this.run(() =>
      Promise.all([
        params.by === "host"
          ? q<{ key: string; queued: number; running: number }>`
              SELECT COALESCE(host, '') AS key, count(*) FILTER (WHERE state <> 'running') AS queued,
                count(*) FILTER (WHERE state = 'running') AS running
              FROM (${active}) a GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT ${params.limit}`
          : q<{ key: string; queued: number; running: number }>`
              SELECT t.tag AS key, count(*) FILTER (WHERE a.state <> 'running') AS queued,
                count(*) FILTER (WHERE a.state = 'running') AS running
              FROM (${active}) a JOIN job_tags t ON t.job_id = a.id
              GROUP BY t.tag ORDER BY count(*) DESC, t.tag LIMIT ${params.limit}`,
        q`SELECT count(*) AS n FROM (${active}) a`,
      ]),
    );
    return {
      groups: groups.map((g) => ({
        key: g.key,
        queued: Number(g.queued),
        running: Number(g.running),
      })),
      capped: Number(seen!.n) > params.scanCap,
    };
  }

  /**
   * Folds the counter deltas into their totals (one statement: rows appended meanwhile are left for
   * the next fold, and two folds at once never count a delta twice: DELETE takes each row once).
   */
  async statsCompact({ keepMinutes }: { keepMinutes: number }): Promise<void> {
    const q = this.sql;
    const t = this.t();
    await this.run(
      () => q`WITH moved AS (DELETE FROM job_stat_deltas RETURNING queue, state, minute, n),
          counted AS (
            INSERT INTO job_counts (queue, state, n)
            SELECT queue, state, sum(n) FROM moved WHERE minute IS NULL GROUP BY queue, state
            ON CONFLICT (queue, state) DO UPDATE SET n = job_counts.n + excluded.n),
          ended AS (
            INSERT INTO job_throughput (minute, queue, state, n)
            SELECT minute, queue, state, sum(n) FROM moved WHERE minute IS NOT NULL
            GROUP BY minute, queue, state
            ON CONFLICT (minute, queue, state) DO UPDATE SET n = job_throughput.n + excluded.n)
        SELECT count(*) FROM moved`,
    );
    await this.run(
      () => q`DELETE FROM job_throughput
        WHERE minute < COALESCE(${t}::bigint, jq_now()) / 60000 - ${keepMinutes}`,
    );
  }

  async queueCreate(queue: Omit<QueueSettings, "createdAt" | "updatedAt">): Promise<boolean> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    const c = queueColumns(queue);
    const res = await this.run(
      () => q`WITH created AS (
          INSERT INTO queues (name, concurrency, rate_interval_ms, rate_burst, max_attempts,
            backoff_strategy, backoff_base_ms, ttl_ms, paused, created_at, updated_at)
          VALUES (${c.name}, ${c.concurrency}, ${c.rate_interval_ms}, ${c.rate_burst},
            ${c.max_attempts}, ${c.backoff_strategy}, ${c.backoff_base_ms}, ${c.ttl_ms},
            ${queue.paused}, ${now}, ${now})
          ON CONFLICT (name) DO NOTHING RETURNING 1)
        SELECT pg_notify(${this.channel}, ${this.note("q")}) FROM created`,
    );
    if (res.count === 0) return false;
    this.notifier.queuesChanged();
    return true;
  }

  async queueUpdate(queue: Omit<QueueSettings, "createdAt" | "updatedAt">): Promise<boolean> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    const c = queueColumns(queue);
    const res = await this.run(
      () => q`WITH updated AS (
          UPDATE queues SET concurrency = ${c.concurrency}, rate_interval_ms = ${c.rate_interval_ms},
            rate_burst = ${c.rate_burst}, max_attempts = ${c.max_attempts},
            backoff_strategy = ${c.backoff_strategy}, backoff_base_ms = ${c.backoff_base_ms},
            ttl_ms = ${c.ttl_ms}, paused = ${queue.paused}, updated_at = ${now}
          WHERE name = ${c.name} RETURNING 1)
        SELECT pg_notify(${this.channel}, ${this.note("q")}) FROM updated`,
    );
    if (res.count === 0) return false;
    this.notifier.queuesChanged();
    return true;
  }

  async scheduleCreate(schedule: Schedule): Promise<void> {
    const c = scheduleColumns(schedule);
    await this.run(() => this.sql`INSERT INTO schedules ${this.sql([c])}`);
  }

  async scheduleGet({ id }: { id: string }): Promise<Schedule | null> {
    const [row] = await this.run(
      () => this.sql<ScheduleRow>`SELECT * FROM schedules WHERE id = ${id}`,
    );
    return row ? rowToSchedule(row) : null;
  }

  async scheduleList(params: {
    ownedBy?: string;
    afterId?: string;
    limit: number;
  }): Promise<Schedule[]> {
    const q = this.sql;
    const owner = params.ownedBy ?? null;
    const after = params.afterId ?? null;
    const rows = await this.run(
      () => q<ScheduleRow>`SELECT * FROM schedules
        WHERE (${owner}::text IS NULL OR owner = ${owner})
          AND (${after}::text IS NULL OR id < ${after})
        ORDER BY id DESC LIMIT ${params.limit}`,
    );
    return rows.map(rowToSchedule);
  }

  async scheduleUpdate(schedule: Schedule): Promise<boolean> {
    const c = scheduleColumns(schedule);
    const res = await this.run(
      () => this.sql`UPDATE schedules SET description = ${c.description},
          template = ${c.template}, sealed_headers = ${c.sealed_headers}, cron = ${c.cron},
          time_zone = ${c.time_zone}, jitter_ms = ${c.jitter_ms}, start_at = ${c.start_at},
          end_at = ${c.end_at}, overlap_policy = ${c.overlap_policy}, catch_up = ${c.catch_up},
          catch_up_window_ms = ${c.catch_up_window_ms}, paused = ${c.paused},
          next_run_at = ${c.next_run_at}, last_run_at = ${c.last_run_at},
          last_job_id = ${c.last_job_id}, buffered_tick = ${c.buffered_tick},
          updated_at = ${c.updated_at}
        WHERE id = ${c.id}`,
    );
    return res.count === 1;
  }

  async scheduleDelete({ id }: { id: string }): Promise<boolean> {
    const res = await this.run(() => this.sql`DELETE FROM schedules WHERE id = ${id}`);
    return res.count === 1;
  }

  async scheduleDue(params: { dueBy: number; limit: number }): Promise<Schedule[]> {
    const rows = await this.run(
      () => this.sql<ScheduleRow>`SELECT * FROM schedules
        WHERE NOT paused AND (next_run_at <= ${params.dueBy} OR buffered_tick IS NOT NULL)
        ORDER BY next_run_at LIMIT ${params.limit}`,
    );
    return rows.map(rowToSchedule);
  }

  async scheduleAdvance(params: {
    id: string;
    from: number | null;
    updatedAt: number;
    nextRunAt: number | null;
    bufferedTick: number | null;
    lastRun: { at: number; jobId: string } | null;
  }): Promise<boolean> {
    const lastAt = params.lastRun?.at ?? null;
    const lastJob = params.lastRun?.jobId ?? null;
    const res = await this.run(
      () => this.sql`UPDATE schedules SET next_run_at = ${params.nextRunAt},
          buffered_tick = ${params.bufferedTick},
          last_run_at = COALESCE(${lastAt}::bigint, last_run_at),
          last_job_id = COALESCE(${lastJob}::text, last_job_id)
        WHERE id = ${params.id} AND next_run_at IS NOT DISTINCT FROM ${params.from}::bigint
          AND updated_at = ${params.updatedAt}`,
    );
    return res.count === 1;
  }

  async queueGet({ name }: { name: string }): Promise<QueueSettings | null> {
    const [row] = await this.run(
      () => this.sql<QueueRow>`SELECT * FROM queues WHERE name = ${name}`,
    );
    return row ? rowToQueue(row) : null;
  }

  async queueList(): Promise<QueueSettings[]> {
    const rows = await this.run(() => this.sql<QueueRow>`SELECT * FROM queues ORDER BY name`);
    return rows.map(rowToQueue);
  }

  async queueDelete({ name }: { name: string }): Promise<"deleted" | "not-found" | "not-empty"> {
    const result = await this.tx(async (tx): Promise<"deleted" | "not-found" | "not-empty"> => {
      // The queue's row locked against enqueues (they share-lock it), then its active jobs counted.
      const [found] = await tx`SELECT name FROM queues WHERE name = ${name} FOR UPDATE`;
      if (!found) return "not-found";
      if (name === "default") return "not-empty";
      const [active] = await tx`SELECT EXISTS (SELECT 1 FROM jobs WHERE queue = ${name}
        AND state IN ('available', 'scheduled', 'waiting', 'running')) AS any`;
      if (active!.any) return "not-empty";
      await tx`DELETE FROM queues WHERE name = ${name}`;
      await tx`DELETE FROM queue_rates WHERE queue = ${name}`;
      await tx`SELECT pg_notify(${this.channel}, ${this.note("q")})`;
      return "deleted";
    });
    if (result === "deleted") this.notifier.queuesChanged();
    return result;
  }

  async operationCreate(op: Operation): Promise<void> {
    const c = operationColumns(op);
    await this.run(
      () => this.sql`WITH created AS (INSERT INTO operations ${this.sql([c])} RETURNING 1)
        SELECT pg_notify(${this.channel}, ${this.note("o")}) FROM created`,
    );
    this.notifier.operationsChanged();
  }

  async operationGet({ id }: { id: string }): Promise<Operation | null> {
    const [row] = await this.run(
      () => this.sql<OperationRow>`SELECT * FROM operations WHERE id = ${id}`,
    );
    return row ? rowToOperation(row) : null;
  }

  async operationList(params: {
    state?: Operation["state"];
    owner?: string;
    limit: number;
  }): Promise<Operation[]> {
    const q = this.sql;
    const where = [q`true`];
    if (params.state !== undefined) where.push(q`state = ${params.state}`);
    if (params.owner !== undefined) where.push(q`owner = ${params.owner}`);
    const rows = await this.run(
      () => q<OperationRow>`SELECT * FROM operations WHERE ${and(q, where)}
        ORDER BY id DESC LIMIT ${params.limit}`,
    );
    return rows.map(rowToOperation);
  }

  async operationCancel({ id }: { id: string }): Promise<boolean> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    const res = await this.run(
      () => q`WITH ended AS (
          UPDATE operations SET state = 'canceled', updated_at = ${now}, finished_at = ${now}
          WHERE id = ${id} AND state = 'running' RETURNING 1)
        SELECT pg_notify(${this.channel}, ${this.note("o")}) FROM ended`,
    );
    if (res.count === 0) return false;
    this.notifier.operationsChanged();
    return true;
  }

  async operationStep(params: {
    id: string;
    batch: number;
    scan: number;
    audit: (op: Operation) => AuditEvent;
  }): Promise<Operation | null> {
    const t = this.t();
    const canceled: string[] = [];
    const retried: Job[] = [];
    const stepped = await this.tx(async (tx): Promise<Operation | null> => {
      const [row] =
        await tx<OperationRow>`SELECT * FROM operations WHERE id = ${params.id} FOR UPDATE`;
      if (row?.state !== "running") return null;
      const op = rowToOperation(row);
      const now = await this.nowValue(tx, t);
      const applicable = actionableStatuses(op.kind);
      const statuses = op.filter.statuses
        ? op.filter.statuses.filter((s) => applicable.includes(s))
        : applicable;
      let matched: JobRow[] = [];
      let next: ListCursor | null = null;
      if (statuses.length > 0) {
        const l = listQuery(
          tx,
          {
            ...op.filter,
            statuses,
            ownedBy: op.owner ?? undefined,
            after: op.cursor === null ? undefined : (JSON.parse(op.cursor) as ListCursor),
            idAtMost: op.upperId,
            limit: params.batch,
            scanLimit: params.scan,
          },
          tx`${now}::bigint`,
        );
        ({ rows: matched, next } = pageOf(l, (await l.query) as unknown as JobRow[], params.batch));
      }
      let affected = 0;
      for (const listed of matched) {
        // Locked now, in job-then-attempt order; a row another transaction holds is skipped
        // (it is being changed anyway, and the cursor moves on).
        const [job] =
          await tx<JobRow>`SELECT * FROM jobs WHERE id = ${listed.id} FOR UPDATE SKIP LOCKED`;
        if (!job || !actionable(op.kind, statusOf(job.state))) continue;
        if (op.kind === "cancel") {
          await this.cancelLocked(tx, job, tx`${now}::bigint`);
          canceled.push(job.id);
        } else if (op.kind === "retry") {
          try {
            retried.push(rowToJob(await this.retryLocked(tx, job, op.overrides, now)));
          } catch (err) {
            if (!(err instanceof InvalidArgumentError || err instanceof QueueNotFoundError)) {
              throw err;
            }
            continue; // an override this job cannot take, or its queue is gone: left alone
          }
        } else {
          await this.deleteWithEvent(tx, [job.id], "deleted", tx`${now}::bigint`);
        }
        affected++;
      }
      const done = next === null;
      const result: Operation = {
        ...op,
        examined: op.examined + matched.length,
        affected: op.affected + affected,
        cursor: done ? op.cursor : JSON.stringify(next),
        updatedAt: now,
        ...(done ? { state: "succeeded" as const, finishedAt: now } : {}),
      };
      await tx`UPDATE operations SET examined = ${result.examined}, affected = ${result.affected},
          cursor = ${result.cursor}, state = ${result.state}, updated_at = ${now},
          finished_at = ${result.finishedAt}
        WHERE id = ${op.id}`;
      if (done) {
        await this.insertAudit(tx, [params.audit(result)]);
        await tx`SELECT pg_notify(${this.channel}, ${this.note("o")})`;
      }
      return result;
    });
    for (const id of canceled) this.afterCancel(id);
    this.afterRetry(retried);
    if (stepped?.state === "succeeded") this.notifier.operationsChanged();
    return stepped;
  }

  /**
   * Events in (txid, seq) order, only from transactions older than the oldest still running (see
   * migration 003_events.sql): every one of those has ended, so no event can later appear before
   * the ones returned, and a reader's cursor never skips one.
   */
  async eventList({
    after,
    limit,
  }: {
    after: string | null;
    limit: number;
  }): Promise<{ events: JobStreamEvent[]; head: string }> {
    const q = this.sql;
    const [horizon] = await this.run(
      () => q<{ txid: number; seq: number }>`
      SELECT txid, seq FROM event_horizon WHERE id = 1`,
    );
    const from = after === null ? horizon! : parsePgCursor(after);
    if (from.txid < horizon!.txid || (from.txid === horizon!.txid && from.seq < horizon!.seq)) {
      throw new CursorExpiredError(after!);
    }
    const rows = await this.run(
      () => q<EventRow>`SELECT * FROM job_events
      WHERE (txid, seq) > (${from.txid}::bigint, ${from.seq}::bigint)
        AND txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
      ORDER BY txid, seq LIMIT ${limit}`,
    );
    const events = rows.map(rowToEvent);
    return { events, head: events.at(-1)?.cursor ?? cursorOf(from.seq, from.txid) };
  }

  async eventHead(): Promise<string> {
    const [row] = await this.run(
      () => this.sql<{ txid: number; seq: number }>`
      SELECT txid, seq FROM (
        (SELECT txid, seq FROM job_events
          WHERE txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
          ORDER BY txid DESC, seq DESC LIMIT 1)
        UNION ALL (SELECT txid, seq FROM event_horizon WHERE id = 1)) h
      ORDER BY txid DESC, seq DESC LIMIT 1`,
    );
    return cursorOf(row!.seq, row!.txid);
  }

  async eventAppend(params: { jobId: string; attempt: number; progress: Progress }): Promise<void> {
    const q = this.sql;
    await this.run(
      () => q`INSERT INTO job_events (at, job_id, type, status, queue, owner, tags,
        attempt, detail)
      SELECT ${this.nowOf(q, this.t())}, id, 'progress', 'running', queue, owner, tags,
        ${params.attempt}, ${JSON.stringify(params.progress)}
      FROM jobs WHERE id = ${params.jobId} AND state = 'running' AND attempt = ${params.attempt}`,
    );
    this.notifier.eventsAppended();
  }

  async eventDeleteBefore({ before, limit }: { before: number; limit: number }): Promise<number> {
    return this.tx(async (tx) => {
      const gone = await tx<{ txid: number; seq: number }>`DELETE FROM job_events
        WHERE seq IN (SELECT seq FROM job_events WHERE at < ${before} ORDER BY at LIMIT ${limit})
        RETURNING txid, seq`;
      if (gone.length === 0) return 0;
      const last = gone.reduce((a, b) =>
        b.txid > a.txid || (b.txid === a.txid && b.seq > a.seq) ? b : a,
      );
      await tx`UPDATE event_horizon SET txid = ${last.txid}, seq = ${last.seq}
        WHERE id = 1 AND (txid, seq) < (${last.txid}::bigint, ${last.seq}::bigint)`;
      return gone.length;
    });
  }

  async nodeHeartbeat(node: NodeBeat): Promise<void> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    await this.run(
      () => q`INSERT INTO nodes (id, started_at, heartbeat_at, version, concurrency, in_flight)
        VALUES (${node.id}, ${node.startedAt}, ${now}, ${node.version}, ${node.concurrency},
          ${node.inFlight})
        ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
          version = excluded.version, concurrency = excluded.concurrency,
          in_flight = excluded.in_flight`,
    );
  }

  async nodeList({ withinMs }: { withinMs: number }): Promise<NodeInfo[]> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    const rows = await this.run(
      () => q<NodeRow>`SELECT n.*, (l.node IS NOT NULL) AS leader FROM nodes n
        LEFT JOIN leader l ON l.node = n.id AND l.expires_at > ${now}
        WHERE n.heartbeat_at >= ${now} - ${withinMs}::bigint ORDER BY n.id`,
    );
    return rows.map(rowToNode);
  }

  async nodeDelete(params: { id: string } | { silentForMs: number }): Promise<number> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    const res = await this.run(() =>
      "id" in params
        ? q`DELETE FROM nodes WHERE id = ${params.id}`
        : q`DELETE FROM nodes WHERE heartbeat_at < ${now} - ${params.silentForMs}::bigint`,
    );
    return res.count;
  }

  async leaderAttemptElect({ node, ttlMs }: { node: string; ttlMs: number }): Promise<boolean> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    const rows = await this.run(
      () => q`INSERT INTO leader (name, node, elected_at, expires_at)
        VALUES ('maintenance', ${node}, ${now}, ${now} + ${ttlMs}::bigint)
        ON CONFLICT (name) DO UPDATE SET node = excluded.node, expires_at = excluded.expires_at,
          elected_at = CASE WHEN leader.node = excluded.node THEN leader.elected_at
                            ELSE excluded.elected_at END
        WHERE leader.node = excluded.node OR leader.expires_at <= ${now}
        RETURNING node`,
    );
    return rows[0]?.node === node;
  }

  async leaderResign({ node }: { node: string }): Promise<void> {
    await this.run(
      () => this.sql`WITH gone AS (
          DELETE FROM leader WHERE name = 'maintenance' AND node = ${node} RETURNING 1)
        SELECT pg_notify(${this.channel}, ${this.note("r")}) FROM gone`,
    );
  }

  async probe(): Promise<void> {
    const q = this.sql;
    const now = this.nowOf(q, this.t());
    await this.run(
      () => q`INSERT INTO store_probe (id, at) VALUES (1, ${now})
        ON CONFLICT (id) DO UPDATE SET at = excluded.at`,
    );
  }

  async jobStats({ cap }: { cap: number }): Promise<JobStats> {
    return this.run(() => readJobStats(this.sql, cap));
  }

  /** The plan of the claim's candidate scan, for the test that keeps it on the partial index. */
  async explainClaim(): Promise<string> {
    const rows = await this.sql`EXPLAIN (FORMAT TEXT) SELECT id FROM jobs
      WHERE state = 'available' AND queue = 'default'
      ORDER BY priority DESC, run_at, id LIMIT 10 FOR UPDATE SKIP LOCKED`;
    return rows.map((r) => r["QUERY PLAN"] as string).join("\n");
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.unlisten?.().catch(() => {});
      await this.sql.end();
    })();
    return this.closed;
  }
}

/** A PostgreSQL cursor: the event's transaction id and sequence, 16 digits each. */
function parsePgCursor(cursor: string): { txid: number; seq: number } {
  if (!/^\d{32}$/.test(cursor)) {
    throw new InvalidArgumentError("after_cursor", "is not a cursor this server gave out");
  }
  return { txid: Number(cursor.slice(0, 16)), seq: Number(cursor.slice(16)) };
}

/** The audit outcome of a single-job action: done, not found, or refused for the job's state. */
function outcomeOf(done: boolean, kind: string): AuditOutcome {
  return done ? "ok" : kind === "not-found" ? "not_found" : "failed_precondition";
}

/** The columns of an operation, as the PostgreSQL driver writes them. */
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
    estimate_capped: op.estimateCapped,
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

/** Rows per multi-row INSERT (PostgreSQL allows 65,535 parameters a statement). */
const INSERT_CHUNK = 1000;

function and(q: Query, parts: Fragment[]) {
  return joinSql(q, parts, q` AND `);
}

function claimOrder(a: JobRow, b: JobRow): number {
  return b.priority - a.priority || a.run_at - b.run_at || (a.id < b.id ? -1 : 1);
}

/** Error codes of a database that cannot serve now, and how to say so. */
function unavailable(err: unknown, url?: string): StoreUnavailableError | null {
  const where = url ? ` at ${describeUrl(url)}` : "";
  const message = err instanceof Error ? err.message : "";
  // node-postgres reports a lost or unobtainable connection without a code.
  if (
    /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Connection closed|Client was closed/i.test(
      message,
    )
  ) {
    return new StoreUnavailableError(`PostgreSQL cannot be reached${where} (${message})`, {
      cause: err,
    });
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return null;
  const detail = (err as Error).message;
  let reason: string | null = null;
  if (
    ["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EPIPE"].includes(code)
  ) {
    reason = "PostgreSQL cannot be reached";
  } else if (code.startsWith("08")) reason = "the connection to PostgreSQL failed";
  else if (code === "57P01" || code === "57P02" || code === "57P03") {
    reason = "PostgreSQL is shutting down or starting up";
  } else if (code === "53100") reason = "PostgreSQL's disk is full";
  else if (code.startsWith("53")) reason = "PostgreSQL is out of resources";
  else if (code.startsWith("58")) reason = "PostgreSQL had an I/O error";
  else if (code === "25006") reason = "PostgreSQL is read-only (a standby?)";
  if (reason === null) return null;
  return new StoreUnavailableError(`${reason}${where} (${code}: ${detail})`, { cause: err });
}

/** A URL without its password, for messages. */
function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = "";
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return "the configured URL";
  }
}
