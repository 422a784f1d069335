import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CursorExpiredError, WatcherBehindError } from "../../src/job/errors.js";
import { createEventHub, type EventHub, type WatchItem } from "../../src/queue/event-hub.js";
import type { JobStore } from "../../src/store/job-store.js";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { newJob } from "../store/conformance/harness.js";

/** The hub on a real SQLite store: fan-out, catch-up from behind its memory, slow watchers. */
describe("event hub", () => {
  let dir: string;
  let store: JobStore;
  let hubs: EventHub[];
  let aborts: AbortController[];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "jobqueue-hub-"));
    store = await createSqliteJobStore({ path: join(dir, "jobqueue.db") });
    hubs = [];
    aborts = [];
  });

  afterEach(async () => {
    for (const a of aborts) a.abort();
    for (const h of hubs) await h.stop();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function hub(options: { ringSize?: number; bufferSize?: number; heartbeatMs?: number } = {}) {
    const h = createEventHub({ store, logger: pino({ level: "silent" }), pollMs: 20, ...options });
    hubs.push(h);
    return h;
  }

  function watch(h: EventHub, after: string | null, jobIds?: string[]) {
    const ac = new AbortController();
    aborts.push(ac);
    const filter = jobIds ? { jobIds: new Set(jobIds) } : {};
    const it = h.watch({ after, filter, signal: ac.signal })[Symbol.asyncIterator]();
    return { it, abort: () => ac.abort() };
  }

  async function insert(n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const job = newJob({ createdAt: Date.now() });
      await store.jobInsert(job);
      ids.push(job.id);
    }
    return ids;
  }

  /** The next `n` events (heartbeats skipped). */
  async function events(it: AsyncIterator<WatchItem>, n: number) {
    const out = [];
    while (out.length < n) {
      const { value, done } = await it.next();
      if (done) throw new Error("the stream ended");
      if (value.kind === "event") out.push(value.event);
    }
    return out;
  }

  it("starts with a heartbeat at the head, then hands every watcher each new event once", async () => {
    await insert(2);
    const h = hub();
    const a = watch(h, null);
    const b = watch(h, null);
    const first = (await a.it.next()).value as WatchItem;
    expect(first).toMatchObject({ kind: "heartbeat", cursor: await store.eventHead() });
    await b.it.next();
    const ids = await insert(3);
    const seenA = await events(a.it, 3);
    const seenB = await events(b.it, 3);
    expect(seenA.map((e) => [e.jobId, e.type])).toEqual(ids.map((id) => [id, "queued"]));
    expect(seenB.map((e) => e.cursor)).toEqual(seenA.map((e) => e.cursor));
    expect(h.watchers).toBe(2);
    a.abort();
    b.abort();
    await a.it.return?.();
    await b.it.return?.();
    expect(h.watchers).toBe(0);
  });

  it("a watcher of some jobs gets only theirs, and heartbeats carry the cursor past the others", async () => {
    const h = hub({ heartbeatMs: 30 });
    const [mine] = await insert(1);
    const w = watch(h, null, [mine!]);
    await w.it.next();
    await insert(4);
    // Nothing of its job happened: heartbeats move on regardless.
    const head = await store.eventHead();
    for (;;) {
      const { value } = await w.it.next();
      expect(value.kind).toBe("heartbeat");
      if (value.kind === "heartbeat" && value.cursor === head) break;
    }
    await store.jobCancel({ id: mine! });
    const [canceled] = await events(w.it, 1);
    expect(canceled).toMatchObject({ jobId: mine, type: "canceled", status: "canceled" });
  });

  it("resumes from a cursor behind its memory: catches up from the store and joins live, no gap, no repeat", async () => {
    const h = hub({ ringSize: 3 });
    const start = await store.eventHead();
    const live = watch(h, null);
    await live.it.next();
    const before = await insert(20);
    await events(live.it, 20);
    // 20 events behind, 3 in memory: the resumer reads 17 from the store while more arrive.
    const resumer = watch(h, start);
    await resumer.it.next();
    const during = insert(20);
    const got = await events(resumer.it, 40);
    const after = await during;
    expect(got.map((e) => e.jobId)).toEqual([...before, ...after]);
    const cursors = got.map((e) => e.cursor);
    expect([...cursors].sort()).toEqual(cursors);
    expect(new Set(cursors).size).toBe(40);
  });

  it("drops a watcher whose client does not read, with the cursor to resume from; the others go on", async () => {
    const h = hub({ bufferSize: 5 });
    const slow = watch(h, null);
    const fast = watch(h, null);
    const start = (await slow.it.next()).value as WatchItem & { kind: "heartbeat" };
    await fast.it.next();
    // One reads as events come; the other reads nothing.
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const [id] = await insert(1);
      ids.push(id!);
      expect((await events(fast.it, 1))[0]!.jobId).toBe(id);
    }
    const err = await slow.it.next().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(WatcherBehindError);
    expect((err as WatcherBehindError).cursor).toBe(start.cursor);
    // Resuming where it was gets everything it missed.
    const again = watch(h, start.cursor);
    await again.it.next();
    expect((await events(again.it, 12)).map((e) => e.jobId)).toEqual(ids);
  });

  it("refuses a cursor it never gave out and one older than the retention, before anything is sent", async () => {
    const h = hub();
    const bad = watch(h, "12");
    await expect(bad.it.next()).rejects.toMatchObject({ field: "after_cursor" });
    const start = await store.eventHead();
    await insert(3);
    await store.eventDeleteBefore({ before: Date.now() + 60_000, limit: 100 });
    const old = watch(h, start);
    await expect(old.it.next()).rejects.toBeInstanceOf(CursorExpiredError);
  });
});
