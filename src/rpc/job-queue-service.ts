import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { InvalidArgumentError } from "../job/errors.js";
import type { JobQueue } from "../queue/job-queue.js";
import {
  attemptToPb,
  enqueueInputFromPb,
  jobToPb,
  resultToPb,
  statusesFromPb,
  statusToPb,
} from "./convert.js";
import { toConnectError } from "./errors.js";

export type JobQueueServiceImpl = ServiceImpl<typeof JobQueueService>;

/**
 * The JobQueueService handlers, shared by every protocol (the Connect router and the REST routes
 * call the same functions, so they cannot disagree). Each converts the request, calls the queue
 * and converts the reply; errors leave through {@link toConnectError}.
 */
export function createJobQueueServiceImpl(queue: JobQueue, logger: Logger): JobQueueServiceImpl {
  return {
    enqueueJob: unary(logger, async (req) => {
      const { job } = await queue.enqueue(enqueueInputFromPb(req));
      return { jobId: job.id, status: statusToPb(job.status) };
    }),

    enqueueJobs: unary(logger, async (req) => {
      const results = await queue.enqueueMany(req.jobs.map(enqueueInputFromPb));
      return {
        jobs: results.map(({ job }) => ({ jobId: job.id, status: statusToPb(job.status) })),
      };
    }),

    getJob: unary(logger, async (req) => ({ job: jobToPb(await queue.get(req.jobId)) })),

    getJobResult: unary(logger, async (req) => {
      const { job, result } = await queue.getResult(req.jobId);
      return resultToPb(job, result);
    }),

    cancelJob: unary(logger, async (req) => ({ job: jobToPb(await queue.cancel(req.jobId)) })),

    listJobs: unary(logger, async (req) => {
      const statuses = statusesFromPb(req.status);
      if (typeof statuses === "string") {
        throw new InvalidArgumentError("status", `unknown status ${statuses}`);
      }
      const { jobs, nextPageToken } = await queue.list({
        statuses,
        tags: req.tag,
        createdAfter: req.createdAfter ? timestampMs(req.createdAfter) : undefined,
        createdBefore: req.createdBefore ? timestampMs(req.createdBefore) : undefined,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { jobs: jobs.map(jobToPb), nextPageToken: nextPageToken ?? undefined };
    }),

    listJobAttempts: unary(logger, async (req) => {
      const { job, attempts } = await queue.listAttempts(req.jobId);
      return { jobId: job.id, attempts: attempts.map(attemptToPb) };
    }),

    async *watchJob(req, ctx) {
      try {
        for await (const job of queue.watch(req.jobId, ctx.signal)) yield { job: jobToPb(job) };
      } catch (err) {
        throw toConnectError(err, logger);
      }
    },
  };
}

function unary<I, O>(
  logger: Logger,
  fn: (req: I, ctx: HandlerContext) => Promise<O>,
): (req: I, ctx: HandlerContext) => Promise<O> {
  return async (req, ctx) => {
    try {
      return await fn(req, ctx);
    } catch (err) {
      throw toConnectError(err, logger);
    }
  };
}
