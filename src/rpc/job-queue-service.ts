import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { JobCountGrouping } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import type { Caller } from "../auth/principal.js";
import { InvalidArgumentError } from "../job/errors.js";
import type { JobFilterInput } from "../job/filter.js";
import type { OperationKind, RetryOverrides } from "../job/operations.js";
import type { JobQueue, ListInput } from "../queue/job-queue.js";
import type { Operator } from "../queue/operator.js";
import { pageSizeOf } from "../queue/scope.js";
import { callerOf } from "./auth.js";
import {
  attemptToPb,
  auditToPb,
  callerToPb,
  countsToPb,
  enqueueInputFromPb,
  eventToPb,
  filterFromPb,
  jobToPb,
  nodeToPb,
  operationToPb,
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
export function createJobQueueServiceImpl(
  queue: JobQueue,
  operator: Operator,
  maxPageSize: number,
): JobQueueServiceImpl {
  /** A dry run counts; a real run starts the operation. */
  async function bulk(
    kind: OperationKind,
    req: { filter?: Parameters<typeof filterFromPb>[0]; dryRun: boolean },
    overrides: RetryOverrides | null,
    caller: Caller,
  ) {
    const filter: JobFilterInput = req.filter ? filterFromPb(req.filter) : {};
    if (req.dryRun) {
      const { count, capped } = await operator.estimate(kind, filter, caller);
      return { count: BigInt(count), countCapped: capped };
    }
    const op = await operator.startBulk(kind, filter, overrides, caller);
    return {
      count: BigInt(op.estimate),
      countCapped: op.estimateCapped,
      operation: operationToPb(op),
    };
  }

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
      // Keys added to the filter, not spread with it (see storedJob in src/store/rows.ts).
      const input: ListInput = filterFromPb(req);
      input.pageSize = req.pageSize;
      input.pageToken = req.pageToken;
      const { jobs, nextPageToken, watchCursor } = await queue.list(input, callerOf(ctx.values));
      return {
        jobs: jobs.map(jobToPb),
        nextPageToken: nextPageToken ?? undefined,
        watchCursor: watchCursor ?? undefined,
      };
    },

    retryJob: async (req, ctx) => ({
      job: jobToPb(
        await operator.retry(
          req.jobId,
          {
            maxAttempts: req.maxAttempts,
            scheduledAt: req.scheduledAt ? timestampMs(req.scheduledAt) : undefined,
          },
          callerOf(ctx.values),
        ),
      ),
    }),

    deleteJob: async (req, ctx) => {
      await operator.delete(req.jobId, callerOf(ctx.values));
      return {};
    },

    cancelJobs: (req, ctx) => bulk("cancel", req, null, callerOf(ctx.values)),

    retryJobs: (req, ctx) =>
      bulk(
        "retry",
        req,
        {
          maxAttempts: req.maxAttempts,
          scheduledAt: req.scheduledAt ? timestampMs(req.scheduledAt) : undefined,
        },
        callerOf(ctx.values),
      ),

    deleteJobs: (req, ctx) => bulk("delete", req, null, callerOf(ctx.values)),

    getOperation: async (req, ctx) => ({
      operation: operationToPb(await operator.getOperation(req.operationId, callerOf(ctx.values))),
    }),

    listOperations: async (req, ctx) => ({
      operations: (
        await operator.listOperations(callerOf(ctx.values), pageSizeOf(req.pageSize, maxPageSize))
      ).map(operationToPb),
    }),

    cancelOperation: async (req, ctx) => ({
      operation: operationToPb(
        await operator.cancelOperation(req.operationId, callerOf(ctx.values)),
      ),
    }),

    getJobCounts: async (req) => {
      const { total, queues } = await operator.counts();
      const by =
        req.groupBy === JobCountGrouping.HOST
          ? "host"
          : req.groupBy === JobCountGrouping.TAG
            ? "tag"
            : null;
      if (by === null && req.groupBy !== JobCountGrouping.UNSPECIFIED) {
        throw new InvalidArgumentError("group_by", `unknown grouping ${req.groupBy}`);
      }
      const grouped = by
        ? await operator.groups(by, req.queue || undefined, pageSizeOf(req.limit || 20, 1000))
        : null;
      return {
        total: countsToPb(total),
        queues: queues.map((q) => ({ queue: q.queue, counts: countsToPb(q.counts) })),
        groups: (grouped?.groups ?? []).map((g) => ({
          key: g.key,
          queued: BigInt(g.queued),
          running: BigInt(g.running),
        })),
        groupsCapped: grouped?.capped ?? false,
      };
    },

    listJobAttempts: async (req, ctx) => {
      const { job, attempts } = await queue.listAttempts(req.jobId, callerOf(ctx.values));
      return { jobId: job.id, attempts: attempts.map(attemptToPb) };
    },

    async *watchJob(req, ctx) {
      for await (const { job, event } of queue.watch(req.jobId, callerOf(ctx.values), ctx.signal)) {
        yield { job: jobToPb(job), event: event ? eventToPb(event) : undefined };
      }
    },

    async *watchJobs(req, ctx) {
      const statuses = statusesFromPb(req.status);
      if (typeof statuses === "string") {
        throw new InvalidArgumentError("status", `unknown status ${statuses}`);
      }
      const items = queue.watchJobs(
        {
          jobIds: req.jobIds,
          statuses,
          tags: req.tag,
          queue: req.queue || undefined,
          afterCursor: req.afterCursor || undefined,
        },
        callerOf(ctx.values),
        ctx.signal,
      );
      for await (const item of items) {
        yield item.kind === "event"
          ? { kind: { case: "event", value: eventToPb(item.event) } }
          : {
              kind: {
                case: "heartbeat",
                value: { cursor: item.cursor, at: timestampFromMs(item.at) },
              },
            };
      }
    },

    getCaller: (_req, ctx) => callerToPb(callerOf(ctx.values)),

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
