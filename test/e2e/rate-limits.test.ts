import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { AppDeps } from "../../src/app.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

/**
 * JOBQUEUE_HOST_LIMITS against a real target: a bucket's concurrency is never exceeded at the
 * target while other hosts keep flowing; a rate spaces the calls; rate_limit_key pools hosts into
 * one budget; waiting for a budget burns no attempt; the budget outlives a restart.
 */

let target: Target;
/** Every app a test started; all are stopped after it. */
const apps: TestApp[] = [];
const dirs: string[] = [];

beforeEach(async () => {
  target = await startTarget();
});

afterEach(async () => {
  for (const app of apps.splice(0)) await app.stop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  await target.close();
});

/**
 * `localhost` is a second bucket for the same target. It is pinned to 127.0.0.1 (where the target
 * listens), since some systems resolve it to ::1 first.
 */
const deps: AppDeps = {
  resolve: async (host) => {
    if (host !== "localhost") throw new Error(`unexpected lookup of ${host}`);
    return [{ address: "127.0.0.1", family: 4 }];
  },
};

async function start(env: Record<string, string>): Promise<TestApp> {
  const app = await startTestApp({ JOBQUEUE_ALLOWED_HOSTS: "127.0.0.1,localhost", ...env }, deps);
  apps.push(app);
  return app;
}

/** The target's URL through the name `localhost`: another host, so another bucket. */
const viaLocalhost = (path: string) => `${target.url.replace("127.0.0.1", "localhost")}${path}`;

interface HeldCall {
  path: string;
  host: string;
  release: () => void;
}

/**
 * Holds every request to `paths` until the test releases it, and counts the calls in flight at
 * the target (from arrival until the response is sent), across all those paths.
 */
function holdCalls(...paths: string[]) {
  const calls: HeldCall[] = [];
  const state = { inFlight: 0, maxInFlight: 0 };
  for (const path of paths) {
    target.on(path, async (req, res) => {
      state.inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
      const gate = deferred();
      calls.push({ path: req.path, host: String(req.headers.host), release: gate.resolve });
      await gate.promise;
      state.inFlight--;
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
    });
  }
  const arrived = (n: number) =>
    waitFor(() => calls.length >= n, { what: `${n} calls to ${paths.join(", ")}` });
  return { calls, state, arrived };
}

/** Enqueues `jobs` in one batch (one transaction) and returns their ids in order. */
async function enqueueAll(t: TestApp, jobs: Record<string, unknown>[]): Promise<string[]> {
  const { status, json } = await t.rest.post("/jobs:batch", { jobs });
  expect(status).toBe(200);
  return json.jobs.map((j: any) => j.job_id);
}

async function attemptsOf(t: TestApp, id: string): Promise<any[]> {
  return (await t.rest.get(`/jobs/${id}/attempts`)).json.attempts;
}

/** The statuses of the given jobs, as GET /jobs lists them, counted. */
async function statusCounts(t: TestApp, ids: string[]): Promise<Record<string, number>> {
  const { json } = await t.rest.get("/jobs?page_size=100");
  const counts: Record<string, number> = {};
  for (const job of json.jobs) {
    if (ids.includes(job.job_id)) counts[job.status] = (counts[job.status] ?? 0) + 1;
  }
  return counts;
}

/** Every job succeeded on its first attempt, with no other attempt recorded. */
async function expectOneAttemptEach(t: TestApp, ids: string[]) {
  for (const id of ids) {
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job).toMatchObject({ status: "succeeded", attempt: 1 });
    expect((await attemptsOf(t, id)).map((a) => a.outcome)).toEqual(["succeeded"]);
  }
}

describe("concurrency per host", () => {
  it("never has more than 2 calls in flight at 127.0.0.1=concurrency=2, while localhost flows freely", async () => {
    const t = await start({
      JOBQUEUE_HOST_LIMITS: "127.0.0.1=concurrency=2",
      JOBQUEUE_CONCURRENCY: "8",
    });
    const limited = holdCalls("/limited");
    const ids = await enqueueAll(t, Array(10).fill({ url: `${target.url}/limited` }));
    await limited.arrived(2);

    /**
     * Runs jobs for another host to completion while 127.0.0.1's calls are held: waiting jobs hold
     * no worker slot (8 slots, 10 limited jobs). Their claims also judged every limited job again,
     * so afterwards the limited jobs' statuses are settled.
     */
    const otherHostFlows = async (n: number) => {
      const others: string[] = [];
      for (let i = 0; i < n; i++) others.push(await t.enqueue({ url: viaLocalhost("/free") }));
      for (const id of others) await t.waitForStatus(id, "succeeded");
    };

    await otherHostFlows(5);
    expect(target.received("/free").map((r) => r.headers.host)).toEqual(
      Array(5).fill(`localhost:${new URL(target.url).port}`),
    );
    expect(limited.calls).toHaveLength(2);
    expect(limited.state.inFlight).toBe(2);
    // The 8 held back read as queued, not yet attempted.
    expect(await statusCounts(t, ids)).toEqual({ running: 2, queued: 8 });
    for (const id of ids) {
      const job = (await t.rest.get(`/jobs/${id}`)).json;
      if (job.status === "queued") expect(job.attempt).toBe(0);
    }

    // Release the oldest call whenever two are held; the next may then start, never a third.
    for (let i = 0; i < 10; i++) {
      await limited.arrived(Math.min(i + 2, 10));
      await otherHostFlows(1);
      expect(limited.calls).toHaveLength(Math.min(i + 2, 10));
      // (The job of the call released last may still be recording its end: at most 2, not exactly.)
      expect((await statusCounts(t, ids)).running).toBeLessThanOrEqual(2);
      limited.calls[i]!.release();
    }
    await expectOneAttemptEach(t, ids);
    expect(limited.state.maxInFlight).toBe(2);
    expect(target.received("/limited")).toHaveLength(10);
  });
});

