import type { JsonObject } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Clients,
  createClients,
  PROTOCOLS,
  type Protocol,
  type Rpc,
} from "../helpers/clients.js";
import { type Received, startTarget, type Target } from "../helpers/target.js";
import { STORE_KINDS, type StoreKind, startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

/**
 * Named queues and counts end to end, on a real server, a real target and both stores: counts and
 * queue statistics that match the job list after a mixed workload, a paused queue holding 1,000
 * jobs while another runs, concurrency changed live, unknown queues refused, and a queue's job
 * defaults.
 */

const DAY_MS = 86_400_000;
const tomorrow = () => new Date(Date.now() + DAY_MS).toISOString();
const STATUSES = ["queued", "running", "succeeded", "failed", "canceled"] as const;
/** An int64 (a string in proto JSON, a number in REST) or a default left out (proto JSON). */
const num = (value: unknown) => Number(value ?? 0);
const short = (value: unknown) =>
  String(value)
    .toLowerCase()
    .replace(/^(job_status|backoff_strategy)_/, "");

/** Status counts as numbers, whatever the protocol's JSON. */
const counts = (c: any) => Object.fromEntries(STATUSES.map((s) => [s, num(c?.[s])]));

/**
 * Holds every request to `path` until released, and counts the calls in flight at the target
 * (which end at the target before the worker hears of it: never more than the worker has).
 */
function holdAll(target: Target, path: string, onArrival: (inFlight: number) => void = () => {}) {
  const held: { req: Received; release: () => void }[] = [];
  let inFlight = 0;
  target.on(path, async (_req, res) => {
    inFlight++;
    onArrival(inFlight);
    const gate = deferred();
    held.push({ req: _req, release: gate.resolve });
    await gate.promise;
    res.once("finish", () => inFlight--);
    res.writeHead(200, { "content-type": "application/json" }).end("{}");
  });
  return {
    held,
    get inFlight() {
      return inFlight;
    },
    /** Lets the oldest held request go. */
    releaseOne() {
      const next = held.find((h) => h.release !== released);
      if (!next) return false;
      next.release();
      next.release = released;
      return true;
    },
    releaseAll() {
      for (const h of held) h.release();
    },
  };
}
const released = () => {};

/** Every job ListJobs returns for `query` (REST, all pages). */
async function listAll(t: TestApp, query: Record<string, string | string[]> = {}) {
  const jobs: any[] = [];
  let token: string | null = null;
  do {
    const params = new URLSearchParams({ page_size: "1000" });
    for (const [k, v] of Object.entries(query)) {
      for (const one of Array.isArray(v) ? v : [v]) params.append(k, one);
    }
    if (token) params.set("page_token", token);
    const { status, json } = await t.rest.get(`/jobs?${params}`);
    expect(status, JSON.stringify(json)).toBe(200);
    jobs.push(...json.jobs);
    token = json.next_page_token;
  } while (token);
  return jobs;
}

describe.each(STORE_KINDS)("queues and counts on %s", (store: StoreKind) => {
  let target: Target;
  let t: TestApp;
  let clients: Clients;

  async function start(env: Record<string, string> = {}) {
    target = await startTarget();
    target.on("/fail", (_req, res) => {
      res.writeHead(400).end("no");
    });
    t = await startTestApp({ JOBQUEUE_CONCURRENCY: "8", ...env }, {}, { store });
    clients = createClients(t.url);
  }

  afterEach(async () => {
    clients?.close();
    await t?.stop();
    await target?.close();
  });

  const call = async (protocol: Protocol, rpc: Rpc, request: JsonObject = {}) => {
    const res = await clients.call(protocol, rpc, request);
    expect(res.code, `${rpc} over ${protocol}: ${res.message}`).toBe(0);
    return res.body;
  };

  it("counts jobs by status and queue, and a queue's statistics, as the job list has them after a mixed workload", async () => {
    await start();
    await call("rest", "CreateQueue", { name: "reports" });
    const hold = holdAll(target, "/hold");
    const ids: Record<string, string[]> = {};
    const add = async (queue: string, kind: string, job: Record<string, unknown>) => {
      const id = await t.enqueue({ queue, tags: [kind], ...job });
      ids[kind] = [...(ids[kind] ?? []), id];
      return id;
    };
    for (const queue of ["default", "reports"]) {
      for (let i = 0; i < (queue === "default" ? 3 : 2); i++) {
        await add(queue, "ok", { url: `${target.url}/ok` });
      }
      for (let i = 0; i < (queue === "default" ? 2 : 1); i++) {
        await add(queue, "fail", { url: `${target.url}/fail`, max_attempts: 1 });
      }
      await add(queue, "later", { url: `${target.url}/later`, scheduled_at: tomorrow() });
      const canceled = await add(queue, "canceled", {
        url: `${target.url}/later`,
        scheduled_at: tomorrow(),
      });
      expect((await t.rest.post(`/jobs/${canceled}/cancel`, {})).status).toBe(200);
      await add(queue, "hold", { url: `${target.url}/hold` });
    }
    // One deleted: no longer counted anywhere.
    const gone = await add("default", "gone", { url: `${target.url}/ok` });
    await t.waitForStatus(gone, "succeeded");
    expect((await t.rest.post(`/jobs:delete`, { filter: { job_ids: [gone] } })).status).toBe(200);
    // One retried after failing, and run again.
    const retried = await add("reports", "retried", { url: `${target.url}/fail`, max_attempts: 1 });
    await t.waitForStatus(retried, "failed");
    expect((await t.rest.post(`/jobs/${retried}/retry`, {})).status).toBe(200);
    for (const id of [...ids.ok!, ...ids.fail!, retried]) {
      await t.waitForStatus(id, "succeeded", "failed");
    }
    await waitFor(() => hold.held.length === 2);
    await waitFor(async () => (await t.rest.get(`/jobs/${gone}`)).status === 404);

    const listed = await listAll(t);
    const expected = (queue?: string) => {
      const c: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, 0]));
      for (const j of listed) if (queue === undefined || j.queue === queue) c[j.status]! += 1;
      return c;
    };
    expect(expected()).toEqual({ queued: 2, running: 2, succeeded: 5, failed: 4, canceled: 2 });

    for (const protocol of PROTOCOLS) {
      const all = await call(protocol, "GetJobCounts");
      expect({ protocol, total: counts(all.total) }).toEqual({ protocol, total: expected() });
      expect(all.queues.map((q: any) => ({ queue: q.queue, counts: counts(q.counts) }))).toEqual(
        ["default", "reports"].map((queue) => ({ queue, counts: expected(queue) })),
      );

      const byTag = await call(protocol, "GetJobCounts", { group_by: "JOB_COUNT_GROUPING_TAG" });
      // Queued and running jobs only, largest group first.
      expect(byTag.groups.map((g: any) => [g.key, num(g.queued), num(g.running)])).toEqual([
        ["hold", 0, 2],
        ["later", 2, 0],
      ]);
      const byHost = await call(protocol, "GetJobCounts", {
        group_by: "JOB_COUNT_GROUPING_HOST",
        queue: "reports",
      });
      expect(byHost.groups.map((g: any) => [g.key, num(g.queued), num(g.running)])).toEqual([
        ["127.0.0.1", 1, 1],
      ]);
      expect(byHost.groups_capped ?? false).toBe(false);

      for (const queue of ["default", "reports"]) {
        const stats = await call(protocol, "GetQueueStats", { name: queue, window_minutes: 60 });
        const want = expected(queue);
        expect({ protocol, queue, counts: counts(stats.counts) }).toEqual({
          protocol,
          queue,
          counts: want,
        });
        expect(stats.queue).toBe(queue);
        expect(num(stats.running)).toBe(1);
        // Every job that ended did so within the window.
        const ended = { succeeded: 0, failed: 0, canceled: 0 };
        for (const m of stats.per_minute) {
          ended.succeeded += num(m.succeeded);
          ended.failed += num(m.failed);
          ended.canceled += num(m.canceled);
        }
        expect(stats.per_minute).toHaveLength(60);
        // The retried job failed once before it succeeded; the deleted one still ran.
        expect(ended).toEqual(
          queue === "default"
            ? { succeeded: want.succeeded! + 1, failed: want.failed, canceled: want.canceled }
            : { succeeded: want.succeeded, failed: want.failed! + 1, canceled: want.canceled },
        );
        expect(stats.success_rate).toBeCloseTo(
          ended.succeeded / (ended.succeeded + ended.failed),
          10,
        );
        // Nothing due waits in line: the queued jobs are for tomorrow.
        expect(stats.oldest_queued_at ?? null).toBeNull();
        // How long the calls of the jobs that succeeded or failed took, all to one host.
        const l = stats.latency;
        expect(num(l.samples)).toBe(want.succeeded! + want.failed!);
        expect(num(l.p50_ms)).toBeLessThanOrEqual(num(l.p90_ms));
        expect(num(l.p90_ms)).toBeLessThanOrEqual(num(l.p99_ms));
        expect(num(l.p99_ms)).toBeLessThanOrEqual(num(l.max_ms));
        expect(
          stats.slowest_destinations.map((d: any) => [d.host, num(d.latency.samples)]),
        ).toEqual(num(l.samples) >= 3 ? [["127.0.0.1", num(l.samples)]] : []);
      }
    }

    // The held calls end: the counts follow.
    hold.releaseAll();
    for (const id of ids.hold!) await t.waitForStatus(id, "succeeded");
    const after = await call("grpc", "GetJobCounts");
    expect(counts(after.total)).toEqual({ ...expected(), running: 0, succeeded: 7 });
    const listedAfter = await listAll(t, { status: "succeeded" });
    expect(listedAfter).toHaveLength(7);
  });

  it("holds 1,000 jobs in a paused queue while another queue runs, then runs them once resumed", async () => {
    await start({ JOBQUEUE_CONCURRENCY: "16" });
    await call("connect", "CreateQueue", { name: "bulk" });
    await call("connect", "CreateQueue", { name: "live" });
    // A call in flight when the queue is paused finishes.
    const hold = holdAll(target, "/first");
    const first = await t.enqueue({ queue: "bulk", url: `${target.url}/first` });
    await waitFor(() => hold.held.length === 1);
    const paused = await call("grpc", "PauseQueue", { name: "bulk" });
    expect(paused.queue).toMatchObject({ name: "bulk", paused: true });
    hold.releaseAll();
    await t.waitForStatus(first, "succeeded");

    const batch = await t.rest.post("/jobs:batch", {
      jobs: Array.from({ length: 1000 }, (_, i) => ({
        queue: "bulk",
        url: `${target.url}/bulk`,
        params: { i: String(i) },
      })),
    });
    expect(batch.status).toBe(200);
    const live: string[] = [];
    for (let i = 0; i < 20; i++)
      live.push(await t.enqueue({ queue: "live", url: `${target.url}/live` }));
    for (const id of live) await t.waitForStatus(id, "succeeded");

    // The other queue ran; the paused one started nothing and still holds every job.
    expect(target.received("/bulk")).toHaveLength(0);
    for (const protocol of PROTOCOLS) {
      const stats = await call(protocol, "GetQueueStats", { name: "bulk" });
      expect(counts(stats.counts)).toEqual({
        queued: 1000,
        running: 0,
        succeeded: 1,
        failed: 0,
        canceled: 0,
      });
      expect(stats.oldest_queued_at).toBeTruthy();
      expect((await call(protocol, "GetQueue", { name: "bulk" })).queue.paused).toBe(true);
    }
    const listedQueues = await call("rest", "ListQueues");
    expect(listedQueues.queues.map((q: any) => [q.name, q.paused])).toEqual([
      ["bulk", true],
      ["default", false],
      ["live", false],
    ]);

    const resumed = await call("grpc-js", "ResumeQueue", { name: "bulk" });
    expect(resumed.queue.paused ?? false).toBe(false);
    await waitFor(
      async () =>
        counts((await call("rest", "GetQueueStats", { name: "bulk" })).counts).succeeded === 1001,
      { timeoutMs: 120_000, intervalMs: 100, what: "the resumed queue to drain" },
    );
    const calls = target.received("/bulk");
    expect(calls).toHaveLength(1000);
    expect(new Set(calls.map((r) => r.query.get("i"))).size).toBe(1000);
  }, 180_000);

  it("changes a queue's concurrency live: calls in flight at the target never exceed the limit in force", async () => {
    await start({ JOBQUEUE_CONCURRENCY: "10" });
    await call("rest", "CreateQueue", { name: "live", settings: { concurrency: 4 } });
    /** The limit in force, and at each arrival the calls in flight and the limit then. */
    let limit = 4;
    const arrivals: { inFlight: number; limit: number }[] = [];
    const gate = holdAll(target, "/slow", (inFlight) => arrivals.push({ inFlight, limit }));
    const ids: string[] = [];
    for (let i = 0; i < 24; i++)
      ids.push(await t.enqueue({ queue: "live", url: `${target.url}/slow` }));
    await waitFor(() => gate.held.length === 4);

    // Lowered: as the calls in flight end, no more than 2 run at once.
    limit = 2;
    const lowered = await call("rest", "UpdateQueue", {
      name: "live",
      settings: { concurrency: 2 },
    });
    expect(lowered.queue.concurrency).toBe(2);
    for (let i = 0; i < 4; i++) gate.releaseOne();
    await waitFor(() => gate.held.length === 6);
    for (let i = 0; i < 4; i++) {
      gate.releaseOne();
      await waitFor(() => gate.held.length === 7 + i);
    }

    // Raised: 6 run at once (the limit is raised here first: calls may start before the answer).
    limit = 6;
    const raised = await call("grpc", "UpdateQueue", {
      name: "live",
      settings: { concurrency: 6 },
    });
    expect(raised.queue.concurrency).toBe(6);
    await waitFor(() => gate.inFlight === 6);
    gate.releaseAll();
    const drain = setInterval(() => gate.releaseAll(), 5);
    try {
      for (const id of ids) await t.waitForStatus(id, "succeeded");
    } finally {
      clearInterval(drain);
    }

    expect(arrivals).toHaveLength(24);
    expect(arrivals.filter((a) => a.inFlight > a.limit)).toEqual([]);
    expect(Math.max(...arrivals.map((a) => a.inFlight))).toBe(6);
    expect(arrivals.slice(4, 10).every((a) => a.limit === 2 && a.inFlight <= 2)).toBe(true);
  });

  it.each(PROTOCOLS)(
    "refuses a job to an unknown queue over %s with 400 naming queue, and answers for queues by name",
    async (protocol) => {
      await start();
      const url = `${target.url}/x`;
      const unknown = await clients.call(protocol, "EnqueueJob", { url, queue: "nope" });
      expect(unknown.code).toBe(3);
      expect(unknown.message).toMatch(/queue.*"nope".*does not exist/);
      if (protocol === "rest") {
        expect(unknown.httpStatus).toBe(400);
        expect(unknown.body).toMatchObject({ code: "invalid_argument", field: "queue" });
      }
      const inBatch = await clients.call(protocol, "EnqueueJobs", {
        jobs: [{ url }, { url, queue: "nope" }],
      });
      expect(inBatch.code).toBe(3);
      if (protocol === "rest") expect(inBatch.body.field).toBe("jobs[1].queue");
      expect(await listAll(t)).toEqual([]);
      const badName = await clients.call(protocol, "EnqueueJob", { url, queue: "No Such!" });
      expect(badName.code).toBe(3);
      if (protocol === "rest") expect(badName.body.field).toBe("queue");

      // A queue just created takes jobs at once.
      await call(protocol, "CreateQueue", { name: "fresh" });
      const accepted = await call(protocol, "EnqueueJob", { url, queue: "fresh" });
      expect((await t.waitForStatus(accepted.job_id, "succeeded")).queue).toBe("fresh");

      const expectCode = async (rpc: Rpc, request: JsonObject, code: number, http: number) => {
        const res = await clients.call(protocol, rpc, request);
        expect({ rpc, code: res.code }).toEqual({ rpc, code });
        if (protocol === "rest")
          expect({ rpc, status: res.httpStatus }).toEqual({ rpc, status: http });
        return res;
      };
      for (const rpc of [
        "GetQueue",
        "PauseQueue",
        "ResumeQueue",
        "DeleteQueue",
        "GetQueueStats",
      ] as const) {
        await expectCode(rpc, { name: "nope" }, 5, 404);
      }
      await expectCode("UpdateQueue", { name: "nope", settings: { concurrency: 1 } }, 5, 404);
      await expectCode("CreateQueue", { name: "fresh" }, 6, 409);
      const invalid = await expectCode("CreateQueue", { name: "Bad Name" }, 3, 400);
      if (protocol === "rest") expect(invalid.body.field).toBe("name");
      const badSetting = await expectCode(
        "UpdateQueue",
        { name: "fresh", settings: { concurrency: -1 } },
        3,
        400,
      );
      if (protocol === "rest") expect(badSetting.body.field).toBe("concurrency");
      await expectCode("DeleteQueue", { name: "default" }, 9, 409);
      await call(protocol, "PauseQueue", { name: "fresh" });
      await t.enqueue({ queue: "fresh", url });
      const busy = await expectCode("DeleteQueue", { name: "fresh" }, 9, 409);
      expect(busy.message).toMatch(/queued or running/);
    },
  );

  it.each(PROTOCOLS)(
    "gives jobs that set none the queue's max_attempts, backoff and ttl over %s",
    async (protocol) => {
      await start();
      const created = await call(protocol, "CreateQueue", {
        name: "defaults",
        settings: {
          max_attempts: 2,
          backoff_strategy: "BACKOFF_STRATEGY_FIXED",
          backoff_seconds: 0.05,
          ttl_seconds: 3600,
        },
      });
      expect(created.queue).toMatchObject({
        max_attempts: 2,
        backoff_seconds: 0.05,
        ttl_seconds: 3600,
      });
      expect(short(created.queue.backoff_strategy)).toBe("fixed");
      target.on("/down", (_req, res) => {
        res.writeHead(503).end("down");
      });
      const get = async (id: string) => (await call(protocol, "GetJob", { job_id: id })).job;

      const plain = await call(protocol, "EnqueueJob", {
        url: `${target.url}/down`,
        queue: "defaults",
      });
      const job = await get(plain.job_id);
      expect(job).toMatchObject({ max_attempts: 2, backoff_seconds: 0.05, ttl_seconds: 3600 });
      expect(short(job.backoff_strategy)).toBe("fixed");
      // Applied, not only shown: two attempts, then failed, and deleted an hour after.
      const failed = await t.waitForStatus(plain.job_id, "failed");
      expect(failed.attempt).toBe(2);
      expect(target.received("/down")).toHaveLength(2);
      expect(Date.parse(failed.expires_at) - Date.parse(failed.finished_at)).toBe(3_600_000);

      // A job's own settings win.
      const own = await call(protocol, "EnqueueJob", {
        url: `${target.url}/later`,
        queue: "defaults",
        scheduled_at: tomorrow(),
        max_attempts: 5,
        backoff_strategy: "BACKOFF_STRATEGY_LINEAR",
        backoff_seconds: 2,
        ttl_seconds: 60,
      });
      const ownJob = await get(own.job_id);
      expect(ownJob).toMatchObject({ max_attempts: 5, backoff_seconds: 2, ttl_seconds: 60 });
      expect(short(ownJob.backoff_strategy)).toBe("linear");

      // Another queue keeps the node's defaults; 0 resets a queue's setting to the node's.
      const elsewhere = await get(
        (
          await call(protocol, "EnqueueJob", {
            url: `${target.url}/later`,
            scheduled_at: tomorrow(),
          })
        ).job_id,
      );
      expect(elsewhere).toMatchObject({ max_attempts: 3, backoff_seconds: 1 });
      expect(elsewhere.ttl_seconds ?? null).toBeNull();
      expect(short(elsewhere.backoff_strategy)).toBe("exponential");
      const reset = await call(protocol, "UpdateQueue", {
        name: "defaults",
        settings: { max_attempts: 0, ttl_seconds: 0 },
      });
      expect(reset.queue.max_attempts ?? null).toBeNull();
      expect(reset.queue.ttl_seconds ?? null).toBeNull();
      expect(reset.queue.backoff_seconds).toBe(0.05);
      const after = await get(
        (
          await call(protocol, "EnqueueJob", {
            url: `${target.url}/later`,
            queue: "defaults",
            scheduled_at: tomorrow(),
          })
        ).job_id,
      );
      expect(after).toMatchObject({ max_attempts: 3, backoff_seconds: 0.05 });
      expect(after.ttl_seconds ?? null).toBeNull();
      // Jobs already stored keep what they were given.
      expect((await get(plain.job_id)).max_attempts).toBe(2);
    },
  );

  it("does not retry a job into a queue deleted since it ended, until the queue is created again", async () => {
    await start();
    await call("rest", "CreateQueue", { name: "gone" });
    const id = await t.enqueue({ queue: "gone", url: `${target.url}/fail`, max_attempts: 1 });
    await t.waitForStatus(id, "failed");
    await call("rest", "DeleteQueue", { name: "gone" });
    for (const protocol of PROTOCOLS) {
      const res = await clients.call(protocol, "RetryJob", { job_id: id });
      expect({ protocol, code: res.code }).toEqual({ protocol, code: 9 });
      expect(res.message).toMatch(/queue "gone".*no longer exists/);
      if (protocol === "rest") expect(res.httpStatus).toBe(409);
    }
    const bulk = await t.rest.post("/jobs:retry", { filter: { job_ids: [id] } });
    await waitFor(
      async () =>
        (await t.rest.get(`/operations/${bulk.json.operation.operation_id}`)).json.state ===
        "succeeded",
    );
    expect(
      (await t.rest.get(`/operations/${bulk.json.operation.operation_id}`)).json.affected,
    ).toBe(0);
    expect((await t.rest.get(`/jobs/${id}`)).json.status).toBe("failed");
    const rows = (await t.app.store.auditList({ action: "RetryJob", limit: 10 })).events;
    expect(rows.map((r) => [r.jobId, r.outcome])).toEqual(
      PROTOCOLS.map(() => [id, "failed_precondition"]),
    );

    await call("rest", "CreateQueue", { name: "gone" });
    expect((await clients.call("grpc", "RetryJob", { job_id: id })).code).toBe(0);
    expect(await t.waitForStatus(id, "failed")).toMatchObject({ attempt: 2 });
  });
});
