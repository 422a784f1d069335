import { randomBytes } from "node:crypto";
import type { ServerResponse } from "node:http";
import type { JsonObject } from "@bufbuild/protobuf";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Caller } from "../../src/auth/principal.js";
import type { Operation } from "../../src/job/operations.js";
import { openStore } from "../../src/store/open-store.js";
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
 * Operating jobs and queues end to end, on a real server, a real target and both stores: retry
 * (with the real secrets), delete, bulk actions with their dry run, operations interrupted by a
 * restart or canceled, counts that match the job list, paused queues, concurrency changed live,
 * and the queues' job defaults. Each call is made on every protocol where the protocol matters.
 */

const DAY_MS = 86_400_000;
const tomorrow = () => new Date(Date.now() + DAY_MS).toISOString();
const SYSTEM: Caller = {
  principal: null,
  remoteAddress: null,
  protocol: "internal",
};

/** "OPERATION_STATE_SUCCEEDED" (proto JSON) and "succeeded" (REST) alike → "succeeded". */
const short = (value: unknown) =>
  String(value)
    .toLowerCase()
    .replace(/^(operation_state|operation_kind|job_status|backoff_strategy)_/, "");
/** An int64 (a string in proto JSON, a number in REST) or a default left out (proto JSON). */
const num = (value: unknown) => Number(value ?? 0);

/** A request held at the target until the test lets it go. */
function holding(target: Target, path: string) {
  const held: { req: Received; release: () => void }[] = [];
  target.on(path, async (req, res) => {
    const gate = deferred();
    held.push({ req, release: gate.resolve });
    await gate.promise;
    res.writeHead(200, { "content-type": "application/json" }).end('{"held":true}');
  });
  return {
    held,
    releaseAll() {
      for (const h of held) h.release();
    },
  };
}

const answer = (status: number) => (_req: Received, res: ServerResponse) => {
  res.writeHead(status, { "content-type": "text/plain" }).end(`status ${status}`);
};

function uniqueTag(label: string) {
  return `${label}-${randomBytes(4).toString("hex")}`;
}

async function auditMark(t: TestApp): Promise<number> {
  return (await t.app.store.auditList({ limit: 1 })).events[0]?.id ?? 0;
}

async function auditSince(t: TestApp, mark: number, action?: string) {
  const { events } = await t.app.store.auditList({ limit: 10_000, action });
  return events.filter((e) => e.id > mark).reverse();
}

