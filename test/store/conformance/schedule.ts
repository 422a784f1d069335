import { describe, expect, it } from "vitest";
import {
  DEFAULT_QUEUE_CLAIM,
  LEASE_MS,
  responseResult,
  type StoreTest,
  succeededEnd,
  T0,
} from "./harness.js";

/** Time: scheduled jobs becoming due, and TTL expiry. */
export function scheduleTests(t: StoreTest): void {
  const { insert, claim, claimOne, finish, get, listIds } = t;

  describe("TTL", () => {
    async function finishedWithTtl(ttlMs: number, createdAt: number, finishedAt: number) {
      const job = await insert({ ttlMs, createdAt });
      const claimed = await claim(finishedAt, 1);
      expect(claimed.map((j) => j.id)).toEqual([job.id]);
      const result = responseResult(claimed[0]!, finishedAt);
      expect(
        await finish(claimed[0]!, finishedAt, { status: "succeeded" }, succeededEnd(), result),
      ).toBe(true);
      return job;
    }

    it("get and list hide a job once expiresAt <= now", async () => {
      const job = await finishedWithTtl(1_000, T0, T0 + 100);
      expect((await get(job.id, T0 + 1_099)).expiresAt).toBe(T0 + 1_100);
      expect(await listIds(T0 + 1_099)).toEqual([job.id]);

      expect(await t.store.jobGet({ id: job.id, now: T0 + 1_100 })).toBeNull();
      expect(await listIds(T0 + 1_100)).toEqual([]);
      expect(await t.store.jobCancel({ id: job.id, now: T0 + 1_100 })).toEqual({
        kind: "not-found",
      });
    });

    it("deleteExpired removes expired jobs with their attempts and results, and counts them", async () => {
      const a = await finishedWithTtl(1_000, T0, T0 + 100); // expires T0 + 1100
      const b = await finishedWithTtl(500, T0 + 1, T0 + 200); // expires T0 + 700
      const later = await finishedWithTtl(10_000, T0 + 2, T0 + 300); // expires T0 + 10300
      const kept = await finishedWithTtl(0, T0 + 3, T0 + 400); // ttl 0: expires at once
      const forever = await insert({ createdAt: T0 + 4 });

      expect(await t.store.jobDeleteExpired({ now: T0 + 1_100, limit: 100 })).toBe(3);
      for (const gone of [a, b, kept]) {
        expect(await t.store.attemptList({ jobId: gone.id })).toEqual([]);
        expect(await t.store.resultGet({ jobId: gone.id })).toBeNull();
        expect(await t.store.jobGet({ id: gone.id, now: T0 })).toBeNull();
      }
      expect(await t.store.attemptList({ jobId: later.id })).toHaveLength(1);
      expect(await t.store.resultGet({ jobId: later.id })).not.toBeNull();
      expect(await listIds(T0 + 1_100)).toEqual([forever.id, later.id]);
      expect(await t.store.jobDeleteExpired({ now: T0 + 1_100, limit: 100 })).toBe(0);
    });

    it("deleteExpired deletes at most limit jobs", async () => {
      for (let i = 0; i < 3; i++) await finishedWithTtl(100, T0 + i, T0 + 100);
      expect(await t.store.jobDeleteExpired({ now: T0 + 1_000, limit: 2 })).toBe(2);
      expect(await t.store.jobDeleteExpired({ now: T0 + 1_000, limit: 2 })).toBe(1);
      expect(await t.store.jobDeleteExpired({ now: T0 + 1_000, limit: 2 })).toBe(0);
    });

    it("nextExpiry is the earliest expiry, or null when nothing expires", async () => {
      expect(await t.store.jobNextExpiry()).toBeNull();
      await insert({ ttlMs: 100, scheduledAt: T0 + 1_000_000 }); // queued: no expiry yet
      expect(await t.store.jobNextExpiry()).toBeNull();
      await finishedWithTtl(5_000, T0 + 1, T0 + 100); // T0 + 5100
      await finishedWithTtl(2_000, T0 + 2, T0 + 200); // T0 + 2200
      await finishedWithTtl(9_000, T0 + 3, T0 + 300); // T0 + 9300
      expect(await t.store.jobNextExpiry()).toBe(T0 + 2_200);
      await t.store.jobDeleteExpired({ now: T0 + 2_200, limit: 10 });
      expect(await t.store.jobNextExpiry()).toBe(T0 + 5_100);
    });
  });

  describe("scheduled jobs", () => {
    it("nextScheduledAt is the earliest run time of a job not yet due, null when none", async () => {
      expect(await t.store.jobNextScheduledAt()).toBeNull();
      await insert({ createdAt: T0, scheduledAt: T0 + 3_000 });
      await insert({ createdAt: T0 + 1, scheduledAt: T0 + 2_000 });
      const due = await insert({ createdAt: T0 + 2, priority: -5 });
      // A job due at once is available, not scheduled.
      expect(await t.store.jobNextScheduledAt()).toBe(T0 + 2_000);

      const claimed = await claimOne(T0 + 10);
      expect(claimed.id).toBe(due.id);
      expect(await t.store.jobNextScheduledAt()).toBe(T0 + 2_000);

      await claim(T0 + 3_000);
      expect(await t.store.jobNextScheduledAt()).toBeNull();
    });

    it("a job not yet due is not claimable until promoted, and promotion respects the time", async () => {
      const later = await insert({ createdAt: T0, scheduledAt: T0 + 1_000 });
      expect(
        (
          await t.store.jobClaim({
            queues: DEFAULT_QUEUE_CLAIM,
            now: T0 + 2_000,
            limit: 10,
            leaseMs: LEASE_MS,
            node: "w",
          })
        ).jobs,
      ).toEqual([]);
      expect(await t.store.jobPromoteScheduled({ now: T0 + 999, limit: 10 })).toBe(0);
      expect(await t.store.jobPromoteScheduled({ now: T0 + 1_000, limit: 10 })).toBe(1);
      const { jobs } = await t.store.jobClaim({
        queues: DEFAULT_QUEUE_CLAIM,
        now: T0 + 1_000,
        limit: 10,
        leaseMs: LEASE_MS,
        node: "w",
      });
      expect(jobs.map((j) => j.id)).toEqual([later.id]);
      expect((await get(later.id, T0 + 1_000)).status).toBe("running");
    });
  });
}
