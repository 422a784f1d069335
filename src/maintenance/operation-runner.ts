import type { Logger } from "pino";
import { OPERATION_BATCH, OPERATION_SCAN, type Operation } from "../job/operations.js";
import { BULK_ACTIONS, operationDetail } from "../queue/operator.js";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

/**
 * Works through running bulk operations (CancelJobs, RetryJobs, DeleteJobs), oldest first, a
 * batch per transaction so that no lock is held for long, and lets the event loop breathe between
 * batches. Run by the maintenance leader: an operation interrupted by a restart or a failover is
 * taken up where its cursor is by the next leader. Stop (a shutdown, or the lead lost) takes
 * effect between two batches, not at the operation's end. Wakes when an operation starts (on any
 * node).
 */
export function createOperationRunner(options: {
  store: JobStore;
  logger: Logger;
  /** How often it looks for running operations without being told. */
  intervalMs: number;
  /** Jobs acted on per transaction; default {@link OPERATION_BATCH}. */
  batch?: number;
}): Service {
  const { store, logger } = options;
  const batch = options.batch ?? OPERATION_BATCH;
  let unsubscribe: (() => void) | null = null;
  let running = false;
  const service = createPeriodicService(
    options.intervalMs,
    logger,
    "operation runner",
    async () => {
      const ops = await store.operationList({ state: "running", limit: 100 });
      for (const op of ops.reverse()) {
        if (!running) return undefined;
        await drain(op);
      }
      return undefined;
    },
  );

  async function drain(op: Operation): Promise<void> {
    while (running) {
      const stepped = await store.operationStep({
        id: op.id,
        batch,
        scan: OPERATION_SCAN,
        audit: (ended) => ({
          at: ended.updatedAt,
          principal: ended.principal,
          action: BULK_ACTIONS[ended.kind],
          jobId: null,
          remoteAddress: null,
          protocol: "internal",
          outcome: "ok",
          detail: operationDetail(ended),
        }),
      });
      if (stepped === null || stepped.state !== "running") {
        if (stepped) {
          logger.info(
            { operation: stepped.id, kind: stepped.kind, affected: stepped.affected },
            "bulk operation done",
          );
        }
        return;
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  return {
    start() {
      running = true;
      unsubscribe ??= store.signals.onOperationsChanged(() => service.wakeAt(0));
      service.start();
    },
    async stop() {
      running = false;
      unsubscribe?.();
      unsubscribe = null;
      await service.stop();
    },
  };
}
