/**
 * The store micro-benchmark, in-process against the real store: a SQLite file on disk (each
 * commit fdatasynced), or a PostgreSQL schema when `path` is a `postgres://…?schema=…` URL.
 *
 * - `prefill`: inserts `size` due jobs (as the server would store a GET to the target) with
 *   jobInsertMany in batches of 1000.
 * - `claim`: with the queue `depth` deep, repeats a cycle: jobClaim(limit C), then one
 *   jobFinishAttempt per claimed job (succeeded, with the target's small response as result) —
 *   timed; then, untimed, inserts as many new jobs as were claimed so the depth stays put. Runs
 *   until `claims` jobs were claimed or `maxMs` passed, whichever comes first.
 */
import { existsSync } from "node:fs";
import { monotonicFactory } from "ulid";
import { parseDbUrl } from "../src/config.js";
import { openStore } from "../src/store/open-store.js";
import { nowMs, runChild } from "./child-main.js";
import { benchJob, benchSuccess } from "./new-job.js";

export type StoreClaimParams =
  | { mode: "prefill"; path: string; size: number; url: string }
  | {
      mode: "claim";
      path: string;
      /** Prefilled here first if the file does not exist (small depths; PostgreSQL: unless `prefilled`). */
      depth: number;
      prefilled?: boolean;
      url: string;
      concurrency: number;
      claims: number;
      maxMs: number;
    };

export interface ClaimResult {
  depth: number;
  claimed: number;
  cycles: number;
  /** Time in jobClaim plus jobFinishAttempt calls. */
  cycleMs: number;
  /** Time in jobClaim calls alone. */
  claimMs: number;
  timedOut: boolean;
}

runChild<StoreClaimParams>(async (p, ctx) => {
  const postgres = /^postgres(ql)?:/.test(p.path);
  const fresh = postgres ? !(p.mode === "claim" && p.prefilled) : !existsSync(p.path);
  const store = await openStore(postgres ? parseDbUrl(p.path) : { kind: "sqlite", path: p.path });
  const nextUlid = monotonicFactory();
  const newJob = (now: number) => benchJob(`j_${nextUlid(now)}`, now, p.url);

  const insert = async (count: number, report?: (done: number) => void) => {
    for (let done = 0; done < count; ) {
      const now = Date.now();
      const batch = Math.min(1000, count - done);
      await store.jobInsertMany(Array.from({ length: batch }, () => newJob(now)));
      done += batch;
      report?.(done);
    }
  };

  try {
    if (p.mode === "prefill") {
      const started = nowMs();
      await insert(p.size, (done) => ctx.progress("prefill", done, p.size));
      return { size: p.size, elapsedMs: nowMs() - started };
    }

    if (fresh) await insert(p.depth);
    let claimed = 0;
    let cycles = 0;
    let cycleMs = 0;
    let claimMs = 0;
    const node = "bench";
    const deadline = nowMs() + p.maxMs;
    while (claimed < p.claims && nowMs() < deadline) {
      const t0 = nowMs();
      const { jobs } = await store.jobClaim({
        queues: [{ name: "default", limit: p.concurrency, rate: null }],
        limit: p.concurrency,
        leaseMs: 30_000,
        node,
      });
      const t1 = nowMs();
      // The outcomes land together, as a worker pool's do (they share a group commit).
      await Promise.all(
        jobs.map((job) => {
          return store.jobFinishAttempt(benchSuccess(job));
        }),
      );
      const t2 = nowMs();
      if (jobs.length === 0) throw new Error("the queue ran dry: nothing to claim");
      claimed += jobs.length;
      cycles++;
      claimMs += t1 - t0;
      cycleMs += t2 - t0;
      ctx.progress("claim", Math.min(claimed, p.claims), p.claims);
      await insert(jobs.length);
    }
    return {
      depth: p.depth,
      claimed,
      cycles,
      cycleMs,
      claimMs,
      timedOut: claimed < p.claims,
    } satisfies ClaimResult;
  } finally {
    await store.close();
  }
});
