import { describe, expect, it } from "vitest";
import { InvalidArgumentError } from "../../src/job/errors.js";
import {
  dueTicks,
  isTimeZone,
  jitteredRunAt,
  nextTick,
  nextTicks,
  overlapDecision,
  parseEvery,
  type ScheduleInput,
  validateSchedule,
  validateScheduleUpdate,
} from "../../src/job/schedules.js";
import type { JobLimits } from "../../src/job/validate.js";

const NOW = Date.UTC(2026, 2, 27, 12, 0, 0);

const limits: JobLimits = {
  defaultTimeoutMs: 30_000,
  maxTimeoutMs: 3_600_000,
  defaultMaxAttempts: 3,
  defaultBackoffStrategy: "exponential",
  defaultBackoffBaseMs: 1000,
  defaultTtlMs: null,
  maxTtlMs: 31_536_000_000,
  maxBodyBytes: 1_048_576,
  maxUrlLength: 8192,
  maxHeaders: 64,
  maxHeaderBytes: 16_384,
  maxTags: 20,
  maxTagLength: 64,
};

const template = { url: "https://example.com/hook", method: "POST" };

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidArgumentError) return err.field;
    throw err;
  }
  throw new Error("no error");
}

function rule(cron: string, timeZone = "UTC", extra: Partial<ScheduleInput> = {}) {
  return {
    ...validateSchedule({ template, cron, timeZone, ...extra }, limits, NOW),
    createdAt: NOW,
  };
}

describe("validateSchedule", () => {
  it("takes the defaults", () => {
    expect(validateSchedule({ template, cron: "*/5 * * * *" }, limits, NOW)).toEqual({
      description: "",
      template,
      cron: "*/5 * * * *",
      timeZone: "UTC",
      jitterMs: 0,
      startAt: null,
      endAt: null,
      overlapPolicy: "skip",
      catchUp: "skip",
      catchUpWindowMs: 0,
      paused: false,
    });
  });

  it.each([
    ["5 fields", "0 9 * * *"],
    ["6 fields (seconds first)", "*/10 * * * * *"],
    ["a nickname", "@hourly"],
    ["a nickname in capitals", "@Daily"],
    ["an interval", "@every 30s"],
    ["a compound interval", "@every 1h30m"],
  ])("accepts %s", (_, cron) => {
    expect(validateSchedule({ template, cron }, limits, NOW).cron).toBe(cron);
  });

  it.each([
    ["an empty expression", { cron: "" }, "cron"],
    ["4 fields", { cron: "* * * *" }, "cron"],
    ["7 fields", { cron: "* * * * * * *" }, "cron"],
    ["a minute out of range", { cron: "61 * * * *" }, "cron"],
    ["a word", { cron: "every day" }, "cron"],
    ["an unknown nickname", { cron: "@fortnightly" }, "cron"],
    ["a bad interval", { cron: "@every soon" }, "cron"],
    ["an interval under a second", { cron: "@every 500ms" }, "cron"],
    ["an unknown time zone", { cron: "@hourly", timeZone: "Mars/Olympus" }, "time_zone"],
    ["an end before the start", { cron: "@hourly", startAt: NOW + 1000, endAt: NOW }, "end_at"],
    ["a negative jitter", { cron: "@hourly", jitterSeconds: -1 }, "jitter_seconds"],
    ["an unknown overlap policy", { cron: "@hourly", overlapPolicy: "queue" }, "overlap_policy"],
    ["an unknown catch-up policy", { cron: "@hourly", catchUp: "all" }, "catch_up"],
    [
      "run_missed without a window",
      { cron: "@hourly", catchUp: "run_missed" },
      "catch_up_window_seconds",
    ],
    ["no template", { cron: "@hourly", template: undefined }, "template"],
    ["a template without url", { cron: "@hourly", template: {} }, "template.url"],
    [
      "a template with a bad method",
      { cron: "@hourly", template: { url: template.url, method: "FETCH" } },
      "template.method",
    ],
    [
      "a template with too many attempts",
      { cron: "@hourly", template: { url: template.url, maxAttempts: 1000 } },
      "template.max_attempts",
    ],
    [
      "a template with a run time",
      { cron: "@hourly", template: { url: template.url, scheduledAt: NOW } },
      "template.scheduled_at",
    ],
    [
      "a template with an idempotency key",
      { cron: "@hourly", template: { url: template.url, idempotencyKey: "k" } },
      "template.idempotency_key",
    ],
  ])("refuses %s, naming the field", (_, input, field) => {
    expect(fieldOf(() => validateSchedule({ template, ...input }, limits, NOW))).toBe(field);
  });

  it("updates only the fields given", () => {
    const current = validateSchedule({ template, cron: "@hourly", jitterSeconds: 5 }, limits, NOW);
    const next = validateScheduleUpdate(current, { timeZone: "Europe/Berlin" }, limits, NOW);
    expect(next).toEqual({ ...current, timeZone: "Europe/Berlin" });
    expect(fieldOf(() => validateScheduleUpdate(current, { cron: "nope" }, limits, NOW))).toBe(
      "cron",
    );
  });
});

