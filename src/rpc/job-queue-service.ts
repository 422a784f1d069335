import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { InvalidArgumentError } from "../job/errors.js";
import type { JobQueue } from "../queue/job-queue.js";
import { callerOf } from "./auth.js";
import {
  attemptToPb,
  auditToPb,
  enqueueInputFromPb,
  jobToPb,
  nodeToPb,
  resultToPb,
  statusesFromPb,
  statusToPb,
} from "./convert.js";

export type JobQueueServiceImpl = ServiceImpl<typeof JobQueueService>;

/**
 * The JobQueueService handlers, shared by every protocol (the Connect router and the REST routes
 * call the same functions through the same interceptors, so they cannot disagree). Each
 * converts the request, calls the queue and converts the reply; the errors it throws are domain
 * errors, given their codes by the pipeline's errors stage.
 */
export function createJobQueueServiceImpl(queue: JobQueue): JobQueueServiceImpl {
  return {
    enqueueJob: async (req, ctx) => {
      const { job } = await queue.enqueue(enqueueInputFromPb(req), callerOf(ctx.values));
      return { jobId: job.id, status: statusToPb(job.status) };
    },

    enqueueJobs: async (req, ctx) => {
      const results = await queue.enqueueMany(
        req.jobs.map(enqueueInputFromPb),
        callerOf(ctx.values),
      );
      return {
        jobs: results.map(({ job }) => ({ jobId: job.id, status: statusToPb(job.status) })),
      };
    },

    getJob: async (req, ctx) => ({
      job: jobToPb(await queue.get(req.jobId, callerOf(ctx.values))),
    }),

    getJobResult: async (req, ctx) => {
      const { job, result } = await queue.getResult(req.jobId, callerOf(ctx.values));
      return resultToPb(job, result);
    },

    cancelJob: async (req, ctx) => ({
      job: jobToPb(await queue.cancel(req.jobId, callerOf(ctx.values))),
    }),

    listJobs: async (req, ctx) => {
      const statuses = statusesFromPb(req.status);
      if (typeof statuses === "string") {
        throw new InvalidArgumentError("status", `unknown status ${statuses}`);
      }
      const { jobs, nextPageToken } = await queue.list(
        {
          statuses,
          tags: req.tag,
          createdAfter: req.createdAfter ? timestampMs(req.createdAfter) : undefined,
          createdBefore: req.createdBefore ? timestampMs(req.createdBefore) : undefined,
          pageSize: req.pageSize,
          pageToken: req.pageToken,
        },
        callerOf(ctx.values),
      );
      return { jobs: jobs.map(jobToPb), nextPageToken: nextPageToken ?? undefined };
    },

    listJobAttempts: async (req, ctx) => {
      const { job, attempts } = await queue.listAttempts(req.jobId, callerOf(ctx.values));
      return { jobId: job.id, attempts: attempts.map(attemptToPb) };
    },

    async *watchJob(req, ctx) {
      for await (const job of queue.watch(req.jobId, callerOf(ctx.values), ctx.signal)) {
        yield { job: jobToPb(job) };
      }
    },

    listNodes: async () => ({
      nodes: (await queue.listNodes()).map(nodeToPb),
    }),

    listAuditEvents: async (req) => {
      const { events, nextPageToken } = await queue.listAudit({
        principal: req.principal,
        action: req.action,
        jobId: req.jobId,
        outcome: req.outcome,
        since: req.since ? timestampMs(req.since) : undefined,
        until: req.until ? timestampMs(req.until) : undefined,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { events: events.map(auditToPb), nextPageToken: nextPageToken ?? undefined };
    },
  };
}
