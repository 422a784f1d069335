import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

/**
 * The REST contract of the seed spec (000_d8d2617313d48e68.txt), field for field: its request,
 * status and result examples, the error shape, listing and idempotency. Real server, real target.
 */

let target: Target;
let t: TestApp;

beforeEach(async () => {
  target = await startTarget();
  t = await startTestApp();
});

afterEach(async () => {
  await t?.stop();
  await target?.close();
});

const JOB_ID = /^j_[0-9A-HJKMNP-TV-Z]{26}$/;
const RFC3339_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z$/;

/** The seed's request example, with its url pointed at `url`. */
const seedRequest = (url: string) => ({
  method: "POST",
  url,
  headers: { "Content-Type": "application/json" },
  params: { debug: "1" },
  body: { message: "hello" },
  timeout_sec: 15,
  priority: 5,
  max_attempts: 3,
  backoff_strategy: "exponential",
  backoff_seconds: 5,
  scheduled_at: null,
  ttl_seconds: 604800,
  tags: ["demo", "external-api"],
});

/** The seed's status example (GET /jobs/{job_id}), a running job. */
const SEED_STATUS = {
  job_id: "j_01HXYZ...",
  status: "running",
  attempt: 1,
  max_attempts: 3,
  priority: 5,
  scheduled_at: null,
  created_at: "2025-09-22T14:00:00Z",
  started_at: "2025-09-22T14:00:05Z",
  finished_at: null,
  method: "POST",
  url: "https://httpbin.org/post",
  timeout_sec: 15,
  tags: ["demo", "external-api"],
};

/** The seed's result example (GET /jobs/{job_id}/result). */
const SEED_RESULT = {
  job_id: "j_01HXYZ...",
  status: "succeeded",
  response_status: 200,
  response_headers: { "content-type": "application/json" },
  response_body: { json: { message: "hello" }, url: "https://httpbin.org/post" },
  error: null,
  duration_ms: 286,
};

/** A 1x1 transparent PNG. */
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
  "base64",
);

/** A time far enough ahead that a job scheduled for it stays queued for the whole test. */
const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();

function jsonType(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  return typeof value;
}

/** Asserts `actual` has every field of `example`, each with the example's JSON type. */
function expectSameShape(actual: Record<string, unknown>, example: Record<string, unknown>) {
  const types = (o: Record<string, unknown>) =>
    Object.fromEntries(Object.keys(example).map((k) => [k, k in o ? jsonType(o[k]) : "missing"]));
  expect(types(actual)).toEqual(types(example));
}

/** An httpbin-like /post: echoes the JSON body and the URL it was called with. */
function echoLikeHttpbin(path: string) {
  target.on(path, (req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ json: JSON.parse(req.body.toString()), url: `${target.url}${path}` }));
  });
}

