import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

let target: Target;
let t: TestApp;

beforeEach(async () => {
  target = await startTarget();
});

afterEach(async () => {
  await t?.stop();
  await target.close();
});

const attemptsOf = async (id: string) => (await t.rest.get(`/jobs/${id}/attempts`)).json.attempts;

describe("a job's life against a real target", () => {
  it("succeeds: the target gets the method, headers, params and body; the result keeps the JSON response", async () => {
    t = await startTestApp();
    target.on("/post", (req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ json: JSON.parse(req.body.toString()), q: req.query.get("debug") }));
    });
    const id = await t.enqueue({
      method: "POST",
      url: `${target.url}/post`,
      headers: { "X-Trace": "abc" },
      params: { debug: "1" },
      body: { message: "hello" },
    });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("succeeded");
    expect(job.attempt).toBe(1);
    expect(job.finished_at).not.toBeNull();

    const req = await target.request("/post");
    expect(req.method).toBe("POST");
    expect(req.headers["x-trace"]).toBe("abc");
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.query.get("debug")).toBe("1");
    expect(JSON.parse(req.body.toString())).toEqual({ message: "hello" });

    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result).toMatchObject({
      job_id: id,
      status: "succeeded",
      response_status: 200,
      response_body: { json: { message: "hello" }, q: "1" },
      response_body_encoding: "json",
      truncated: false,
      error: null,
    });
    expect(result.response_headers["content-type"]).toBe("application/json");
    expect(typeof result.duration_ms).toBe("number");
  });

  it("retries a 500 and then succeeds, keeping every attempt", async () => {
    t = await startTestApp();
    target.on("/flaky", (_req, res, n) => {
      if (n < 3) res.writeHead(500).end("boom");
      else res.writeHead(200, { "content-type": "text/plain" }).end("fine");
    });
    const id = await t.enqueue({
      url: `${target.url}/flaky`,
      max_attempts: 5,
      backoff_strategy: "fixed",
      backoff_seconds: 0.01,
    });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("succeeded");
    expect(job.attempt).toBe(3);
    expect(job.last_error).toBeNull();
    const attempts = await attemptsOf(id);
    expect(attempts.map((a: any) => [a.attempt, a.outcome, a.response_status])).toEqual([
      [1, "failed", 500],
      [2, "failed", 500],
      [3, "succeeded", 200],
    ]);
    expect(attempts[0].retryable).toBe(true);
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result.response_body).toBe("fine");
    expect(result.response_body_encoding).toBe("text");
    expect(result.attempt).toBe(3);
  });

  it("fails after max_attempts when every attempt fails", async () => {
    t = await startTestApp();
    target.on("/down", (_req, res) => {
      res.writeHead(503).end();
    });
    const id = await t.enqueue({
      url: `${target.url}/down`,
      max_attempts: 3,
      backoff_strategy: "exponential",
      backoff_seconds: 0.01,
    });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("failed");
    expect(job.attempt).toBe(3);
    expect(job.attempt).toBe(job.max_attempts);
    expect(job.last_error).toBe("HTTP 503");
    expect(target.received("/down")).toHaveLength(3);
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result).toMatchObject({ status: "failed", response_status: 503, error: "HTTP 503" });
  });

  it("fails at once on a 404: a client error is not retried", async () => {
    t = await startTestApp();
    target.on("/missing", (_req, res) => {
      res.writeHead(404, { "content-type": "application/json" }).end('{"detail":"nope"}');
    });
    const id = await t.enqueue({ url: `${target.url}/missing`, max_attempts: 5 });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("failed");
    expect(job.attempt).toBe(1);
    const attempts = await attemptsOf(id);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]).toMatchObject({
      outcome: "failed",
      response_status: 404,
      retryable: false,
    });
    expect((await t.rest.get(`/jobs/${id}/result`)).json.response_body).toEqual({ detail: "nope" });
  });

  it("waits as long as a 429's Retry-After says before retrying", async () => {
    t = await startTestApp();
    target.on("/limited", (_req, res, n) => {
      if (n === 1) res.writeHead(429, { "retry-after": "1" }).end();
      else res.writeHead(200).end();
    });
    const id = await t.enqueue({
      url: `${target.url}/limited`,
      max_attempts: 2,
      backoff_strategy: "fixed",
      backoff_seconds: 0,
    });
    const queued = await waitFor(async () => {
      const { json } = await t.rest.get(`/jobs/${id}`);
      return json.attempt === 1 && json.status === "queued" ? json : undefined;
    });
    // Due a second after the 429 arrived (between the attempt's start and the time its end was
    // written, which is stamped a moment after the decision).
    const [firstAttempt] = await attemptsOf(id);
    const due = Date.parse(queued.next_run_at);
    expect(due - Date.parse(firstAttempt.started_at)).toBeGreaterThanOrEqual(1000);
    expect(due - Date.parse(firstAttempt.finished_at)).toBeLessThanOrEqual(1000);
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("succeeded");
    const [first, second] = target.received("/limited");
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
    expect((await attemptsOf(id))[0]).toMatchObject({ response_status: 429, retryable: true });
  });

  it("times out a call that does not answer, closing its connection", async () => {
    t = await startTestApp();
    target.on("/slow", () => {
      // never answers
    });
    const id = await t.enqueue({ url: `${target.url}/slow`, timeout_sec: 0.3, max_attempts: 1 });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("failed");
    expect(job.last_error).toMatch(/timed out after 0.3s/);
    const [attempt] = await attemptsOf(id);
    expect(attempt).toMatchObject({ outcome: "failed", error_code: "timeout", retryable: true });
    expect(await (await target.request("/slow")).closed).toBe("aborted");
  });

  it("times out a body that trickles in past the timeout", async () => {
    t = await startTestApp();
    target.on("/trickle", (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      const timer = setInterval(() => res.write("x"), 50);
      res.once("close", () => clearInterval(timer));
    });
    const id = await t.enqueue({ url: `${target.url}/trickle`, timeout_sec: 0.3, max_attempts: 1 });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("failed");
    expect((await attemptsOf(id))[0].error_code).toBe("timeout");
  });

  it("retries network errors (nothing listening)", async () => {
    t = await startTestApp();
    const dead = await startTarget();
    const url = `${dead.url}/gone`;
    await dead.close();
    const id = await t.enqueue({ url, max_attempts: 2, backoff_seconds: 0.01 });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("failed");
    expect(job.attempt).toBe(2);
    const attempts = await attemptsOf(id);
    expect(attempts.map((a: any) => a.error_code)).toEqual(["network", "network"]);
    expect(attempts[0].error).toMatch(/ECONNREFUSED/);
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result.response_status).toBeNull();
    expect(result.error).toMatch(/ECONNREFUSED/);
  });
});

