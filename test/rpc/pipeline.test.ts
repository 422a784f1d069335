import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import {
  compressionGzip,
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { JobSchema } from "../../gen/jobqueue/v1/job_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { InvalidArgumentError, JobNotFoundError } from "../../src/job/errors.js";
import { assertRolesDeclared, minRoleOf } from "../../src/rpc/auth.js";
import { createErrorInterceptor } from "../../src/rpc/errors.js";
import { type ServiceRegistration, serve } from "../../src/rpc/rest.js";
import { createRpcServer, type RpcServer } from "../../src/rpc/server.js";

const JOB_ID = "j_01HXYZ0000000000000000000A";

/**
 * The server with a partial JobQueueService of a few handlers and a recording interceptor: what
 * the interceptor sees is what every protocol passes through.
 */
describe("one pipeline for every protocol", () => {
  const seen: { method: string; stream: boolean; contentType: string | null }[] = [];
  /** What the handler saw of its context, per call (by job id). */
  const contexts = new Map<string, Record<string, unknown>>();
  /** Calls whose handler waits for its abort signal: told when it waits and when it fires. */
  const waiting = new Map<string, () => void>();
  const aborted = new Map<string, () => void>();
  const recording: Interceptor = (next) => async (req) => {
    seen.push({
      method: req.method.name,
      stream: req.stream,
      contentType: req.header.get("content-type"),
    });
    return next(req);
  };
  let server: RpcServer;
  let base: string;

  beforeAll(async () => {
    const services: ServiceRegistration[] = [
      // Registration is all: the REST routes come from the google.api.http rules.
      serve(JobQueueService, {
        async getJob(req, ctx) {
          if (req.jobId.startsWith("ctx-")) {
            contexts.set(req.jobId, {
              method: ctx.method.name,
              service: ctx.service.typeName,
              protocol: ctx.protocolName,
              requestMethod: ctx.requestMethod,
              url: ctx.url,
              header: ctx.requestHeader.get("x-probe"),
              timeoutMs: ctx.timeoutMs(),
              responseHeader: ctx.responseHeader instanceof Headers,
            });
            return { job: create(JobSchema, { jobId: req.jobId }) };
          }
          if (req.jobId.startsWith("wait-")) {
            // Never answers: ends when the call's signal says the client went away.
            await new Promise<void>((resolve) => {
              ctx.signal.addEventListener("abort", () => resolve(), { once: true });
              waiting.get(req.jobId)?.();
            });
            aborted.get(req.jobId)?.();
            throw new JobNotFoundError(req.jobId);
          }
          if (req.jobId === "bad") throw new InvalidArgumentError("job_id", "is bad");
          if (req.jobId !== JOB_ID) throw new JobNotFoundError(req.jobId);
          return { job: create(JobSchema, { jobId: JOB_ID, url: "http://x/" }) };
        },
      }),
    ];
    server = createRpcServer({
      host: "127.0.0.1",
      port: 0,
      logger: pino({ level: "silent" }),
      services,
      interceptors: [createErrorInterceptor(pino({ level: "silent" })), recording],
      serving: () => true,
      readiness: () => ({ ready: true, reason: null }),
      readMaxBytes: 1 << 20,
      shutdownSignal: new AbortController().signal,
    });
    const { port } = await server.listen();
    base = `http://127.0.0.1:${port}`;
  });
  afterAll(() => server.close(0));

  it("runs REST, Connect and gRPC calls through the same interceptors", async () => {
    seen.length = 0;
    const rest = await fetch(`${base}/jobs/${JOB_ID}`);
    expect(rest.status).toBe(200);
    expect(((await rest.json()) as { job_id: string }).job_id).toBe(JOB_ID);
    for (const transport of [
      createConnectTransport({ baseUrl: base, httpVersion: "1.1" }),
      createGrpcTransport({ baseUrl: base }),
    ]) {
      const client = createClient(JobQueueService, transport);
      expect((await client.getJob({ jobId: JOB_ID })).job?.jobId).toBe(JOB_ID);
    }
    expect(seen.map((s) => s.method)).toEqual(["GetJob", "GetJob", "GetJob"]);
    expect(seen[0]!.contentType).toBeNull();
    expect(seen[2]!.contentType).toMatch(/^application\/grpc/);
  });

  it("serves unary calls with deadlines, and those the fast path leaves to connect-es (compression, GET, gRPC-Web), the same", async () => {
    seen.length = 0;
    const transports = [
      createGrpcTransport({ baseUrl: base, defaultTimeoutMs: 5_000 }),
      createGrpcTransport({ baseUrl: base, sendCompression: compressionGzip, compressMinBytes: 1 }),
      createConnectTransport({ baseUrl: base, httpVersion: "1.1", defaultTimeoutMs: 5_000 }),
      createConnectTransport({ baseUrl: base, httpVersion: "1.1", useHttpGet: true }),
      createConnectTransport({
        baseUrl: base,
        httpVersion: "2",
        useBinaryFormat: true,
        sendCompression: compressionGzip,
        compressMinBytes: 1,
      }),
      createGrpcWebTransport({ baseUrl: base, httpVersion: "1.1" }),
    ];
    for (const transport of transports) {
      const client = createClient(JobQueueService, transport);
      expect((await client.getJob({ jobId: JOB_ID })).job?.jobId).toBe(JOB_ID);
      const err = await client.getJob({ jobId: "bad" }).catch((e) => ConnectError.from(e));
      expect(err).toMatchObject({ code: Code.InvalidArgument, rawMessage: "job_id: is bad" });
    }
    expect(seen).toHaveLength(transports.length * 2);
  });

  it("gives domain errors their codes in one place, for REST and RPC alike", async () => {
    const rest = await fetch(`${base}/jobs/bad`);
    expect(rest.status).toBe(400);
    expect(await rest.json()).toEqual({
      code: "invalid_argument",
      message: "job_id: is bad",
      field: "job_id",
    });
    const missing = await fetch(`${base}/jobs/j_01HXYZ0000000000000000000B`);
    expect(missing.status).toBe(404);
    const client = createClient(JobQueueService, createGrpcTransport({ baseUrl: base }));
    const err = await client.getJob({ jobId: "bad" }).catch((e) => ConnectError.from(e));
    expect(err).toMatchObject({ code: Code.InvalidArgument, rawMessage: "job_id: is bad" });
  });

  it("gives a unary handler its call's context on REST, Connect and gRPC", async () => {
    const rest = await fetch(`${base}/jobs/ctx-rest`, { headers: { "x-probe": "r" } });
    expect(rest.status).toBe(200);
    const connect = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: base, httpVersion: "1.1" }),
    );
    await connect.getJob({ jobId: "ctx-connect" }, { headers: { "x-probe": "c" } });
    const grpc = createClient(JobQueueService, createGrpcTransport({ baseUrl: base }));
    await grpc.getJob({ jobId: "ctx-grpc" }, { headers: { "x-probe": "g" } });
    const common = {
      method: "GetJob",
      service: "jobqueue.v1.JobQueueService",
      timeoutMs: undefined,
      responseHeader: true,
    };
    const rpc = `${base}/jobqueue.v1.JobQueueService/GetJob`;
    for (const [id, protocol, requestMethod, url, header] of [
      ["ctx-rest", "rest", "GET", `${base}/jobs/ctx-rest`, "r"],
      ["ctx-connect", "connect", "POST", rpc, "c"],
      ["ctx-grpc", "grpc", "POST", rpc, "g"],
    ] as const) {
      expect(contexts.get(id)).toEqual({ ...common, protocol, requestMethod, url, header });
    }
  });

  it("aborts a unary handler's signal when its client goes away, on REST and Connect", async () => {
    for (const [id, call] of [
      ["wait-rest", (signal: AbortSignal) => fetch(`${base}/jobs/wait-rest`, { signal })],
      [
        "wait-connect",
        (signal: AbortSignal) =>
          createClient(
            JobQueueService,
            createConnectTransport({ baseUrl: base, httpVersion: "1.1" }),
          ).getJob({ jobId: "wait-connect" }, { signal }),
      ],
    ] as const) {
      const handlerWaits = new Promise<void>((resolve) => waiting.set(id, resolve));
      const seenAbort = new Promise<void>((resolve) => aborted.set(id, resolve));
      const client = new AbortController();
      const pending = call(client.signal).catch(() => "gone");
      await handlerWaits;
      client.abort();
      expect(await pending).toBe("gone");
      await seenAbort; // times out (and fails) if the handler's signal never fires
    }
  });

  it("gives a unary handler its deadline on Connect and gRPC: timeoutMs() counts down to it", async () => {
    for (const [id, transport] of [
      ["ctx-deadline-connect", createConnectTransport({ baseUrl: base, httpVersion: "1.1" })],
      ["ctx-deadline-grpc", createGrpcTransport({ baseUrl: base })],
    ] as const) {
      await createClient(JobQueueService, transport).getJob({ jobId: id }, { timeoutMs: 4_000 });
      const left = contexts.get(id)?.timeoutMs as number;
      expect(left).toBeGreaterThan(0);
      expect(left).toBeLessThanOrEqual(4_000);
    }
  });

  it("aborts a unary handler's signal when the call's deadline passes, while its client still waits", async () => {
    const id = "wait-deadline";
    const seenAbort = new Promise<void>((resolve) => aborted.set(id, resolve));
    let answered = false;
    const pending = fetch(`${base}/jobqueue.v1.JobQueueService/GetJob`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "100" },
      body: JSON.stringify({ jobId: id }),
    }).then(async (res) => {
      answered = true;
      return { status: res.status, body: (await res.json()) as { code: string } };
    });
    await seenAbort; // times out (and fails) if the deadline never fires the handler's signal
    expect(answered).toBe(false);
    // The handler then fails the call its own way, as it would through connect-es.
    expect(await pending).toEqual({
      status: 404,
      body: expect.objectContaining({ code: "not_found" }),
    });
  });

  it("refuses a malformed deadline with invalid_argument naming it", async () => {
    const res = await fetch(`${base}/jobqueue.v1.JobQueueService/GetJob`, {
      method: "POST",
      headers: { "content-type": "application/json", "connect-timeout-ms": "soon" },
      body: JSON.stringify({ jobId: JOB_ID }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      code: "invalid_argument",
      message: "protocol error: invalid connect timeout value: soon",
    });
  });

  it("answers methods the service does not implement as unimplemented on REST too", async () => {
    const res = await fetch(`${base}/jobs`);
    expect(res.status).toBe(501);
    expect(((await res.json()) as { code: string }).code).toBe("unimplemented");
  });
});

