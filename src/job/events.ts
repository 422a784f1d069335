import { validateFilter } from "./filter.js";
import type { ErrorCode, JobStatus } from "./types.js";

/** What happened to a job, as the event stream tells it. */
export const EVENT_TYPES = [
  "queued",
  "scheduled",
  "waiting",
  "running",
  "progress",
  "attempt_ended",
  "retry_scheduled",
  "succeeded",
  "failed",
  "canceled",
  "expired",
  "deleted",
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/** How far a running call has come, as `progress` events report it. */
export interface Progress {
  phase: "connected" | "headers" | "body";
  /** The response's status, once its headers are in. */
  status?: number;
  /** Body bytes read so far. */
  bytes?: number;
}

/** One entry of the durable event stream. */
export interface JobStreamEvent {
  /** Where the stream is after this event: resume after it to get what follows. */
  cursor: string;
  at: number;
  jobId: string;
  type: EventType;
  /** The job's public status after the event. */
  status: JobStatus;
  queue: string;
  owner: string | null;
  tags: string[];
  attempt: number | null;
  node: string | null;
  responseStatus: number | null;
  errorCode: ErrorCode | null;
  error: string | null;
  /** When the job is due next (queued, scheduled, retry_scheduled). */
  runAt: number | null;
  /** attempt_ended: the attempt's outcome; progress: how far the call has come. */
  outcome: string | null;
  progress: Progress | null;
}

/** Which events a watcher wants; every condition set must hold. */
export interface EventFilter {
  jobIds?: ReadonlySet<string>;
  statuses?: ReadonlySet<JobStatus>;
  /** Events of jobs carrying every one of these tags. */
  tags?: readonly string[];
  queue?: string;
  /** Only this owner's jobs (a caller who does not see every job). */
  owner?: string;
}

export function matches(filter: EventFilter, e: JobStreamEvent): boolean {
  if (filter.jobIds && !filter.jobIds.has(e.jobId)) return false;
  if (filter.statuses && !filter.statuses.has(e.status)) return false;
  if (filter.queue !== undefined && e.queue !== filter.queue) return false;
  if (filter.owner !== undefined && e.owner !== filter.owner) return false;
  if (filter.tags?.some((t) => !e.tags.includes(t))) return false;
  return true;
}

/** Whether an event ends its job's story (a watcher of one job stops there). */
export function isFinal(e: JobStreamEvent): boolean {
  return (
    e.type === "succeeded" ||
    e.type === "failed" ||
    e.type === "canceled" ||
    e.type === "expired" ||
    e.type === "deleted"
  );
}

/** A watch's conditions as they arrive from a transport (strings for statuses, empty for any). */
export interface EventFilterInput {
  jobIds?: string[];
  statuses?: string[];
  tags?: string[];
  queue?: string;
}

/** Checks a watch's conditions (the same rules and field names as a list's filter). */
export function eventFilterOf(input: EventFilterInput, limits: { maxTags: number }): EventFilter {
  const f = validateFilter(
    { jobIds: input.jobIds, statuses: input.statuses, tags: input.tags, queue: input.queue },
    limits,
  );
  const filter: EventFilter = {};
  if (f.jobIds) filter.jobIds = new Set(f.jobIds);
  if (f.statuses) filter.statuses = new Set(f.statuses);
  if (f.tags) filter.tags = f.tags;
  if (f.queue) filter.queue = f.queue;
  return filter;
}
