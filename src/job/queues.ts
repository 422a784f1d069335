import { InvalidArgumentError } from "./errors.js";
import { BACKOFF_STRATEGIES, type BackoffStrategy } from "./types.js";
import { type JobLimits, LIMITS } from "./validate.js";

export { DEFAULT_QUEUE, validateQueueName } from "./validate.js";

/**
 * A named queue's settings. Null takes the node's setting (`JOBQUEUE_*`): the `default` queue is
 * all nulls unless changed. Concurrency is per node (its share of the node's workers); the rate is
 * for all nodes together.
 */
export interface QueueSettings {
  name: string;
  /** Calls in flight at most for this queue on each node. */
  concurrency: number | null;
  /** Calls spaced `intervalMs` apart across all nodes, `burst` of them back to back. */
  rate: { intervalMs: number; burst: number } | null;
  /** Defaults for jobs submitted to the queue without their own. */
  maxAttempts: number | null;
  backoffStrategy: BackoffStrategy | null;
  backoffBaseMs: number | null;
  ttlMs: number | null;
  /** A paused queue keeps accepting jobs and starts none; calls in flight finish. */
  paused: boolean;
  createdAt: number;
  updatedAt: number;
}

/** What a client may set on a queue; absent leaves a setting as it is (on update) or null. */
export interface QueueSettingsInput {
  concurrency?: number | null;
  /** Calls per second across all nodes; 0 or null: no rate. */
  ratePerSecond?: number | null;
  burst?: number | null;
  maxAttempts?: number | null;
  backoffStrategy?: string | null;
  backoffSeconds?: number | null;
  ttlSeconds?: number | null;
}

/**
 * Applies `input` to `current` (a new queue: all nulls), checking each value; throws
 * {@link InvalidArgumentError} naming the field.
 */
export function applyQueueSettings(
  current: Omit<QueueSettings, "createdAt" | "updatedAt">,
  input: QueueSettingsInput,
  limits: Pick<JobLimits, "maxTtlMs">,
): Omit<QueueSettings, "createdAt" | "updatedAt"> {
  const next = { ...current };
  if (input.concurrency !== undefined) {
    next.concurrency = nullableInt("concurrency", input.concurrency, 1, 10_000);
  }
  if (input.ratePerSecond !== undefined || input.burst !== undefined) {
    const perSecond =
      input.ratePerSecond === undefined
        ? current.rate === null
          ? null
          : 1000 / current.rate.intervalMs
        : input.ratePerSecond;
    if (perSecond === null || perSecond === 0) {
      if (input.burst !== undefined && input.burst !== null && input.ratePerSecond === undefined) {
        throw new InvalidArgumentError("burst", "needs a rate_per_second");
      }
      next.rate = null;
    } else {
      if (!Number.isFinite(perSecond) || perSecond < 0.001 || perSecond > 1_000_000) {
        throw new InvalidArgumentError("rate_per_second", "must be between 0.001 and 1000000");
      }
      const burst =
        input.burst === undefined || input.burst === null
          ? (current.rate?.burst ?? 1)
          : nullableInt("burst", input.burst, 1, 100_000)!;
      next.rate = { intervalMs: 1000 / perSecond, burst };
    }
  }
  if (input.maxAttempts !== undefined) {
    next.maxAttempts = nullableInt("max_attempts", input.maxAttempts, 1, LIMITS.maxAttemptsMax);
  }
  if (input.backoffStrategy !== undefined) {
    const s = input.backoffStrategy;
    if (s === null || s === "") next.backoffStrategy = null;
    else if ((BACKOFF_STRATEGIES as readonly string[]).includes(s.toLowerCase())) {
      next.backoffStrategy = s.toLowerCase() as BackoffStrategy;
    } else {
      throw new InvalidArgumentError(
        "backoff_strategy",
        `unknown strategy ${JSON.stringify(s)}; use one of ${BACKOFF_STRATEGIES.join(", ")}`,
      );
    }
  }
  if (input.backoffSeconds !== undefined) {
    const v = input.backoffSeconds;
    if (v === null) next.backoffBaseMs = null;
    else if (!Number.isFinite(v) || v < 0 || v > LIMITS.backoffSecondsMax) {
      throw new InvalidArgumentError(
        "backoff_seconds",
        `must be between 0 and ${LIMITS.backoffSecondsMax}`,
      );
    } else next.backoffBaseMs = Math.round(v * 1000);
  }
  if (input.ttlSeconds !== undefined) {
    const v = nullableInt("ttl_seconds", input.ttlSeconds, 1, limits.maxTtlMs / 1000);
    next.ttlMs = v === null ? null : v * 1000;
  }
  return next;
}

/** The job defaults of a queue: its own settings, else the node's. */
export function queueJobLimits<L extends JobLimits>(limits: L, queue: QueueSettings | null): L {
  if (queue === null) return limits;
  return {
    ...limits,
    defaultMaxAttempts: queue.maxAttempts ?? limits.defaultMaxAttempts,
    defaultBackoffStrategy: queue.backoffStrategy ?? limits.defaultBackoffStrategy,
    defaultBackoffBaseMs: queue.backoffBaseMs ?? limits.defaultBackoffBaseMs,
    defaultTtlMs: queue.ttlMs ?? limits.defaultTtlMs,
  };
}

function nullableInt(field: string, v: number | null, min: number, max: number): number | null {
  if (v === null) return null;
  if (!Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(field, `must be a whole number from ${min} to ${max}`);
  }
  return v;
}
