import { execFile } from "node:child_process";
import { once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import { join } from "node:path";
import { promisify } from "node:util";
import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BadRequestSchema } from "../../gen/google/rpc/error_details_pb.js";
import { type Job, JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred } from "../helpers/wait-for.js";

/**
 * One server, every protocol: the same job reads the same over REST, Connect (JSON and binary,
 * HTTP/1.1 and HTTP/2), gRPC-Web and gRPC (connect-node and grpc-js); errors carry the same codes;
 * WatchJob streams; reflection serves `buf curl`; health answers over gRPC and /healthz.
 */

let target: Target;
let t: TestApp;
/** grpc-js clients opened by the test, closed after it so the server can stop at once. */
const grpcClients: grpc.Client[] = [];

beforeEach(async () => {
  target = await startTarget();
  t = await startTestApp();
});

afterEach(async () => {
  for (const c of grpcClients.splice(0)) c.close();
  await t?.stop();
  await target?.close();
});

const ROOT = join(import.meta.dirname, "../..");
const BUF = join(ROOT, "node_modules/.bin/buf");
const run = promisify(execFile);

const LOADER_OPTIONS: protoLoader.Options = {
  includeDirs: [join(ROOT, "proto")],
  keepCase: true,
  enums: String,
  longs: Number,
  defaults: true,
  oneofs: true,
};

function loadGrpc(file: string): any {
  return grpc.loadPackageDefinition(protoLoader.loadSync(file, LOADER_OPTIONS));
}

/** A grpc-js JobQueueService client on the test server, over h2c. */
function grpcJsClient(): any {
  const pkg = loadGrpc("jobqueue/v1/job_queue_service.proto");
  const client = new pkg.jobqueue.v1.JobQueueService(
    `127.0.0.1:${t.port}`,
    grpc.credentials.createInsecure(),
  );
  grpcClients.push(client);
  return client;
}

/** Calls a grpc-js unary method; rejects with the grpc-js ServiceError. */
function unary(client: any, method: string, req: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    client[method](req, (err: grpc.ServiceError | null, res: unknown) =>
      err ? reject(err) : resolve(res),
    );
  });
}

/** GETs a path over HTTP/2 without TLS (prior knowledge) and parses the JSON answer. */
async function getOverH2c(path: string): Promise<any> {
  const session = http2.connect(t.url);
  try {
    const stream = session.request({ ":method": "GET", ":path": path });
    const [headers] = (await once(stream, "response")) as [http2.IncomingHttpHeaders];
    expect(headers[":status"]).toBe(200);
    expect(headers["content-type"]).toMatch(/^application\/json/);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } finally {
    session.close();
  }
}

/** Rejects with what `p` rejected with; fails if it resolved. */
async function rejection<E = any>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (err) {
    return err as E;
  }
  throw new Error("expected a rejection");
}

/** Every reader's answer is brought to this shape before comparing. */
interface Normalized {
  job_id: string;
  status: string;
  attempt: number;
  max_attempts: number;
  priority: number;
  created_at: number;
  method: string;
  url: string;
  tags: string[];
  timeout_sec: number;
  headers: Record<string, string>;
  params: Record<string, string>;
  body: JsonValue;
}

function fromRest(j: any): Normalized {
  return {
    job_id: j.job_id,
    status: j.status,
    attempt: j.attempt,
    max_attempts: j.max_attempts,
    priority: j.priority,
    created_at: Date.parse(j.created_at),
    method: j.method,
    url: j.url,
    tags: j.tags,
    timeout_sec: j.timeout_sec,
    headers: j.headers,
    params: j.params,
    body: j.body,
  };
}

