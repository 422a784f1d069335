import type { JobStatus } from "../job/types.js";

/** A change to one job, as watchers and the worker pool hear of it. */
export interface JobEvent {
  jobId: string;
  status: JobStatus;
}

type Listener<T> = (value: T) => void;

/**
 * In-process wake-ups and job events. The queue tells it what changed; the worker pool and
 * watchers listen. Delivery is synchronous and best-effort: listeners re-read the store, so a
 * missed event costs latency (the poll interval), never correctness. A PostgreSQL deployment will
 * put LISTEN/NOTIFY behind the same interface.
 */
export interface Notifier {
  /** New work may be claimable now. */
  jobsAvailable(): void;
  onJobsAvailable(listener: () => void): () => void;
  /** A job changed status (including to canceled: the worker aborts the call it is making). */
  jobChanged(event: JobEvent): void;
  onJobChanged(listener: Listener<JobEvent>): () => void;
  /** Listen to one job only. */
  onJobChangedById(jobId: string, listener: Listener<JobEvent>): () => void;
  /** A job will become due at `runAt` (a scheduled submit, a retry, a rate-limit slot). */
  jobScheduled(runAt: number): void;
  onJobScheduled(listener: Listener<number>): () => void;
}

export function createNotifier(): Notifier {
  const available = new Set<() => void>();
  const changed = new Set<Listener<JobEvent>>();
  const byId = new Map<string, Set<Listener<JobEvent>>>();
  const scheduled = new Set<Listener<number>>();

  const subscribe = <T>(set: Set<T>, listener: T) => {
    set.add(listener);
    return () => {
      set.delete(listener);
    };
  };

  return {
    jobsAvailable() {
      for (const l of available) l();
    },
    onJobsAvailable: (listener) => subscribe(available, listener),
    jobChanged(event) {
      for (const l of changed) l(event);
      const listeners = byId.get(event.jobId);
      if (listeners) for (const l of listeners) l(event);
    },
    onJobChanged: (listener) => subscribe(changed, listener),
    jobScheduled(runAt) {
      for (const l of scheduled) l(runAt);
    },
    onJobScheduled: (listener) => subscribe(scheduled, listener),
    onJobChangedById(jobId, listener) {
      let set = byId.get(jobId);
      if (!set) {
        set = new Set();
        byId.set(jobId, set);
      }
      set.add(listener);
      return () => {
        set.delete(listener);
        if (set.size === 0) byId.delete(jobId);
      };
    },
  };
}