describe("cancel", () => {
  it("cancels a queued job at once; it never runs", async () => {
    t = await startTestApp();
    const future = new Date(Date.now() + 60_000).toISOString();
    const id = await t.enqueue({ url: `${target.url}/never`, scheduled_at: future });
    const res = await t.rest.post(`/jobs/${id}/cancel`);
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ job_id: id, status: "canceled", attempt: 0 });
    expect(res.json.finished_at).not.toBeNull();
    expect((await t.rest.get(`/jobs/${id}`)).json.status).toBe("canceled");
    expect(target.received("/never")).toHaveLength(0);
  });

  it("aborts a running call: the target sees its connection close", async () => {
    t = await startTestApp();
    target.on("/hang", () => {
      // holds the request open
    });
    const id = await t.enqueue({ url: `${target.url}/hang`, max_attempts: 3 });
    const req = await target.request("/hang");
    await t.waitForStatus(id, "running");
    const res = await t.rest.post(`/jobs/${id}/cancel`);
    expect(res.status).toBe(200);
    expect(res.json.status).toBe("canceled");
    expect(await req.closed).toBe("aborted");
    const attempts = await waitFor(async () => {
      const a = await attemptsOf(id);
      return a[0].outcome === "canceled" ? a : undefined;
    });
    expect(attempts).toHaveLength(1);
    expect(attempts[0].error_code).toBe("canceled");
    // The job stays canceled: the aborted call does not write over it, and it is not retried.
    expect((await t.rest.get(`/jobs/${id}`)).json).toMatchObject({
      status: "canceled",
      attempt: 1,
    });
    expect(target.received("/hang")).toHaveLength(1);
  });

  it("refuses to cancel a finished job with 409", async () => {
    t = await startTestApp();
    const id = await t.enqueue({ url: `${target.url}/ok` });
    await t.waitForStatus(id, "succeeded");
    const res = await t.rest.post(`/jobs/${id}/cancel`);
    expect(res.status).toBe(409);
    expect(res.json.code).toBe("failed_precondition");
    expect(res.json.message).toMatch(/succeeded/);
    expect((await t.rest.get(`/jobs/${id}`)).json.status).toBe("succeeded");
  });
});

