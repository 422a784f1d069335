import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import { type JobStore, StoreUnavailableError } from "../../src/store/job-store.js";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { mountTmpfs, type Tmpfs } from "../helpers/faults.js";
import { newJob } from "./conformance/harness.js";

/**
 * The SQLite store on a file system of the test's own (a small tmpfs): full, then read-only. The
 * store says what is wrong and where, refuses what it cannot store, and comes back by itself.
 * Skipped, saying why, where a tmpfs cannot be mounted (not root).
 */
const fs = await mountTmpfs(16 * 1_048_576);
const skip = "skip" in fs ? fs.skip : null;
if (skip) console.warn(`sqlite-faults: skipped: ${skip}`);

describe.skipIf(skip !== null)("sqlite store on a file system that fails", () => {
  const tmpfs = fs as Tmpfs;
  let path: string;
  let store: JobStore;
  let n = 0;

  beforeEach(() => {
    const dir = join(tmpfs.dir, `t${n++}`);
    mkdirSync(dir);
    path = join(dir, "jobs.db");
  });

  afterEach(async () => {
    await store?.close();
    tmpfs.free();
    await tmpfs.readWrite().catch(() => {});
  });

  afterAll(() => tmpfs.unmount());

  it("disk full: refuses writes naming the path, keeps every acknowledged one, and takes writes again once there is room", async () => {
    store = createSqliteJobStore({ path, minFreeBytes: 1_048_576 });
    const before = newJob();
    await store.jobInsert(before);
    await store.probe();

    tmpfs.fill();
    // A body large enough that no write of it fits in what is left.
    const big = () => newJob({ body: { kind: "json", value: { pad: "x".repeat(64 * 1024) } } });
    const refused = await store.jobInsert(big()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StoreUnavailableError);
    expect((refused as Error).message).toContain(`the disk holding ${path} is full`);
    // The probe says so too (readiness is off), while reads still work.
    await expect(store.probe()).rejects.toThrow(/full/);
    expect((await store.jobGet({ id: before.id }))?.id).toBe(before.id);

    tmpfs.free();
    const after = big();
    await store.jobInsert(after);
    await store.probe();
    const { jobs } = await store.jobList({ limit: 10 });
    expect(jobs.map((j) => j.id).sort()).toEqual([before.id, after.id].sort());
  });

  it("nearly full: the probe fails below the free space asked for, before writes do", async () => {
    store = createSqliteJobStore({ path, minFreeBytes: 64 * 1_048_576 });
    await store.jobInsert(newJob());
    await expect(store.probe()).rejects.toThrow(
      new RegExp(`the disk holding ${path} is nearly full: .* MiB free, below the 64.0 MiB`),
    );
  });

  it("a read-only file system at start: opens anyway, refuses calls naming it, and opens the database once it is writable", async () => {
    const first = createSqliteJobStore({ path });
    const kept = newJob();
    await first.jobInsert(kept);
    await first.close();

    await tmpfs.readOnly();
    store = createSqliteJobStore({ path });
    const refused = await store.jobInsert(newJob()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(StoreUnavailableError);
    expect((refused as Error).message).toContain(`the file system holding ${path} is read-only`);
    await expect(store.jobGet({ id: kept.id })).rejects.toThrow(/read-only/);
    await expect(store.probe()).rejects.toThrow(/read-only/);

    await tmpfs.readWrite();
    await store.probe();
    expect((await store.jobGet({ id: kept.id }))?.id).toBe(kept.id);
    await store.jobInsert(newJob());
  });

  it("signals keep reaching listeners across a reopen", async () => {
    const first = createSqliteJobStore({ path });
    await first.close();
    await tmpfs.readOnly();
    store = createSqliteJobStore({ path });
    const heard: string[] = [];
    store.signals.onJobChanged((e) => heard.push(e.jobId));
    await tmpfs.readWrite();
    await store.probe();
    const job = newJob();
    await store.jobInsert(job);
    expect(heard).toEqual([job.id]);
  });
});
