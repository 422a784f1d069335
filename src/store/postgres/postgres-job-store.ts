import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import type { AuditEvent, AuditOutcome, StoredAuditEvent } from "../../audit/audit-event.js";
import { type Candidate, createAdmission } from "../../job/admission.js";
import type { Clock } from "../../job/clock.js";
import { IdempotencyConflictError } from "../../job/errors.js";
import { isConflict } from "../../job/idempotency.js";
import type { LimitResolver } from "../../job/rate-limits.js";
import { LOST_ATTEMPT, LOST_ERROR, rescuedStatus } from "../../job/rescue.js";
import type { Attempt, Job, JobResult, NewJob } from "../../job/types.js";
import { createNotifier, type Notifier } from "../../notify/notifier.js";
import {
  type AuditListParams,
  type CancelResult,
  type ClaimedJob,
  type ClaimResult,
  type FinishAttemptParams,
  type InsertResult,
  type JobListParams,
  type JobStats,
  type JobStore,
  type Lease,
  type NodeBeat,
  type NodeInfo,
  type RescuedJob,
  StoreUnavailableError,
} from "../job-store.js";
import {
  type AttemptRow,
  type AuditRow,
  encodeRequestBody,
  type JobRow,
  type NodeRow,
  type ResultRow,
  rowToAttempt,
  rowToAudit,
  rowToJob,
  rowToNode,
  rowToResult,
  STATES_OF,
  statusOf,
} from "../rows.js";
import { readJobStats } from "./postgres-stats.js";

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
}

type Sql = postgres.Sql<Record<string, never>>;
type Tx = postgres.TransactionSql<Record<string, never>>;
type Query = Sql | Tx;

