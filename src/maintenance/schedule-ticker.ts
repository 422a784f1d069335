import type { Logger } from "pino";
import type { Clock } from "../job/clock.js";
import type { ScheduleBook } from "../queue/schedule-book.js";
import { createPeriodicService, type Service } from "./periodic-service.js";

export interface ScheduleTickerOptions {
  schedules: Pick<ScheduleBook, "runDue">;
  /** The clock it sleeps by (a test's own moves the ticks). */
  clock: Clock;
  logger: Logger;
  /** How often it looks for due ticks (default 1 s: a tick fires at most that late). */
  intervalMs?: number;
}

/**
 * Fires the schedules' due ticks (src/queue/schedule-book.ts `runDue`). It runs among the
 * leader's services, so one node fires the ticks at a time; should two nodes overlap (a leader
 * change), the store's unique key on (schedule, tick) still enqueues each tick once.
 */
export function createScheduleTicker(options: ScheduleTickerOptions): Service {
  const { schedules, clock, logger } = options;
  const intervalMs = options.intervalMs ?? 1_000;
  return createPeriodicService(
    intervalMs,
    logger,
    "schedule ticker",
    async () => {
      // A full batch: more schedules may be due, go again at once.
      const n = await schedules.runDue();
      return n >= 100 ? 0 : intervalMs;
    },
    () => clock.now(),
  );
}
