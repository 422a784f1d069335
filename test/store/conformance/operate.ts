import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../../src/audit/audit-event.js";
import type { Operation, OperationKind } from "../../../src/job/operations.js";
import type { QueueSettings } from "../../../src/job/queues.js";
import {
  DEFAULT_QUEUE_CLAIM,
  httpFailedEnd,
  LEASE_MS,
  newJob,
  responseResult,
  type StoreTest,
  succeededEnd,
  T0,
} from "./harness.js";

function queue(name: string, overrides: Partial<QueueSettings> = {}) {
  return {
    name,
    concurrency: null,
    rate: null,
    maxAttempts: null,
    backoffStrategy: null,
    backoffBaseMs: null,
    ttlMs: null,
    paused: false,
    ...overrides,
  };
}

const auditOf =
  (action: string) =>
  (op: Operation): AuditEvent => ({
    at: op.updatedAt,
    principal: op.principal,
    action,
    jobId: null,
    remoteAddress: null,
    protocol: "internal",
    outcome: "ok",
    detail: JSON.stringify({ operation_id: op.id, affected: op.affected }),
  });

/** Operator actions: retry, delete, counting, bulk operations, queues and statistics. */
export function operateTests(t: StoreTest): void {
  const { insert, claimOne, finish, get } = t;

  /** A job that failed its only attempt at `at`. */
  async function failed(overrides: Parameters<StoreTest["insert"]>[0] = {}, at = T0 + 10) {
    const job = await insert({ maxAttempts: 1, ...overrides });
    const claimed = await claimOne(at);
    expect(claimed.id).toBe(job.id);
    expect(await finish(claimed, at + 5, { status: "failed" }, httpFailedEnd(500, false))).toBe(
      true,
    );
    return job;
  }

  describe("retry and delete", () => {
    it("retries a failed job on its id: attempts keep counting, the cap rises by one, the history stays", async () => {
      const job = await failed();
      expect((await get(job.id, T0 + 20)).lastErrorCode).toBe("http_status");
      const res = await t.store.jobRetry({ id: job.id, overrides: null, now: T0 + 100 });
      expect(res).toMatchObject({
        kind: "retried",
        job: { id: job.id, status: "queued", attempt: 1, maxAttempts: 2, finishedAt: null },
      });
      const again = await claimOne(T0 + 100);
      expect(again).toMatchObject({ id: job.id, attempt: 2 });
      const attempts = await t.store.attemptList({ jobId: job.id });
      expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
        [1, "failed"],
        [2, "running"],
      ]);
    });

    it("takes overrides: a new cap above the attempts made, and a later run time", async () => {
      const job = await failed();
      await expect(
        t.store.jobRetry({ id: job.id, overrides: { maxAttempts: 1 }, now: T0 + 100 }),
      ).rejects.toMatchObject({ name: "InvalidArgumentError", field: "max_attempts" });
      const res = await t.store.jobRetry({
        id: job.id,
        overrides: { maxAttempts: 5, scheduledAt: T0 + 5_000 },
        now: T0 + 100,
      });
      expect(res).toMatchObject({ kind: "retried", job: { maxAttempts: 5, runAt: T0 + 5_000 } });
      expect(await t.claim(T0 + 4_999)).toEqual([]);
      expect((await t.claim(T0 + 5_000)).map((j) => j.id)).toEqual([job.id]);
    });

    it("refuses a job that is not failed or canceled, and one of another owner", async () => {
      const job = await failed({ owner: "ada" });
      const queued = await insert({ owner: "ada", createdAt: T0 + 20 });
      expect(
        await t.store.jobRetry({ id: queued.id, overrides: null, now: T0 + 30 }),
      ).toMatchObject({
        kind: "not-retryable",
        job: { status: "queued" },
      });
      expect(
        await t.store.jobRetry({ id: job.id, ownedBy: "bob", overrides: null, now: T0 + 50 }),
      ).toEqual({ kind: "not-found" });
    });

    it("deletes a finished job with its attempts and result; an unfinished one is not-finished", async () => {
      const running = await insert();
      await claimOne(T0 + 1);
      expect(await t.store.jobDelete({ id: running.id, now: T0 + 2 })).toMatchObject({
        kind: "not-finished",
      });
      const job = await failed({ createdAt: T0 + 3 }, T0 + 10);
      expect(await t.store.jobDelete({ id: job.id, now: T0 + 30 })).toEqual({ kind: "deleted" });
      expect(await t.store.jobGet({ id: job.id, now: T0 + 30 })).toBeNull();
      expect(await t.store.attemptList({ jobId: job.id })).toEqual([]);
      expect(await t.store.resultGet({ jobId: job.id })).toBeNull();
      expect(await t.store.jobDelete({ id: job.id, now: T0 + 30 })).toEqual({ kind: "not-found" });
    });
  });

  describe("counts", () => {
    it("counts by queue and status match the jobs after a mixed workload", async () => {
      await t.store.queueCreate(queue("mail"));
      await t.store.jobInsertMany([
        newJob(),
        newJob(),
        newJob({ queue: "mail" }),
        newJob({ scheduledAt: T0 + 60_000 }),
      ]);
      const [a, b] = await t.claim(T0 + 1, 2);
      await finish(a!, T0 + 2, { status: "succeeded" }, succeededEnd());
      await finish(b!, T0 + 3, { status: "queued", runAt: T0 + 10_000 }, httpFailedEnd(503, true));
      const canceled = await insert({ queue: "mail", createdAt: T0 + 4 });
      await t.store.jobCancel({ id: canceled.id, now: T0 + 5 });
      const gone = await insert({ ttlMs: 1, createdAt: T0 + 6 });
      await t.store.jobCancel({ id: gone.id, now: T0 + 7 });
      await t.store.jobDeleteExpired({ limit: 10, now: T0 + 100 });
      await t.store.statsCompact({ keepMinutes: 60, now: T0 + 100 });

      const counts = await t.store.statsCounts();
      expect(counts).toEqual([
        {
          queue: "default",
          counts: { queued: 2, running: 0, succeeded: 1, failed: 0, canceled: 0 },
        },
        { queue: "mail", counts: { queued: 1, running: 0, succeeded: 0, failed: 0, canceled: 1 } },
      ]);
      // The same as listing them.
      for (const { queue: name, counts: byStatus } of counts) {
        for (const [status, n] of Object.entries(byStatus)) {
          const { jobs } = await t.store.jobList({
            queue: name,
            statuses: [status as "queued"],
            limit: 100,
            now: T0 + 100,
          });
          expect(jobs.length, `${name} ${status}`).toBe(n);
        }
      }
    });

    it("counts jobs ended per minute, and forgets minutes older than kept", async () => {
      const m = Math.floor(T0 / 60_000);
      await t.store.jobInsertMany([newJob(), newJob(), newJob()]);
      const [a, b] = await t.claim(T0 + 1, 2);
      await finish(a!, T0 + 2, { status: "succeeded" });
      await finish(b!, T0 + 60_000, { status: "failed" }, httpFailedEnd(400, false));
      const rows = await t.store.statsThroughput({ sinceMinute: m });
      expect(rows.map((r) => [r.minute - m, r.queue, r.status, r.count])).toEqual([
        [0, "default", "succeeded", 1],
        [1, "default", "failed", 1],
      ]);
      await t.store.statsCompact({ keepMinutes: 0, now: T0 + 60_000 });
      expect((await t.store.statsThroughput({ sinceMinute: m })).map((r) => r.status)).toEqual([
        "failed",
      ]);
    });

    it("reads the call durations of the latest jobs that ended, with their hosts", async () => {
      await t.store.queueCreate(queue("emails"));
      await t.store.jobInsertMany([
        newJob({ host: "a.test" }),
        newJob({ host: "b.test" }),
        newJob({ host: "a.test", queue: "emails" }),
        newJob({ host: "c.test" }),
        newJob({ host: "d.test" }),
      ]);
      const { jobs: claimed } = await t.store.jobClaim({
        queues: [
          { name: "emails", limit: 10, rate: null },
          { name: "default", limit: 10, rate: null },
        ],
        limit: 10,
        leaseMs: LEASE_MS,
        node: "n",
        now: T0 + 1,
      });
      expect(claimed).toHaveLength(5);
      const byHost = (host: string, queueName = "default") =>
        claimed.find((c) => c.host === host && c.queue === queueName)!;
      const end = async (
        job: (typeof claimed)[number],
        at: number,
        status: "succeeded" | "failed",
        durationMs: number,
      ) => {
        const result = { ...responseResult(job, at), durationMs };
        const attempt =
          status === "succeeded" ? succeededEnd(durationMs) : httpFailedEnd(500, false);
        await finish(job, at, { status }, { ...attempt, durationMs }, result);
      };
      await end(byHost("a.test"), T0 + 10, "succeeded", 100);
      await end(byHost("b.test"), T0 + 20, "failed", 900);
      await end(byHost("a.test", "emails"), T0 + 30, "succeeded", 300);
      // Before the window: left out.
      await end(byHost("d.test"), T0 + 2, "succeeded", 5);
      // Still running (no result) or canceled: not a call that ended.
      await t.store.jobCancel({ id: byHost("c.test").id });

      const sorted = (rows: { host: string; durationMs: number; finishedAt: number }[]) =>
        rows.map((r) => [r.host, r.durationMs, r.finishedAt]).sort();
      expect(sorted(await t.store.statsDurations({ sinceMs: T0 + 5, limit: 100 }))).toEqual([
        ["a.test", 100, T0 + 10],
        ["a.test", 300, T0 + 30],
        ["b.test", 900, T0 + 20],
      ]);
      expect(
        sorted(await t.store.statsDurations({ sinceMs: T0 + 5, queue: "emails", limit: 100 })),
      ).toEqual([["a.test", 300, T0 + 30]]);
      // At most `limit` of each status, the newest.
      expect(sorted(await t.store.statsDurations({ sinceMs: T0 + 5, limit: 1 }))).toEqual([
        ["a.test", 300, T0 + 30],
        ["b.test", 900, T0 + 20],
      ]);
    });

    it("counts active jobs by host and by tag, and how many calls are in flight per queue", async () => {
      await t.store.jobInsertMany([
        newJob({ host: "a.test", tags: ["x", "y"] }),
        newJob({ host: "a.test", tags: ["x"] }),
        newJob({ host: "b.test" }),
      ]);
      await t.claim(T0 + 1, 1);
      const byHost = await t.store.statsGroups({ by: "host", limit: 10, scanCap: 1000 });
      expect(byHost).toEqual({
        groups: [
          { key: "a.test", queued: 1, running: 1 },
          { key: "b.test", queued: 1, running: 0 },
        ],
        capped: false,
      });
      const byTag = await t.store.statsGroups({ by: "tag", limit: 1, scanCap: 1000 });
      expect(byTag.groups).toEqual([{ key: "x", queued: 1, running: 1 }]);
      expect((await t.store.statsGroups({ by: "host", limit: 10, scanCap: 2 })).capped).toBe(true);
      const [activity] = await t.store.statsActivity({ queue: "default", now: T0 + 1 });
      expect(activity).toMatchObject({ queue: "default", running: 1, oldestQueuedAt: T0 });
    });

    it("counts what a filter matches, up to a cap", async () => {
      for (let i = 0; i < 5; i++) await insert({ createdAt: T0 + i, tags: ["t"] });
      expect(await t.store.jobCount({ filter: { tags: ["t"] }, cap: 10, now: T0 + 10 })).toEqual({
        count: 5,
        capped: false,
      });
      expect(await t.store.jobCount({ filter: { tags: ["t"] }, cap: 3, now: T0 + 10 })).toEqual({
        count: 3,
        capped: true,
      });
      // A condition checked row by row looks at cap + 1 jobs at most: none of 4 of the 5 matched,
      // so 0 is all it can say, and it says it is not the whole count.
      expect(
        await t.store.jobCount({ filter: { urlContains: "nowhere" }, cap: 3, now: T0 + 10 }),
      ).toEqual({ count: 0, capped: true });
      expect(
        await t.store.jobCount({ filter: { urlContains: "nowhere" }, cap: 10, now: T0 + 10 }),
      ).toEqual({ count: 0, capped: false });
    });
  });

  describe("queues", () => {
    it("creates, reads, updates and lists queues; a name is taken once; default always exists", async () => {
      expect((await t.store.queueList()).map((q) => q.name)).toEqual(["default"]);
      expect(
        await t.store.queueCreate(
          queue("mail", { concurrency: 2, rate: { intervalMs: 100, burst: 3 } }),
        ),
      ).toBe(true);
      expect(await t.store.queueCreate(queue("mail"))).toBe(false);
      expect(await t.store.queueGet({ name: "mail" })).toMatchObject({
        name: "mail",
        concurrency: 2,
        rate: { intervalMs: 100, burst: 3 },
        paused: false,
      });
      expect(await t.store.queueUpdate(queue("mail", { paused: true, maxAttempts: 9 }))).toBe(true);
      expect(await t.store.queueGet({ name: "mail" })).toMatchObject({
        concurrency: null,
        rate: null,
        maxAttempts: 9,
        paused: true,
      });
      expect(await t.store.queueUpdate(queue("nope"))).toBe(false);
      expect((await t.store.queueList()).map((q) => q.name)).toEqual(["default", "mail"]);
    });

    it("refuses a job for a queue that does not exist", async () => {
      await expect(t.store.jobInsert(newJob({ queue: "ghost" }))).rejects.toMatchObject({
        name: "QueueNotFoundError",
        queue: "ghost",
      });
    });

    it("deletes a queue only without queued or running jobs; never default", async () => {
      await t.store.queueCreate(queue("mail"));
      const job = await insert({ queue: "mail" });
      expect(await t.store.queueDelete({ name: "mail" })).toBe("not-empty");
      await t.store.jobCancel({ id: job.id, now: T0 + 1 });
      expect(await t.store.queueDelete({ name: "mail" })).toBe("deleted");
      expect(await t.store.queueDelete({ name: "mail" })).toBe("not-found");
      expect(await t.store.queueDelete({ name: "default" })).toBe("not-empty");
    });

    it("does not retry a job whose queue was deleted: it would wait in no queue", async () => {
      await t.store.queueCreate(queue("gone"));
      const job = await insert({ queue: "gone", tags: ["gone"] });
      await t.store.jobCancel({ id: job.id, now: T0 + 1 });
      expect(await t.store.queueDelete({ name: "gone" })).toBe("deleted");
      await expect(
        t.store.jobRetry({ id: job.id, overrides: null, now: T0 + 2 }),
      ).rejects.toMatchObject({ name: "QueueNotFoundError", queue: "gone" });
      const op: Operation = {
        id: `op_${"0".repeat(25)}1`,
        kind: "retry",
        filter: { tags: ["gone"] },
        overrides: null,
        owner: null,
        principal: null,
        state: "running",
        estimate: 1,
        estimateCapped: false,
        examined: 0,
        affected: 0,
        upperId: `j_${"Z".repeat(26)}`,
        cursor: null,
        error: null,
        createdAt: T0 + 3,
        updatedAt: T0 + 3,
        finishedAt: null,
      };
      await t.store.operationCreate(op);
      const step = { id: op.id, batch: 10, scan: 100, audit: auditOf("Bulk"), now: T0 + 4 };
      expect(await t.store.operationStep(step)).toMatchObject({
        state: "succeeded",
        examined: 1,
        affected: 0,
      });
      expect((await get(job.id, T0 + 5)).status).toBe("canceled");
      // Created again, the queue takes it back.
      await t.store.queueCreate(queue("gone"));
      expect(await t.store.jobRetry({ id: job.id, overrides: null, now: T0 + 6 })).toMatchObject({
        kind: "retried",
        job: { status: "queued", queue: "gone" },
      });
    });

    it("claims from the queues given, each up to its own limit", async () => {
      await t.store.queueCreate(queue("mail"));
      await t.store.jobInsertMany([
        newJob(),
        newJob(),
        newJob({ queue: "mail" }),
        newJob({ queue: "mail" }),
      ]);
      const claimed = await t.store.jobClaim({
        queues: [
          { name: "mail", limit: 1, rate: null },
          { name: "default", limit: 5, rate: null },
        ],
        limit: 2,
        leaseMs: LEASE_MS,
        node: "n",
        now: T0 + 1,
      });
      expect(claimed.jobs.map((j) => j.queue)).toEqual(["mail", "default"]);
      // A queue not given is not claimed from (a paused one, say).
      const onlyDefault = await t.store.jobClaim({
        queues: DEFAULT_QUEUE_CLAIM,
        limit: 10,
        leaseMs: LEASE_MS,
        node: "n",
        now: T0 + 2,
      });
      expect(onlyDefault.jobs.map((j) => j.queue)).toEqual(["default"]);
    });

    it("a queue's rate holds across claims: the budget is spent, then the next slot says when", async () => {
      await t.store.queueCreate(queue("slow"));
      await t.store.jobInsertMany(Array.from({ length: 4 }, () => newJob({ queue: "slow" })));
      const rate = { intervalMs: 1_000, burst: 2 };
      const claim = (now: number) =>
        t.store.jobClaim({
          queues: [{ name: "slow", limit: 10, rate }],
          limit: 10,
          leaseMs: LEASE_MS,
          node: "n",
          now,
        });
      const first = await claim(T0);
      expect(first.jobs).toHaveLength(2);
      expect(first.deferredUntil).toBe(T0 + 1_000);
      expect((await claim(T0 + 999)).jobs).toHaveLength(0);
      expect((await claim(T0 + 1_000)).jobs).toHaveLength(1);
      expect((await claim(T0 + 1_500)).jobs).toHaveLength(0);
      expect((await claim(T0 + 2_000)).jobs).toHaveLength(1);
    });
  });

  describe("operations", () => {
    async function run(kind: OperationKind, filter: Operation["filter"], now: number, batch = 2) {
      const op: Operation = {
        id: `op_${String(now).padStart(26, "0")}`,
        kind,
        filter,
        overrides: null,
        owner: null,
        principal: "ada",
        state: "running",
        estimate: 0,
        estimateCapped: false,
        examined: 0,
        affected: 0,
        upperId: `j_${"Z".repeat(26)}`,
        cursor: null,
        error: null,
        createdAt: now,
        updatedAt: now,
        finishedAt: null,
      };
      await t.store.operationCreate(op);
      const steps: Operation[] = [];
      for (;;) {
        const step = await t.store.operationStep({
          id: op.id,
          batch,
          scan: 100,
          audit: auditOf("Bulk"),
          now,
        });
        if (!step) break;
        steps.push(step);
        if (step.state !== "running") break;
      }
      return steps;
    }

    it("works through the matching jobs in batches, newest first, then ends with its audit event", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push((await insert({ createdAt: T0 + i, tags: ["bulk"] })).id);
      const other = await insert({ createdAt: T0 + 10 });
      const steps = await run("cancel", { tags: ["bulk"] }, T0 + 100);
      expect(steps.map((s) => [s.state, s.examined, s.affected])).toEqual([
        ["running", 2, 2],
        ["running", 4, 4],
        ["succeeded", 5, 5],
      ]);
      for (const id of ids) expect((await get(id, T0 + 100)).status).toBe("canceled");
      expect((await get(other.id, T0 + 100)).status).toBe("queued");
      const [event] = (await t.store.auditList({ limit: 1, action: "Bulk" })).events;
      expect(JSON.parse(event!.detail!)).toMatchObject({ affected: 5 });
      expect(await t.store.operationGet({ id: steps[0]!.id })).toMatchObject({
        state: "succeeded",
        affected: 5,
      });
    });

    it("retries and deletes only the jobs their action applies to", async () => {
      const bad = await failed({ tags: ["b"] }, T0 + 10);
      const queued = await insert({ tags: ["b"], createdAt: T0 + 20 });
      const [retry] = (await run("retry", { tags: ["b"] }, T0 + 100)).slice(-1);
      expect(retry).toMatchObject({ state: "succeeded", affected: 1 });
      expect((await get(bad.id, T0 + 100)).status).toBe("queued");
      expect((await get(queued.id, T0 + 100)).status).toBe("queued");
      await t.store.jobCancel({ id: queued.id, now: T0 + 101 });
      const [del] = (await run("delete", { tags: ["b"] }, T0 + 200)).slice(-1);
      expect(del).toMatchObject({ state: "succeeded", affected: 1 });
      expect(await t.store.jobGet({ id: queued.id, now: T0 + 200 })).toBeNull();
    });

    it("stops between batches when canceled", async () => {
      for (let i = 0; i < 4; i++) await insert({ createdAt: T0 + i, tags: ["c"] });
      const op: Operation = {
        id: `op_${"1".repeat(26)}`,
        kind: "cancel",
        filter: { tags: ["c"] },
        overrides: null,
        owner: null,
        principal: null,
        state: "running",
        estimate: 4,
        estimateCapped: false,
        examined: 0,
        affected: 0,
        upperId: `j_${"Z".repeat(26)}`,
        cursor: null,
        error: null,
        createdAt: T0,
        updatedAt: T0,
        finishedAt: null,
      };
      await t.store.operationCreate(op);
      const step = { id: op.id, batch: 2, scan: 100, audit: auditOf("Bulk"), now: T0 + 10 };
      expect(await t.store.operationStep(step)).toMatchObject({ state: "running", affected: 2 });
      expect(await t.store.operationCancel({ id: op.id, now: T0 + 11 })).toBe(true);
      expect(await t.store.operationStep(step)).toBeNull();
      expect(await t.store.operationCancel({ id: op.id, now: T0 + 12 })).toBe(false);
      const listed = await t.store.jobList({
        tags: ["c"],
        statuses: ["queued"],
        limit: 10,
        now: T0 + 20,
      });
      expect(listed.jobs).toHaveLength(2);
      expect((await t.store.operationList({ limit: 10 })).map((o) => [o.id, o.state])).toEqual([
        [op.id, "canceled"],
      ]);
    });
  });
}
