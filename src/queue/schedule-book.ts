import type { Logger } from "pino";
import { monotonicFactory } from "ulid";
import type { AuditOutcome } from "../audit/audit-event.js";
import { type Caller, seesAllJobs } from "../auth/principal.js";
import type { Clock } from "../job/clock.js";
import { InvalidArgumentError, ScheduleNotFoundError } from "../job/errors.js";
import { queueJobLimits } from "../job/queues.js";
import {
  type ActiveRuns,
  dueTicks,
  jitteredRunAt,
  nextTick,
  overlapDecision,
  type Schedule,
  type ScheduleInput,
  type ScheduleRule,
  validateSchedule,
  validateScheduleId,
  validateScheduleUpdate,
} from "../job/schedules.js";
import type { Job } from "../job/types.js";
import { type EnqueueInput, type JobLimits, validateEnqueue } from "../job/validate.js";
import type { SecretBox } from "../secrets/secret-box.js";
import type { JobStore } from "../store/job-store.js";
import type { JobQueue } from "./job-queue.js";
import type { QueueDirectory } from "./queue-directory.js";
import {
  auditOf,
  badToken,
  decodeScheduleToken,
  encodePageToken,
  ownerScope,
  pageSizeOf,
} from "./scope.js";

/** Changes that clear a time rather than set one (proto3 cannot send "unset" in the field). */
/**
 * Where a template's signing secret is kept among its sealed headers: not a header name (a colon
 * is not allowed in one), so the two never meet.
 */
const SEALED_SIGNING_SECRET = ":signing_secret";
/** What a stored template says in place of its signing secret. */
const SIGNING_SECRET_KEPT = "sealed";

export interface ScheduleClears {
  startAt?: boolean;
  endAt?: boolean;
}

/**
 * The schedules facade: create, read, list, change, pause, resume, delete and trigger schedules
 * (a submitter its own, an admin every one; each change audited), and fire the due ticks (the
 * maintenance leader calls {@link runDue}). A schedule's template is stored with its secret
 * headers sealed, as a job's are.
 */
export interface ScheduleBook {
  create(input: ScheduleInput, caller: Caller): Promise<Schedule>;
  get(id: string, caller: Caller): Promise<Schedule>;
  list(
    input: { pageSize?: number; pageToken?: string },
    caller: Caller,
  ): Promise<{ schedules: Schedule[]; nextPageToken: string | null }>;
  update(
    id: string,
    input: ScheduleInput,
    clears: ScheduleClears,
    caller: Caller,
  ): Promise<Schedule>;
  delete(id: string, caller: Caller): Promise<void>;
  setPaused(id: string, paused: boolean, caller: Caller): Promise<Schedule>;
  /**
   * Enqueues one run now, outside the ticks: the job carries the schedule id and no tick, the
   * overlap policy does not apply, and it runs also while the schedule is paused.
   */
  trigger(id: string, caller: Caller): Promise<Job>;
  /**
   * Fires the ticks due now of every due schedule (at most `limit` schedules a pass). Returns the
   * number of schedules looked at.
   */
  runDue(limit?: number): Promise<number>;
}

const nextScheduleId = monotonicFactory();

/** Schedules fired at most per pass of {@link ScheduleBook.runDue}. */
const DUE_BATCH = 100;

