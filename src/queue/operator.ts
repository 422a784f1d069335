import { monotonicFactory } from "ulid";
import type { AuditOutcome } from "../audit/audit-event.js";
import { type Caller, seesAllJobs } from "../auth/principal.js";
import type { Clock } from "../job/clock.js";
import {
  InvalidArgumentError,
  JobNotFoundError,
  JobStateError,
  OperationNotFoundError,
  QueueExistsError,
  QueueNotFoundError,
} from "../job/errors.js";
import { type JobFilterInput, validateFilter } from "../job/filter.js";
import {
  type DestinationLatency,
  type LatencySummary,
  slowestDestinations,
  summarizeLatency,
} from "../job/latency.js";
import {
  actionableStatuses,
  COUNT_CAP,
  type Operation,
  type OperationKind,
  type RetryOverrides,
} from "../job/operations.js";
import {
  applyQueueSettings,
  type QueueSettings,
  type QueueSettingsInput,
  validateQueueName,
} from "../job/queues.js";
import type { Job, JobStatus } from "../job/types.js";
import { type JobLimits, LIMITS, validateJobId } from "../job/validate.js";
import type { JobStore, QueueCounts } from "../store/job-store.js";
import type { QueueDirectory } from "./queue-directory.js";
import { auditOf, ownerScope } from "./scope.js";

/** What a dry run of a bulk action answers: how many jobs it would act on. */
export interface BulkEstimate {
  count: number;
  /** More than `count` match (the count stopped at its cap). */
  capped: boolean;
}

/** A queue's figures: counts, the job next in line, calls in flight, recent throughput. */
export interface QueueStats {
  queue: string;
  counts: Record<JobStatus, number>;
  /** When the job next in line (the head of the claim order) became due; null when none waits. */
  oldestQueuedAt: number | null;
  /** Calls in flight on every node. */
  running: number;
  /** Jobs that ended per minute, oldest first, the current minute last. */
  perMinute: { minute: number; succeeded: number; failed: number; canceled: number }[];
  /** Succeeded ÷ (succeeded + failed) over the window; null when none ended. */
  successRate: number | null;
  /** How long the calls of the latest jobs that ended in the window took; null when none. */
  latency: LatencySummary | null;
  /** The destinations whose calls took longest in the window, slowest first. */
  slowestDestinations: DestinationLatency[];
}

/** Jobs of each ending status whose durations make the latency figures (the latest ones). */
const LATENCY_SAMPLES = 5_000;
/** Destinations listed as the slowest, and the calls one needs to be listed. */
const SLOWEST_DESTINATIONS = 5;
const SLOWEST_MIN_CALLS = 3;

export interface OperatorLimits extends Pick<JobLimits, "maxTtlMs" | "maxTags"> {
  maxPageSize: number;
}

/**
 * The operator actions: retry and delete one job, bulk actions over a filter (a dry run counts,
 * a real run becomes an operation the maintenance leader works through in batches), counts and
 * statistics, and the queues with their settings. Submitters act on their own jobs, admins on all;
 * every change is audited (a bulk action once, with its filter and count, when it ends).
 */
export interface Operator {
  retry(jobId: string, overrides: RetryOverrides | null, caller: Caller): Promise<Job>;
  /** Deletes a finished job with its attempts and result. */
  delete(jobId: string, caller: Caller): Promise<void>;
  /** Counts the jobs a bulk action would act on (its dry run). */
  estimate(kind: OperationKind, filter: JobFilterInput, caller: Caller): Promise<BulkEstimate>;
  /** Starts a bulk action; it runs in the background. */
  startBulk(
    kind: OperationKind,
    filter: JobFilterInput,
    overrides: RetryOverrides | null,
    caller: Caller,
  ): Promise<Operation>;
  getOperation(id: string, caller: Caller): Promise<Operation>;
  listOperations(caller: Caller, limit: number): Promise<Operation[]>;
  cancelOperation(id: string, caller: Caller): Promise<Operation>;
  /** Jobs by status in all, and by queue. */
  counts(): Promise<{ total: Record<JobStatus, number>; queues: QueueCounts[] }>;
  /** Active jobs counted by destination host or tag (a bounded count; see the store). */
  groups(
    by: "host" | "tag",
    queue: string | undefined,
    limit: number,
  ): Promise<{ groups: { key: string; queued: number; running: number }[]; capped: boolean }>;
  queueStats(name: string, windowMinutes: number): Promise<QueueStats>;
  createQueue(name: string, input: QueueSettingsInput, caller: Caller): Promise<QueueSettings>;
  updateQueue(name: string, input: QueueSettingsInput, caller: Caller): Promise<QueueSettings>;
  setPaused(name: string, paused: boolean, caller: Caller): Promise<QueueSettings>;
  getQueue(name: string): Promise<QueueSettings>;
  listQueues(): Promise<QueueSettings[]>;
  deleteQueue(name: string, caller: Caller): Promise<void>;
}

