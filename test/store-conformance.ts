import { monotonicFactory } from "ulid";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Job, JobResult, NewJob, RequestBody } from "../src/job/types.js";
import type {
  AttemptEndRecord,
  ClaimedJob,
  JobListParams,
  JobStore,
  Lease,
  NextState,
} from "../src/store/job-store.js";
import type { BucketLimits, LimitResolver } from "../src/worker/rate-limits.js";

/** A store opened for one test, and how to throw its world away afterwards. */
export interface OpenedStore {
  store: JobStore;
  cleanup: () => Promise<void>;
}

/** The origin of every time in the suite (2025-01-01T00:00:00Z); tests pass T0 + an offset. */
export const T0 = 1_735_689_600_000;
const LEASE_MS = 30_000;

// Monotonic: ids sort in the order the jobs are built, as the queue's own ids do.
const nextUlid = monotonicFactory();

/** A valid {@link NewJob}, created at T0 and due at once unless overridden. */
export function newJob(overrides: Partial<NewJob> = {}): NewJob {
  const createdAt = overrides.createdAt ?? T0;
  const scheduledAt = overrides.scheduledAt ?? null;
  return {
    id: `j_${nextUlid(createdAt)}`,
    method: "POST",
    url: "https://example.test/hook",
    headers: {},
    params: {},
    body: null,
    timeoutMs: 10_000,
    priority: 0,
    maxAttempts: 3,
    backoffStrategy: "exponential",
    backoffBaseMs: 1_000,
    scheduledAt,
    ttlMs: null,
    tags: [],
    idempotencyKey: null,
    secretHeaderNames: [],
    sealedHeaders: null,
    followRedirects: false,
    maxRedirects: 5,
    rateLimitKey: null,
    owner: null,
    bucket: "example.test",
    createdAt,
    runAt: scheduledAt ?? createdAt,
    ...overrides,
  };
}

function succeededEnd(durationMs = 40): AttemptEndRecord {
  return {
    outcome: "succeeded",
    responseStatus: 200,
    errorCode: null,
    error: null,
    retryable: false,
    durationMs,
  };
}

function httpFailedEnd(status: number, retryable: boolean): AttemptEndRecord {
  return {
    outcome: "failed",
    responseStatus: status,
    errorCode: "http_status",
    error: `the target answered ${status}`,
    retryable,
    durationMs: 25,
  };
}

const interruptedEnd: AttemptEndRecord = {
  outcome: "interrupted",
  responseStatus: null,
  errorCode: "interrupted",
  error: "the worker was stopped",
  retryable: true,
  durationMs: 5,
};

/** A result with a response, as the worker would write it for `job`'s current attempt. */
function responseResult(
  job: ClaimedJob,
  finishedAt: number,
  status = 200,
  text = '{"ok":true}',
): JobResult {
  return {
    jobId: job.id,
    attempt: job.attempt,
    response: {
      status,
      headers: { "content-type": "application/json", "x-request-id": `r-${job.attempt}` },
      body: new TextEncoder().encode(text),
      bodyEncoding: "json",
      truncated: false,
    },
    error: status >= 400 ? `the target answered ${status}` : null,
    durationMs: 40,
    finishedAt,
  };
}

function leaseOf(job: ClaimedJob): Lease {
  return { jobId: job.id, token: job.leaseToken };
}

/** Bytes as a plain array, so comparisons do not depend on Buffer vs Uint8Array. */
function bytesOf(body: Uint8Array | undefined): number[] | undefined {
  return body === undefined ? undefined : Array.from(body);
}

/**
 * The behaviour every {@link JobStore} driver must have. `open` gives a fresh, empty store in its
 * own world (a temp file, a schema); each test opens one, passes explicit times (nothing reads the
 * wall clock) and cleans it up afterwards.
 */