/** Canonical proto JSON: camelCase names, prefixed enum names, defaults omitted. */
function fromProtoJson(j: any): Normalized {
  return {
    job_id: j.jobId,
    status: String(j.status)
      .replace(/^JOB_STATUS_/, "")
      .toLowerCase(),
    attempt: j.attempt ?? 0,
    max_attempts: j.maxAttempts ?? 0,
    priority: j.priority ?? 0,
    created_at: Date.parse(j.createdAt),
    method: j.method,
    url: j.url,
    tags: j.tags ?? [],
    timeout_sec: j.timeoutSec ?? 0,
    headers: j.headers ?? {},
    params: j.params ?? {},
    body: j.body === undefined ? null : j.body,
  };
}

function fromPb(job: Job | undefined): Normalized {
  if (!job) throw new Error("no job in the response");
  return {
    job_id: job.jobId,
    status: JobStatus[job.status].toLowerCase(),
    attempt: job.attempt,
    max_attempts: job.maxAttempts,
    priority: job.priority,
    created_at: timestampMs(job.createdAt!),
    method: job.method,
    url: job.url,
    tags: [...job.tags],
    timeout_sec: job.timeoutSec,
    headers: { ...job.headers },
    params: { ...job.params },
    body: job.payload.case === "body" ? toJson(ValueSchema, job.payload.value) : null,
  };
}

/** google.protobuf.Value as @grpc/proto-loader decodes it (oneofs: true) to plain JSON. */
function valueToJson(v: any): JsonValue {
  switch (v.kind) {
    case "nullValue":
      return null;
    case "numberValue":
      return v.numberValue;
    case "stringValue":
      return v.stringValue;
    case "boolValue":
      return v.boolValue;
    case "structValue":
      return Object.fromEntries(
        Object.entries(v.structValue.fields ?? {}).map(([k, x]) => [k, valueToJson(x)]),
      );
    case "listValue":
      return (v.listValue.values ?? []).map(valueToJson);
    default:
      throw new Error(`not a google.protobuf.Value: ${JSON.stringify(v)}`);
  }
}

function fromGrpcJs(job: any): Normalized {
  const ts = job.created_at;
  return {
    job_id: job.job_id,
    status: String(job.status)
      .replace(/^JOB_STATUS_/, "")
      .toLowerCase(),
    attempt: job.attempt,
    max_attempts: job.max_attempts,
    priority: job.priority,
    created_at: ts.seconds * 1000 + Math.floor(ts.nanos / 1e6),
    method: job.method,
    url: job.url,
    tags: job.tags,
    timeout_sec: job.timeout_sec,
    headers: { ...job.headers },
    params: { ...job.params },
    body: job.payload === "body" ? valueToJson(job.body) : null,
  };
}

const tomorrow = () => new Date(Date.now() + 86_400_000).toISOString();

