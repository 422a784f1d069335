import { describe, expect, it } from "vitest";
import type { LimitResolver } from "../../../src/job/rate-limits.js";
import { DEFAULT_QUEUE_CLAIM, LEASE_MS, type StoreTest, T0 } from "./harness.js";

/** The bounded counts metrics read (jobStats). */
export function statsTests(t: StoreTest): void {
  const { insert, claimOne, finish } = t;

  describe("stats", () => {
    it("counts jobs by status, the due ones, and the run time of the due job waiting longest", async () => {
      expect(await t.store.jobStats({ cap: 100, now: T0 })).toEqual({
        statuses: { queued: 0, running: 0, succeeded: 0, failed: 0, canceled: 0 },
        due: 0,
        oldestDueAt: null,
        heldBack: [],
      });
      // Due at different times and priorities: the oldest is not the first in claim order.
      await insert({ priority: 5, createdAt: T0 + 30 });
      const oldest = await insert({ priority: 0, createdAt: T0 + 10 });
      await insert({ priority: -3, createdAt: T0 + 20 });
      await insert({ createdAt: T0, scheduledAt: T0 + 60_000 });
      const running = await claimOne(T0 + 40);
      const done = await insert({ priority: 10, createdAt: T0 + 41 });
      const canceled = await insert({ createdAt: T0 + 42 });
      await t.store.jobCancel({ id: canceled.id, now: T0 + 43 });
      expect(running.priority).toBe(5);
      const claimedDone = await claimOne(T0 + 44);
      expect(claimedDone.id).toBe(done.id);
      await finish(claimedDone, T0 + 45, { status: "succeeded" });

      const stats = await t.store.jobStats({ cap: 100, now: T0 + 50 });
      expect(stats).toEqual({
        statuses: { queued: 3, running: 1, succeeded: 1, failed: 0, canceled: 1 },
        due: 2,
        oldestDueAt: oldest.runAt,
        heldBack: [],
      });
    });

    it("stops counting at the cap", async () => {
      for (let i = 0; i < 5; i++) await insert();
      const stats = await t.store.jobStats({ cap: 3, now: T0 });
      expect(stats.statuses.queued).toBe(3);
      expect(stats.due).toBe(3);
    });

    it("counts the jobs each bucket's limits hold back: waiting for concurrency, rescheduled to a rate slot", async () => {
      const limits: LimitResolver = (bucket) =>
        bucket === "c"
          ? { concurrency: 1, intervalMs: null, burst: 1 }
          : bucket === "r"
            ? { concurrency: null, intervalMs: 1_000, burst: 1 }
            : null;
      for (let i = 0; i < 3; i++) await insert({ bucket: "c" });
      for (let i = 0; i < 3; i++) await insert({ bucket: "r" });
      await insert({ bucket: "free" });
      await t.store.jobClaim({
        now: T0,
        limit: 10,
        leaseMs: LEASE_MS,
        node: "w",
        limits,
        queues: DEFAULT_QUEUE_CLAIM,
      });
      const stats = await t.store.jobStats({ cap: 100, now: T0 });
      expect(stats.heldBack).toEqual([
        { bucket: "c", waiting: 2, rateDeferred: 0 },
        { bucket: "r", waiting: 0, rateDeferred: 2 },
      ]);
      expect(stats.statuses).toMatchObject({ queued: 4, running: 3 });
      expect(stats.due).toBe(0);
    });
  });
}
