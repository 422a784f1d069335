import { describe, expect, it } from "vitest";
import type { AttemptEndRecord, JobResult } from "../../../src/job/types.js";
import type { NextState } from "../../../src/store/job-store.js";
import {
  bytesOf,
  httpFailedEnd,
  interruptedEnd,
  responseResult,
  type StoreTest,
  succeededEnd,
  T0,
} from "./harness.js";

/** Ending an attempt: only the lease holder moves the job on. */
export function finishTests(t: StoreTest): void {
  const { insert, claim, claimOne, finish, get } = t;

  describe("finishing an attempt", () => {
    it("succeeded: sets finishedAt and expiresAt = finishedAt + ttl, and stores the result", async () => {
      const job = await insert({ ttlMs: 60_000 });
      const claimed = await claimOne(T0 + 10);
      const result = responseResult(claimed, T0 + 500, 201, '{"created":true}');

      expect(
        await finish(claimed, T0 + 500, { status: "succeeded" }, succeededEnd(490), result),
      ).toBe(true);
      const stored = await get(job.id, T0 + 500);
      expect(stored).toMatchObject({
        status: "succeeded",
        attempt: 1,
        startedAt: T0 + 10,
        finishedAt: T0 + 500,
        expiresAt: T0 + 60_500,
        updatedAt: T0 + 500,
        lastError: null,
      });

      const got = await t.store.resultGet({ jobId: job.id });
      expect(got).not.toBeNull();
      expect({ ...got!, response: { ...got!.response!, body: undefined } }).toEqual({
        ...result,
        response: { ...result.response!, body: undefined },
      });
      expect(bytesOf(got!.response!.body)).toEqual(bytesOf(result.response!.body));

      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt).toEqual({
        jobId: job.id,
        attempt: 1,
        outcome: "succeeded",
        startedAt: T0 + 10,
        finishedAt: T0 + 500,
        responseStatus: 200,
        errorCode: null,
        error: null,
        durationMs: 490,
        retryable: false,
        node: "w1",
      });
    });

    it("succeeded without a ttl: kept forever (expiresAt null)", async () => {
      const job = await insert({ ttlMs: null });
      const claimed = await claimOne(T0 + 10);
      expect(await finish(claimed, T0 + 20, { status: "succeeded" })).toBe(true);
      const stored = await get(job.id, T0 + 1_000_000_000);
      expect(stored.status).toBe("succeeded");
      expect(stored.expiresAt).toBeNull();
      expect(await t.store.jobNextExpiry()).toBeNull();
    });

    it("queued: goes back to the queue at runAt, keeps the attempt count and the error", async () => {
      const job = await insert({ ttlMs: 60_000 });
      const claimed = await claimOne(T0 + 10);
      const end = httpFailedEnd(503, true);
      const result = responseResult(claimed, T0 + 40, 503, "busy");
      result.response!.bodyEncoding = "text";
      result.response!.truncated = true;

      expect(
        await finish(claimed, T0 + 40, { status: "queued", runAt: T0 + 5_000 }, end, result),
      ).toBe(true);
      const stored = await get(job.id, T0 + 40);
      expect(stored).toMatchObject({
        status: "queued",
        attempt: 1,
        runAt: T0 + 5_000,
        startedAt: T0 + 10,
        finishedAt: null,
        expiresAt: null,
        lastError: "the target answered 503",
        updatedAt: T0 + 40,
      });

      const got = await t.store.resultGet({ jobId: job.id });
      expect(got?.attempt).toBe(1);
      expect(got?.response?.status).toBe(503);
      expect(got?.response?.bodyEncoding).toBe("text");
      expect(got?.response?.truncated).toBe(true);
      expect(new TextDecoder().decode(got?.response?.body)).toBe("busy");
      expect(got?.error).toBe("the target answered 503");

      expect(await t.store.jobNextScheduledAt()).toBe(T0 + 5_000);
      expect(await claim(T0 + 4_999)).toEqual([]);
      const again = await claimOne(T0 + 5_000);
      expect(again.id).toBe(job.id);
      expect(again.attempt).toBe(2);
    });

    it("failed: finishes the job with its error and stores an error-only result", async () => {
      const job = await insert({ maxAttempts: 1, ttlMs: 10_000 });
      const claimed = await claimOne(T0 + 10);
      const end: AttemptEndRecord = {
        outcome: "failed",
        responseStatus: null,
        errorCode: "timeout",
        error: "no answer within 10000 ms",
        retryable: true,
        durationMs: 10_000,
      };
      const result: JobResult = {
        jobId: job.id,
        attempt: 1,
        response: null,
        error: "no answer within 10000 ms",
        durationMs: 10_000,
        finishedAt: T0 + 10_010,
      };

      expect(await finish(claimed, T0 + 10_010, { status: "failed" }, end, result)).toBe(true);
      expect(await get(job.id, T0 + 10_010)).toMatchObject({
        status: "failed",
        attempt: 1,
        finishedAt: T0 + 10_010,
        expiresAt: T0 + 20_010,
        lastError: "no answer within 10000 ms",
      });
      expect(await t.store.resultGet({ jobId: job.id })).toEqual(result);
      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt).toMatchObject({
        outcome: "failed",
        errorCode: "timeout",
        responseStatus: null,
        retryable: true,
        durationMs: 10_000,
        finishedAt: T0 + 10_010,
      });
      expect(await claim(T0 + 20_000)).toEqual([]);
    });

    it("a wrong token returns false and changes neither the job nor the result", async () => {
      const job = await insert();
      const claimed = await claimOne(T0 + 10);
      const before = await get(job.id, T0 + 10);

      const result = responseResult(claimed, T0 + 20);
      for (const next of [
        { status: "succeeded" },
        { status: "failed" },
        { status: "queued", runAt: T0 + 30 },
        { status: "released" },
      ] satisfies NextState[]) {
        expect(await finish(claimed, T0 + 20, next, succeededEnd(), result, "forged")).toBe(false);
      }
      expect(await get(job.id, T0 + 20)).toEqual(before);
      expect(await t.store.resultGet({ jobId: job.id })).toBeNull();
      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt?.outcome).toBe("running");
      expect(attempt?.finishedAt).toBeNull();

      // The holder can still finish.
      expect(await finish(claimed, T0 + 30, { status: "succeeded" }, succeededEnd(), result)).toBe(
        true,
      );
    });

    it("a stale token after the job moved on returns false and keeps the job and result", async () => {
      const job = await insert();
      const claimed = await claimOne(T0 + 10);
      const result = responseResult(claimed, T0 + 20, 200, '{"first":true}');
      expect(await finish(claimed, T0 + 20, { status: "succeeded" }, succeededEnd(), result)).toBe(
        true,
      );
      const before = await get(job.id, T0 + 20);

      const late = responseResult(claimed, T0 + 30, 500, '{"second":true}');
      expect(
        await finish(claimed, T0 + 30, { status: "failed" }, httpFailedEnd(500, false), late),
      ).toBe(false);
      expect(await get(job.id, T0 + 30)).toEqual(before);
      const got = await t.store.resultGet({ jobId: job.id });
      expect(got?.response?.status).toBe(200);
      expect(new TextDecoder().decode(got?.response?.body)).toBe('{"first":true}');
      const [attempt] = await t.store.attemptList({ jobId: job.id });
      expect(attempt?.outcome).toBe("succeeded");
    });

    it("released on the first attempt: queued again, attempt 0, startedAt null, row interrupted", async () => {
      const job = await insert();
      const claimed = await claimOne(T0 + 10);
      expect(await finish(claimed, T0 + 20, { status: "released" }, interruptedEnd)).toBe(true);

      const stored = await get(job.id, T0 + 20);
      expect(stored).toMatchObject({
        status: "queued",
        attempt: 0,
        startedAt: null,
        finishedAt: null,
      });
      expect(await t.store.attemptList({ jobId: job.id })).toEqual([
        {
          jobId: job.id,
          attempt: 1,
          outcome: "interrupted",
          startedAt: T0 + 10,
          finishedAt: T0 + 20,
          responseStatus: null,
          errorCode: "interrupted",
          error: "the worker was stopped",
          durationMs: 5,
          retryable: true,
          node: "w1",
        },
      ]);

      // Claimable again at once; the attempt is counted afresh.
      const again = await claimOne(T0 + 20, "w2");
      expect(again.id).toBe(job.id);
      expect(again.attempt).toBe(1);
      expect(again.startedAt).toBe(T0 + 20);
    });

    it("released on a later attempt: the count drops by one and startedAt is kept", async () => {
      const job = await insert();
      const first = await claimOne(T0 + 10);
      await finish(first, T0 + 20, { status: "queued", runAt: T0 + 20 }, httpFailedEnd(502, true));
      const second = await claimOne(T0 + 30);
      expect(second.attempt).toBe(2);

      expect(await finish(second, T0 + 40, { status: "released" }, interruptedEnd)).toBe(true);
      const stored = await get(job.id, T0 + 40);
      expect(stored).toMatchObject({ status: "queued", attempt: 1, startedAt: T0 + 10 });
      const attempts = await t.store.attemptList({ jobId: job.id });
      expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
        [1, "failed"],
        [2, "interrupted"],
      ]);
    });
  });
}
