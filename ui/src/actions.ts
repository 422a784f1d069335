import { type Job, JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "./api/client.js";
import { isTerminal } from "./format.js";

/**
 * An action an operator takes on one job. The job page shows those the caller's role may take
 * and that apply to the job now; readers see none.
 */
export interface JobAction {
  id: string;
  label: string;
  minRole: "submitter" | "admin";
  appliesTo(job: Job): boolean;
  /** Asked before running it; null: runs at once. */
  confirm: ((job: Job) => string) | null;
  /** Runs it; resolves with the job as it is after the action (undefined once deleted). */
  run(api: Api, job: Job): Promise<Job | undefined>;
  /** Whether it is the dangerous kind (styled so). */
  destructive: boolean;
}

const retryable = (job: Job) =>
  job.status === JobStatus.FAILED || job.status === JobStatus.CANCELED;

export const JOB_ACTIONS: JobAction[] = [
  {
    id: "cancel",
    label: "Cancel job",
    minRole: "submitter",
    appliesTo: (job) => !isTerminal(job.status),
    confirm: (job) =>
      `Cancel ${job.jobId}? A queued job will not run; a running one has its call aborted.`,
    run: async (api, job) => (await api.cancelJob({ jobId: job.jobId })).job,
    destructive: true,
  },
  {
    id: "retry",
    label: "Retry job",
    minRole: "submitter",
    appliesTo: retryable,
    confirm: null,
    run: async (api, job) => (await api.retryJob({ jobId: job.jobId })).job,
    destructive: false,
  },
  {
    id: "delete",
    label: "Delete job",
    minRole: "submitter",
    appliesTo: (job) => isTerminal(job.status),
    confirm: (job) => `Delete ${job.jobId} with its attempts and result? This cannot be undone.`,
    run: async (api, job) => {
      await api.deleteJob({ jobId: job.jobId });
      return undefined;
    },
    destructive: true,
  },
];

/** A bulk action over a filter: the server counts first (dry run), then runs an operation. */
export type BulkKind = "cancel" | "retry" | "delete";

export const BULK_ACTIONS: { kind: BulkKind; label: string; applies: string }[] = [
  { kind: "cancel", label: "Cancel", applies: "queued or running" },
  { kind: "retry", label: "Retry", applies: "failed or canceled" },
  { kind: "delete", label: "Delete", applies: "finished" },
];
