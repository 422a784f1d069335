import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import type { JsonObject } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import type { Clock } from "../../src/job/clock.js";
import { jitteredRunAt } from "../../src/job/schedules.js";
import { generateSigningSecret } from "../../src/job/signing.js";
import {
  bearer,
  type CallResult,
  type Clients,
  createClients,
  PROTOCOLS,
  type Protocol,
} from "../helpers/clients.js";
import { type Received, startTarget, type Target } from "../helpers/target.js";
import {
  createTestDatabase,
  STORE_KINDS,
  type StoreKind,
  startTestApp,
  type TestApp,
} from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";
import { verifyWebhook } from "../helpers/webhooks.js";

/**
 * Schedules (periodic jobs) end to end on a real server, a real target and both stores, over REST,
 * Connect, gRPC-Web, gRPC and grpc-js: a cron schedule firing on time in its time zone across a
 * daylight-saving change (the servers run on a clock the test moves), one job per tick with two
 * nodes racing on PostgreSQL, the overlap and catch-up policies, pause, resume and trigger, errors
 * naming their field, and who may do what.
 */

/** A clock that runs from `start` at the wall clock's pace, and jumps when the test says. */
function movableClock(start: number): Clock & { jumpTo(ms: number): void } {
  const t0 = Date.now();
  let offset = start - t0;
  return {
    now: () => Date.now() + offset,
    jumpTo(ms) {
      offset = ms - Date.now();
    },
  };
}

const ms = (timestamp: unknown) => new Date(String(timestamp)).getTime();

/** A job from any protocol's JSON: proto names, REST or proto-JSON enums. */
const statusOf = (job: any) =>
  String(job.status)
    .toLowerCase()
    .replace(/^job_status_/, "");

let apps: TestApp[] = [];
let targets: Target[] = [];
let clients: Clients[] = [];

afterEach(async () => {
  for (const c of clients) c.close();
  await Promise.all(apps.map((a) => a.stop()));
  await Promise.all(targets.map((t) => t.close()));
  apps = [];
  targets = [];
  clients = [];
});

async function setup(
  options: {
    store?: StoreKind;
    start?: number;
    /** The ticker's interval; by default an hour, so that only runDue() fires ticks. */
    tickMs?: number;
    env?: Record<string, string>;
  } = {},
) {
  const clock = movableClock(options.start ?? Date.UTC(2026, 2, 27, 12, 0, 0));
  const target = await startTarget();
  targets.push(target);
  const t = await startTestApp(
    { JOBQUEUE_LEASE_SECONDS: "3600", ...options.env },
    { clock, scheduleTickMs: options.tickMs ?? 3_600_000 },
    { store: options.store },
  );
  apps.push(t);
  const c = createClients(t.url);
  clients.push(c);
  return { t, clock, target, c };
}

async function must(result: Promise<CallResult>): Promise<any> {
  const r = await result;
  if (!r.ok) throw new Error(`call failed: ${r.code} ${r.message}`);
  return r.body;
}

function spec(target: Target, path: string, extra: JsonObject = {}): JsonObject {
  return {
    template: { url: `${target.url}${path}`, method: "POST", body: { hello: "world" } },
    ...extra,
  };
}

/** Every job of a schedule, oldest first, listed over `protocol`. */
async function jobsOf(c: Clients, protocol: Protocol, scheduleId: string, headers = {}) {
  const body = await must(
    c.call(protocol, "ListJobs", { schedule_id: scheduleId, page_size: 1000 }, headers),
  );
  return ((body.jobs ?? []) as any[]).reverse();
}

