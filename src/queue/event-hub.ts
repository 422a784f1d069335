import type { Logger } from "pino";
import { CursorExpiredError, InvalidArgumentError, WatcherBehindError } from "../job/errors.js";
import { type EventFilter, type JobStreamEvent, matches } from "../job/events.js";
import { type JobStore, StoreUnavailableError } from "../store/job-store.js";

/** What a watcher receives: an event, or a heartbeat saying how far the stream has been read. */
export type WatchItem =
  | { kind: "event"; event: JobStreamEvent }
  | { kind: "heartbeat"; cursor: string; at: number };

export interface WatchParams {
  /** Resume after this cursor; null: from now. */
  after: string | null;
  filter: EventFilter;
  /** Ends the watch (the client went away, the server stops). */
  signal: AbortSignal;
}

export interface EventHub {
  /**
   * The events matching `filter` after `after`, oldest first, each once, live until `signal`
   * aborts. The first item is a heartbeat with the cursor the watch starts from (a bad or expired
   * cursor fails before it); later heartbeats carry the latest cursor read, whether anything
   * matched or not. A watcher whose client does not keep up fails with {@link WatcherBehindError}.
   */
  watch(params: WatchParams): AsyncIterable<WatchItem>;
  /** Watchers open now. */
  readonly watchers: number;
  /** Ends the reading; watchers still open end with their signals. */
  stop(): Promise<void>;
}

export interface EventHubOptions {
  store: JobStore;
  logger: Logger;
  /** How often the stream is read without a local wake-up (other nodes' events). */
  pollMs?: number;
  /** Events read per store call. */
  pageSize?: number;
  /** Recent events kept in memory, so that resuming a moment back needs no store read. */
  ringSize?: number;
  /** Items a watcher may have waiting for its client before it is dropped. */
  bufferSize?: number;
  /** How often a heartbeat is sent to every watcher. */
  heartbeatMs?: number;
  now?: () => number;
}

interface Watcher {
  filter: EventFilter;
  /** The cursor of the last event handed to this watcher. */
  pos: string;
  /** The cursor of the last item its client took (where it resumes if dropped). */
  taken: string;
  queue: WatchItem[];
  /** What the reader held after the watcher's cursor when it joined, still to be sent. */
  backlog: JobStreamEvent[];
  failure: Error | null;
  wake: (() => void) | null;
}

/**
 * One reader of the store's event stream per process, fanned out to every watcher: a thousand
 * watchers cost one query per wake-up, not a thousand. The reader runs only while someone
 * watches; it reads when this node appends events (a local signal) and every `pollMs` (other
 * nodes' events, and on PostgreSQL those that become readable once an older transaction ends).
 *
 * A watcher resuming from a cursor behind what the reader keeps in memory catches up from the
 * store on its own, then joins the live fan-out where its cursor meets the reader's: cursors of
 * one store have one width and order as strings, so the join is a comparison, and each event is
 * handed over once. Each watcher has a bounded queue: one whose client does not read is dropped
 * (with the cursor to resume from) instead of holding events in memory or slowing the others.
 */
