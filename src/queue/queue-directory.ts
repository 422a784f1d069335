import type { Logger } from "pino";
import type { QueueSettings } from "../job/queues.js";
import type { JobStore } from "../store/job-store.js";

/**
 * The queues and their settings, as this node knows them: read from the store at start, again
 * whenever the store signals a change (made here or on another node) and every `refreshMs` in
 * case a signal was missed. Enqueues take their defaults from it and the worker pool its
 * concurrency, rate and pause state, so a change takes effect on every node without a restart.
 */
export interface QueueDirectory {
  /** A queue's settings, or null if this node knows no such queue. */
  get(name: string): QueueSettings | null;
  all(): QueueSettings[];
  /** Reads the queues again now; resolves once they are read. */
  refresh(): Promise<void>;
  /** Called after each change of the known queues. */
  onChange(listener: () => void): () => void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function createQueueDirectory(options: {
  store: JobStore;
  logger: Logger;
  refreshMs?: number;
}): QueueDirectory {
  const { store, logger } = options;
  let queues = new Map<string, QueueSettings>();
  const listeners = new Set<() => void>();
  let timer: NodeJS.Timeout | null = null;
  let unsubscribe: (() => void) | null = null;
  let inFlight: Promise<void> | null = null;
  let again = false;

  async function load(): Promise<void> {
    const list = await store.queueList();
    const next = new Map(list.map((q) => [q.name, q]));
    const changed =
      next.size !== queues.size || list.some((q) => queues.get(q.name)?.updatedAt !== q.updatedAt);
    queues = next;
    if (changed) for (const l of listeners) l();
  }

  /** One read at a time; a change signalled during a read is read once more after it. */
  function refresh(): Promise<void> {
    if (inFlight) {
      again = true;
      return inFlight;
    }
    inFlight = (async () => {
      try {
        do {
          again = false;
          await load();
        } while (again);
      } finally {
        inFlight = null;
      }
    })();
    return inFlight;
  }

  const quietRefresh = () => {
    refresh().catch((err: Error) => logger.warn({ err: err.message }, "could not read the queues"));
  };

  return {
    get: (name) => queues.get(name) ?? null,
    all: () => [...queues.values()],
    refresh,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async start() {
      unsubscribe = store.signals.onQueuesChanged(quietRefresh);
      await refresh();
      timer = setInterval(quietRefresh, options.refreshMs ?? 5_000);
      timer.unref();
    },
    async stop() {
      unsubscribe?.();
      if (timer) clearInterval(timer);
      await inFlight?.catch(() => {});
    },
  };
}
