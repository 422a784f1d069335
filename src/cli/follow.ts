import { Code, ConnectError } from "@connectrpc/connect";
import type { Job } from "../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "./client.js";
import { isTerminal } from "./output.js";

const RETRY_MS = [500, 1_000, 2_000, 5_000];

/**
 * Follows one job with WatchJob until it is terminal, calling `onJob` with the job now and after
 * each change; resolves with the terminal job. A stream that breaks (the server restarts, the
 * network blips) is opened again with a backoff; a refusal or NOT_FOUND ends it with the error.
 * TODO(issue 8): `watch` of a filter follows WatchJobs the same way, from a cursor.
 */
export async function followJob(
  api: Api,
  jobId: string,
  onJob: (job: Job) => void,
  signal?: AbortSignal,
): Promise<Job> {
  let last: Job | undefined;
  for (let failures = 0; ; ) {
    try {
      for await (const res of api.watchJob({ jobId }, { timeoutMs: 0, signal })) {
        if (!res.job) continue;
        failures = 0;
        last = res.job;
        onJob(res.job);
        if (isTerminal(res.job.status)) return res.job;
      }
    } catch (err) {
      const code = ConnectError.from(err).code;
      if (signal?.aborted || ![Code.Unavailable, Code.Internal, Code.Unknown].includes(code)) {
        throw err;
      }
      if (failures >= 20) throw err;
    }
    if (last && isTerminal(last.status)) return last;
    await new Promise((r) => setTimeout(r, RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)]));
  }
}