describe("roles declared next to each method", () => {
  it("reads every JobQueueService method's min_role from the proto", () => {
    const roles = Object.fromEntries(JobQueueService.methods.map((m) => [m.name, minRoleOf(m)]));
    expect(roles).toEqual({
      EnqueueJob: "submitter",
      EnqueueJobs: "submitter",
      GetJob: "reader",
      GetJobResult: "reader",
      CancelJob: "submitter",
      ListJobs: "reader",
      ListJobAttempts: "reader",
      WatchJob: "reader",
      WatchJobs: "reader",
      RetryJob: "submitter",
      DeleteJob: "submitter",
      CancelJobs: "submitter",
      RetryJobs: "submitter",
      DeleteJobs: "submitter",
      GetOperation: "submitter",
      ListOperations: "submitter",
      CancelOperation: "submitter",
      GetJobCounts: "reader",
      ListNodes: "reader",
      GetCaller: "reader",
      ListAuditEvents: "admin",
    });
    expect(() => assertRolesDeclared([JobQueueService, Health])).not.toThrow();
  });

  it("leaves services outside jobqueue.* open", () => {
    for (const m of Health.methods) expect(minRoleOf(m)).toBeNull();
  });

  it("refuses to start with a jobqueue method that declares no role", () => {
    const undeclared = { ...Health, typeName: "jobqueue.v1.Undeclared" } as typeof Health;
    const methods = Health.methods.map((m) => ({ ...m, parent: undeclared }));
    expect(() => assertRolesDeclared([{ ...undeclared, methods } as never])).toThrow(
      /jobqueue.v1.Undeclared.Check declares no min_role/,
    );
  });
});
