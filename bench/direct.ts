/**
 * Contestant 1, the physical limit: the same N HTTP calls made directly with undici at the same
 * concurrency C, no queue. Each call's status and body are kept (in memory).
 */
import { Agent, request } from "undici";
import { nowMs, runChild } from "./child-main.js";

export interface DirectParams {
  url: string;
  n: number;
  concurrency: number;
}

export interface DirectResult {
  n: number;
  elapsedMs: number;
  ok: number;
}

runChild<DirectParams>(async ({ url, n, concurrency }, ctx): Promise<DirectResult> => {
  // The same pool settings as JobQueue's dispatcher (src/worker/dispatcher.ts).
  const agent = new Agent({ headersTimeout: 0, bodyTimeout: 0, keepAliveTimeout: 4_000 });
  const results: { status: number; body: Buffer }[] = new Array(n);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const res = await request(url, { method: "GET", dispatcher: agent });
      const body = Buffer.from(await res.body.arrayBuffer());
      results[i] = { status: res.statusCode, body };
      done++;
      ctx.progress("calls", done, n);
    }
  };
  const started = nowMs();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsedMs = nowMs() - started;
  await agent.close();
  const ok = results.filter((r) => r.status === 200 && r.body.length > 0).length;
  return { n, elapsedMs, ok };
});
