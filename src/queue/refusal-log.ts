import type { AuditEvent } from "../audit/audit-event.js";
import type { Clock } from "../job/clock.js";
import type { JobStore } from "../store/job-store.js";

export interface RefusalLogOptions {
  store: JobStore;
  clock: Clock;
  /** Refusals of one kind recorded one by one per window; the rest are counted. 0: count all. */
  individualPerWindow: number;
  /** The window, in ms (a minute). */
  windowMs?: number;
  /** Kinds tracked at once; refusals of further kinds share one row per window. */
  maxKinds?: number;
  /** Told when writing a row fails (the refusal itself still goes to the caller). */
  onError?: (err: unknown) => void;
}

/**
 * The audit of refused calls, bounded: a flood of bad keys must not cost a durable write per call.
 * Refusals of one kind (address, principal, method, outcome and protocol) are recorded one by one
 * up to `individualPerWindow` in each window; beyond that they are counted, and one row per kind
 * and window records the count in its `detail` ("refused 9990 more times from 12:00:00Z for
 * 60 s"), written when the window ends. Memory holds at most `maxKinds` kinds; beyond that,
 * refusals are counted in one row per window with no address. Mutating and successful calls are
 * not refusals: they stay one row each, written with their change.
 */
export interface RefusalLog {
  record(event: AuditEvent): Promise<void>;
  /** Writes the counts of the windows in progress. Idempotent. */
  stop(): Promise<void>;
}

interface Kind {
  event: AuditEvent;
  seen: number;
  counted: number;
}

export function createRefusalLog(options: RefusalLogOptions): RefusalLog {
  const { store, clock, individualPerWindow } = options;
  const windowMs = options.windowMs ?? 60_000;
  const maxKinds = options.maxKinds ?? 10_000;
  let window = -1;
  let kinds = new Map<string, Kind>();
  let timer: NodeJS.Timeout | null = null;
  let stopped = false;

  async function flush(ended: Map<string, Kind>, start: number) {
    const rows: AuditEvent[] = [];
    for (const kind of ended.values()) {
      if (kind.counted === 0) continue;
      rows.push({
        ...kind.event,
        at: start + windowMs - 1,
        jobId: null,
        detail: `refused ${kind.counted} more times from ${new Date(start).toISOString()} for ${windowMs / 1000} s`,
      });
    }
    if (rows.length === 0) return;
    try {
      await store.auditInsert(rows);
    } catch (err) {
      options.onError?.(err);
    }
  }

  /** Starts a new window when the clock has moved on, flushing the last one. */
  function roll(now: number) {
    const current = Math.floor(now / windowMs);
    if (current === window) return;
    const ended = kinds;
    const start = window * windowMs;
    window = current;
    kinds = new Map();
    if (timer) clearTimeout(timer);
    timer = null;
    void flush(ended, start);
  }

  function armFlush() {
    if (timer || stopped) return;
    const end = (window + 1) * windowMs;
    timer = setTimeout(
      () => {
        timer = null;
        roll(Math.max(end, clock.now()));
      },
      Math.max(0, end - clock.now()),
    );
    timer.unref();
  }

  return {
    async record(event) {
      roll(event.at);
      let key = `${event.remoteAddress}\u0000${event.principal}\u0000${event.action}\u0000${event.outcome}\u0000${event.protocol}`;
      let kind = kinds.get(key);
      if (!kind && kinds.size >= maxKinds) {
        key = "\u0000overflow";
        kind = kinds.get(key);
        event = { ...event, remoteAddress: null, principal: null, action: "*", protocol: "*" };
      }
      if (!kind) {
        kind = { event, seen: 0, counted: 0 };
        kinds.set(key, kind);
      }
      kind.seen++;
      if (kind.seen <= individualPerWindow && key !== "\u0000overflow") {
        await store.auditInsert([event]);
        return;
      }
      kind.counted++;
      armFlush();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      timer = null;
      const ended = kinds;
      kinds = new Map();
      await flush(ended, window * windowMs);
    },
  };
}
