import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { JobStore } from "../../src/store/job-store.js";
import { createPostgresJobStore } from "../../src/store/postgres/postgres-job-store.js";
import { dbUrlFor, dropSchema, PG_URL, uniqueSchema } from "../helpers/postgres.js";
import { createPrivatePostgres, type PrivatePostgres } from "../helpers/private-postgres.js";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { startTarget, type Target } from "../helpers/target.js";
import { waitFor } from "../helpers/wait-for.js";

/**
 * Several server processes on one PostgreSQL database, as an operator runs them: real processes,
 * a real target that counts calls, SIGKILL, and a PostgreSQL server of the test's own to stop and
 * start under load.
 */

const SECRET_KEY = randomBytes(32).toString("hex");

let target: Target;
let schema: string;
const nodes: ServerProcess[] = [];
const stores: JobStore[] = [];

beforeEach(async () => {
  target = await startTarget();
  schema = uniqueSchema("cluster");
});

afterEach(async () => {
  for (const node of nodes.splice(0)) {
    node.kill("SIGKILL");
    await node.exited;
  }
  for (const store of stores.splice(0)) await store.close();
  await target.close();
  await dropSchema(schema);
});

/** Starts a node on the test's schema. */
async function startNode(id: string, env: Record<string, string> = {}, url = PG_URL) {
  const node = await startServerProcess({
    JOBQUEUE_PORT: "0",
    JOBQUEUE_DB_URL: dbUrlFor(schema, url),
    JOBQUEUE_SECRET_KEY: SECRET_KEY,
    JOBQUEUE_NODE_ID: id,
    JOBQUEUE_LOG_LEVEL: "info", // the harness waits for the "jobqueue listening" line
    JOBQUEUE_POLL_INTERVAL: "0.2",
    ...env,
  });
  nodes.push(node);
  return node;
}

/** A store on the test's schema, to look at what the nodes did. */
async function inspect(url = PG_URL): Promise<JobStore> {
  const store = await createPostgresJobStore({ url, schema, poolSize: 4 });
  stores.push(store);
  return store;
}

async function enqueueBatch(node: ServerProcess, jobs: object[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < jobs.length; i += 500) {
    const res = await node.rest.post("/jobs:batch", { jobs: jobs.slice(i, i + 500) });
    expect(res.status).toBe(200);
    ids.push(...res.json.jobs.map((j: { job_id: string }) => j.job_id));
  }
  return ids;
}

