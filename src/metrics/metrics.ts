import {
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  Registry,
  type RegistryContentType,
} from "prom-client";
import type { AttemptEndRecord } from "../job/types.js";
import type { ClaimedJob, JobStats, JobStore } from "../store/job-store.js";

/** How many rows each count of the jobs gauges reads at most (see {@link JobStats}). */
export const STATS_CAP = 10_000;
/** The store is read for the jobs gauges at most this often, however many scrapers ask. */
const STATS_EVERY_MS = 5_000;
/** How long a scrape waits for that read before it shows the last counts. */
const STATS_WAIT_MS = 1_000;
/** The bucket label of calls and jobs whose bucket has no budget (keeps the label set bounded). */
export const UNLIMITED_BUCKET = "(unlimited)";

/** What the metrics read when scraped. */
export interface MetricsSources {
  /** Bounded counts from the store. */
  stats: () => Promise<JobStats>;
  /** Calls in flight now, per bucket. */
  inFlight: () => ReadonlyMap<string, number>;
  /** Whether a bucket has a budget (JOBQUEUE_HOST_LIMITS); others share one label value. */
  limited: (bucket: string) => boolean;
  /** Whether the node is ready (/readyz). */
  ready: () => boolean;
  /** Clients watching the event stream now. */
  watchers: () => number;
  /** The store's time, epoch ms (ages are measured against it). */
  now: () => number;
}

/** One call as the RPC pipeline saw it end. */
export interface CallObservation {
  /** `package.Service/Method`, or `/healthz`, `/readyz`, `/metrics`, or `(none)` (no route). */
  method: string;
  protocol: string;
  /** Connect's name of the code ("ok", "invalid_argument", …). */
  code: string;
  seconds: number;
}

/**
 * The node's Prometheus metrics (prom-client, a registry of its own). Events are counted as they
 * happen (attempts, claims, calls, store calls and commits); the jobs gauges are read from the
 * store with bounded queries when scraped, at most every 5 s, so a scrape costs the same with a
 * million jobs kept. The README ("Operating JobQueue") lists every metric.
 */
export interface Metrics {
  readonly registry: Registry;
  /** A claim made by this node's pool: how long the store took, and the jobs it got. */
  claimed(c: { seconds: number; jobs: readonly ClaimedJob[]; at: number }): void;
  /** An attempt this node made ended (its outcome is then written). */
  attemptEnded(a: { job: ClaimedJob; end: AttemptEndRecord }): void;
  /** A call ended, on any protocol. */
  callEnded(c: CallObservation): void;
  /** A group commit of the SQLite store: how many writes, how long (transaction and fsync). */
  committed(c: { writes: number; ms: number }): void;
  /** Times every call of `store`. */
  instrument(store: JobStore): JobStore;
  /** The exposition text. */
  render(): Promise<{ contentType: RegistryContentType; body: string }>;
}

const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
const WAIT_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
];