interface Raw {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

/** A raw call that keeps the status, headers and text, for checking the error contract. */
async function call(method: string, path: string, body?: string): Promise<Raw> {
  const res = await fetch(t.url + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body,
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** No answer is a 500, none is anything but JSON, and none leaks a stack trace. */
function expectCleanError(res: Raw) {
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.status).toBeLessThan(500);
  expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  expect(res.json).toBeTypeOf("object");
  expect(res.json.code).toBeTypeOf("string");
  expect(res.json.message).toBeTypeOf("string");
  expect(res.text).not.toMatch(/^\s*at\s/m);
  expect(res.text).not.toMatch(/\bat \S+ \(|(?:file|node):[^\s"]*:\d+:\d+/);
}

describe("POST /jobs with the seed's request example", () => {
  it("answers 200 with exactly {job_id, status: queued}", async () => {
    echoLikeHttpbin("/post");
    const res = await call("POST", "/jobs", JSON.stringify(seedRequest(`${target.url}/post`)));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
    expect(Object.keys(res.json).sort()).toEqual(["job_id", "status"]);
    expect(res.json.job_id).toMatch(JOB_ID);
    expect(res.json.status).toBe("queued");
  });
});

describe("GET /jobs/{id}", () => {
  it("has every field of the seed's status example, with its JSON types, while running", async () => {
    const release = deferred();
    target.on("/post", async (req, res) => {
      await release.promise;
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ json: JSON.parse(req.body.toString()) }));
    });
    const before = Date.now();
    const id = await t.enqueue(seedRequest(`${target.url}/post`));
    await target.request("/post");
    const job = await t.waitForStatus(id, "running");

    expectSameShape(job, SEED_STATUS);
    expect(job).toMatchObject({
      job_id: id,
      status: "running",
      attempt: 1,
      max_attempts: 3,
      priority: 5,
      scheduled_at: null,
      finished_at: null,
      method: "POST",
      url: `${target.url}/post`,
      timeout_sec: 15,
      tags: ["demo", "external-api"],
    });
    expect(job.created_at).toMatch(RFC3339_UTC);
    expect(job.started_at).toMatch(RFC3339_UTC);
    expect(Date.parse(job.created_at)).toBeGreaterThanOrEqual(before - 1);
    expect(Date.parse(job.started_at)).toBeGreaterThanOrEqual(Date.parse(job.created_at));

    release.resolve();
    const done = await t.waitForStatus(id, "succeeded", "failed");
    expect(done.status).toBe("succeeded");
    expect(done.finished_at).toMatch(RFC3339_UTC);
    expect(Date.parse(done.finished_at)).toBeGreaterThanOrEqual(Date.parse(done.started_at));
    expect(done.started_at).toBe(job.started_at);
  });

  it("shows a queued job with nulls for what has not happened and scheduled_at as given", async () => {
    const at = tomorrow();
    const id = await t.enqueue({ url: `${target.url}/later`, scheduled_at: at });
    const { status, json: job } = await t.rest.get(`/jobs/${id}`);
    expect(status).toBe(200);
    expectSameShape(job, { ...SEED_STATUS, scheduled_at: "", started_at: null });
    expect(job).toMatchObject({
      job_id: id,
      status: "queued",
      attempt: 0,
      max_attempts: 3,
      priority: 0,
      scheduled_at: at,
      started_at: null,
      finished_at: null,
      method: "GET",
      tags: [],
    });
    expect(job.created_at).toMatch(RFC3339_UTC);
    expect(job.timeout_sec).toBeTypeOf("number");
  });
});

describe("GET /jobs/{id}/result", () => {
  it("has every field of the seed's result example; a JSON response reads as an object", async () => {
    echoLikeHttpbin("/post");
    const id = await t.enqueue(seedRequest(`${target.url}/post`));
    await t.waitForStatus(id, "succeeded", "failed");
    const { status, json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(status).toBe(200);
    expectSameShape(result, {
      ...SEED_RESULT,
      response_body_encoding: "json",
      truncated: false,
    });
    expect(result).toMatchObject({
      job_id: id,
      status: "succeeded",
      response_status: 200,
      response_body: { json: { message: "hello" }, url: `${target.url}/post` },
      response_body_encoding: "json",
      truncated: false,
      error: null,
    });
    expect(result.response_headers["content-type"]).toBe("application/json");
    expect(Number.isInteger(result.duration_ms)).toBe(true);
    expect(result.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it("reads a text response as a string", async () => {
    target.on("/text", (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end("héllo, wörld\n");
    });
    const id = await t.enqueue({ url: `${target.url}/text` });
    await t.waitForStatus(id, "succeeded", "failed");
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result).toMatchObject({
      status: "succeeded",
      response_body: "héllo, wörld\n",
      response_body_encoding: "text",
      truncated: false,
    });
  });

  it.each([
    ["image/png", PNG],
    ["application/octet-stream", Buffer.from([0, 1, 2, 0xfe, 0xff, 0x80, 0x00, 0x7f])],
  ])("reads a binary (%s) response as base64 of the exact bytes", async (type, bytes) => {
    target.on("/bin", (_req, res) => {
      res.writeHead(200, { "content-type": type }).end(bytes);
    });
    const id = await t.enqueue({ url: `${target.url}/bin` });
    await t.waitForStatus(id, "succeeded", "failed");
    const { json: result } = await t.rest.get(`/jobs/${id}/result`);
    expect(result.status).toBe("succeeded");
    expect(result.response_body_encoding).toBe("base64");
    expect(result.response_body).toBeTypeOf("string");
    expect(result.response_body).toMatch(/^[A-Za-z0-9+/]*={0,2}$/);
    expect(Buffer.from(result.response_body, "base64").equals(bytes)).toBe(true);
    expect(result.response_headers["content-type"]).toBe(type);
    expect(result.truncated).toBe(false);
  });

  it("has null response fields before the first attempt ends", async () => {
    const release = deferred();
    target.on("/held", async (_req, res) => {
      await release.promise;
      res.writeHead(200, { "content-type": "text/plain" }).end("late");
    });
    const queued = await t.enqueue({ url: `${target.url}/never`, scheduled_at: tomorrow() });
    const running = await t.enqueue({ url: `${target.url}/held` });
    await target.request("/held");
    await t.waitForStatus(running, "running");

    for (const [id, status] of [
      [queued, "queued"],
      [running, "running"],
    ] as const) {
      const res = await t.rest.get(`/jobs/${id}/result`);
      expect(res.status).toBe(200);
      expectSameShape(res.json, {
        ...SEED_RESULT,
        status: "",
        response_status: null,
        response_body: null,
        duration_ms: null,
        response_body_encoding: null,
        truncated: false,
      });
      expect(res.json).toMatchObject({
        job_id: id,
        status,
        response_status: null,
        response_body: null,
        response_body_encoding: null,
        truncated: false,
        error: null,
        duration_ms: null,
      });
      // A map has no "unset" in proto3: no headers reads as an empty object.
      expect(res.json.response_headers).toEqual({});
    }
    release.resolve();
    await t.waitForStatus(running, "succeeded");
    expect((await t.rest.get(`/jobs/${running}/result`)).json.response_body).toBe("late");
  });
});

describe("errors", () => {
  const post = (body: unknown) => call("POST", "/jobs", JSON.stringify(body));
  const url = () => `${target.url}/x`;

  it.each<[string, () => Promise<Raw>, string]>([
    ["malformed JSON", () => call("POST", "/jobs", '{"url": "http://x/", '), "body"],
    ["a JSON array as the body", () => call("POST", "/jobs", `[{"url": "http://x/"}]`), "body"],
    ["an unknown field", () => post({ url: url(), colour: "red" }), "colour"],
    ["a wrong type (priority: 'high')", () => post({ url: url(), priority: "high" }), "priority"],
    ["a URL that is not one", () => post({ url: "not a url" }), "url"],
    ["an ftp URL", () => post({ url: "ftp://example.com/file" }), "url"],
    ["an unknown method", () => post({ url: url(), method: "FETCH" }), "method"],
    ["a negative timeout_sec", () => post({ url: url(), timeout_sec: -1 }), "timeout_sec"],
    [
      "an absurd max_attempts",
      () => post({ url: url(), max_attempts: 1_000_000_000 }),
      "max_attempts",
    ],
    [
      "an unknown backoff_strategy",
      () => post({ url: url(), backoff_strategy: "random" }),
      "backoff_strategy",
    ],
    ["tags that are not an array", () => post({ url: url(), tags: "demo" }), "tags"],
    ["a job id that is not one", () => call("GET", "/jobs/not-an-id"), "job_id"],
  ])("answers %s with 400 invalid_argument naming the field", async (_what, send, field) => {
    const res = await send();
    expect(res.status).toBe(400);
    expectCleanError(res);
    expect(res.json).toMatchObject({ code: "invalid_argument", field });
    expect(res.json.message.length).toBeGreaterThan(0);
    // Nothing was stored.
    expect((await t.rest.get("/jobs")).json.jobs).toEqual([]);
  });

  it("answers 404 not_found for a well-formed id that does not exist", async () => {
    for (const path of [
      "/jobs/j_01ARZ3NDEKTSV4RRFFQ69G5FAV",
      "/jobs/j_01ARZ3NDEKTSV4RRFFQ69G5FAV/result",
    ]) {
      const res = await call("GET", path);
      expect(res.status).toBe(404);
      expectCleanError(res);
      expect(res.json.code).toBe("not_found");
    }
  });

  it("answers 409 failed_precondition to cancelling a finished job", async () => {
    const id = await t.enqueue({ url: `${target.url}/ok` });
    await t.waitForStatus(id, "succeeded");
    const res = await call("POST", `/jobs/${id}/cancel`);
    expect(res.status).toBe(409);
    expectCleanError(res);
    expect(res.json.code).toBe("failed_precondition");
  });

  it("answers an unknown path with 404 JSON", async () => {
    const res = await call("GET", "/no/such/path");
    expect(res.status).toBe(404);
    expectCleanError(res);
    expect(res.json.code).toBe("not_found");
  });

  it("answers a wrong method on a known path with 405 and an Allow header", async () => {
    const res = await call("DELETE", "/jobs");
    expect(res.status).toBe(405);
    expectCleanError(res);
    const allow = (res.headers.get("allow") ?? "").split(/,\s*/).sort();
    expect(allow).toEqual(["GET", "HEAD", "POST"]);
  });

  it("serves HEAD wherever GET is served, without a body", async () => {
    const res = await fetch(`${t.url}/jobs`, { method: "HEAD" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.text()).toBe("");
  });
});

describe("GET /jobs", () => {
  /** Enqueues a job that stays queued for the whole test. */
  const enqueueQueued = (extra: Record<string, unknown> = {}) =>
    t.enqueue({ url: `${target.url}/later`, scheduled_at: tomorrow(), ...extra });
  const ids = async (query: string) => {
    const res = await t.rest.get(`/jobs${query}`);
    expect(res.status).toBe(200);
    return (res.json.jobs as any[]).map((j) => j.job_id as string);
  };

  it("lists newest first, each job in the status example's shape", async () => {
    const created: string[] = [];
    for (let i = 0; i < 4; i++) created.push(await enqueueQueued());
    const res = await t.rest.get("/jobs");
    expect(res.status).toBe(200);
    expect(res.json.next_page_token).toBeNull();
    expect(res.json.jobs.map((j: any) => j.job_id)).toEqual([...created].reverse());
    for (const job of res.json.jobs) {
      expectSameShape(job, {
        ...SEED_STATUS,
        status: "queued",
        scheduled_at: "",
        started_at: null,
      });
    }
  });

  it("filters by status, repeatable", async () => {
    const queued = await enqueueQueued();
    const canceled = await enqueueQueued();
    expect((await t.rest.post(`/jobs/${canceled}/cancel`)).status).toBe(200);
    const succeeded = await t.enqueue({ url: `${target.url}/ok` });
    await t.waitForStatus(succeeded, "succeeded");

    expect(await ids("?status=queued&status=canceled")).toEqual([canceled, queued]);
    expect(await ids("?status=queued")).toEqual([queued]);
    expect(await ids("?status=succeeded")).toEqual([succeeded]);
    expect(await ids("?status=running")).toEqual([]);
  });

  it("filters by tag, repeatable, every tag must match", async () => {
    const ab = await enqueueQueued({ tags: ["a", "b"] });
    const a = await enqueueQueued({ tags: ["a"] });
    const bc = await enqueueQueued({ tags: ["b", "c"] });
    await enqueueQueued();

    expect(await ids("?tag=a&tag=b")).toEqual([ab]);
    expect(await ids("?tag=a")).toEqual([a, ab]);
    expect(await ids("?tag=b")).toEqual([bc, ab]);
    expect(await ids("?tag=a&tag=c")).toEqual([]);
  });

  it("filters by created_after and created_before (RFC 3339)", async () => {
    const jobs: { id: string; createdAt: string }[] = [];
    for (let i = 0; i < 3; i++) {
      // Distinct milliseconds, so that each bound falls between two jobs.
      const last = jobs.at(-1);
      if (last) await waitFor(() => Date.now() > Date.parse(last.createdAt));
      const id = await enqueueQueued();
      jobs.push({ id, createdAt: (await t.rest.get(`/jobs/${id}`)).json.created_at });
    }
    const [first, second, third] = jobs as [(typeof jobs)[0], (typeof jobs)[0], (typeof jobs)[0]];
    const q = (s: string) => encodeURIComponent(s);

    expect(await ids(`?created_after=${q(first.createdAt)}`)).toEqual([third.id, second.id]);
    expect(await ids(`?created_before=${q(third.createdAt)}`)).toEqual([second.id, first.id]);
    expect(
      await ids(`?created_after=${q(first.createdAt)}&created_before=${q(third.createdAt)}`),
    ).toEqual([second.id]);

    const bad = await call("GET", "/jobs?created_after=yesterday");
    expect(bad.status).toBe(400);
    expectCleanError(bad);
    expect(bad.json.field).toBe("created_after");
  });

  it("pages with page_size and page_token, every job exactly once", async () => {
    const created: string[] = [];
    for (let i = 0; i < 7; i++) created.push(await enqueueQueued());

    const seen: string[] = [];
    const sizes: number[] = [];
    let token: string | null = null;
    do {
      const query: string = `?page_size=3${token ? `&page_token=${encodeURIComponent(token)}` : ""}`;
      const res = await t.rest.get(`/jobs${query}`);
      expect(res.status).toBe(200);
      sizes.push(res.json.jobs.length);
      seen.push(...res.json.jobs.map((j: any) => j.job_id));
      token = res.json.next_page_token;
      expect(token === null || typeof token === "string").toBe(true);
    } while (token !== null && sizes.length < 10);

    expect(sizes).toEqual([3, 3, 1]);
    expect(seen).toEqual([...created].reverse());

    // A page that ends exactly at the last job says there is no more.
    const whole = await t.rest.get("/jobs?page_size=7");
    expect(whole.json.jobs).toHaveLength(7);
    expect(whole.json.next_page_token).toBeNull();
  });

  it("refuses page_size 5000 and a garbage page_token, naming them", async () => {
    const big = await call("GET", "/jobs?page_size=5000");
    expect(big.status).toBe(400);
    expectCleanError(big);
    expect(big.json).toMatchObject({ code: "invalid_argument", field: "page_size" });

    const garbage = await call("GET", "/jobs?page_token=not-a-token");
    expect(garbage.status).toBe(400);
    expectCleanError(garbage);
    expect(garbage.json).toMatchObject({ code: "invalid_argument", field: "page_token" });
  });
});

describe("idempotency", () => {
  it("returns the same job for two POSTs with the same idempotency_key; only one exists", async () => {
    const job = { url: `${target.url}/later`, scheduled_at: tomorrow(), idempotency_key: "k-1" };
    const first = await t.rest.post("/jobs", job);
    const second = await t.rest.post("/jobs", job);
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(first.json.job_id).toMatch(JOB_ID);
    expect(second.json.job_id).toBe(first.json.job_id);

    const list = await t.rest.get("/jobs");
    expect(list.json.jobs.map((j: any) => j.job_id)).toEqual([first.json.job_id]);

    // Concurrent repeats too.
    const racing = await Promise.all(
      Array.from({ length: 5 }, () => t.rest.post("/jobs", { ...job, idempotency_key: "k-race" })),
    );
    expect(racing.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(new Set(racing.map((r) => r.json.job_id)).size).toBe(1);
    expect((await t.rest.get("/jobs")).json.jobs).toHaveLength(2);

    // Another key is another job.
    const other = await t.rest.post("/jobs", { ...job, idempotency_key: "k-2" });
    expect(other.json.job_id).not.toBe(first.json.job_id);
    expect((await t.rest.get("/jobs")).json.jobs).toHaveLength(3);
  });

  it("the same key with a different request is a 409 naming the key; the first job stands", async () => {
    const job = {
      url: `${target.url}/later`,
      scheduled_at: tomorrow(),
      idempotency_key: "k-3",
      body: { a: 1, b: [1, 2] },
    };
    const first = await t.rest.post("/jobs", job);
    expect(first.status).toBe(200);
    // The same request with its JSON keys in another order is the same request.
    const reordered = await t.rest.post("/jobs", {
      body: { b: [1, 2], a: 1 },
      idempotency_key: "k-3",
      scheduled_at: job.scheduled_at,
      url: job.url,
    });
    expect(reordered.status).toBe(200);
    expect(reordered.json.job_id).toBe(first.json.job_id);

    const changed = await call(
      "POST",
      "/jobs",
      JSON.stringify({ ...job, body: { a: 2, b: [1, 2] } }),
    );
    expect(changed.status).toBe(409);
    expect(changed.json.code).toBe("already_exists");
    expect(changed.json.message).toContain('"k-3"');
    expect(changed.json.message).toContain(first.json.job_id);
    expectCleanError(changed);
    const got = await t.rest.get(`/jobs/${first.json.job_id}`);
    expect(got.json.body).toEqual({ a: 1, b: [1, 2] });
  });
});

describe("POST /jobs:batch", () => {
  it("stores every job in one call and answers their ids in request order; all run", async () => {
    const res = await t.rest.post("/jobs:batch", {
      jobs: [
        { url: `${target.url}/b?i=0` },
        { url: `${target.url}/b?i=1`, method: "POST", body: { n: 1 } },
        { url: `${target.url}/b?i=2`, tags: ["batch"] },
      ],
    });
    expect(res.status).toBe(200);
    expect(res.json.jobs).toHaveLength(3);
    for (const job of res.json.jobs)
      expect(job).toEqual({ job_id: expect.stringMatching(JOB_ID), status: "queued" });
    for (const [i, job] of res.json.jobs.entries()) {
      const done = await t.waitForStatus(job.job_id, "succeeded");
      expect(done.url).toBe(`${target.url}/b?i=${i}`);
    }
    expect(target.received("/b")).toHaveLength(3);
  });

  it("stores nothing when one job is invalid, and names it by index", async () => {
    const res = await t.rest.post("/jobs:batch", {
      jobs: [{ url: `${target.url}/ok` }, { url: "ftp://example.com/x" }],
    });
    expect(res.status).toBe(400);
    expect(res.json).toMatchObject({ code: "invalid_argument", field: "jobs[1].url" });
    expect((await t.rest.get("/jobs")).json.jobs).toEqual([]);
  });

  it("refuses an empty batch and one over 1000 jobs", async () => {
    const empty = await t.rest.post("/jobs:batch", { jobs: [] });
    expect(empty.status).toBe(400);
    expect(empty.json.field).toBe("jobs");
    const huge = await t.rest.post("/jobs:batch", {
      jobs: Array.from({ length: 1001 }, () => ({ url: `${target.url}/x` })),
    });
    expect(huge.status).toBe(400);
    expect(huge.json.message).toMatch(/at most 1000/);
    expect((await t.rest.get("/jobs")).json.jobs).toEqual([]);
  });
});