/** `promise`, or a rejection saying that no answer came within `ms`. */
function within<T>(ms: number, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Resolves once no job is queued or running. */
async function allTerminal(store: JobStore, timeoutMs = 60_000) {
  await waitFor(
    async () =>
      (await store.jobList({ statuses: ["queued", "running"], limit: 1 })).jobs.length === 0,
    { what: "every job to end", timeoutMs, intervalMs: 200 },
  );
}

describe("three nodes on one database", () => {
  it("5,000 jobs with one node SIGKILLed mid-run: every job ends, none twice, extra calls ≤ that node's calls in flight", async () => {
    const calls = new Map<string, number>();
    target.on("/work", (req, res) => {
      const i = req.query.get("i")!;
      calls.set(i, (calls.get(i) ?? 0) + 1);
      setTimeout(() => res.writeHead(200).end("ok"), 5 + Math.floor(Math.random() * 20));
    });
    const env = { JOBQUEUE_CONCURRENCY: "16", JOBQUEUE_LEASE_SECONDS: "2" };
    const [a, b, c] = await Promise.all([
      startNode("a", env),
      startNode("b", env),
      startNode("c", env),
    ]);
    const store = await inspect();
    const n = 5_000;
    const ids = await enqueueBatch(
      a,
      Array.from({ length: n }, (_, i) => ({ url: `${target.url}/work?i=${i}`, max_attempts: 5 })),
    );
    expect(new Set(ids).size).toBe(n);

    // Kill c once it has done part of its share, while calls are in flight on it.
    await waitFor(
      async () => {
        const nodesNow = await store.nodeList({ withinMs: 60_000 });
        return target.received("/work").length > n / 4 && nodesNow.length === 3;
      },
      { what: "a quarter of the calls", timeoutMs: 60_000 },
    );
    c.kill("SIGKILL");
    await c.exited;
    await allTerminal(store);

    let extra = 0;
    for (let i = 0; i < n; i++) {
      const count = calls.get(String(i)) ?? 0;
      expect(count, `calls of job ${i}`).toBeGreaterThanOrEqual(1);
      extra += count - 1;
    }
    // Only the calls c had in flight when it died can have been made twice.
    expect(extra).toBeLessThanOrEqual(16);

    const byNode = new Map<string, number>();
    for (const id of ids) {
      const job = await store.jobGet({ id });
      expect(job?.status).toBe("succeeded");
      const attempts = await store.attemptList({ jobId: id });
      // Finished once: one succeeded attempt, any other lost with the killed node.
      expect(attempts.filter((x) => x.outcome === "succeeded")).toHaveLength(1);
      for (const x of attempts) {
        if (x.outcome !== "succeeded") expect([x.outcome, x.node]).toEqual(["lost", "c"]);
        byNode.set(x.node!, (byNode.get(x.node!) ?? 0) + 1);
      }
    }
    // Every node did part of the work.
    expect([...byNode.keys()].sort()).toEqual(["a", "b", "c"]);
    const listed = (await b.rest.get("/nodes")).json.nodes.map(
      (x: { node_id: string }) => x.node_id,
    );
    expect(listed).toEqual(expect.arrayContaining(["a", "b"]));
  });

  it("a cancel sent to one node stops the call another node is making", async () => {
    // A long lease: renewals (the polling fallback) come every 20 s, so only the NOTIFY can be quick.
    const env = { JOBQUEUE_LEASE_SECONDS: "60" };
    const [a, b] = await Promise.all([startNode("a", env), startNode("b", env)]);
    const store = await inspect();
    target.on("/hold", () => {}); // never answered
    const id = (await a.rest.post("/jobs", { url: `${target.url}/hold` })).json.job_id as string;
    const held = await target.request("/hold");
    const [attempt] = await store.attemptList({ jobId: id });
    const runner = attempt!.node === "a" ? a : b;
    const other = runner === a ? b : a;

    const canceled = await other.rest.post(`/jobs/${id}/cancel`, {});
    expect(canceled.status).toBe(200);
    expect(canceled.json.status).toBe("canceled");
    await waitFor(
      async () =>
        (await Promise.race([held.closed, new Promise((r) => setTimeout(r, 10))])) === "aborted",
      { what: "the running node to abort the call", timeoutMs: 10_000 },
    );
    const [closed] = await store.attemptList({ jobId: id });
    expect(closed).toMatchObject({ outcome: "canceled", node: attempt!.node });
    expect((await runner.rest.get(`/jobs/${id}`)).json.status).toBe("canceled");
  });

  it("when the leader dies, another node takes over: it rescues the dead node's job and cleans up", async () => {
    const env = { JOBQUEUE_LEASE_SECONDS: "2", JOBQUEUE_CLEANUP_INTERVAL: "0.2" };
    const a = await startNode("a", env);
    const store = await inspect();
    await waitFor(
      async () =>
        (await a.rest.get("/nodes")).json.nodes.find((x: { leader: boolean }) => x.leader)
          ?.node_id === "a",
      { what: "a to lead" },
    );
    // a alone runs the first call of /stuck, which never answers; the second is answered.
    target.on("/stuck", (_req, res, n) => {
      if (n >= 2) res.writeHead(200).end("second");
    });
    const stuck = (await a.rest.post("/jobs", { url: `${target.url}/stuck`, max_attempts: 3 })).json
      .job_id as string;
    await target.request("/stuck", 1);
    const b = await startNode("b", env);
    // A finished job with a short TTL, for the cleaner to delete.
    const brief = (await b.rest.post("/jobs", { url: `${target.url}/ok`, ttl_seconds: 1 })).json
      .job_id as string;

    a.kill("SIGKILL");
    await a.exited;
    await waitFor(
      async () =>
        (await b.rest.get("/nodes")).json.nodes.find((x: { leader: boolean }) => x.leader)
          ?.node_id === "b",
      { what: "b to take the lead", timeoutMs: 15_000 },
    );
    await waitFor(async () => (await b.rest.get(`/jobs/${stuck}`)).json.status === "succeeded", {
      what: "the stuck job to be rescued and run again",
      timeoutMs: 15_000,
    });
    const attempts = await store.attemptList({ jobId: stuck });
    expect(attempts.map((x) => [x.outcome, x.node])).toEqual([
      ["lost", "a"],
      ["succeeded", "b"],
    ]);
    await waitFor(async () => (await store.attemptList({ jobId: brief })).length === 0, {
      what: "the new leader's cleaner to delete the expired job",
      timeoutMs: 15_000,
    });
  });

  it("a rate limit holds across two nodes together", async () => {
    const env = { JOBQUEUE_HOST_LIMITS: "127.0.0.1=5/s", JOBQUEUE_CONCURRENCY: "8" };
    const [a, b] = await Promise.all([startNode("a", env), startNode("b", env)]);
    const store = await inspect();
    const ids = [
      ...(await enqueueBatch(
        a,
        Array.from({ length: 6 }, (_, i) => ({ url: `${target.url}/r?a=${i}` })),
      )),
      ...(await enqueueBatch(
        b,
        Array.from({ length: 6 }, (_, i) => ({ url: `${target.url}/r?b=${i}` })),
      )),
    ];
    await allTerminal(store);
    const starts: number[] = [];
    const ranOn = new Set<string>();
    for (const id of ids) {
      const attempts = await store.attemptList({ jobId: id });
      expect(attempts).toHaveLength(1);
      expect(attempts[0]!.outcome).toBe("succeeded");
      starts.push(attempts[0]!.startedAt);
      ranOn.add(attempts[0]!.node!);
    }
    expect(ranOn.size).toBe(2);
    starts.sort((x, y) => x - y);
    // 5/s with a burst of 1, in total: the k-th call starts at least 200·k ms after the first.
    for (let k = 1; k < starts.length; k++) {
      expect(starts[k]! - starts[0]!).toBeGreaterThanOrEqual(200 * k);
    }
    expect(target.received("/r")).toHaveLength(12);
  });
});

describe("PostgreSQL restarted under load", () => {
  let pg: PrivatePostgres;

  beforeAll(async () => {
    pg = await createPrivatePostgres();
  }, 60_000);

  afterAll(async () => {
    await pg?.destroy();
  });

  it("nodes report not ready while it is away, recover by themselves, and lose nothing acknowledged", async () => {
    target.on("/slow", (_req, res) => {
      setTimeout(() => res.writeHead(200).end("ok"), 50);
    });
    const env = { JOBQUEUE_CONCURRENCY: "8", JOBQUEUE_LEASE_SECONDS: "5" };
    const [a, b] = await Promise.all([startNode("a", env, pg.url), startNode("b", env, pg.url)]);
    const acknowledged: string[] = [];
    let refused = 0;
    let submitting = true;
    // A client submitting one job at a time to each node, whatever happens.
    const submitter = (node: ServerProcess) =>
      (async () => {
        for (let i = 0; submitting; i++) {
          const res = await within(
            30_000,
            node.rest.post("/jobs", { url: `${target.url}/slow?i=${i}` }),
          ).catch((err: Error) => {
            if (err.message.startsWith("no answer")) throw err;
            return { status: 0, json: null }; // the connection failed: not acknowledged
          });
          if (res.status === 200) acknowledged.push(res.json.job_id);
          else {
            expect([0, 503]).toContain(res.status);
            refused++;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      })();
    const clients = [submitter(a), submitter(b)];
    await waitFor(() => acknowledged.length >= 50, { what: "some jobs to be acknowledged" });

    await pg.stop();
    await waitFor(async () => (await a.rest.get("/readyz")).status === 503, {
      what: "a to report not ready",
    });
    const ready = await b.rest.get("/readyz");
    expect(ready.status).toBe(503);
    expect(ready.json.reason).toMatch(/PostgreSQL/);
    // Liveness is not readiness: the process still answers.
    expect((await a.rest.get("/healthz")).status).toBe(200);

    await pg.start();
    await waitFor(
      async () =>
        (await a.rest.get("/readyz")).status === 200 &&
        (await b.rest.get("/readyz")).status === 200,
      { what: "both nodes to be ready again", timeoutMs: 30_000 },
    );
    const before = acknowledged.length;
    await waitFor(() => acknowledged.length > before + 20, {
      what: "submissions to succeed again",
    });
    submitting = false;
    await Promise.all(clients);
    expect(refused).toBeGreaterThan(0);

    const store = await inspect(pg.url);
    await allTerminal(store, 60_000);
    for (const id of acknowledged) {
      const job = await store.jobGet({ id });
      expect(job?.status, `job ${id}`).toBe("succeeded");
    }
  });
});
