import type { Logger } from "pino";
import type { Clock } from "../job/clock.js";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

export interface TtlCleanerOptions {
  store: JobStore;
  clock: Clock;
  logger: Logger;
  /** The longest the cleaner sleeps; it wakes sooner when a job is due to expire sooner. */
  maxIntervalMs: number;
}

const BATCH = 1000;

/**
 * Deletes finished jobs whose TTL has passed, with their attempts and results, in batches. Reads
 * already hide expired jobs, so the cleaner only reclaims space; it sleeps until the next expiry.
 */
export function createTtlCleaner(options: TtlCleanerOptions): Service {
  const { store, clock, logger } = options;
  return createPeriodicService(options.maxIntervalMs, logger, "ttl cleaner", async () => {
    let deleted = 0;
    for (;;) {
      const n = await store.jobDeleteExpired({ now: clock.now(), limit: BATCH });
      deleted += n;
      if (n < BATCH) break;
    }
    if (deleted > 0) logger.info({ deleted }, "deleted expired jobs");
    const next = await store.jobNextExpiry();
    return next === null ? undefined : next - clock.now() + 1;
  });
}
