import { readFileSync } from "node:fs";
import type { ServerProcess } from "../helpers/server-process.js";
import type { Rest } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

/**
 * How big the reliability runs are. `npm run test:reliability` runs them in full; CI runs the
 * bounded form (`JOBQUEUE_RELIABILITY=ci`, a few minutes at most on a shared machine).
 */
export const CI = process.env.JOBQUEUE_RELIABILITY === "ci";

/** `full` in a full run, `ci` in the bounded one. */
export function scale<T>(full: T, ci: T): T {
  return CI ? ci : full;
}

/** The resident memory of a process now, in bytes (from /proc). */
export function rssOf(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kb[1]) * 1024;
}

/** Samples a process's RSS every `everyMs` until stopped; `max` is the largest seen. */
export function sampleRss(pid: number, everyMs = 50) {
  const samples: number[] = [];
  const take = () => {
    try {
      samples.push(rssOf(pid));
    } catch {
      // the process has exited
    }
  };
  take();
  const timer = setInterval(take, everyMs);
  return {
    samples,
    get max() {
      return Math.max(...samples);
    },
    stop() {
      clearInterval(timer);
      take();
    },
  };
}

/** Every job the server lists (all pages), by id. */
export async function listAll(rest: Rest): Promise<Map<string, any>> {
  const jobs = new Map<string, any>();
  let token: string | null = null;
  do {
    const res = await rest.get(
      `/jobs?page_size=1000${token ? `&page_token=${encodeURIComponent(token)}` : ""}`,
    );
    if (res.status !== 200) throw new Error(`GET /jobs: ${res.status} ${JSON.stringify(res.json)}`);
    for (const job of res.json.jobs) jobs.set(job.job_id, job);
    token = res.json.next_page_token;
  } while (token);
  return jobs;
}

/** Resolves once no job the server lists is queued or running. */
export async function allEnded(rest: Rest, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      const res = await rest.get("/jobs?status=queued&status=running&page_size=1");
      return res.status === 200 && res.json.jobs.length === 0;
    },
    { what: "every job to end", timeoutMs, intervalMs: 100 },
  );
}

/** The readiness a server reports: GET /readyz and grpc.health.v1 (Connect JSON). */
export async function readiness(server: ServerProcess) {
  const readyz = await server.rest.get("/readyz");
  const health = await fetch(`${server.url}/grpc.health.v1.Health/Check`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  }).then((r) => r.json() as Promise<{ status: string }>);
  const live = await server.rest.get("/healthz");
  return {
    ready: readyz.status === 200,
    reason: readyz.json.reason as string | undefined,
    grpc: health.status,
    live: live.status === 200,
  };
}
