import { createHash } from "node:crypto";
import { Cron } from "croner";
import { InvalidArgumentError } from "./errors.js";
import { type EnqueueInput, type JobLimits, validateEnqueue } from "./validate.js";

/**
 * Schedules (periodic jobs): the rules, no I/O. A schedule is a job template plus a time rule
 * (a cron expression read in an IANA time zone, or an `@every` interval); the ticker asks these
 * functions which ticks are due, what the overlap policy says, and when the next tick is.
 *
 * A tick is identified by its nominal time (epoch ms, before jitter): the store keeps one job per
 * (schedule, tick), so that whoever fires a tick, and however often, enqueues one job.
 */

export const OVERLAP_POLICIES = ["skip", "buffer_one", "allow", "cancel_previous"] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

export const CATCH_UP_POLICIES = ["skip", "run_missed"] as const;
export type CatchUpPolicy = (typeof CATCH_UP_POLICIES)[number];

/** A stored schedule. Times are epoch ms. */
export interface Schedule {
  id: string;
  /** The principal that created it (its jobs are that principal's); null without auth. */
  owner: string | null;
  description: string;
  /** What each run enqueues, secret header values left out (they are in `sealedHeaders`). */
  template: EnqueueInput;
  /** The template's secret headers, sealed with the schedule id; null when there are none. */
  sealedHeaders: string | null;
  cron: string;
  timeZone: string;
  jitterMs: number;
  startAt: number | null;
  endAt: number | null;
  overlapPolicy: OverlapPolicy;
  catchUp: CatchUpPolicy;
  catchUpWindowMs: number;
  paused: boolean;
  /** The next tick to fire; null when no tick is left (past `endAt`). */
  nextRunAt: number | null;
  lastRunAt: number | null;
  lastJobId: string | null;
  /** A tick held back by `buffer_one` until the schedule's running job ends. */
  bufferedTick: number | null;
  createdAt: number;
  updatedAt: number;
}

/** A create or update as it arrives from a transport; absent means default (create) or keep. */
export interface ScheduleInput {
  description?: string;
  template?: EnqueueInput;
  cron?: string;
  timeZone?: string;
  jitterSeconds?: number;
  /** Epoch ms; null clears (update). */
  startAt?: number | null;
  endAt?: number | null;
  overlapPolicy?: string;
  catchUp?: string;
  catchUpWindowSeconds?: number;
  paused?: boolean;
}

/** The validated time rule and policies of a schedule. */
export type ScheduleRule = Pick<
  Schedule,
  | "description"
  | "template"
  | "cron"
  | "timeZone"
  | "jitterMs"
  | "startAt"
  | "endAt"
  | "overlapPolicy"
  | "catchUp"
  | "catchUpWindowMs"
  | "paused"
>;

export const SCHEDULE_LIMITS = {
  /** The shortest `@every` interval. */
  everyMinMs: 1_000,
  everyMaxMs: 366 * 86_400_000,
  jitterMaxSeconds: 86_400,
  catchUpWindowMaxSeconds: 7 * 86_400,
  /** run_missed enqueues at most this many missed ticks at once (the latest ones). */
  catchUpMaxTicks: 100,
  /**
   * How late a tick may be fired under the `skip` catch-up policy: a tick later than this (the
   * node was down, no leader) counts as missed.
   */
  lateGraceMs: 60_000,
  descriptionMaxLength: 500,
  cronMaxLength: 200,
} as const;

const TIME_ZONE_CACHE = new Map<string, boolean>();

/** Whether the time zone is one the runtime knows (IANA names, and "UTC"). */
export function isTimeZone(name: string): boolean {
  let ok = TIME_ZONE_CACHE.get(name);
  if (ok === undefined) {
    try {
      new Intl.DateTimeFormat("en", { timeZone: name });
      ok = true;
    } catch {
      ok = false;
    }
    if (TIME_ZONE_CACHE.size < 1000) TIME_ZONE_CACHE.set(name, ok);
  }
  return ok;
}

const EVERY_UNITS: Record<string, number> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * The interval of an `@every` expression in ms (`@every 30s`, `@every 5m`, `@every 1h30m`), null
 * for a cron expression. Throws naming `field` when it is malformed.
 */