describe("one job, every protocol", () => {
  it("reads the same over REST (h1, h2c), Connect JSON/binary (h1, h2), gRPC-Web, gRPC, grpc-js", async () => {
    const body = { message: "hello", n: 2.5, list: [1, true, null, "x"], nested: { ok: false } };
    const id = await t.enqueue({
      method: "POST",
      url: `${target.url}/post`,
      headers: { "Content-Type": "application/json", "X-Trace": "abc" },
      params: { debug: "1", q: "a b" },
      body,
      tags: ["demo", "external-api"],
      priority: 7,
      timeout_sec: 12.5,
      max_attempts: 4,
      // Queued for the whole test, so every reader sees the same status.
      scheduled_at: tomorrow(),
    });

    const reads: Record<string, Normalized> = {};

    const rest = await t.rest.get(`/jobs/${id}`);
    expect(rest.status).toBe(200);
    reads.rest = fromRest(rest.json);

    reads.restH2c = fromRest(await getOverH2c(`/jobs/${id}`));

    const connectJson = await fetch(`${t.url}/jobqueue.v1.JobQueueService/GetJob`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ job_id: id }),
    });
    expect(connectJson.status).toBe(200);
    expect(connectJson.headers.get("content-type")).toMatch(/^application\/json/);
    const connectBody = (await connectJson.json()) as any;
    // Canonical proto JSON: camelCase names.
    expect(Object.keys(connectBody.job)).toEqual(
      expect.arrayContaining(["jobId", "maxAttempts", "createdAt", "timeoutSec"]),
    );
    expect(connectBody.job).not.toHaveProperty("job_id");
    reads.connectJsonFetch = fromProtoJson(connectBody.job);

    const transports: Record<string, Transport> = {
      connectH1: createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }),
      connectBinaryH1: createConnectTransport({
        baseUrl: t.url,
        httpVersion: "1.1",
        useBinaryFormat: true,
      }),
      connectH2: createConnectTransport({ baseUrl: t.url, httpVersion: "2" }),
      grpcWebH1: createGrpcWebTransport({ baseUrl: t.url, httpVersion: "1.1" }),
      grpcWebH2: createGrpcWebTransport({ baseUrl: t.url, httpVersion: "2" }),
      grpcH2: createGrpcTransport({ baseUrl: t.url }),
    };
    for (const [name, transport] of Object.entries(transports)) {
      const client = createClient(JobQueueService, transport);
      reads[name] = fromPb((await client.getJob({ jobId: id })).job);
    }

    const grpcJs = grpcJsClient();
    reads.grpcJs = fromGrpcJs((await unary(grpcJs, "GetJob", { job_id: id })).job);

    expect(reads.rest).toEqual({
      job_id: id,
      status: "queued",
      attempt: 0,
      max_attempts: 4,
      priority: 7,
      created_at: expect.any(Number),
      method: "POST",
      url: `${target.url}/post`,
      tags: ["demo", "external-api"],
      timeout_sec: 12.5,
      headers: { "Content-Type": "application/json", "X-Trace": "abc" },
      params: { debug: "1", q: "a b" },
      body,
    });
    for (const [name, read] of Object.entries(reads)) {
      expect({ name, ...read }).toEqual({ name, ...reads.rest });
    }
  });

  it("creates jobs with EnqueueJob over grpc-js and over Connect binary that REST then reads", async () => {
    const bytes = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]);
    const grpcJs = grpcJsClient();
    const viaGrpc = await unary(grpcJs, "EnqueueJob", {
      method: "PUT",
      url: `${target.url}/from-grpc`,
      headers: { "content-type": "application/octet-stream" },
      body_bytes: bytes,
      tags: ["grpc"],
      priority: 3,
    });
    expect(viaGrpc.job_id).toMatch(/^j_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(viaGrpc.status).toBe("JOB_STATUS_QUEUED");

    const connect = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1", useBinaryFormat: true }),
    );
    const viaConnect = await connect.enqueueJob({
      method: "POST",
      url: `${target.url}/from-connect`,
      params: { via: "connect" },
      payload: { case: "body", value: fromJson(ValueSchema, { hello: ["world", 1] }) },
      tags: ["connect"],
    });
    expect(viaConnect.status).toBe(JobStatus.QUEUED);

    const grpcJob = (await t.rest.get(`/jobs/${viaGrpc.job_id}`)).json;
    expect(grpcJob).toMatchObject({
      job_id: viaGrpc.job_id,
      method: "PUT",
      url: `${target.url}/from-grpc`,
      tags: ["grpc"],
      priority: 3,
      body: null,
      body_bytes: bytes.toString("base64"),
    });
    const connectJob = (await t.rest.get(`/jobs/${viaConnect.jobId}`)).json;
    expect(connectJob).toMatchObject({
      job_id: viaConnect.jobId,
      method: "POST",
      url: `${target.url}/from-connect`,
      params: { via: "connect" },
      tags: ["connect"],
      body: { hello: ["world", 1] },
    });

    // Both run, and the target gets what was submitted.
    const gotBytes = await target.request("/from-grpc");
    expect(gotBytes.method).toBe("PUT");
    expect(gotBytes.body.equals(bytes)).toBe(true);
    const gotJson = await target.request("/from-connect");
    expect(gotJson.query.get("via")).toBe("connect");
    expect(JSON.parse(gotJson.body.toString())).toEqual({ hello: ["world", 1] });
    await t.waitForStatus(viaGrpc.job_id, "succeeded");
    await t.waitForStatus(viaConnect.jobId, "succeeded");
  });
});

