import { describe, expect, it } from "vitest";
import type { BucketLimits, LimitResolver } from "../../../src/job/rate-limits.js";
import type { ClaimedJob } from "../../../src/store/job-store.js";
import { DEFAULT_QUEUE_CLAIM, LEASE_MS, type StoreTest, T0 } from "./harness.js";

/** Admission under bucket limits (src/job/admission.ts), as each driver applies it. */
export function limitTests(t: StoreTest): void {
  const { insert, finish, get } = t;

  describe("admission under bucket limits", () => {
    /** Gives bucket "b" the limits `l`; other buckets are free. */
    const limitsFor =
      (l: Partial<BucketLimits>): LimitResolver =>
      (bucket) =>
        bucket === "b" ? { concurrency: null, intervalMs: null, burst: 1, ...l } : null;

    /** Claims as the worker pool does with limits; returns the ids and the deferral. */
    async function claimLimited(now: number, limits: LimitResolver, limit = 8) {
      await t.store.jobPromoteScheduled({ now, limit: 10_000 });
      const res = await t.store.jobClaim({
        queues: DEFAULT_QUEUE_CLAIM,
        now,
        limit,
        leaseMs: LEASE_MS,
        node: "w",
        limits,
      });
      return { jobs: res.jobs, ids: res.jobs.map((j) => j.id), deferredUntil: res.deferredUntil };
    }

    const done = (job: ClaimedJob, now: number) => finish(job, now, { status: "succeeded" });

    it("concurrency: the jobs over the limit wait queued, unattempted, while other buckets run", async () => {
      const limits = limitsFor({ concurrency: 2 });
      const [a, b, c] = [
        await insert({ bucket: "b" }),
        await insert({ bucket: "b" }),
        await insert({ bucket: "b" }),
      ];
      const other = await insert({ bucket: "other" });
      const first = await claimLimited(T0, limits);
      expect(first.ids).toEqual([a!.id, b!.id, other.id]);
      expect(first.deferredUntil).toBeNull();
      expect(await get(c!.id, T0)).toMatchObject({ status: "queued", attempt: 0 });
      expect(await t.store.attemptList({ jobId: c!.id })).toEqual([]);
      // Still full: nothing more is admitted.
      expect((await claimLimited(T0 + 1, limits)).ids).toEqual([]);
      // A call of the bucket ends: one waiting job may go.
      await done(first.jobs[0]!, T0 + 2);
      const next = await claimLimited(T0 + 3, limits);
      expect(next.ids).toEqual([c!.id]);
      expect(next.jobs[0]!.attempt).toBe(1);
    });

    it("rate: a spent budget reserves consecutive slots, unattempted; each job runs at its slot", async () => {
      const limits = limitsFor({ intervalMs: 1_000 });
      const jobs = [];
      for (let i = 0; i < 3; i++) jobs.push(await insert({ bucket: "b" }));
      const first = await claimLimited(T0, limits);
      expect(first.ids).toEqual([jobs[0]!.id]);
      expect(first.deferredUntil).toBe(T0 + 1_000);
      expect(await get(jobs[1]!.id, T0)).toMatchObject({
        status: "queued",
        attempt: 0,
        runAt: T0 + 1_000,
      });
      expect(await get(jobs[2]!.id, T0)).toMatchObject({
        status: "queued",
        attempt: 0,
        runAt: T0 + 2_000,
      });
      expect(await t.store.jobNextScheduledAt()).toBe(T0 + 1_000);
      expect((await claimLimited(T0 + 999, limits)).ids).toEqual([]);
      expect((await claimLimited(T0 + 1_000, limits)).ids).toEqual([jobs[1]!.id]);
      expect((await claimLimited(T0 + 2_000, limits)).ids).toEqual([jobs[2]!.id]);
    });

    it("rate with burst: burst jobs go at once, then the spacing applies", async () => {
      const limits = limitsFor({ intervalMs: 1_000, burst: 3 });
      const jobs = [];
      for (let i = 0; i < 5; i++) jobs.push(await insert({ bucket: "b" }));
      const first = await claimLimited(T0, limits);
      expect(first.ids).toEqual(jobs.slice(0, 3).map((j) => j.id));
      expect(first.deferredUntil).toBe(T0 + 1_000);
      expect((await get(jobs[4]!.id, T0)).runAt).toBe(T0 + 2_000);
    });

    it("a reserved job that then waits for concurrency is judged again, not let through on its old slot", async () => {
      const limits = limitsFor({ concurrency: 1, intervalMs: 1_000 });
      const a = await insert({ bucket: "b" });
      const b = await insert({ bucket: "b" });
      const c = await insert({ bucket: "b" });
      const first = await claimLimited(T0, limits);
      expect(first.ids).toEqual([a.id]);
      await done(first.jobs[0]!, T0 + 100); // b may go, but its rate slot is at T0 + 1000
      expect((await claimLimited(T0 + 100, limits)).ids).toEqual([]);
      const d = await insert({ bucket: "b", createdAt: T0 + 200 });
      expect((await claimLimited(T0 + 200, limits)).ids).toEqual([]); // d's slot: T0 + 2000
      const second = await claimLimited(T0 + 1_000, limits);
      expect(second.ids).toEqual([b.id]);
      expect((await claimLimited(T0 + 2_000, limits)).ids).toEqual([]); // d waits: b runs
      await done(second.jobs[0]!, T0 + 5_000); // c (older) may go
      const third = await claimLimited(T0 + 5_000, limits);
      expect(third.ids).toEqual([c.id]);
      await done(third.jobs[0]!, T0 + 5_050); // d may go, but c called 50 ms ago
      expect((await claimLimited(T0 + 5_050, limits)).ids).toEqual([]);
      expect((await get(d.id, T0 + 5_050)).runAt).toBe(T0 + 6_000);
      expect((await claimLimited(T0 + 6_000, limits)).ids).toEqual([d.id]);
    });

    it("a reserved job run long after its slot still spaces the next call from its own", async () => {
      const limits = limitsFor({ intervalMs: 60_000 });
      const a = await insert({ bucket: "b" });
      const b = await insert({ bucket: "b" });
      expect((await claimLimited(T0, limits)).ids).toEqual([a.id]);
      // b's slot is T0 + 60 s; nothing claims until ten minutes later (e.g. the server was down).
      expect((await claimLimited(T0 + 600_000, limits)).ids).toEqual([b.id]);
      const c = await insert({ bucket: "b", createdAt: T0 + 600_001 });
      const late = await claimLimited(T0 + 600_001, limits);
      expect(late.ids).toEqual([]);
      expect(late.deferredUntil).toBe(T0 + 660_000);
      expect((await get(c.id, T0 + 600_001)).runAt).toBe(T0 + 660_000);
    });

    it("reserved slots that come due together are spread out again, not called at once", async () => {
      const limits = limitsFor({ intervalMs: 60_000 });
      const a = await insert({ bucket: "b" });
      const b = await insert({ bucket: "b" });
      const c = await insert({ bucket: "b" });
      expect((await claimLimited(T0, limits)).ids).toEqual([a.id]); // b at +60 s, c at +120 s
      // Nothing claims for ten minutes: both reservations are due at once.
      const late = await claimLimited(T0 + 600_000, limits);
      expect(late.ids).toEqual([b.id]);
      expect((await get(c.id, T0 + 600_000)).runAt).toBe(T0 + 660_000);
      expect((await claimLimited(T0 + 659_999, limits)).ids).toEqual([]);
      expect((await claimLimited(T0 + 660_000, limits)).ids).toEqual([c.id]);
    });

    it("cancelling a job promoted from waiting lets the next waiting one go", async () => {
      const limits = limitsFor({ concurrency: 1 });
      const a = await insert({ bucket: "b" });
      const b = await insert({ bucket: "b" });
      const c = await insert({ bucket: "b" });
      const first = await claimLimited(T0, limits);
      expect(first.ids).toEqual([a.id]); // b and c wait
      await done(first.jobs[0]!, T0 + 10); // b is promoted
      expect((await t.store.jobCancel({ id: b.id, now: T0 + 20 })).kind).toBe("canceled");
      expect((await claimLimited(T0 + 30, limits)).ids).toEqual([c.id]);
    });
  });
}