export function parseEvery(expr: string, field = "cron"): number | null {
  const m = /^@every\s+(.+)$/i.exec(expr.trim());
  if (!m) return null;
  const text = (m[1] ?? "").trim();
  const parts = /^(?:\d+(?:ms|s|m|h|d))+$/.test(text) ? text.match(/\d+(?:ms|s|m|h|d)/g) : null;
  if (!parts) {
    throw new InvalidArgumentError(
      field,
      `${JSON.stringify(expr)} is not an interval; write e.g. "@every 30s", "@every 5m" or "@every 1h30m"`,
    );
  }
  let ms = 0;
  for (const p of parts) {
    const [, n, unit] = /^(\d+)(ms|s|m|h|d)$/.exec(p) ?? [];
    ms += Number(n) * (EVERY_UNITS[unit ?? ""] ?? Number.NaN);
  }
  if (
    !Number.isSafeInteger(ms) ||
    ms < SCHEDULE_LIMITS.everyMinMs ||
    ms > SCHEDULE_LIMITS.everyMaxMs
  ) {
    throw new InvalidArgumentError(field, "the interval must be from 1s to 366d");
  }
  return ms;
}

const NICKNAMES = new Set([
  "@yearly",
  "@annually",
  "@monthly",
  "@weekly",
  "@daily",
  "@midnight",
  "@hourly",
]);

/** A compiled time rule: the next tick strictly after a time. */
interface TimeRule {
  after(t: number): number | null;
}

const RULE_CACHE = new Map<string, TimeRule>();

/**
 * Compiles a cron expression (5 fields, or 6 with seconds first; or a nickname such as `@hourly`)
 * read in `timeZone`, or an `@every` interval counted from `anchor`. Throws naming `field`.
 */
function compile(cron: string, timeZone: string, anchor: number, field = "cron"): TimeRule {
  const key = `${cron}\u0000${timeZone}\u0000${anchor}`;
  const cached = RULE_CACHE.get(key);
  if (cached) return cached;
  let rule: TimeRule;
  const every = parseEvery(cron, field);
  if (every !== null) {
    rule = {
      after(t) {
        if (t < anchor) return anchor;
        return anchor + (Math.floor((t - anchor) / every) + 1) * every;
      },
    };
  } else {
    const text = cron.trim().replace(/\s+/g, " ");
    if (text.startsWith("@")) {
      if (!NICKNAMES.has(text.toLowerCase())) {
        throw new InvalidArgumentError(
          field,
          `unknown nickname ${JSON.stringify(text)}; use one of ${[...NICKNAMES].join(", ")} or "@every <interval>"`,
        );
      }
    } else {
      const fields = text.split(" ").length;
      if (fields !== 5 && fields !== 6) {
        throw new InvalidArgumentError(
          field,
          `has ${fields} fields; a cron expression has 5 (minute hour day month weekday) or 6 (seconds first)`,
        );
      }
    }
    let job: Cron;
    try {
      job = new Cron(text.startsWith("@") ? text.toLowerCase() : text, {
        timezone: timeZone,
        paused: true,
      });
      job.nextRun(new Date(anchor));
    } catch (err) {
      const why = err instanceof Error ? err.message.replace(/^CronPattern: /, "") : String(err);
      throw new InvalidArgumentError(
        field,
        `${JSON.stringify(cron)} is not a cron expression (${why})`,
      );
    }
    rule = {
      after(t) {
        const next = job.nextRun(new Date(t));
        return next ? next.getTime() : null;
      },
    };
  }
  if (RULE_CACHE.size > 10_000) RULE_CACHE.clear();
  RULE_CACHE.set(key, rule);
  return rule;
}

/**
 * Where `@every` ticks are counted from: the start time (the first tick), else the creation time
 * to the second (the first tick one interval after it).
 */
function anchorOf(s: Pick<Schedule, "startAt" | "createdAt">): number {
  return s.startAt ?? Math.floor(s.createdAt / 1000) * 1000;
}

type TickInputs = Pick<Schedule, "cron" | "timeZone" | "startAt" | "endAt" | "createdAt">;

/** The first tick strictly after `t` within the schedule's start and end, or null if none is left. */
export function nextTick(s: TickInputs, t: number): number | null {
  const rule = compile(s.cron, s.timeZone, anchorOf(s));
  const from = s.startAt !== null && t < s.startAt ? s.startAt - 1 : t;
  const next = rule.after(from);
  if (next === null || (s.endAt !== null && next > s.endAt)) return null;
  return next;
}

/** The next `n` ticks after `t` (for previews). */
export function nextTicks(s: TickInputs, t: number, n: number): number[] {
  const out: number[] = [];
  let at = t;
  while (out.length < n) {
    const next = nextTick(s, at);
    if (next === null) break;
    out.push(next);
    at = next;
  }
  return out;
}

/**
 * Validates a new schedule. The template is validated exactly as EnqueueJob validates a job
 * (errors name `template.<field>`), except that the schedule sets when each run starts and keys
 * each run by its tick, so `scheduled_at` and `idempotency_key` are refused.
 */
