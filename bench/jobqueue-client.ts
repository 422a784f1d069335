/**
 * The JobQueue submitting client, a separate process that talks to the real server over gRPC
 * (HTTP/2 cleartext, one connection, calls multiplexed on it).
 *
 * Modes:
 * - `e2e`: submit N jobs (batch: EnqueueJobs of `batchSize`, `batchInflight` requests at a time;
 *   unary: EnqueueJob with `rpcInflight` calls in flight), then wait until the last job is
 *   `succeeded`: first until the target has seen N calls (a counter on the target, so the server is
 *   not polled while it works), then ListJobs(status = queued|running, page_size = 1) every 2 ms
 *   until it is empty. The clock stops there. Afterwards (not timed) every job is checked:
 *   ListJobs(succeeded) pages must count N, none may be in another status, and a sample of
 *   GetJobResult must hold the target's 200 and body.
 * - `enqueue`: submit N jobs scheduled a day ahead (so that no worker runs them) and time the
 *   submits alone.
 * - `noop`: N grpc.health.v1.Health/Check calls with `rpcInflight` in flight: the transport's limit
 *   on the same server; then 1000 calls one at a time: the round trip under every latency figure.
 * - `latency`: EnqueueJob at a steady rate (open loop); each job calls the target's /lat with the
 *   client's CLOCK_MONOTONIC send time, so the target measures enqueue→start.
 * - `rss-load`: a mix of reads (ListJobs, GetJob, GetJobResult) and enqueues for a while.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { JobStatus } from "../gen/jobqueue/v1/job_pb.js";
import {
  type EnqueueJobRequest,
  JobQueueService,
} from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { type ChildContext, nowMs, runChild, sleep } from "./child-main.js";
import { openLoopLatency, targetCount } from "./open-loop.js";

type MessageInit = Partial<Omit<EnqueueJobRequest, "$typeName" | "$unknown">>;

interface Common {
  server: string;
  target: string;
  run: string;
}

export type JobQueueClientParams = Common &
  (
    | {
        mode: "e2e" | "enqueue";
        n: number;
        submit: "batch" | "unary";
        batchSize: number;
        batchInflight: number;
        rpcInflight: number;
      }
    | { mode: "noop"; n: number; rpcInflight: number }
    | { mode: "latency"; rate: number; warmupMs: number; measureMs: number }
    | { mode: "rss-load"; durationMs: number; inflight: number }
  );

export interface E2eResult {
  n: number;
  submitMs: number;
  elapsedMs: number;
  succeeded: number;
  notSucceeded: number;
  sampleOk: number;
  sampleSize: number;
}

export interface RateResult {
  n: number;
  elapsedMs: number;
}

export interface NoopResult extends RateResult {
  /** Round trips of calls made one at a time after the rate run (200 warm-up calls left out). */
  roundTripsMs: number[];
}

export interface RssLoadResult {
  reads: number;
  enqueues: number;
  errors: number;
}

runChild<JobQueueClientParams>(async (p, ctx) => {
  const transport = createGrpcTransport({ baseUrl: p.server });
  const client = createClient(JobQueueService, transport);
  const health = createClient(Health, transport);
  // Open the HTTP/2 connection before any clock starts (the BullMQ client is connected too); not
  // for rss-load, whose server may be too busy to answer for a long while.
  if (p.mode !== "rss-load") await health.check({ service: "" });
  switch (p.mode) {
    case "e2e":
    case "enqueue":
      return submitAndWait(p, client, ctx);
    case "noop": {
      const started = nowMs();
      await lanes(
        p.n,
        p.rpcInflight,
        async () => {
          await health.check({ service: "" });
        },
        ctx,
        "calls",
      );
      const elapsedMs = nowMs() - started;
      // Then one call at a time: the round trip under every enqueue→start figure.
      const roundTripsMs: number[] = [];
      for (let i = 0; i < 1000; i++) {
        const t = nowMs();
        await health.check({ service: "" });
        if (i >= 200) roundTripsMs.push(nowMs() - t);
      }
      return { n: p.n, elapsedMs, roundTripsMs } satisfies NoopResult;
    }
    case "latency":
      return openLoopLatency(p, (url) => client.enqueueJob({ method: "GET", url }));
    case "rss-load":
      return rssLoad(p, client);
  }
});

type Client = ReturnType<typeof createClient<typeof JobQueueService>>;

/** Runs `count` tasks with at most `width` in flight, reporting progress. */
async function lanes(
  count: number,
  width: number,
  task: (i: number) => Promise<unknown>,
  ctx: ChildContext,
  stage: string,
  weight = (_i: number) => 1,
  total = count,
): Promise<void> {
  let next = 0;
  let done = 0;
  const lane = async () => {
    for (;;) {
      const i = next++;
      if (i >= count) return;
      await task(i);
      done += weight(i);
      ctx.progress(stage, done, total);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, lane));
}

