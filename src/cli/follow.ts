import { type Timestamp, timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Job, type JobEvent, JobEventType, JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "./client.js";
import { CliError, EXIT } from "./exit-codes.js";
import { isTerminal } from "./output.js";

/** Waits before opening a broken stream again: the n-th failure in a row waits RETRY_MS[n]. */
const RETRY_MS = [250, 500, 1_000, 2_000, 5_000];
/** Failures in a row (no message in between) before the watch gives up: about a minute and a half. */
const MAX_FAILURES = 20;

/** Codes of a stream that broke and may be opened again from its cursor. */
const RESUMABLE = new Set([
  Code.Unavailable,
  Code.Internal,
  Code.Unknown,
  Code.DeadlineExceeded,
  // A connection cut mid-stream (reset, closed) reads as aborted.
  Code.Aborted,
  // The server dropped a watcher that fell behind: it resumes from its cursor.
  Code.ResourceExhausted,
]);

export interface WatchFilter {
  jobIds?: string[];
  status?: JobStatus[];
  tag?: string[];
  queue?: string;
}

/** What {@link watchEvents} yields: the stream (re)opened at a cursor, or an event. */
export type WatchItem =
  | { kind: "opened"; cursor: string; resumed: boolean }
  | { kind: "event"; event: JobEvent };

/**
 * The events of the jobs matching `filter` (WatchJobs), live, oldest first, from `afterCursor` or
 * from now. A stream that breaks (the server restarts, the network drops, the watcher was dropped
 * for falling behind) is opened again after the cursor of the last event or heartbeat received,
 * so nothing is missed and nothing comes twice; a refusal, NOT_FOUND or a bad cursor ends it with
 * the error. Each opening yields `opened` first, with the cursor it starts from.
 */
export async function* watchEvents(
  api: Api,
  filter: WatchFilter,
  options: { afterCursor?: string; signal?: AbortSignal } = {},
): AsyncGenerator<WatchItem> {
  const { signal } = options;
  let cursor = options.afterCursor ?? "";
  let opened = false;
  for (let failures = 0; ; ) {
    let first = true;
    try {
      const stream = api.watchJobs(
        {
          jobIds: filter.jobIds ?? [],
          status: filter.status ?? [],
          tag: filter.tag ?? [],
          queue: filter.queue ?? "",
          afterCursor: cursor,
        },
        { timeoutMs: 0, signal },
      );
      for await (const res of stream) {
        failures = 0;
        if (res.kind.case === "heartbeat") {
          cursor = res.kind.value.cursor || cursor;
          if (first) yield { kind: "opened", cursor, resumed: opened };
          opened = true;
        } else if (res.kind.case === "event") {
          if (first) {
            // A server that sends no heartbeat first: the stream starts where this event was.
            yield { kind: "opened", cursor, resumed: opened };
            opened = true;
          }
          cursor = res.kind.value.cursor;
          yield { kind: "event", event: res.kind.value };
        }
        first = false;
      }
      // The server ended the stream (it is stopping): open it again from the cursor.
    } catch (err) {
      if (signal?.aborted) throw err;
      const cerr = ConnectError.from(err);
      if (cerr.code === Code.OutOfRange && opened) {
        throw new CliError(
          `the event stream's cursor ${cursor} expired while it was disconnected: events were missed (watch again)`,
          EXIT.unavailable,
        );
      }
      if (!RESUMABLE.has(cerr.code) || failures >= MAX_FAILURES) throw err;
    }
    if (signal?.aborted) return;
    await pause(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]!, signal);
  }
}

/**
 * Follows one job until it is terminal, calling `onJob` with the job now and after each change
 * (with the event; progress events too, the job unchanged); resolves with the terminal job. It
 * watches WatchJobs for the job's id (resuming from the last cursor after a break), reads the job
 * once the stream is open, and applies each later event to it; the terminal job is read again in
 * full. A job deleted meanwhile ends it with NOT_FOUND's exit code.
 */
export async function followJob(
  api: Api,
  jobId: string,
  onJob: (job: Job, event?: JobEvent) => void,
  signal?: AbortSignal,
): Promise<Job> {
  let job: Job | undefined;
  /** Events no newer than the job as read are already in it. */
  let readAt = 0;
  // Ends the stream (and its connection) once the job has ended, or with the caller's signal.
  const done = new AbortController();
  const stop = () => done.abort();
  signal?.addEventListener("abort", stop, { once: true });
  const events = watchEvents(api, { jobIds: [jobId] }, { signal: done.signal });
  let shown = "";
  const show = (j: Job, ev?: JobEvent) => {
    const key = `${j.status}/${j.attempt}/${j.lastError ?? ""}/${j.nextRunAt?.seconds ?? ""}`;
    if (key === shown && ev?.type !== JobEventType.PROGRESS) return;
    shown = key;
    onJob(j, ev);
  };
  try {
    for await (const item of events) {
      if (item.kind === "opened") {
        if (item.resumed && job) continue; // the events since the last cursor follow
        const res = await api.getJob({ jobId }, { signal });
        if (!res.job) throw new CliError("the server answered no job", EXIT.error);
        job = res.job;
        readAt = ms(job.updatedAt);
        show(job);
        if (isTerminal(job.status)) return job;
        continue;
      }
      const ev = item.event;
      if (!job) continue;
      if (ev.type === JobEventType.DELETED || ev.type === JobEventType.EXPIRED) {
        throw new CliError(`job ${jobId} was deleted`, EXIT.notFound);
      }
      if (ev.type === JobEventType.PROGRESS) {
        if (job.status === JobStatus.RUNNING) show(job, ev);
        continue;
      }
      if (ms(ev.at) <= readAt && !isTerminal(ev.status)) continue;
      job = applyEvent(job, ev);
      if (isTerminal(ev.status)) {
        // The whole job as it ended (result fields, finished_at), when it can still be read.
        const res = await api.getJob({ jobId }, { signal }).catch(() => null);
        if (res?.job && isTerminal(res.job.status)) job = res.job;
        show(job, ev);
        return job;
      }
      show(job, ev);
    }
  } finally {
    done.abort();
    signal?.removeEventListener("abort", stop);
    await events.return(undefined).catch(() => {});
  }
  throw new CliError("the event stream ended", EXIT.unavailable);
}

/** The job after an event (status, attempt, error, times): what a watcher shows between reads. */
export function applyEvent(job: Job, ev: JobEvent): Job {
  const next: Job = { ...job, status: ev.status, updatedAt: ev.at };
  if (ev.attempt !== undefined) next.attempt = ev.attempt;
  if (ev.error !== undefined) next.lastError = ev.error;
  if (ev.runAt) next.nextRunAt = ev.runAt;
  if (ev.type === JobEventType.RUNNING) next.startedAt = ev.at;
  if (isTerminal(ev.status)) next.finishedAt = ev.at;
  return next;
}

function ms(ts: Timestamp | undefined): number {
  return ts ? timestampMs(ts) : 0;
}

function pause(delay: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, delay);
    signal?.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    }
  });
}
