import type { Job } from "../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "./api/client.js";
import { isTerminal } from "./format.js";

/**
 * An action an operator takes on one job. The job page shows those the caller's role may take
 * and that apply to the job now; readers see none. Retry and delete join this list with the
 * operator API (issue 10); bulk actions over a filter get a list of their own, with the server's
 * count preview before they run.
 */
export interface JobAction {
  id: string;
  label: string;
  minRole: "submitter" | "admin";
  appliesTo(job: Job): boolean;
  /** Asked before running it; null: runs at once. */
  confirm: ((job: Job) => string) | null;
  /** Runs it; resolves with the job as it is after the action. */
  run(api: Api, job: Job): Promise<Job | undefined>;
  /** Whether it is the dangerous kind (styled so). */
  destructive: boolean;
}

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
  // { id: "retry", … api.retryJob } and { id: "delete", … api.deleteJob }: issue 10.
];
