import type { Logger } from "pino";
import { type JobStore, StoreUnavailableError } from "../store/job-store.js";

/** Whether the node can take work now, and if not, why. */
export interface ReadinessState {
  ready: boolean;
  /** What is wrong, safe to show (no secrets); null when ready. */
  reason: string | null;
}

export interface Readiness {
  /** The store, watched: a call that finds it unavailable turns readiness off. */
  readonly store: JobStore;
  state(): ReadinessState;
  start(): void;
  stop(): Promise<void>;
}

/**
 * Readiness of the store: any call that fails with {@link StoreUnavailableError} (the database is
 * away, the disk full or failing) marks the node not ready at once, with the reason; a probe write
 * then runs every `retryMs` until one succeeds, and readiness comes back by itself. While ready,
 * a probe runs every `probeMs` too, so a fault is noticed even when no call is made.
 */
export function createReadiness(options: {
  store: JobStore;
  logger: Logger;
  probeMs?: number;
  retryMs?: number;
}): Readiness {
  const { logger } = options;
  const probeMs = options.probeMs ?? 5_000;
  const retryMs = options.retryMs ?? 1_000;
  const probeTimeoutMs = 10_000;
  let reason: string | null = null;
  let timer: NodeJS.Timeout | null = null;
  let running = false;
  let probing: Promise<void> = Promise.resolve();
  let inProbe = false;

  function fail(err: StoreUnavailableError) {
    if (reason === null)
      logger.error({ reason: err.message }, "the store is unavailable: not ready");
    reason = err.message;
    // Many calls fail together: the first schedules the probe, the others leave it be.
    if (running && timer === null && !inProbe) arm(retryMs);
  }

  function arm(ms: number) {
    if (timer) clearTimeout(timer);
    timer = setTimeout(probe, ms);
  }

  function probe() {
    timer = null;
    inProbe = true;
    probing = withTimeout(options.store.probe(), probeTimeoutMs).then(
      () => {
        if (reason !== null) logger.info("the store accepts writes again: ready");
        reason = null;
        inProbe = false;
        if (running) arm(probeMs);
      },
      (err: unknown) => {
        inProbe = false;
        if (err instanceof StoreUnavailableError) fail(err);
        else {
          logger.error({ err }, "the readiness probe failed");
          if (running) arm(retryMs);
        }
      },
    );
  }

  // Every method of the store, its results passed through as they are; unavailability is noted on
  // a branch of the call's promise. One wrapper per method, made on first use.
  const noteFault = (err: unknown) => {
    if (err instanceof StoreUnavailableError) fail(err);
  };
  const wrapped = new Map<string | symbol, unknown>();
  const watched = new Proxy(options.store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      if (prop === "close") return value.bind(target);
      let fn = wrapped.get(prop);
      if (fn === undefined) {
        fn = (...args: unknown[]) => {
          const out = value.apply(target, args);
          if (out instanceof Promise) out.catch(noteFault);
          return out;
        };
        wrapped.set(prop, fn);
      }
      return fn;
    },
  });

  return {
    store: watched,
    state: () => ({ ready: reason === null, reason }),
    start() {
      if (running) return;
      running = true;
      arm(reason === null ? probeMs : 0);
    },
    async stop() {
      running = false;
      if (timer) clearTimeout(timer);
      timer = null;
      await probing;
    },
  };
}

/** `promise`, or a StoreUnavailableError once `ms` have passed without an answer. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(new StoreUnavailableError(`the store did not answer a probe write within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
