import type { Logger } from "pino";
import type { Clock } from "../job/clock.js";
import { chooseBodyEncoding } from "../job/response-body.js";
import { type CallResult, decide, type RetryPolicy } from "../job/retry-policy.js";
import type { JobResult } from "../job/types.js";
import type { Notifier } from "../notify/notifier.js";
import type { SecretBox } from "../secrets/secret-box.js";
import type { AttemptEndRecord, ClaimedJob, JobStore, NextState } from "../store/job-store.js";
import type { HttpDispatcher } from "./dispatcher.js";
import type { LimitResolver } from "./rate-limits.js";

export interface WorkerPoolOptions {
  store: JobStore;
  notifier: Notifier;
  dispatcher: HttpDispatcher;
  clock: Clock;
  logger: Logger;
  /** Calls in flight at most. */
  concurrency: number;
  /** How long a claim holds before another worker may rescue it; renewed every third of it. */
  leaseMs: number;
  /** Fallback re-check for due work when no wake-up arrives (e.g. scheduled jobs, other writers). */
  pollIntervalMs: number;
  retryPolicy: RetryPolicy;
  /** Names this process in lease tokens. */
  worker: string;
  /** Per-bucket rate and concurrency limits, applied when claiming. */
  limits?: LimitResolver;
  /** Opens the jobs' secret headers just before the call. */
  secretBox: SecretBox;
}

export interface WorkerPool {
  start(): void;
  /**
   * Stops claiming, lets calls in flight finish for up to `graceMs`, then aborts the rest and puts
   * their jobs back in the queue without counting the attempt. Idempotent.
   */
  stop(graceMs: number): Promise<void>;
  /** Calls in flight now. */
  readonly inFlight: number;
}

type AbortReason = "canceled" | "interrupted" | "lease-lost";

interface Flight {
  job: ClaimedJob;
  controller: AbortController;
  reason: AbortReason | null;
  done: Promise<void>;
}

/**
 * Claims due jobs up to the concurrency limit and runs them. It wakes when the notifier says work
 * arrived or a call ended, and otherwise at the next due time or the poll interval, whichever is
 * sooner. Leases of calls in flight are renewed in one batch; a call whose lease is lost or whose
 * job is canceled is aborted.
 */