export function validateSchedule(
  input: ScheduleInput,
  limits: JobLimits,
  now: number,
): ScheduleRule {
  if (input.template === undefined) throw new InvalidArgumentError("template", "is required");
  return validateRule(input, null, limits, now);
}

/** Validates an update: the fields given replace the schedule's, the rest stay. */
export function validateScheduleUpdate(
  current: ScheduleRule,
  input: ScheduleInput,
  limits: JobLimits,
  now: number,
): ScheduleRule {
  return validateRule(input, current, limits, now);
}

function validateRule(
  input: ScheduleInput,
  current: ScheduleRule | null,
  limits: JobLimits,
  now: number,
): ScheduleRule {
  const description = input.description ?? current?.description ?? "";
  if (description.length > SCHEDULE_LIMITS.descriptionMaxLength) {
    throw new InvalidArgumentError(
      "description",
      `is longer than ${SCHEDULE_LIMITS.descriptionMaxLength} characters`,
    );
  }
  const template = input.template ?? current?.template;
  if (template === undefined) throw new InvalidArgumentError("template", "is required");
  validateTemplate(template, limits, now);

  const cron = (input.cron ?? current?.cron ?? "").trim();
  if (cron === "") throw new InvalidArgumentError("cron", "is required");
  if (cron.length > SCHEDULE_LIMITS.cronMaxLength) {
    throw new InvalidArgumentError(
      "cron",
      `is longer than ${SCHEDULE_LIMITS.cronMaxLength} characters`,
    );
  }
  const timeZone = (input.timeZone || current?.timeZone || "UTC").trim();
  if (!isTimeZone(timeZone)) {
    throw new InvalidArgumentError(
      "time_zone",
      `${JSON.stringify(timeZone)} is not a known IANA time zone (e.g. "Europe/Berlin", "UTC")`,
    );
  }

  const jitterSeconds = input.jitterSeconds ?? (current ? current.jitterMs / 1000 : 0);
  if (
    !Number.isFinite(jitterSeconds) ||
    jitterSeconds < 0 ||
    jitterSeconds > SCHEDULE_LIMITS.jitterMaxSeconds
  ) {
    throw new InvalidArgumentError(
      "jitter_seconds",
      `must be from 0 to ${SCHEDULE_LIMITS.jitterMaxSeconds}`,
    );
  }
  const startAt = input.startAt !== undefined ? input.startAt : (current?.startAt ?? null);
  const endAt = input.endAt !== undefined ? input.endAt : (current?.endAt ?? null);
  if (startAt !== null && !Number.isSafeInteger(startAt)) {
    throw new InvalidArgumentError("start_at", "is not a valid time");
  }
  if (endAt !== null && !Number.isSafeInteger(endAt)) {
    throw new InvalidArgumentError("end_at", "is not a valid time");
  }
  if (startAt !== null && endAt !== null && endAt <= startAt) {
    throw new InvalidArgumentError("end_at", "must be after start_at");
  }

  const overlapPolicy = (input.overlapPolicy || current?.overlapPolicy || "skip") as OverlapPolicy;
  if (!OVERLAP_POLICIES.includes(overlapPolicy)) {
    throw new InvalidArgumentError(
      "overlap_policy",
      `unknown policy ${JSON.stringify(input.overlapPolicy)}; use one of ${OVERLAP_POLICIES.join(", ")}`,
    );
  }
  const catchUp = (input.catchUp || current?.catchUp || "skip") as CatchUpPolicy;
  if (!CATCH_UP_POLICIES.includes(catchUp)) {
    throw new InvalidArgumentError(
      "catch_up",
      `unknown policy ${JSON.stringify(input.catchUp)}; use one of ${CATCH_UP_POLICIES.join(", ")}`,
    );
  }
  const windowSeconds =
    input.catchUpWindowSeconds ?? (current ? current.catchUpWindowMs / 1000 : 0);
  if (
    !Number.isFinite(windowSeconds) ||
    windowSeconds < 0 ||
    windowSeconds > SCHEDULE_LIMITS.catchUpWindowMaxSeconds
  ) {
    throw new InvalidArgumentError(
      "catch_up_window_seconds",
      `must be from 0 to ${SCHEDULE_LIMITS.catchUpWindowMaxSeconds}`,
    );
  }
  if (catchUp === "run_missed" && windowSeconds === 0) {
    throw new InvalidArgumentError(
      "catch_up_window_seconds",
      "must be set (more than 0) with catch_up run_missed",
    );
  }

  // Compiles the rule: a bad expression is an error now, not at the first tick.
  compile(cron, timeZone, startAt ?? now);
  return {
    description,
    template,
    cron,
    timeZone,
    jitterMs: Math.round(jitterSeconds * 1000),
    startAt,
    endAt,
    overlapPolicy,
    catchUp,
    catchUpWindowMs: Math.round(windowSeconds * 1000),
    paused: input.paused ?? current?.paused ?? false,
  };
}

