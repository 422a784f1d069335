import { readFileSync } from "node:fs";
import { getOption } from "@bufbuild/protobuf";
import { compileErrors, dereference, validate } from "@readme/openapi-parser";
import { Ajv2020 } from "ajv/dist/2020.js";
import ajvFormats from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { http } from "../../gen/google/api/annotations_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { QueueService } from "../../gen/jobqueue/v1/queue_service_pb.js";
import { ScheduleService } from "../../gen/jobqueue/v1/schedule_service_pb.js";
import { buildOpenApiDocument } from "../../src/openapi/openapi-document.js";
import { VERSION } from "../../src/package-info.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

/**
 * The OpenAPI document of the REST API: valid OpenAPI 3.1 (checked by @readme/openapi-parser),
 * served as committed, in step with the proto, and true: a generic client that knows only the
 * document calls every operation on a real server, and every answer fits the document's schemas.
 */

// ajv-formats is CommonJS: its default import is the plugin itself at run time.
const addFormats = ajvFormats as unknown as typeof ajvFormats.default;

const committed = JSON.parse(
  readFileSync(new URL("../../openapi/openapi.json", import.meta.url), "utf8"),
) as any;

/** The document without prose (descriptions come from proto comments, which need buf to read). */
function structure(doc: unknown): unknown {
  return JSON.parse(JSON.stringify(doc), (key, value) =>
    key === "description" || key === "summary" ? undefined : value,
  );
}

describe("the OpenAPI document", () => {
  it("is valid OpenAPI 3.1", async () => {
    const result = await validate(structuredClone(committed));
    expect(result.valid, result.valid ? "" : compileErrors(result)).toBe(true);
    expect(result.specification).toBe("OpenAPI");
    expect(committed.openapi).toBe("3.1.0");
    expect(committed.info.version).toBe(VERSION);
  });

  it("is what the proto generates (run `npm run generate` after changing proto/)", () => {
    const fresh = buildOpenApiDocument({
      services: [JobQueueService, QueueService, ScheduleService],
      version: VERSION,
    });
    expect(structure(committed)).toEqual(structure(fresh));
  });

  it("has an operation for every google.api.http binding, named after its RPC", () => {
    for (const method of [
      ...JobQueueService.methods,
      ...QueueService.methods,
      ...ScheduleService.methods,
    ]) {
      const rule = getOption(method, http);
      if (rule.pattern.case === undefined) {
        expect(method.methodKind, `${method.name} has no REST route`).toBe("server_streaming");
        continue;
      }
      const path = (rule.pattern.value as string).replace(/=\*\}/g, "}");
      expect(committed.paths[path]?.[rule.pattern.case]?.operationId).toBe(method.name);
    }
  });

  it("describes REST JSON: snake_case names, lowercase enums without prefix, RFC 3339 times, free JSON bodies", () => {
    const job = committed.components.schemas.Job;
    expect(Object.keys(job.properties)).toContain("max_attempts");
    expect(job.properties.status.enum).toEqual([
      "queued",
      "running",
      "succeeded",
      "failed",
      "canceled",
      null,
    ]);
    expect(job.properties.created_at).toMatchObject({ format: "date-time" });
    expect(job.properties.body).toEqual(expect.not.objectContaining({ type: expect.anything() }));
    expect(committed.components.schemas.Error.required).toEqual(["code", "message"]);
  });
});

