import { describe, expect, it } from "vitest";
import type { Job, RequestBody } from "../../../src/job/types.js";
import { bytesOf, newJob, type StoreTest, T0 } from "./harness.js";

/** Inserting jobs, reading them back, and idempotency keys. */
export function insertTests(t: StoreTest): void {
  const { insert, claimOne, finish, get, listIds } = t;

  describe("insert many", () => {
    it("stores every job in order, as jobInsert would, and dedupes idempotency keys within the batch", async () => {
      const a = newJob({ tags: ["x"] });
      const b = newJob({ idempotencyKey: "same", priority: 3 });
      const c = newJob({ idempotencyKey: "same", priority: 9 });
      const results = await t.store.jobInsertMany([a, b, c]);
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
      const sues = await t.store.jobInsert(newJob({ idempotencyKey: "order-1", owner: "sue" }));
      expect(sues.inserted).toBe(true);
      expect(sues.job.id).not.toBe(sams.id);
      const again = await t.store.jobInsert(newJob({ idempotencyKey: "order-1", owner: "sue" }));
      expect(again).toMatchObject({ inserted: false, job: { id: sues.job.id, owner: "sue" } });
    });

    it("returns the kept job for a key stored by an earlier insert", async () => {
      const first = await insert({ idempotencyKey: "k" });
      const [res] = await t.store.jobInsertMany([newJob({ idempotencyKey: "k" })]);
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
        leaseExpiresAt: null,
        lastErrorCode: null,
        callbackJobId: null,
      };

      const { job, inserted } = await t.store.jobInsert(spec);
      expect(inserted).toBe(true);
      expect(job).toEqual(expected);
      expect(await t.store.jobGet({ id: spec.id, now: T0 + 1 })).toEqual(expected);
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
      expect(await t.store.jobGet({ id: newJob().id, now: T0 })).toBeNull();
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

      const again = await t.store.jobInsert(duplicate);
      expect(again.inserted).toBe(false);
      expect(again.job).toEqual(first);
      expect(await listIds(T0 + 10)).toEqual([first.id]);
      expect(await t.store.jobGet({ id: duplicate.id, now: T0 + 10 })).toBeNull();

      // Another key is another job.
      const other = await t.store.jobInsert(newJob({ idempotencyKey: "k-2", createdAt: T0 + 20 }));
      expect(other.inserted).toBe(true);
      expect(await listIds(T0 + 20)).toEqual([other.job.id, first.id]);
    });

    it("the duplicate insert returns the first job as it is now, not as it was submitted", async () => {
      const first = await insert({ idempotencyKey: "k-1" });
      await claimOne(T0 + 5);

      const again = await t.store.jobInsert(newJob({ idempotencyKey: "k-1", createdAt: T0 + 10 }));
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
      const kept = await t.store.jobInsert(
        newJob({ idempotencyKey: "k-1", createdAt: T0 + 1_099 }),
      );
      expect(kept.inserted).toBe(false);
      expect(kept.job.id).toBe(first.id);
      expect(kept.job.status).toBe("succeeded");

      // expiresAt <= now: the first job is gone, the key is free.
      const fresh = newJob({ idempotencyKey: "k-1", createdAt: T0 + 1_100 });
      const replaced = await t.store.jobInsert(fresh);
      expect(replaced.inserted).toBe(true);
      expect(replaced.job.id).toBe(fresh.id);
      expect(replaced.job.status).toBe("queued");
      expect((await get(fresh.id, T0 + 1_100)).idempotencyKey).toBe("k-1");
      expect(await t.store.jobGet({ id: first.id, now: T0 + 1_100 })).toBeNull();
      expect(await listIds(T0 + 1_100)).toEqual([fresh.id]);
    });
  });

  describe("idempotency conflicts", () => {
    it("the same key with another request is refused; the same request gets the first job", async () => {
      const first = await insert({ idempotencyKey: "k", requestHash: "h1" });
      const same = await t.store.jobInsert(newJob({ idempotencyKey: "k", requestHash: "h1" }));
      expect(same).toMatchObject({ inserted: false, job: { id: first.id } });
      await expect(
        t.store.jobInsert(newJob({ idempotencyKey: "k", requestHash: "h2" })),
      ).rejects.toMatchObject({ name: "IdempotencyConflictError", key: "k", jobId: first.id });
      // A job stored without a digest (before digests existed) never conflicts.
      const legacy = await insert({ idempotencyKey: "old", requestHash: null });
      const again = await t.store.jobInsert(newJob({ idempotencyKey: "old", requestHash: "h" }));
      expect(again).toMatchObject({ inserted: false, job: { id: legacy.id } });
    });

    it("a conflict in a batch stores none of the batch", async () => {
      await insert({ idempotencyKey: "k", requestHash: "h1" });
      const fresh = newJob();
      await expect(
        t.store.jobInsertMany([fresh, newJob({ idempotencyKey: "k", requestHash: "h2" })]),
      ).rejects.toMatchObject({ name: "IdempotencyConflictError" });
      expect(await t.store.jobGet({ id: fresh.id, now: T0 })).toBeNull();
    });
  });
}
