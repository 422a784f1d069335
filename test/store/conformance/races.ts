import { describe, expect, it } from "vitest";
import type { LimitResolver } from "../../../src/job/rate-limits.js";
import type { ClaimedJob } from "../../../src/store/job-store.js";
import {
  DEFAULT_QUEUE_CLAIM,
  LEASE_MS,
  newJob,
  type StoreTest,
  succeededEnd,
  T0,
} from "./harness.js";

/**
 * Two stores on one database racing, as two nodes do. On SQLite the two connections take turns
 * (one writer at a time); on PostgreSQL they truly overlap, which is what these tests are for.
 */
export function raceTests(t: StoreTest): void {
  describe("races between two nodes", () => {
    it("concurrent claims never hand one job to both", async () => {
      const other = await t.peer();
      const jobs = Array.from({ length: 200 }, (_, i) => newJob({ createdAt: T0 + i }));
      await t.store.jobInsertMany(jobs);
      const drain = async (store: StoreTest["store"], node: string) => {
        const got: ClaimedJob[] = [];
        for (;;) {
          const { jobs: claimed } = await store.jobClaim({
            queues: DEFAULT_QUEUE_CLAIM,
            now: T0 + 1_000,
            limit: 7,
            leaseMs: LEASE_MS,
            node,
          });
          if (claimed.length === 0) return got;
          got.push(...claimed);
        }
      };
      const [a, b] = await Promise.all([drain(t.store, "a"), drain(other.store, "b")]);
      const ids = [...a, ...b].map((j) => j.id);
      expect(ids.length).toBe(200);
      expect(new Set(ids).size).toBe(200);
      const attempts = await Promise.all(jobs.map((j) => t.store.attemptList({ jobId: j.id })));
      expect(attempts.every((list) => list.length === 1)).toBe(true);
    });

    it("a finish racing a cancel: exactly one of them takes effect", async () => {
      const other = await t.peer();
      for (let round = 0; round < 20; round++) {
        const job = await t.insert({ createdAt: T0 + round });
        const [claimed] = (
          await t.store.jobClaim({
            queues: DEFAULT_QUEUE_CLAIM,
            now: T0 + 100,
            limit: 1,
            leaseMs: LEASE_MS,
            node: "a",
          })
        ).jobs;
        expect(claimed!.id).toBe(job.id);
        const [finished, canceled] = await Promise.all([
          t.store.jobFinishAttempt({
            lease: { jobId: job.id, token: claimed!.leaseToken },
            now: T0 + 200,
            end: succeededEnd(),
            next: { status: "succeeded" },
            result: null,
          }),
          other.store.jobCancel({ id: job.id, now: T0 + 200 }),
        ]);
        const final = await t.store.jobGet({ id: job.id, now: T0 + 300 });
        if (finished) {
          expect(canceled.kind).toBe("already-finished");
          expect(final!.status).toBe("succeeded");
        } else {
          expect(canceled.kind).toBe("canceled");
          expect(final!.status).toBe("canceled");
        }
        const attempts = await t.store.attemptList({ jobId: job.id });
        expect(attempts.map((a) => a.outcome)).toEqual([finished ? "succeeded" : "canceled"]);
      }
    });

    it("concurrent rescuers rescue each expired lease exactly once", async () => {
      const other = await t.peer();
      await t.store.jobInsertMany(
        Array.from({ length: 60 }, (_, i) => newJob({ createdAt: T0 + i })),
      );
      const claimed = (
        await t.store.jobClaim({
          queues: DEFAULT_QUEUE_CLAIM,
          now: T0 + 100,
          limit: 60,
          leaseMs: 1_000,
          node: "dead",
        })
      ).jobs;
      expect(claimed).toHaveLength(60);
      const rescue = async (store: StoreTest["store"]) => {
        const out: string[] = [];
        for (;;) {
          const r = await store.jobRescueExpired({ now: T0 + 5_000, limit: 5 });
          if (r.length === 0) return out;
          out.push(...r.map((x) => x.jobId));
        }
      };
      const [a, b] = await Promise.all([rescue(t.store), rescue(other.store)]);
      expect(a.length + b.length).toBe(60);
      expect(new Set([...a, ...b]).size).toBe(60);
      for (const job of claimed.slice(0, 10)) {
        const attempts = await t.store.attemptList({ jobId: job.id });
        expect(attempts.map((x) => x.outcome)).toEqual(["lost"]);
      }
    });

    it("one idempotency key submitted on two nodes at once makes one job", async () => {
      const other = await t.peer();
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          (i % 2 ? other.store : t.store).jobInsert(
            newJob({ idempotencyKey: "once", createdAt: T0 + i }),
          ),
        ),
      );
      expect(results.filter((r) => r.inserted)).toHaveLength(1);
      expect(new Set(results.map((r) => r.job.id)).size).toBe(1);
      expect((await t.store.jobList({ now: T0 + 100, limit: 10 })).jobs).toHaveLength(1);
    });

    it("two nodes standing for leader at once: exactly one wins", async () => {
      const other = await t.peer();
      const [a, b] = await Promise.all([
        t.store.leaderAttemptElect({ node: "a", ttlMs: 10_000, now: T0 }),
        other.store.leaderAttemptElect({ node: "b", ttlMs: 10_000, now: T0 }),
      ]);
      expect([a, b].filter(Boolean)).toHaveLength(1);
    });

    it("a concurrency limit holds across nodes claiming at once", async () => {
      const other = await t.peer();
      const limits: LimitResolver = (bucket) =>
        bucket === "b" ? { concurrency: 2, intervalMs: null, burst: 1 } : null;
      await t.store.jobInsertMany(
        Array.from({ length: 12 }, (_, i) => newJob({ bucket: "b", createdAt: T0 + i })),
      );
      const claims = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          (i % 2 ? other.store : t.store).jobClaim({
            queues: DEFAULT_QUEUE_CLAIM,
            now: T0 + 100,
            limit: 4,
            leaseMs: LEASE_MS,
            node: `n${i}`,
            limits,
          }),
        ),
      );
      expect(claims.flatMap((c) => c.jobs)).toHaveLength(2);
      const { jobs } = await t.store.jobList({ now: T0 + 100, limit: 100, statuses: ["running"] });
      expect(jobs).toHaveLength(2);
    });
  });
}