describe("a generic client built from the document", () => {
  let target: Target;
  let app: TestApp;
  let doc: any;
  const ajv = new Ajv2020({ allErrors: true, strict: true });
  addFormats(ajv);
  ajv.addFormat("int32", { type: "number", validate: (n: number) => n === (n | 0) });
  ajv.addFormat("int64", { type: "number", validate: Number.isSafeInteger });
  ajv.addFormat("double", { type: "number", validate: () => true });
  ajv.addFormat("float", { type: "number", validate: () => true });
  ajv.addVocabulary(["example"]);
  const called = new Set<string>();

  beforeAll(async () => {
    target = await startTarget();
    app = await startTestApp();
    const served = await fetch(`${app.url}/openapi.json`);
    expect(served.status).toBe(200);
    expect(served.headers.get("content-type")).toBe("application/json");
    const json = (await served.json()) as any;
    expect(json, "the server serves the committed document").toEqual(committed);
    doc = await dereference(json);
  });

  afterAll(async () => {
    await app.stop();
    await target.close();
  });

  /** Whether `value` fits `schema`; fails the test with ajv's errors if not. */
  function fits(schema: object, value: unknown, what: string) {
    const check = ajv.compile(schema);
    expect(check(value), `${what}: ${ajv.errorsText(check.errors)}`).toBe(true);
  }

  /**
   * Calls an operation by its operationId, knowing only the document: the path template, the
   * method and the declared parameters (anything undeclared fails the test); checks the request
   * body and the answer against the document's schemas.
   */
  async function call(
    operationId: string,
    args: { path?: Record<string, string>; query?: Record<string, unknown>; body?: unknown } = {},
  ): Promise<{ status: number; json: any }> {
    const found = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(
      ([template, item]) =>
        Object.entries(item)
          .filter(([, op]) => op.operationId === operationId)
          .map(([verb, op]) => ({ template, verb, op })),
    );
    expect(found, `one operation ${operationId}`).toHaveLength(1);
    const { template, verb, op } = found[0]!;
    const declared = (where: string) =>
      new Map<string, any>(
        (op.parameters ?? []).filter((p: any) => p.in === where).map((p: any) => [p.name, p]),
      );
    const pathParams = declared("path");
    const path = template.replace(/\{(\w+)\}/g, (_m, name: string) => {
      expect(pathParams.has(name), `${name} is a declared path parameter`).toBe(true);
      return encodeURIComponent(args.path?.[name] ?? "");
    });
    const url = new URL(path, app.url);
    const queryParams = declared("query");
    for (const [name, value] of Object.entries(args.query ?? {})) {
      const param = queryParams.get(name);
      expect(param, `${operationId} declares the query parameter ${name}`).toBeDefined();
      fits(param.schema, value, `query parameter ${name}`);
      for (const v of Array.isArray(value) && param.explode ? value : [value]) {
        url.searchParams.append(name, String(v));
      }
    }
    const init: RequestInit = { method: verb.toUpperCase() };
    if (args.body !== undefined) {
      const content = op.requestBody?.content?.["application/json"];
      expect(content, `${operationId} takes a JSON body`).toBeDefined();
      fits(content.schema, args.body, `${operationId} request body`);
      init.body = JSON.stringify(args.body);
      init.headers = { "content-type": "application/json" };
    }
    const res = await fetch(url, init);
    const json = await res.json();
    const response = op.responses[String(res.status)] ?? op.responses.default;
    expect(response, `${operationId} documents ${res.status}`).toBeDefined();
    fits(response.content["application/json"].schema, json, `${operationId} ${res.status}`);
    called.add(operationId);
    return { status: res.status, json };
  }

  /**
   * Reads a streaming operation's Server-Sent Events until `last` says so or the stream ends,
   * checking each event's data against the document.
   */
  async function stream(
    operationId: string,
    args: { path?: Record<string, string>; query?: Record<string, unknown> },
    last: (data: any) => boolean,
  ): Promise<{ event: string | null; id: string | null; data: any }[]> {
    const [template, item] = Object.entries(doc.paths as Record<string, Record<string, any>>).find(
      ([, item]) => item.get?.operationId === operationId,
    )!;
    const op = item.get;
    const url = new URL(
      template.replace(/\{(\w+)\}/g, (_m, name: string) => encodeURIComponent(args.path![name]!)),
      app.url,
    );
    for (const [name, value] of Object.entries(args.query ?? {})) {
      for (const v of Array.isArray(value) ? value : [value])
        url.searchParams.append(name, String(v));
    }
    const ac = new AbortController();
    const res = await fetch(url, { signal: ac.signal, headers: { accept: "text/event-stream" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const schema = op.responses["200"].content["text/event-stream"].schema;
    called.add(operationId);
    const out: { event: string | null; id: string | null; data: any }[] = [];
    let buffer = "";
    const decoder = new TextDecoder();
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        buffer += decoder.decode(chunk, { stream: true });
        let end = buffer.indexOf("\n\n");
        while (end !== -1) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf("\n\n");
          const field = (name: string) =>
            frame
              .split("\n")
              .find((l) => l.startsWith(`${name}: `))
              ?.slice(name.length + 2) ?? null;
          const data = JSON.parse(field("data")!);
          fits(schema, data, `${operationId} event`);
          out.push({ event: field("event"), id: field("id"), data });
          if (last(data)) return out;
        }
      }
    } finally {
      ac.abort();
    }
    return out;
  }

  it("calls every operation with success, and every answer fits the document", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    target.on("/held", async (_req, res) => {
      await held;
      res.writeHead(200).end();
    });
    target.on("/json", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"answer":[1,"two",null]}');
    });

    const one = await call("EnqueueJob", {
      body: {
        method: "POST",
        url: `${target.url}/json`,
        headers: { "X-Trace": "t1", Authorization: "Bearer s" },
        params: { q: "1" },
        body: { hello: ["world", 1, true, null] },
        priority: 5,
        max_attempts: 2,
        backoff_strategy: "linear",
        backoff_seconds: 0.5,
        scheduled_at: null,
        ttl_seconds: 3600,
        tags: ["openapi", "demo"],
        idempotency_key: "openapi-1",
      },
    });
    expect(one).toMatchObject({ status: 200, json: { status: "queued" } });
    const jobId = one.json.job_id as string;

    const batch = await call("EnqueueJobs", {
      body: {
        jobs: [{ url: `${target.url}/held`, tags: ["openapi"] }, { url: `${target.url}/a` }],
      },
    });
    expect(batch.status).toBe(200);
    expect(batch.json.jobs).toHaveLength(2);
    const heldId = batch.json.jobs[0].job_id as string;

    await app.waitForStatus(jobId, "succeeded");
    const job = await call("GetJob", { path: { job_id: jobId } });
    expect(job.json).toMatchObject({ job_id: jobId, status: "succeeded", method: "POST" });
    const result = await call("GetJobResult", { path: { job_id: jobId } });
    expect(result.json).toMatchObject({
      response_status: 200,
      response_body: { answer: [1, "two", null] },
      response_body_encoding: "json",
    });
    const attempts = await call("ListJobAttempts", { path: { job_id: jobId } });
    expect(attempts.json.attempts).toHaveLength(1);

    const listed = await call("ListJobs", {
      query: { status: ["succeeded", "running"], tag: ["openapi"], page_size: 10 },
    });
    expect(listed.json.jobs.map((j: any) => j.job_id)).toContain(jobId);

    await target.request("/held");
    const canceled = await call("CancelJob", { path: { job_id: heldId } });
    expect(canceled.json).toMatchObject({ job_id: heldId, status: "canceled" });
    release();

    const audit = await call("ListAuditEvents", { query: { action: "EnqueueJob", page_size: 5 } });
    expect(audit.json.events.length).toBeGreaterThan(0);
    // Without keys (this server has none), every caller acts as an admin.
    expect((await call("GetCaller", {})).json).toMatchObject({
      authentication_required: false,
      role: "admin",
    });
    const nodes = await call("ListNodes", {});
    expect(nodes.json.nodes).toHaveLength(1);

    // Operating jobs: retry the canceled one, count, bulk actions and their operations, delete.
    const retried = await call("RetryJob", { path: { job_id: heldId }, body: { max_attempts: 5 } });
    expect(retried.json).toMatchObject({ job_id: heldId, status: "queued", max_attempts: 5 });
    await app.waitForStatus(heldId, "succeeded");
    const counts = await call("GetJobCounts", { query: { group_by: "host" } });
    expect(counts.json.total.succeeded).toBeGreaterThanOrEqual(2);
    const dry = await call("DeleteJobs", {
      body: { filter: { status: ["succeeded"], tag: ["openapi"] }, dry_run: true },
    });
    expect(dry.json).toMatchObject({ count: 2, count_capped: false, operation: null });
    const none = await call("CancelJobs", {
      body: { filter: { tag: ["nothing"] }, dry_run: true },
    });
    expect(none.json.count).toBe(0);
    const again = await call("RetryJobs", { body: { filter: { tag: ["nothing"] } } });
    expect(again.json.operation.kind).toBe("retry");
    const started = await call("DeleteJobs", { body: { filter: { job_ids: [heldId] } } });
    expect(started.json.operation).toMatchObject({ kind: "delete", estimate: 1 });
    const opId = started.json.operation.operation_id as string;
    await waitFor(
      async () =>
        (await call("GetOperation", { path: { operation_id: opId } })).json.state === "succeeded",
      {
        what: "the bulk delete to end",
      },
    );
    expect((await call("ListOperations", {})).json.operations.length).toBeGreaterThanOrEqual(2);
    const ended = await call("CancelOperation", { path: { operation_id: opId } });
    expect(ended.json.code).toBe("failed_precondition");
    expect((await app.rest.get(`/jobs/${heldId}`)).status).toBe(404);
    expect((await call("DeleteJob", { path: { job_id: jobId } })).json).toEqual({});

    // Queues.
    const queue = await call("CreateQueue", {
      body: { name: "reports", settings: { concurrency: 2, rate_per_second: 5, max_attempts: 7 } },
    });
    expect(queue.json).toMatchObject({
      name: "reports",
      concurrency: 2,
      rate_per_second: 5,
      burst: 1,
      max_attempts: 7,
      paused: false,
    });
    expect(
      (
        await call("UpdateQueue", {
          path: { name: "reports" },
          body: { settings: { concurrency: 0 } },
        })
      ).json.concurrency,
    ).toBeNull();
    expect((await call("PauseQueue", { path: { name: "reports" } })).json.paused).toBe(true);
    expect((await call("ResumeQueue", { path: { name: "reports" } })).json.paused).toBe(false);
    expect((await call("GetQueue", { path: { name: "reports" } })).json.name).toBe("reports");
    expect((await call("ListQueues", {})).json.queues.map((q: any) => q.name)).toEqual([
      "default",
      "reports",
    ]);
    const stats = await call("GetQueueStats", {
      path: { name: "default" },
      query: { window_minutes: 5 },
    });
    expect(stats.json.per_minute).toHaveLength(5);
    expect(stats.json.counts.succeeded).toBeGreaterThanOrEqual(1);
    expect((await call("DeleteQueue", { path: { name: "reports" } })).json).toEqual({});

    // Schedules.
    const created = await call("CreateSchedule", {
      body: {
        schedule: {
          template: { url: `${target.url}/json`, headers: { authorization: "Bearer x" } },
          cron: "@hourly",
          time_zone: "Europe/Berlin",
          overlap_policy: "allow",
        },
      },
    });
    const sid = created.json.schedule_id as string;
    expect(created.json).toMatchObject({ cron: "@hourly", overlap_policy: "allow", paused: false });
    expect(created.json.template.headers.authorization).toBe("***");
    expect((await call("GetSchedule", { path: { schedule_id: sid } })).json.schedule_id).toBe(sid);
    expect((await call("ListSchedules", {})).json.schedules.map((s: any) => s.schedule_id)).toEqual(
      [sid],
    );
    expect(
      (
        await call("UpdateSchedule", {
          path: { schedule_id: sid },
          body: { schedule: { cron: "0 9 * * *" } },
        })
      ).json.cron,
    ).toBe("0 9 * * *");
    expect((await call("PauseSchedule", { path: { schedule_id: sid } })).json.paused).toBe(true);
    expect((await call("ResumeSchedule", { path: { schedule_id: sid } })).json.paused).toBe(false);
    const run = await call("TriggerSchedule", { path: { schedule_id: sid } });
    expect(run.json.job.schedule_id).toBe(sid);
    expect(
      (await call("ListJobs", { query: { schedule_id: sid } })).json.jobs.map((j: any) => j.job_id),
    ).toEqual([run.json.job.job_id]);
    expect((await call("DeleteSchedule", { path: { schedule_id: sid } })).json).toEqual({});

    // The streams, as Server-Sent Events: every event's data fits the document.
    const from = (await call("ListJobs", { query: { page_size: 1 } })).json.watch_cursor as string;
    const watched = (await call("EnqueueJob", { body: { url: `${target.url}/json` } })).json
      .job_id as string;
    const events = await stream(
      "WatchJobs",
      { query: { job_ids: [watched], after_cursor: from } },
      (data) => data.event?.type === "succeeded",
    );
    expect(events[0]!.event).toBe("heartbeat");
    expect(events.map((e) => e.event)).toContain("running");
    const lives = await stream("WatchJob", { path: { job_id: watched } }, () => false);
    expect(lives.at(-1)!.data.job.status).toBe("succeeded");

    const operations = Object.values(doc.paths as Record<string, Record<string, any>>).flatMap(
      (item) => Object.values(item).map((op) => op.operationId as string),
    );
    expect([...called].sort()).toEqual(operations.sort());
  });

  it("error answers fit the document's Error schema", async () => {
    const bad = await call("GetJob", { path: { job_id: "nope" } });
    expect(bad).toMatchObject({ status: 400, json: { code: "invalid_argument", field: "job_id" } });
    const missing = await call("GetJob", { path: { job_id: `j_${"0".repeat(26)}` } });
    expect(missing).toMatchObject({ status: 404, json: { code: "not_found" } });
    const invalid = await call("EnqueueJob", { body: { url: "ftp://example.com/" } });
    expect(invalid).toMatchObject({ status: 400, json: { field: "url" } });

    const jobId = (await call("EnqueueJob", { body: { url: `${target.url}/x` } })).json.job_id;
    await waitFor(
      async () => (await app.rest.get(`/jobs/${jobId}`)).json.status === "succeeded" || undefined,
      { what: "the job to succeed" },
    );
    const late = await call("CancelJob", { path: { job_id: jobId } });
    expect(late).toMatchObject({ status: 409, json: { code: "failed_precondition" } });
  });
});
