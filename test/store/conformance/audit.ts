import { describe, expect, it } from "vitest";
import type { AuditEvent } from "../../../src/audit/audit-event.js";
import { newJob, type StoreTest, T0 } from "./harness.js";

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    at: T0,
    principal: "ada",
    action: "EnqueueJob",
    jobId: null,
    remoteAddress: "127.0.0.1",
    protocol: "rest",
    outcome: "ok",
    detail: null,
    ...overrides,
  };
}

/** The audit log: written with the change it records, listed newest first, trimmed by age. */
export function auditTests(t: StoreTest): void {
  describe("audit", () => {
    it("records an insert's event in its transaction, naming the job (the kept one for a repeat)", async () => {
      const first = await t.store.jobInsert(newJob({ idempotencyKey: "k" }), event());
      const again = await t.store.jobInsert(newJob({ idempotencyKey: "k" }), event({ at: T0 + 1 }));
      expect(again.inserted).toBe(false);
      const { events } = await t.store.auditList({ limit: 10 });
      expect(events.map((e) => [e.jobId, e.at])).toEqual([
        [first.job.id, T0 + 1],
        [first.job.id, T0],
      ]);
      expect(events[0]).toMatchObject({
        principal: "ada",
        action: "EnqueueJob",
        remoteAddress: "127.0.0.1",
        protocol: "rest",
        outcome: "ok",
        detail: null,
      });
    });

    it("records a cancel's outcome, whatever it is", async () => {
      const job = await t.insert();
      const audit = (outcome: AuditEvent["outcome"]) =>
        event({ action: "CancelJob", jobId: job.id, outcome });
      expect((await t.store.jobCancel({ id: job.id, now: T0, audit })).kind).toBe("canceled");
      expect((await t.store.jobCancel({ id: job.id, now: T0, audit })).kind).toBe(
        "already-finished",
      );
      const missing = newJob().id;
      await t.store.jobCancel({
        id: missing,
        now: T0,
        audit: (outcome) => event({ action: "CancelJob", jobId: missing, outcome }),
      });
      const { events } = await t.store.auditList({ limit: 10, action: "CancelJob" });
      expect(events.map((e) => e.outcome)).toEqual(["not_found", "failed_precondition", "ok"]);
    });

    it("filters by principal, action, job, outcome and time, and pages newest first", async () => {
      await t.store.auditInsert([
        event({ at: T0 + 1, principal: "ada" }),
        event({ at: T0 + 2, principal: "bob", outcome: "permission_denied" }),
        event({ at: T0 + 3, principal: "ada", action: "CancelJob", jobId: "j_X" }),
        event({ at: T0 + 4, principal: null, outcome: "unauthenticated" }),
      ]);
      const ats = async (p: Parameters<StoreTest["store"]["auditList"]>[0]) =>
        (await t.store.auditList(p)).events.map((e) => e.at - T0);
      expect(await ats({ limit: 10 })).toEqual([4, 3, 2, 1]);
      expect(await ats({ limit: 10, principal: "ada" })).toEqual([3, 1]);
      expect(await ats({ limit: 10, action: "CancelJob" })).toEqual([3]);
      expect(await ats({ limit: 10, jobId: "j_X" })).toEqual([3]);
      expect(await ats({ limit: 10, outcome: "permission_denied" })).toEqual([2]);
      expect(await ats({ limit: 10, since: T0 + 2, until: T0 + 4 })).toEqual([3, 2]);

      const page1 = await t.store.auditList({ limit: 3 });
      expect(page1.more).toBe(true);
      const page2 = await t.store.auditList({ limit: 3, beforeId: page1.events.at(-1)!.id });
      expect(page2.more).toBe(false);
      expect(page2.events.map((e) => e.at - T0)).toEqual([1]);
    });

    it("deletes events older than a time, at most limit at a time", async () => {
      await t.store.auditInsert([1, 2, 3, 4].map((i) => event({ at: T0 + i })));
      expect(await t.store.auditDeleteBefore({ before: T0 + 4, limit: 2 })).toBe(2);
      expect(await t.store.auditDeleteBefore({ before: T0 + 4, limit: 2 })).toBe(1);
      expect(await t.store.auditDeleteBefore({ before: T0 + 4, limit: 2 })).toBe(0);
      expect((await t.store.auditList({ limit: 10 })).events.map((e) => e.at)).toEqual([T0 + 4]);
    });
  });
}
