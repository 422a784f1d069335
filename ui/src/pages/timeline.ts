import type { Attempt, Job } from "../../../gen/jobqueue/v1/job_pb.js";
import { AttemptOutcome, JobStatus } from "../../../gen/jobqueue/v1/job_pb.js";
import { dateOf, duration, outcomeName, statusName } from "../format.js";

export interface TimelineEntry {
  at: Date;
  /** Whether it is still to come (a due retry, a deletion). */
  future: boolean;
  kind: "created" | "scheduled" | "started" | "ended" | "due" | "finished" | "expires";
  text: string;
  tone: "neutral" | "good" | "bad" | "warn";
}

/**
 * A job's life in order, from what the job and its attempts record. The event stream (issue 8)
 * will add what they do not keep (waiting for a budget, response headers received, bytes read).
 */
export function timelineOf(job: Job, attempts: Attempt[], now = Date.now()): TimelineEntry[] {
  const out: TimelineEntry[] = [];
  const push = (ts: Date | null, e: Omit<TimelineEntry, "at" | "future">) => {
    if (ts) out.push({ at: ts, future: ts.getTime() > now, ...e });
  };
  push(dateOf(job.createdAt), { kind: "created", text: "Submitted", tone: "neutral" });
  const scheduled = dateOf(job.scheduledAt);
  if (scheduled) {
    push(scheduled, { kind: "scheduled", text: "Scheduled to run", tone: "neutral" });
  }
  for (const a of attempts) {
    const node = a.node ? ` on ${a.node}` : "";
    push(dateOf(a.startedAt), {
      kind: "started",
      text: `Attempt ${a.attempt} started${node}`,
      tone: "neutral",
    });
    if (a.outcome !== AttemptOutcome.RUNNING) {
      const status = a.responseStatus !== undefined ? ` with HTTP ${a.responseStatus}` : "";
      const took = a.durationMs !== undefined ? ` after ${duration(a.durationMs)}` : "";
      // "HTTP 503" says nothing the status did not.
      const why = a.error && a.error !== `HTTP ${a.responseStatus}` ? `: ${a.error}` : "";
      push(dateOf(a.finishedAt), {
        kind: "ended",
        text: `Attempt ${a.attempt} ${outcomeName(a.outcome)}${status}${took}${why}`,
        tone:
          a.outcome === AttemptOutcome.SUCCEEDED
            ? "good"
            : a.outcome === AttemptOutcome.FAILED
              ? "bad"
              : "warn",
      });
    }
  }
  if (job.status === JobStatus.QUEUED && job.attempt > 0) {
    push(dateOf(job.nextRunAt), {
      kind: "due",
      text: `Attempt ${job.attempt + 1} due`,
      tone: "neutral",
    });
  }
  const finished = dateOf(job.finishedAt);
  if (finished) {
    push(finished, {
      kind: "finished",
      text: `Job ${statusName(job.status)}`,
      tone:
        job.status === JobStatus.SUCCEEDED
          ? "good"
          : job.status === JobStatus.FAILED
            ? "bad"
            : "warn",
    });
  }
  push(dateOf(job.expiresAt), { kind: "expires", text: "Deleted (TTL)", tone: "neutral" });
  // Stable: entries at the same instant keep the order they were pushed in (a life's order).
  return out
    .map((e, i) => ({ e, i }))
    .sort((x, y) => x.e.at.getTime() - y.e.at.getTime() || x.i - y.i)
    .map(({ e }) => e);
}
