import type { JobStatus } from "../job/types.js";

/** A change to one job, as watchers and the worker pool hear of it. */
export interface JobEvent {
  jobId: string;
  status: JobStatus;
}

type Listener<T> = (value: T) => void;
type Unsubscribe = () => void;

/**
 * Wake-ups, as the store supplies them: always after the change is committed. Delivery is
 * best-effort: listeners re-read the store, so a missed signal costs latency (a poll interval),
 * never correctness.
 *
 * A SQLite store signals its own commits in-process. A PostgreSQL store also relays what other
 * nodes send with NOTIFY in their committing transaction: work became available, a job was
 * canceled (so the node running it aborts the call), a job was scheduled (so the leader's
 * scheduler wakes in time). Other changes made on other nodes reach watchers by polling.
 */
export interface StoreSignals {
  /** New work may be claimable now. */
  onJobsAvailable(listener: () => void): Unsubscribe;
  /** A job changed status (to canceled too: the worker aborts the call it is making). */
  onJobChanged(listener: Listener<JobEvent>): Unsubscribe;
  /** Changes of one job only. */
  onJobChangedById(jobId: string, listener: Listener<JobEvent>): Unsubscribe;
  /** A job will become due at `runAt` (a scheduled submit, a retry, a rate-limit slot). */
  onJobScheduled(listener: Listener<number>): Unsubscribe;
  /** The maintenance leader resigned: another node may stand at once. */
  onLeaderResigned(listener: () => void): Unsubscribe;
  /** A queue was created, changed (settings, paused) or deleted. */
  onQueuesChanged(listener: () => void): Unsubscribe;
  /** A bulk operation was started or canceled. */
  onOperationsChanged(listener: () => void): Unsubscribe;
  /**
   * Events were appended by this node (other nodes' events are found by polling the stream: a
   * NOTIFY per change would serialize every commit of every node).
   */
  onEventsAppended(listener: () => void): Unsubscribe;
}

/** The sending side, for a store driver: it calls these once a change is committed. */
export interface Notifier extends StoreSignals {
  jobsAvailable(): void;
  jobChanged(event: JobEvent): void;
  jobScheduled(runAt: number): void;
  leaderResigned(): void;
  queuesChanged(): void;
  operationsChanged(): void;
  eventsAppended(): void;
}

/** In-process fan-out of signals: synchronous, listeners in subscription order. */
export function createNotifier(): Notifier {
  const available = new Set<() => void>();
  const changed = new Set<Listener<JobEvent>>();
  const byId = new Map<string, Set<Listener<JobEvent>>>();
  const scheduled = new Set<Listener<number>>();
  const resigned = new Set<() => void>();
  const queues = new Set<() => void>();
  const operations = new Set<() => void>();
  const events = new Set<() => void>();

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
    leaderResigned() {
      for (const l of resigned) l();
    },
    onLeaderResigned: (listener) => subscribe(resigned, listener),
    queuesChanged() {
      for (const l of queues) l();
    },
    onQueuesChanged: (listener) => subscribe(queues, listener),
    operationsChanged() {
      for (const l of operations) l();
    },
    onOperationsChanged: (listener) => subscribe(operations, listener),
    eventsAppended() {
      for (const l of events) l();
    },
    onEventsAppended: (listener) => subscribe(events, listener),
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
