import type { Logger } from "pino";

/** The start/stop shape of every background service. */
export interface Service {
  start(): void;
  /** Idempotent; waits for a pass in progress. */
  stop(): Promise<void>;
}

export interface PeriodicService extends Service {
  /** Asks for a pass no later than `at` (epoch ms); an earlier planned pass stays. */
  wakeAt(at: number): void;
}

/**
 * Runs `pass` at start and again after the delay it returns (at most `intervalMs`), never two at
 * once. `wakeAt` brings the next pass forward.
 */
export function createPeriodicService(
  intervalMs: number,
  logger: Logger,
  name: string,
  pass: () => Promise<number | undefined>,
  now: () => number = Date.now,
): PeriodicService {
  let timer: NodeJS.Timeout | null = null;
  let timerAt = Number.POSITIVE_INFINITY;
  let running = false;
  let inPass = false;
  let wantedAt = Number.POSITIVE_INFINITY;
  let current: Promise<void> = Promise.resolve();

  const arm = (at: number) => {
    if (!running || at >= timerAt) return;
    if (timer) clearTimeout(timer);
    timerAt = at;
    timer = setTimeout(run, Math.max(0, at - now()));
  };

  const run = () => {
    timer = null;
    timerAt = Number.POSITIVE_INFINITY;
    inPass = true;
    wantedAt = Number.POSITIVE_INFINITY;
    current = pass()
      .then((delay) => Math.min(Math.max(delay ?? intervalMs, 0), intervalMs))
      .catch((err) => {
        logger.error({ err }, `${name} pass failed`);
        return intervalMs;
      })
      .then((delay) => {
        inPass = false;
        arm(Math.min(now() + delay, wantedAt));
      });
  };

  return {
    start() {
      if (running) return;
      running = true;
      run();
    },
    wakeAt(at) {
      if (inPass) wantedAt = Math.min(wantedAt, at);
      else arm(at);
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = null;
      await current;
    },
  };
}
