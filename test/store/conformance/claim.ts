import { describe, expect, it } from "vitest";
import { httpFailedEnd, LEASE_MS, leaseOf, type StoreTest, T0 } from "./harness.js";

/** Claims and leases. */
export function claimTests(t: StoreTest): void {
  const { insert, claim, claimOne, finish, get } = t;

  describe("claim", () => {
    it("claims by priority high to low, then run time, then age", async () => {
      const lowest = await insert({ priority: -1, createdAt: T0 });
      const dueLater = await insert({ createdAt: T0 + 20 });
      // Built after dueLater (a larger id) but due earlier: run time beats age.
      const dueEarlier = await insert({ createdAt: T0 + 10 });
      const sameTimeOlder = await insert({ createdAt: T0 + 30 });
      const sameTimeNewer = await insert({ createdAt: T0 + 30 });
      // Due last but the highest priority: priority beats run time.
      const urgent = await insert({ priority: 5, createdAt: T0 + 40 });

      // The limit must take the first in order, not any two due jobs.
      const firstTwo = await claim(T0 + 100, 2);
      expect(firstTwo.map((j) => j.id)).toEqual([urgent.id, dueEarlier.id]);
      const rest = await claim(T0 + 100, 10);
      expect(rest.map((j) => j.id)).toEqual([
        dueLater.id,
        sameTimeOlder.id,
        sameTimeNewer.id,
        lowest.id,
      ]);
    });

    it("does not claim a job before its run time, and claims it once now reaches it", async () => {
      const scheduled = await insert({ scheduledAt: T0 + 1_000 });
      expect(await claim(T0)).toEqual([]);
      expect(await claim(T0 + 999)).toEqual([]);
      const claimed = await claim(T0 + 1_000);
      expect(claimed.map((j) => j.id)).toEqual([scheduled.id]);
    });

    it("respects the limit", async () => {
      for (let i = 0; i < 5; i++) await insert({ createdAt: T0 + i });
      expect(await claim(T0 + 10, 3)).toHaveLength(3);
      expect(await claim(T0 + 10, 3)).toHaveLength(2);
      expect(await claim(T0 + 10, 3)).toHaveLength(0);
    });

    it("counts the attempt, sets startedAt and opens a running attempt row", async () => {
      const job = await insert({ createdAt: T0 });
      const claimed = await claimOne(T0 + 5);
      expect(claimed.id).toBe(job.id);
      expect(claimed.status).toBe("running");
      expect(claimed.attempt).toBe(1);
      expect(claimed.startedAt).toBe(T0 + 5);
      expect(claimed.updatedAt).toBe(T0 + 5);
      expect(claimed.leaseExpiresAt).toBe(T0 + 5 + LEASE_MS);
      expect(typeof claimed.leaseToken).toBe("string");
      expect(claimed.leaseToken.length).toBeGreaterThan(0);

      const stored = await get(job.id, T0 + 5);
      expect(stored.status).toBe("running");
      expect(stored.attempt).toBe(1);
      expect(stored.startedAt).toBe(T0 + 5);
      expect(await t.store.attemptList({ jobId: job.id })).toEqual([
        {
          jobId: job.id,
          attempt: 1,
          outcome: "running",
          startedAt: T0 + 5,
          finishedAt: null,
          responseStatus: null,
          errorCode: null,
          error: null,
          durationMs: null,
          retryable: false,
          node: "w1",
        },
      ]);

      // The second attempt counts again but the job keeps its first start.
      const end = httpFailedEnd(503, true);
      expect(await finish(claimed, T0 + 10, { status: "queued", runAt: T0 + 100 }, end)).toBe(true);
      const second = await claimOne(T0 + 100);
      expect(second.attempt).toBe(2);
      expect(second.startedAt).toBe(T0 + 5);
      const attempts = await t.store.attemptList({ jobId: job.id });
      expect(attempts.map((a) => [a.attempt, a.outcome, a.startedAt])).toEqual([
        [1, "failed", T0 + 5],
        [2, "running", T0 + 100],
      ]);
    });

    it("never returns the same job from two claims, even after its lease ran out", async () => {
      for (let i = 0; i < 3; i++) await insert({ createdAt: T0 + i });
      const first = await claim(T0 + 10, 2, "w1", 1_000);
      const second = await claim(T0 + 10, 2, "w2", 1_000);
      expect(first).toHaveLength(2);
      expect(second).toHaveLength(1);
      const ids = [...first, ...second].map((j) => j.id);
      expect(new Set(ids).size).toBe(3);
      expect(second[0]!.leaseToken).not.toBe(first[0]!.leaseToken);

      // A running job with a lapsed lease comes back only through rescue, never through claim.
      expect(await claim(T0 + 10_000, 10, "w3")).toEqual([]);
    });
  });

  describe("lease renewal", () => {
    it("extends the leases still held and returns their ids", async () => {
      const a = await insert({ createdAt: T0 });
      const b = await insert({ createdAt: T0 + 1 });
      const claimed = await claim(T0 + 10, 10, "w1", 1_000);
      expect(claimed.map((j) => j.id)).toEqual([a.id, b.id]);

      const held = await t.store.jobRenewLeases({
        leases: claimed.map(leaseOf),
        now: T0 + 900,
        leaseMs: 1_000,
      });
      expect([...held].sort()).toEqual([a.id, b.id].sort());

      // The leases now run to T0 + 1900: not lost at the original expiry, lost at the new one.
      expect(await t.store.jobRescueExpired({ now: T0 + 1_010, limit: 10 })).toEqual([]);
      expect(await t.store.jobRescueExpired({ now: T0 + 1_899, limit: 10 })).toEqual([]);
      const rescued = await t.store.jobRescueExpired({ now: T0 + 1_900, limit: 10 });
      expect(rescued.map((r) => r.jobId).sort()).toEqual([a.id, b.id].sort());
    });

    it("does not return a job that was canceled, finished, or named with a wrong token", async () => {
      await insert({ createdAt: T0 });
      await insert({ createdAt: T0 + 1 });
      await insert({ createdAt: T0 + 2 });
      const [kept, canceled, finished] = await claim(T0 + 10, 10);
      await t.store.jobCancel({ id: canceled!.id, now: T0 + 20 });
      expect(await finish(finished!, T0 + 20, { status: "succeeded" })).toBe(true);

      const held = await t.store.jobRenewLeases({
        leases: [
          leaseOf(kept!),
          leaseOf(canceled!),
          leaseOf(finished!),
          { jobId: kept!.id, token: "not-a-token" },
        ],
        now: T0 + 30,
        leaseMs: LEASE_MS,
      });
      expect([...held]).toEqual([kept!.id]);
    });

    it("does not renew the old token after a rescue and a new claim", async () => {
      const job = await insert();
      const old = await claimOne(T0, "w1", 1_000);
      expect(await t.store.jobRescueExpired({ now: T0 + 1_000, limit: 10 })).toEqual([
        { jobId: job.id, status: "queued" },
      ]);
      const current = await claimOne(T0 + 1_000, "w2", 1_000);
      expect(current.leaseToken).not.toBe(old.leaseToken);

      const held = await t.store.jobRenewLeases({
        leases: [leaseOf(old)],
        now: T0 + 1_001,
        leaseMs: 1_000,
      });
      expect(held.size).toBe(0);
      const heldNew = await t.store.jobRenewLeases({
        leases: [leaseOf(current)],
        now: T0 + 1_001,
        leaseMs: 1_000,
      });
      expect([...heldNew]).toEqual([job.id]);
    });
  });
}
