/**
 * The child side of the orchestrator's protocol. Every benchmark process other than the JobQueue
 * server is forked by bench/run.ts with an IPC channel: it reads its parameters from argv[2]
 * (JSON), reports progress and its result as messages, and exits if the orchestrator goes away.
 */

/** What a child sends to the orchestrator. */
export type ChildMessage =
  | { type: "progress"; stage: string; done: number; total: number }
  | { type: "ready"; info?: unknown }
  | { type: "result"; value: unknown }
  | { type: "error"; message: string }
  | { type: "reply"; id: number; value: unknown };

/** What the orchestrator sends to a long-lived child (the target, the BullMQ worker). */
export type ParentMessage =
  | { type: "query"; id: number; what: string; args?: unknown }
  | { type: "stop" };

export interface ChildContext {
  /** Reports progress; rate-limited to a few messages a second. */
  progress(stage: string, done: number, total: number): void;
  /** Sends any message to the orchestrator. */
  send(message: ChildMessage): Promise<void>;
}

/** The parameters this child was started with. */
export function childParams<P>(): P {
  const raw = process.argv[2];
  if (raw === undefined) throw new Error("missing parameters (argv[2])");
  return JSON.parse(raw) as P;
}

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, undefined, () => resolve());
  });
}

function createContext(): ChildContext {
  let last = 0;
  return {
    progress(stage, done, total) {
      const now = performance.now();
      if (now - last < 150 && done < total) return;
      last = now;
      void send({ type: "progress", stage, done, total });
    },
    send,
  };
}

/**
 * Runs a one-shot child: `main` does the measurement and returns the result, which is sent to the
 * orchestrator before the process exits (0 on success, 1 on error).
 */
export function runChild<P>(main: (params: P, ctx: ChildContext) => Promise<unknown>): void {
  process.on("disconnect", () => process.exit(1));
  const ctx = createContext();
  main(childParams<P>(), ctx).then(
    async (value) => {
      await send({ type: "result", value });
      process.exit(0);
    },
    async (err: unknown) => {
      await send({
        type: "error",
        message: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
      process.exit(1);
    },
  );
}

/**
 * Runs a long-lived child: `start` sets it up and returns its query handler and stop function; the
 * child then answers queries until the orchestrator says stop (or goes away).
 */
export function runService<P>(
  start: (
    params: P,
    ctx: ChildContext,
  ) => Promise<{
    info?: unknown;
    query?: (what: string, args: unknown) => unknown | Promise<unknown>;
    stop: () => Promise<void>;
  }>,
): void {
  const ctx = createContext();
  let stopping = false;
  start(childParams<P>(), ctx).then(
    async (service) => {
      const stop = async (code: number) => {
        if (stopping) return;
        stopping = true;
        await service.stop().catch(() => {});
        process.exit(code);
      };
      process.on("disconnect", () => void stop(1));
      process.on("SIGTERM", () => void stop(0));
      process.on("SIGINT", () => void stop(0));
      process.on("message", async (message: ParentMessage) => {
        if (message.type === "stop") return stop(0);
        if (message.type === "query") {
          let value: unknown = null;
          try {
            value = service.query ? await service.query(message.what, message.args) : null;
          } catch (err) {
            value = { error: String(err) };
          }
          await send({ type: "reply", id: message.id, value });
        }
      });
      await send({ type: "ready", info: service.info });
    },
    async (err: unknown) => {
      await send({
        type: "error",
        message: err instanceof Error ? (err.stack ?? err.message) : String(err),
      });
      process.exit(1);
    },
  );
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Milliseconds on the monotonic clock (shared by every process on Linux: CLOCK_MONOTONIC). */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
