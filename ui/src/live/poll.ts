import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { useVisible } from "./visible.js";

/**
 * How often a view reads again while visible when nothing else tells it to (views that follow
 * WatchJobs read again on its events and set a longer interval, as a safety net).
 */
export const LIST_POLL_MS = 5_000;

export interface Polled<T> {
  data: T | undefined;
  error: unknown;
  /** When the data was last loaded. */
  updatedAt: Date | null;
  loading: boolean;
  /** Whether it refreshes now (false while the tab is hidden). */
  live: boolean;
  /** Loads again now (after an action, say). */
  refresh(): void;
}

/**
 * Loads `load()` now and every `intervalMs` after each load ends (never two at once) while the tab
 * is visible; pauses while it is hidden and loads at once when it shows again. A new `key` (the
 * filter, the page) starts over. A view that follows WatchJobs (live/watch-jobs.ts) calls
 * `refresh` on its events, with the timer as its fallback. `keepOnNewKey` keeps
 * showing the data of the previous key until the new key's arrives.
 */
export function usePoll<T>(
  load: (signal: AbortSignal) => Promise<T>,
  key: string,
  options: { intervalMs?: number; keepOnNewKey?: boolean } = {},
): Polled<T> {
  const intervalMs = options.intervalMs ?? LIST_POLL_MS;
  const keep = options.keepOnNewKey ?? false;
  const visible = useVisible();
  const [state, setState] = useState<{ data?: T; error: unknown; updatedAt: Date | null }>({
    error: null,
    updatedAt: null,
  });
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const keyRef = useRef(key);

  useEffect(() => {
    if (keyRef.current !== key) {
      keyRef.current = key;
      if (!keep) setState({ error: null, updatedAt: null });
    }
    if (!visible) return;
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      setLoading(true);
      try {
        const data = await loadRef.current(ac.signal);
        if (ac.signal.aborted) return;
        setState({ data, error: null, updatedAt: new Date() });
      } catch (error) {
        if (ac.signal.aborted) return;
        setState((s) => ({ ...s, error }));
      } finally {
        if (!ac.signal.aborted) {
          setLoading(false);
          timer = setTimeout(run, intervalMs);
        }
      }
    };
    void run();
    return () => {
      ac.abort();
      clearTimeout(timer);
    };
  }, [key, visible, tick, intervalMs]);

  const refresh = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, data: state.data, loading, live: visible, refresh };
}
