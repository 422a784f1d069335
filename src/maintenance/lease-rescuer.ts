import type { Logger } from "pino";
import type { Clock } from "../job/clock.js";
import type { Notifier } from "../notify/notifier.js";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

export interface LeaseRescuerOptions {
  store: JobStore;
  notifier: Notifier;
  clock: Clock;
  logger: Logger;
  /** How often to look for expired leases. */
  intervalMs: number;
}

const BATCH = 1000;

/**
 * Finds running jobs whose lease expired (their worker died or hung) and puts them back in the
 * queue, or fails them if they have no attempts left. Runs at start and then every interval.
 */
export function createLeaseRescuer(options: LeaseRescuerOptions): Service {
  const { store, notifier, clock, logger } = options;
  return createPeriodicService(options.intervalMs, logger, "lease rescuer", async () => {
    for (;;) {
      const rescued = await store.jobRescueExpired({ now: clock.now(), limit: BATCH });
      for (const r of rescued) notifier.jobChanged({ jobId: r.jobId, status: r.status });
      if (rescued.length > 0) {
        logger.warn(
          {
            requeued: rescued.filter((r) => r.status === "queued").length,
            failed: rescued.filter((r) => r.status === "failed").length,
          },
          "rescued jobs whose lease expired",
        );
      }
      if (rescued.some((r) => r.status === "queued")) notifier.jobsAvailable();
      if (rescued.length < BATCH) return undefined;
    }
  });
}