export function createMetrics(
  sources: MetricsSources,
  options: { processMetrics?: boolean } = {},
): Metrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const bucketOf = (bucket: string) => (sources.limited(bucket) ? bucket : UNLIMITED_BUCKET);

  let stats: JobStats | null = null;
  let statsAt = Number.NEGATIVE_INFINITY;
  let reading: Promise<void> | null = null;
  /**
   * Refreshes the store's counts if they are older than STATS_EVERY_MS (one read at a time). A
   * scrape waits for the read at most STATS_WAIT_MS (a store that is away would otherwise hold it
   * up to its connect timeout): then it shows the last counts, and the next scrape the new ones.
   */
  function refreshStats(): Promise<void> {
    if (Date.now() - statsAt < STATS_EVERY_MS) return Promise.resolve();
    const read = startRead();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, STATS_WAIT_MS);
    });
    return Promise.race([read, late]).finally(() => clearTimeout(timer));
  }

  function startRead(): Promise<void> {
    reading ??= sources
      .stats()
      .then(
        (s) => {
          stats = s;
          statsAt = Date.now();
        },
        // The store cannot answer (readiness says why): the gauges keep their last values.
        () => {},
      )
      .finally(() => {
        reading = null;
      });
    return reading;
  }

  new Gauge({
    name: "jobqueue_jobs",
    help: `Jobs in each status, each counted up to ${STATS_CAP} (a bounded read of the store)`,
    labelNames: ["status"],
    registers: [registry],
    async collect() {
      await refreshStats();
      if (!stats) return;
      for (const [status, n] of Object.entries(stats.statuses)) this.set({ status }, n);
    },
  });
  new Gauge({
    name: "jobqueue_queue_depth",
    help: `Queued jobs due now, waiting for a worker, counted up to ${STATS_CAP}`,
    registers: [registry],
    async collect() {
      await refreshStats();
      if (stats) this.set(stats.due);
    },
  });
  new Gauge({
    name: "jobqueue_queue_oldest_age_seconds",
    help: "How long the due job that has waited longest has been due (0 when none is)",
    registers: [registry],
    async collect() {
      await refreshStats();
      if (!stats) return;
      const at = stats.oldestDueAt;
      this.set(at === null ? 0 : Math.max(0, (sources.now() - at) / 1000));
    },
  });
  new Gauge({
    name: "jobqueue_jobs_count_cap",
    help: "The count at which jobqueue_jobs, jobqueue_queue_depth and jobqueue_budget_held_jobs stop counting",
    registers: [registry],
  }).set(STATS_CAP);
  new Gauge({
    name: "jobqueue_budget_held_jobs",
    help: "Jobs a destination budget holds back: waiting for a concurrency slot (reason=concurrency) or rescheduled to a rate slot (reason=rate)",
    labelNames: ["bucket", "reason"],
    registers: [registry],
    async collect() {
      await refreshStats();
      if (!stats) return;
      this.reset();
      for (const h of stats.heldBack) {
        const bucket = bucketOf(h.bucket);
        this.inc({ bucket, reason: "concurrency" }, h.waiting);
        this.inc({ bucket, reason: "rate" }, h.rateDeferred);
      }
    },
  });
  new Gauge({
    name: "jobqueue_calls_in_flight",
    help: "Outbound calls this node is making now, per destination budget (bucket)",
    labelNames: ["bucket"],
    registers: [registry],
    collect() {
      this.reset();
      let total = 0;
      for (const [bucket, n] of sources.inFlight()) {
        this.inc({ bucket: bucketOf(bucket) }, n);
        total += n;
      }
      if (total === 0) this.set({ bucket: UNLIMITED_BUCKET }, 0);
    },
  });
  new Gauge({
    name: "jobqueue_ready",
    help: "1 when the node is ready (GET /readyz answers 200), else 0",
    registers: [registry],
    collect() {
      this.set(sources.ready() ? 1 : 0);
    },
  });
  new Gauge({
    name: "jobqueue_event_stream_watchers",
    help: "Clients watching the event stream on this node (WatchJobs, WatchJob, SSE, WebSocket)",
    registers: [registry],
    collect() {
      this.set(sources.watchers());
    },
  });

  const attempts = new Counter({
    name: "jobqueue_attempts_total",
    help: "Attempts this node finished, by outcome and error code (error_code is empty on success)",
    labelNames: ["outcome", "error_code"],
    registers: [registry],
  });
  const dispatch = new Histogram({
    name: "jobqueue_dispatch_duration_seconds",
    help: "Outbound calls' durations (connect, headers and body), by attempt outcome",
    labelNames: ["outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const claimLatency = new Histogram({
    name: "jobqueue_claim_latency_seconds",
    help: "From the moment a job was due to its claim by this node (time spent queued)",
    buckets: WAIT_BUCKETS,
    registers: [registry],
  });
  const claimDuration = new Histogram({
    name: "jobqueue_claim_duration_seconds",
    help: "How long a claim took in the store (its commit included), claims that got jobs or not",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const calls = new Counter({
    name: "jobqueue_rpc_calls_total",
    help: "Calls answered, by RPC method, protocol and code (REST routes count as their RPC)",
    labelNames: ["method", "protocol", "code"],
    registers: [registry],
  });
  const callDuration = new Histogram({
    name: "jobqueue_rpc_duration_seconds",
    help: "Calls' durations, by RPC method and protocol",
    labelNames: ["method", "protocol"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const storeCalls = new Histogram({
    name: "jobqueue_store_call_duration_seconds",
    help: "Store calls' durations by call (writes include their commit and fsync), by outcome",
    labelNames: ["call", "outcome"],
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const commitDuration = new Histogram({
    name: "jobqueue_store_commit_duration_seconds",
    help: "SQLite group commits: the transaction and the fsync of the WAL",
    buckets: LATENCY_BUCKETS,
    registers: [registry],
  });
  const commitSize = new Histogram({
    name: "jobqueue_store_commit_batch_size",
    help: "SQLite group commits: writes committed together (one fsync for all)",
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    registers: [registry],
  });

  return {
    registry,
    claimed({ seconds, jobs, at }) {
      claimDuration.observe(seconds);
      for (const job of jobs) claimLatency.observe(Math.max(0, (at - job.runAt) / 1000));
    },
    attemptEnded({ end }) {
      attempts.inc({ outcome: end.outcome, error_code: end.errorCode ?? "" });
      if (end.durationMs !== null)
        dispatch.observe({ outcome: end.outcome }, end.durationMs / 1000);
    },
    callEnded(c) {
      calls.inc({ method: c.method, protocol: c.protocol, code: c.code });
      callDuration.observe({ method: c.method, protocol: c.protocol }, c.seconds);
    },
    committed({ writes, ms }) {
      commitSize.observe(writes);
      commitDuration.observe(ms / 1000);
    },
    instrument(store) {
      // One wrapper per method, made on first use. The duration is observed on a branch of the
      // call's promise: the caller gets the store's own promise, with no extra hop to wait for.
      const wrapped = new Map<string, unknown>();
      const wrap = (call: string, fn: (...args: unknown[]) => unknown) => {
        const ok = storeCalls.labels(call, "ok");
        const failed = storeCalls.labels(call, "error");
        const unavailable = storeCalls.labels(call, "unavailable");
        return (...args: unknown[]) => {
          const started = performance.now();
          const out = fn.apply(store, args);
          if (out instanceof Promise) {
            out.then(
              () => ok.observe((performance.now() - started) / 1000),
              (err: unknown) =>
                ((err as Error | null)?.name === "StoreUnavailableError"
                  ? unavailable
                  : failed
                ).observe((performance.now() - started) / 1000),
            );
          }
          return out;
        };
      };
      return new Proxy(store, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver);
          if (typeof value !== "function" || typeof prop !== "string") return value;
          if (prop === "close" || prop === "now") return value.bind(target);
          let fn = wrapped.get(prop);
          if (fn === undefined) {
            fn = wrap(prop, value);
            wrapped.set(prop, fn);
          }
          return fn;
        },
      });
    },
    async render() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}
