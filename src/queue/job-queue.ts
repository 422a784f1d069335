import { monotonicFactory } from "ulid";
import type { Clock } from "../job/clock.js";
import { InvalidArgumentError, JobNotFoundError, JobStateError } from "../job/errors.js";
import {
  type Attempt,
  isTerminal,
  type Job,
  type JobResult,
  type JobStatus,
  type NewJob,
} from "../job/types.js";
import {
  type EnqueueInput,
  type JobLimits,
  validateEnqueue,
  validateJobId,
} from "../job/validate.js";
import type { Notifier } from "../notify/notifier.js";
import type { JobStore } from "../store/job-store.js";

export interface ListInput {
  statuses?: JobStatus[];
  tags?: string[];
  createdAfter?: number;
  createdBefore?: number;
  /** 0 or absent: the default page size. */
  pageSize?: number;
  pageToken?: string;
}

export const PAGE_SIZE_DEFAULT = 50;
export const PAGE_SIZE_MAX = 1000;
export const BATCH_MAX = 1000;

/**
 * The facade every transport calls: enqueue, read, list, cancel and watch jobs. It validates,
 * talks to the store and tells the notifier what changed; it knows nothing of protocols.
 */
export interface JobQueue {
  /** Stores a job (durably, before resolving), or returns the kept job with the same idempotency key. */
  enqueue(input: EnqueueInput): Promise<{ job: Job; inserted: boolean }>;
  /**
   * Stores up to {@link BATCH_MAX} jobs in one transaction: all, or none if one is invalid (the
   * error names `jobs[i].<field>`).
   */
  enqueueMany(inputs: EnqueueInput[]): Promise<{ job: Job; inserted: boolean }[]>;
  get(jobId: string): Promise<Job>;
  getResult(jobId: string): Promise<{ job: Job; result: JobResult | null }>;
  /** Cancels a queued or running job; a job that already ended is a {@link JobStateError}. */
  cancel(jobId: string): Promise<Job>;
  list(input: ListInput): Promise<{ jobs: Job[]; nextPageToken: string | null }>;
  listAttempts(jobId: string): Promise<{ job: Job; attempts: Attempt[] }>;
  /** Yields the job now and after each change; ends after a terminal status or when aborted. */
  watch(jobId: string, signal: AbortSignal): AsyncIterable<Job>;
}

export interface JobQueueOptions {
  store: JobStore;
  notifier: Notifier;
  clock: Clock;
  limits: JobLimits;
  /** How often a watcher re-reads the job even without an event (changes made by other processes). */
  watchPollMs?: number;
}