/** The template, validated as EnqueueJob would; errors name `template.<field>`. */
export function validateTemplate(template: EnqueueInput, limits: JobLimits, now: number): void {
  if (template.scheduledAt !== undefined && template.scheduledAt !== null) {
    throw new InvalidArgumentError("template.scheduled_at", "is set by the schedule; leave it out");
  }
  if (template.idempotencyKey) {
    throw new InvalidArgumentError(
      "template.idempotency_key",
      "leave it out: each run of a schedule is already enqueued once (keyed by its tick)",
    );
  }
  try {
    validateEnqueue(template, limits, now);
  } catch (err) {
    if (err instanceof InvalidArgumentError) {
      throw new InvalidArgumentError(`template.${err.field}`, err.problem);
    }
    throw err;
  }
}

/**
 * The ticks to fire now, oldest first, and the schedule's next tick after them. With catch-up
 * `skip`, only the latest due tick fires, and only if it is at most `lateGraceMs` late (the
 * others, missed while no node led, are skipped); with `run_missed`, every due tick within the
 * window fires (at most `catchUpMaxTicks`, the latest ones).
 */
export function dueTicks(
  s: TickInputs & Pick<Schedule, "nextRunAt" | "catchUp" | "catchUpWindowMs">,
  now: number,
): { ticks: number[]; missed: boolean; nextRunAt: number | null } {
  if (s.nextRunAt === null || s.nextRunAt > now) {
    return { ticks: [], missed: false, nextRunAt: s.nextRunAt };
  }
  const oldest =
    s.catchUp === "run_missed" ? now - s.catchUpWindowMs : now - SCHEDULE_LIMITS.lateGraceMs;
  const keep = s.catchUp === "run_missed" ? SCHEDULE_LIMITS.catchUpMaxTicks : 1;
  const ticks: number[] = [];
  let missed = false;
  let tick: number | null = s.nextRunAt;
  // Ticks older than the window are missed: jump past them (a long downtime costs nothing).
  if (tick < oldest) {
    missed = true;
    tick = nextTick(s, oldest - 1);
  }
  while (tick !== null && tick <= now) {
    ticks.push(tick);
    if (ticks.length > keep) {
      ticks.shift();
      missed = true;
    }
    tick = nextTick(s, tick);
  }
  return { ticks, missed, nextRunAt: tick };
}

/** The run time of a tick's job: the tick plus a jitter that is the same on every node. */
export function jitteredRunAt(scheduleId: string, tick: number, jitterMs: number): number {
  if (jitterMs <= 0) return tick;
  const digest = createHash("sha256").update(`${scheduleId}:${tick}`).digest();
  const fraction = digest.readUInt32BE(0) / 0x1_0000_0000;
  return tick + Math.floor(fraction * (jitterMs + 1));
}

/** What the schedule's earlier jobs still pending look like when a tick fires. */
export interface ActiveRuns {
  /** Queued (waiting to start) jobs of the schedule. */
  queued: string[];
  running: string[];
}

export type OverlapDecision =
  | { kind: "enqueue"; cancel: string[] }
  | { kind: "skip" }
  /** Hold the tick on the schedule; it is enqueued when no earlier run is left. */
  | { kind: "buffer" };

/**
 * What a tick does when the schedule's earlier runs are still queued or running:
 * - `skip`: nothing (the tick is skipped);
 * - `buffer_one`: the tick is held (replacing one held before) and enqueued once they end;
 * - `allow`: enqueued anyway;
 * - `cancel_previous`: they are canceled, then the tick is enqueued.
 */
export function overlapDecision(policy: OverlapPolicy, active: ActiveRuns): OverlapDecision {
  const busy = active.queued.length + active.running.length > 0;
  if (!busy || policy === "allow") return { kind: "enqueue", cancel: [] };
  switch (policy) {
    case "skip":
      return { kind: "skip" };
    case "buffer_one":
      return { kind: "buffer" };
    case "cancel_previous":
      return { kind: "enqueue", cancel: [...active.running, ...active.queued] };
  }
}

/** Ids of schedules: `s_` and a ULID. */
export const SCHEDULE_ID = /^s_[0-9A-Z]{26}$/;

export function validateScheduleId(id: string, field = "schedule_id"): string {
  if (!SCHEDULE_ID.test(id)) {
    throw new InvalidArgumentError(field, `${JSON.stringify(id)} is not a schedule id (s_…)`);
  }
  return id;
}
