/**
 * The JobQueue submitting client, a separate process that talks to the real server. Jobs are
 * submitted over `protocol`: REST (the default: `POST /jobs` and `POST /jobs:batch` JSON over
 * HTTP/1.1, one keep-alive connection per call in flight, as users' HTTP clients do), gRPC or
 * Connect (binary, HTTP/2 cleartext, one connection, calls multiplexed on it). Waiting, checks and
 * the other modes use gRPC.
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
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { Pool } from "undici";
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

/** How jobs are submitted. */
export type SubmitProtocol = "rest" | "grpc" | "connect";

export type JobQueueClientParams = Common &
  (
    | {
        mode: "e2e" | "enqueue";
        n: number;
        submit: "batch" | "unary";
        protocol?: SubmitProtocol;
        batchSize: number;
        batchInflight: number;
        rpcInflight: number;
      }
    | { mode: "noop"; n: number; rpcInflight: number }
    | {
        mode: "latency";
        rate: number;
        warmupMs: number;
        measureMs: number;
        protocol?: SubmitProtocol;
      }
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
  /** Calls that failed before the window's end. */
  errors: number;
  /** Calls still in flight when the window ended (one per lane at most), cut by their timeout. */
  cut: number;
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
    case "latency": {
      const submitter = createSubmitter(p.server, p.protocol ?? "rest", 64);
      await submitter.warm();
      try {
        return await openLoopLatency(p, (url) => submitter.unary({ method: "GET", url }));
      } finally {
        await submitter.close();
      }
    }
    case "rss-load":
      return rssLoad(p, client);
  }
});

type Client = ReturnType<typeof createClient<typeof JobQueueService>>;

/** A job as the submitter sends it: the few fields the benchmark sets. */
interface BenchJob {
  method: string;
  url: string;
  /** Milliseconds since the epoch, or absent for "now". */
  scheduledAtMs?: number;
}

/** Submits jobs over one protocol; each call resolves with how many jobs came back queued. */
interface Submitter {
  unary(job: BenchJob): Promise<number>;
  batch(jobs: BenchJob[]): Promise<number>;
  /** Opens the connections (health checks, no job). */
  warm(): Promise<void>;
  close(): Promise<void>;
}

function createSubmitter(server: string, protocol: SubmitProtocol, width: number): Submitter {
  if (protocol === "rest") {
    // HTTP/1.1 keep-alive, one connection per call in flight (no pipelining), JSON bodies.
    const pool = new Pool(server, { connections: width, pipelining: 1 });
    const toJson = (j: BenchJob) =>
      j.scheduledAtMs === undefined
        ? { method: j.method, url: j.url }
        : { method: j.method, url: j.url, scheduled_at: new Date(j.scheduledAtMs).toISOString() };
    const post = async (path: string, body: unknown) => {
      const res = await pool.request({
        path,
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      const text = await res.body.text();
      if (res.statusCode !== 200) throw new Error(`POST ${path}: ${res.statusCode} ${text}`);
      return JSON.parse(text) as unknown;
    };
    return {
      async unary(job) {
        const r = (await post("/jobs", toJson(job))) as { status: string };
        return r.status === "queued" ? 1 : 0;
      },
      async batch(jobs) {
        const r = (await post("/jobs:batch", { jobs: jobs.map(toJson) })) as {
          jobs: { status: string }[];
        };
        return r.jobs.filter((j) => j.status === "queued").length;
      },
      async warm() {
        await Promise.all(
          Array.from({ length: width }, async () => {
            const res = await pool.request({ path: "/healthz", method: "GET" });
            await res.body.dump();
          }),
        );
      },
      close: () => pool.close(),
    };
  }
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: server })
      : createConnectTransport({ baseUrl: server, httpVersion: "2", useBinaryFormat: true });
  const client = createClient(JobQueueService, transport);
  const health = createClient(Health, transport);
  const toMessage = (j: BenchJob): MessageInit =>
    j.scheduledAtMs === undefined
      ? { method: j.method, url: j.url }
      : { method: j.method, url: j.url, scheduledAt: timestampFromMs(j.scheduledAtMs) };
  return {
    async unary(job) {
      const res = await client.enqueueJob(toMessage(job));
      return res.status === JobStatus.QUEUED ? 1 : 0;
    },
    async batch(jobs) {
      const res = await client.enqueueJobs({ jobs: jobs.map(toMessage) });
      return res.jobs.filter((j) => j.status === JobStatus.QUEUED).length;
    },
    async warm() {
      await health.check({ service: "" });
    },
    close: async () => {},
  };
}

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
  const job: BenchJob = { method: "GET", url: `${p.target}/json?run=${p.run}` };
  // Enqueue-only: a day ahead, so the worker pool leaves them alone.
  if (p.mode === "enqueue") job.scheduledAtMs = Date.now() + 86_400_000;
  const batches = Math.ceil(p.n / p.batchSize);
  const batchLength = (b: number) => Math.min(p.batchSize, p.n - b * p.batchSize);
  const width = p.submit === "batch" ? p.batchInflight : p.rpcInflight;
  const submitter = createSubmitter(p.server, p.protocol ?? "rest", width);
  // Open the connections before the clock starts.
  await submitter.warm();
  let accepted = 0;

  const started = nowMs();
  if (p.submit === "batch") {
    await lanes(
      batches,
      p.batchInflight,
      async (b) => {
        const queued = await submitter.batch(new Array(batchLength(b)).fill(job));
        accepted += queued;
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
        const queued = await submitter.unary(job);
        accepted += queued;
      },
      ctx,
      "submit",
    );
  }
  const submitMs = nowMs() - started;
  await submitter.close();
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
  let cut = 0;
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
        if (nowMs() >= until) {
          cut++;
          break;
        }
        errors++;
        await sleep(50);
      }
    }
  };
  await Promise.all(Array.from({ length: p.inflight }, (_, k) => lane(k)));
  return { reads, enqueues, errors, cut };
}
