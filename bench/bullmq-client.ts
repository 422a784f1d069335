/**
 * The BullMQ submitting client, a separate process.
 *
 * Modes:
 * - `e2e`: addBulk in chunks of `batchSize`, `batchInflight` at a time, then wait until the target
 *   has seen N calls and then until the queue's completed count is N (polled every 2 ms): a
 *   completed BullMQ job has its return value stored in Redis. Verified afterwards: no failed job,
 *   a sample of return values holds the target's 200.
 * - `enqueue-bulk`: addBulk alone (no worker runs), timed.
 * - `enqueue-add`: Queue.add one job per call, `rpcInflight` in flight, timed.
 * - `latency`: Queue.add at a steady rate; each job calls the target's /lat with the client's
 *   CLOCK_MONOTONIC send time.
 *
 * Jobs get 3 attempts with exponential backoff from 1 s (JobQueue's defaults) and are kept on
 * completion. The queue is obliterated at the end.
 */
import { Queue } from "bullmq";
import { type ChildContext, nowMs, runChild, sleep } from "./child-main.js";
import { openLoopLatency, targetCount } from "./open-loop.js";

interface Common {
  queue: string;
  redis: { host: string; port: number };
  target: string;
  run: string;
}

export type BullmqClientParams = Common &
  (
    | { mode: "e2e" | "enqueue-bulk"; n: number; batchSize: number; batchInflight: number }
    | { mode: "enqueue-add"; n: number; rpcInflight: number }
    | { mode: "latency"; rate: number; warmupMs: number; measureMs: number }
  );

const JOB_OPTIONS = { attempts: 3, backoff: { type: "exponential", delay: 1000 } };

runChild<BullmqClientParams>(async (p, ctx) => {
  const queue = new Queue(p.queue, { connection: { ...p.redis, maxRetriesPerRequest: null } });
  await queue.waitUntilReady();
  try {
    switch (p.mode) {
      case "e2e":
      case "enqueue-bulk":
        return await bulk(p, queue, ctx);
      case "enqueue-add": {
        const data = { url: `${p.target}/json?run=${p.run}` };
        let next = 0;
        let done = 0;
        const started = nowMs();
        await Promise.all(
          Array.from({ length: p.rpcInflight }, async () => {
            while (next++ < p.n) {
              await queue.add("call", data, JOB_OPTIONS);
              ctx.progress("submit", ++done, p.n);
            }
          }),
        );
        return { n: p.n, elapsedMs: nowMs() - started };
      }
      case "latency":
        return await openLoopLatency(p, (url) => queue.add("call", { url }, JOB_OPTIONS));
    }
  } finally {
    await queue.obliterate({ force: true }).catch(() => {});
    await queue.close();
  }
});

async function bulk(
  p: Extract<BullmqClientParams, { mode: "e2e" | "enqueue-bulk" }>,
  queue: Queue,
  ctx: ChildContext,
) {
  const job = { name: "call", data: { url: `${p.target}/json?run=${p.run}` }, opts: JOB_OPTIONS };
  const batches = Math.ceil(p.n / p.batchSize);
  let nextBatch = 0;
  let submitted = 0;
  const started = nowMs();
  await Promise.all(
    Array.from({ length: Math.min(p.batchInflight, batches) }, async () => {
      for (;;) {
        const b = nextBatch++;
        if (b >= batches) return;
        const length = Math.min(p.batchSize, p.n - b * p.batchSize);
        await queue.addBulk(new Array(length).fill(job));
        submitted += length;
        ctx.progress("submit", submitted, p.n);
      }
    }),
  );
  const submitMs = nowMs() - started;
  if (p.mode === "enqueue-bulk") return { n: p.n, elapsedMs: submitMs };

  for (;;) {
    const count = await targetCount(p.target, p.run);
    ctx.progress("run", Math.min(count, p.n), p.n);
    if (count >= p.n) break;
    await sleep(10);
  }
  while ((await queue.getCompletedCount()) < p.n) await sleep(2);
  const elapsedMs = nowMs() - started;

  const counts = await queue.getJobCounts("completed", "failed", "active", "waiting", "delayed");
  const sample = await queue.getCompleted(0, 99);
  const sampleOk = sample.filter((j) => (j.returnvalue as { status?: number })?.status === 200);
  return {
    n: p.n,
    submitMs,
    elapsedMs,
    succeeded: counts.completed ?? 0,
    notSucceeded:
      (counts.failed ?? 0) + (counts.active ?? 0) + (counts.waiting ?? 0) + (counts.delayed ?? 0),
    sampleOk: sampleOk.length,
    sampleSize: sample.length,
  };
}
