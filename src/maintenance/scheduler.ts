import type { Logger } from "pino";
import type { Clock } from "../job/clock.js";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

export interface SchedulerOptions {
  store: JobStore;
  /** The clock the service sleeps by; the store's time decides what is due. */
  clock: Clock;
  logger: Logger;
  /** The longest it sleeps; it wakes at the next due time, and sooner when told of an earlier one. */
  maxIntervalMs: number;
}

const BATCH = 1000;

/**
 * Makes scheduled jobs (a future scheduled_at, a retry after its backoff, a rate-limit slot)
 * available when their time comes (the store then wakes the workers). It sleeps until the
 * earliest due time, and hears of earlier ones from the store's signals.
 */
export function createScheduler(options: SchedulerOptions): Service {
  const { store, clock, logger } = options;
  const service = createPeriodicService(
    options.maxIntervalMs,
    logger,
    "scheduler",
    async () => {
      for (;;) {
        const n = await store.jobPromoteScheduled({ limit: BATCH });
        if (n < BATCH) break;
      }
      const next = await store.jobNextScheduledAt();
      return next === null ? undefined : next - (await store.now());
    },
    () => clock.now(),
  );
  let unsubscribe: (() => void) | null = null;
  return {
    start() {
      unsubscribe ??= store.signals.onJobScheduled((at) => service.wakeAt(at));
      service.start();
    },
    async stop() {
      unsubscribe?.();
      unsubscribe = null;
      await service.stop();
    },
  };
}
