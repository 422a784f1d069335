import { InvalidArgumentError } from "./errors.js";
import type { JobFilter } from "./filter.js";
import { isTerminal, type JobStatus } from "./types.js";

/** What a bulk action does to each job it matches. */
export const OPERATION_KINDS = ["cancel", "retry", "delete"] as const;
export type OperationKind = (typeof OPERATION_KINDS)[number];

export const OPERATION_STATES = ["running", "succeeded", "canceled", "failed"] as const;
export type OperationState = (typeof OPERATION_STATES)[number];

/** Overrides a retry applies (one job or many). */
export interface RetryOverrides {
  /** The new cap on `attempt`: it must exceed the attempts already made. */
  maxAttempts?: number;
  /** Run no earlier than this (epoch ms); default now. */
  scheduledAt?: number;
}

/** A bulk action over a filter, worked through in batches, newest job first. */
export interface Operation {
  id: string;
  kind: OperationKind;
  filter: JobFilter;
  overrides: RetryOverrides | null;
  /** Only this owner's jobs; null: every job (an admin's operation). */
  owner: string | null;
  /** Who started it. */
  principal: string | null;
  state: OperationState;
  /** Matching jobs counted when it started, up to a cap. */
  estimate: number;
  estimateCapped: boolean;
  /** Jobs looked at so far, and those the action changed. */
  examined: number;
  affected: number;
  /** Jobs with ids above this were created after the start and are left alone. */
  upperId: string;
  /** The last job id examined; null before the first batch. */
  cursor: string | null;
  error: string | null;
  createdAt: number;
  updatedAt: number;
  finishedAt: number | null;
}

/** Whether an action applies to a job in `status` (others are skipped by bulk actions). */
export function actionable(kind: OperationKind, status: JobStatus): boolean {
  switch (kind) {
    case "cancel":
      return status === "queued" || status === "running";
    case "retry":
      return status === "failed" || status === "canceled";
    case "delete":
      return isTerminal(status);
  }
}

/** The statuses an action applies to: a bulk action's filter is narrowed to them. */
export function actionableStatuses(kind: OperationKind): JobStatus[] {
  return (["queued", "running", "succeeded", "failed", "canceled"] as const).filter((s) =>
    actionable(kind, s),
  );
}

/**
 * What a retry makes of a failed or canceled job: it runs again on the same id, attempts keep
 * counting, and its cap rises to allow at least one more attempt (River's rule): to the override
 * if given (which must exceed the attempts made), else by one when it had none left.
 */
export function retryPlan(
  job: { attempt: number; maxAttempts: number },
  overrides: RetryOverrides | null,
  now: number,
): { maxAttempts: number; runAt: number } {
  let maxAttempts = job.maxAttempts;
  if (overrides?.maxAttempts !== undefined) {
    if (overrides.maxAttempts <= job.attempt) {
      throw new InvalidArgumentError(
        "max_attempts",
        `must exceed the ${job.attempt} attempts the job has made`,
      );
    }
    maxAttempts = overrides.maxAttempts;
  } else if (job.attempt >= job.maxAttempts) {
    maxAttempts = job.attempt + 1;
  }
  const runAt = Math.max(overrides?.scheduledAt ?? now, now);
  return { maxAttempts, runAt };
}

/** Matching jobs a dry run counts exactly; beyond it, the answer is "more than this". */
export const COUNT_CAP = 10_000;
/** Jobs an operation acts on per transaction (short locks), and jobs it looks at per step. */
export const OPERATION_BATCH = 500;
export const OPERATION_SCAN = 5_000;
