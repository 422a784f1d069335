/**
 * What both submitting clients (JobQueue and BullMQ) share: the target's call counter, and the
 * open-loop sender of the enqueue→start measurement.
 */
import { request } from "undici";
import { nowMs, sleep } from "./child-main.js";

export interface LatencyParams {
  target: string;
  run: string;
  rate: number;
  warmupMs: number;
  measureMs: number;
}

export interface LatencyResult {
  sent: number;
  warmup: number;
  /** How far behind schedule the sender fell at worst, in ms. */
  maxLagMs: number;
}

/** How many calls the target has seen for a run. */
export async function targetCount(target: string, run: string): Promise<number> {
  const res = await request(`${target}/_count?run=${encodeURIComponent(run)}`);
  return ((await res.body.json()) as { count: number }).count;
}

/**
 * Submits jobs at a steady `rate` (open loop: a send does not wait for the one before); each job
 * calls the target's /lat with the CLOCK_MONOTONIC send time, so the target measures enqueue→start.
 * `submit` enqueues one job calling `url`. Resolves once the target has seen every measured job.
 */
export async function openLoopLatency(
  p: LatencyParams,
  submit: (url: string) => Promise<unknown>,
): Promise<LatencyResult> {
  const intervalMs = 1000 / p.rate;
  const warmup = Math.round(p.warmupMs / intervalMs);
  const total = warmup + Math.round(p.measureMs / intervalMs);
  const inFlight: Promise<unknown>[] = [];
  const started = nowMs();
  let maxLagMs = 0;
  for (let i = 0; i < total; i++) {
    const due = started + i * intervalMs;
    const wait = due - nowMs();
    if (wait > 1) await sleep(wait - 0.5);
    while (nowMs() < due) {
      // spin the last half millisecond so sends keep to the schedule
    }
    maxLagMs = Math.max(maxLagMs, nowMs() - due);
    const run = i < warmup ? `${p.run}-warmup` : p.run;
    const t = process.hrtime.bigint();
    inFlight.push(submit(`${p.target}/lat?run=${run}&t=${t}`));
  }
  await Promise.all(inFlight);
  const measured = total - warmup;
  const deadline = nowMs() + 30_000;
  while ((await targetCount(p.target, p.run)) < measured) {
    if (nowMs() > deadline) throw new Error("the target did not see every latency job within 30s");
    await sleep(10);
  }
  return { sent: measured, warmup, maxLagMs };
}
