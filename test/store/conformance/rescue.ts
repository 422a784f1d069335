import { describe, expect, it } from "vitest";
import { responseResult, type StoreTest, succeededEnd, T0 } from "./harness.js";

/** Rescuing jobs whose worker stopped renewing its lease. */
export function rescueTests(t: StoreTest): void {
  const { insert, claim, claimOne, finish, get } = t;

  describe("rescue of expired leases", () => {
    it("requeues a job with attempts left and closes its attempt as lost", async () => {
      const job = await insert({ maxAttempts: 3 });
      await claimOne(T0, "w1", 1_000);

      expect(await t.store.jobRescueExpired({ now: T0 + 999, limit: 10 })).toEqual([]);
      expect((await get(job.id, T0 + 999)).status).toBe("running");

      expect(await t.store.jobRescueExpired({ now: T0 + 1_000, limit: 10 })).toEqual([
        { jobId: job.id, status: "queued" },
      ]);
      expect(await get(job.id, T0 + 1_000)).toMatchObject({
        status: "queued",
        attempt: 1,
        finishedAt: null,
      });
      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt).toMatchObject({
        attempt: 1,
        outcome: "lost",
        errorCode: "lease_expired",
        finishedAt: T0 + 1_000,
      });
      expect(await t.store.jobRescueExpired({ now: T0 + 2_000, limit: 10 })).toEqual([]);

      const again = await claimOne(T0 + 1_000, "w2");
      expect(again.id).toBe(job.id);
      expect(again.attempt).toBe(2);
    });

    it("fails a job whose last attempt was lost", async () => {
      const job = await insert({ maxAttempts: 1, ttlMs: 1_000 });
      await claimOne(T0, "w1", 1_000);
      expect(await t.store.jobRescueExpired({ now: T0 + 1_500, limit: 10 })).toEqual([
        { jobId: job.id, status: "failed" },
      ]);
      const stored = await get(job.id, T0 + 1_500);
      expect(stored).toMatchObject({
        status: "failed",
        attempt: 1,
        finishedAt: T0 + 1_500,
        expiresAt: T0 + 2_500,
      });
      expect(stored.lastError).toEqual(expect.any(String));
      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt).toMatchObject({ outcome: "lost", errorCode: "lease_expired" });
      expect(await claim(T0 + 1_500)).toEqual([]);
    });

    it("leaves a job whose lease has not expired alone", async () => {
      const early = await insert({ createdAt: T0 });
      const late = await insert({ createdAt: T0 + 1 });
      await claimOne(T0, "w1", 1_000);
      const lateClaim = await claimOne(T0 + 500, "w2", 1_000);
      expect(lateClaim.id).toBe(late.id);

      expect(await t.store.jobRescueExpired({ now: T0 + 1_000, limit: 10 })).toEqual([
        { jobId: early.id, status: "queued" },
      ]);
      expect((await get(late.id, T0 + 1_000)).status).toBe("running");
      const [attempt] = await t.store.attemptList({ jobId: late.id });
      expect(attempt?.outcome).toBe("running");
      expect(attempt?.finishedAt).toBeNull();
      expect(await finish(lateClaim, T0 + 1_100, { status: "succeeded" })).toBe(true);
    });

    it("rescues at most limit jobs at a time", async () => {
      for (let i = 0; i < 3; i++) await insert({ createdAt: T0 + i });
      await claim(T0 + 10, 10, "w1", 1_000);
      expect(await t.store.jobRescueExpired({ now: T0 + 2_000, limit: 2 })).toHaveLength(2);
      expect(await t.store.jobRescueExpired({ now: T0 + 2_000, limit: 2 })).toHaveLength(1);
      expect(await t.store.jobRescueExpired({ now: T0 + 2_000, limit: 2 })).toHaveLength(0);
    });

    it("the old holder's late finish returns false after a rescue and a new claim", async () => {
      const job = await insert({ maxAttempts: 3 });
      const old = await claimOne(T0, "w1", 1_000);
      await t.store.jobRescueExpired({ now: T0 + 1_000, limit: 10 });
      const current = await claimOne(T0 + 1_000, "w2", 1_000);

      const late = responseResult(old, T0 + 1_200, 200, '{"stale":true}');
      expect(await finish(old, T0 + 1_200, { status: "succeeded" }, succeededEnd(), late)).toBe(
        false,
      );
      expect(await get(job.id, T0 + 1_200)).toMatchObject({ status: "running", attempt: 2 });
      const got = await t.store.resultGet({ jobId: job.id });
      expect(got?.response?.status === 200 && got.attempt === 1).toBe(false);
      expect((await t.store.attemptList({ jobId: job.id })).map((a) => a.outcome)).toEqual([
        "lost",
        "running",
      ]);

      const fresh = responseResult(current, T0 + 1_300, 200, '{"fresh":true}');
      expect(
        await finish(current, T0 + 1_300, { status: "succeeded" }, succeededEnd(), fresh),
      ).toBe(true);
      expect((await t.store.resultGet({ jobId: job.id }))?.attempt).toBe(2);
    });

    it("the old holder's late finish returns false after a rescue failed the job", async () => {
      const job = await insert({ maxAttempts: 1 });
      const old = await claimOne(T0, "w1", 1_000);
      await t.store.jobRescueExpired({ now: T0 + 1_000, limit: 10 });
      expect(await finish(old, T0 + 1_200, { status: "succeeded" })).toBe(false);
      expect((await get(job.id, T0 + 1_200)).status).toBe("failed");
      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt?.outcome).toBe("lost");
    });
  });
}