export function runStoreConformance(name: string, open: () => Promise<OpenedStore>): void {
  describe(name, () => {
    let world: OpenedStore;
    let store: JobStore;

    beforeEach(async () => {
      world = await open();
      store = world.store;
    });

    afterEach(async () => {
      await store.close();
      await world.cleanup();
    });

    async function insert(overrides: Partial<NewJob> = {}): Promise<Job> {
      const { job, inserted } = await store.jobInsert(newJob(overrides));
      expect(inserted).toBe(true);
      return job;
    }

    /** Claims as the worker pool does, after the scheduler has made due jobs available. */
    async function claim(now: number, limit = 100, worker = "w1", leaseMs = LEASE_MS) {
      await store.jobPromoteScheduled({ now, limit: 10_000 });
      return (await store.jobClaim({ now, limit, leaseMs, worker })).jobs;
    }

    async function claimOne(now: number, worker = "w1", leaseMs = LEASE_MS): Promise<ClaimedJob> {
      const claimed = await claim(now, 1, worker, leaseMs);
      expect(claimed).toHaveLength(1);
      return claimed[0]!;
    }

    function finish(
      job: ClaimedJob,
      now: number,
      next: NextState | null,
      end: AttemptEndRecord = succeededEnd(),
      result: JobResult | null = null,
      token = job.leaseToken,
    ): Promise<boolean> {
      return store.jobFinishAttempt({ lease: { jobId: job.id, token }, now, end, next, result });
    }

    async function get(id: string, now: number): Promise<Job> {
      const job = await store.jobGet({ id, now });
      expect(job).not.toBeNull();
      return job!;
    }

    async function listIds(
      now: number,
      filters: Omit<JobListParams, "now" | "limit"> = {},
    ): Promise<string[]> {
      const { jobs, more } = await store.jobList({ now, limit: 100, ...filters });
      expect(more).toBe(false);
      return jobs.map((j) => j.id);
    }

    describe("insert many", () => {
      it("stores every job in order, as jobInsert would, and dedupes idempotency keys within the batch", async () => {
        const a = newJob({ tags: ["x"] });
        const b = newJob({ idempotencyKey: "same", priority: 3 });
        const c = newJob({ idempotencyKey: "same", priority: 9 });
        const results = await store.jobInsertMany([a, b, c]);
        expect(results.map((r) => [r.job.id, r.inserted])).toEqual([
          [a.id, true],
          [b.id, true],
          [b.id, false],
        ]);
        expect(results[2]!.job.priority).toBe(3);
        expect(await listIds(T0)).toEqual([b.id, a.id]);
        expect((await get(a.id, T0)).tags).toEqual(["x"]);
      });

      it("keeps idempotency keys per owner: the same key of another owner is another job", async () => {
        const sams = await insert({ idempotencyKey: "order-1", owner: "sam" });
        const sues = await store.jobInsert(newJob({ idempotencyKey: "order-1", owner: "sue" }));
        expect(sues.inserted).toBe(true);
        expect(sues.job.id).not.toBe(sams.id);
        const again = await store.jobInsert(newJob({ idempotencyKey: "order-1", owner: "sue" }));
        expect(again).toMatchObject({ inserted: false, job: { id: sues.job.id, owner: "sue" } });
      });

      it("returns the kept job for a key stored by an earlier insert", async () => {
        const first = await insert({ idempotencyKey: "k" });
        const [res] = await store.jobInsertMany([newJob({ idempotencyKey: "k" })]);
        expect(res).toMatchObject({ inserted: false, job: { id: first.id } });
      });
    });

    describe("insert and get", () => {
      it("returns every field as given, queued at attempt 0, from insert and from get", async () => {
        const spec = newJob({
          method: "PUT",
          url: "https://example.test/items/42?x=1",
          headers: { "X-Trace": "abc", "Content-Type": "application/json" },
          params: { debug: "1", q: "ä ü&=" },
          body: { kind: "json", value: { message: "hello", n: 3, nested: [true, null, 1.5] } },
          timeoutMs: 2_500,
          priority: 7,
          maxAttempts: 5,
          backoffStrategy: "linear",
          backoffBaseMs: 250,
          createdAt: T0 + 1,
          scheduledAt: T0 + 60_000,
          ttlMs: 3_600_000,
          tags: ["billing", "eu"],
          idempotencyKey: "order-42",
        });
        expect(spec.runAt).toBe(T0 + 60_000);
        const expected: Job = {
          ...spec,
          status: "queued",
          attempt: 0,
          startedAt: null,
          finishedAt: null,
          expiresAt: null,
          lastError: null,
          updatedAt: T0 + 1,
        };

        const { job, inserted } = await store.jobInsert(spec);
        expect(inserted).toBe(true);
        expect(job).toEqual(expected);
        expect(await store.jobGet({ id: spec.id, now: T0 + 1 })).toEqual(expected);
      });

      it("round-trips request bodies exactly: binary bytes, empty bytes, JSON text, JSON null, none", async () => {
        // 0xc3 0x28 is invalid UTF-8: a driver that stores bytes as text would mangle it.
        const binary = [0, 1, 127, 128, 254, 255, 0xc3, 0x28, 0];
        const bytesJob = await insert({
          body: { kind: "bytes", bytes: Uint8Array.from(binary) },
        });
        const emptyJob = await insert({ body: { kind: "bytes", bytes: new Uint8Array(0) } });

        const gotBytes = (await get(bytesJob.id, T0)).body;
        expect(gotBytes?.kind).toBe("bytes");
        expect(gotBytes?.kind === "bytes" && gotBytes.bytes instanceof Uint8Array).toBe(true);
        expect(bytesOf(gotBytes?.kind === "bytes" ? gotBytes.bytes : undefined)).toEqual(binary);

        const gotEmpty = (await get(emptyJob.id, T0)).body;
        expect(gotEmpty?.kind).toBe("bytes");
        expect(bytesOf(gotEmpty?.kind === "bytes" ? gotEmpty.bytes : undefined)).toEqual([]);

        const jsonBodies: (RequestBody | null)[] = [
          { kind: "json", value: "plain text, sent as is" },
          { kind: "json", value: null },
          { kind: "json", value: [1, "two", { three: 3 }] },
          null,
        ];
        for (const body of jsonBodies) {
          const job = await insert({ body });
          expect((await get(job.id, T0)).body).toEqual(body);
        }
      });

      it("get of an unknown id is null", async () => {
        await insert();
        expect(await store.jobGet({ id: newJob().id, now: T0 })).toBeNull();
      });
    });

    describe("idempotency", () => {
      it("a second insert with the same key returns the first job and stores nothing", async () => {
        const first = await insert({ idempotencyKey: "k-1", url: "https://example.test/first" });
        const duplicate = newJob({
          idempotencyKey: "k-1",
          url: "https://example.test/second",
          createdAt: T0 + 10,
        });

        const again = await store.jobInsert(duplicate);
        expect(again.inserted).toBe(false);
        expect(again.job).toEqual(first);
        expect(await listIds(T0 + 10)).toEqual([first.id]);
        expect(await store.jobGet({ id: duplicate.id, now: T0 + 10 })).toBeNull();

        // Another key is another job.
        const other = await store.jobInsert(newJob({ idempotencyKey: "k-2", createdAt: T0 + 20 }));
        expect(other.inserted).toBe(true);
        expect(await listIds(T0 + 20)).toEqual([other.job.id, first.id]);
      });

      it("the duplicate insert returns the first job as it is now, not as it was submitted", async () => {
        const first = await insert({ idempotencyKey: "k-1" });
        await claimOne(T0 + 5);

        const again = await store.jobInsert(newJob({ idempotencyKey: "k-1", createdAt: T0 + 10 }));
        expect(again.inserted).toBe(false);
        expect(again.job.id).toBe(first.id);
        expect(again.job.status).toBe("running");
        expect(again.job.attempt).toBe(1);
      });

      it("once the first job's TTL has passed, the same key inserts a new job", async () => {
        const first = await insert({ idempotencyKey: "k-1", ttlMs: 1_000 });
        const claimed = await claimOne(T0 + 50);
        expect(await finish(claimed, T0 + 100, { status: "succeeded" })).toBe(true);
        expect((await get(first.id, T0 + 100)).expiresAt).toBe(T0 + 1_100);

        // Finished but still kept: the key still names the first job.
        const kept = await store.jobInsert(
          newJob({ idempotencyKey: "k-1", createdAt: T0 + 1_099 }),
        );
        expect(kept.inserted).toBe(false);
        expect(kept.job.id).toBe(first.id);
        expect(kept.job.status).toBe("succeeded");

        // expiresAt <= now: the first job is gone, the key is free.
        const fresh = newJob({ idempotencyKey: "k-1", createdAt: T0 + 1_100 });
        const replaced = await store.jobInsert(fresh);
        expect(replaced.inserted).toBe(true);
        expect(replaced.job.id).toBe(fresh.id);
        expect(replaced.job.status).toBe("queued");
        expect((await get(fresh.id, T0 + 1_100)).idempotencyKey).toBe("k-1");
        expect(await store.jobGet({ id: first.id, now: T0 + 1_100 })).toBeNull();
        expect(await listIds(T0 + 1_100)).toEqual([fresh.id]);
      });
    });

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
        expect(typeof claimed.leaseToken).toBe("string");
        expect(claimed.leaseToken.length).toBeGreaterThan(0);

        const stored = await get(job.id, T0 + 5);
        expect(stored.status).toBe("running");
        expect(stored.attempt).toBe(1);
        expect(stored.startedAt).toBe(T0 + 5);
        expect(await store.attemptList({ jobId: job.id })).toEqual([
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
          },
        ]);

        // The second attempt counts again but the job keeps its first start.
        const end = httpFailedEnd(503, true);
        expect(await finish(claimed, T0 + 10, { status: "queued", runAt: T0 + 100 }, end)).toBe(
          true,
        );
        const second = await claimOne(T0 + 100);
        expect(second.attempt).toBe(2);
        expect(second.startedAt).toBe(T0 + 5);
        const attempts = await store.attemptList({ jobId: job.id });
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

        const held = await store.jobRenewLeases({
          leases: claimed.map(leaseOf),
          now: T0 + 900,
          leaseMs: 1_000,
        });
        expect([...held].sort()).toEqual([a.id, b.id].sort());

        // The leases now run to T0 + 1900: not lost at the original expiry, lost at the new one.
        expect(await store.jobRescueExpired({ now: T0 + 1_010, limit: 10 })).toEqual([]);
        expect(await store.jobRescueExpired({ now: T0 + 1_899, limit: 10 })).toEqual([]);
        const rescued = await store.jobRescueExpired({ now: T0 + 1_900, limit: 10 });
        expect(rescued.map((r) => r.jobId).sort()).toEqual([a.id, b.id].sort());
      });

      it("does not return a job that was canceled, finished, or named with a wrong token", async () => {
        await insert({ createdAt: T0 });
        await insert({ createdAt: T0 + 1 });
        await insert({ createdAt: T0 + 2 });
        const [kept, canceled, finished] = await claim(T0 + 10, 10);
        await store.jobCancel({ id: canceled!.id, now: T0 + 20 });
        expect(await finish(finished!, T0 + 20, { status: "succeeded" })).toBe(true);

        const held = await store.jobRenewLeases({
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
        expect(await store.jobRescueExpired({ now: T0 + 1_000, limit: 10 })).toEqual([
          { jobId: job.id, status: "queued" },
        ]);
        const current = await claimOne(T0 + 1_000, "w2", 1_000);
        expect(current.leaseToken).not.toBe(old.leaseToken);

        const held = await store.jobRenewLeases({
          leases: [leaseOf(old)],
          now: T0 + 1_001,
          leaseMs: 1_000,
        });
        expect(held.size).toBe(0);
        const heldNew = await store.jobRenewLeases({
          leases: [leaseOf(current)],
          now: T0 + 1_001,
          leaseMs: 1_000,
        });
        expect([...heldNew]).toEqual([job.id]);
      });
    });

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

        const got = await store.resultGet({ jobId: job.id });
        expect(got).not.toBeNull();
        expect({ ...got!, response: { ...got!.response!, body: undefined } }).toEqual({
          ...result,
          response: { ...result.response!, body: undefined },
        });
        expect(bytesOf(got!.response!.body)).toEqual(bytesOf(result.response!.body));

        const [attempt] = await store.attemptList({ jobId: job.id });
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
        });
      });

      it("succeeded without a ttl: kept forever (expiresAt null)", async () => {
        const job = await insert({ ttlMs: null });
        const claimed = await claimOne(T0 + 10);
        expect(await finish(claimed, T0 + 20, { status: "succeeded" })).toBe(true);
        const stored = await get(job.id, T0 + 1_000_000_000);
        expect(stored.status).toBe("succeeded");
        expect(stored.expiresAt).toBeNull();
        expect(await store.jobNextExpiry()).toBeNull();
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

        const got = await store.resultGet({ jobId: job.id });
        expect(got?.attempt).toBe(1);
        expect(got?.response?.status).toBe(503);
        expect(got?.response?.bodyEncoding).toBe("text");
        expect(got?.response?.truncated).toBe(true);
        expect(new TextDecoder().decode(got?.response?.body)).toBe("busy");
        expect(got?.error).toBe("the target answered 503");

        expect(await store.jobNextScheduledAt()).toBe(T0 + 5_000);
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
        expect(await store.resultGet({ jobId: job.id })).toEqual(result);
        const [attempt] = await store.attemptList({ jobId: job.id });
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
          expect(await finish(claimed, T0 + 20, next, succeededEnd(), result, "forged")).toBe(
            false,
          );
        }
        expect(await get(job.id, T0 + 20)).toEqual(before);
        expect(await store.resultGet({ jobId: job.id })).toBeNull();
        const [attempt] = await store.attemptList({ jobId: job.id });
        expect(attempt?.outcome).toBe("running");
        expect(attempt?.finishedAt).toBeNull();

        // The holder can still finish.
        expect(
          await finish(claimed, T0 + 30, { status: "succeeded" }, succeededEnd(), result),
        ).toBe(true);
      });

      it("a stale token after the job moved on returns false and keeps the job and result", async () => {
        const job = await insert();
        const claimed = await claimOne(T0 + 10);
        const result = responseResult(claimed, T0 + 20, 200, '{"first":true}');
        expect(
          await finish(claimed, T0 + 20, { status: "succeeded" }, succeededEnd(), result),
        ).toBe(true);
        const before = await get(job.id, T0 + 20);

        const late = responseResult(claimed, T0 + 30, 500, '{"second":true}');
        expect(
          await finish(claimed, T0 + 30, { status: "failed" }, httpFailedEnd(500, false), late),
        ).toBe(false);
        expect(await get(job.id, T0 + 30)).toEqual(before);
        const got = await store.resultGet({ jobId: job.id });
        expect(got?.response?.status).toBe(200);
        expect(new TextDecoder().decode(got?.response?.body)).toBe('{"first":true}');
        const [attempt] = await store.attemptList({ jobId: job.id });
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
        expect(await store.attemptList({ jobId: job.id })).toEqual([
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
        await finish(
          first,
          T0 + 20,
          { status: "queued", runAt: T0 + 20 },
          httpFailedEnd(502, true),
        );
        const second = await claimOne(T0 + 30);
        expect(second.attempt).toBe(2);

        expect(await finish(second, T0 + 40, { status: "released" }, interruptedEnd)).toBe(true);
        const stored = await get(job.id, T0 + 40);
        expect(stored).toMatchObject({ status: "queued", attempt: 1, startedAt: T0 + 10 });
        const attempts = await store.attemptList({ jobId: job.id });
        expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
          [1, "failed"],
          [2, "interrupted"],
        ]);
      });
    });

    describe("cancel", () => {
      it("cancels a queued job", async () => {
        const job = await insert();
        const r = await store.jobCancel({ id: job.id, now: T0 + 10 });
        expect(r.kind).toBe("canceled");
        if (r.kind !== "canceled") return;
        expect(r.wasRunning).toBe(false);
        expect(r.job).toMatchObject({ id: job.id, status: "canceled", finishedAt: T0 + 10 });
        expect((await get(job.id, T0 + 10)).status).toBe("canceled");
        expect(await claim(T0 + 20)).toEqual([]);
        expect(await store.jobNextScheduledAt()).toBeNull();
        expect(await store.attemptList({ jobId: job.id })).toEqual([]);
      });

      it("cancels a running job: the attempt closes as canceled and the old holder cannot finish it", async () => {
        const job = await insert();
        const claimed = await claimOne(T0 + 10);
        const r = await store.jobCancel({ id: job.id, now: T0 + 50 });
        expect(r.kind).toBe("canceled");
        if (r.kind !== "canceled") return;
        expect(r.wasRunning).toBe(true);
        expect(r.job).toMatchObject({ status: "canceled", attempt: 1, finishedAt: T0 + 50 });

        const [attempt] = await store.attemptList({ jobId: job.id });
        expect(attempt).toMatchObject({
          attempt: 1,
          outcome: "canceled",
          finishedAt: T0 + 50,
          errorCode: "canceled",
        });

        // The call came back after all: its success must not take.
        const result = responseResult(claimed, T0 + 60);
        expect(
          await finish(claimed, T0 + 60, { status: "succeeded" }, succeededEnd(), result),
        ).toBe(false);
        expect(await finish(claimed, T0 + 60, null, succeededEnd())).toBe(false);
        expect((await get(job.id, T0 + 60)).status).toBe("canceled");
        expect(await store.resultGet({ jobId: job.id })).toBeNull();
        const [after] = await store.attemptList({ jobId: job.id });
        expect(after?.outcome).toBe("canceled");
        expect(after?.finishedAt).toBe(T0 + 50);
      });

      it("a finished job is already-finished, and so is a canceled one", async () => {
        const done = await insert({ createdAt: T0 });
        const claimed = await claimOne(T0 + 10);
        await finish(claimed, T0 + 20, { status: "succeeded" });
        const r = await store.jobCancel({ id: done.id, now: T0 + 30 });
        expect(r.kind).toBe("already-finished");
        if (r.kind === "already-finished") expect(r.job.status).toBe("succeeded");
        expect((await get(done.id, T0 + 30)).status).toBe("succeeded");

        const canceled = await insert({ createdAt: T0 + 1 });
        await store.jobCancel({ id: canceled.id, now: T0 + 40 });
        const again = await store.jobCancel({ id: canceled.id, now: T0 + 50 });
        expect(again.kind).toBe("already-finished");
        if (again.kind === "already-finished") expect(again.job.finishedAt).toBe(T0 + 40);
      });

      it("an unknown job is not-found", async () => {
        await insert();
        expect(await store.jobCancel({ id: newJob().id, now: T0 })).toEqual({ kind: "not-found" });
      });

      it("a canceled job expires ttl after the cancel, and is kept without a ttl", async () => {
        const withTtl = await insert({ ttlMs: 5_000, createdAt: T0 });
        const withoutTtl = await insert({ ttlMs: null, createdAt: T0 + 1 });
        const a = await store.jobCancel({ id: withTtl.id, now: T0 + 100 });
        const b = await store.jobCancel({ id: withoutTtl.id, now: T0 + 100 });
        expect(a.kind === "canceled" && a.job.expiresAt).toBe(T0 + 5_100);
        expect(b.kind === "canceled" && b.job.expiresAt).toBeNull();
        expect(await store.jobNextExpiry()).toBe(T0 + 5_100);
        expect(await store.jobGet({ id: withTtl.id, now: T0 + 5_100 })).toBeNull();
        expect(await store.jobGet({ id: withoutTtl.id, now: T0 + 5_100 })).not.toBeNull();
      });
    });

    describe("rescue of expired leases", () => {
      it("requeues a job with attempts left and closes its attempt as lost", async () => {
        const job = await insert({ maxAttempts: 3 });
        await claimOne(T0, "w1", 1_000);

        expect(await store.jobRescueExpired({ now: T0 + 999, limit: 10 })).toEqual([]);
        expect((await get(job.id, T0 + 999)).status).toBe("running");

        expect(await store.jobRescueExpired({ now: T0 + 1_000, limit: 10 })).toEqual([
          { jobId: job.id, status: "queued" },
        ]);
        expect(await get(job.id, T0 + 1_000)).toMatchObject({
          status: "queued",
          attempt: 1,
          finishedAt: null,
        });
        const [attempt] = await store.attemptList({ jobId: job.id });
        expect(attempt).toMatchObject({
          attempt: 1,
          outcome: "lost",
          errorCode: "lease_expired",
          finishedAt: T0 + 1_000,
        });
        expect(await store.jobRescueExpired({ now: T0 + 2_000, limit: 10 })).toEqual([]);

        const again = await claimOne(T0 + 1_000, "w2");
        expect(again.id).toBe(job.id);
        expect(again.attempt).toBe(2);
      });

      it("fails a job whose last attempt was lost", async () => {
        const job = await insert({ maxAttempts: 1, ttlMs: 1_000 });
        await claimOne(T0, "w1", 1_000);
        expect(await store.jobRescueExpired({ now: T0 + 1_500, limit: 10 })).toEqual([
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
        const [attempt] = await store.attemptList({ jobId: job.id });
        expect(attempt).toMatchObject({ outcome: "lost", errorCode: "lease_expired" });
        expect(await claim(T0 + 1_500)).toEqual([]);
      });

      it("leaves a job whose lease has not expired alone", async () => {
        const early = await insert({ createdAt: T0 });
        const late = await insert({ createdAt: T0 + 1 });
        await claimOne(T0, "w1", 1_000);
        const lateClaim = await claimOne(T0 + 500, "w2", 1_000);
        expect(lateClaim.id).toBe(late.id);

        expect(await store.jobRescueExpired({ now: T0 + 1_000, limit: 10 })).toEqual([
          { jobId: early.id, status: "queued" },
        ]);
        expect((await get(late.id, T0 + 1_000)).status).toBe("running");
        const [attempt] = await store.attemptList({ jobId: late.id });
        expect(attempt?.outcome).toBe("running");
        expect(attempt?.finishedAt).toBeNull();
        expect(await finish(lateClaim, T0 + 1_100, { status: "succeeded" })).toBe(true);
      });

      it("rescues at most limit jobs at a time", async () => {
        for (let i = 0; i < 3; i++) await insert({ createdAt: T0 + i });
        await claim(T0 + 10, 10, "w1", 1_000);
        expect(await store.jobRescueExpired({ now: T0 + 2_000, limit: 2 })).toHaveLength(2);
        expect(await store.jobRescueExpired({ now: T0 + 2_000, limit: 2 })).toHaveLength(1);
        expect(await store.jobRescueExpired({ now: T0 + 2_000, limit: 2 })).toHaveLength(0);
      });

      it("the old holder's late finish returns false after a rescue and a new claim", async () => {
        const job = await insert({ maxAttempts: 3 });
        const old = await claimOne(T0, "w1", 1_000);
        await store.jobRescueExpired({ now: T0 + 1_000, limit: 10 });
        const current = await claimOne(T0 + 1_000, "w2", 1_000);

        const late = responseResult(old, T0 + 1_200, 200, '{"stale":true}');
        expect(await finish(old, T0 + 1_200, { status: "succeeded" }, succeededEnd(), late)).toBe(
          false,
        );
        expect(await get(job.id, T0 + 1_200)).toMatchObject({ status: "running", attempt: 2 });
        const got = await store.resultGet({ jobId: job.id });
        expect(got?.response?.status === 200 && got.attempt === 1).toBe(false);
        expect((await store.attemptList({ jobId: job.id })).map((a) => a.outcome)).toEqual([
          "lost",
          "running",
        ]);

        const fresh = responseResult(current, T0 + 1_300, 200, '{"fresh":true}');
        expect(
          await finish(current, T0 + 1_300, { status: "succeeded" }, succeededEnd(), fresh),
        ).toBe(true);
        expect((await store.resultGet({ jobId: job.id }))?.attempt).toBe(2);
      });

      it("the old holder's late finish returns false after a rescue failed the job", async () => {
        const job = await insert({ maxAttempts: 1 });
        const old = await claimOne(T0, "w1", 1_000);
        await store.jobRescueExpired({ now: T0 + 1_000, limit: 10 });
        expect(await finish(old, T0 + 1_200, { status: "succeeded" })).toBe(false);
        expect((await get(job.id, T0 + 1_200)).status).toBe("failed");
        const [attempt] = await store.attemptList({ jobId: job.id });
        expect(attempt?.outcome).toBe("lost");
      });
    });

    describe("TTL", () => {
      async function finishedWithTtl(ttlMs: number, createdAt: number, finishedAt: number) {
        const job = await insert({ ttlMs, createdAt });
        const claimed = await claim(finishedAt, 1);
        expect(claimed.map((j) => j.id)).toEqual([job.id]);
        const result = responseResult(claimed[0]!, finishedAt);
        expect(
          await finish(claimed[0]!, finishedAt, { status: "succeeded" }, succeededEnd(), result),
        ).toBe(true);
        return job;
      }

      it("get and list hide a job once expiresAt <= now", async () => {
        const job = await finishedWithTtl(1_000, T0, T0 + 100);
        expect((await get(job.id, T0 + 1_099)).expiresAt).toBe(T0 + 1_100);
        expect(await listIds(T0 + 1_099)).toEqual([job.id]);

        expect(await store.jobGet({ id: job.id, now: T0 + 1_100 })).toBeNull();
        expect(await listIds(T0 + 1_100)).toEqual([]);
        expect(await store.jobCancel({ id: job.id, now: T0 + 1_100 })).toEqual({
          kind: "not-found",
        });
      });

      it("deleteExpired removes expired jobs with their attempts and results, and counts them", async () => {
        const a = await finishedWithTtl(1_000, T0, T0 + 100); // expires T0 + 1100
        const b = await finishedWithTtl(500, T0 + 1, T0 + 200); // expires T0 + 700
        const later = await finishedWithTtl(10_000, T0 + 2, T0 + 300); // expires T0 + 10300
        const kept = await finishedWithTtl(0, T0 + 3, T0 + 400); // ttl 0: expires at once
        const forever = await insert({ createdAt: T0 + 4 });

        expect(await store.jobDeleteExpired({ now: T0 + 1_100, limit: 100 })).toBe(3);
        for (const gone of [a, b, kept]) {
          expect(await store.attemptList({ jobId: gone.id })).toEqual([]);
          expect(await store.resultGet({ jobId: gone.id })).toBeNull();
          expect(await store.jobGet({ id: gone.id, now: T0 })).toBeNull();
        }
        expect(await store.attemptList({ jobId: later.id })).toHaveLength(1);
        expect(await store.resultGet({ jobId: later.id })).not.toBeNull();
        expect(await listIds(T0 + 1_100)).toEqual([forever.id, later.id]);
        expect(await store.jobDeleteExpired({ now: T0 + 1_100, limit: 100 })).toBe(0);
      });

      it("deleteExpired deletes at most limit jobs", async () => {
        for (let i = 0; i < 3; i++) await finishedWithTtl(100, T0 + i, T0 + 100);
        expect(await store.jobDeleteExpired({ now: T0 + 1_000, limit: 2 })).toBe(2);
        expect(await store.jobDeleteExpired({ now: T0 + 1_000, limit: 2 })).toBe(1);
        expect(await store.jobDeleteExpired({ now: T0 + 1_000, limit: 2 })).toBe(0);
      });

      it("nextExpiry is the earliest expiry, or null when nothing expires", async () => {
        expect(await store.jobNextExpiry()).toBeNull();
        await insert({ ttlMs: 100, scheduledAt: T0 + 1_000_000 }); // queued: no expiry yet
        expect(await store.jobNextExpiry()).toBeNull();
        await finishedWithTtl(5_000, T0 + 1, T0 + 100); // T0 + 5100
        await finishedWithTtl(2_000, T0 + 2, T0 + 200); // T0 + 2200
        await finishedWithTtl(9_000, T0 + 3, T0 + 300); // T0 + 9300
        expect(await store.jobNextExpiry()).toBe(T0 + 2_200);
        await store.jobDeleteExpired({ now: T0 + 2_200, limit: 10 });
        expect(await store.jobNextExpiry()).toBe(T0 + 5_100);
      });
    });

    describe("scheduled jobs", () => {
      it("nextScheduledAt is the earliest run time of a job not yet due, null when none", async () => {
        expect(await store.jobNextScheduledAt()).toBeNull();
        await insert({ createdAt: T0, scheduledAt: T0 + 3_000 });
        await insert({ createdAt: T0 + 1, scheduledAt: T0 + 2_000 });
        const due = await insert({ createdAt: T0 + 2, priority: -5 });
        // A job due at once is available, not scheduled.
        expect(await store.jobNextScheduledAt()).toBe(T0 + 2_000);

        const claimed = await claimOne(T0 + 10);
        expect(claimed.id).toBe(due.id);
        expect(await store.jobNextScheduledAt()).toBe(T0 + 2_000);

        await claim(T0 + 3_000);
        expect(await store.jobNextScheduledAt()).toBeNull();
      });

      it("a job not yet due is not claimable until promoted, and promotion respects the time", async () => {
        const later = await insert({ createdAt: T0, scheduledAt: T0 + 1_000 });
        expect(
          (await store.jobClaim({ now: T0 + 2_000, limit: 10, leaseMs: LEASE_MS, worker: "w" }))
            .jobs,
        ).toEqual([]);
        expect(await store.jobPromoteScheduled({ now: T0 + 999, limit: 10 })).toBe(0);
        expect(await store.jobPromoteScheduled({ now: T0 + 1_000, limit: 10 })).toBe(1);
        const { jobs } = await store.jobClaim({
          now: T0 + 1_000,
          limit: 10,
          leaseMs: LEASE_MS,
          worker: "w",
        });
        expect(jobs.map((j) => j.id)).toEqual([later.id]);
        expect((await get(later.id, T0 + 1_000)).status).toBe("running");
      });
    });

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
        await store.jobCancel({ id: canceled.id, now: T0 + 10 });
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

      it("pages with afterId and limit, and says whether more follow", async () => {
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) ids.push((await insert({ createdAt: T0 + i })).id);
        const [j1, j2, j3, j4, j5] = ids;
        const now = T0 + 10;

        const p1 = await store.jobList({ now, limit: 2 });
        expect(p1.jobs.map((j) => j.id)).toEqual([j5, j4]);
        expect(p1.more).toBe(true);
        const p2 = await store.jobList({ now, limit: 2, afterId: j4 });
        expect(p2.jobs.map((j) => j.id)).toEqual([j3, j2]);
        expect(p2.more).toBe(true);
        const p3 = await store.jobList({ now, limit: 2, afterId: j2 });
        expect(p3.jobs.map((j) => j.id)).toEqual([j1]);
        expect(p3.more).toBe(false);

        // A page that ends exactly on the last job has no more.
        const exact = await store.jobList({ now, limit: 2, afterId: j3 });
        expect(exact.jobs.map((j) => j.id)).toEqual([j2, j1]);
        expect(exact.more).toBe(false);
        const all = await store.jobList({ now, limit: 5 });
        expect(all.jobs).toHaveLength(5);
        expect(all.more).toBe(false);
        const past = await store.jobList({ now, limit: 2, afterId: j1 });
        expect(past).toEqual({ jobs: [], more: false });
      });

      it("pages over filtered results, and hidden expired jobs do not count towards more", async () => {
        const tagged: string[] = [];
        for (let i = 0; i < 3; i++) {
          tagged.push((await insert({ createdAt: T0 + i, tags: ["t"] })).id);
          await insert({ createdAt: T0 + i, tags: ["other"] });
        }
        // The oldest tagged job expires at T0 + 110.
        const expiring = await insert({ createdAt: T0 + 5, tags: ["t"], ttlMs: 100 });
        await store.jobCancel({ id: expiring.id, now: T0 + 10 });

        const before = await store.jobList({ now: T0 + 109, limit: 3, tags: ["t"] });
        expect(before.jobs.map((j) => j.id)).toEqual([expiring.id, tagged[2], tagged[1]]);
        expect(before.more).toBe(true);

        const p1 = await store.jobList({ now: T0 + 110, limit: 2, tags: ["t"] });
        expect(p1.jobs.map((j) => j.id)).toEqual([tagged[2], tagged[1]]);
        expect(p1.more).toBe(true);
        const p2 = await store.jobList({
          now: T0 + 110,
          limit: 2,
          tags: ["t"],
          afterId: tagged[1]!,
        });
        expect(p2.jobs.map((j) => j.id)).toEqual([tagged[0]]);
        expect(p2.more).toBe(false);
        const exact = await store.jobList({ now: T0 + 110, limit: 3, tags: ["t"] });
        expect(exact.jobs).toHaveLength(3);
        expect(exact.more).toBe(false);
      });

      it("returns whole jobs, as get does", async () => {
        const job = await insert({
          headers: { a: "b" },
          tags: ["t"],
          body: { kind: "bytes", bytes: Uint8Array.from([9, 8, 7]) },
        });
        const { jobs } = await store.jobList({ now: T0, limit: 10 });
        const got = await get(job.id, T0);
        expect(jobs).toHaveLength(1);
        expect(jobs[0]!.headers).toEqual(got.headers);
        expect(jobs[0]!.tags).toEqual(got.tags);
        expect(jobs[0]!.body?.kind === "bytes" && Array.from(jobs[0]!.body.bytes)).toEqual([
          9, 8, 7,
        ]);
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

        expect(await store.attemptList({ jobId: job.id })).toEqual([
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
          },
        ]);
        expect(await store.attemptList({ jobId: newJob().id })).toEqual([]);
      });

      it("the result is null before the first attempt ends, then the latest attempt's", async () => {
        const job = await insert();
        expect(await store.resultGet({ jobId: job.id })).toBeNull();
        const first = await claimOne(T0 + 10);
        expect(await store.resultGet({ jobId: job.id })).toBeNull();
        await finish(
          first,
          T0 + 20,
          { status: "queued", runAt: T0 + 30 },
          httpFailedEnd(500, true),
          responseResult(first, T0 + 20, 500, "oops"),
        );
        expect((await store.resultGet({ jobId: job.id }))?.attempt).toBe(1);

        const second = await claimOne(T0 + 30);
        await finish(
          second,
          T0 + 40,
          { status: "succeeded" },
          succeededEnd(),
          responseResult(second, T0 + 40, 200, "fine"),
        );
        const got = await store.resultGet({ jobId: job.id });
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

    describe("admission under bucket limits", () => {
      /** Gives bucket "b" the limits `l`; other buckets are free. */
      const limitsFor =
        (l: Partial<BucketLimits>): LimitResolver =>
        (bucket) =>
          bucket === "b" ? { concurrency: null, intervalMs: null, burst: 1, ...l } : null;

      /** Claims as the worker pool does with limits; returns the ids and the deferral. */
      async function claimLimited(now: number, limits: LimitResolver, limit = 8) {
        await store.jobPromoteScheduled({ now, limit: 10_000 });
        const res = await store.jobClaim({ now, limit, leaseMs: LEASE_MS, worker: "w", limits });
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
        expect(await store.attemptList({ jobId: c!.id })).toEqual([]);
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
        expect(await store.jobNextScheduledAt()).toBe(T0 + 1_000);
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
        expect((await store.jobCancel({ id: b.id, now: T0 + 20 })).kind).toBe("canceled");
        expect((await claimLimited(T0 + 30, limits)).ids).toEqual([c.id]);
      });
    });
  });
}
