import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { startTarget } from "../helpers/target.js";
import { waitFor } from "../helpers/wait-for.js";
import { scale } from "./harness.js";

/**
 * kill -9 soak: one server on a SQLite file, jobs submitted all along, SIGKILLed several times in
 * the middle of its work and started again on the same file. Every acknowledged job must end
 * succeeded, and the only calls made twice are those the killed processes had in flight (at most
 * JOBQUEUE_CONCURRENCY per kill).
 */
const JOBS = scale(5_000, 1_500);
const KILLS = scale(5, 3);
const CONCURRENCY = 16;

const dir = mkdtempSync(join(tmpdir(), "jobqueue-soak-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("kill -9 soak", () => {
  it(`${JOBS} jobs through ${KILLS} SIGKILLs: none lost, none finished twice, extra calls ≤ calls in flight at the kills`, async () => {
    const target = await startTarget();
    const calls = new Map<string, number>();
    /** Requests the target has received and not yet answered. */
    let open = 0;
    target.on("/work", (req, res) => {
      const i = req.query.get("i")!;
      calls.set(i, (calls.get(i) ?? 0) + 1);
      open++;
      setTimeout(
        () => {
          res.writeHead(200).end("ok");
          open--;
        },
        5 + Math.floor(Math.random() * 20),
      );
    });
    const dbPath = join(dir, "jobqueue.db");
    const env = {
      JOBQUEUE_PORT: "0",
      JOBQUEUE_DB_URL: `sqlite:///${dbPath}`,
      JOBQUEUE_CONCURRENCY: String(CONCURRENCY),
      JOBQUEUE_LEASE_SECONDS: "2",
      JOBQUEUE_POLL_INTERVAL: "0.1",
    };
    let server: ServerProcess = await startServerProcess(env);

    // The submitter: batches of 100 to whichever server is up; a batch that gets no answer (the
    // server died under it) is not acknowledged, and is sent again with new numbers.
    const acknowledged = new Map<string, string>(); // i → job id
    let nextI = 0;
    let submitting = true;
    const submitter = (async () => {
      while (submitting && nextI < JOBS) {
        const batch = Array.from({ length: Math.min(100, JOBS - nextI) }, (_, k) => nextI + k);
        nextI += batch.length;
        const current = server;
        try {
          const res = await current.rest.post("/jobs:batch", {
            jobs: batch.map((i) => ({ url: `${target.url}/work?i=${i}`, max_attempts: 10 })),
          });
          expect(res.status).toBe(200);
          res.json.jobs.forEach((j: { job_id: string }, k: number) => {
            acknowledged.set(String(batch[k]), j.job_id);
          });
        } catch {
          // Killed mid-request: wait for the next server.
          await waitFor(() => server !== current && !server.hasExited, {
            what: "the next server",
            timeoutMs: 60_000,
          });
        }
      }
    })();

    const inFlightAtKills: number[] = [];
    for (let k = 1; k <= KILLS; k++) {
      // Kill once the target has seen this share of the jobs, while calls are in flight.
      const share = (JOBS * k) / (KILLS + 1);
      await waitFor(() => calls.size >= share && open > 0, {
        what: `${share} jobs called`,
        timeoutMs: 120_000,
        intervalMs: 2,
      });
      inFlightAtKills.push(open);
      server.kill("SIGKILL");
      await server.exited;
      server = await startServerProcess(env);
    }
    await submitter;
    submitting = false;
    expect(acknowledged.size).toBeGreaterThanOrEqual(JOBS - 100 * KILLS);

    await waitFor(
      async () => {
        const res = await server.rest.get("/jobs?status=queued&status=running&page_size=1");
        return res.status === 200 && res.json.jobs.length === 0;
      },
      { what: "every job to end", timeoutMs: 180_000, intervalMs: 250 },
    );
    server.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);
    await target.close();

    // Read what happened through the store, with the server stopped.
    const store = createSqliteJobStore({ path: dbPath });
    try {
      let extra = 0;
      for (const [i, id] of acknowledged) {
        const job = await store.jobGet({ id });
        expect(job?.status, `job ${i}`).toBe("succeeded");
        const attempts = await store.attemptList({ jobId: id });
        // Finished once: one succeeded attempt; any other was lost with a killed process.
        expect(
          attempts.filter((a) => a.outcome === "succeeded"),
          `job ${i}`,
        ).toHaveLength(1);
        for (const a of attempts) expect(["succeeded", "lost"]).toContain(a.outcome);
        expect(calls.get(i), `calls of job ${i}`).toBeGreaterThanOrEqual(1);
      }
      for (const count of calls.values()) extra += count - 1;
      // A call is made twice only when its process died before its outcome was written: at most
      // the calls it had in flight (JOBQUEUE_CONCURRENCY) per kill.
      console.info(
        `kill soak: ${acknowledged.size} jobs acknowledged, ${KILLS} kills, in flight at the target at each kill ${JSON.stringify(inFlightAtKills)}, ${extra} calls made twice`,
      );
      expect(extra).toBeLessThanOrEqual(KILLS * CONCURRENCY);
    } finally {
      await store.close();
    }
  });
});
