import type { Logger } from "pino";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

/**
 * Folds the job counters' deltas into their totals (PostgreSQL appends deltas so that no counter
 * row is a lock every node waits for) and drops throughput older than `keepMinutes`. Run by the
 * maintenance leader.
 */
export function createStatsCompactor(options: {
  store: JobStore;
  logger: Logger;
  intervalMs: number;
  keepMinutes: number;
}): Service {
  return createPeriodicService(options.intervalMs, options.logger, "stats compactor", async () => {
    await options.store.statsCompact({ keepMinutes: options.keepMinutes });
    return undefined;
  });
}
