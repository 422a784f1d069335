/**
 * A job's whole life in the SQLite store alone, in this process: per cycle, `--c` jobs enqueued
 * by as many concurrent jobInsert calls (each with its audit row, as an enqueue writes them),
 * claimed, then finished with a stored result, each write through the store's group commit. Reports
 * the store's CPU time per job (process.cpuUsage) and jobs/s; a tool for comparing store changes.
 *
 *   node --import tsx bench/store-cycle.ts [--jobs 20000] [--c 64] [--dir /tmp]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { monotonicFactory } from "ulid";
import { createSqliteJobStore } from "../src/store/sqlite/sqlite-job-store.js";
import { benchJob, benchSuccess } from "./new-job.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "20000" },
    c: { type: "string", default: "64" },
    dir: { type: "string", default: tmpdir() },
  },
});
const JOBS = Number(values.jobs);
const C = Number(values.c);
const dir = mkdtempSync(join(values.dir!, "store-cycle-"));
const store = createSqliteJobStore({ path: join(dir, "jobs.db") });
const nextUlid = monotonicFactory();
const url = "http://127.0.0.1:9/json";
const newJob = (now: number) => benchJob(`j_${nextUlid(now)}`, now, url);

async function cycle(): Promise<number> {
  const now = Date.now();
  await Promise.all(
    Array.from({ length: C }, () =>
      store.jobInsert(newJob(now), {
        at: now,
        principal: null,
        action: "EnqueueJob",
        jobId: null,
        remoteAddress: "127.0.0.1",
        protocol: "rest",
        outcome: "ok",
        detail: null,
      }),
    ),
  );
  const { jobs } = await store.jobClaim({
    queues: [{ name: "default", limit: C, rate: null }],
    limit: C,
    leaseMs: 30_000,
    node: "bench",
  });
  await Promise.all(jobs.map((job) => store.jobFinishAttempt(benchSuccess(job))));
  return jobs.length;
}

try {
  for (let i = 0; i < 20; i++) await cycle(); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  let done = 0;
  while (done < JOBS) done += await cycle();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const cpuUs = cpu.user + cpu.system;
  process.stdout.write(
    `${done} jobs in ${(ms / 1000).toFixed(2)} s: ${Math.round(done / (ms / 1000))} jobs/s, ` +
      `${Math.round(cpuUs / done)} µs CPU per job (user ${Math.round(cpu.user / done)}, system ${Math.round(cpu.system / done)})\n`,
  );
} finally {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
}
