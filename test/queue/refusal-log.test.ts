import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AuditEvent } from "../../src/audit/audit-event.js";
import { createRefusalLog } from "../../src/queue/refusal-log.js";
import type { JobStore } from "../../src/store/job-store.js";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 10, 30, 12, 0, 0);

function refusal(at: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    at,
    principal: null,
    action: "GetJob",
    jobId: null,
    remoteAddress: "10.0.0.1",
    protocol: "rest",
    outcome: "unauthenticated",
    detail: null,
    ...over,
  };
}

describe("the refusal log", () => {
  let dir: string;
  let store: JobStore;
  let now = T0;
  const clock = { now: () => now };
  const rows = async () => (await store.auditList({ limit: 10_000 })).events.reverse();

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "jobqueue-refusals-"));
    store = createSqliteJobStore({ path: join(dir, "jq.db") });
    now = T0;
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("records the first refusals of a kind one by one, then one row with the count per minute", async () => {
    const log = createRefusalLog({ store, clock, individualPerWindow: 3 });
    for (let i = 0; i < 10_000; i++) await log.record(refusal(T0 + (i % 50_000)));
    expect(await rows()).toHaveLength(3);
    // The next minute's first refusal closes the last minute: its count is written.
    now = T0 + MINUTE;
    await log.record(refusal(now));
    await log.stop();
    const all = await rows();
    expect(all.map((r) => r.detail)).toEqual([
      null,
      null,
      null,
      "refused 9997 more times from 2026-11-30T12:00:00.000Z for 60 s",
      null,
    ]);
    expect(all[3]).toMatchObject({ at: T0 + MINUTE - 1, remoteAddress: "10.0.0.1", jobId: null });
  });

  it("keeps kinds apart: address, principal, method, outcome and protocol", async () => {
    const log = createRefusalLog({ store, clock, individualPerWindow: 1 });
    const kinds: Partial<AuditEvent>[] = [
      {},
      { remoteAddress: "10.0.0.2" },
      { principal: "sam", outcome: "permission_denied" },
      { action: "CancelJob" },
      { protocol: "grpc" },
    ];
    for (let i = 0; i < 4; i++) for (const k of kinds) await log.record(refusal(T0 + i, k));
    expect(await rows()).toHaveLength(5);
    await log.stop();
    const counted = (await rows()).filter((r) => r.detail !== null);
    expect(counted.map((r) => r.detail)).toEqual(
      kinds.map(() => expect.stringMatching(/^refused 3 more times/)),
    );
  });

  it("writes a window's counts when the minute ends, without another refusal", async () => {
    const log = createRefusalLog({ store, clock, individualPerWindow: 0, windowMs: 50 });
    now = Date.now();
    await log.record(refusal(now));
    await log.record(refusal(now));
    expect(await rows()).toHaveLength(0);
    now += 60;
    await expect.poll(async () => (await rows()).length, { timeout: 2_000 }).toBe(1);
    expect((await rows())[0]!.detail).toMatch(/^refused 2 more times/);
    await log.stop();
  });

  it("bounds its memory: kinds beyond the limit share one anonymous row", async () => {
    const log = createRefusalLog({ store, clock, individualPerWindow: 1, maxKinds: 10 });
    for (let i = 0; i < 1000; i++)
      await log.record(refusal(T0, { remoteAddress: `10.0.${i >> 8}.${i & 255}` }));
    await log.stop();
    const all = await rows();
    expect(all).toHaveLength(11);
    expect(all[10]).toMatchObject({
      remoteAddress: null,
      action: "*",
      detail: expect.stringMatching(/^refused 990 more/),
    });
  });
});