describe.each(STORE_KINDS)("schedules on %s", (store) => {
  it.each(PROTOCOLS)(
    'fires "0 9 * * *" in Europe/Berlin at 09:00 local time, before and after summer time starts (%s)',
    async (protocol) => {
      // The ticker runs every 20 ms here: the ticks fire on their own once the clock reaches them.
      const { t, clock, target, c } = await setup({ store, tickMs: 20 });
      const created = await must(
        c.call(protocol, "CreateSchedule", {
          schedule: { ...spec(target, "/daily"), cron: "0 9 * * *", time_zone: "Europe/Berlin" },
        }),
      );
      const s = created.schedule;
      expect(s.schedule_id).toMatch(/^s_[0-9A-Z]{26}$/);
      // 09:00 in Berlin on 2026-03-28 is 08:00 UTC (winter time).
      expect(ms(s.next_run_at)).toBe(Date.UTC(2026, 2, 28, 8, 0, 0));

      clock.jumpTo(Date.UTC(2026, 2, 28, 8, 0, 0) + 100);
      const first = await target.request("/daily", 1);
      expect(JSON.parse(first.body.toString())).toEqual({ hello: "world" });
      const [job1] = await waitFor(async () => {
        const jobs = await jobsOf(c, protocol, s.schedule_id);
        return jobs.length === 1 && statusOf(jobs[0]) === "succeeded" ? jobs : undefined;
      });
      expect(job1.schedule_id).toBe(s.schedule_id);
      expect(ms(job1.schedule_tick)).toBe(Date.UTC(2026, 2, 28, 8, 0, 0));

      // Summer time started on 2026-03-29 at 02:00: 09:00 in Berlin is now 07:00 UTC.
      const after = await must(c.call(protocol, "GetSchedule", { schedule_id: s.schedule_id }));
      expect(ms(after.schedule.next_run_at)).toBe(Date.UTC(2026, 2, 29, 7, 0, 0));
      expect(after.schedule.last_job_id).toBe(job1.job_id);
      clock.jumpTo(Date.UTC(2026, 2, 29, 7, 0, 0) + 100);
      await target.request("/daily", 2);
      const jobs = await waitFor(async () => {
        const list = await jobsOf(c, protocol, s.schedule_id);
        return list.length === 2 ? list : undefined;
      });
      expect(ms(jobs[1].schedule_tick)).toBe(Date.UTC(2026, 2, 29, 7, 0, 0));
      // Nothing more fired meanwhile.
      await t.app.schedules.runDue();
      expect(target.received("/daily")).toHaveLength(2);
    },
  );

  /**
   * A schedule every minute with overlap `policy`, created over `protocol`, whose first run is in
   * flight: its call to /slow is held until `held.releaseAll()`.
   */
  async function firstRunHeld(protocol: Protocol, policy: string) {
    const ctx = await setup({ store });
    const held = holdRequests(ctx.target, "/slow");
    const start = ctx.clock.now();
    const { schedule } = await must(
      ctx.c.call(protocol, "CreateSchedule", {
        schedule: { ...spec(ctx.target, "/slow"), cron: "* * * * *", overlap_policy: policy },
      }),
    );
    const tick1 = ms(schedule.next_run_at);
    ctx.clock.jumpTo(tick1 + 100);
    await ctx.t.app.schedules.runDue();
    const firstCall = await ctx.target.request("/slow", 1);
    return { ...ctx, held, start, schedule, tick1, firstCall };
  }

  it("skip: a tick while the previous run is going is skipped", async () => {
    const { t, clock, c, held, start, schedule, tick1 } = await firstRunHeld(
      "rest",
      "OVERLAP_POLICY_SKIP",
    );
    expect(tick1).toBeGreaterThan(start);
    clock.jumpTo(tick1 + 60_100);
    await t.app.schedules.runDue();
    expect(await jobsOf(c, "rest", schedule.schedule_id)).toHaveLength(1);
    const got = await must(c.call("rest", "GetSchedule", { schedule_id: schedule.schedule_id }));
    expect(ms(got.schedule.next_run_at)).toBe(tick1 + 120_000);
    held.releaseAll();
  });

  it("buffer_one: ticks while the previous run is going leave one run, started after it", async () => {
    const { t, clock, target, c, held, schedule, tick1 } = await firstRunHeld(
      "connect",
      "OVERLAP_POLICY_BUFFER_ONE",
    );
    for (const k of [1, 2]) {
      clock.jumpTo(tick1 + k * 60_000 + 100);
      await t.app.schedules.runDue();
    }
    expect(await jobsOf(c, "connect", schedule.schedule_id)).toHaveLength(1);
    held.releaseAll();
    const [first] = await jobsOf(c, "connect", schedule.schedule_id);
    await t.waitForStatus(first.job_id, "succeeded");
    const jobs = await waitFor(async () => {
      await t.app.schedules.runDue();
      const list = await jobsOf(c, "connect", schedule.schedule_id);
      return list.length === 2 ? list : undefined;
    });
    // The buffered run is the latest tick's (the one before it was replaced).
    expect(ms(jobs[1].schedule_tick)).toBe(tick1 + 120_000);
    await target.request("/slow", 2);
    held.releaseAll();
  });

  it("jitter: a tick's job waits up to the jitter after its tick, the same delay whoever fires it", async () => {
    const { t, clock, target, c } = await setup({ store });
    const { schedule } = await must(
      c.call("rest", "CreateSchedule", {
        schedule: { ...spec(target, "/j"), cron: "@hourly", jitter_seconds: 600 },
      }),
    );
    expect(schedule.jitter_seconds).toBe(600);
    const tick = ms(schedule.next_run_at);
    clock.jumpTo(tick + 100);
    await Promise.all([t.app.schedules.runDue(), t.app.schedules.runDue()]);
    const jobs = await jobsOf(c, "rest", schedule.schedule_id);
    expect(jobs).toHaveLength(1);
    const runAt = jitteredRunAt(schedule.schedule_id, tick, 600_000);
    expect(runAt).toBeGreaterThanOrEqual(tick);
    expect(runAt).toBeLessThanOrEqual(tick + 600_000);
    // A delay that has passed already (1 in 6,000) runs at once.
    if (runAt > tick + 100) expect(ms(jobs[0].scheduled_at)).toBe(runAt);
    expect(ms(jobs[0].schedule_tick)).toBe(tick);
  });

  it("allow: a tick while the previous run is going runs too", async () => {
    const { t, clock, target, c, held, schedule, tick1 } = await firstRunHeld(
      "grpc",
      "OVERLAP_POLICY_ALLOW",
    );
    clock.jumpTo(tick1 + 60_100);
    await t.app.schedules.runDue();
    await target.request("/slow", 2);
    const jobs = await jobsOf(c, "grpc", schedule.schedule_id);
    expect(jobs.map((j) => statusOf(j))).toEqual(["running", "running"]);
    held.releaseAll();
  });

  it("cancel_previous: a tick cancels the run still going, then runs", async () => {
    const { t, clock, target, c, held, schedule, tick1, firstCall } = await firstRunHeld(
      "grpc-js",
      "OVERLAP_POLICY_CANCEL_PREVIOUS",
    );
    clock.jumpTo(tick1 + 60_100);
    await t.app.schedules.runDue();
    // The call in flight is aborted.
    expect(await firstCall.closed).toBe("aborted");
    await target.request("/slow", 2);
    const jobs = await jobsOf(c, "grpc-js", schedule.schedule_id);
    expect(jobs.map((j) => statusOf(j))).toEqual(["canceled", "running"]);
    held.releaseAll();
  });

  it("catch-up: after downtime, skip fires only the tick due now; run_missed the ticks within the window", async () => {
    const { t, clock, target, c } = await setup({ store });
    const base = {
      cron: "* * * * *",
      overlap_policy: "OVERLAP_POLICY_ALLOW",
    };
    const skip = (
      await must(c.call("rest", "CreateSchedule", { schedule: { ...spec(target, "/a"), ...base } }))
    ).schedule;
    const missed = (
      await must(
        c.call("rest", "CreateSchedule", {
          schedule: {
            ...spec(target, "/b"),
            ...base,
            catch_up: "CATCH_UP_POLICY_RUN_MISSED",
            catch_up_window_seconds: 180,
          },
        }),
      )
    ).schedule;
    const tick1 = ms(skip.next_run_at);
    // No node ran the schedules for 5 minutes.
    clock.jumpTo(tick1 + 5 * 60_000 + 100);
    await t.app.schedules.runDue();
    const ticksOf = async (id: string) =>
      (await jobsOf(c, "rest", id)).map((j) => ms(j.schedule_tick) - tick1);
    expect(await ticksOf(skip.schedule_id)).toEqual([300_000]);
    expect(await ticksOf(missed.schedule_id)).toEqual([180_000, 240_000, 300_000]);
  });

  it("after a restart, the new leader's ticker catches up as each schedule's policy says", async () => {
    const clock = movableClock(Date.UTC(2026, 2, 27, 12, 0, 0));
    const target = await startTarget();
    targets.push(target);
    const database = createTestDatabase(store);
    const env = { JOBQUEUE_LEASE_SECONDS: "3600" };
    const first = await startTestApp(env, { clock, scheduleTickMs: 20 }, { database });
    apps.push(first);
    const c = createClients(first.url);
    const base = { cron: "* * * * *", overlap_policy: "OVERLAP_POLICY_ALLOW" };
    const skip = (
      await must(c.call("rest", "CreateSchedule", { schedule: { ...spec(target, "/a"), ...base } }))
    ).schedule;
    const missed = (
      await must(
        c.call("rest", "CreateSchedule", {
          schedule: {
            ...spec(target, "/b"),
            ...base,
            catch_up: "CATCH_UP_POLICY_RUN_MISSED",
            catch_up_window_seconds: 150,
          },
        }),
      )
    ).schedule;
    c.close();
    const tick1 = ms(skip.next_run_at);
    // Down for 5 minutes: the database outlives the stop (it is removed after its last app).
    database.users++;
    await first.stop();
    clock.jumpTo(tick1 + 4 * 60_000 + 100);
    const second = await startTestApp(env, { clock, scheduleTickMs: 20 }, { database });
    database.users--;
    apps.push(second);
    const c2 = createClients(second.url);
    clients.push(c2);
    const ticksOf = async (id: string) =>
      (await jobsOf(c2, "connect", id)).map((j) => ms(j.schedule_tick) - tick1);
    await waitFor(async () => (await ticksOf(missed.schedule_id)).length === 3);
    await waitFor(async () => (await ticksOf(skip.schedule_id)).length === 1);
    expect(await ticksOf(skip.schedule_id)).toEqual([240_000]);
    expect(await ticksOf(missed.schedule_id)).toEqual([120_000, 180_000, 240_000]);
  });

  it("pause skips the ticks, resume starts from the next one, trigger runs one now (also while paused)", async () => {
    const { t, clock, target, c } = await setup({ store });
    const { schedule } = await must(
      c.call("grpc-web", "CreateSchedule", {
        schedule: { ...spec(target, "/p"), cron: "@every 5m" },
      }),
    );
    const id = schedule.schedule_id;
    const tick1 = ms(schedule.next_run_at);
    const paused = await must(c.call("grpc-web", "PauseSchedule", { schedule_id: id }));
    expect(paused.schedule.paused).toBe(true);
    expect(paused.schedule.next_run_at).toBeUndefined();
    clock.jumpTo(tick1 + 100);
    await t.app.schedules.runDue();
    expect(await jobsOf(c, "grpc-web", id)).toHaveLength(0);

    const triggered = await must(c.call("grpc-web", "TriggerSchedule", { schedule_id: id }));
    expect(triggered.job.schedule_id).toBe(id);
    expect(triggered.job.schedule_tick).toBeUndefined();
    await target.request("/p", 1);

    const resumed = await must(c.call("grpc-web", "ResumeSchedule", { schedule_id: id }));
    expect(resumed.schedule.paused ?? false).toBe(false);
    expect(ms(resumed.schedule.next_run_at)).toBe(tick1 + 300_000);
    clock.jumpTo(tick1 + 300_100);
    await t.app.schedules.runDue();
    const jobs = await jobsOf(c, "grpc-web", id);
    expect(jobs.map((j) => (j.schedule_tick ? ms(j.schedule_tick) - tick1 : null))).toEqual([
      null,
      300_000,
    ]);

    // Update, list, delete; the jobs stay.
    const updated = await must(
      c.call("grpc-web", "UpdateSchedule", {
        schedule_id: id,
        schedule: { cron: "0 9 * * *", time_zone: "America/New_York" },
      }),
    );
    expect(updated.schedule.cron).toBe("0 9 * * *");
    expect(updated.schedule.template.url).toBe(`${target.url}/p`);
    const listed = await must(c.call("grpc-web", "ListSchedules", {}));
    expect(listed.schedules.map((s: any) => s.schedule_id)).toEqual([id]);
    await must(c.call("grpc-web", "DeleteSchedule", { schedule_id: id }));
    const gone = await c.call("grpc-web", "GetSchedule", { schedule_id: id });
    expect(gone.code).toBe(5);
    expect(await jobsOf(c, "grpc-web", id)).toHaveLength(2);
    const audit = await t.app.store.auditList({ limit: 100 });
    expect(
      audit.events
        .map((e) => e.action)
        .filter((a) => a.includes("Schedule"))
        .reverse(),
    ).toEqual([
      "CreateSchedule",
      "PauseSchedule",
      "TriggerSchedule",
      "ResumeSchedule",
      "ScheduleTick",
      "UpdateSchedule",
      "DeleteSchedule",
    ]);
  });

  it("a template's signing secret is sealed like its secret headers: masked on reads, absent from the database, signing each run; its callback_url kept", async () => {
    // The real time: a receiver refuses a signature whose timestamp is far from its own clock.
    const { t, target, c } = await setup({ store, start: Date.now() });
    const secret = generateSigningSecret(randomBytes);
    const created = await must(
      c.call("rest", "CreateSchedule", {
        schedule: {
          template: {
            url: `${target.url}/signed`,
            method: "POST",
            body: { n: 1 },
            signing_secret: secret,
            callback_url: `${target.url}/called-back`,
          },
          cron: "@daily",
        },
      }),
    );
    const id = created.schedule.schedule_id;
    for (const read of [
      created.schedule,
      (await must(c.call("connect", "GetSchedule", { schedule_id: id }))).schedule,
    ]) {
      expect(read.template.signing_secret).toBe("***");
      expect(read.template.sign).toBe(true);
      expect(read.template.callback_url).toBe(`${target.url}/called-back`);
    }
    await must(c.call("rest", "TriggerSchedule", { schedule_id: id }));
    const req = await target.request("/signed", 1);
    expect(verifyWebhook(req, secret)).toEqual({ n: 1 });
    await target.request("/called-back", 1);
    const files =
      store === "sqlite"
        ? [t.dbPath, `${t.dbPath}-wal`]
            .filter((f) => existsSync(f))
            .map((f) => readFileSync(f).toString("latin1"))
            .join("")
        : "";
    expect(files).not.toContain(secret.slice("whsec_".length));
  });

  it("lists schedules newest first, a page at a time", async () => {
    const { target, c } = await setup({ store });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const { schedule } = await must(
        c.call("rest", "CreateSchedule", { schedule: { ...spec(target, "/l"), cron: "@daily" } }),
      );
      ids.push(schedule.schedule_id);
    }
    const first = await must(c.call("rest", "ListSchedules", { page_size: 2 }));
    expect(first.schedules.map((s: any) => s.schedule_id)).toEqual([ids[2], ids[1]]);
    const second = await must(
      c.call("rest", "ListSchedules", { page_size: 2, page_token: first.next_page_token }),
    );
    expect(second.schedules.map((s: any) => s.schedule_id)).toEqual([ids[0]]);
    expect(second.next_page_token ?? null).toBeNull();
    const bad = await c.call("rest", "ListSchedules", { page_token: "nope" });
    expect(bad.httpStatus).toBe(400);
    expect(bad.message).toContain("page_token");
  });

  it.each(PROTOCOLS)("refuses bad input naming the field (%s)", async (protocol) => {
    const { target, c } = await setup({ store });
    for (const [extra, field] of [
      [{ cron: "61 * * * *" }, "cron"],
      [{ cron: "@hourly", time_zone: "Mars/Olympus" }, "time_zone"],
      [
        { cron: "@hourly", start_at: "2026-04-01T00:00:00Z", end_at: "2026-03-01T00:00:00Z" },
        "end_at",
      ],
      [{ cron: "@every 1h", template: { url: "ftp://x" } }, "template.url"],
    ] as const) {
      const r = await c.call(protocol, "CreateSchedule", {
        schedule: { ...spec(target, "/x"), ...extra },
      });
      expect(r.code).toBe(3);
      expect(r.message).toContain(field);
      if (protocol === "rest") expect(r.httpStatus).toBe(400);
    }
  });
});

