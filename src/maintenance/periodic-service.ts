import type { Logger } from "pino";

/** The start/stop shape of every background service. */
export interface Service {
  start(): void;
  /** Idempotent; waits for a pass in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `pass` at start and again after the delay it returns (or `intervalMs`), never two at once.
 */
export function createPeriodicService(
  intervalMs: number,
  logger: Logger,
  name: string,
  pass: () => Promise<number | undefined>,
): Service {
  let timer: NodeJS.Timeout | null = null;
  let current: Promise<void> = Promise.resolve();
  let running = false;

  const run = () => {
    timer = null;
    current = pass()
      .then((delay) => delay ?? intervalMs)
      .catch((err) => {
        logger.error({ err }, `${name} pass failed`);
        return intervalMs;
      })
      .then((delay) => {
        if (running) timer = setTimeout(run, Math.min(Math.max(delay, 0), intervalMs));
      });
  };

  return {
    start() {
      if (running) return;
      running = true;
      run();
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = null;
      await current;
    },
  };
}
