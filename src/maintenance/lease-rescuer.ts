import type { Logger } from "pino";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

export interface LeaseRescuerOptions {
  store: JobStore;
  logger: Logger;
  /** How often to look for expired leases. */
  intervalMs: number;
}

const BATCH = 1000;

/**
 * Finds running jobs whose lease expired (their worker died or hung) and has the store rescue
 * them (src/job/rescue.ts says what they become). Runs at start and then every interval.
 */
export function createLeaseRescuer(options: LeaseRescuerOptions): Service {
  const { store, logger } = options;
  return createPeriodicService(options.intervalMs, logger, "lease rescuer", async () => {
    for (;;) {
      const rescued = await store.jobRescueExpired({ limit: BATCH });
      if (rescued.length > 0) {
        logger.warn(
          {
            requeued: rescued.filter((r) => r.status === "queued").length,
            failed: rescued.filter((r) => r.status === "failed").length,
          },
          "rescued jobs whose lease expired",
        );
      }
      if (rescued.length < BATCH) return undefined;
    }
  });
}
