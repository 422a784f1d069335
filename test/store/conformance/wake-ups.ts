import { describe, expect, it } from "vitest";
import type { JobEvent } from "../../../src/notify/notifier.js";
import { waitFor } from "../../helpers/wait-for.js";
import { httpFailedEnd, newJob, type StoreTest, T0 } from "./harness.js";

/**
 * The store's signals: sent for every change that matters to workers and watchers, never before
 * the change can be seen, and (with several nodes) heard by the other nodes too.
 */
export function wakeUpTests(t: StoreTest): void {
  describe("wake-ups", () => {
    it("a due insert says work is available, and whoever hears it finds the job", async () => {
      const seen: (string | null)[] = [];
      const job = newJob();
      t.store.signals.onJobsAvailable(() => {
        // A listener reads the store at once: the job must be there.
        void t.store.jobGet({ id: job.id }).then((j) => seen.push(j?.id ?? null));
      });
      await t.store.jobInsert(job);
      await waitFor(() => seen.length > 0, { what: "a jobs-available signal" });
      expect(seen[0]).toBe(job.id);
    });

    it("a scheduled insert and a retry say when they are due; claim, finish and cancel say what changed", async () => {
      const scheduled: number[] = [];
      const changes: JobEvent[] = [];
      t.store.signals.onJobScheduled((at) => scheduled.push(at));
      t.store.signals.onJobChanged((e) => changes.push(e));

      await t.store.jobInsert(newJob({ scheduledAt: T0 + 5_000 }));
      const job = await t.insert();
      const claimed = await t.claim(T0, 1);
      expect(claimed.map((j) => j.id)).toEqual([job.id]);
      await t.finish(
        claimed[0]!,
        T0 + 10,
        { status: "queued", runAt: T0 + 2_000 },
        httpFailedEnd(503, true),
      );
      const other = await t.insert();
      await t.store.jobCancel({ id: other.id, now: T0 + 20 });

      await waitFor(() => scheduled.length >= 2 && changes.some((c) => c.status === "canceled"), {
        what: "the signals",
      });
      expect(scheduled).toEqual([T0 + 5_000, T0 + 2_000]);
      expect(changes.filter((c) => c.jobId === job.id).map((c) => c.status)).toEqual([
        "queued",
        "running",
        "queued",
      ]);
      expect(changes.filter((c) => c.jobId === other.id).map((c) => c.status)).toEqual([
        "queued",
        "canceled",
      ]);
    });

    it("promoting scheduled jobs says work is available, and only when it promoted some", async () => {
      await t.store.jobInsert(newJob({ scheduledAt: T0 + 1_000 }));
      let signals = 0;
      t.store.signals.onJobsAvailable(() => signals++);
      expect(await t.store.jobPromoteScheduled({ now: T0 + 999, limit: 10 })).toBe(0);
      expect(signals).toBe(0);
      expect(await t.store.jobPromoteScheduled({ now: T0 + 1_000, limit: 10 })).toBe(1);
      await waitFor(() => signals > 0, { what: "a jobs-available signal" });
    });

    it.skipIf(!t.driver.concurrentNodes)(
      "another node hears of new work, of a cancel and of a resignation",
      async () => {
        const other = await t.peer();
        let available = 0;
        let resigned = 0;
        const canceled: string[] = [];
        other.store.signals.onJobsAvailable(() => available++);
        other.store.signals.onLeaderResigned(() => resigned++);
        other.store.signals.onJobChanged((e) => {
          if (e.status === "canceled") canceled.push(e.jobId);
        });
        const job = await t.insert();
        await waitFor(() => available > 0, { what: "the other node to hear of the insert" });
        await t.claim(T0, 1);
        await t.store.jobCancel({ id: job.id, now: T0 + 1 });
        await waitFor(() => canceled.includes(job.id), {
          what: "the other node to hear the cancel",
        });
        await t.store.leaderAttemptElect({ node: "a", ttlMs: 60_000, now: T0 });
        await t.store.leaderResign({ node: "a" });
        await waitFor(() => resigned > 0, { what: "the other node to hear the resignation" });
      },
    );
  });
}
