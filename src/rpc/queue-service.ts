import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { QueueService } from "../../gen/jobqueue/v1/queue_service_pb.js";
import { InvalidArgumentError } from "../job/errors.js";
import type { LatencySummary } from "../job/latency.js";
import type { Operator } from "../queue/operator.js";
import { callerOf } from "./auth.js";
import { countsToPb, queueSettingsFromPb, queueToPb } from "./convert.js";

export type QueueServiceImpl = ServiceImpl<typeof QueueService>;

/** The QueueService handlers: convert, call the operator facade, convert back. */
export function createQueueServiceImpl(operator: Operator): QueueServiceImpl {
  return {
    createQueue: async (req, ctx) => ({
      queue: queueToPb(
        await operator.createQueue(
          req.name,
          queueSettingsFromPb(req.settings),
          callerOf(ctx.values),
        ),
      ),
    }),

    updateQueue: async (req, ctx) => ({
      queue: queueToPb(
        await operator.updateQueue(
          req.name,
          queueSettingsFromPb(req.settings),
          callerOf(ctx.values),
        ),
      ),
    }),

    getQueue: async (req) => ({ queue: queueToPb(await operator.getQueue(req.name)) }),

    listQueues: async () => ({ queues: (await operator.listQueues()).map(queueToPb) }),

    pauseQueue: async (req, ctx) => ({
      queue: queueToPb(await operator.setPaused(req.name, true, callerOf(ctx.values))),
    }),

    resumeQueue: async (req, ctx) => ({
      queue: queueToPb(await operator.setPaused(req.name, false, callerOf(ctx.values))),
    }),

    deleteQueue: async (req, ctx) => {
      await operator.deleteQueue(req.name, callerOf(ctx.values));
      return {};
    },

    getQueueStats: async (req) => {
      const window = req.windowMinutes || 15;
      if (!Number.isInteger(window) || window < 1 || window > 1440) {
        throw new InvalidArgumentError("window_minutes", "must be between 1 and 1440");
      }
      const stats = await operator.queueStats(req.name, window);
      return {
        queue: stats.queue,
        counts: countsToPb(stats.counts),
        oldestQueuedAt:
          stats.oldestQueuedAt === null ? undefined : timestampFromMs(stats.oldestQueuedAt),
        running: stats.running,
        perMinute: stats.perMinute.map((m) => ({
          minute: timestampFromMs(m.minute * 60_000),
          succeeded: BigInt(m.succeeded),
          failed: BigInt(m.failed),
          canceled: BigInt(m.canceled),
        })),
        successRate: stats.successRate ?? undefined,
        latency: stats.latency ? latencyToPb(stats.latency) : undefined,
        slowestDestinations: stats.slowestDestinations.map((d) => ({
          host: d.host,
          latency: latencyToPb(d),
        })),
      };
    },
  };
}

function latencyToPb(l: LatencySummary) {
  return {
    samples: BigInt(l.samples),
    p50Ms: l.p50Ms,
    p90Ms: l.p90Ms,
    p99Ms: l.p99Ms,
    maxMs: l.maxMs,
  };
}
