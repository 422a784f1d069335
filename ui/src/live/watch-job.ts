import { Code, ConnectError } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import { type CallProgress, type Job, JobStatus } from "../../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "../api/client.js";
import { isTerminal } from "../format.js";
import { useVisible } from "./visible.js";

export interface WatchedJob {
  job: Job | undefined;
  error: unknown;
  /** Whether the server is streaming this job's changes now. */
  live: boolean;
  /** How far the running attempt's call has come, as the stream last told (null: not running). */
  progress: CallProgress | null;
}

const RETRY_MS = [1_000, 2_000, 5_000, 10_000];

/**
 * One job, kept current by WatchJob (the server streams the job now and after each change, and
 * ends the stream once the job is terminal). The stream is closed while the tab is hidden and
 * opened again when it shows; a broken stream is reopened with a backoff, reading the job once
 * meanwhile. `refreshKey` forces a new stream (after an action).
 */
export function useWatchedJob(api: Api, jobId: string, refreshKey = 0): WatchedJob {
  const visible = useVisible();
  const [job, setJob] = useState<Job | undefined>(undefined);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState(false);
  const [progress, setProgress] = useState<CallProgress | null>(null);
  const terminal = useRef(false);
  const current = useRef(jobId);

  useEffect(() => {
    if (current.current !== jobId) {
      current.current = jobId;
      terminal.current = false;
      setJob(undefined);
      setError(null);
    }
  }, [jobId]);

  useEffect(() => {
    if (!visible || (terminal.current && refreshKey === 0)) return;
    const ac = new AbortController();
    const watch = async () => {
      for (let failures = 0; !ac.signal.aborted; ) {
        try {
          setLive(true);
          for await (const res of api.watchJob({ jobId }, { signal: ac.signal })) {
            if (!res.job) continue;
            failures = 0;
            setJob(res.job);
            setError(null);
            if (res.job.status !== JobStatus.RUNNING) setProgress(null);
            else if (res.event?.progress) setProgress(res.event.progress);
            terminal.current = isTerminal(res.job.status);
          }
          setLive(false);
          if (terminal.current) return;
          // Ended before the job did (the server is stopping, say): open it again shortly.
          await sleep(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]!, ac.signal);
        } catch (err) {
          setLive(false);
          if (ac.signal.aborted) return;
          const code = ConnectError.from(err).code;
          setError(err);
          const final = [
            Code.NotFound,
            Code.InvalidArgument,
            Code.PermissionDenied,
            Code.Unauthenticated,
          ];
          if (final.includes(code)) return;
          await sleep(RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]!, ac.signal);
          try {
            const res = await api.getJob({ jobId }, { signal: ac.signal });
            if (res.job) setJob(res.job);
          } catch {
            // the next stream reports it
          }
        }
      }
    };
    void watch();
    return () => {
      ac.abort();
      setLive(false);
    };
  }, [api, jobId, visible, refreshKey]);

  return { job, error, live, progress };
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
