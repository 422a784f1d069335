import { fromJson, type MessageInitShape } from "@bufbuild/protobuf";
import { type Timestamp, timestampFromMs, timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { EnqueueJobRequestSchema } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import {
  CatchUpPolicy as CatchUpPb,
  OverlapPolicy as OverlapPb,
  type ScheduleSchema,
  type ScheduleService,
  type ScheduleSpec,
} from "../../gen/jobqueue/v1/schedule_service_pb.js";
import type { CatchUpPolicy, OverlapPolicy, Schedule, ScheduleInput } from "../job/schedules.js";
import type { ScheduleBook } from "../queue/schedule-book.js";
import { callerOf } from "./auth.js";
import { backoffToPb, enqueueInputFromPb, jobToPb, MASK } from "./convert.js";

export type ScheduleServiceImpl = ServiceImpl<typeof ScheduleService>;

const OVERLAP: Record<OverlapPolicy, OverlapPb> = {
  skip: OverlapPb.SKIP,
  buffer_one: OverlapPb.BUFFER_ONE,
  allow: OverlapPb.ALLOW,
  cancel_previous: OverlapPb.CANCEL_PREVIOUS,
};
const OVERLAP_FROM_PB = new Map(Object.entries(OVERLAP).map(([k, v]) => [v, k]));

const CATCH_UP: Record<CatchUpPolicy, CatchUpPb> = {
  skip: CatchUpPb.SKIP,
  run_missed: CatchUpPb.RUN_MISSED,
};
const CATCH_UP_FROM_PB = new Map(Object.entries(CATCH_UP).map(([k, v]) => [v, k]));

function ts(ms: number | null): Timestamp | undefined {
  return ms === null ? undefined : timestampFromMs(ms);
}

/** A spec from the wire; an unknown enum number is passed on as text for the domain to name. */
export function scheduleInputFromPb(spec: ScheduleSpec | undefined): ScheduleInput {
  if (!spec) return {};
  return {
    description: spec.description,
    template: spec.template ? enqueueInputFromPb(spec.template) : undefined,
    cron: spec.cron,
    timeZone: spec.timeZone,
    jitterSeconds: spec.jitterSeconds,
    startAt: spec.startAt ? timestampMs(spec.startAt) : undefined,
    endAt: spec.endAt ? timestampMs(spec.endAt) : undefined,
    overlapPolicy:
      spec.overlapPolicy === OverlapPb.UNSPECIFIED
        ? undefined
        : (OVERLAP_FROM_PB.get(spec.overlapPolicy) ?? String(spec.overlapPolicy)),
    catchUp:
      spec.catchUp === CatchUpPb.UNSPECIFIED
        ? undefined
        : (CATCH_UP_FROM_PB.get(spec.catchUp) ?? String(spec.catchUp)),
    catchUpWindowSeconds: spec.catchUpWindowSeconds,
    paused: spec.paused,
  };
}

/** The template as shown: secret headers by name only, as a job's are. */
function templateToPb(s: Schedule): MessageInitShape<typeof EnqueueJobRequestSchema> {
  const t = s.template;
  const body = t.body ?? null;
  return {
    method: t.method ?? "",
    url: t.url ?? "",
    headers: {
      ...t.headers,
      ...Object.fromEntries((t.secretHeaders ?? []).map((n) => [n, MASK])),
    },
    secretHeaders: t.secretHeaders ?? [],
    params: t.params ?? {},
    payload:
      body === null
        ? { case: undefined }
        : body.kind === "bytes"
          ? { case: "bodyBytes", value: body.bytes }
          : { case: "body", value: fromJson(ValueSchema, body.value) },
    timeoutSec: t.timeoutSec,
    priority: t.priority ?? 0,
    maxAttempts: t.maxAttempts,
    backoffStrategy: backoffToPb(t.backoffStrategy || undefined),
    backoffSeconds: t.backoffSeconds,
    ttlSeconds: t.ttlSeconds,
    tags: t.tags ?? [],
    followRedirects: t.followRedirects ?? false,
    maxRedirects: t.maxRedirects,
    rateLimitKey: t.rateLimitKey ?? "",
    queue: t.queue ?? "",
    callbackUrl: t.callbackUrl,
    sign: t.sign === true || Boolean(t.signingSecret),
    // Write-only, as on a job.
    signingSecret: t.signingSecret ? MASK : undefined,
  };
}

export function scheduleToPb(s: Schedule): MessageInitShape<typeof ScheduleSchema> {
  return {
    scheduleId: s.id,
    description: s.description,
    template: templateToPb(s),
    cron: s.cron,
    timeZone: s.timeZone,
    jitterSeconds: s.jitterMs / 1000,
    startAt: ts(s.startAt),
    endAt: ts(s.endAt),
    overlapPolicy: OVERLAP[s.overlapPolicy],
    catchUp: CATCH_UP[s.catchUp],
    catchUpWindowSeconds: s.catchUpWindowMs / 1000,
    paused: s.paused,
    nextRunAt: s.paused ? undefined : ts(s.nextRunAt),
    lastRunAt: ts(s.lastRunAt),
    lastJobId: s.lastJobId ?? undefined,
    owner: s.owner ?? undefined,
    createdAt: ts(s.createdAt),
    updatedAt: ts(s.updatedAt),
  };
}

/** The ScheduleService handlers: convert, call the schedules facade, convert back. */
export function createScheduleServiceImpl(book: ScheduleBook): ScheduleServiceImpl {
  return {
    createSchedule: async (req, ctx) => ({
      schedule: scheduleToPb(
        await book.create(scheduleInputFromPb(req.schedule), callerOf(ctx.values)),
      ),
    }),

    getSchedule: async (req, ctx) => ({
      schedule: scheduleToPb(await book.get(req.scheduleId, callerOf(ctx.values))),
    }),

    listSchedules: async (req, ctx) => {
      const { schedules, nextPageToken } = await book.list(
        { pageSize: req.pageSize, pageToken: req.pageToken },
        callerOf(ctx.values),
      );
      return { schedules: schedules.map(scheduleToPb), nextPageToken: nextPageToken ?? undefined };
    },

    updateSchedule: async (req, ctx) => ({
      schedule: scheduleToPb(
        await book.update(
          req.scheduleId,
          scheduleInputFromPb(req.schedule),
          { startAt: req.clearStartAt, endAt: req.clearEndAt },
          callerOf(ctx.values),
        ),
      ),
    }),

    deleteSchedule: async (req, ctx) => {
      await book.delete(req.scheduleId, callerOf(ctx.values));
      return {};
    },

    pauseSchedule: async (req, ctx) => ({
      schedule: scheduleToPb(await book.setPaused(req.scheduleId, true, callerOf(ctx.values))),
    }),

    resumeSchedule: async (req, ctx) => ({
      schedule: scheduleToPb(await book.setPaused(req.scheduleId, false, callerOf(ctx.values))),
    }),

    triggerSchedule: async (req, ctx) => ({
      job: jobToPb(await book.trigger(req.scheduleId, callerOf(ctx.values))),
    }),
  };
}