describe("scheduling", () => {
  it("runs higher priority first (concurrency 1)", async () => {
    t = await startTestApp({ JOBQUEUE_CONCURRENCY: "1" });
    const release = deferred();
    target.on("/block", async (_req, res) => {
      await release.promise;
      res.end();
    });
    const blocker = await t.enqueue({ url: `${target.url}/block` });
    await target.request("/block");
    const priorities = [1, 5, -2, 10, 5, 3];
    const ids: string[] = [];
    for (const [i, priority] of priorities.entries()) {
      ids.push(await t.enqueue({ url: `${target.url}/p?i=${i}`, priority }));
    }
    release.resolve();
    for (const id of ids) await t.waitForStatus(id, "succeeded");
    await t.waitForStatus(blocker, "succeeded");
    const order = target.received("/p").map((r) => priorities[Number(r.query.get("i"))]);
    expect(order).toEqual([10, 5, 5, 3, 1, -2]);
    // Equal priorities run in submit order.
    const fives = target.received("/p").filter((r) => ["1", "4"].includes(r.query.get("i")!));
    expect(fives.map((r) => r.query.get("i"))).toEqual(["1", "4"]);
  });

  it("does not run a job before scheduled_at", async () => {
    t = await startTestApp();
    const at = Date.now() + 1200;
    const scheduledAt = new Date(at).toISOString();
    const id = await t.enqueue({ url: `${target.url}/later`, scheduled_at: scheduledAt });
    const { json } = await t.rest.get(`/jobs/${id}`);
    expect(json.status).toBe("queued");
    expect(json.scheduled_at).toBe(scheduledAt);
    expect(json.next_run_at).toBe(scheduledAt);
    const req = await target.request("/later");
    expect(req.at).toBeGreaterThanOrEqual(at);
    await t.waitForStatus(id, "succeeded");
  });

  it("runs a job at once when an enqueue arrives, not at the next poll", async () => {
    // A poll interval of a minute: only the wake-up can start the job.
    t = await startTestApp({ JOBQUEUE_POLL_INTERVAL: "60" });
    const id = await t.enqueue({ url: `${target.url}/now` });
    await t.waitForStatus(id, "succeeded");
  });
});

describe("ttl and size caps", () => {
  it("deletes a job, its attempts and its result once its TTL after finishing has passed", async () => {
    t = await startTestApp({ JOBQUEUE_CLEANUP_INTERVAL: "0.05" });
    const id = await t.enqueue({ url: `${target.url}/ok`, ttl_seconds: 1 });
    const job = await t.waitForStatus(id, "succeeded");
    expect(Date.parse(job.expires_at) - Date.parse(job.finished_at)).toBe(1000);
    await waitFor(async () => (await t.rest.get(`/jobs/${id}`)).status === 404, {
      what: "the job to read as gone",
    });
    expect((await t.rest.get(`/jobs/${id}/result`)).status).toBe(404);
    expect((await t.rest.get(`/jobs/${id}/attempts`)).status).toBe(404);
    // Reads hide an expired job at once; the cleaner then deletes its rows.
    await waitFor(
      async () =>
        (await t.app.store.attemptList({ jobId: id })).length === 0 &&
        (await t.app.store.resultGet({ jobId: id })) === null,
      { what: "the cleaner to delete the rows" },
    );
  });

  it("cuts a response body at JOBQUEUE_RESULT_MAX_BYTES, even an endless one", async () => {
    t = await startTestApp({ JOBQUEUE_RESULT_MAX_BYTES: "65536" });
    let sent = 0;
    target.on("/endless", (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      const chunk = Buffer.alloc(64 * 1024, 0xab);
      const pump = () => {
        while (!res.destroyed) {
          sent += chunk.length;
          if (!res.write(chunk)) break;
        }
        if (!res.destroyed) res.once("drain", pump);
      };
      pump();
    });
    const id = await t.enqueue({ url: `${target.url}/endless` });
    const job = await t.waitForStatus(id, "succeeded", "failed");
    expect(job.status).toBe("succeeded");
    // The stream was cut: the target never finished (it could not: the body has no end).
    expect(await (await target.request("/endless")).closed).toBe("aborted");
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result.truncated).toBe(true);
    expect(result.response_body_encoding).toBe("base64");
    const body = Buffer.from(result.response_body, "base64");
    expect(body.length).toBe(65536);
    expect(body.every((b) => b === 0xab)).toBe(true);
    expect(sent).toBeGreaterThan(65536);
  });

  it("keeps a body under the cap whole, and reads a cut JSON body as text", async () => {
    t = await startTestApp({ JOBQUEUE_RESULT_MAX_BYTES: "10" });
    target.on("/json", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"a":"0123456789"}');
    });
    const id = await t.enqueue({ url: `${target.url}/json` });
    await t.waitForStatus(id, "succeeded");
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result).toMatchObject({
      truncated: true,
      response_body: '{"a":"0123',
      response_body_encoding: "text",
    });
  });
});
