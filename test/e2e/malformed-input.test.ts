import http2 from "node:http2";
import net from "node:net";
import { Writable } from "node:stream";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BodyEncoding } from "../../gen/jobqueue/v1/job_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { createClients } from "../helpers/clients.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

const GET_JOB = "/jobqueue.v1.JobQueueService/GetJob";
const JOB_ID = "j_01HXYZ0000000000000000000A";

let t: TestApp;
let target: Target;
const log: string[] = [];

beforeAll(async () => {
  target = await startTarget();
  const sink = new Writable({
    write(chunk, _enc, done) {
      log.push(String(chunk));
      done();
    },
  });
  t = await startTestApp(
    { JOBQUEUE_MAX_REQUEST_BYTES: "65536", JOBQUEUE_MAX_BODY_BYTES: "32768" },
    { logger: pino({ level: "info" }, sink) },
  );
});
afterAll(async () => {
  await t?.stop();
  await target?.close();
  // Client errors leave no stack in the log.
  expect(log.filter((line) => line.includes('"stack"'))).toEqual([]);
});

function envelope(payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
}

async function post(path: string, contentType: string, body: Buffer | string) {
  const res = await fetch(t.url + path, {
    method: "POST",
    headers: { "content-type": contentType },
    body,
  });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

function grpcCall(
  path: string,
  body: Buffer,
  end = true,
): Promise<{ status: string; message: string; closedWithoutEnd: boolean }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(t.url);
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
    });
    let trailers: http2.IncomingHttpHeaders = {};
    req.on("trailers", (h) => {
      trailers = h;
    });
    req.on("data", () => {});
    req.on("error", reject);
    req.on("close", () => {
      session.close();
      resolve({
        status: String(trailers["grpc-status"]),
        message: decodeURIComponent(String(trailers["grpc-message"] ?? "")),
        closedWithoutEnd: !end,
      });
    });
    if (end) req.end(body);
    else req.write(body);
  });
}

// Malformed binary messages of a GetJobRequest (field 1, job_id, a string).
const MALFORMED = {
  "premature EOF": Buffer.from([0x0a, 0x05, 0x41]),
  "invalid varint": Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
  "illegal tag": Buffer.from([0x00, 0x01]),
  "invalid UTF-8": Buffer.from([0x0a, 0x02, 0xc3, 0x28]),
  "DataView offset": Buffer.from([0x0d, 0x01]),
};

describe("malformed binary protobuf is INVALID_ARGUMENT on every protocol", () => {
  for (const [what, bytes] of Object.entries(MALFORMED)) {
    it(`${what}: Connect binary, gRPC-Web and gRPC`, async () => {
      const connect = await post(GET_JOB, "application/proto", bytes);
      expect(connect.status).toBe(400);
      const error = JSON.parse(connect.bytes.toString("utf8"));
      expect(error).toMatchObject({ code: "invalid_argument" });
      expect(error.message).toMatch(/^request: not a valid protobuf message \(.+\)$/);

      const web = await post(GET_JOB, "application/grpc-web+proto", envelope(bytes));
      expect(web.status).toBe(200);
      expect(web.bytes.toString("latin1")).toMatch(/grpc-status: 3\r\n/);

      const grpc = await grpcCall(GET_JOB, envelope(bytes));
      expect(grpc.status).toBe("3");
      expect(grpc.message).toMatch(/^request: not a valid protobuf message/);
    });
  }

  it("on a server stream too (WatchJob over Connect streaming)", async () => {
    const res = await post(
      "/jobqueue.v1.JobQueueService/WatchJob",
      "application/connect+proto",
      envelope(MALFORMED["premature EOF"]),
    );
    expect(res.bytes.toString("utf8")).toContain('"code":"invalid_argument"');
  });
});

