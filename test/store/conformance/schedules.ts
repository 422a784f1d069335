import { describe, expect, it } from "vitest";
import { overlapDecision, type Schedule } from "../../../src/job/schedules.js";
import { newJob, type StoreTest, T0 } from "./harness.js";

let seq = 0;

/** A valid schedule, created at T0, next tick at T0 + 60 s unless overridden. */
export function newSchedule(overrides: Partial<Schedule> = {}): Schedule {
  seq += 1;
  return {
    id: `s_01KB0000000000000000000${String(seq).padStart(3, "0")}`,
    owner: null,
    description: "",
    template: {
      url: "https://example.test/hook",
      method: "POST",
      body: { kind: "json", value: { a: 1 } },
    },
    sealedHeaders: null,
    cron: "* * * * *",
    timeZone: "UTC",
    jitterMs: 0,
    startAt: null,
    endAt: null,
    overlapPolicy: "skip",
    catchUp: "skip",
    catchUpWindowMs: 0,
    paused: false,
    nextRunAt: T0 + 60_000,
    lastRunAt: null,
    lastJobId: null,
    bufferedTick: null,
    createdAt: T0,
    updatedAt: T0,
    ...overrides,
  };
}

/** Schedules (periodic jobs): their table, and one job per schedule and tick. */
export function scheduleTableTests(t: StoreTest): void {
  describe("schedules", () => {
    it("stores, reads, lists, updates and deletes a schedule", async () => {
      const a = newSchedule({ owner: "alice" });
      const b = newSchedule({
        owner: "bob",
        template: {
          url: "https://example.test/b",
          body: { kind: "bytes", bytes: new Uint8Array([1, 2, 255]) },
        },
        startAt: T0 + 1,
        endAt: T0 + 2,
      });
      await t.store.scheduleCreate(a);
      await t.store.scheduleCreate(b);
      expect(await t.store.scheduleGet({ id: a.id })).toEqual(a);
      const gotB = await t.store.scheduleGet({ id: b.id });
      expect(Array.from((gotB!.template.body as { bytes: Uint8Array }).bytes)).toEqual([1, 2, 255]);
      expect((await t.store.scheduleList({ limit: 10 })).map((s) => s.id)).toEqual([b.id, a.id]);
      expect(
        (await t.store.scheduleList({ ownedBy: "alice", limit: 10 })).map((s) => s.id),
      ).toEqual([a.id]);
      expect((await t.store.scheduleList({ afterId: b.id, limit: 10 })).map((s) => s.id)).toEqual([
        a.id,
      ]);

      const changed = { ...a, cron: "0 9 * * *", timeZone: "Europe/Berlin", updatedAt: T0 + 5 };
      expect(await t.store.scheduleUpdate(changed)).toBe(true);
      expect(await t.store.scheduleGet({ id: a.id })).toEqual(changed);

      expect(await t.store.scheduleDelete({ id: a.id })).toBe(true);
      expect(await t.store.scheduleDelete({ id: a.id })).toBe(false);
      expect(await t.store.scheduleGet({ id: a.id })).toBeNull();
      expect(await t.store.scheduleUpdate(changed)).toBe(false);
    });

    it("a tick inserted twice yields one job", async () => {
      const s = newSchedule();
      const tick = T0 + 60_000;
      const first = await t.store.jobInsert(
        newJob({ createdAt: tick, scheduleId: s.id, scheduleTick: tick }),
      );
      const second = await t.store.jobInsert(
        newJob({ createdAt: tick + 1, scheduleId: s.id, scheduleTick: tick }),
      );
      expect(first.inserted).toBe(true);
      expect(second.inserted).toBe(false);
      expect(second.job.id).toBe(first.job.id);
      expect(second.job.scheduleTick).toBe(tick);
      // Another tick, and runs triggered by hand (no tick), are jobs of their own.
      const next = await t.store.jobInsert(
        newJob({ createdAt: tick + 2, scheduleId: s.id, scheduleTick: tick + 60_000 }),
      );
      const manual1 = await t.store.jobInsert(newJob({ createdAt: tick + 3, scheduleId: s.id }));
      const manual2 = await t.store.jobInsert(newJob({ createdAt: tick + 4, scheduleId: s.id }));
      expect([next, manual1, manual2].every((r) => r.inserted)).toBe(true);
      const listed = await t.store.jobList({ scheduleId: s.id, limit: 10, now: tick + 5 });
      expect(listed.jobs.map((j) => j.id)).toEqual([
        manual2.job.id,
        manual1.job.id,
        next.job.id,
        first.job.id,
      ]);
      expect(listed.jobs.map((j) => j.scheduleId)).toEqual([s.id, s.id, s.id, s.id]);
      expect((await t.store.jobGet({ id: first.job.id, now: tick }))?.scheduleTick).toBe(tick);
    });

    it("a tick inserted by two nodes at once yields one job", async () => {
      const other = await t.peer();
      const s = newSchedule();
      for (let i = 0; i < 20; i++) {
        const tick = T0 + i * 60_000;
        const [a, b] = await Promise.all([
          t.store.jobInsert(newJob({ createdAt: tick, scheduleId: s.id, scheduleTick: tick })),
          other.store.jobInsert(newJob({ createdAt: tick, scheduleId: s.id, scheduleTick: tick })),
        ]);
        expect([a.inserted, b.inserted].filter(Boolean)).toHaveLength(1);
        expect(a.job.id).toBe(b.job.id);
      }
      const listed = await t.store.jobList({ scheduleId: s.id, limit: 100, now: T0 + 3_600_000 });
      expect(listed.jobs).toHaveLength(20);
    });

    it("reads a schedule's queued and running jobs for the overlap decision", async () => {
      const s = newSchedule();
      const other = newSchedule();
      const old = await t.insert({ scheduleId: s.id, scheduleTick: T0 });
      const running = await t.claimOne(T0 + 1);
      expect(running.id).toBe(old.id);
      const queued = await t.insert({
        createdAt: T0 + 2,
        scheduleId: s.id,
        scheduleTick: T0 + 60_000,
      });
      await t.insert({ createdAt: T0 + 3, scheduleId: other.id, scheduleTick: T0 });
      const active = async () => {
        const { jobs } = await t.store.jobList({
          scheduleId: s.id,
          statuses: ["queued", "running"],
          limit: 100,
          now: T0 + 10,
        });
        return {
          queued: jobs.filter((j) => j.status === "queued").map((j) => j.id),
          running: jobs.filter((j) => j.status === "running").map((j) => j.id),
        };
      };
      expect(await active()).toEqual({ queued: [queued.id], running: [running.id] });
      expect(overlapDecision("skip", await active())).toEqual({ kind: "skip" });
      expect(overlapDecision("cancel_previous", await active())).toEqual({
        kind: "enqueue",
        cancel: [running.id, queued.id],
      });
      await t.store.jobCancel({ id: queued.id, now: T0 + 11 });
      await t.store.jobCancel({ id: running.id, now: T0 + 12 });
      expect(await active()).toEqual({ queued: [], running: [] });
      expect(overlapDecision("skip", await active())).toEqual({ kind: "enqueue", cancel: [] });
    });

    it("lists due schedules, not paused ones; a buffered tick is due", async () => {
      const due = newSchedule({ nextRunAt: T0 + 1_000 });
      const later = newSchedule({ nextRunAt: T0 + 60_000 });
      const paused = newSchedule({ nextRunAt: T0, paused: true });
      const ended = newSchedule({ nextRunAt: null });
      const buffered = newSchedule({ nextRunAt: T0 + 60_000, bufferedTick: T0 });
      for (const s of [due, later, paused, ended, buffered]) await t.store.scheduleCreate(s);
      const ids = (await t.store.scheduleDue({ dueBy: T0 + 1_000, limit: 10 })).map((s) => s.id);
      expect(ids.sort()).toEqual([due.id, buffered.id].sort());
      await t.store.scheduleUpdate({ ...due, paused: true, updatedAt: T0 + 2 });
      expect(
        (await t.store.scheduleDue({ dueBy: T0 + 1_000, limit: 10 })).map((s) => s.id),
      ).toEqual([buffered.id]);
    });

    it("advances a tick once: another advance from the same tick, or after a change, does not take", async () => {
      const s = newSchedule({ nextRunAt: T0 + 60_000 });
      await t.store.scheduleCreate(s);
      const advance = {
        id: s.id,
        from: T0 + 60_000,
        updatedAt: T0,
        nextRunAt: T0 + 120_000,
        bufferedTick: null,
        lastRun: { at: T0 + 60_000, jobId: "j_01KB0000000000000000000001" },
      };
      expect(await t.store.scheduleAdvance(advance)).toBe(true);
      expect(await t.store.scheduleAdvance(advance)).toBe(false);
      const got = await t.store.scheduleGet({ id: s.id });
      expect(got).toMatchObject({
        nextRunAt: T0 + 120_000,
        lastRunAt: T0 + 60_000,
        lastJobId: "j_01KB0000000000000000000001",
      });
      // Buffering keeps the last run.
      expect(
        await t.store.scheduleAdvance({
          ...advance,
          from: T0 + 120_000,
          nextRunAt: T0 + 180_000,
          bufferedTick: T0 + 120_000,
          lastRun: null,
        }),
      ).toBe(true);
      expect(await t.store.scheduleGet({ id: s.id })).toMatchObject({
        nextRunAt: T0 + 180_000,
        bufferedTick: T0 + 120_000,
        lastJobId: "j_01KB0000000000000000000001",
      });
      // Changed since it was read (paused, a new rule): the advance read before does not take.
      await t.store.scheduleUpdate({
        ...got!,
        paused: true,
        nextRunAt: T0 + 180_000,
        updatedAt: T0 + 9,
      });
      expect(
        await t.store.scheduleAdvance({ ...advance, from: T0 + 180_000, nextRunAt: T0 + 240_000 }),
      ).toBe(false);
    });

    it("two nodes advancing the same tick: one takes", async () => {
      const other = await t.peer();
      const s = newSchedule({ nextRunAt: T0 + 60_000 });
      await t.store.scheduleCreate(s);
      const advance = {
        id: s.id,
        from: T0 + 60_000,
        updatedAt: T0,
        nextRunAt: T0 + 120_000,
        bufferedTick: null,
        lastRun: null,
      };
      const results = await Promise.all([
        t.store.scheduleAdvance(advance),
        other.store.scheduleAdvance(advance),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
    });
  });
}
