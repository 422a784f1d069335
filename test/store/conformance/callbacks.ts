import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../../src/audit/audit-event.js";
import { CALLBACK_TAG, DEFAULT_CALLBACK_SETTINGS, resultJson } from "../../../src/job/callbacks.js";
import type { Operation } from "../../../src/job/operations.js";
import type { Job } from "../../../src/job/types.js";
import type { ClaimedJob, ResultRecord } from "../../../src/store/job-store.js";
import {
  DEFAULT_QUEUE_CLAIM,
  httpFailedEnd,
  LEASE_MS,
  responseResult,
  type StoreTest,
  succeededEnd,
  T0,
} from "./harness.js";

const HOOK = "https://hooks.example/done";

/**
 * Callbacks: a job with a callback URL that ends gets its delivery job in the transaction of the
 * transition (src/job/callbacks.ts decides what it is; the driver writes it).
 */
export function callbackTests(t: StoreTest): void {
  const { insert, claimOne, get } = t;

  /** Ends a claimed attempt as the worker does for a job that reports its outcome. */
  function finishReporting(
    job: ClaimedJob,
    now: number,
    status: "succeeded" | "failed",
    result: ResultRecord | null,
    store = t.store,
  ) {
    return store.jobFinishAttempt({
      lease: { jobId: job.id, token: job.leaseToken },
      now,
      end: status === "succeeded" ? succeededEnd() : httpFailedEnd(500, true),
      next: { status },
      result,
      reportsOutcome: true,
    });
  }

  async function deliveries(now: number): Promise<Job[]> {
    const { jobs } = await t.store.jobList({ now, limit: 100, tags: [CALLBACK_TAG] });
    return jobs;
  }

  describe("callbacks", () => {
    it("a job that succeeds gets its delivery in the same write: the result's JSON, linked both ways", async () => {
      const job = await insert({ callbackUrl: HOOK, owner: "alice", priority: 3, ttlMs: 60_000 });
      const claimed = await claimOne(T0 + 10);
      const result = responseResult(claimed, T0 + 20, 201, '{"order":42}');
      expect(await finishReporting(claimed, T0 + 20, "succeeded", result)).toBe(true);

      const source = await get(job.id, T0 + 20);
      expect(source.status).toBe("succeeded");
      expect(source.callbackJobId).not.toBeNull();
      const [delivery] = await deliveries(T0 + 20);
      expect(delivery).toBeDefined();
      expect(delivery!.id).toBe(source.callbackJobId);
      const stored = await t.store.resultGet({ jobId: job.id });
      expect(delivery).toMatchObject({
        status: "queued",
        method: "POST",
        url: HOOK,
        callbackOf: job.id,
        callbackUrl: null,
        owner: "alice",
        priority: 3,
        ttlMs: 60_000,
        tags: [CALLBACK_TAG],
        maxAttempts: DEFAULT_CALLBACK_SETTINGS.maxAttempts,
        createdAt: T0 + 20,
        body: { kind: "json", value: resultJson(source, stored) },
      });
      expect(delivery!.body).toMatchObject({ value: { status: "succeeded" } });

      // The delivery is a job like any other: claimed, and when it ends, it reports nothing.
      const claimedDelivery = await claimOne(T0 + 30);
      expect(claimedDelivery.id).toBe(delivery!.id);
      expect(await finishReporting(claimedDelivery, T0 + 40, "succeeded", null)).toBe(true);
      expect((await get(delivery!.id, T0 + 40)).callbackJobId).toBeNull();
      expect(await deliveries(T0 + 40)).toHaveLength(1);
    });

    it("a failed job, a canceled one and a rescued one that failed each get one", async () => {
      const failed = await insert({ callbackUrl: HOOK, maxAttempts: 1, createdAt: T0 });
      const c1 = await claimOne(T0 + 10);
      const failure = responseResult(c1, T0 + 20, 500, "boom");
      await finishReporting(c1, T0 + 20, "failed", {
        ...failure,
        response: { ...failure.response!, bodyEncoding: "text" },
      });

      const canceled = await insert({ callbackUrl: HOOK, createdAt: T0 + 1 });
      const cancel = await t.store.jobCancel({ id: canceled.id, now: T0 + 30 });
      expect(cancel.kind).toBe("canceled");
      if (cancel.kind === "canceled") expect(cancel.job.callbackJobId).not.toBeNull();

      const lost = await insert({ callbackUrl: HOOK, maxAttempts: 1, createdAt: T0 + 2 });
      const [claimedLost] = (
        await t.store.jobClaim({
          queues: DEFAULT_QUEUE_CLAIM,
          now: T0 + 40,
          limit: 1,
          leaseMs: 1_000,
          node: "w1",
        })
      ).jobs;
      expect(claimedLost!.id).toBe(lost.id);
      expect(await t.store.jobRescueExpired({ now: T0 + 2_000, limit: 10 })).toEqual([
        { jobId: lost.id, status: "failed" },
      ]);

      const byJob = new Map((await deliveries(T0 + 2_000)).map((d) => [d.callbackOf, d]));
      expect(byJob.size).toBe(3);
      for (const [id, status] of [
        [failed.id, "failed"],
        [canceled.id, "canceled"],
        [lost.id, "failed"],
      ] as const) {
        const source = await get(id, T0 + 2_000);
        expect(source.callbackJobId).toBe(byJob.get(id)!.id);
        const body = byJob.get(id)!.body as { kind: "json"; value: Record<string, unknown> };
        expect(body.value).toEqual(
          resultJson(source, await t.store.resultGet({ jobId: id })) as Record<string, unknown>,
        );
        expect(body.value.status).toBe(status);
      }
      expect(byJob.get(failed.id)!.body).toMatchObject({
        value: { response_status: 500, response_body: "boom" },
      });
      expect(byJob.get(canceled.id)!.body).toMatchObject({
        value: { attempt: 0, response_status: null, finished_at: null },
      });
    });

    it("a job without a callback URL, a retry and a lost finish make none", async () => {
      await insert({ createdAt: T0 });
      const plain = await claimOne(T0 + 10);
      await finishReporting(plain, T0 + 20, "succeeded", null);

      await insert({ callbackUrl: HOOK, createdAt: T0 + 1, maxAttempts: 3 });
      const retried = await claimOne(T0 + 30);
      await t.store.jobFinishAttempt({
        lease: { jobId: retried.id, token: retried.leaseToken },
        now: T0 + 40,
        end: httpFailedEnd(503, true),
        next: { status: "queued", runAt: T0 + 1_000 },
        result: null,
        reportsOutcome: true,
      });
      expect(await deliveries(T0 + 40)).toEqual([]);

      // Canceled while its call was in flight: the cancel reports; the late finish does not.
      await t.store.jobCancel({ id: retried.id, now: T0 + 50 });
      const stale: ClaimedJob = { ...retried };
      expect(await finishReporting(stale, T0 + 60, "succeeded", null)).toBe(false);
      const made = await deliveries(T0 + 60);
      expect(made).toHaveLength(1);
      expect(made[0]!.body).toMatchObject({ value: { status: "canceled" } });
    });

    it("a job run again after it ended reports each ending; it links the latest delivery", async () => {
      const job = await insert({ callbackUrl: HOOK, maxAttempts: 1 });
      const first = await claimOne(T0 + 10);
      await finishReporting(first, T0 + 20, "failed", null);
      const firstDelivery = (await get(job.id, T0 + 20)).callbackJobId;

      const retry = await t.store.jobRetry({ id: job.id, overrides: null, now: T0 + 30 });
      expect(retry.kind).toBe("retried");
      const all = await t.claim(T0 + 40);
      const second = all.find((c) => c.id === job.id)!;
      await finishReporting(second, T0 + 50, "succeeded", null);

      const latest = (await get(job.id, T0 + 50)).callbackJobId;
      expect(latest).not.toBeNull();
      expect(latest).not.toBe(firstDelivery);
      const made = await deliveries(T0 + 50);
      expect(made.map((d) => d.id).sort()).toEqual([firstDelivery, latest].sort());
    });

    it("a bulk cancel reports each job it cancels, in the batch's transaction", async () => {
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) {
        ids.push((await insert({ callbackUrl: HOOK, tags: ["bulk"], createdAt: T0 + i })).id);
      }
      const op: Operation = {
        id: `op_${"0".repeat(25)}7`,
        kind: "cancel",
        filter: { tags: ["bulk"] },
        overrides: null,
        owner: null,
        principal: null,
        state: "running",
        estimate: 3,
        estimateCapped: false,
        examined: 0,
        affected: 0,
        upperId: `j_${"Z".repeat(26)}`,
        cursor: null,
        error: null,
        createdAt: T0 + 10,
        updatedAt: T0 + 10,
        finishedAt: null,
      };
      await t.store.operationCreate(op);
      const audit = (o: Operation): AuditEvent => ({
        at: o.updatedAt,
        principal: null,
        action: "CancelJobs",
        jobId: null,
        remoteAddress: null,
        protocol: "internal",
        outcome: "ok",
        detail: null,
      });
      expect(
        await t.store.operationStep({ id: op.id, batch: 10, scan: 100, audit, now: T0 + 20 }),
      ).toMatchObject({ state: "succeeded", affected: 3 });
      const made = await deliveries(T0 + 20);
      expect(made.map((d) => d.callbackOf).sort()).toEqual([...ids].sort());
      for (const d of made) {
        expect(d.status).toBe("queued");
        expect((await get(d.callbackOf!, T0 + 20)).callbackJobId).toBe(d.id);
      }
    });

    it("a finish racing a cancel on another node: one transition, exactly one delivery", async () => {
      if (!t.driver.concurrentNodes) return;
      const other = await t.peer();
      for (let round = 0; round < 10; round++) {
        const job = await insert({ callbackUrl: HOOK, createdAt: T0 + round });
        const [claimed] = (
          await t.store.jobClaim({
            queues: DEFAULT_QUEUE_CLAIM,
            now: T0 + 100,
            limit: 1,
            leaseMs: LEASE_MS,
            node: "a",
          })
        ).jobs;
        expect(claimed!.id).toBe(job.id);
        const [finished] = await Promise.all([
          finishReporting(claimed!, T0 + 200, "succeeded", null),
          other.store.jobCancel({ id: job.id, now: T0 + 200 }),
        ]);
        const source = await get(job.id, T0 + 300);
        expect(source.status).toBe(finished ? "succeeded" : "canceled");
        const mine = (await deliveries(T0 + 300)).filter((d) => d.callbackOf === job.id);
        expect(mine).toHaveLength(1);
        expect(mine[0]!.id).toBe(source.callbackJobId);
        expect(mine[0]!.body).toMatchObject({ value: { status: source.status } });
      }
    });
  });
}