describe("errors over RPC", () => {
  it("answers a bad url with INVALID_ARGUMENT naming url, over grpc-js and Connect", async () => {
    const grpcJs = grpcJsClient();
    const err = await rejection<grpc.ServiceError>(
      unary(grpcJs, "EnqueueJob", { url: "not a url" }),
    );
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.code).toBe(3);
    expect(err.details).toMatch(/\burl\b/);

    const connect = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }),
    );
    const cerr = ConnectError.from(await rejection(connect.enqueueJob({ url: "ftp://x/y" })));
    expect(cerr.code).toBe(Code.InvalidArgument);
    const [badRequest] = cerr.findDetails(BadRequestSchema);
    expect(badRequest?.fieldViolations.map((v) => v.field)).toEqual(["url"]);
    expect(badRequest?.fieldViolations[0]?.description).toMatch(/ftp/);

    expect((await t.rest.get("/jobs")).json.jobs).toEqual([]);
  });

  it("answers an unknown job with NOT_FOUND over grpc-js", async () => {
    const grpcJs = grpcJsClient();
    const err = await rejection<grpc.ServiceError>(
      unary(grpcJs, "GetJob", { job_id: "j_01ARZ3NDEKTSV4RRFFQ69G5FAV" }),
    );
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.code).toBe(5);
    const cancel = await rejection<grpc.ServiceError>(
      unary(grpcJs, "CancelJob", { job_id: "j_01ARZ3NDEKTSV4RRFFQ69G5FAV" }),
    );
    expect(cancel.code).toBe(grpc.status.NOT_FOUND);
  });
});

describe("WatchJob", () => {
  beforeEach(async () => {
    // One worker: a blocker job holds it, so the watched job is queued until the test says go.
    await t.stop();
    t = await startTestApp({ JOBQUEUE_CONCURRENCY: "1" });
  });

  /** A target path that holds each request until the returned release resolves. */
  function heldPath(path: string) {
    const release = deferred();
    target.on(path, async (_req, res) => {
      await release.promise;
      res.writeHead(200, { "content-type": "text/plain" }).end("done");
    });
    return release;
  }

  /**
   * Enqueues a job that stays queued behind a blocker until the watcher has seen it queued, then
   * stays running until the watcher has seen it running. `onStatus` drives both releases.
   */
  async function watchedJob() {
    const unblock = heldPath("/block");
    const finish = heldPath("/slow");
    await t.enqueue({ url: `${target.url}/block` });
    await target.request("/block");
    const id = await t.enqueue({ url: `${target.url}/slow` });
    const onStatus = (status: string) => {
      if (status === "queued") unblock.resolve();
      if (status === "running") finish.resolve();
    };
    return { id, onStatus };
  }

  /** Collapses repeats (a running job's row changes as its lease is renewed). */
  const distinct = (xs: string[]) => xs.filter((x, i) => i === 0 || xs[i - 1] !== x);

  it("streams queued, running, succeeded and ends, over Connect on HTTP/2", async () => {
    const { id, onStatus } = await watchedJob();
    const client = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "2" }),
    );
    const seen: string[] = [];
    for await (const res of client.watchJob({ jobId: id })) {
      expect(res.job?.jobId).toBe(id);
      const status = JobStatus[res.job!.status].toLowerCase();
      seen.push(status);
      onStatus(status);
    }
    expect(distinct(seen)).toEqual(["queued", "running", "succeeded"]);
    expect((await t.rest.get(`/jobs/${id}`)).json.status).toBe("succeeded");
  });

  it("streams queued, running, succeeded and ends, over grpc-js", async () => {
    const { id, onStatus } = await watchedJob();
    const grpcJs = grpcJsClient();
    const seen = await new Promise<string[]>((resolve, reject) => {
      const out: string[] = [];
      const stream = grpcJs.WatchJob({ job_id: id });
      stream.on("data", (res: any) => {
        expect(res.job.job_id).toBe(id);
        const status = String(res.job.status)
          .replace(/^JOB_STATUS_/, "")
          .toLowerCase();
        out.push(status);
        onStatus(status);
      });
      stream.on("error", reject);
      stream.on("end", () => resolve(out));
    });
    expect(distinct(seen)).toEqual(["queued", "running", "succeeded"]);
  });

  it("answers NOT_FOUND for an unknown job", async () => {
    const client = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: t.url, httpVersion: "2" }),
    );
    const err = await rejection(
      (async () => {
        for await (const _ of client.watchJob({ jobId: "j_01ARZ3NDEKTSV4RRFFQ69G5FAV" })) {
          // no message is expected
        }
      })(),
    );
    expect(ConnectError.from(err).code).toBe(Code.NotFound);
  });
});