describe("time rules", () => {
  it("knows IANA time zones", () => {
    expect(isTimeZone("Europe/Berlin")).toBe(true);
    expect(isTimeZone("UTC")).toBe(true);
    expect(isTimeZone("Europe/Nowhere")).toBe(false);
  });

  it("parses @every intervals", () => {
    expect(parseEvery("@every 30s")).toBe(30_000);
    expect(parseEvery("@every 5m")).toBe(300_000);
    expect(parseEvery("@every 1h30m")).toBe(5_400_000);
    expect(parseEvery("@every 2d")).toBe(172_800_000);
    expect(parseEvery("0 * * * *")).toBeNull();
  });

  it("fires 0 9 * * * at 09:00 Berlin time across the change to summer time", () => {
    // Summer time starts on 2026-03-29 at 02:00: 09:00 is 08:00 UTC before, 07:00 UTC after.
    const s = rule("0 9 * * *", "Europe/Berlin");
    expect(nextTicks(s, NOW, 3).map((t) => new Date(t).toISOString())).toEqual([
      "2026-03-28T08:00:00.000Z",
      "2026-03-29T07:00:00.000Z",
      "2026-03-30T07:00:00.000Z",
    ]);
  });

  it("fires at 09:00 New York time across the change back to standard time", () => {
    const s = rule("0 9 * * *", "America/New_York");
    const from = Date.UTC(2026, 10, 30, 0, 0, 0) - 30 * 86_400_000; // 2026-10-31
    expect(nextTicks(s, from, 2).map((t) => new Date(t).toISOString())).toEqual([
      "2026-10-31T13:00:00.000Z",
      "2026-11-01T14:00:00.000Z",
    ]);
  });

  it("fires a time skipped by the change to summer time once, at the hour after; a repeated one once", () => {
    const s = rule("30 2 * * *", "Europe/Berlin");
    // 02:30 does not exist on 2026-03-29 (02:00 -> 03:00): it fires at 03:00 local.
    expect(nextTicks(s, NOW, 3).map((t) => new Date(t).toISOString())).toEqual([
      "2026-03-28T01:30:00.000Z",
      "2026-03-29T01:00:00.000Z",
      "2026-03-30T00:30:00.000Z",
    ]);
    // 02:30 happens twice on 2026-10-25 (03:00 -> 02:00): it fires the first time only.
    expect(
      nextTicks(s, Date.UTC(2026, 9, 24, 12), 2).map((t) => new Date(t).toISOString()),
    ).toEqual(["2026-10-25T00:30:00.000Z", "2026-10-26T01:30:00.000Z"]);
  });

  it("counts @every ticks from the start time", () => {
    const startAt = NOW + 5_000;
    const s = rule("@every 30s", "UTC", { startAt });
    expect(nextTick(s, NOW)).toBe(startAt);
    expect(nextTick(s, startAt)).toBe(startAt + 30_000);
    expect(nextTick(s, startAt + 31_000)).toBe(startAt + 60_000);
  });

  it("counts @every ticks from the creation time without a start", () => {
    const s = rule("@every 5m");
    expect(nextTick(s, NOW)).toBe(NOW + 300_000);
  });

  it("has no tick after the end or before the start", () => {
    const s = rule("@hourly", "UTC", { startAt: NOW + 3 * 3_600_000, endAt: NOW + 4 * 3_600_000 });
    expect(nextTick(s, NOW)).toBe(NOW + 3 * 3_600_000);
    expect(nextTick(s, NOW + 3 * 3_600_000)).toBe(NOW + 4 * 3_600_000);
    expect(nextTick(s, NOW + 4 * 3_600_000)).toBeNull();
  });

  it("supports seconds", () => {
    const s = rule("*/10 * * * * *");
    expect(nextTick(s, NOW + 1)).toBe(NOW + 10_000);
  });
});