/**
 * The store for several nodes sharing one PostgreSQL database (client: `postgres`, chosen for its
 * LISTEN that re-subscribes by itself after a reconnect, with a hook to catch up, and its
 * pipelined, prepared queries). Claims take due rows with `FOR UPDATE SKIP LOCKED`, so nodes never
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
  const sql: Sql = postgres(options.url, {
    max: options.poolSize ?? 10,
    onnotice: () => {},
    connect_timeout: options.connectTimeoutSeconds ?? 10,
    idle_timeout: 60,
    max_lifetime: 60 * 30,
    types: {
      // Epoch milliseconds and counts: bigint on the wire, safely a JavaScript number here.
      bigint: {
        to: 20,
        from: [20],
        serialize: (x: number) => String(x),
        parse: (x: string) => Number(x),
      },
    } as never,
    connection: { search_path: options.schema, application_name: "jobqueue" },
  }) as unknown as Sql;
  try {
    await migrate(sql, options.schema);
    const store = new PostgresJobStore(sql, options.schema, options.clock ?? null);
    await store.listen();
    return store;
  } catch (err) {
    await sql.end({ timeout: 1 }).catch(() => {});
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

  constructor(
    private readonly sql: Sql,
    schema: string,
    private readonly clock: Clock | null,
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
    else if (kind === "c" && arg) this.notifier.jobChanged({ jobId: arg, status: "canceled" });
    else if (kind === "s" && arg) this.notifier.jobScheduled(Number(arg));
    else if (kind === "r") this.notifier.leaderResigned();
  }

  private note(kind: "a" | "r" | `c:${string}` | `s:${number}`): string {
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
  private async run<T>(fn: () => Promise<T>): Promise<T> {
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

  private tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    return this.run(() => this.sql.begin(fn) as Promise<T>);
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
      const out: InsertResult[] = new Array(jobs.length);
      const plain: number[] = [];
      // Keyed jobs one by one, in order (a key repeated within the batch names the first job).
      for (const [i, job] of jobs.entries()) {
        if (job.idempotencyKey === null) plain.push(i);
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
      const [row] = await tx<JobRow[]>`SELECT * FROM jobs
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
      await tx`DELETE FROM jobs WHERE id = ${found.id}`;
    }
    const inserted = await this.insertRows(tx, [job], true);
    if (inserted === 1) return { job: storedJob(job), inserted: true };
    // Another node inserted the key between our look and our insert: its job stands.
    const raced = await existing();
    if (!raced) throw new Error(`idempotency key ${key}: conflict without a row`);
    return kept(raced);
  }

  /** Inserts jobs and their tags; with `onKeyConflict`, a taken key inserts nothing. */
  private async insertRows(tx: Tx, jobs: NewJob[], onKeyConflict = false): Promise<number> {
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
      };
    });
    const result = onKeyConflict
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
      () => this.sql<JobRow[]>`SELECT * FROM jobs WHERE id = ${id}
        AND (expires_at IS NULL OR expires_at > ${this.nowOf(this.sql, t)})`,
    );
    return row ? rowToJob(row) : null;
  }

  /**
   * Lists newest first without sorting the table: with tags, it walks the first tag's entries;
   * with statuses, one walk of the (state, id) index per state, merged; otherwise the primary key.
   * Each walk stops after a page.
   */
  async jobList(params: JobListParams): Promise<{ jobs: Job[]; more: boolean }> {
    const q = this.sql;
    const limit = params.limit + 1;
    const t = this.t();
    const [firstTag, ...otherTags] = params.tags ?? [];
    const where = [q`(j.expires_at IS NULL OR j.expires_at > ${this.nowOf(q, t)})`];
    for (const tag of otherTags) {
      where.push(q`EXISTS (SELECT 1 FROM job_tags o WHERE o.tag = ${tag} AND o.job_id = j.id)`);
    }
    if (params.ownedBy !== undefined) where.push(q`j.owner = ${params.ownedBy}`);
    if (params.createdAfter !== undefined) where.push(q`j.created_at > ${params.createdAfter}`);
    if (params.createdBefore !== undefined) where.push(q`j.created_at < ${params.createdBefore}`);
    if (params.afterId !== undefined) where.push(q`j.id < ${params.afterId}`);
    const states = params.statuses?.length ? params.statuses.flatMap((s) => STATES_OF[s]) : null;
    const cond = and(q, where);
    const rows = await this.run(async () => {
      if (firstTag !== undefined) {
        const stateCond = states ? q`AND j.state = ANY(${states})` : q``;
        return q<JobRow[]>`SELECT j.* FROM job_tags t JOIN jobs j ON j.id = t.job_id
          WHERE t.tag = ${firstTag} AND ${cond} ${stateCond}
          ORDER BY t.job_id DESC LIMIT ${limit}`;
      }
      if (states) {
        const branches = states.map(
          (state) => q`(SELECT j.* FROM jobs j WHERE j.state = ${state} AND ${cond}
            ORDER BY j.id DESC LIMIT ${limit})`,
        );
        return q<JobRow[]>`SELECT * FROM (${joinSql(q, branches, q` UNION ALL `)}) u
          ORDER BY id DESC LIMIT ${limit}`;
      }
      return q<JobRow[]>`SELECT j.* FROM jobs j WHERE ${cond} ORDER BY j.id DESC LIMIT ${limit}`;
    });
    return { jobs: rows.slice(0, params.limit).map(rowToJob), more: rows.length > params.limit };
  }

  async jobCancel(params: {
    id: string;
    ownedBy?: string;
    audit?: (outcome: AuditOutcome) => AuditEvent;
  }): Promise<CancelResult> {
    const t = this.t();
    const result = await this.tx(async (tx): Promise<CancelResult> => {
      const now = this.nowOf(tx, t);
      const [row] = await tx<JobRow[]>`SELECT * FROM jobs WHERE id = ${params.id}
        AND (expires_at IS NULL OR expires_at > ${now}) FOR UPDATE`;
      let res: CancelResult;
      if (!row || (params.ownedBy !== undefined && row.owner !== params.ownedBy)) {
        res = { kind: "not-found" };
      } else if (statusOf(row.state) !== "queued" && row.state !== "running") {
        res = { kind: "already-finished", job: rowToJob(row) };
      } else {
        await tx`UPDATE attempts SET outcome = 'canceled', finished_at = ${now},
            error_code = 'canceled', error = 'canceled while the call was in flight',
            duration_ms = ${now} - started_at
          WHERE job_id = ${params.id} AND finished_at IS NULL`;
        const [updated] = await tx<JobRow[]>`UPDATE jobs SET state = 'canceled',
            finished_at = ${now}, updated_at = ${now},
            expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ${now} + ttl_ms END,
            lease_token = NULL, lease_expires_at = NULL
          WHERE id = ${params.id} RETURNING *`;
        // A running job frees a slot; an available or scheduled one may have been promoted from
        // waiting to take one. Either way the next waiting job gets its turn.
        if (row.state !== "waiting") await this.promoteOneWaiting(tx, now, row.bucket);
        await tx`SELECT pg_notify(${this.channel}, ${this.note(`c:${params.id}`)})`;
        res = { kind: "canceled", job: rowToJob(updated!), wasRunning: row.state === "running" };
      }
      if (params.audit) {
        const outcome: AuditOutcome =
          res.kind === "canceled"
            ? "ok"
            : res.kind === "not-found"
              ? "not_found"
              : "failed_precondition";
        await this.insertAudit(tx, [params.audit(outcome)]);
      }
      return res;
    });
    if (result.kind === "canceled") {
      this.notifier.jobChanged({ jobId: params.id, status: "canceled" });
      this.notifier.jobsAvailable();
    }
    return result;
  }

  /** Makes the first waiting job of a bucket available, telling every node. */
  private async promoteOneWaiting(
    tx: Tx,
    now: postgres.PendingQuery<postgres.Row[]>,
    bucket: string,
  ) {
    await tx`WITH promoted AS (
        UPDATE jobs SET state = 'available', updated_at = ${now}
        WHERE id = (SELECT id FROM jobs WHERE state = 'waiting' AND bucket = ${bucket}
          ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
        RETURNING id)
      SELECT pg_notify(${this.channel}, ${this.note("a")}) FROM promoted`;
  }

  async jobClaim(params: {
    limit: number;
    leaseMs: number;
    node: string;
    limits?: LimitResolver;
  }): Promise<ClaimResult> {
    if (params.limit <= 0) return { jobs: [], deferredUntil: null };
    const token = randomUUID();
    const t = this.t();
    const { rows, deferredUntil } = await this.tx(async (tx) => {
      if (!params.limits) {
        const now = this.nowOf(tx, t);
        const claimed = await tx<JobRow[]>`WITH picked AS (
            SELECT id FROM jobs WHERE state = 'available'
            ORDER BY priority DESC, run_at, id LIMIT ${params.limit} FOR UPDATE SKIP LOCKED),
          claimed AS (
            UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, rate_reserved = false,
              lease_token = ${token}, lease_expires_at = ${now} + ${params.leaseMs}::bigint,
              started_at = COALESCE(j.started_at, ${now}), updated_at = ${now}
            FROM picked WHERE j.id = picked.id RETURNING j.*),
          opened AS (
            INSERT INTO attempts (job_id, attempt, lease_token, outcome, started_at, node)
            SELECT id, attempt, ${token}, 'running', ${now}, ${params.node} FROM claimed)
          SELECT * FROM claimed`;
        return { rows: claimed, deferredUntil: null };
      }
      return this.claimLimited(tx, t, token, params);
    });
    rows.sort(claimOrder);
    const jobs: ClaimedJob[] = rows.map((row) => ({ ...rowToJob(row), leaseToken: token }));
    for (const job of jobs) this.notifier.jobChanged({ jobId: job.id, status: "running" });
    if (deferredUntil !== null) this.notifier.jobScheduled(deferredUntil);
    return { jobs, deferredUntil };
  }

  /** A claim under bucket limits: the admission of src/job/admission.ts, then the claim. */
  private async claimLimited(
    tx: Tx,
    t: number | null,
    token: string,
    params: { limit: number; leaseMs: number; node: string; limits?: LimitResolver },
  ): Promise<{ rows: JobRow[]; deferredUntil: number | null }> {
    const [{ now }] = (await tx`SELECT COALESCE(${t}::bigint, jq_now()) AS now`) as unknown as [
      { now: number },
    ];
    const admission = createAdmission({ now, limit: params.limit, limits: params.limits! });
    while (admission.wantsMore()) {
      const candidates = (
        await tx<Pick<JobRow, "id" | "bucket" | "rate_reserved">[]>`
          SELECT id, bucket, rate_reserved FROM jobs WHERE state = 'available'
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
    const rows = await tx<JobRow[]>`WITH claimed AS (
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
      () => this.sql<{ id: string }[]>`UPDATE jobs
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
    let move: postgres.PendingQuery<postgres.Row[]>;
    switch (next.status) {
      case "succeeded":
      case "failed":
        move = q`UPDATE jobs SET state = ${next.status}, finished_at = ${now},
            updated_at = ${now},
            expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ${now} + ttl_ms END,
            last_error = ${next.status === "failed" ? p.end.error : null}, ${clearLease}
          WHERE ${held} RETURNING bucket, attempt, state`;
        break;
      case "queued":
        move = q`UPDATE jobs SET
            state = CASE WHEN ${next.runAt}::bigint > ${now} THEN 'scheduled' ELSE 'available' END,
            run_at = ${next.runAt}, updated_at = ${now}, last_error = ${p.end.error}, ${clearLease}
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
    const rows = await this.run(
      // `closed` reads `moved`, so the job row is locked before its attempt row, as everywhere.
      () => q`WITH moved AS (${move}),
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
          (SELECT count(*) FROM woke) + (SELECT count(*) FROM scheduled) AS notified`,
    );
    const row = rows[0] as { state: string | null; promoted: boolean } | undefined;
    if (!row?.state) return false;
    const status = next.status === "released" ? "queued" : next.status;
    this.notifier.jobChanged({ jobId: id, status });
    if (row.state === "scheduled") this.notifier.jobScheduled(runAt);
    if (row.state === "available" || row.promoted) this.notifier.jobsAvailable();
    return true;
  }

  async jobRescueExpired({ limit }: { limit: number }): Promise<RescuedJob[]> {
    const t = this.t();
    const rescued = await this.tx(async (tx) => {
      const now = this.nowOf(tx, t);
      const expired = await tx<
        Pick<JobRow, "id" | "lease_token" | "attempt" | "max_attempts" | "bucket">[]
      >`SELECT id, lease_token, attempt, max_attempts, bucket FROM jobs
        WHERE state = 'running' AND lease_expires_at <= ${now}
        LIMIT ${limit} FOR UPDATE SKIP LOCKED`;
      const out: RescuedJob[] = [];
      for (const row of expired) {
        const status = rescuedStatus({ attempt: row.attempt, maxAttempts: row.max_attempts });
        const end = LOST_ATTEMPT;
        await tx`UPDATE attempts SET outcome = ${end.outcome}, finished_at = ${now},
            error_code = ${end.errorCode}, error = ${end.error}, retryable = ${end.retryable}
          WHERE job_id = ${row.id} AND lease_token = ${row.lease_token} AND finished_at IS NULL`;
        if (status === "failed") {
          await tx`UPDATE jobs SET state = 'failed', finished_at = ${now}, updated_at = ${now},
              expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE ${now} + ttl_ms END,
              last_error = ${LOST_ERROR}, lease_token = NULL, lease_expires_at = NULL
            WHERE id = ${row.id}`;
        } else {
          await tx`UPDATE jobs SET state = 'available', run_at = ${now}, updated_at = ${now},
              last_error = ${LOST_ERROR}, lease_token = NULL, lease_expires_at = NULL
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
      if (out.some((r) => r.status === "queued")) {
        await tx`SELECT pg_notify(${this.channel}, ${this.note("a")})`;
      }
      return out;
    });
    for (const r of rescued) this.notifier.jobChanged({ jobId: r.jobId, status: r.status });
    if (rescued.some((r) => r.status === "queued")) this.notifier.jobsAvailable();
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
    const q = this.sql;
    const t = this.t();
    const res = await this.run(
      () => q`DELETE FROM jobs WHERE id IN (SELECT id FROM jobs
        WHERE expires_at <= ${this.nowOf(q, t)} LIMIT ${limit} FOR UPDATE SKIP LOCKED)`,
    );
    return res.count;
  }

  async jobNextExpiry(): Promise<number | null> {
    const [row] = await this.run(
      () => this.sql`SELECT min(expires_at) AS at FROM jobs WHERE expires_at IS NOT NULL`,
    );
    return (row!.at as number | null) ?? null;
  }

  async attemptList({ jobId }: { jobId: string }): Promise<Attempt[]> {
    const rows = await this.run(
      () => this.sql<AttemptRow[]>`SELECT * FROM attempts WHERE job_id = ${jobId} ORDER BY id`,
    );
    return rows.map(rowToAttempt);
  }

  async resultGet({ jobId }: { jobId: string }): Promise<JobResult | null> {
    const [row] = await this.run(
      () => this.sql<ResultRow[]>`SELECT * FROM results WHERE job_id = ${jobId}`,
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
      () => q<AuditRow[]>`SELECT * FROM audit_events WHERE ${and(q, where)}
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
      () => q<NodeRow[]>`SELECT n.*, (l.node IS NOT NULL) AS leader FROM nodes n
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
      WHERE state = 'available' ORDER BY priority DESC, run_at, id LIMIT 10 FOR UPDATE SKIP LOCKED`;
    return rows.map((r) => r["QUERY PLAN"] as string).join("\n");
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      await this.unlisten?.().catch(() => {});
      await this.sql.end({ timeout: 5 });
    })();
    return this.closed;
  }
}

/** Rows per multi-row INSERT (PostgreSQL allows 65,535 parameters a statement). */
const INSERT_CHUNK = 1000;

function storedJob(job: NewJob): Job {
  return {
    ...job,
    status: "queued",
    attempt: 0,
    startedAt: null,
    finishedAt: null,
    expiresAt: null,
    lastError: null,
    updatedAt: job.createdAt,
    leaseExpiresAt: null,
  };
}

function and(q: Query, parts: postgres.PendingQuery<postgres.Row[]>[]) {
  return joinSql(q, parts, q` AND `);
}

function joinSql(
  q: Query,
  parts: postgres.PendingQuery<postgres.Row[]>[],
  separator: postgres.PendingQuery<postgres.Row[]>,
) {
  return parts.reduce((acc, part, i) => (i === 0 ? part : q`${acc}${separator}${part}`));
}

function claimOrder(a: JobRow, b: JobRow): number {
  return b.priority - a.priority || a.run_at - b.run_at || (a.id < b.id ? -1 : 1);
}

/** Error codes of a database that cannot serve now, and how to say so. */
function unavailable(err: unknown, url?: string): StoreUnavailableError | null {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return null;
  const where = url ? ` at ${describeUrl(url)}` : "";
  const detail = (err as Error).message;
  let reason: string | null = null;
  if (
    [
      "ECONNREFUSED",
      "ECONNRESET",
      "ETIMEDOUT",
      "EHOSTUNREACH",
      "ENOTFOUND",
      "EPIPE",
      "CONNECTION_CLOSED",
      "CONNECTION_ENDED",
      "CONNECTION_DESTROYED",
      "CONNECT_TIMEOUT",
    ].includes(code)
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
