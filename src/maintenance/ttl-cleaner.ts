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
  /** Audit events older than this are deleted too. */
  auditRetentionMs: number;
  /** Events of the stream older than this are deleted (cursors before them expire). */
  eventRetentionMs: number;
  /** Node heartbeat rows silent for this long are deleted. */
  forgetNodesAfterMs: number;
}

const BATCH = 1000;

/**
 * Deletes finished jobs whose TTL has passed, with their attempts and results, audit events and
 * events of the stream past their retention and the rows of nodes long gone, in batches. Reads already hide expired jobs, so the cleaner only reclaims
 * space; it sleeps until the next expiry.
 */
export function createTtlCleaner(options: TtlCleanerOptions): Service {
  const { store, clock, logger } = options;
  const drain = async (step: () => Promise<number>) => {
    let total = 0;
    for (;;) {
      const n = await step();
      total += n;
      if (n < BATCH) return total;
    }
  };
  return createPeriodicService(
    options.maxIntervalMs,
    logger,
    "ttl cleaner",
    async () => {
      const jobs = await drain(() => store.jobDeleteExpired({ limit: BATCH }));
      const before = clock.now() - options.auditRetentionMs;
      const audit = await drain(() => store.auditDeleteBefore({ before, limit: BATCH }));
      const eventsBefore = clock.now() - options.eventRetentionMs;
      const events = await drain(() =>
        store.eventDeleteBefore({ before: eventsBefore, limit: BATCH }),
      );
      await store.nodeDelete({ silentForMs: options.forgetNodesAfterMs });
      if (jobs > 0 || audit > 0 || events > 0) {
        logger.info({ jobs, auditEvents: audit, streamEvents: events }, "deleted expired data");
      }
      const next = await store.jobNextExpiry();
      return next === null ? undefined : next - (await store.now()) + 1;
    },
    () => clock.now(),
  );
}