export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  const { store, notifier, dispatcher, clock, logger, secretBox } = options;
  const flights = new Map<string, Flight>();
  /** Every attempt until its outcome is written, including those whose slot is already free. */
  const executing = new Set<Promise<void>>();
  let running = false;
  let filling = false;
  let refill = false;
  let wakeTimer: NodeJS.Timeout | null = null;
  let renewTimer: NodeJS.Timeout | null = null;
  let stopping: Promise<void> | null = null;
  const unsubscribe: (() => void)[] = [];

  function abort(flight: Flight, reason: AbortReason) {
    if (flight.reason !== null) return;
    flight.reason = reason;
    flight.controller.abort(reason);
  }

  let fillDone: Promise<void> = Promise.resolve();

  /** Claims work until the slots are full or nothing is due; runs one at a time. */
  function fill(): void {
    if (!running) return;
    if (filling) {
      refill = true;
      return;
    }
    filling = true;
    if (wakeTimer) clearTimeout(wakeTimer);
    wakeTimer = null;
    fillDone = claimUntilFull().finally(() => {
      filling = false;
    });
  }

  async function claimUntilFull(): Promise<void> {
    try {
      for (;;) {
        refill = false;
        while (running && flights.size < options.concurrency) {
          const want = options.concurrency - flights.size;
          const { jobs, deferredUntil } = await store.jobClaim({
            now: clock.now(),
            limit: want,
            leaseMs: options.leaseMs,
            worker: options.worker,
            limits: options.limits,
          });
          if (deferredUntil !== null) notifier.jobScheduled(deferredUntil);
          // Launch even if stop() began meanwhile: the jobs are claimed, and stop() drains them.
          for (const job of jobs) launch(job);
          if (jobs.length < want) break;
        }
        if (!running) return;
        // A wake-up that arrived while claiming is served at once, not at the next timer; otherwise
        // poll now and then for work this process was not told about (another process's).
        if (!refill && flights.size < options.concurrency) {
          wakeTimer = setTimeout(fill, options.pollIntervalMs);
        }
        if (!refill) return;
      }
    } catch (err) {
      logger.error({ err }, "claiming jobs failed; retrying after the poll interval");
      if (running) wakeTimer = setTimeout(fill, options.pollIntervalMs);
    }
  }

  function launch(job: ClaimedJob) {
    const flight: Flight = {
      job,
      controller: new AbortController(),
      reason: null,
      done: Promise.resolve(),
    };
    flights.set(job.id, flight);
    notifier.jobChanged({ jobId: job.id, status: "running" });
    logger.debug({ jobId: job.id, attempt: job.attempt }, "attempt started");
    flight.done = execute(flight)
      .catch((err) => logger.error({ err, jobId: job.id }, "finishing an attempt failed"))
      .finally(() => {
        freeSlot(flight);
        executing.delete(flight.done);
      });
    executing.add(flight.done);
  }

  /**
   * Frees a flight's slot and looks for more work. Called as soon as the call has ended and its
   * outcome is queued for writing, so the next claim joins the same group commit as that write.
   */
  function freeSlot(flight: Flight) {
    if (flights.get(flight.job.id) !== flight) return;
    flights.delete(flight.job.id);
    fill();
  }

  async function execute(flight: Flight): Promise<void> {
    const { job } = flight;
    const lease = { jobId: job.id, token: job.leaseToken };
    let secrets: Record<string, string> = {};
    try {
      if (job.sealedHeaders) secrets = secretBox.open(job.id, job.sealedHeaders);
    } catch (err) {
      // Without its credentials the call cannot be made right; retrying will not bring the key back.
      const error = `cannot open the job's secret headers: ${(err as Error).message}`;
      const end: AttemptEndRecord = {
        outcome: "failed",
        responseStatus: null,
        errorCode: "secret_unreadable",
        error,
        retryable: false,
        durationMs: 0,
      };
      const now = clock.now();
      const result = {
        jobId: job.id,
        attempt: job.attempt,
        response: null,
        error,
        durationMs: 0,
        finishedAt: now,
      };
      if (await store.jobFinishAttempt({ lease, now, end, next: { status: "failed" }, result })) {
        notifier.jobChanged({ jobId: job.id, status: "failed" });
      }
      logger.error({ jobId: job.id }, error);
      return;
    }
    const result = await dispatcher.call(job, secrets, flight.controller.signal);
    const now = clock.now();

    if (result.kind === "aborted") {
      const end = abortedEnd(flight.reason ?? "interrupted", result.durationMs);
      const next: NextState | null =
        flight.reason === "interrupted" ? { status: "released" } : null;
      const write = store.jobFinishAttempt({ lease, now, end, next, result: null });
      freeSlot(flight);
      await write;
      if (next) notifier.jobChanged({ jobId: job.id, status: "queued" });
      logger.info(
        { jobId: job.id, attempt: job.attempt, reason: flight.reason },
        "attempt aborted",
      );
      return;
    }

    const decision = decide(job, result, now, options.retryPolicy);
    const next: NextState =
      decision.next === "retry"
        ? { status: "queued", runAt: decision.runAt }
        : { status: decision.next };
    const write = store.jobFinishAttempt({
      lease,
      now,
      end: decision.end,
      next,
      result: toResult(job, result, decision.end.error, now),
    });
    freeSlot(flight);
    const held = await write;
    if (!held) {
      logger.warn(
        { jobId: job.id, attempt: job.attempt },
        "lease lost before the attempt finished; its outcome was not applied",
      );
      return;
    }
    notifier.jobChanged({
      jobId: job.id,
      status: next.status === "released" ? "queued" : next.status,
    });
    if (next.status === "queued") notifier.jobScheduled(next.runAt);
    // Method and host only: the URL's path may carry ids, its query and userinfo secrets.
    logger.info(
      {
        jobId: job.id,
        attempt: job.attempt,
        method: job.method,
        host: new URL(job.url).host,
        status: next.status,
        responseStatus: decision.end.responseStatus,
        error: decision.end.error ?? undefined,
        durationMs: decision.end.durationMs,
        ...(decision.next === "retry" ? { retryAt: new Date(decision.runAt).toISOString() } : {}),
      },
      "attempt finished",
    );
  }

  async function renewLeases() {
    if (flights.size === 0) return;
    const snapshot = [...flights.values()];
    try {
      const held = await store.jobRenewLeases({
        leases: snapshot.map((f) => ({ jobId: f.job.id, token: f.job.leaseToken })),
        now: clock.now(),
        leaseMs: options.leaseMs,
      });
      for (const flight of snapshot) {
        if (!held.has(flight.job.id) && flights.get(flight.job.id) === flight) {
          logger.warn({ jobId: flight.job.id }, "lease lost; aborting the call");
          abort(flight, "lease-lost");
        }
      }
    } catch (err) {
      logger.error({ err }, "renewing leases failed");
    }
  }

  return {
    get inFlight() {
      return flights.size;
    },

    start() {
      if (running || stopping) return;
      running = true;
      unsubscribe.push(
        notifier.onJobsAvailable(fill),
        notifier.onJobChanged((event) => {
          const flight = flights.get(event.jobId);
          if (flight && event.status === "canceled") abort(flight, "canceled");
        }),
      );
      renewTimer = setInterval(renewLeases, Math.max(50, Math.floor(options.leaseMs / 3)));
      fill();
    },

    stop(graceMs) {
      if (stopping) return stopping;
      running = false;
      if (wakeTimer) clearTimeout(wakeTimer);
      stopping = (async () => {
        await fillDone;
        const all = () => Promise.all([...executing]);
        if (flights.size > 0) {
          let graceTimer: NodeJS.Timeout | undefined;
          const graceOver = new Promise<"grace-over">((resolve) => {
            graceTimer = setTimeout(() => resolve("grace-over"), graceMs);
          });
          const outcome = await Promise.race([all(), graceOver]);
          clearTimeout(graceTimer);
          if (outcome === "grace-over") {
            logger.warn({ inFlight: flights.size }, "grace period over; aborting calls in flight");
            for (const flight of flights.values()) abort(flight, "interrupted");
            await all();
          }
        }
        // Outcomes of calls that ended just before the stop may still be on their way to disk.
        await all();
        if (renewTimer) clearInterval(renewTimer);
        for (const u of unsubscribe.splice(0)) u();
      })();
      return stopping;
    },
  };
}

function abortedEnd(reason: AbortReason, durationMs: number): AttemptEndRecord {
  const outcomes = {
    canceled: { outcome: "canceled", errorCode: "canceled", error: "the job was canceled" },
    interrupted: {
      outcome: "interrupted",
      errorCode: "interrupted",
      error: "the server shut down during the call; the job was put back",
    },
    "lease-lost": { outcome: "lost", errorCode: "lease_expired", error: "the lease was lost" },
  } as const;
  return { ...outcomes[reason], responseStatus: null, retryable: false, durationMs };
}

function toResult(
  job: ClaimedJob,
  result: Exclude<CallResult, { kind: "aborted" }>,
  error: string | null,
  now: number,
): JobResult {
  return {
    jobId: job.id,
    attempt: job.attempt,
    response:
      result.kind === "response"
        ? {
            status: result.status,
            headers: result.headers,
            body: result.body,
            bodyEncoding: chooseBodyEncoding(
              result.headers["content-type"],
              result.body,
              result.truncated,
            ),
            truncated: result.truncated,
          }
        : null,
    error,
    durationMs: result.durationMs,
    finishedAt: now,
  };
}