describe("two nodes on one PostgreSQL schema", () => {
  it("each tick enqueues one job when both fire it at once", async () => {
    const clock = movableClock(Date.UTC(2026, 2, 27, 12, 0, 0));
    const target = await startTarget();
    targets.push(target);
    const database = createTestDatabase("postgres");
    const env = { JOBQUEUE_LEASE_SECONDS: "3600" };
    const a = await startTestApp(env, { clock, scheduleTickMs: 20 }, { database });
    apps.push(a);
    const b = await startTestApp(env, { clock, scheduleTickMs: 20 }, { database });
    apps.push(b);
    const c = createClients(a.url);
    clients.push(c);
    const { schedule } = await must(
      c.call("rest", "CreateSchedule", {
        schedule: {
          ...spec(target, "/race"),
          cron: "*/10 * * * * *",
          overlap_policy: "OVERLAP_POLICY_ALLOW",
        },
      }),
    );
    const tick1 = ms(schedule.next_run_at);
    for (let k = 0; k < 10; k++) {
      clock.jumpTo(tick1 + k * 10_000 + 50);
      // Both nodes fire the tick at once (as during a change of leader), and the leader's ticker too.
      await Promise.all([
        a.app.schedules.runDue(),
        b.app.schedules.runDue(),
        a.app.schedules.runDue(),
        b.app.schedules.runDue(),
      ]);
    }
    const jobs = await jobsOf(c, "rest", schedule.schedule_id);
    expect(jobs.map((j) => ms(j.schedule_tick) - tick1)).toEqual(
      Array.from({ length: 10 }, (_, k) => k * 10_000),
    );
    // One audit row per tick, too.
    const audit = await a.app.store.auditList({ action: "ScheduleTick", limit: 100 });
    expect(audit.events.map((e) => e.jobId).sort()).toEqual(jobs.map((j) => j.job_id).sort());
    await waitFor(() => target.received("/race").length === 10);
  });
});

