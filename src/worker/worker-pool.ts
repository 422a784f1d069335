import type { Logger } from "pino";
import { reportsOutcome } from "../job/callbacks.js";
import type { Clock } from "../job/clock.js";
import type { LimitResolver } from "../job/rate-limits.js";
import { chooseBodyEncoding } from "../job/response-body.js";
import { type CallResult, decide, type RetryPolicy } from "../job/retry-policy.js";
import { requestBodyBytes, signatureHeaders } from "../job/signing.js";
import type { AttemptEndRecord } from "../job/types.js";
import type { QueueDirectory } from "../queue/queue-directory.js";
import { openSigningSecrets, type SecretBox } from "../secrets/secret-box.js";
import {
  type ClaimedJob,
  type FinishAttemptParams,
  type JobStore,
  type NextState,
  type ResultRecord,
  StoreUnavailableError,
} from "../store/job-store.js";
import type { HttpDispatcher } from "./dispatcher.js";
import { startProgressReporter } from "./progress-reporter.js";

export interface WorkerPoolOptions {
  store: JobStore;
  /** The queues: which to claim from (not paused), each up to its concurrency on this node. */
  queues: QueueDirectory;
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
  /** This node's id, recorded on the attempts it makes. */
  node: string;
  /** Per-bucket rate and concurrency limits, applied when claiming. */
  limits?: LimitResolver;
  /** Opens the jobs' secret headers just before the call. */
  secretBox: SecretBox;
  /** The signing secrets of a job's owner (null: submitted without authentication). */
  signingSecrets?: (owner: string | null) => readonly string[];
  /** Told of claims and ended attempts (the metrics). */
  observer?: WorkerPoolObserver;
  /** A long call's progress goes to the event stream at most this often (from this long on). */
  progressEveryMs?: number;
}

/** What the pool reports as it works. */
export interface WorkerPoolObserver {
  /** A claim returned: how long the store took, the jobs it got, and the time (store clock). */
  claimed(c: { seconds: number; jobs: readonly ClaimedJob[]; at: number }): void;
  /** An attempt ended (its outcome is being written). */
  attemptEnded(a: { job: ClaimedJob; end: AttemptEndRecord }): void;
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
  /** Calls in flight now, per bucket. */
  inFlightByBucket(): Map<string, number>;
}

type AbortReason = "canceled" | "interrupted" | "lease-lost";

interface Flight {
  job: ClaimedJob;
  controller: AbortController;
  reason: AbortReason | null;
  done: Promise<void>;
}

/**
 * Claims due jobs up to the concurrency limit and runs them. It wakes when the store signals that
 * work arrived (here or on another node) or a call ended, and otherwise at the poll interval.
 * Leases of calls in flight are renewed in one batch; a call whose lease is lost or whose job is
 * canceled (on any node) is aborted. An outcome the store cannot take now (the database is away,
 * the disk full) is kept and written again with backoff, so the job is not left running until its
 * lease runs out.
 */
