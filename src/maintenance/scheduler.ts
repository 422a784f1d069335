import type { Logger } from "pino";
import type { Clock } from "../job/clock.js";
import type { Notifier } from "../notify/notifier.js";
import type { JobStore } from "../store/job-store.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

export interface SchedulerOptions {
  store: JobStore;
  notifier: Notifier;
  clock: Clock;
  logger: Logger;
  /** The longest it sleeps; it wakes at the next due time, and sooner when told of an earlier one. */
  maxIntervalMs: number;
}

const BATCH = 1000;

/**
 * Makes scheduled jobs (a future scheduled_at, a retry after its backoff, a rate-limit slot)
 * available when their time comes, and wakes the workers. It sleeps until the earliest due time,
 * and hears of earlier ones from the notifier.
 */
export function createScheduler(options: SchedulerOptions): Service {
  const { store, notifier, clock, logger } = options;
  const service = createPeriodicService(
    options.maxIntervalMs,
    logger,
    "scheduler",
    async () => {
      let promoted = 0;
      for (;;) {
        const n = await store.jobPromoteScheduled({ now: clock.now(), limit: BATCH });
        promoted += n;
        if (n < BATCH) break;
      }
      if (promoted > 0) notifier.jobsAvailable();
      const next = await store.jobNextScheduledAt();
      return next === null ? undefined : next - clock.now();
    },
    () => clock.now(),
  );
  let unsubscribe: (() => void) | null = null;
  return {
    start() {
      unsubscribe ??= notifier.onJobScheduled((at) => service.wakeAt(at));
      service.start();
    },
    async stop() {
      unsubscribe?.();
      unsubscribe = null;
      await service.stop();
    },
  };
}
