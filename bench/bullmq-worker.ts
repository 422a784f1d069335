/**
 * Contestant 3's worker: a BullMQ Worker of concurrency C on the local Redis, in its own process,
 * making the same undici call as JobQueue and returning the status and body (kept by BullMQ as the
 * job's return value: jobs are not removed on completion, as JobQueue keeps its results too).
 */
import { Worker } from "bullmq";
import { Agent, request } from "undici";
import { runService } from "./child-main.js";

export interface BullmqWorkerParams {
  queue: string;
  concurrency: number;
  redis: { host: string; port: number };
}

runService<BullmqWorkerParams>(async ({ queue, concurrency, redis }) => {
  // The same pool settings as JobQueue's dispatcher (src/worker/dispatcher.ts).
  const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 4_000 });
  const worker = new Worker(
    queue,
    async (job) => {
      const res = await request(job.data.url as string, {
        method: "GET",
        dispatcher: agent,
        // JobQueue's default per-attempt timeout.
        signal: AbortSignal.timeout(30_000),
      });
      const body = Buffer.from(await res.body.arrayBuffer()).toString("utf8");
      if (res.statusCode >= 500) throw new Error(`status ${res.statusCode}`);
      return { status: res.statusCode, body };
    },
    { connection: { ...redis, maxRetriesPerRequest: null }, concurrency, autorun: true },
  );
  await worker.waitUntilReady();
  return {
    async stop() {
      await worker.close();
      await agent.close();
    },
  };
});
