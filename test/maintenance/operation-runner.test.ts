import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { Operation } from "../../src/job/operations.js";
import { createOperationRunner } from "../../src/maintenance/operation-runner.js";
import type { JobStore } from "../../src/store/job-store.js";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { waitFor } from "../helpers/wait-for.js";
import { newJob } from "../store/conformance/harness.js";

/** The operation runner on a real SQLite store: batches, and a stop that does not wait for the end. */

const JOBS = 300;
let dir: string;
let store: JobStore;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "jobqueue-runner-"));
  store = await createSqliteJobStore({ path: join(dir, "jobqueue.db") });
  await store.jobInsertMany(
    Array.from({ length: JOBS }, () =>
      newJob({ createdAt: Date.now(), tags: ["bulk"], scheduledAt: Date.now() + 86_400_000 }),
    ),
  );
});

afterEach(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

async function startOperation(): Promise<Operation> {
  const now = Date.now();
  const op: Operation = {
    id: `op_${String(now).padStart(26, "0")}`,
    kind: "cancel",
    filter: { tags: ["bulk"] },
    overrides: null,
    owner: null,
    principal: "ada",
    state: "running",
    estimate: JOBS,
    estimateCapped: false,
    examined: 0,
    affected: 0,
    upperId: `j_${"Z".repeat(26)}`,
    cursor: null,
    error: null,
    createdAt: now,
    updatedAt: now,
    finishedAt: null,
  };
  await store.operationCreate(op);
  return op;
}

const runner = () =>
  createOperationRunner({ store, logger: pino({ level: "silent" }), intervalMs: 60_000, batch: 1 });

describe("operation runner", () => {
  it("stops between two batches, and the next runner takes the operation up at its cursor", async () => {
    const op = await startOperation();
    const first = runner();
    first.start();
    await waitFor(async () => ((await store.operationGet({ id: op.id }))?.affected ?? 0) > 0, {
      intervalMs: 0,
    });
    await first.stop();
    const stopped = (await store.operationGet({ id: op.id }))!;
    expect(stopped.state).toBe("running");
    expect(stopped.affected).toBeGreaterThan(0);
    expect(stopped.affected).toBeLessThan(JOBS);
    // Stopped means stopped: nothing moves once stop() has resolved.
    const after = (await store.statsCounts())[0]!.counts;
    expect(after.canceled).toBe(stopped.affected);

    const second = runner();
    second.start();
    const ended = await waitFor(async () => {
      const got = await store.operationGet({ id: op.id });
      return got?.state !== "running" && got;
    });
    await second.stop();
    expect(ended).toMatchObject({ state: "succeeded", affected: JOBS, examined: JOBS });
    expect((await store.statsCounts())[0]!.counts).toMatchObject({ canceled: JOBS, queued: 0 });
    const { events } = await store.auditList({ action: "CancelJobs", limit: 10 });
    expect(events).toHaveLength(1);
    expect(JSON.parse(events[0]!.detail!)).toMatchObject({ operation_id: op.id, affected: JOBS });
  });
});
