import { describe, expect, it } from "vitest";
import type { Job } from "../../../src/job/types.js";
import {
  httpFailedEnd,
  newJob,
  responseResult,
  type StoreTest,
  succeededEnd,
  T0,
} from "./harness.js";

/** Listing jobs, their attempts and results. */
export function readTests(t: StoreTest): void {
  const { insert, claim, claimOne, finish, get, listIds } = t;

  describe("list", () => {
    it("lists newest first", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 4; i++) ids.push((await insert({ createdAt: T0 + i })).id);
      expect(await listIds(T0 + 10)).toEqual([...ids].reverse());
    });

    it("filters by several statuses", async () => {
      // Scheduled far ahead so the claims below leave it queued.
      const queued = await insert({ createdAt: T0, scheduledAt: T0 + 1_000_000 });
      const running = await insert({ createdAt: T0 + 1 });
      const succeeded = await insert({ createdAt: T0 + 2 });
      const failed = await insert({ createdAt: T0 + 3, maxAttempts: 1 });
      const canceled = await insert({ createdAt: T0 + 4 });
      await t.store.jobCancel({ id: canceled.id, now: T0 + 10 });
      const [r, s, f] = await claim(T0 + 10, 10);
      expect([r!.id, s!.id, f!.id]).toEqual([running.id, succeeded.id, failed.id]);
      await finish(s!, T0 + 20, { status: "succeeded" });
      await finish(f!, T0 + 20, { status: "failed" }, httpFailedEnd(500, false));

      const now = T0 + 30;
      expect(await listIds(now, { statuses: ["queued", "canceled"] })).toEqual([
        canceled.id,
        queued.id,
      ]);
      expect(await listIds(now, { statuses: ["running"] })).toEqual([running.id]);
      expect(await listIds(now, { statuses: ["succeeded", "failed", "running"] })).toEqual([
        failed.id,
        succeeded.id,
        running.id,
      ]);
      expect(await listIds(now)).toHaveLength(5);
    });

    it("filters by tags, all of which must match", async () => {
      const xy = await insert({ createdAt: T0, tags: ["x", "y"] });
      const x = await insert({ createdAt: T0 + 1, tags: ["x"] });
      const yz = await insert({ createdAt: T0 + 2, tags: ["y", "z"] });
      const none = await insert({ createdAt: T0 + 3, tags: [] });

      expect(await listIds(T0 + 10, { tags: ["x"] })).toEqual([x.id, xy.id]);
      expect(await listIds(T0 + 10, { tags: ["y"] })).toEqual([yz.id, xy.id]);
      expect(await listIds(T0 + 10, { tags: ["x", "y"] })).toEqual([xy.id]);
      expect(await listIds(T0 + 10, { tags: ["x", "z"] })).toEqual([]);
      expect(await listIds(T0 + 10, { tags: ["nope"] })).toEqual([]);
      expect(await listIds(T0 + 10, { tags: [] })).toEqual([none.id, yz.id, x.id, xy.id]);
    });

    it("filters by createdAfter and createdBefore, both exclusive", async () => {
      const at10 = await insert({ createdAt: T0 + 10 });
      const at20 = await insert({ createdAt: T0 + 20 });
      const at30 = await insert({ createdAt: T0 + 30 });
      const now = T0 + 100;
      expect(await listIds(now, { createdAfter: T0 + 10 })).toEqual([at30.id, at20.id]);
      expect(await listIds(now, { createdBefore: T0 + 30 })).toEqual([at20.id, at10.id]);
      expect(await listIds(now, { createdAfter: T0 + 10, createdBefore: T0 + 30 })).toEqual([
        at20.id,
      ]);
      expect(await listIds(now, { createdAfter: T0 + 9, createdBefore: T0 + 31 })).toEqual([
        at30.id,
        at20.id,
        at10.id,
      ]);
      expect(await listIds(now, { createdAfter: T0 + 20, createdBefore: T0 + 30 })).toEqual([]);
    });

    it("pages with a cursor and limit, and says where the next page starts", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await insert({ createdAt: T0 + i })).id);
      const [j1, j2, j3, j4, j5] = ids;
      const now = T0 + 10;

      const p1 = await t.store.jobList({ now, limit: 2 });
      expect(p1.jobs.map((j) => j.id)).toEqual([j5, j4]);
      expect(p1.next).not.toBeNull();
      const p2 = await t.store.jobList({ now, limit: 2, after: { id: j4! } });
      expect(p2.jobs.map((j) => j.id)).toEqual([j3, j2]);
      expect(p2.next).not.toBeNull();
      const p3 = await t.store.jobList({ now, limit: 2, after: { id: j2! } });
      expect(p3.jobs.map((j) => j.id)).toEqual([j1]);
      expect(p3.next).toBeNull();

      // A page that ends exactly on the last job has no more.
      const exact = await t.store.jobList({ now, limit: 2, after: { id: j3! } });
      expect(exact.jobs.map((j) => j.id)).toEqual([j2, j1]);
      expect(exact.next).toBeNull();
      const all = await t.store.jobList({ now, limit: 5 });
      expect(all.jobs).toHaveLength(5);
      expect(all.next).toBeNull();
      const past = await t.store.jobList({ now, limit: 2, after: { id: j1! } });
      expect(past).toEqual({ jobs: [], next: null });
    });

    it("pages over filtered results, and hidden expired jobs do not count towards more", async () => {
      const tagged: string[] = [];
      for (let i = 0; i < 3; i++) {
        tagged.push((await insert({ createdAt: T0 + i, tags: ["t"] })).id);
        await insert({ createdAt: T0 + i, tags: ["other"] });
      }
      // The oldest tagged job expires at T0 + 110.
      const expiring = await insert({ createdAt: T0 + 5, tags: ["t"], ttlMs: 100 });
      await t.store.jobCancel({ id: expiring.id, now: T0 + 10 });

      const before = await t.store.jobList({ now: T0 + 109, limit: 3, tags: ["t"] });
      expect(before.jobs.map((j) => j.id)).toEqual([expiring.id, tagged[2], tagged[1]]);
      expect(before.next).not.toBeNull();

      const p1 = await t.store.jobList({ now: T0 + 110, limit: 2, tags: ["t"] });
      expect(p1.jobs.map((j) => j.id)).toEqual([tagged[2], tagged[1]]);
      expect(p1.next).not.toBeNull();
      const p2 = await t.store.jobList({
        now: T0 + 110,
        limit: 2,
        tags: ["t"],
        after: { id: tagged[1]! },
      });
      expect(p2.jobs.map((j) => j.id)).toEqual([tagged[0]]);
      expect(p2.next).toBeNull();
      const exact = await t.store.jobList({ now: T0 + 110, limit: 3, tags: ["t"] });
      expect(exact.jobs).toHaveLength(3);
      expect(exact.next).toBeNull();
    });

    it("returns whole jobs, as get does", async () => {
      const job = await insert({
        headers: { a: "b" },
        tags: ["t"],
        body: { kind: "bytes", bytes: Uint8Array.from([9, 8, 7]) },
      });
      const { jobs } = await t.store.jobList({ now: T0, limit: 10 });
      const got = await get(job.id, T0);
      expect(jobs).toHaveLength(1);
      expect(jobs[0]!.headers).toEqual(got.headers);
      expect(jobs[0]!.tags).toEqual(got.tags);
      expect(jobs[0]!.body?.kind === "bytes" && Array.from(jobs[0]!.body.bytes)).toEqual([9, 8, 7]);
    });
  });

  describe("attempts and results", () => {
    it("lists a job's attempts oldest first with their fields", async () => {
      const job = await insert({ maxAttempts: 3 });
      const first = await claimOne(T0 + 10);
      await finish(
        first,
        T0 + 35,
        { status: "queued", runAt: T0 + 1_000 },
        httpFailedEnd(503, true),
        responseResult(first, T0 + 35, 503),
      );
      const second = await claimOne(T0 + 1_000);
      await finish(
        second,
        T0 + 1_040,
        { status: "succeeded" },
        succeededEnd(40),
        responseResult(second, T0 + 1_040),
      );
      await insert({ createdAt: T0 + 2_000 }); // another job's history must not leak in

      expect(await t.store.attemptList({ jobId: job.id })).toEqual([
        {
          jobId: job.id,
          attempt: 1,
          outcome: "failed",
          startedAt: T0 + 10,
          finishedAt: T0 + 35,
          responseStatus: 503,
          errorCode: "http_status",
          error: "the target answered 503",
          durationMs: 25,
          retryable: true,
          node: "w1",
        },
        {
          jobId: job.id,
          attempt: 2,
          outcome: "succeeded",
          startedAt: T0 + 1_000,
          finishedAt: T0 + 1_040,
          responseStatus: 200,
          errorCode: null,
          error: null,
          durationMs: 40,
          retryable: false,
          node: "w1",
        },
      ]);
      expect(await t.store.attemptList({ jobId: newJob().id })).toEqual([]);
    });

    it("the result is null before the first attempt ends, then the latest attempt's", async () => {
      const job = await insert();
      expect(await t.store.resultGet({ jobId: job.id })).toBeNull();
      const first = await claimOne(T0 + 10);
      expect(await t.store.resultGet({ jobId: job.id })).toBeNull();
      await finish(
        first,
        T0 + 20,
        { status: "queued", runAt: T0 + 30 },
        httpFailedEnd(500, true),
        responseResult(first, T0 + 20, 500, "oops"),
      );
      expect((await t.store.resultGet({ jobId: job.id }))?.attempt).toBe(1);

      const second = await claimOne(T0 + 30);
      await finish(
        second,
        T0 + 40,
        { status: "succeeded" },
        succeededEnd(),
        responseResult(second, T0 + 40, 200, "fine"),
      );
      const got = await t.store.resultGet({ jobId: job.id });
      expect(got?.attempt).toBe(2);
      expect(got?.finishedAt).toBe(T0 + 40);
      expect(got?.error).toBeNull();
      expect(got?.response?.headers).toEqual({
        "content-type": "application/json",
        "x-request-id": "r-2",
      });
      expect(new TextDecoder().decode(got?.response?.body)).toBe("fine");
    });
  });

  describe("filters", () => {
    it("by queue, by job ids, and by creation window read from indexes", async () => {
      await t.store.queueCreate({
        name: "mail",
        concurrency: null,
        rate: null,
        maxAttempts: null,
        backoffStrategy: null,
        backoffBaseMs: null,
        ttlMs: null,
        paused: false,
      });
      const a = await insert({ queue: "mail", createdAt: T0 + 1 });
      const b = await insert({ createdAt: T0 + 2 });
      const c = await insert({ queue: "mail", createdAt: T0 + 3 });
      expect(await listIds(T0 + 10, { queue: "mail" })).toEqual([c.id, a.id]);
      expect(await listIds(T0 + 10, { jobIds: [a.id, b.id] })).toEqual([b.id, a.id]);
      expect(await listIds(T0 + 10, { queue: "mail", createdBefore: T0 + 3 })).toEqual([a.id]);
    });

    it("a finishing-time window lists finished jobs, latest finished first, and pages by it", async () => {
      const jobs: Job[] = [];
      for (let i = 0; i < 3; i++) jobs.push(await insert({ createdAt: T0 + i }));
      // Finished in another order than created: 2nd, then 0th, then 1st.
      for (const [k, i] of [2, 0, 1].entries()) {
        const claimed = await t.store.jobClaim({
          queues: [{ name: "default", limit: 10, rate: null }],
          limit: 10,
          leaseMs: 60_000,
          node: "n",
          now: T0 + 10,
        });
        const mine =
          claimed.jobs.find((j) => j.id === jobs[i]!.id) ?? (await get(jobs[i]!.id, T0 + 10));
        expect(
          await t.store.jobFinishAttempt({
            lease: { jobId: mine.id, token: (mine as { leaseToken?: string }).leaseToken ?? "" },
            end: {
              outcome: "failed",
              responseStatus: 500,
              errorCode: "http_status",
              error: "500",
              retryable: false,
              durationMs: 1,
            },
            next: { status: "failed" },
            result: null,
            now: T0 + 100 + k,
          }),
        ).toBe(true);
        // The other claimed jobs go back unharmed.
        for (const other of claimed.jobs.filter((j) => j.id !== mine.id)) {
          await t.store.jobFinishAttempt({
            lease: { jobId: other.id, token: other.leaseToken },
            end: {
              outcome: "interrupted",
              responseStatus: null,
              errorCode: "interrupted",
              error: "x",
              retryable: true,
              durationMs: 1,
            },
            next: { status: "released" },
            result: null,
            now: T0 + 100 + k,
          });
        }
      }
      const order = [jobs[1]!.id, jobs[0]!.id, jobs[2]!.id];
      expect(await listIds(T0 + 200, { finishedAfter: T0 + 99 })).toEqual(order);
      expect(await listIds(T0 + 200, { statuses: ["failed"], finishedAfter: T0 + 100 })).toEqual(
        order.slice(0, 2),
      );
      const p1 = await t.store.jobList({ finishedAfter: T0, limit: 2, now: T0 + 200 });
      expect(p1.jobs.map((j) => j.id)).toEqual(order.slice(0, 2));
      expect(p1.next).toEqual({ id: jobs[0]!.id, finishedAt: T0 + 101 });
      const p2 = await t.store.jobList({
        finishedAfter: T0,
        limit: 2,
        after: p1.next!,
        now: T0 + 200,
      });
      expect(p2.jobs.map((j) => j.id)).toEqual([jobs[2]!.id]);
      expect(p2.next).toBeNull();
    });

    it("checks host, method, URL text, error code, attempts and updated time row by row, a bounded number a page", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 6; i++) {
        ids.push(
          (
            await insert({
              createdAt: T0 + i,
              url: `https://${i % 2 ? "odd" : "even"}.test/path-${i}`,
              host: i % 2 ? "odd.test" : "even.test",
              method: i < 3 ? "GET" : "POST",
            })
          ).id,
        );
      }
      expect(await listIds(T0 + 10, { host: "odd.test" })).toEqual([ids[5], ids[3], ids[1]]);
      expect(await listIds(T0 + 10, { method: "GET", host: "even.test" })).toEqual([
        ids[2],
        ids[0],
      ]);
      expect(await listIds(T0 + 10, { urlContains: "path-4" })).toEqual([ids[4]]);
      expect(await listIds(T0 + 10, { updatedAfter: T0 + 3 })).toEqual([ids[5], ids[4]]);
      expect(await listIds(T0 + 10, { minAttempts: 1 })).toEqual([]);

      // At most 3 jobs looked at a page: a short page, and a cursor to go on from.
      const p1 = await t.store.jobList({ host: "odd.test", limit: 10, scanLimit: 3, now: T0 + 10 });
      expect(p1.jobs.map((j) => j.id)).toEqual([ids[5], ids[3]]);
      expect(p1.next).toEqual({ id: ids[3] });
      const p2 = await t.store.jobList({
        host: "odd.test",
        limit: 10,
        scanLimit: 3,
        after: p1.next!,
        now: T0 + 10,
      });
      expect(p2.jobs.map((j) => j.id)).toEqual([ids[1]]);
      // The walk stopped at its bound: more may follow, so the next page is asked for (and empty).
      expect(p2.next).toEqual({ id: ids[0] });
      const p3 = await t.store.jobList({
        host: "odd.test",
        limit: 10,
        scanLimit: 3,
        after: p2.next!,
        now: T0 + 10,
      });
      expect(p3).toEqual({ jobs: [], next: null });
      // A page with no match at all still moves on.
      const empty = await t.store.jobList({
        urlContains: "path-0",
        limit: 10,
        scanLimit: 2,
        now: T0 + 10,
      });
      expect(empty).toEqual({ jobs: [], next: { id: ids[4] } });
    });
  });
}