describe.each(STORE_KINDS)("operating jobs on %s", (store: StoreKind) => {
  let target: Target;
  let t: TestApp;
  let clients: Clients;

  beforeAll(async () => {
    target = await startTarget();
    target.on("/fail", answer(400));
    t = await startTestApp({ JOBQUEUE_CONCURRENCY: "8" }, {}, { store });
    clients = createClients(t.url);
  });

  afterAll(async () => {
    clients?.close();
    await t?.stop();
    await target?.close();
  });

  const call = (protocol: Protocol, rpc: Rpc, request: JsonObject = {}) =>
    clients.call(protocol, rpc, request);

  it.each(PROTOCOLS)(
    "retries a failed job over %s on its id: the target gets the real secrets, attempts keep counting",
    async (protocol) => {
      const path = `/retry-${protocol}`;
      const secret = `s3cret-${randomBytes(12).toString("hex")}`;
      target.on(path, (_req, res, n) => answer(n === 1 ? 400 : 200)(_req, res));
      const id = await t.enqueue({
        url: `${target.url}${path}`,
        headers: { Authorization: `Bearer ${secret}`, "X-Signature": secret, "X-Plain": "p" },
        secret_headers: ["X-Signature"],
        max_attempts: 1,
      });
      const failed = await t.waitForStatus(id, "failed");
      // What a client reads is masked: re-posting it would send "***".
      expect(JSON.stringify(failed)).not.toContain(secret);
      expect(Object.values(failed.headers)).toContain("***");
      const mark = await auditMark(t);

      // An override that does not exceed the attempts made is refused, naming the field.
      const low = await call(protocol, "RetryJob", { job_id: id, max_attempts: 1 });
      expect({ code: low.code, message: low.message }).toMatchObject({
        code: 3,
        message: expect.stringContaining("max_attempts"),
      });
      if (protocol === "rest") expect(low.body).toMatchObject({ field: "max_attempts" });

      const res = await call(protocol, "RetryJob", { job_id: id });
      expect(res.code, res.message).toBe(0);
      expect(res.body.job).toMatchObject({ job_id: id, attempt: 1, max_attempts: 2 });
      expect(short(res.body.job.status)).toBe("queued");

      const second = await target.request(path, 2);
      expect(second.headers.authorization).toBe(`Bearer ${secret}`);
      expect(second.headers["x-signature"]).toBe(secret);
      expect(second.headers["x-plain"]).toBe("p");
      expect(await t.waitForStatus(id, "succeeded")).toMatchObject({ attempt: 2, max_attempts: 2 });
      const { json } = await t.rest.get(`/jobs/${id}/attempts`);
      expect(json.attempts.map((a: any) => [a.attempt, a.outcome, a.response_status])).toEqual([
        [1, "failed", 400],
        [2, "succeeded", 200],
      ]);

      // A job that did not fail or was not canceled cannot be retried.
      const again = await call(protocol, "RetryJob", { job_id: id });
      expect(again.code).toBe(9);
      if (protocol === "rest") expect(again.httpStatus).toBe(409);
      const missing = await call(protocol, "RetryJob", { job_id: `j_${"0".repeat(26)}` });
      expect(missing.code).toBe(5);

      // Each call is recorded once, naming the job.
      expect(
        (await auditSince(t, mark, "RetryJob")).map((e) => [e.jobId, e.outcome, e.detail]),
      ).toEqual([
        [id, "invalid_argument", "max_attempts"],
        [id, "ok", null],
        [id, "failed_precondition", null],
        [`j_${"0".repeat(26)}`, "not_found", null],
      ]);
    },
  );

  it.each(PROTOCOLS)(
    "deletes a finished job over %s with its attempts and result; a running one is refused until canceled",
    async (protocol) => {
      const done = await t.enqueue({ url: `${target.url}/ok` });
      await t.waitForStatus(done, "succeeded");
      const hold = holding(target, `/delete-${protocol}`);
      const running = await t.enqueue({ url: `${target.url}/delete-${protocol}` });
      await waitFor(() => hold.held.length === 1);
      const mark = await auditMark(t);

      const deleted = await call(protocol, "DeleteJob", { job_id: done });
      expect(deleted).toMatchObject({ code: 0, body: {} });
      for (const path of [`/jobs/${done}`, `/jobs/${done}/result`, `/jobs/${done}/attempts`]) {
        expect((await t.rest.get(path)).status).toBe(404);
      }
      expect((await call(protocol, "DeleteJob", { job_id: done })).code).toBe(5);

      const refused = await call(protocol, "DeleteJob", { job_id: running });
      expect(refused.code).toBe(9);
      expect(refused.message).toMatch(/cancel/);
      if (protocol === "rest") expect(refused.httpStatus).toBe(409);
      expect((await t.rest.get(`/jobs/${running}`)).json.status).toBe("running");
      expect((await call(protocol, "CancelJob", { job_id: running })).code).toBe(0);
      expect((await call(protocol, "DeleteJob", { job_id: running })).code).toBe(0);
      expect((await t.rest.get(`/jobs/${running}`)).status).toBe(404);
      hold.releaseAll();

      const bad = await call(protocol, "DeleteJob", { job_id: "nope" });
      expect(bad.code).toBe(3);
      if (protocol === "rest") expect(bad.body).toMatchObject({ field: "job_id" });

      expect(
        (await auditSince(t, mark, "DeleteJob")).map((e) => [e.jobId, e.outcome, e.detail]),
      ).toEqual([
        [done, "ok", null],
        [done, "not_found", null],
        [running, "failed_precondition", null],
        [running, "ok", null],
        [null, "invalid_argument", "job_id"],
      ]);
    },
  );

  /** Jobs under one tag: 2 succeeded, 2 failed, 1 canceled, 2 queued (due tomorrow). */
  async function mixedJobs(tag: string) {
    const ids = { succeeded: [] as string[], failed: [] as string[], canceled: [] as string[] };
    const queued: string[] = [];
    for (let i = 0; i < 2; i++) {
      ids.succeeded.push(await t.enqueue({ url: `${target.url}/ok`, tags: [tag] }));
      ids.failed.push(await t.enqueue({ url: `${target.url}/fail`, tags: [tag], max_attempts: 1 }));
      queued.push(
        await t.enqueue({ url: `${target.url}/later`, tags: [tag], scheduled_at: tomorrow() }),
      );
    }
    const canceled = await t.enqueue({
      url: `${target.url}/later`,
      tags: [tag],
      scheduled_at: tomorrow(),
    });
    expect((await t.rest.post(`/jobs/${canceled}/cancel`, {})).status).toBe(200);
    ids.canceled.push(canceled);
    for (const [status, list] of Object.entries(ids)) {
      for (const id of list) await t.waitForStatus(id, status);
    }
    return { ...ids, queued };
  }

  const BULK = [
    { rpc: "CancelJobs", kind: "cancel", applies: ["queued"], failedOnly: 0 },
    { rpc: "RetryJobs", kind: "retry", applies: ["failed", "canceled"], failedOnly: 2 },
    {
      rpc: "DeleteJobs",
      kind: "delete",
      applies: ["succeeded", "failed", "canceled"],
      failedOnly: 2,
    },
  ] as const;
  const BULK_CASES = BULK.flatMap((b) => PROTOCOLS.map((protocol) => ({ ...b, protocol })));

  it.each(BULK_CASES)(
    "$rpc over $protocol: a dry run counts, the operation acts on as many and is audited once when it ends",
    async ({ rpc, kind, applies, failedOnly, protocol }) => {
      const tag = uniqueTag(kind);
      const jobs = await mixedJobs(tag);
      const all = Object.values(jobs).flat();
      const statusOf = async () =>
        Object.fromEntries(
          await Promise.all(
            all.map(async (id) => [id, (await t.rest.get(`/jobs/${id}`)).json.status ?? "gone"]),
          ),
        );
      const before = await statusOf();
      const affected = applies.flatMap((s) => (s === "queued" ? jobs.queued : jobs[s]));
      const filter = { tag: [tag] };

      const dry = await call(protocol, rpc, { filter, dry_run: true });
      expect(dry.code, dry.message).toBe(0);
      expect(num(dry.body.count)).toBe(affected.length);
      expect(dry.body.count_capped ?? false).toBe(false);
      expect(dry.body.operation ?? null).toBeNull();
      const narrowed = await call(protocol, rpc, {
        filter: { ...filter, status: ["JOB_STATUS_FAILED"] },
        dry_run: true,
      });
      expect(num(narrowed.body.count)).toBe(failedOnly);
      // A dry run changes nothing.
      expect(await statusOf()).toEqual(before);

      const mark = await auditMark(t);
      const started = await call(protocol, rpc, {
        filter,
        // Retried jobs wait for tomorrow, so they stay queued for the test to see.
        ...(kind === "retry" ? { scheduled_at: tomorrow() } : {}),
      });
      expect(started.code, started.message).toBe(0);
      expect(num(started.body.count)).toBe(affected.length);
      const op = started.body.operation;
      expect(op.operation_id).toMatch(/^op_[0-9A-Z]{26}$/);
      expect(short(op.kind)).toBe(kind);
      expect(num(op.estimate)).toBe(affected.length);

      const ended = await waitFor(async () => {
        const got = await call(protocol, "GetOperation", { operation_id: op.operation_id });
        return short(got.body.operation.state) !== "running" && got.body.operation;
      });
      expect(short(ended.state)).toBe("succeeded");
      expect(num(ended.affected)).toBe(affected.length);
      expect(num(ended.examined)).toBeGreaterThanOrEqual(affected.length);
      expect(ended.finished_at).toBeTruthy();

      const after = await statusOf();
      const expected = { ...before };
      for (const id of affected) {
        expected[id] = kind === "cancel" ? "canceled" : kind === "retry" ? "queued" : "gone";
      }
      expect(after).toEqual(expected);

      const rows = await auditSince(t, mark);
      expect(rows.map((r) => [r.action, r.outcome, r.jobId])).toEqual([[rpc, "ok", null]]);
      expect(JSON.parse(rows[0]!.detail!)).toEqual({
        operation_id: op.operation_id,
        state: "succeeded",
        filter: { tags: [tag] },
        affected: affected.length,
        examined: num(ended.examined),
      });
      const listed = await call(protocol, "ListOperations", { page_size: 1000 });
      expect(listed.body.operations.map((o: any) => o.operation_id)).toContain(op.operation_id);
      // An ended operation cannot be canceled.
      const late = await call(protocol, "CancelOperation", { operation_id: op.operation_id });
      expect(late.code).toBe(9);
    },
  );

  it("CancelJobs aborts the calls in flight of the running jobs it matches", async () => {
    const hold = holding(target, "/cancel-running");
    const tag = uniqueTag("running");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(await t.enqueue({ url: `${target.url}/cancel-running`, tags: [tag] }));
    }
    await waitFor(() => hold.held.length === 3);
    const dry = await t.rest.post("/jobs:cancel", { filter: { tag: [tag] }, dry_run: true });
    expect(dry.json.count).toBe(3);
    const started = await t.rest.post("/jobs:cancel", {
      filter: { tag: [tag], status: ["running"] },
    });
    expect(started.json.count).toBe(3);
    for (const h of hold.held) expect(await h.req.closed).toBe("aborted");
    for (const id of ids) expect((await t.waitForStatus(id, "canceled")).status).toBe("canceled");
    const { json } = await t.rest.get(`/jobs/${ids[0]}/attempts`);
    expect(json.attempts.map((a: any) => a.outcome)).toEqual(["canceled"]);
    hold.releaseAll();
  });

  it("filters ListJobs by every condition over every protocol, the same as a bulk action's dry run", async () => {
    const tag = uniqueTag("filters");
    target.on("/flaky", answer(503));
    const startedAt = new Date().toISOString();
    const ids = {
      posted: await t.enqueue({ url: `${target.url}/ok/alpha`, body: { a: 1 }, tags: [tag] }),
      refused: await t.enqueue({ url: `${target.url}/fail`, max_attempts: 1, tags: [tag] }),
      flaky: await t.enqueue({
        url: `${target.url}/flaky`,
        max_attempts: 2,
        backoff_strategy: "fixed",
        backoff_seconds: 0,
        tags: [tag],
      }),
      later: await t.enqueue({
        url: `${target.url}/later/delta`,
        scheduled_at: tomorrow(),
        tags: [tag],
      }),
      elsewhere: await t.enqueue({
        url: "http://api.example.com/zeta",
        scheduled_at: tomorrow(),
        tags: [tag],
      }),
    };
    await t.waitForStatus(ids.posted, "succeeded");
    await t.waitForStatus(ids.refused, "failed");
    await t.waitForStatus(ids.flaky, "failed");
    const settled = new Date().toISOString();
    await waitFor(() => Date.now() > Date.parse(settled));
    expect((await t.rest.post(`/jobs/${ids.later}/cancel`, {})).status).toBe(200);
    const finishedOrder = (
      await Promise.all(
        // The canceled one finished too, last.
        [ids.posted, ids.refused, ids.flaky, ids.later].map(
          async (id) => (await t.rest.get(`/jobs/${id}`)).json,
        ),
      )
    )
      .sort(
        (a, b) =>
          Date.parse(b.finished_at) - Date.parse(a.finished_at) || (a.job_id < b.job_id ? 1 : -1),
      )
      .map((j) => j.job_id);

    const cases: [JsonObject, string[]][] = [
      [{ status: ["JOB_STATUS_FAILED"] }, [ids.flaky, ids.refused]],
      [{ error_code: "http_status" }, [ids.flaky, ids.refused]],
      [{ min_attempts: 2 }, [ids.flaky]],
      [{ method: "POST" }, [ids.posted]],
      [{ url_contains: "/later/" }, [ids.later]],
      [{ host: "api.example.com" }, [ids.elsewhere]],
      [{ finished_after: startedAt }, finishedOrder],
      [{ updated_after: settled }, [ids.later]],
      [{ created_after: startedAt, status: ["JOB_STATUS_QUEUED"] }, [ids.elsewhere]],
    ];
    for (const protocol of PROTOCOLS) {
      for (const [filter, expected] of cases) {
        const listed = await call(protocol, "ListJobs", { ...filter, tag: [tag], page_size: 100 });
        expect({ protocol, filter, code: listed.code, message: listed.message }).toMatchObject({
          code: 0,
        });
        expect({
          protocol,
          filter,
          ids: (listed.body.jobs ?? []).map((j: any) => j.job_id),
        }).toEqual({ protocol, filter, ids: expected });
        const dry = await call(protocol, "DeleteJobs", {
          filter: { ...filter, tag: [tag] },
          dry_run: true,
        });
        // A dry run counts what its action applies to: the finished jobs among them.
        const finished = expected.filter((id) => id !== ids.elsewhere);
        expect({ protocol, filter, count: num(dry.body.count) }).toEqual({
          protocol,
          filter,
          count: finished.length,
        });
      }
    }
  });

  it.each(PROTOCOLS)("refuses a bad filter over %s, naming the field", async (protocol) => {
    for (const [filter, field] of [
      [{ status: ["JOB_STATUS_QUEUED"], finished_after: tomorrow() }, "status"],
      [{ job_ids: ["nope"] }, "job_ids"],
      [{ method: "FETCH" }, "method"],
      [{ error_code: "oops" }, "error_code"],
      [{ queue: "Bad Queue" }, "queue"],
    ] as const) {
      for (const dry_run of [true, false]) {
        const res = await call(protocol, "CancelJobs", { filter, dry_run } as JsonObject);
        expect({ filter, dry_run, code: res.code }).toEqual({ filter, dry_run, code: 3 });
        expect(res.message).toContain(field);
        if (protocol === "rest") expect(res.body.field).toBe(field);
      }
    }
    const bad = await call(protocol, "GetOperation", { operation_id: "op_nope" });
    expect(bad.code).toBe(3);
    const missing = await call(protocol, "GetOperation", { operation_id: `op_${"0".repeat(26)}` });
    expect(missing.code).toBe(5);
  });
});