export function createEventHub(options: EventHubOptions): EventHub {
  const { store, logger } = options;
  const pollMs = options.pollMs ?? 250;
  const pageSize = options.pageSize ?? 500;
  const ringSize = options.ringSize ?? 2_000;
  const bufferSize = options.bufferSize ?? 1_000;
  const heartbeatMs = options.heartbeatMs ?? 15_000;
  const now = options.now ?? Date.now;

  /** Where the reader is: every event up to it was handed to the live watchers. Null: stopped. */
  let position: string | null = null;
  /** Recent events, oldest first: every event after `ringFloor` up to `position`. */
  let ring: JobStreamEvent[] = [];
  let ringFloor = "";
  /** Live watchers with no job-id condition, and those with one, by job id. */
  const general = new Set<Watcher>();
  const byJob = new Map<string, Set<Watcher>>();
  /** Watchers open, live or catching up: the reader runs while there are any. */
  let open = 0;
  let starting: Promise<void> | null = null;
  let reading: Promise<void> | null = null;
  let poked = false;
  let wakeReader: (() => void) | null = null;
  let stopped = false;

  const poke = () => {
    poked = true;
    wakeReader?.();
  };

  function join(w: Watcher): void {
    const ids = w.filter.jobIds;
    if (!ids) {
      general.add(w);
      return;
    }
    for (const id of ids) {
      let set = byJob.get(id);
      if (!set) {
        set = new Set();
        byJob.set(id, set);
      }
      set.add(w);
    }
  }

  function leave(w: Watcher): void {
    general.delete(w);
    for (const id of w.filter.jobIds ?? []) {
      const set = byJob.get(id);
      set?.delete(w);
      if (set?.size === 0) byJob.delete(id);
    }
  }

  function push(w: Watcher, item: WatchItem): void {
    if (w.failure) return;
    if (w.queue.length >= bufferSize) {
      w.failure = new WatcherBehindError(w.taken);
      w.queue.length = 0;
      leave(w);
    } else {
      w.queue.push(item);
    }
    const wake = w.wake;
    w.wake = null;
    wake?.();
  }

  function deliver(w: Watcher, e: JobStreamEvent): void {
    if (e.cursor <= w.pos) return;
    w.pos = e.cursor;
    if (matches(w.filter, e)) push(w, { kind: "event", event: e });
  }

  function fanOut(e: JobStreamEvent): void {
    for (const w of general) deliver(w, e);
    const set = byJob.get(e.jobId);
    if (set) for (const w of set) deliver(w, e);
    ring.push(e);
    if (ring.length > ringSize) {
      const dropped = ring.splice(0, ring.length - ringSize);
      ringFloor = dropped.at(-1)!.cursor;
    }
  }

  function liveWatchers(): Set<Watcher> {
    const all = new Set(general);
    for (const set of byJob.values()) for (const w of set) all.add(w);
    return all;
  }

  function failAll(err: Error): void {
    for (const w of liveWatchers()) {
      w.failure = err;
      leave(w);
      const wake = w.wake;
      w.wake = null;
      wake?.();
    }
  }

  async function start(): Promise<void> {
    if (position !== null) return;
    starting ??= (async () => {
      const head = await store.eventHead();
      position = head;
      ringFloor = head;
      ring = [];
      reading = read();
    })().finally(() => {
      starting = null;
    });
    await starting;
  }

  /** The reader: runs while watchers are open, then forgets where it was. */
  async function read(): Promise<void> {
    const unsubscribe = store.signals.onEventsAppended(poke);
    const heartbeat = setInterval(() => {
      const at = now();
      for (const w of liveWatchers()) {
        if (position !== null && position > w.pos) w.pos = position;
        push(w, { kind: "heartbeat", cursor: w.pos, at });
      }
    }, heartbeatMs);
    let failing = false;
    try {
      while (open > 0 && !stopped) {
        poked = false;
        let delay = pollMs;
        try {
          for (;;) {
            const page = await store.eventList({ after: position, limit: pageSize });
            for (const e of page.events) fanOut(e);
            if (page.head > position!) position = page.head;
            if (page.events.length < pageSize) break;
          }
          if (failing) logger.info("reading the event stream works again");
          failing = false;
        } catch (err) {
          if (err instanceof CursorExpiredError) {
            // The reader fell behind the retention (a store away for longer than it): its live
            // watchers cannot be told what they missed, so they end with the error and resume.
            logger.warn({ cursor: position }, "the event stream reader fell behind the retention");
            failAll(new CursorExpiredError(position!));
            const head = await store.eventHead().catch(() => null);
            if (head !== null) {
              position = head;
              ringFloor = head;
              ring = [];
            }
          } else {
            if (!failing) {
              const reason = err instanceof StoreUnavailableError ? err.message : String(err);
              logger.warn({ reason }, "reading the event stream failed; retrying");
            }
            failing = true;
            delay = Math.max(pollMs, 1_000);
          }
        }
        if (open === 0 || stopped) break;
        if (!poked) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, delay);
            wakeReader = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wakeReader = null;
        }
      }
    } finally {
      clearInterval(heartbeat);
      unsubscribe();
      position = null;
      ring = [];
      reading = null;
    }
  }

  function checkCursor(after: string): void {
    if (!/^\d+$/.test(after) || after.length !== position!.length) {
      throw new InvalidArgumentError("after_cursor", "is not a cursor this server gave out");
    }
  }

  async function* watch(params: WatchParams): AsyncGenerator<WatchItem> {
    const { filter, signal } = params;
    open++;
    const w: Watcher = {
      filter,
      pos: "",
      taken: "",
      queue: [],
      backlog: [],
      failure: null,
      wake: null,
    };
    const onAbort = () => {
      const wake = w.wake;
      w.wake = null;
      wake?.();
    };
    signal.addEventListener("abort", onAbort);
    try {
      await start();
      const after = params.after;
      if (after !== null) checkCursor(after);
      w.pos = after ?? position!;
      // Behind the memory: catch up from the store (the first read fails an expired cursor
      // before anything is sent).
      let page = after !== null && after < ringFloor ? await readAfter(w.pos) : null;
      const from = w.pos;
      if (page === null) goLive(w);
      w.taken = from;
      yield { kind: "heartbeat", cursor: from, at: now() };
      let lastSent = now();
      while (page !== null) {
        for (const e of page.events) {
          if (e.cursor <= w.pos) continue;
          w.pos = e.cursor;
          if (!matches(filter, e)) continue;
          w.taken = e.cursor;
          yield { kind: "event", event: e };
          lastSent = now();
        }
        if (page.head > w.pos) w.pos = page.head;
        if (signal.aborted) return;
        if (w.pos >= ringFloor) {
          goLive(w);
          break;
        }
        if (now() - lastSent >= heartbeatMs) {
          w.taken = w.pos;
          yield { kind: "heartbeat", cursor: w.pos, at: now() };
          lastSent = now();
        }
        page = await readAfter(w.pos);
      }
      for (const e of w.backlog.splice(0)) {
        if (!matches(filter, e)) continue;
        w.taken = e.cursor;
        yield { kind: "event", event: e };
      }
      for (;;) {
        if (w.failure) throw w.failure;
        const item = w.queue.shift();
        if (item) {
          w.taken = item.kind === "event" ? item.event.cursor : item.cursor;
          yield item;
          continue;
        }
        if (signal.aborted || stopped) return;
        await new Promise<void>((resolve) => {
          w.wake = resolve;
        });
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      leave(w);
      open--;
      if (open === 0) poke();
    }
  }

  /**
   * Hands the watcher what the reader holds after its cursor (a copy: the memory moves on), then
   * what it reads: called with nothing awaited since the watcher's cursor was found within the
   * memory, so nothing between them can be trimmed away first.
   */
  function goLive(w: Watcher): void {
    const from = ring.findIndex((e) => e.cursor > w.pos);
    if (from !== -1) {
      w.backlog = ring.slice(from);
      w.pos = ring.at(-1)!.cursor;
    }
    join(w);
  }

  function readAfter(cursor: string) {
    return store.eventList({ after: cursor, limit: pageSize });
  }

  return {
    watch,
    get watchers() {
      return open;
    },
    async stop() {
      stopped = true;
      poke();
      for (const w of liveWatchers()) {
        const wake = w.wake;
        w.wake = null;
        wake?.();
      }
      await reading;
    },
  };
}
