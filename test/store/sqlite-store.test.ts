import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import {
  DEFAULT_QUEUE_CLAIM,
  newJob,
  succeededEnd,
  T0,
  type TestClock,
  type TimedStore,
  testClock,
  timed,
} from "./conformance/harness.js";
import { runStoreConformance } from "./conformance/index.js";

const MIGRATIONS_DIR = fileURLToPath(
  new URL("../../src/store/sqlite/migrations/", import.meta.url),
);

runStoreConformance({
  name: "sqlite",
  concurrentNodes: false,
  async createWorld() {
    const dir = await mkdtemp(join(tmpdir(), "jobqueue-store-"));
    const path = join(dir, "jobs.db");
    return {
      open: async (clock) => createSqliteJobStore({ path, clock }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
});

/** A fresh SQLite file in its own temp directory; cleanup closes the store and removes it all. */
async function openSqliteFile() {
  const dir = await mkdtemp(join(tmpdir(), "jobqueue-store-"));
  const path = join(dir, "jobs.db");
  const clock = testClock();
  const commits: number[] = [];
  const raw = createSqliteJobStore({ path, clock, onCommit: (c) => commits.push(c.writes) });
  return {
    store: timed(raw, clock),
    clock,
    path,
    /** The writes of each group commit so far, in order. */
    commits,
    cleanup: async () => {
      await raw.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

describe("sqlite store on a file", () => {
  let world: Awaited<ReturnType<typeof openSqliteFile>>;
  let store: TimedStore;
  let clock: TestClock;
  // Second connections opened by a test, closed after it.
  const peers: Database.Database[] = [];

  function peer(): Database.Database {
    const db = new Database(world.path);
    peers.push(db);
    return db;
  }

  beforeEach(async () => {
    world = await openSqliteFile();
    store = world.store;
    clock = world.clock;
  });

  afterEach(async () => {
    for (const db of peers.splice(0)) db.close();
    await store.close();
    await world.cleanup();
  });

  it("commits concurrent writes together, and one failing write does not undo the others", async () => {
    const reader = peer();
    // data_version changes when another connection commits: it counts the store's transactions.
    const version = () => reader.pragma("data_version", { simple: true }) as number;
    const before = version();
    const jobs = Array.from({ length: 50 }, () => newJob());
    const duplicate = { ...jobs[0]! }; // the same id again: a primary key violation
    const writes = [...jobs.map((j) => store.jobInsert(j)), store.jobInsert(duplicate)];
    const settled = await Promise.allSettled(writes);
    expect(settled.slice(0, 50).every((r) => r.status === "fulfilled")).toBe(true);
    expect(settled[50]!.status).toBe("rejected");
    // Every acknowledged job is committed: another connection sees all 50, and only once each.
    const n = reader.prepare("SELECT COUNT(*) AS n FROM jobs").get() as { n: number };
    expect(n.n).toBe(50);
    // ...in one transaction (one fsync), not 50.
    expect(version() - before).toBe(1);
  });

  it("runs a claim after the other writes of its commit, so it sees jobs enqueued after it was asked for", async () => {
    const reader = peer();
    const version = () => reader.pragma("data_version", { simple: true }) as number;
    const before = version();
    const job = newJob();
    // As a worker pool's claim, queued while the previous commit is fsynced, and an enqueue that
    // arrives after it: the claim takes the job in the same commit.
    const claim = store.jobClaim({
      queues: DEFAULT_QUEUE_CLAIM,
      limit: 10,
      leaseMs: 30_000,
      node: "w1",
    });
    const insert = store.jobInsert(job);
    const [claimed] = await Promise.all([claim, insert]);
    expect(claimed.jobs.map((j) => j.id)).toEqual([job.id]);
    expect(version() - before).toBe(1);
  });

  it("lets no read see a write before the write is reported durable", async () => {
    const job = newJob();
    const order: string[] = [];
    const write = store.jobInsert(job).then(() => order.push("write"));
    // The group commit runs in this check phase; its fsync is then in flight on the thread pool.
    await new Promise((resolve) => setImmediate(resolve));
    const read = store.jobGet({ id: job.id, now: T0 }).then((found) => {
      order.push("read");
      return found;
    });
    const [, found] = await Promise.all([write, read]);
    expect(found?.id).toBe(job.id);
    expect(order).toEqual(["write", "read"]);
  });

  it("has reads wait for an fsync under way without committing and syncing again", async () => {
    const job = newJob();
    const write = store.jobInsert(job);
    // The group commit runs in this check phase; its fsync is then in flight on the thread pool.
    await new Promise((resolve) => setImmediate(resolve));
    const reads = Array.from({ length: 5 }, () => store.jobGet({ id: job.id, now: T0 }));
    const found = await Promise.all(reads);
    await write;
    expect(found.map((j) => j?.id)).toEqual(Array(5).fill(job.id));
    // One commit, the insert's: the reads added none (an empty commit would be a second fsync).
    expect(world.commits).toEqual([1]);
    // A read queued behind a write that is not yet committed joins that write's commit.
    const next = newJob();
    const [, again] = await Promise.all([
      store.jobInsert(next),
      store.jobGet({ id: next.id, now: T0 }),
    ]);
    expect(again?.id).toBe(next.id);
    expect(world.commits).toEqual([1, 2]);
  });

  it("commits and syncs the writes it accepted before it closes", async () => {
    const jobs = Array.from({ length: 20 }, () => newJob());
    const writes = jobs.map((j) => store.jobInsert(j));
    await store.close();
    await expect(Promise.all(writes)).resolves.toHaveLength(20);
    const n = peer().prepare("SELECT COUNT(*) AS n FROM jobs").get() as { n: number };
    expect(n.n).toBe(20);
    await expect(store.jobInsert(newJob())).rejects.toThrow(/closed/);
  });

  it("claims, promotes, rescues and lists a page through indexes, never sorting or scanning the table", () => {
    const plans = (
      store as unknown as { explainHotQueries(): Record<string, string[]> }
    ).explainHotQueries();
    for (const [name, lines] of Object.entries(plans)) {
      // A full scan of the jobs table reads "SCAN jobs" / "SCAN j" without an index.
      for (const line of lines) {
        expect(/^SCAN (jobs|j)\b(?!.*INDEX)/.test(line), `${name}: ${line}`).toBe(false);
      }
      // Only the merge of per-status pages (a page each) may sort, and only after "MERGE".
      if (name !== "listByStatus") {
        expect(
          lines.some((l) => l.includes("TEMP B-TREE")),
          `${name}: ${lines.join(" | ")}`,
        ).toBe(false);
      }
    }
    expect(plans.claim!.join(" ")).toContain("jobs_claim");
    expect(plans.listByTag![0]).toMatch(/^SEARCH t USING PRIMARY KEY \(tag=\?\)/);
    expect(
      plans.listByStatus!.filter((l) => l.startsWith("SEARCH j USING INDEX jobs_state")),
    ).toHaveLength(4);
  });

  it("fires its triggers without building a temporary b-tree on each row a claim or finish changes", () => {
    // EXPLAIN lists the programs of the triggers an UPDATE fires after its own, each opening with
    // "-- TRIGGER <name>". `x IN ('a', 'b', 'c')` in a trigger would open an ephemeral table there
    // (rebuilt on every row the trigger fires for), as 003's and 007's triggers did.
    for (const state of ["running", "succeeded", "failed", "canceled", "available", "scheduled"]) {
      const ops = peer()
        .prepare(`EXPLAIN UPDATE jobs SET state = '${state}' WHERE id = 'j'`)
        .all() as { opcode: string; p4: unknown }[];
      let trigger: string | null = null;
      const triggers = new Set<string>();
      for (const op of ops) {
        const name = /^-- TRIGGER (\w+)/.exec(String(op.p4 ?? ""))?.[1];
        if (op.opcode === "Init" && name) {
          trigger = name;
          triggers.add(name);
        }
        if (trigger !== null) {
          expect(op.opcode, `${state}: trigger ${trigger}`).not.toBe("OpenEphemeral");
        }
      }
      expect([...triggers]).toEqual(expect.arrayContaining(["jobs_ended", "job_event_changed"]));
    }
  });

  it("checks a job's state, an attempt's outcome and a result's encoding without building a temporary b-tree", () => {
    const db = peer();
    const programs = {
      "insert a job": `INSERT INTO jobs (id, state, run_at, created_at, updated_at, max_attempts,
        method, url, headers, secret_header_names, params, tags, timeout_ms, backoff_strategy,
        backoff_base_ms, max_redirects, bucket)
        VALUES ('j', 'available', 0, 0, 0, 1, 'GET', 'u', '{}', '[]', '{}', '[]', 1, 'fixed', 1, 5,
        'b')`,
      "change a state": "UPDATE jobs SET state = 'running' WHERE id = 'j'",
      "insert an attempt": `INSERT INTO attempts (job_id, attempt, lease_token, outcome, started_at)
        VALUES ('j', 1, 't', 'running', 0)`,
      "end an attempt": "UPDATE attempts SET outcome = 'succeeded' WHERE id = 1",
      "insert a result": `INSERT INTO results (job_id, attempt, body_encoding, duration_ms, finished_at)
        VALUES ('j', 1, 'json', 1, 0)`,
    };
    for (const [what, sql] of Object.entries(programs)) {
      const ops = db.prepare(`EXPLAIN ${sql}`).all() as { opcode: string }[];
      expect(
        ops.filter((op) => op.opcode === "OpenEphemeral"),
        what,
      ).toEqual([]);
    }
    // The constraints still hold.
    expect(() =>
      db.prepare(programs["insert a job"].replace("'available'", "'done'")).run(),
    ).toThrow(/CHECK constraint failed/);
    db.prepare(programs["insert a job"]).run();
    expect(() => db.prepare("UPDATE jobs SET state = 'gone' WHERE id = 'j'").run()).toThrow(
      /CHECK constraint failed/,
    );
    expect(() =>
      db.prepare(programs["insert an attempt"].replace("'running'", "'maybe'")).run(),
    ).toThrow(/CHECK constraint failed/);
    expect(() => db.prepare(programs["insert a result"].replace("'json'", "'xml'")).run()).toThrow(
      /CHECK constraint failed/,
    );
  });

  it("upgrades a file made by the migrations before 009 in place, keeping its rows", async () => {
    // Rows as the store writes them: a finished job with its attempt and result.
    const job = newJob({ tags: ["t"] });
    await store.jobInsert(job);
    const [claimed] = (
      await store.jobClaim({ queues: DEFAULT_QUEUE_CLAIM, limit: 1, leaseMs: 30_000, node: "w1" })
    ).jobs;
    await store.jobFinishAttempt({
      lease: { jobId: job.id, token: claimed!.leaseToken },
      end: succeededEnd(10),
      next: { status: "succeeded" },
      result: { response: null, error: null, durationMs: 10 },
    });
    const tables = ["jobs", "job_tags", "attempts", "results"];
    const rowsOf = (db: Database.Database) =>
      Object.fromEntries(tables.map((t) => [t, db.prepare(`SELECT * FROM ${t}`).all()]));
    const rows = rowsOf(peer());
    expect(rows.results).toHaveLength(1);

    // The same rows in a file at version 8, made by the migration files as the store applies them.
    const dir = await mkdtemp(join(tmpdir(), "jobqueue-upgrade-"));
    const path = join(dir, "jobs.db");
    try {
      const old = new Database(path);
      old.pragma("journal_mode = WAL");
      old.exec(`CREATE TABLE schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
      for (const file of readdirSync(MIGRATIONS_DIR).sort()) {
        const version = Number.parseInt(file, 10);
        if (!(version <= 8)) continue;
        old.exec(readFileSync(join(MIGRATIONS_DIR, file), "utf8"));
        old.prepare("INSERT INTO schema_migrations VALUES (?, ?, 0)").run(version, file);
      }
      for (const table of tables) {
        for (const row of rows[table] as Record<string, unknown>[]) {
          const names = Object.keys(row);
          old
            .prepare(
              `INSERT INTO ${table} (${names.join(", ")}) VALUES (${names.map((n) => `@${n}`).join(", ")})`,
            )
            .run(row);
        }
      }
      const before = rowsOf(old);
      const ephemeral = () =>
        old
          .prepare("EXPLAIN UPDATE jobs SET state = 'running' WHERE id = 'x'")
          .all()
          .some((op) => (op as { opcode: string }).opcode === "OpenEphemeral");
      expect(ephemeral()).toBe(true);

      const upgraded = createSqliteJobStore({ path, clock });
      try {
        expect((await upgraded.jobGet({ id: job.id }))?.status).toBe("succeeded");
        expect((await upgraded.resultGet({ jobId: job.id }))?.durationMs).toBe(10);
      } finally {
        await upgraded.close();
      }
      // Every row is as it was, and the connection open across the upgrade, once it reads again,
      // has the new definitions (the schema's version changed).
      expect(rowsOf(old)).toEqual(before);
      expect(ephemeral()).toBe(false);
      expect(old.pragma("integrity_check", { simple: true })).toBe("ok");
      expect(old.prepare("SELECT max(version) FROM schema_migrations").pluck().get()).toBe(9);
      for (const table of ["jobs", "attempts", "results"]) {
        const sql = old
          .prepare("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?")
          .pluck()
          .get(table) as string;
        expect(sql, table).not.toMatch(/CHECK \((state|outcome|body_encoding) IN/);
      }
      old.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("puts the file in WAL mode", () => {
    expect(peer().pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("records every migration in schema_migrations", () => {
    const files = readdirSync(MIGRATIONS_DIR)
      .filter((f) => /^\d+_.+\.sql$/.test(f))
      .sort();
    expect(files.length).toBeGreaterThan(0);
    const rows = peer()
      .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
      .all() as { version: number; name: string }[];
    expect(rows).toEqual(files.map((name) => ({ version: Number.parseInt(name, 10), name })));
  });

  it("reopening an existing file keeps the data and does not re-apply migrations", async () => {
    const job = newJob({ tags: ["keep"], idempotencyKey: "reopen" });
    await store.jobInsert(job);
    const [claimed] = (
      await store.jobClaim({
        queues: DEFAULT_QUEUE_CLAIM,
        now: T0 + 10,
        limit: 1,
        leaseMs: 1_000,
        node: "w1",
      })
    ).jobs;
    expect(claimed?.id).toBe(job.id);
    const migrationsBefore = peer().prepare("SELECT * FROM schema_migrations").all();
    await store.close();

    store = timed(createSqliteJobStore({ path: world.path, clock }), clock);
    // A re-run of 001_init.sql would have failed (CREATE TABLE jobs) or wiped the data.
    expect(peer().prepare("SELECT * FROM schema_migrations").all()).toEqual(migrationsBefore);
    const reopened = await store.jobGet({ id: job.id, now: T0 + 20 });
    expect(reopened).toMatchObject({ status: "running", attempt: 1, tags: ["keep"] });
    expect(await store.attemptList({ jobId: job.id })).toHaveLength(1);
    const dup = await store.jobInsert(newJob({ idempotencyKey: "reopen", createdAt: T0 + 20 }));
    expect(dup.inserted).toBe(false);
    expect(dup.job.id).toBe(job.id);
    // The lease survives the restart: it is rescued at its expiry, not before.
    expect(await store.jobRescueExpired({ now: T0 + 1_009, limit: 10 })).toEqual([]);
    expect(await store.jobRescueExpired({ now: T0 + 1_010, limit: 10 })).toEqual([
      { jobId: job.id, status: "queued" },
    ]);
    expect(peer().pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("a job is committed before jobInsert resolves: another connection sees it at once", async () => {
    const reader = peer();
    const byId = reader.prepare("SELECT state AS status, attempt FROM jobs WHERE id = ?");
    const job = newJob();
    expect(byId.get(job.id)).toBeUndefined();

    await store.jobInsert(job);
    expect(byId.get(job.id)).toEqual({ status: "available", attempt: 0 });

    const [claimed] = (
      await store.jobClaim({
        queues: DEFAULT_QUEUE_CLAIM,
        now: T0,
        limit: 1,
        leaseMs: 1_000,
        node: "w1",
      })
    ).jobs;
    expect(byId.get(job.id)).toEqual({ status: "running", attempt: 1 });
    await store.jobFinishAttempt({
      lease: { jobId: job.id, token: claimed!.leaseToken },
      now: T0 + 10,
      end: {
        outcome: "succeeded",
        responseStatus: 200,
        errorCode: null,
        error: null,
        retryable: false,
        durationMs: 10,
      },
      next: { status: "succeeded" },
      result: null,
    });
    expect(byId.get(job.id)).toEqual({ status: "succeeded", attempt: 1 });
    expect(
      reader.prepare("SELECT outcome FROM attempts WHERE job_id = ?").pluck().all(job.id),
    ).toEqual(["succeeded"]);
  });

  it("deleting expired jobs, or replacing one by its idempotency key, leaves no orphan rows", async () => {
    const counts = () =>
      Object.fromEntries(
        ["jobs", "job_tags", "attempts", "results"].map((t) => [
          t,
          peer().prepare(`SELECT count(*) FROM ${t}`).pluck().get(),
        ]),
      );
    for (const key of ["a", "b"]) {
      await store.jobInsert(newJob({ tags: ["t1", "t2"], ttlMs: 100, idempotencyKey: key }));
      const [claimed] = (
        await store.jobClaim({
          queues: DEFAULT_QUEUE_CLAIM,
          now: T0,
          limit: 1,
          leaseMs: 1_000,
          node: "w",
        })
      ).jobs;
      await store.jobFinishAttempt({
        lease: { jobId: claimed!.id, token: claimed!.leaseToken },
        now: T0 + 10,
        end: {
          outcome: "failed",
          responseStatus: 500,
          errorCode: "http_status",
          error: "500",
          retryable: false,
          durationMs: 10,
        },
        next: { status: "failed" },
        result: { response: null, error: "500", durationMs: 10 },
      });
    }
    expect(counts()).toEqual({ jobs: 2, job_tags: 4, attempts: 2, results: 2 });

    // Key "a" expired at T0 + 110: a new job with it replaces the old one and its rows.
    const fresh = await store.jobInsert(newJob({ idempotencyKey: "a", createdAt: T0 + 110 }));
    expect(fresh.inserted).toBe(true);
    expect(counts()).toEqual({ jobs: 2, job_tags: 2, attempts: 1, results: 1 });

    expect(await store.jobDeleteExpired({ now: T0 + 110, limit: 10 })).toBe(1);
    expect(counts()).toEqual({ jobs: 1, job_tags: 0, attempts: 0, results: 0 });
  });

  it("close is idempotent", async () => {
    await store.close();
    await expect(store.close()).resolves.toBeUndefined();
  });
});

describe("sqlite store statements", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it("binds no LIMIT as a bare parameter, which makes SQLite prepare the statement again on every run", async () => {
    // SQLite (3.53 here) plans with a LIMIT's bound value and so marks a statement whose LIMIT is a
    // lone parameter to be prepared again whenever that parameter is bound: better-sqlite3 binds
    // on every run, so each run was a parse and a plan (an empty list page 29 µs against 6).
    // `LIMIT ? + 0` is an expression, read at run time. Every statement the store prepares while
    // it opens and while it serves the calls below is checked.
    const prepared: string[] = [];
    const prepare = Database.prototype.prepare;
    vi.spyOn(Database.prototype, "prepare").mockImplementation(function (
      this: Database.Database,
      sql: string,
    ) {
      prepared.push(sql);
      return prepare.call(this, sql);
    });
    const world = await openSqliteFile();
    try {
      const { store } = world;
      const job = newJob({ tags: ["a", "b"] });
      await store.jobInsert(job);
      await store.jobPromoteScheduled({ limit: 10 });
      const { jobs } = await store.jobClaim({
        queues: DEFAULT_QUEUE_CLAIM,
        limit: 5,
        leaseMs: 30_000,
        node: "w1",
      });
      await store.jobRescueExpired({ limit: 10 });
      await store.jobPromoteWaiting({ limit: 10 });
      await store.jobDeleteExpired({ limit: 10 });
      for (const filter of [
        {},
        { statuses: ["running" as const, "queued" as const] },
        { tags: ["a", "b"] },
        { queue: "default" },
        { host: "example.com" },
        { statuses: ["succeeded" as const], finishedAfter: T0 },
        { jobIds: [job.id] },
      ]) {
        await store.jobList({ ...filter, limit: 50 });
        await store.jobCount({ filter, cap: 1000 });
      }
      expect(jobs).toHaveLength(1);
      await store.eventList({ after: null, limit: 10 });
      await store.eventDeleteBefore({ before: T0, limit: 10 });
      await store.auditList({ limit: 10, action: "CancelJob" });
      await store.auditDeleteBefore({ before: T0, limit: 10 });
      await store.statsGroups({ by: "host", limit: 10, scanCap: 100 });
      await store.statsGroups({ by: "tag", limit: 10, scanCap: 100 });
      await store.statsDurations({ sinceMs: T0 - 60_000, limit: 10 });
      await store.jobStats({ cap: 100 });
      await store.scheduleList({ limit: 10 });
      await store.scheduleDue({ dueBy: T0, limit: 10 });
      await store.operationList({ limit: 10 });
    } finally {
      await world.cleanup();
    }
    const limits = prepared.filter((sql) => /\bLIMIT\b/i.test(sql));
    // The calls above reach the store's LIMITs: the list walks, claims, promotions, clean-ups.
    expect(limits.length).toBeGreaterThan(15);
    for (const sql of limits) {
      expect(sql, sql).not.toMatch(/\bLIMIT\s+[?@:$]\w*(?!\w)(?!\s*\+)/i);
    }
  });
});