export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  const { store, dispatcher, clock, logger, secretBox, observer } = options;
  const signals = store.signals;
  const flights = new Map<string, Flight>();
  // Log arguments are objects built per attempt: only when their level is on.
  const logDebug = logger.isLevelEnabled("debug");
  /** Calls in flight per queue, for the queues' concurrency on this node. */
  const perQueue = new Map<string, number>();
  /** Rotates the order queues are claimed from, so that no queue always goes first. */
  let rotation = 0;
  /** Every attempt until its outcome is written, including those whose slot is already free. */
  const executing = new Set<Promise<void>>();
  let running = false;
  let filling = false;
  let refill = false;
  /**
   * The last claim took every job it could see (fewer than it asked for, no queue at its own
   * limit) and nothing woke the pool since: a freed slot then claims nothing, so it does not ask.
   * Each ask is a write of its own (a transaction and an fsync): at a low rate, asking after every
   * finished call doubled the commits per job and kept a claim in the way of the next enqueue.
   */
  let drained = false;
  /** Wake-ups so far: a claim that began before the last one cannot say the queues are drained. */
  let wakes = 0;
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
  let claimsFailing = false;
  /** Set when stopping has waited long enough for outcomes the store would not take. */
  let abandonWrites = false;
  /** Wakes the outcome writes sleeping before another try, when they are given up. */
  const giveUp = new AbortController();

  /**
   * Writes an attempt's outcome; while the store is unavailable, tries again with backoff (100 ms
   * doubling to 5 s) for as long as the pool is not told to give up. Resolves whether the lease
   * was held; a write given up counts as not held (the lease runs out, the rescuer takes over).
   */
  async function finishAttempt(params: FinishAttemptParams): Promise<boolean> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 5_000)) {
      try {
        return await store.jobFinishAttempt(params);
      } catch (err) {
        if (!(err instanceof StoreUnavailableError) || abandonWrites) throw err;
        logger.warn(
          { jobId: params.lease.jobId, retryInMs: delay, reason: err.message },
          "the store did not take an attempt's outcome; trying again",
        );
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delay);
          giveUp.signal.addEventListener("abort", () => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    }
  }

  /**
   * A wake-up: jobs may be due (an enqueue, a retry, a queue resumed, a timer). Clears
   * {@link drained}, so freed slots claim again.
   */
  function wake(): void {
    wakes++;
    drained = false;
    fill();
  }

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
    // The earliest time a job held back by a queue's rate may go (it stays available, so only a
    // claim at that time takes it).
    let nextSlot: number | null = null;
    try {
      for (;;) {
        refill = false;
        while (running && flights.size < options.concurrency) {
          const want = options.concurrency - flights.size;
          const queues = claimableQueues(want);
          if (queues.length === 0) break;
          const started = performance.now();
          const wakesBefore = wakes;
          const { jobs, deferredUntil } = await store.jobClaim({
            queues,
            limit: want,
            leaseMs: options.leaseMs,
            node: options.node,
            limits: options.limits,
          });
          observer?.claimed({
            seconds: (performance.now() - started) / 1000,
            jobs,
            at: clock.now(),
          });
          if (deferredUntil !== null) nextSlot = Math.min(nextSlot ?? deferredUntil, deferredUntil);
          if (claimsFailing) logger.info("claiming jobs works again");
          claimsFailing = false;
          // Launch even if stop() began meanwhile: the jobs are claimed, and stop() drains them.
          for (const job of jobs) launch(job);
          if (jobs.length < want) {
            if (wakes === wakesBefore && queues.every((q) => taken(jobs, q.name) < q.limit)) {
              drained = true;
            }
            break;
          }
        }
        if (!running) return;
        // A wake-up that arrived while claiming is served at once, not at the next timer; otherwise
        // poll now and then for work this process was not told about (another process's).
        if (!refill && flights.size < options.concurrency) {
          const untilSlot = nextSlot === null ? Number.POSITIVE_INFINITY : nextSlot - clock.now();
          wakeTimer = setTimeout(wake, Math.max(1, Math.min(options.pollIntervalMs, untilSlot)));
        }
        if (!refill) return;
      }
    } catch (err) {
      // Said once per outage, not at every poll.
      if (!claimsFailing) {
        if (err instanceof StoreUnavailableError) {
          logger.warn({ reason: err.message }, "cannot claim jobs; retrying every poll interval");
        } else logger.error({ err }, "claiming jobs failed; retrying every poll interval");
      }
      claimsFailing = true;
      if (running) wakeTimer = setTimeout(wake, options.pollIntervalMs);
    }
  }

  /** The queues to claim from now: not paused, below their concurrency here, in turn. */
  function claimableQueues(want: number) {
    const all = options.queues.all().filter((q) => !q.paused);
    if (all.length === 0) return [];
    rotation = (rotation + 1) % all.length;
    const ordered = [...all.slice(rotation), ...all.slice(0, rotation)];
    return ordered.flatMap((q) => {
      const limit =
        q.concurrency === null ? want : Math.min(want, q.concurrency - (perQueue.get(q.name) ?? 0));
      return limit > 0 ? [{ name: q.name, limit, rate: q.rate }] : [];
    });
  }

  function launch(job: ClaimedJob) {
    const flight: Flight = {
      job,
      controller: new AbortController(),
      reason: null,
      done: Promise.resolve(),
    };
    flights.set(job.id, flight);
    perQueue.set(job.queue, (perQueue.get(job.queue) ?? 0) + 1);
    if (logDebug) logger.debug({ jobId: job.id, attempt: job.attempt }, "attempt started");
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
    const left = (perQueue.get(flight.job.queue) ?? 1) - 1;
    if (left > 0) perQueue.set(flight.job.queue, left);
    else perQueue.delete(flight.job.queue);
    if (!drained) fill();
  }

  /**
   * The Standard Webhooks headers of a signed job's call, with every secret it has (its own, sealed
   * with it or with the job it delivers, then its owner's), or null when it has none. The id is
   * the job's (stable across retries), the timestamp this attempt's.
   */
  function signingHeaders(job: ClaimedJob): Record<string, string> | null {
    const own = job.sealedSigningSecret
      ? openSigningSecrets(secretBox, job.callbackOf ?? job.id, job.sealedSigningSecret)
      : [];
    const all = [...new Set([...own, ...(options.signingSecrets?.(job.owner) ?? [])])];
    if (all.length === 0) return null;
    return signatureHeaders({
      id: job.id,
      timestampSec: clock.now() / 1000,
      body: requestBodyBytes(job.body),
      secrets: all,
    });
  }

  async function execute(flight: Flight): Promise<void> {
    const { job } = flight;
    const lease = { jobId: job.id, token: job.leaseToken };
    let secrets: Record<string, string> = {};
    let error: string | null = null;
    try {
      if (job.sealedHeaders) secrets = secretBox.open(job.id, job.sealedHeaders);
    } catch (err) {
      error = `cannot open the job's secret headers: ${(err as Error).message}`;
    }
    if (error === null && job.sign) {
      try {
        const signed = signingHeaders(job);
        if (signed) secrets = { ...secrets, ...signed };
        else if (job.callbackOf === null) {
          error = `no signing secret: the job asks to be signed, and neither it nor ${job.owner === null ? "JOBQUEUE_SIGNING_SECRETS" : `principal ${JSON.stringify(job.owner)}`} has a secret`;
        }
      } catch (err) {
        error = `cannot open the job's signing secret: ${(err as Error).message}`;
      }
    }
    if (error !== null) {
      // Without its credentials the call cannot be made right; retrying will not bring the key back.
      const end: AttemptEndRecord = {
        outcome: "failed",
        responseStatus: null,
        errorCode: "secret_unreadable",
        error,
        retryable: false,
        durationMs: 0,
      };
      const result: ResultRecord = { response: null, error, durationMs: 0 };
      observer?.attemptEnded({ job, end });
      await finishAttempt({
        lease,
        end,
        next: { status: "failed" },
        result,
        reportsOutcome: reportsOutcome(job),
      });
      logger.error({ jobId: job.id }, error);
      return;
    }
    const progress = startProgressReporter({
      store,
      jobId: job.id,
      attempt: job.attempt,
      everyMs: options.progressEveryMs ?? 1_000,
      logger,
    });
    const result = await dispatcher
      .call(job, secrets, flight.controller, progress.update)
      .finally(progress.stop);
    const now = clock.now();

    if (result.kind === "aborted") {
      const end = abortedEnd(flight.reason ?? "interrupted", result.durationMs);
      observer?.attemptEnded({ job, end });
      const next: NextState | null =
        flight.reason === "interrupted" ? { status: "released" } : null;
      const write = finishAttempt({ lease, end, next, result: null });
      freeSlot(flight);
      await write;
      logger.info(
        { jobId: job.id, attempt: job.attempt, reason: flight.reason },
        "attempt aborted",
      );
      return;
    }

    const decision = decide(job, result, now, options.retryPolicy);
    observer?.attemptEnded({ job, end: decision.end });
    const next: NextState =
      decision.next === "retry"
        ? { status: "queued", runAt: decision.runAt }
        : { status: decision.next };
    const write = finishAttempt({
      lease,
      end: decision.end,
      next,
      result: toResult(result, decision.end.error),
      reportsOutcome: reportsOutcome(job),
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
    // Method and host only: the URL's path may carry ids, its query and userinfo secrets.
    if (!logger.isLevelEnabled("info")) return;
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

    inFlightByBucket() {
      const by = new Map<string, number>();
      for (const { job } of flights.values()) by.set(job.bucket, (by.get(job.bucket) ?? 0) + 1);
      return by;
    },

    start() {
      if (running || stopping) return;
      running = true;
      unsubscribe.push(
        signals.onJobsAvailable(wake),
        // A queue resumed, created, or given more concurrency: look for its work now.
        options.queues.onChange(wake),
        signals.onJobChanged((event) => {
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
        // Outcomes of calls that ended just before the stop may still be on their way to disk, or
        // waiting for the store to come back: they get another grace period, then are given up
        // (their leases run out and another node, or the next start, rescues the jobs).
        if (!(await settlesWithin(all(), graceMs))) {
          logger.error(
            { attempts: executing.size },
            "the store did not take these attempts' outcomes before the stop; their leases will expire and the jobs be rescued",
          );
          abandonWrites = true;
          giveUp.abort();
          await all();
        }
        if (renewTimer) clearInterval(renewTimer);
        for (const u of unsubscribe.splice(0)) u();
      })();
      return stopping;
    },
  };
}

/** Whether `promise` settles within `ms`. */
/** How many of `jobs` come from `queue`. */
function taken(jobs: readonly ClaimedJob[], queue: string): number {
  let n = 0;
  for (const job of jobs) if (job.queue === queue) n++;
  return n;
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const settled = promise.then(
    () => true,
    () => true,
  );
  try {
    return await Promise.race([settled, timeout]);
  } finally {
    clearTimeout(timer);
  }
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
  result: Exclude<CallResult, { kind: "aborted" }>,
  error: string | null,
): ResultRecord {
  return {
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
  };
}