async function submitAndWait(
  p: Extract<JobQueueClientParams, { mode: "e2e" | "enqueue" }>,
  client: Client,
  ctx: ChildContext,
): Promise<E2eResult | RateResult> {
  const job: MessageInit = { method: "GET", url: `${p.target}/json?run=${p.run}` };
  // Enqueue-only: a day ahead, so the worker pool leaves them alone.
  if (p.mode === "enqueue") job.scheduledAt = timestampFromMs(Date.now() + 86_400_000);
  const batches = Math.ceil(p.n / p.batchSize);
  const batchLength = (b: number) => Math.min(p.batchSize, p.n - b * p.batchSize);
  let accepted = 0;

  const started = nowMs();
  if (p.submit === "batch") {
    await lanes(
      batches,
      p.batchInflight,
      async (b) => {
        const res = await client.enqueueJobs({ jobs: new Array(batchLength(b)).fill(job) });
        accepted += res.jobs.filter((j) => j.status === JobStatus.QUEUED).length;
      },
      ctx,
      "submit",
      batchLength,
      p.n,
    );
  } else {
    await lanes(
      p.n,
      p.rpcInflight,
      async () => {
        const res = await client.enqueueJob(job);
        if (res.status === JobStatus.QUEUED) accepted++;
      },
      ctx,
      "submit",
    );
  }
  const submitMs = nowMs() - started;
  if (accepted !== p.n) throw new Error(`${accepted} of ${p.n} jobs were accepted as queued`);
  if (p.mode === "enqueue") return { n: p.n, elapsedMs: submitMs };

  // Wait for the target to have seen every call, without loading the server.
  for (;;) {
    const count = await targetCount(p.target, p.run);
    ctx.progress("run", Math.min(count, p.n), p.n);
    if (count >= p.n) break;
    await sleep(10);
  }
  // Then for the last results to be stored: nothing queued or running any more.
  const pending = [JobStatus.QUEUED, JobStatus.RUNNING];
  while ((await client.listJobs({ status: pending, pageSize: 1 })).jobs.length > 0) await sleep(2);
  const elapsedMs = nowMs() - started;

  // Verification, not timed.
  let succeeded = 0;
  const ids: string[] = [];
  let pageToken = "";
  do {
    const page = await client.listJobs({
      status: [JobStatus.SUCCEEDED],
      pageSize: 1000,
      pageToken,
    });
    succeeded += page.jobs.length;
    if (ids.length < 100) ids.push(...page.jobs.slice(0, 10).map((j) => j.jobId));
    pageToken = page.nextPageToken ?? "";
  } while (pageToken);
  const others = await client.listJobs({
    status: [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELED],
    pageSize: 1000,
  });
  let sampleOk = 0;
  for (const jobId of ids) {
    const r = await client.getJobResult({ jobId });
    const body = r.responseBody?.kind;
    if (r.responseStatus === 200 && body?.case === "structValue") sampleOk++;
  }
  return {
    n: p.n,
    submitMs,
    elapsedMs,
    succeeded,
    notSucceeded: others.jobs.length,
    sampleOk,
    sampleSize: ids.length,
  };
}

async function rssLoad(
  p: Extract<JobQueueClientParams, { mode: "rss-load" }>,
  client: Client,
): Promise<RssLoadResult> {
  const until = nowMs() + p.durationMs;
  let reads = 0;
  let enqueues = 0;
  let errors = 0;
  let ids: string[] = [];
  const lane = async (k: number) => {
    while (nowMs() < until) {
      // A call may not outlive the window: a server busy with its backlog answers late or never.
      const options = { timeoutMs: Math.max(1, Math.round(until - nowMs())) };
      try {
        if (k % 4 === 0 || ids.length === 0) {
          const page = await client.listJobs({ pageSize: 100 }, options);
          ids = page.jobs.map((j) => j.jobId);
          reads++;
        } else if (k % 4 === 1) {
          await client.enqueueJob({ method: "GET", url: `${p.target}/json?run=${p.run}` }, options);
          enqueues++;
        } else {
          const jobId = ids[Math.floor(Math.random() * ids.length)]!;
          await (k % 4 === 2
            ? client.getJob({ jobId }, options)
            : client.getJobResult({ jobId }, options));
          reads++;
        }
      } catch {
        errors++;
        if (nowMs() >= until) break;
        await sleep(50);
      }
    }
  };
  await Promise.all(Array.from({ length: p.inflight }, (_, k) => lane(k)));
  return { reads, enqueues, errors };
}