describe("dueTicks", () => {
  const hourly = { ...rule("@hourly"), nextRunAt: NOW + 3_600_000 };

  it("is empty before the next tick", () => {
    expect(dueTicks(hourly, NOW)).toEqual({ ticks: [], missed: false, nextRunAt: NOW + 3_600_000 });
  });

  it("fires the tick on time and moves to the next", () => {
    const at = NOW + 3_600_000;
    expect(dueTicks(hourly, at + 900)).toEqual({
      ticks: [at],
      missed: false,
      nextRunAt: at + 3_600_000,
    });
  });

  it("skips missed ticks by default, firing none that is too late", () => {
    const later = NOW + 5 * 3_600_000 + 120_000;
    expect(dueTicks(hourly, later)).toEqual({
      ticks: [],
      missed: true,
      nextRunAt: NOW + 6 * 3_600_000,
    });
  });

  it("runs the missed ticks within the window with run_missed", () => {
    const s = { ...hourly, catchUp: "run_missed" as const, catchUpWindowMs: 3 * 3_600_000 };
    const later = NOW + 5 * 3_600_000 + 120_000;
    expect(dueTicks(s, later)).toEqual({
      ticks: [NOW + 3 * 3_600_000, NOW + 4 * 3_600_000, NOW + 5 * 3_600_000],
      missed: true,
      nextRunAt: NOW + 6 * 3_600_000,
    });
  });

  it("stops after the end", () => {
    const s = { ...hourly, endAt: NOW + 3_600_000 };
    expect(dueTicks(s, NOW + 3_600_000)).toEqual({
      ticks: [NOW + 3_600_000],
      missed: false,
      nextRunAt: null,
    });
  });
});

describe("overlapDecision", () => {
  const idle = { queued: [], running: [] };
  const busy = { queued: ["j_q"], running: ["j_r"] };
  it.each([
    ["skip", idle, { kind: "enqueue", cancel: [] }],
    ["skip", busy, { kind: "skip" }],
    ["buffer_one", idle, { kind: "enqueue", cancel: [] }],
    ["buffer_one", busy, { kind: "buffer" }],
    ["allow", busy, { kind: "enqueue", cancel: [] }],
    ["cancel_previous", idle, { kind: "enqueue", cancel: [] }],
    ["cancel_previous", busy, { kind: "enqueue", cancel: ["j_r", "j_q"] }],
  ] as const)("%s with %j", (policy, active, expected) => {
    expect(overlapDecision(policy, active)).toEqual(expected);
  });
});

describe("jitteredRunAt", () => {
  it("is within the jitter and the same for the same tick", () => {
    const a = jitteredRunAt("s_1", NOW, 10_000);
    expect(a).toBeGreaterThanOrEqual(NOW);
    expect(a).toBeLessThanOrEqual(NOW + 10_000);
    expect(jitteredRunAt("s_1", NOW, 10_000)).toBe(a);
    expect(jitteredRunAt("s_1", NOW, 0)).toBe(NOW);
  });
});