describe("rate per host", () => {
  it("spaces the calls of 127.0.0.1=5/s 200 ms apart, each on its first attempt", async () => {
    const t = await start({ JOBQUEUE_HOST_LIMITS: "127.0.0.1=5/s" });
    const ids = await enqueueAll(
      t,
      Array.from({ length: 10 }, (_, i) => ({
        url: `${target.url}/rated`,
        params: { i: String(i) },
      })),
    );

    // The first goes at once; the others reserved consecutive slots, 200 ms apart, and wait queued.
    await target.request("/rated", 1);
    const { json: listed } = await t.rest.get("/jobs");
    const slotOf = new Map<string, number>();
    for (const job of listed.jobs) {
      if (job.status !== "queued") continue;
      expect(job.attempt).toBe(0);
      slotOf.set(job.job_id, Date.parse(job.next_run_at));
    }
    const slots = [...slotOf.values()].sort((a, b) => a - b);
    expect(slots.length).toBeGreaterThanOrEqual(2);
    for (let k = 1; k < slots.length; k++) expect(slots[k]! - slots[k - 1]!).toBe(200);

    await expectOneAttemptEach(t, ids);
    const startOf = new Map<string, number>();
    for (const id of ids) startOf.set(id, Date.parse((await attemptsOf(t, id))[0].started_at));
    // No job started before its reserved slot.
    for (const [id, slot] of slotOf) expect(startOf.get(id)).toBeGreaterThanOrEqual(slot);
    // Lower bounds the limiter guarantees: the k-th call starts no sooner than 200·k ms after the
    // first, and reaches the target no sooner either.
    const starts = [...startOf.values()].sort((a, b) => a - b);
    const arrivals = target
      .received("/rated")
      .map((r) => r.at)
      .sort((a, b) => a - b);
    expect(arrivals).toHaveLength(10);
    for (let k = 1; k < 10; k++) {
      expect(starts[k]! - starts[0]!).toBeGreaterThanOrEqual(200 * k);
      expect(arrivals[k]! - starts[0]!).toBeGreaterThanOrEqual(200 * k);
    }
  });
});

describe("rate_limit_key", () => {
  it("pools jobs to two hosts into one budget: shared=concurrency=1 allows one call at a time across both", async () => {
    const t = await start({ JOBQUEUE_HOST_LIMITS: "shared=concurrency=1" });
    const held = holdCalls("/a", "/b");
    const ids = await enqueueAll(
      t,
      [1, 2, 3].flatMap(() => [
        { url: `${target.url}/a`, rate_limit_key: "shared" },
        { url: viaLocalhost("/b"), rate_limit_key: "shared" },
      ]),
    );
    expect((await t.rest.get(`/jobs/${ids[0]}`)).json.rate_limit_key).toBe("shared");

    /** A job to the same host without the key is outside the budget, and runs meanwhile. */
    const unkeyedFlows = async () => {
      const id = await t.enqueue({ url: `${target.url}/free` });
      await t.waitForStatus(id, "succeeded");
    };

    for (let i = 0; i < 6; i++) {
      await held.arrived(i + 1);
      await unkeyedFlows();
      expect(held.calls).toHaveLength(i + 1);
      expect(held.state.inFlight).toBe(1);
      expect((await statusCounts(t, ids)).running).toBe(1);
      held.calls[i]!.release();
    }
    await expectOneAttemptEach(t, ids);
    expect(held.state.maxInFlight).toBe(1);
    const port = new URL(target.url).port;
    expect(new Set(held.calls.map((c) => c.host))).toEqual(
      new Set([`127.0.0.1:${port}`, `localhost:${port}`]),
    );
    expect(target.received("/free")).toHaveLength(6);
  });
});

describe("limits across restarts", () => {
  it("keeps 127.0.0.1=1/m's budget in the database: after a restart the next call is reserved a minute after the first", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jobqueue-limits-"));
    dirs.push(dir);
    const env = {
      JOBQUEUE_DB_URL: `sqlite:///${join(dir, "jobqueue.db")}`,
      JOBQUEUE_HOST_LIMITS: "127.0.0.1=1/m",
    };
    const first = await start(env);
    const one = await first.enqueue({ url: `${target.url}/minute` });
    await first.waitForStatus(one, "succeeded");
    const firstCall = Date.parse((await attemptsOf(first, one))[0].started_at);
    await first.app.stop();

    const second = await start(env);
    const two = await second.enqueue({ url: `${target.url}/minute` });
    // Its first claim finds the budget spent and reserves the next slot instead of calling.
    const reserved = await waitFor(
      async () => {
        const { json } = await second.rest.get(`/jobs/${two}`);
        return Date.parse(json.next_run_at) > Date.parse(json.created_at) ? json : undefined;
      },
      { what: "the second job to reserve a slot" },
    );
    expect(Date.parse(reserved.next_run_at)).toBeGreaterThanOrEqual(firstCall + 60_000);
    expect(reserved).toMatchObject({ status: "queued", attempt: 0 });
    expect(await attemptsOf(second, two)).toEqual([]);
    expect(target.received("/minute")).toHaveLength(1);

    const canceled = await second.rest.post(`/jobs/${two}/cancel`, {});
    expect(canceled.json.status).toBe("canceled");
    expect(target.received("/minute")).toHaveLength(1);
  });
});