// ---------------------------------------------------------------------------------------------

/** Seeds `n` queued jobs (due tomorrow) under `tag`, in batches, straight through the queue. */
async function seedQueued(t: TestApp, n: number, tag: string) {
  for (let done = 0; done < n; done += 1000) {
    const size = Math.min(1000, n - done);
    await t.app.queue.enqueueMany(
      Array.from({ length: size }, () => ({
        url: "http://127.0.0.1:9/never",
        scheduledAt: Date.now() + DAY_MS,
        tags: [tag],
      })),
      SYSTEM,
    );
  }
}

/** Jobs, and jobs per batch: an operation over them takes 400 batches. */
const MANY = 2_000;
const BATCH = 5;

describe.each(STORE_KINDS)("bulk operations that do not run to their end, on %s", (store) => {
  const apps: TestApp[] = [];
  afterEach(async () => {
    for (const app of apps.splice(0).reverse()) await app.stop();
  });

  async function start(options: Parameters<typeof startTestApp>[2] = {}) {
    const app = await startTestApp({}, { operationBatch: BATCH }, { store, ...options });
    apps.push(app);
    return app;
  }

  /** Waits until the operation has done some batches, and returns it. */
  function midway(t: TestApp, id: string): Promise<Operation> {
    return waitFor(
      async () => {
        const op = await t.app.store.operationGet({ id });
        return op !== null && op.affected > 0 && op;
      },
      { intervalMs: 1, timeoutMs: 60_000, what: "the operation to be under way" },
    );
  }

  it("resumes an operation interrupted by a restart where it stopped, and audits it once", {
    timeout: 120_000,
  }, async () => {
    const a = await start();
    const tag = uniqueTag("restart");
    await seedQueued(a, MANY, tag);
    const res = await a.rest.post("/jobs:cancel", { filter: { tag: [tag] } });
    expect(res.status, JSON.stringify(res.json)).toBe(200);
    const id: string = res.json.operation.operation_id;
    expect(res.json.count).toBe(MANY);
    await midway(a, id);
    await a.app.stop();

    // Stopped between two batches: part done, the rest left, nothing in the audit log yet.
    const look = await openStore(a.config.db);
    const stopped = (await look.operationGet({ id }))!;
    const counts = await look.statsCounts();
    const audit = await look.auditList({ action: "CancelJobs", limit: 10 });
    await look.close();
    expect(stopped.state).toBe("running");
    expect(stopped.affected).toBeGreaterThan(0);
    expect(stopped.affected).toBeLessThan(MANY);
    expect(counts.find((c) => c.queue === "default")?.counts).toMatchObject({
      canceled: stopped.affected,
      queued: MANY - stopped.affected,
    });
    expect(audit.events).toEqual([]);

    // The next leader takes it up at its cursor.
    const b = await start({ database: a.database });
    const ended = await waitFor(
      async () => {
        const { json } = await b.rest.get(`/operations/${id}`);
        return json.state !== "running" && json;
      },
      { timeoutMs: 60_000, what: "the operation to end after the restart" },
    );
    expect(ended).toMatchObject({ state: "succeeded", affected: MANY, estimate: MANY });
    const { json } = await b.rest.get("/jobs:counts");
    expect(json.total).toMatchObject({ queued: 0, canceled: MANY });
    const rows = (await b.app.store.auditList({ action: "CancelJobs", limit: 10 })).events;
    expect(rows).toHaveLength(1);
    expect(JSON.parse(rows[0]!.detail!)).toMatchObject({
      operation_id: id,
      state: "succeeded",
      affected: MANY,
    });
  });

  it("cancels a running operation between two batches: what it did stays done, the rest is left alone", {
    timeout: 120_000,
  }, async () => {
    const t = await start();
    const clients = createClients(t.url);
    try {
      const tag = uniqueTag("stop");
      await seedQueued(t, MANY, tag);
      const started = await clients.call("grpc", "CancelJobs", { filter: { tag: [tag] } });
      const id: string = started.body.operation.operation_id;
      await midway(t, id);
      const canceled = await clients.call("connect", "CancelOperation", { operation_id: id });
      expect(canceled.code, canceled.message).toBe(0);
      const op = canceled.body.operation;
      expect(short(op.state)).toBe("canceled");
      const affected = num(op.affected);
      expect(affected).toBeGreaterThan(0);
      expect(affected).toBeLessThan(MANY);

      // Another operation starts and ends: the runner has passed the canceled one by.
      const next = await t.rest.post("/jobs:delete", { filter: { tag: ["nothing"] } });
      await waitFor(
        async () =>
          (await t.rest.get(`/operations/${next.json.operation.operation_id}`)).json.state ===
          "succeeded",
      );
      const { json } = await t.rest.get(`/operations/${id}`);
      expect(json).toMatchObject({ state: "canceled", affected });
      const count = async (rpc: string) =>
        (await t.rest.post(rpc, { filter: { tag: [tag] }, dry_run: true })).json.count;
      expect(await count("/jobs:cancel")).toBe(MANY - affected);
      expect(await count("/jobs:retry")).toBe(affected);
      const rows = (await t.app.store.auditList({ action: "CancelJobs", limit: 10 })).events;
      expect(rows.map((r) => [r.outcome, r.protocol])).toEqual([["ok", "connect"]]);
      expect(JSON.parse(rows[0]!.detail!)).toMatchObject({
        operation_id: id,
        state: "canceled",
        filter: { tags: [tag] },
        affected,
      });
    } finally {
      clients.close();
    }
  });
});