export function createJobQueue(options: JobQueueOptions): JobQueue {
  const { store, notifier, clock, limits } = options;
  const nextUlid = monotonicFactory();
  const watchPollMs = options.watchPollMs ?? 1000;

  function newJob(input: EnqueueInput, now: number): NewJob {
    const spec = validateEnqueue(input, limits, now);
    const runAt = spec.scheduledAt !== null && spec.scheduledAt > now ? spec.scheduledAt : now;
    return { ...spec, id: `j_${nextUlid(now)}`, createdAt: now, runAt };
  }

  function announce(results: { job: Job; inserted: boolean }[]) {
    let any = false;
    for (const { job, inserted } of results) {
      if (!inserted) continue;
      any = true;
      notifier.jobChanged({ jobId: job.id, status: "queued" });
    }
    if (any) notifier.jobsAvailable();
  }

  async function mustGet(jobId: string): Promise<Job> {
    const id = validateJobId(jobId);
    const job = await store.jobGet({ id, now: clock.now() });
    if (!job) throw new JobNotFoundError(id);
    return job;
  }

  return {
    async enqueue(input) {
      const res = await store.jobInsert(newJob(input, clock.now()));
      announce([res]);
      return res;
    },

    async enqueueMany(inputs) {
      if (inputs.length === 0) throw new InvalidArgumentError("jobs", "must hold at least one job");
      if (inputs.length > BATCH_MAX) {
        throw new InvalidArgumentError("jobs", `holds ${inputs.length} jobs; at most ${BATCH_MAX}`);
      }
      const now = clock.now();
      const jobs = inputs.map((input, i) => {
        try {
          return newJob(input, now);
        } catch (err) {
          if (!(err instanceof InvalidArgumentError)) throw err;
          throw new InvalidArgumentError(`jobs[${i}].${err.field}`, err.problem);
        }
      });
      const res = await store.jobInsertMany(jobs);
      announce(res);
      return res;
    },

    get: mustGet,

    async getResult(jobId) {
      const job = await mustGet(jobId);
      return { job, result: await store.resultGet({ jobId: job.id }) };
    },

    async cancel(jobId) {
      const id = validateJobId(jobId);
      const res = await store.jobCancel({ id, now: clock.now() });
      switch (res.kind) {
        case "not-found":
          throw new JobNotFoundError(id);
        case "already-finished":
          throw new JobStateError(`job ${id} already ended as ${res.job.status}`);
        case "canceled":
          notifier.jobChanged({ jobId: id, status: "canceled" });
          return res.job;
      }
    },

    async list(input) {
      const pageSize = input.pageSize || PAGE_SIZE_DEFAULT;
      if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > PAGE_SIZE_MAX) {
        throw new InvalidArgumentError("page_size", `must be between 1 and ${PAGE_SIZE_MAX}`);
      }
      if (
        input.createdAfter !== undefined &&
        input.createdBefore !== undefined &&
        input.createdAfter >= input.createdBefore
      ) {
        throw new InvalidArgumentError("created_after", "must be earlier than created_before");
      }
      const afterId = input.pageToken ? decodePageToken(input.pageToken) : undefined;
      const { jobs, more } = await store.jobList({
        now: clock.now(),
        statuses: input.statuses,
        tags: input.tags,
        createdAfter: input.createdAfter,
        createdBefore: input.createdBefore,
        afterId,
        limit: pageSize,
      });
      const last = jobs.at(-1);
      return { jobs, nextPageToken: more && last ? encodePageToken(last.id) : null };
    },

    async listAttempts(jobId) {
      const job = await mustGet(jobId);
      return { job, attempts: await store.attemptList({ jobId: job.id }) };
    },

    async *watch(jobId, signal) {
      const id = validateJobId(jobId);
      let wake: (() => void) | null = null;
      let pending = false;
      const poke = () => {
        pending = true;
        wake?.();
      };
      const unsubscribe = notifier.onJobChangedById(id, poke);
      signal.addEventListener("abort", poke);
      try {
        let last: Job | null = null;
        for (;;) {
          pending = false;
          const job = await store.jobGet({ id, now: clock.now() });
          if (!job) {
            if (last === null) throw new JobNotFoundError(id);
            return;
          }
          if (last === null || job.status !== last.status || job.updatedAt !== last.updatedAt) {
            yield job;
            last = job;
          }
          if (isTerminal(job.status) || signal.aborted) return;
          if (!pending) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, watchPollMs);
              wake = () => {
                clearTimeout(timer);
                resolve();
              };
            });
            wake = null;
          }
          if (signal.aborted) return;
        }
      } finally {
        unsubscribe();
        signal.removeEventListener("abort", poke);
      }
    },
  };
}

function encodePageToken(lastId: string): string {
  return Buffer.from(JSON.stringify({ after: lastId })).toString("base64url");
}

function decodePageToken(token: string): string {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as unknown;
    const after = (parsed as { after?: unknown } | null)?.after;
    if (typeof after === "string" && /^j_[0-9A-Z]{26}$/.test(after)) return after;
  } catch {
    // fall through: not ours
  }
  throw new InvalidArgumentError("page_token", "is not a token this server issued");
}