/** Ids of operations: `op_` and a ULID. */
const nextOperationId = monotonicFactory();

/** Largest-group limit for `groups`. */
const GROUP_SCAN_CAP = 100_000;

export function createOperator(options: {
  store: JobStore;
  clock: Clock;
  queues: QueueDirectory;
  limits: OperatorLimits;
}): Operator {
  const { store, clock, limits } = options;

  /** Records a refused action; the error then goes on to the caller. */
  async function refused(caller: Caller, action: string, err: unknown, jobId: string | null) {
    const outcome: AuditOutcome | null =
      err instanceof InvalidArgumentError
        ? "invalid_argument"
        : err instanceof JobNotFoundError ||
            err instanceof QueueNotFoundError ||
            err instanceof OperationNotFoundError
          ? "not_found"
          : err instanceof JobStateError
            ? "failed_precondition"
            : null;
    if (outcome === null) return;
    const detail = err instanceof InvalidArgumentError ? err.field : null;
    await store.auditInsert([auditOf(caller, action, outcome, jobId, clock.now(), detail)]);
  }

  async function audited<T>(
    caller: Caller,
    action: string,
    jobId: string | null,
    fn: () => Promise<T>,
  ): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      await refused(caller, action, err, jobId);
      throw err;
    }
  }

  /**
   * Records a refusal of bad input. The store records the other outcomes of an action on one job
   * (done, not found, not in a state for it) itself, in the action's transaction: recording them
   * here too would write two rows.
   */
  async function invalidInput<T>(
    caller: Caller,
    action: string,
    jobId: string | null,
    fn: () => T | Promise<T>,
  ): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof InvalidArgumentError) await refused(caller, action, err, jobId);
      throw err;
    }
  }

  function validateOverrides(overrides: RetryOverrides | null): RetryOverrides | null {
    if (overrides === null) return null;
    const out: RetryOverrides = {};
    if (overrides.maxAttempts !== undefined) {
      const n = overrides.maxAttempts;
      if (!Number.isInteger(n) || n < 1 || n > LIMITS.maxAttemptsMax * 10) {
        throw new InvalidArgumentError(
          "max_attempts",
          `must be a whole number from 1 to ${LIMITS.maxAttemptsMax * 10}`,
        );
      }
      out.maxAttempts = n;
    }
    if (overrides.scheduledAt !== undefined) {
      if (!Number.isFinite(overrides.scheduledAt)) {
        throw new InvalidArgumentError("scheduled_at", "is not a valid time");
      }
      if (overrides.scheduledAt > clock.now() + LIMITS.scheduleAheadMaxMs) {
        throw new InvalidArgumentError("scheduled_at", "is more than a year ahead");
      }
      out.scheduledAt = Math.round(overrides.scheduledAt);
    }
    return out;
  }

  function visibleOperation(op: Operation | null, caller: Caller): op is Operation {
    return op !== null && (seesAllJobs(caller.principal) || op.owner === caller.principal?.name);
  }

  async function mustGetQueue(name: string): Promise<QueueSettings> {
    const queue = await store.queueGet({ name: validateQueueName(name, "name") });
    if (!queue) throw new QueueNotFoundError(name);
    return queue;
  }

  async function changeQueue(
    action: string,
    name: string,
    caller: Caller,
    change: (q: QueueSettings) => Omit<QueueSettings, "createdAt" | "updatedAt">,
  ): Promise<QueueSettings> {
    return audited(caller, action, null, async () => {
      const current = await mustGetQueue(name);
      if (!(await store.queueUpdate(change(current)))) throw new QueueNotFoundError(name);
      await store.auditInsert([auditOf(caller, action, "ok", null, clock.now(), `queue ${name}`)]);
      await options.queues.refresh();
      return mustGetQueue(name);
    });
  }

  return {
    async retry(jobId, overrides, caller) {
      const id = await invalidInput(caller, "RetryJob", null, () => validateJobId(jobId));
      const checked = await invalidInput(caller, "RetryJob", id, () =>
        validateOverrides(overrides),
      );
      const now = clock.now();
      // An override the job cannot take, or a queue deleted since, is refused inside the store's
      // transaction (rolled back with its audit row).
      const res = await invalidInput(caller, "RetryJob", id, async () => {
        try {
          return await store.jobRetry({
            id,
            ownedBy: ownerScope(caller),
            overrides: checked,
            audit: (outcome) => auditOf(caller, "RetryJob", outcome, id, now),
          });
        } catch (err) {
          if (!(err instanceof QueueNotFoundError)) throw err;
          const refusal = new JobStateError(
            `job ${id} belongs to queue ${JSON.stringify(err.queue)}, which no longer exists; create the queue again to retry it`,
          );
          await refused(caller, "RetryJob", refusal, id);
          throw refusal;
        }
      });
      switch (res.kind) {
        case "not-found":
          throw new JobNotFoundError(id);
        case "not-retryable":
          throw new JobStateError(
            `job ${id} is ${res.job.status}; only failed or canceled jobs can be retried`,
          );
        case "retried":
          return res.job;
      }
    },

    async delete(jobId, caller) {
      const id = await invalidInput(caller, "DeleteJob", null, () => validateJobId(jobId));
      const now = clock.now();
      const res = await store.jobDelete({
        id,
        ownedBy: ownerScope(caller),
        audit: (outcome) => auditOf(caller, "DeleteJob", outcome, id, now),
      });
      if (res.kind === "not-found") throw new JobNotFoundError(id);
      if (res.kind === "not-finished") {
        throw new JobStateError(
          `job ${id} is ${res.job.status}; only finished jobs can be deleted (cancel it first)`,
        );
      }
    },

    async estimate(kind, input, caller) {
      const filter = validateFilter(input, limits);
      const applicable = actionableStatuses(kind);
      const statuses = filter.statuses
        ? filter.statuses.filter((s) => applicable.includes(s))
        : applicable;
      if (statuses.length === 0) return { count: 0, capped: false };
      return store.jobCount({
        filter: { ...filter, statuses },
        ownedBy: ownerScope(caller),
        cap: COUNT_CAP,
      });
    },

    async startBulk(kind, input, overrides, caller) {
      const action = BULK_ACTIONS[kind];
      return audited(caller, action, null, async () => {
        const filter = validateFilter(input, limits);
        const checked = kind === "retry" ? validateOverrides(overrides) : null;
        const estimate = await this.estimate(kind, input, caller);
        const now = clock.now();
        const op: Operation = {
          id: `op_${nextOperationId(now)}`,
          kind,
          filter,
          overrides: checked,
          owner: seesAllJobs(caller.principal) ? null : (caller.principal?.name ?? ""),
          principal: caller.principal?.name ?? null,
          state: "running",
          estimate: estimate.count,
          estimateCapped: estimate.capped,
          examined: 0,
          affected: 0,
          // Jobs created from now on are not this operation's: their ids sort above this one.
          upperId: `j_${nextOperationId(now).slice(0, 10)}~`,
          cursor: null,
          error: null,
          createdAt: now,
          updatedAt: now,
          finishedAt: null,
        };
        await store.operationCreate(op);
        return op;
      });
    },

    async getOperation(id, caller) {
      const op = await store.operationGet({ id: validateOperationId(id) });
      if (!visibleOperation(op, caller)) throw new OperationNotFoundError(id);
      return op;
    },

    listOperations(caller, limit) {
      return store.operationList({
        owner: seesAllJobs(caller.principal) ? undefined : (caller.principal?.name ?? ""),
        limit,
      });
    },

    async cancelOperation(id, caller) {
      const op = await audited(caller, "CancelOperation", null, async () => {
        const found = await this.getOperation(id, caller);
        if (found.state !== "running") {
          throw new JobStateError(`operation ${id} already ended as ${found.state}`);
        }
        return found;
      });
      if (await store.operationCancel({ id })) {
        const ended = await store.operationGet({ id });
        // The operation's one row: its filter and what it did, as when it ends by itself.
        await store.auditInsert([
          auditOf(
            caller,
            BULK_ACTIONS[op.kind],
            "ok",
            null,
            clock.now(),
            operationDetail(ended ?? op),
          ),
        ]);
        return ended ?? op;
      }
      // It ended on its own meanwhile.
      return (await store.operationGet({ id })) ?? op;
    },

    async counts() {
      const queues = await store.statsCounts();
      const total: Record<JobStatus, number> = {
        queued: 0,
        running: 0,
        succeeded: 0,
        failed: 0,
        canceled: 0,
      };
      for (const q of queues) {
        for (const [status, n] of Object.entries(q.counts)) total[status as JobStatus] += n;
      }
      return { total, queues };
    },

    groups(by, queue, limit) {
      return store.statsGroups({
        by,
        queue: queue === undefined ? undefined : validateQueueName(queue),
        limit,
        scanCap: GROUP_SCAN_CAP,
      });
    },

    async queueStats(name, windowMinutes) {
      const queue = await mustGetQueue(name);
      const minuteNow = Math.floor(clock.now() / 60_000);
      const since = minuteNow - windowMinutes + 1;
      const [counts, [activity], rows, durations] = await Promise.all([
        store.statsCounts(),
        store.statsActivity({ queue: queue.name }),
        store.statsThroughput({ sinceMinute: since, queue: queue.name }),
        store.statsDurations({
          sinceMs: since * 60_000,
          queue: queue.name,
          limit: LATENCY_SAMPLES,
        }),
      ]);
      const perMinute = Array.from({ length: windowMinutes }, (_, i) => ({
        minute: since + i,
        succeeded: 0,
        failed: 0,
        canceled: 0,
      }));
      for (const row of rows) {
        const slot = perMinute[row.minute - since];
        if (slot) slot[row.status] += row.count;
      }
      const ok = perMinute.reduce((n, m) => n + m.succeeded, 0);
      const bad = perMinute.reduce((n, m) => n + m.failed, 0);
      return {
        queue: queue.name,
        counts: counts.find((c) => c.queue === queue.name)?.counts ?? {
          queued: 0,
          running: 0,
          succeeded: 0,
          failed: 0,
          canceled: 0,
        },
        oldestQueuedAt: activity?.oldestQueuedAt ?? null,
        running: activity?.running ?? 0,
        perMinute,
        successRate: ok + bad === 0 ? null : ok / (ok + bad),
        latency: summarizeLatency(durations.map((d) => d.durationMs)),
        slowestDestinations: slowestDestinations(durations, {
          limit: SLOWEST_DESTINATIONS,
          minSamples: SLOWEST_MIN_CALLS,
        }),
      };
    },

    async createQueue(name, input, caller) {
      return audited(caller, "CreateQueue", null, async () => {
        const queueName = validateQueueName(name, "name");
        if (!name) throw new InvalidArgumentError("name", "is required");
        const settings = applyQueueSettings(
          {
            name: queueName,
            concurrency: null,
            rate: null,
            maxAttempts: null,
            backoffStrategy: null,
            backoffBaseMs: null,
            ttlMs: null,
            paused: false,
          },
          input,
          limits,
        );
        if (!(await store.queueCreate(settings))) {
          throw new QueueExistsError(queueName);
        }
        await store.auditInsert([
          auditOf(caller, "CreateQueue", "ok", null, clock.now(), `queue ${queueName}`),
        ]);
        await options.queues.refresh();
        return mustGetQueue(queueName);
      });
    },

    updateQueue(name, input, caller) {
      return changeQueue("UpdateQueue", name, caller, (q) => ({
        ...applyQueueSettings(q, input, limits),
        paused: q.paused,
      }));
    },

    setPaused(name, paused, caller) {
      return changeQueue(paused ? "PauseQueue" : "ResumeQueue", name, caller, (q) => ({
        ...q,
        paused,
      }));
    },

    getQueue: mustGetQueue,

    listQueues: () => store.queueList(),

    async deleteQueue(name, caller) {
      await audited(caller, "DeleteQueue", null, async () => {
        const queueName = validateQueueName(name, "name");
        const res = await store.queueDelete({ name: queueName });
        if (res === "not-found") throw new QueueNotFoundError(queueName);
        if (res === "not-empty") {
          throw new JobStateError(
            queueName === "default"
              ? "the default queue cannot be deleted"
              : `queue ${queueName} still has queued or running jobs`,
          );
        }
        await store.auditInsert([
          auditOf(caller, "DeleteQueue", "ok", null, clock.now(), `queue ${queueName}`),
        ]);
        await options.queues.refresh();
      });
    },
  };
}

/** The RPC each bulk action is called by, for the audit log. */
export const BULK_ACTIONS: Record<OperationKind, string> = {
  cancel: "CancelJobs",
  retry: "RetryJobs",
  delete: "DeleteJobs",
};

/** The audit detail of an ended operation: its id, filter, state and counts. */
export function operationDetail(op: Operation): string {
  return JSON.stringify({
    operation_id: op.id,
    state: op.state,
    filter: op.filter,
    affected: op.affected,
    examined: op.examined,
  });
}

function validateOperationId(id: string): string {
  if (!/^op_[0-9A-Z]{26}$/.test(id)) {
    throw new InvalidArgumentError(
      "operation_id",
      "is not an operation id (op_ and 26 characters)",
    );
  }
  return id;
}