export function createScheduleBook(options: {
  store: JobStore;
  queue: JobQueue;
  queues: QueueDirectory;
  clock: Clock;
  secretBox: SecretBox;
  limits: JobLimits & { maxPageSize: number };
  logger: Logger;
}): ScheduleBook {
  const { store, queue, clock, secretBox, limits, logger } = options;

  function jobLimitsOf(template: EnqueueInput): JobLimits {
    return queueJobLimits(limits, options.queues.get(template.queue || "default"));
  }

  /**
   * The template as stored: secret headers (and URL credentials) and a signing secret sealed
   * apart; the stored template keeps only that it has a signing secret.
   */
  function sealTemplate(id: string, template: EnqueueInput, now: number) {
    const spec = validateEnqueue(template, jobLimitsOf(template), now);
    const secret = new Set(spec.secretHeaderNames);
    const plain: Record<string, string> = {};
    const sealed: Record<string, string> = {};
    for (const [name, value] of Object.entries(spec.headers)) {
      if (secret.has(name)) sealed[name] = value;
      else plain[name] = value;
    }
    const { signingSecret, ...rest } = template;
    if (signingSecret) sealed[SEALED_SIGNING_SECRET] = signingSecret;
    const stored: EnqueueInput = {
      ...rest,
      url: spec.url,
      headers: plain,
      secretHeaders: spec.secretHeaderNames,
      ...(signingSecret ? { signingSecret: SIGNING_SECRET_KEPT } : {}),
    };
    return {
      template: stored,
      sealedHeaders: Object.keys(sealed).length > 0 ? secretBox.seal(id, sealed) : null,
    };
  }

  /** What a run of the schedule submits: the template with its secrets opened. */
  function runInput(s: Schedule): EnqueueInput {
    const opened = s.sealedHeaders === null ? {} : secretBox.open(s.id, s.sealedHeaders);
    const { [SEALED_SIGNING_SECRET]: signingSecret, ...secret } = opened;
    return { ...s.template, headers: { ...s.template.headers, ...secret }, signingSecret };
  }

  /** The caller a tick's job is enqueued as: the schedule's owner. */
  function ownerCaller(s: Schedule): Caller {
    return {
      principal: s.owner === null ? null : { name: s.owner, role: "submitter" },
      remoteAddress: null,
      protocol: "schedule",
    };
  }

  async function refused(caller: Caller, action: string, err: unknown, id: string | null) {
    const outcome: AuditOutcome | null =
      err instanceof InvalidArgumentError
        ? "invalid_argument"
        : err instanceof ScheduleNotFoundError
          ? "not_found"
          : null;
    if (outcome === null) return;
    const detail =
      err instanceof InvalidArgumentError ? err.field : id === null ? null : `schedule ${id}`;
    await store.auditInsert([auditOf(caller, action, outcome, null, clock.now(), detail)]);
  }

  async function audited<T>(
    caller: Caller,
    action: string,
    id: string | null,
    fn: () => Promise<T>,
  ): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      await refused(caller, action, err, id);
      throw err;
    }
  }

  async function done(caller: Caller, action: string, id: string): Promise<void> {
    await store.auditInsert([auditOf(caller, action, "ok", null, clock.now(), `schedule ${id}`)]);
  }

  async function mustGet(rawId: string, caller: Caller): Promise<Schedule> {
    const id = validateScheduleId(rawId);
    const s = await store.scheduleGet({ id });
    // Another owner's schedule reads as missing, as another owner's job does.
    if (!s || !(seesAllJobs(caller.principal) || s.owner === caller.principal?.name)) {
      throw new ScheduleNotFoundError(id);
    }
    return s;
  }

  /** Writes a changed schedule; its next tick is recomputed from now when `retime`. */
  async function save(s: Schedule, rule: ScheduleRule, retime: boolean, now: number) {
    const next: Schedule = { ...s, ...rule, updatedAt: Math.max(now, s.updatedAt + 1) };
    if (retime) next.nextRunAt = nextTick(next, now);
    if (!(await store.scheduleUpdate(next))) throw new ScheduleNotFoundError(s.id);
    return next;
  }

  async function activeRuns(scheduleId: string): Promise<(Job & { tick: number | null })[]> {
    const { jobs } = await store.jobList({
      scheduleId,
      statuses: ["queued", "running"],
      limit: 1000,
    });
    return jobs.map((j) => ({ ...j, tick: j.scheduleTick ?? null }));
  }

  async function enqueueTick(s: Schedule, tick: number, now: number): Promise<Job> {
    const input = runInput(s);
    const runAt = jitteredRunAt(s.id, tick, s.jitterMs);
    if (runAt > now) input.scheduledAt = runAt;
    const { job, inserted } = await queue.enqueue(input, ownerCaller(s), {
      scheduleId: s.id,
      scheduleTick: tick,
      owner: s.owner,
      action: "ScheduleTick",
    });
    if (inserted) {
      logger.info({ schedule: s.id, tick: new Date(tick).toISOString(), job: job.id }, "tick");
    }
    return job;
  }

  /** Fires a schedule's due ticks (and a buffered one whose wait is over), then moves it on. */
  async function fire(s: Schedule, now: number): Promise<void> {
    const { ticks, missed, nextRunAt } = dueTicks(s, now);
    if (missed) {
      logger.info(
        { schedule: s.id, catchUp: s.catchUp },
        "ticks missed while no node ran the schedules were skipped",
      );
    }
    let buffered = s.bufferedTick;
    let lastRun: { at: number; jobId: string } | null = null;
    let active = await activeRuns(s.id);
    const enqueue = async (tick: number) => {
      try {
        const job = await enqueueTick(s, tick, now);
        lastRun = { at: tick, jobId: job.id };
        active = [...active.filter((j) => j.id !== job.id), { ...job, tick }];
      } catch (err) {
        // A template that no longer holds (its queue deleted): the tick is lost, the next tried.
        logger.warn(
          { schedule: s.id, err: (err as Error).message },
          "a schedule's tick could not be enqueued",
        );
      }
    };
    if (buffered !== null && active.length === 0) {
      const tick = buffered;
      buffered = null;
      await enqueue(tick);
    }
    for (const tick of ticks) {
      // The tick's own job (another node got here first) is not an earlier run.
      const earlier = active.filter((j) => j.tick !== tick);
      const runs: ActiveRuns = {
        queued: earlier.filter((j) => j.status === "queued").map((j) => j.id),
        running: earlier.filter((j) => j.status === "running").map((j) => j.id),
      };
      const decision = overlapDecision(s.overlapPolicy, runs);
      if (decision.kind === "skip") {
        logger.info(
          { schedule: s.id, tick: new Date(tick).toISOString() },
          "tick skipped: the previous run is not done",
        );
        continue;
      }
      if (decision.kind === "buffer") {
        buffered = tick;
        continue;
      }
      for (const id of decision.cancel) {
        await store.jobCancel({
          id,
          audit: (outcome) =>
            auditOf(
              ownerCaller(s),
              "CancelJob",
              outcome,
              id,
              now,
              `schedule ${s.id} cancel_previous`,
            ),
        });
      }
      active = active.filter((j) => !decision.cancel.includes(j.id));
      await enqueue(tick);
    }
    await store.scheduleAdvance({
      id: s.id,
      from: s.nextRunAt,
      updatedAt: s.updatedAt,
      nextRunAt,
      bufferedTick: buffered,
      lastRun,
    });
  }

  return {
    async create(input, caller) {
      return audited(caller, "CreateSchedule", null, async () => {
        const now = clock.now();
        const rule = validateSchedule(input, jobLimitsOf(input.template ?? {}), now);
        await queueKnown(rule.template);
        const id = `s_${nextScheduleId(now)}`;
        const sealed = sealTemplate(id, rule.template, now);
        const s: Schedule = {
          ...rule,
          ...sealed,
          id,
          owner: caller.principal?.name ?? null,
          nextRunAt: null,
          lastRunAt: null,
          lastJobId: null,
          bufferedTick: null,
          createdAt: now,
          updatedAt: now,
        };
        s.nextRunAt = nextTick(s, now);
        await store.scheduleCreate(s);
        await done(caller, "CreateSchedule", id);
        return s;
      });
    },

    get: mustGet,

    async list(input, caller) {
      const pageSize = pageSizeOf(input.pageSize, limits.maxPageSize);
      const after = input.pageToken ? decodeScheduleToken(input.pageToken) : undefined;
      if (input.pageToken && after === undefined) throw badToken();
      const rows = await store.scheduleList({
        ownedBy: ownerScope(caller),
        afterId: after,
        limit: pageSize + 1,
      });
      const schedules = rows.slice(0, pageSize);
      const last = schedules.at(-1);
      return {
        schedules,
        nextPageToken: rows.length > pageSize && last ? encodePageToken(last.id) : null,
      };
    },

    async update(id, input, clears, caller) {
      return audited(caller, "UpdateSchedule", id, async () => {
        const s = await mustGet(id, caller);
        const now = clock.now();
        const given: ScheduleInput = { ...input };
        if (clears.startAt) given.startAt = null;
        if (clears.endAt) given.endAt = null;
        // The stored template has its secrets apart: validate the one that would run.
        const current = { ...s, template: runInput(s) };
        const rule = validateScheduleUpdate(
          current,
          given,
          jobLimitsOf(given.template ?? current.template),
          now,
        );
        await queueKnown(rule.template);
        const sealed = sealTemplate(s.id, rule.template, now);
        const retime =
          rule.cron !== s.cron ||
          rule.timeZone !== s.timeZone ||
          rule.startAt !== s.startAt ||
          rule.endAt !== s.endAt ||
          (s.paused && !rule.paused);
        const next = await save({ ...s, ...sealed }, { ...rule, ...sealed }, retime, now);
        await done(caller, "UpdateSchedule", s.id);
        return next;
      });
    },

    async delete(id, caller) {
      return audited(caller, "DeleteSchedule", id, async () => {
        const s = await mustGet(id, caller);
        if (!(await store.scheduleDelete({ id: s.id }))) throw new ScheduleNotFoundError(s.id);
        await done(caller, "DeleteSchedule", s.id);
      });
    },

    async setPaused(id, paused, caller) {
      const action = paused ? "PauseSchedule" : "ResumeSchedule";
      return audited(caller, action, id, async () => {
        const s = await mustGet(id, caller);
        const now = clock.now();
        // Resuming starts from the next tick after now: the ticks while paused are skipped.
        const next = s.paused === paused ? s : await save(s, { ...s, paused }, !paused, now);
        await done(caller, action, s.id);
        return next;
      });
    },

    async trigger(id, caller) {
      return audited(caller, "TriggerSchedule", id, async () => {
        const s = await mustGet(id, caller);
        const { job } = await queue.enqueue(runInput(s), caller, {
          scheduleId: s.id,
          scheduleTick: null,
          owner: s.owner,
          action: "TriggerSchedule",
        });
        return job;
      });
    },

    async runDue(limit = DUE_BATCH) {
      const now = clock.now();
      const due = await store.scheduleDue({ dueBy: now, limit });
      for (const s of due) {
        try {
          await fire(s, now);
        } catch (err) {
          logger.error({ err, schedule: s.id }, "firing a schedule failed");
        }
      }
      return due.length;
    },
  };

  async function queueKnown(template: EnqueueInput): Promise<void> {
    const name = template.queue || "default";
    if (name === "default" || options.queues.get(name)) return;
    await options.queues.refresh();
    if (!options.queues.get(name)) {
      throw new InvalidArgumentError(
        "template.queue",
        `queue ${JSON.stringify(name)} does not exist; create it first`,
      );
    }
  }
}
