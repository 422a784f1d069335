import { describe, expect, it } from "vitest";
import { newJob, responseResult, type StoreTest, succeededEnd, T0 } from "./harness.js";

/** Cancelling queued and running jobs. */
export function cancelTests(t: StoreTest): void {
  const { insert, claim, claimOne, finish, get } = t;

  describe("cancel", () => {
    it("cancels a queued job", async () => {
      const job = await insert();
      const r = await t.store.jobCancel({ id: job.id, now: T0 + 10 });
      expect(r.kind).toBe("canceled");
      if (r.kind !== "canceled") return;
      expect(r.wasRunning).toBe(false);
      expect(r.job).toMatchObject({ id: job.id, status: "canceled", finishedAt: T0 + 10 });
      expect((await get(job.id, T0 + 10)).status).toBe("canceled");
      expect(await claim(T0 + 20)).toEqual([]);
      expect(await t.store.jobNextScheduledAt()).toBeNull();
      expect(await t.store.attemptList({ jobId: job.id })).toEqual([]);
    });

    it("cancels a running job: the attempt closes as canceled and the old holder cannot finish it", async () => {
      const job = await insert();
      const claimed = await claimOne(T0 + 10);
      const r = await t.store.jobCancel({ id: job.id, now: T0 + 50 });
      expect(r.kind).toBe("canceled");
      if (r.kind !== "canceled") return;
      expect(r.wasRunning).toBe(true);
      expect(r.job).toMatchObject({ status: "canceled", attempt: 1, finishedAt: T0 + 50 });

      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt).toMatchObject({
        attempt: 1,
        outcome: "canceled",
        finishedAt: T0 + 50,
        errorCode: "canceled",
      });

      // The call came back after all: its success must not take.
      const result = responseResult(claimed, T0 + 60);
      expect(await finish(claimed, T0 + 60, { status: "succeeded" }, succeededEnd(), result)).toBe(
        false,
      );
      expect(await finish(claimed, T0 + 60, null, succeededEnd())).toBe(false);
      expect((await get(job.id, T0 + 60)).status).toBe("canceled");
      expect(await t.store.resultGet({ jobId: job.id })).toBeNull();
      const [after] = await t.store.attemptList({ jobId: job.id });
      expect(after?.outcome).toBe("canceled");
      expect(after?.finishedAt).toBe(T0 + 50);
    });

    it("a finished job is already-finished, and so is a canceled one", async () => {
      const done = await insert({ createdAt: T0 });
      const claimed = await claimOne(T0 + 10);
      await finish(claimed, T0 + 20, { status: "succeeded" });
      const r = await t.store.jobCancel({ id: done.id, now: T0 + 30 });
      expect(r.kind).toBe("already-finished");
      if (r.kind === "already-finished") expect(r.job.status).toBe("succeeded");
      expect((await get(done.id, T0 + 30)).status).toBe("succeeded");

      const canceled = await insert({ createdAt: T0 + 1 });
      await t.store.jobCancel({ id: canceled.id, now: T0 + 40 });
      const again = await t.store.jobCancel({ id: canceled.id, now: T0 + 50 });
      expect(again.kind).toBe("already-finished");
      if (again.kind === "already-finished") expect(again.job.finishedAt).toBe(T0 + 40);
    });

    it("an unknown job is not-found", async () => {
      await insert();
      expect(await t.store.jobCancel({ id: newJob().id, now: T0 })).toEqual({ kind: "not-found" });
    });

    it("a canceled job expires ttl after the cancel, and is kept without a ttl", async () => {
      const withTtl = await insert({ ttlMs: 5_000, createdAt: T0 });
      const withoutTtl = await insert({ ttlMs: null, createdAt: T0 + 1 });
      const a = await t.store.jobCancel({ id: withTtl.id, now: T0 + 100 });
      const b = await t.store.jobCancel({ id: withoutTtl.id, now: T0 + 100 });
      expect(a.kind === "canceled" && a.job.expiresAt).toBe(T0 + 5_100);
      expect(b.kind === "canceled" && b.job.expiresAt).toBeNull();
      expect(await t.store.jobNextExpiry()).toBe(T0 + 5_100);
      expect(await t.store.jobGet({ id: withTtl.id, now: T0 + 5_100 })).toBeNull();
      expect(await t.store.jobGet({ id: withoutTtl.id, now: T0 + 5_100 })).not.toBeNull();
    });
  });
}