describe("JSON, the same on REST and Connect", () => {
  const deep = `{"url":"http://x/","body":${"[".repeat(10_000)}${"]".repeat(10_000)}}`;

  it("refuses JSON nested 10,000 deep with a 400 naming where", async () => {
    const rest = await t.rest.postRaw("/jobs", deep);
    expect(rest.status).toBe(400);
    expect(rest.json).toMatchObject({
      code: "invalid_argument",
      field: expect.stringMatching(/^body/),
    });
    expect(rest.json.message).toMatch(/nests deeper than 64 levels/);
    const connect = await post("/jobqueue.v1.JobQueueService/EnqueueJob", "application/json", deep);
    expect(connect.status).toBe(400);
    expect(JSON.parse(connect.bytes.toString()).message).toMatch(/^body.*: nests deeper than 64/);
  });

  it("refuses a job body deeper than a client can read back (32 levels)", async () => {
    const body = JSON.parse(`${"[".repeat(40)}1${"]".repeat(40)}`);
    const rest = await t.rest.post("/jobs", { url: "http://x/", body });
    expect(rest.status).toBe(400);
    expect(rest.json.field).toBe("body");
    const ok = await t.rest.post("/jobs", {
      url: "http://x/",
      body: JSON.parse(`${"[".repeat(32)}1${"]".repeat(32)}`),
      scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
    });
    expect(ok.json).toMatchObject({ status: "queued" });
  });

  it("refuses a key given twice, naming it, verbatim or under its other name", async () => {
    for (const body of [
      '{"url":"http://x/","url":"http://y/"}',
      '{"url":"http://x/","max_attempts":1,"maxAttempts":2}',
    ]) {
      const rest = await t.rest.postRaw("/jobs", body);
      expect(rest.status).toBe(400);
      expect(rest.json.field).toMatch(/^(url|max_attempts)$/);
      expect(rest.json.message).toMatch(/is given twice/);
      const connect = await post(
        "/jobqueue.v1.JobQueueService/EnqueueJob",
        "application/json",
        body,
      );
      expect(connect.status).toBe(400);
      expect(JSON.parse(connect.bytes.toString()).message).toMatch(
        /^(url|max_attempts|maxAttempts): is given twice/,
      );
    }
    const nested = await t.rest.postRaw(
      "/jobs:batch",
      '{"jobs":[{"url":"http://x/","headers":{"a":"1","a":"2"}}]}',
    );
    expect(nested.json).toMatchObject({ field: "jobs[0].headers.a" });
  });

  it("refuses invalid UTF-8", async () => {
    const bytes = Buffer.concat([
      Buffer.from('{"url":"http://x/'),
      Buffer.from([0xff]),
      Buffer.from('"}'),
    ]);
    const rest = await fetch(`${t.url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: bytes,
    });
    expect(rest.status).toBe(400);
    expect(await rest.json()).toMatchObject({ field: "body", message: "body: is not valid UTF-8" });
    const connect = await post(
      "/jobqueue.v1.JobQueueService/EnqueueJob",
      "application/json",
      bytes,
    );
    expect(JSON.parse(connect.bytes.toString())).toMatchObject({
      code: "invalid_argument",
      message: "body: is not valid UTF-8",
    });
  });

  it("names the field where the library's message named none", async () => {
    const connect = await post(
      "/jobqueue.v1.JobQueueService/EnqueueJobs",
      "application/json",
      '{"jobs":[{"url":"http://x/"},[]]}',
    );
    expect(JSON.parse(connect.bytes.toString()).message).toBe("jobs[1]: must be a JSON object");
    const rest = await t.rest.postRaw("/jobs:batch", '{"jobs":[{"url":"http://x/"},[]]}');
    expect(rest.json).toMatchObject({
      field: "jobs[1]",
      message: "jobs[1]: must be a JSON object",
    });
    const typed = await t.rest.postRaw(
      "/jobs:batch",
      '{"jobs":[{"url":"http://x/","timeout_sec":"x"}]}',
    );
    expect(typed.json.field).toBe("jobs[0].timeout_sec");
  });
});

describe("oversize input", () => {
  it("answers a gRPC message over the limit with RESOURCE_EXHAUSTED and resets the stream", async () => {
    const head = Buffer.alloc(5);
    head.writeUInt32BE(200_000, 1);
    // The client sends part of the message and never ends its side: only a reset closes it.
    const res = await grpcCall(GET_JOB, Buffer.concat([head, Buffer.alloc(70_000)]), false);
    expect(res.status).toBe("8");
    expect(res.closedWithoutEnd).toBe(true);
  });

  for (const [what, request] of [
    ["a 100 KB request line", `GET /jobs?x=${"a".repeat(100_000)} HTTP/1.1\r\nhost: x\r\n\r\n`],
    ["200 KB of headers", `GET /jobs HTTP/1.1\r\nhost: x\r\n${"x-a: b\r\n".repeat(25_000)}\r\n`],
  ]) {
    it(`answers ${what} with 431, not a reset`, async () => {
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(t.port, "127.0.0.1");
        let out = "";
        socket.on("data", (d) => {
          out += d;
        });
        socket.on("error", reject);
        socket.on("end", () => {
          socket.end();
          resolve(out);
        });
        socket.write(request!);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 431 /);
      expect(answer).toContain('"code":"resource_exhausted"');
    });
  }
});

describe("stored results are always readable", () => {
  const deepJson = (depth: number) => `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;

  it("shows a JSON response nested 100 deep as text, on REST, Connect binary and grpc-js", async () => {
    target.on("/deep", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(deepJson(100));
    });
    const id = await t.enqueue({ url: `${target.url}/deep` });
    await t.waitForStatus(id, "succeeded");
    const rest = await t.rest.get(`/jobs/${id}/result`);
    expect(rest.status).toBe(200);
    expect(rest.json).toMatchObject({
      response_body: deepJson(100),
      response_body_encoding: "text",
    });
    const binary = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1", useBinaryFormat: true }),
    );
    const viaConnect = await binary.getJobResult({ jobId: id });
    expect(viaConnect.responseBodyEncoding).toBe(BodyEncoding.TEXT);
    const clients = createClients(t.url);
    try {
      const viaGrpcJs = await clients.call("grpc-js", "GetJobResult", { job_id: id });
      expect(viaGrpcJs).toMatchObject({ ok: true });
    } finally {
      clients.close();
    }
  });

  it("keeps a JSON response 32 deep as JSON, which the generated client reads over gRPC", async () => {
    target.on("/deep32", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(deepJson(32));
    });
    const id = await t.enqueue({ url: `${target.url}/deep32` });
    await t.waitForStatus(id, "succeeded");
    const client = createClient(JobQueueService, createGrpcTransport({ baseUrl: t.url }));
    const res = await client.getJobResult({ jobId: id });
    expect(res.responseBodyEncoding).toBe(BodyEncoding.JSON);
    expect((await t.rest.get(`/jobs/${id}/result`)).json.response_body).toEqual(
      JSON.parse(deepJson(32)),
    );
  });
});

it("answers an RPC without a Host header as a client error", async () => {
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(t.port, "127.0.0.1");
    let out = "";
    socket.on("data", (d) => {
      out += d;
    });
    socket.on("error", reject);
    socket.on("end", () => resolve(out));
    socket.write(
      `POST ${GET_JOB} HTTP/1.0\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}`,
    );
  });
  expect(answer).toMatch(/^HTTP\/1\.1 400 /);
  void JOB_ID;
});
