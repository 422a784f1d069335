import { describe, expect, it } from "vitest";
import type { JobStreamEvent } from "../../../src/job/events.js";
import { waitFor } from "../../helpers/wait-for.js";
import { httpFailedEnd, newJob, type StoreTest, succeededEnd, T0 } from "./harness.js";

/** The durable event stream: appended with every change, read in cursor order, resumable. */
export function eventTests(t: StoreTest): void {
  const { insert, claimOne, finish } = t;

  /** Every event after `after`, following the stream page by page. */
  async function all(after: string | null = null, pageSize = 100) {
    const out: JobStreamEvent[] = [];
    let cursor = after;
    for (;;) {
      const { events, head } = await t.store.eventList({ after: cursor, limit: pageSize });
      out.push(...events);
      if (events.length === 0) return { events: out, head };
      cursor = head;
    }
  }

  /**
   * Waits until `n` events can be read. On PostgreSQL an event is readable once no older
   * transaction anywhere in the cluster is still open (tests of other files run at once), so a
   * read right after a write may not see it yet; it never sees a later one before it.
   */
  async function visible(n: number) {
    await waitFor(async () => (await all()).events.length >= n, { what: `${n} events` });
  }

  const summary = (events: JobStreamEvent[]) =>
    events.map((e) => [e.type, e.status, e.attempt ?? null] as const);

  describe("events", () => {
    it("tell a job's life: queued, running with its node, how each attempt ended, the retry, the end", async () => {
      const job = await insert({ tags: ["e"], queue: "default" });
      const first = await claimOne(T0 + 10, "node-a");
      await finish(
        first,
        T0 + 20,
        { status: "queued", runAt: T0 + 1_000 },
        httpFailedEnd(503, true),
      );
      const second = await claimOne(T0 + 1_000, "node-b");
      await finish(second, T0 + 1_050, { status: "succeeded" }, succeededEnd());
      await visible(7);
      const { events } = await all();
      const mine = events.filter((e) => e.jobId === job.id);
      expect(summary(mine)).toEqual([
        ["queued", "queued", null],
        ["running", "running", 1],
        ["attempt_ended", "running", 1],
        ["retry_scheduled", "queued", 1],
        ["running", "running", 2],
        ["attempt_ended", "running", 2],
        ["succeeded", "succeeded", 2],
      ]);
      expect(mine[1]).toMatchObject({ node: "node-a", at: T0 + 10, tags: ["e"], queue: "default" });
      expect(mine[2]).toMatchObject({
        responseStatus: 503,
        errorCode: "http_status",
        outcome: "failed",
        node: "node-a",
      });
      expect(mine[3]).toMatchObject({ runAt: T0 + 1_000, errorCode: "http_status" });
      expect(mine[5]).toMatchObject({ responseStatus: 200, outcome: "succeeded", node: "node-b" });
      // Cursors grow with the stream.
      const cursors = events.map((e) => e.cursor);
      expect([...cursors].sort()).toEqual(cursors);
      expect(new Set(cursors).size).toBe(cursors.length);
    });

    it("tell a retry that is already due when its attempt's end is written as retry_scheduled too", async () => {
      const job = await insert({});
      const claimed = await claimOne(T0 + 10);
      await finish(
        claimed,
        T0 + 20,
        { status: "queued", runAt: T0 + 15 },
        httpFailedEnd(503, true),
      );
      await visible(4);
      const mine = (await all()).events.filter((e) => e.jobId === job.id);
      expect(summary(mine)).toEqual([
        ["queued", "queued", null],
        ["running", "running", 1],
        ["attempt_ended", "running", 1],
        ["retry_scheduled", "queued", 1],
      ]);
    });

    it("tell of a scheduled job, a cancel of a running one, and a deletion", async () => {
      const later = await insert({ scheduledAt: T0 + 60_000 });
      const running = await insert({ createdAt: T0 + 1 });
      const claimed = await claimOne(T0 + 2);
      expect(claimed.id).toBe(running.id);
      await t.store.jobCancel({ id: running.id, now: T0 + 3 });
      await t.store.jobDelete({ id: running.id, now: T0 + 4 });
      await visible(6);
      const { events } = await all();
      expect(summary(events.filter((e) => e.jobId === later.id))).toEqual([
        ["scheduled", "queued", null],
      ]);
      expect(events.find((e) => e.jobId === later.id)?.runAt).toBe(T0 + 60_000);
      expect(summary(events.filter((e) => e.jobId === running.id)).map((s) => s[0])).toEqual([
        "queued",
        "running",
        "attempt_ended",
        "canceled",
        "deleted",
      ]);
    });

    it("resume after a cursor with nothing lost and nothing twice, also events committed meanwhile", async () => {
      await t.store.jobInsertMany(
        Array.from({ length: 5 }, (_, i) => newJob({ createdAt: T0 + i })),
      );
      await visible(5);
      const page = await t.store.eventList({ after: null, limit: 3 });
      expect(page.events).toHaveLength(3);
      // Committed while the reader was away.
      await t.store.jobInsertMany(
        Array.from({ length: 2 }, (_, i) => newJob({ createdAt: T0 + 10 + i })),
      );
      await visible(7);
      const rest = await all(page.head, 2);
      const seen = [...page.events, ...rest.events];
      expect(seen).toHaveLength(7);
      expect(new Set(seen.map((e) => e.cursor)).size).toBe(7);
      expect(await t.store.eventHead()).toBe(rest.head);
      // Nothing after the head.
      expect((await t.store.eventList({ after: rest.head, limit: 10 })).events).toEqual([]);
    });

    it("progress events of a running attempt, and none for a job that is not running", async () => {
      const job = await insert();
      const claimed = await claimOne(T0 + 1);
      await t.store.eventAppend({
        jobId: job.id,
        attempt: 1,
        progress: { phase: "headers", status: 200 },
        now: T0 + 2,
      });
      await t.store.eventAppend({
        jobId: job.id,
        attempt: 1,
        progress: { phase: "body", bytes: 4096 },
        now: T0 + 3,
      });
      await finish(claimed, T0 + 4, { status: "succeeded" });
      await t.store.eventAppend({
        jobId: job.id,
        attempt: 1,
        progress: { phase: "body", bytes: 1 },
        now: T0 + 5,
      });
      await visible(6);
      const progress = (await all()).events.filter((e) => e.type === "progress");
      expect(progress.map((e) => [e.at, e.progress])).toEqual([
        [T0 + 2, { phase: "headers", status: 200 }],
        [T0 + 3, { phase: "body", bytes: 4096 }],
      ]);
    });

    it("a cursor older than the retention is an error, never a silent gap", async () => {
      await insert({ createdAt: T0 });
      await visible(1);
      const old = (await t.store.eventList({ after: null, limit: 10 })).head;
      await insert({ createdAt: T0 + 50_000 });
      await visible(2);
      const afterFirst = (await all(old)).head;
      expect(await t.store.eventDeleteBefore({ before: T0 + 1_000, limit: 100 })).toBe(1);
      const zero = (await t.store.eventHead()).replace(/\d/g, "0");
      await expect(t.store.eventList({ after: zero, limit: 10 })).rejects.toMatchObject({
        name: "CursorExpiredError",
      });
      // A cursor at or after what was deleted still reads on.
      expect((await t.store.eventList({ after: old, limit: 10 })).events).toHaveLength(1);
      expect((await t.store.eventList({ after: afterFirst, limit: 10 })).events).toEqual([]);
      await expect(t.store.eventList({ after: "not-a-cursor", limit: 1 })).rejects.toMatchObject({
        name: "InvalidArgumentError",
        field: "after_cursor",
      });
    });

    it.skipIf(!t.driver.concurrentNodes)(
      "a reader never moves past an event of a transaction that commits later",
      async () => {
        const other = await t.peer();
        // Many writers on two nodes at once, and a reader following the stream meanwhile: every
        // event is read once, whatever order their transactions commit in.
        const writes = Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? other.store : t.store).jobInsert(newJob({ createdAt: T0 + i })),
        );
        const seen: string[] = [];
        let cursor: string | null = null;
        let done = false;
        const reader = (async () => {
          while (!done || seen.length < 40) {
            const page: { events: JobStreamEvent[]; head: string } = await t.store.eventList({
              after: cursor,
              limit: 7,
            });
            seen.push(...page.events.map((e) => e.jobId));
            cursor = page.head;
            if (page.events.length === 0) await new Promise((r) => setTimeout(r, 5));
          }
        })();
        await Promise.all(writes);
        done = true;
        await reader;
        expect(seen).toHaveLength(40);
        expect(new Set(seen).size).toBe(40);
      },
    );
  });
}
