import type { JobStatus } from "../job/types.js";
import type { JobStats } from "./job-store.js";
import { STATES_OF } from "./rows.js";

/** What a driver read for {@link JobStats}: counts by stored state, held-back jobs by bucket. */
export interface JobStatsReadings {
  cap: number;
  /** Jobs per stored state, each count stopped at `cap`. */
  byState: Map<string, number>;
  /** Jobs waiting for a concurrency slot, by bucket. */
  waiting: { bucket: string; n: number }[];
  /** Scheduled jobs moved to a later rate slot, by bucket. */
  deferred: { bucket: string; n: number }[];
  oldestDueAt: number | null;
}

/** The JobStats of what a driver read, the same way for every driver. */
export function jobStatsOf(r: JobStatsReadings): JobStats {
  const statuses = Object.fromEntries(
    Object.entries(STATES_OF).map(([status, states]) => [
      status,
      Math.min(
        r.cap,
        states.reduce((n, state) => n + (r.byState.get(state) ?? 0), 0),
      ),
    ]),
  ) as Record<JobStatus, number>;
  const held = new Map<string, { bucket: string; waiting: number; rateDeferred: number }>();
  const entry = (bucket: string) => {
    let e = held.get(bucket);
    if (!e) {
      e = { bucket, waiting: 0, rateDeferred: 0 };
      held.set(bucket, e);
    }
    return e;
  };
  for (const w of r.waiting) entry(w.bucket).waiting = w.n;
  for (const d of r.deferred) if (d.n > 0) entry(d.bucket).rateDeferred = d.n;
  return {
    statuses,
    due: r.byState.get("available") ?? 0,
    oldestDueAt: r.oldestDueAt,
    heldBack: [...held.values()].sort((a, b) => (a.bucket < b.bucket ? -1 : 1)),
  };
}