describe("who may do what", () => {
  const PEOPLE = { ada: "admin", sam: "submitter", sue: "submitter", rita: "reader" } as const;
  type Person = keyof typeof PEOPLE;
  const GENERATED = Object.fromEntries(
    Object.entries(PEOPLE).map(([name, role]) => [name, generateApiKey(name, role)]),
  ) as Record<Person, { key: string; line: string }>;
  const as = (p: Person) => bearer(GENERATED[p].key);

  it.each(["rest", "connect", "grpc"] as const)(
    "a reader cannot create; a submitter sees and changes only its own; an admin every one (%s)",
    async (protocol) => {
      const { target, c } = await setup({
        env: {
          JOBQUEUE_API_KEYS: Object.values(GENERATED)
            .map((g) => g.line)
            .join(","),
        },
      });
      const body = { schedule: { ...spec(target, "/r"), cron: "@hourly" } };
      const denied = await c.call(protocol, "CreateSchedule", body, as("rita"));
      expect(denied.code).toBe(7);
      const mine = await must(c.call(protocol, "CreateSchedule", body, as("sam")));
      const id = mine.schedule.schedule_id;
      expect(mine.schedule.owner).toBe("sam");

      const sueList = await must(c.call(protocol, "ListSchedules", {}, as("sue")));
      expect(sueList.schedules ?? []).toEqual([]);
      for (const rpc of [
        "GetSchedule",
        "PauseSchedule",
        "TriggerSchedule",
        "DeleteSchedule",
      ] as const) {
        expect((await c.call(protocol, rpc, { schedule_id: id }, as("sue"))).code).toBe(5);
      }
      const adaList = await must(c.call(protocol, "ListSchedules", {}, as("ada")));
      expect(adaList.schedules.map((s: any) => s.schedule_id)).toEqual([id]);
      // An admin's trigger runs the job as the schedule's owner's.
      const triggered = await must(
        c.call(protocol, "TriggerSchedule", { schedule_id: id }, as("ada")),
      );
      expect(triggered.job.owner).toBe("sam");
      const ritaGet = await c.call(protocol, "GetSchedule", { schedule_id: id }, as("rita"));
      expect(ritaGet.code).toBe(5);
      await must(c.call(protocol, "DeleteSchedule", { schedule_id: id }, as("sam")));
    },
  );
});

/** Holds every request to `path` until released (a run that is still going). */
function holdRequests(target: Target, path: string) {
  const gates: (() => void)[] = [];
  let open = false;
  target.on(path, async (_req: Received, res) => {
    if (!open) {
      const gate = deferred();
      gates.push(gate.resolve);
      await gate.promise;
    }
    if (!res.destroyed) res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
  return {
    releaseAll() {
      open = true;
      for (const g of gates.splice(0)) g();
    },
  };
}
