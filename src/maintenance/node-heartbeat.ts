import type { Logger } from "pino";
import type { JobStore, NodeBeat } from "../store/job-store.js";
import type { Service } from "./periodic-service.js";

export interface NodeHeartbeatOptions {
  store: JobStore;
  logger: Logger;
  intervalMs: number;
  /** What the node reports at each beat. */
  beat: () => NodeBeat;
}

/**
 * Writes this node's heartbeat row (id, version, concurrency, calls in flight) at start and every
 * interval, and deletes it on stop, so `ListNodes` shows who is alive and what each is doing.
 */
export function createNodeHeartbeat(options: NodeHeartbeatOptions): Service {
  const { store, logger } = options;
  let timer: NodeJS.Timeout | null = null;
  let current: Promise<void> = Promise.resolve();
  let failing = false;

  const beat = () => {
    current = store.nodeHeartbeat(options.beat()).then(
      () => {
        if (failing) logger.info("node heartbeat recorded again");
        failing = false;
      },
      (err: Error) => {
        if (!failing) logger.warn({ err: err.message }, "node heartbeat failed");
        failing = true;
      },
    );
  };

  return {
    start() {
      if (timer) return;
      beat();
      timer = setInterval(beat, options.intervalMs);
    },
    async stop() {
      if (!timer) return;
      clearInterval(timer);
      timer = null;
      await current;
      await store.nodeDelete({ id: options.beat().id }).catch(() => {});
    },
  };
}
