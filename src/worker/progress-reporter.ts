import type { Logger } from "pino";
import type { Progress } from "../job/events.js";
import type { JobStore } from "../store/job-store.js";

export interface ProgressReporter {
  /** The call's latest progress (cheap: only remembered). */
  update(progress: Progress): void;
  /** The call ended: nothing more is reported. */
  stop(): void;
}

/**
 * Reports how far a call has come to the event stream, for long calls only: nothing during the
 * first `everyMs` (most calls end sooner, and their running and ended events say all), then the
 * latest progress at most once every `everyMs` while it changes. Each report is a store write, so
 * a fast call costs none and a slow download one a second.
 */
export function startProgressReporter(params: {
  store: JobStore;
  jobId: string;
  attempt: number;
  everyMs: number;
  logger: Logger;
}): ProgressReporter {
  const { store, jobId, attempt, logger } = params;
  let latest: Progress | null = null;
  let reported: Progress | null = null;
  let stopped = false;
  const report = () => {
    if (stopped) return;
    if (latest !== null && latest !== reported) {
      reported = latest;
      store.eventAppend({ jobId, attempt, progress: latest }).catch((err: Error) => {
        logger.debug({ jobId, reason: err.message }, "a progress event could not be written");
      });
    }
    timer = setTimeout(report, params.everyMs);
    timer.unref();
  };
  let timer = setTimeout(report, params.everyMs);
  timer.unref();
  return {
    update(progress) {
      latest = progress;
    },
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