describe("buf curl, by reflection", () => {
  const bufCurl = async (...args: string[]) =>
    (await run(BUF, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", ...args])).stdout;
  // Every method the contract declares, so a new RPC cannot be missing from reflection.
  const METHODS = JobQueueService.methods.map((m) => `${JobQueueService.typeName}/${m.name}`);

  it("lists the methods without proto files", async () => {
    const listed = (await bufCurl("--list-methods", t.url)).split("\n").filter(Boolean);
    expect(listed).toEqual(expect.arrayContaining(METHODS));
  });

  it("lists the methods over reflection v1 and v1alpha when the flag exists", async (ctx) => {
    const help = (await run(BUF, ["curl", "--help"])).stdout;
    if (!help.includes("--reflect-protocol")) ctx.skip();
    for (const protocol of ["grpc-v1", "grpc-v1alpha"]) {
      const listed = await bufCurl("--reflect-protocol", protocol, "--list-methods", t.url);
      expect(listed.split("\n").filter(Boolean)).toEqual(expect.arrayContaining(METHODS));
    }
  });

  it("enqueues a job the REST API then finds", async () => {
    const out = await bufCurl(
      "-d",
      JSON.stringify({ url: `${target.url}/x` }),
      `${t.url}/jobqueue.v1.JobQueueService/EnqueueJob`,
    );
    const { jobId, status } = JSON.parse(out);
    expect(jobId).toMatch(/^j_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(status).toBe("JOB_STATUS_QUEUED");
    const res = await t.rest.get(`/jobs/${jobId}`);
    expect(res.status).toBe(200);
    expect(res.json.url).toBe(`${target.url}/x`);
    await target.request("/x");
  });
});

describe("health", () => {
  it("answers SERVING over gRPC and 200 on /healthz; stops serving once stop begins", async () => {
    const pkg = loadGrpc("grpc/health/v1/health.proto");
    const health = new pkg.grpc.health.v1.Health(
      `127.0.0.1:${t.port}`,
      grpc.credentials.createInsecure(),
    );
    grpcClients.push(health);
    expect(await unary(health, "Check", { service: "" })).toEqual({ status: "SERVING" });
    expect(await unary(health, "Check", { service: "jobqueue.v1.JobQueueService" })).toEqual({
      status: "SERVING",
    });
    const unknown = await rejection<grpc.ServiceError>(
      unary(health, "Check", { service: "no.such.Service" }),
    );
    expect(unknown.code).toBe(grpc.status.NOT_FOUND);
    health.close();

    const ok = await fetch(`${t.url}/healthz`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ status: "serving" });

    const stopping = t.app.stop();
    // A fresh connection: the answer is 503 while the stop waits; with nothing in flight the stop
    // may end at once, and the connection is then refused, or reset if it came as the server closed.
    const after = await new Promise<number | string>((resolve) => {
      const req = http.get(`${t.url}/healthz`, { agent: false }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect([503, "ECONNREFUSED", "ECONNRESET"]).toContain(after);
    await stopping;
  });
});
