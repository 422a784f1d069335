import http2 from "node:http2";
import { Writable } from "node:stream";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

const ada = generateApiKey("ada", "admin");
const MISSING = "j_01ARZ3NDEKTSV4RRFFQ69G5FAV";

function capture() {
  const lines: any[] = [];
  const raw: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      raw.push(String(chunk));
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { lines, raw, logger: pino({ level: "info" }, sink) };
}

describe("the access log, when JOBQUEUE_ACCESS_LOG=1", () => {
  let t: TestApp;
  const log = capture();
  const calls = () => log.lines.filter((l) => l.msg === "call");

  beforeAll(async () => {
    t = await startTestApp(
      { JOBQUEUE_ACCESS_LOG: "1", JOBQUEUE_API_KEYS: ada.line },
      { logger: log.logger },
    );
  });
  afterAll(() => t?.stop());

  it("writes one line per call on every protocol, with its route, code, duration and principal", async () => {
    const auth = { authorization: `Bearer ${ada.key}` };
    await fetch(`${t.url}/jobs/${MISSING}`, { headers: auth });
    await fetch(`${t.url}/jobs?page_size=1&tag=hunter2`, {
      headers: { authorization: "Bearer wrong-key" },
    });
    await fetch(`${t.url}/nowhere?x=1`);
    const client = createClient(JobQueueService, createGrpcTransport({ baseUrl: t.url }));
    await client.listJobs({ pageSize: 1 }, { headers: auth });
    // A malformed gRPC message, refused before the handler runs.
    await new Promise<void>((resolve) => {
      const session = http2.connect(t.url);
      const req = session.request({
        ":method": "POST",
        ":path": "/jobqueue.v1.JobQueueService/GetJob",
        "content-type": "application/grpc",
        te: "trailers",
        ...auth,
      });
      req.on("data", () => {});
      req.on("close", () => {
        session.close();
        resolve();
      });
      req.end(Buffer.from([0, 0, 0, 0, 3, 0x0a, 0x05, 0x41]));
    });
    await waitFor(() => (calls().length >= 5 ? true : undefined), { what: "five access lines" });

    expect(
      calls().map(({ protocol, method, route, status, code, principal }) => ({
        protocol,
        method,
        route,
        status,
        code,
        principal,
      })),
    ).toEqual([
      {
        protocol: "rest",
        method: "GET",
        route: "/jobs/{job_id}",
        status: 404,
        code: "not_found",
        principal: "ada",
      },
      {
        protocol: "rest",
        method: "GET",
        route: "/jobs",
        status: 401,
        code: "unauthenticated",
        principal: null,
      },
      {
        protocol: "rest",
        method: "GET",
        route: "/nowhere",
        status: 404,
        code: "not_found",
        principal: null,
      },
      {
        protocol: "grpc",
        method: "POST",
        route: "/jobqueue.v1.JobQueueService/ListJobs",
        status: 200,
        code: "ok",
        principal: "ada",
      },
      {
        protocol: "grpc",
        method: "POST",
        route: "/jobqueue.v1.JobQueueService/GetJob",
        status: 200,
        code: "invalid_argument",
        principal: null,
      },
    ]);
    for (const line of calls()) {
      expect(line.durationMs).toBeGreaterThanOrEqual(0);
      expect(line.remoteAddress).toMatch(/127\.0\.0\.1$/);
    }
    const text = log.raw.join("");
    for (const secret of ["hunter2", "tag=", ada.key, "wrong-key", "x=1"])
      expect(text).not.toContain(secret);
  });
});

describe("the access log, by default", () => {
  it("is off", async () => {
    const log = capture();
    const t = await startTestApp({}, { logger: log.logger });
    try {
      await fetch(`${t.url}/jobs`);
      await fetch(`${t.url}/healthz`);
    } finally {
      await t.stop();
    }
    expect(log.lines.filter((l) => l.msg === "call")).toEqual([]);
  });
});
