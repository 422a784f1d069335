import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import type { JobEvent } from "../../../gen/jobqueue/v1/job_pb.js";
import type { WatchJobsRequest } from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import type { Api } from "../api/client.js";
import { useVisible } from "./visible.js";

const RETRY_MS = [1_000, 2_000, 5_000, 10_000];
/** Events close together cause one refresh, at most this often (by default). */
const COALESCE_MS = 400;

/**
 * Follows WatchJobs (a Connect server stream, sent with the session's key like every call) while
 * the tab is visible, and calls `onChange` after events that match `filter`, several close
 * together coalesced into one call. Resumes after a broken stream from the last cursor it read
 * (nothing missed, nothing twice); a cursor the server no longer keeps starts over from now,
 * with one `onChange` to read the view afresh. Answers whether the stream is open now.
 */
export function useJobEvents(
  api: Api,
  filter: Partial<Pick<WatchJobsRequest, "status" | "tag" | "queue" | "jobIds">>,
  onChange: (events: JobEvent[]) => void,
  options: { coalesceMs?: number } = {},
): boolean {
  const coalesceMs = options.coalesceMs ?? COALESCE_MS;
  const visible = useVisible();
  const [live, setLive] = useState(false);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  const filterKey = JSON.stringify(filter);

  useEffect(() => {
    if (!visible) return;
    const ac = new AbortController();
    let cursor = "";
    let pending: JobEvent[] = [];
    let timer: ReturnType<typeof setTimeout> | undefined;
    const flush = () => {
      timer = undefined;
      const events = pending;
      pending = [];
      if (!ac.signal.aborted) onChangeRef.current(events);
    };
    const watch = async () => {
      for (let failures = 0; !ac.signal.aborted; ) {
        try {
          const stream = api.watchJobs(
            { ...JSON.parse(filterKey), afterCursor: cursor },
            { signal: ac.signal },
          );
          for await (const res of stream) {
            setLive(true);
            failures = 0;
            if (res.kind.case === "heartbeat") cursor = res.kind.value.cursor;
            if (res.kind.case === "event") {
              cursor = res.kind.value.cursor;
              pending.push(res.kind.value);
              timer ??= setTimeout(flush, coalesceMs);
            }
          }
        } catch (err) {
          if (ac.signal.aborted) return;
          // OUT_OF_RANGE (the cursor is too old): start over from now, reading the view again.
          if (ConnectError.from(err).code === Code.OutOfRange) {
            cursor = "";
            onChangeRef.current([]);
          }
        }
        setLive(false);
        await sleep(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]!, ac.signal);
      }
    };
    void watch();
    return () => {
      ac.abort();
      clearTimeout(timer);
      setLive(false);
    };
  }, [api, filterKey, visible, coalesceMs]);

  return live;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
