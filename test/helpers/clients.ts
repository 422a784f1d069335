import { join } from "node:path";
import {
  type DescMethod,
  fromBinary,
  fromJson,
  type JsonObject,
  type JsonValue,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";

/**
 * One way to call any JobQueueService method over every protocol the server speaks, so that a test
 * can state an expectation once and check it on each: REST (fetch), Connect JSON over HTTP/1.1,
 * gRPC-Web over HTTP/1.1, gRPC over h2c (connect-node) and gRPC over h2c with @grpc/grpc-js and
 * @grpc/proto-loader (an independent implementation of the wire format).
 */

export const PROTOCOLS = ["rest", "connect", "grpc-web", "grpc", "grpc-js"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

export const RPCS = [
  "EnqueueJob",
  "EnqueueJobs",
  "GetJob",
  "GetJobResult",
  "ListJobAttempts",
  "ListJobs",
  "CancelJob",
  "WatchJob",
  "ListAuditEvents",
] as const;
export type Rpc = (typeof RPCS)[number];

/** What the server records as the protocol of a call made with each client. */
export const AUDITED_PROTOCOL: Record<Protocol, string> = {
  rest: "rest",
  connect: "connect",
  "grpc-web": "grpc-web",
  grpc: "grpc",
  "grpc-js": "grpc",
};

/** The outcome of one call, the same shape whatever the protocol. */
export interface CallResult {
  ok: boolean;
  /** The gRPC status code: 0 when ok; over REST, read from the error body's `code`. */
  code: number;
  /** The error message the client got ("" when ok). */
  message: string;
  /** REST only: the HTTP status. */
  httpStatus?: number;
  /**
   * The response with proto field names (snake_case); of a stream, its first message. REST answers
   * in its own JSON (lowercase enums, nulls), with `response_body` routes wrapped back into the
   * full response (`{ job }`); a REST error is its error body. Null for an RPC error.
   */
  body: any;
}

export interface Clients {
  /**
   * Calls `rpc` with `request` (JSON with proto field names, e.g. `{ job_id }`) and `headers`.
   * WatchJob returns after its first message and cancels the stream; REST has no WatchJob.
   */
  call(
    protocol: Protocol,
    rpc: Rpc,
    request?: JsonObject,
    headers?: Record<string, string>,
  ): Promise<CallResult>;
  /** Closes the grpc-js channel so the server can stop at once. */
  close(): void;
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
export const apiKey = (key: string) => ({ "x-api-key": key });

const PROTO_DIR = join(import.meta.dirname, "../../proto");

/** REST routes, as the proto's google.api.http rules declare them (written out, not derived). */
const REST_ROUTES: Record<Exclude<Rpc, "WatchJob">, { verb: "GET" | "POST"; path: string }> = {
  EnqueueJob: { verb: "POST", path: "/jobs" },
  EnqueueJobs: { verb: "POST", path: "/jobs:batch" },
  GetJob: { verb: "GET", path: "/jobs/{job_id}" },
  GetJobResult: { verb: "GET", path: "/jobs/{job_id}/result" },
  ListJobAttempts: { verb: "GET", path: "/jobs/{job_id}/attempts" },
  ListJobs: { verb: "GET", path: "/jobs" },
  CancelJob: { verb: "POST", path: "/jobs/{job_id}/cancel" },
  ListAuditEvents: { verb: "GET", path: "/audit" },
};
/** REST routes whose rule has `response_body: "job"`. */
const ANSWERS_WITH_JOB = new Set<Rpc>(["GetJob", "CancelJob"]);

function methodOf(rpc: Rpc): DescMethod {
  const method = JobQueueService.methods.find((m) => m.name === rpc);
  if (!method) throw new Error(`no method ${rpc}`);
  return method;
}

/** "permission_denied" → Code.PermissionDenied (7). */
function codeFromName(name: string): number {
  const pascal = name.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase());
  const code = (Code as unknown as Record<string, number>)[pascal];
  if (code === undefined) throw new Error(`not a code name: ${name}`);
  return code;
}

const ok = (body: unknown): CallResult => ({ ok: true, code: 0, message: "", body });

export function createClients(baseUrl: string): Clients {
  const transports: Record<"connect" | "grpc-web" | "grpc", Transport> = {
    connect: createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    "grpc-web": createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
    grpc: createGrpcTransport({ baseUrl }),
  };
  const definition = protoLoader.loadSync("jobqueue/v1/job_queue_service.proto", {
    includeDirs: [PROTO_DIR],
    keepCase: true,
    longs: String,
    enums: String,
    oneofs: true,
  });
  const service = definition["jobqueue.v1.JobQueueService"] as grpc.ServiceDefinition;
  const GrpcJsClient = grpc.makeGenericClientConstructor(service, "JobQueueService");
  const grpcJs = new GrpcJsClient(new URL(baseUrl).host, grpc.credentials.createInsecure()) as any;

  async function viaRest(rpc: Rpc, request: JsonObject, headers: Record<string, string>) {
    if (rpc === "WatchJob") throw new Error("REST has no WatchJob");
    const route = REST_ROUTES[rpc];
    const rest: JsonObject = { ...request };
    const path = route.path.replace(/\{(\w+)\}/g, (_m, field: string) => {
      const value = String(rest[field] ?? "");
      delete rest[field];
      return encodeURIComponent(value);
    });
    const url = new URL(path, baseUrl);
    let body: string | undefined;
    if (route.verb === "GET") {
      for (const [name, value] of Object.entries(rest)) {
        for (const v of Array.isArray(value) ? value : [value])
          url.searchParams.append(name, String(v));
      }
    } else {
      body = JSON.stringify(rest);
    }
    const res = await fetch(url, {
      method: route.verb,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body,
    });
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    if (res.ok) {
      return { ...ok(ANSWERS_WITH_JOB.has(rpc) ? { job: json } : json), httpStatus: res.status };
    }
    return {
      ok: false,
      code: codeFromName(String(json?.code)),
      message: String(json?.message ?? ""),
      httpStatus: res.status,
      body: json,
    };
  }

  async function viaConnectEs(
    protocol: "connect" | "grpc-web" | "grpc",
    rpc: Rpc,
    request: JsonObject,
    headers: Record<string, string>,
  ): Promise<CallResult> {
    const method = methodOf(rpc);
    const client = createClient(JobQueueService, transports[protocol]) as any;
    const input = fromJson(method.input, request);
    try {
      if (method.methodKind === "server_streaming") {
        const ac = new AbortController();
        try {
          for await (const message of client[method.localName](input, {
            headers,
            signal: ac.signal,
          })) {
            return ok(toJson(method.output, message, { useProtoFieldName: true }));
          }
          return ok(null);
        } finally {
          ac.abort();
        }
      }
      const res = await client[method.localName](input, { headers });
      return ok(toJson(method.output, res, { useProtoFieldName: true }));
    } catch (err) {
      const cerr = ConnectError.from(err);
      return { ok: false, code: cerr.code, message: cerr.rawMessage, body: null };
    }
  }

  function viaGrpcJs(
    rpc: Rpc,
    request: JsonObject,
    headers: Record<string, string>,
  ): Promise<CallResult> {
    const method = methodOf(rpc);
    const def = service[rpc]!;
    // Through the binary form, so grpc-js gets exactly what proto-loader would decode.
    const input = def.requestDeserialize(
      Buffer.from(toBinary(method.input, fromJson(method.input, request))),
    );
    const output = (res: unknown): JsonValue =>
      toJson(method.output, fromBinary(method.output, def.responseSerialize(res)), {
        useProtoFieldName: true,
      });
    const metadata = new grpc.Metadata();
    for (const [name, value] of Object.entries(headers)) metadata.add(name, value);
    const failed = (err: grpc.ServiceError): CallResult => ({
      ok: false,
      code: err.code,
      message: err.details,
      body: null,
    });
    return new Promise((resolve) => {
      if (method.methodKind === "server_streaming") {
        const call = grpcJs[rpc](input, metadata) as grpc.ClientReadableStream<unknown>;
        let settled = false;
        const settle = (result: CallResult) => {
          if (settled) return;
          settled = true;
          resolve(result);
          call.cancel();
        };
        call.on("data", (message) => settle(ok(output(message))));
        call.on("error", (err: grpc.ServiceError) => settle(failed(err)));
        call.on("end", () => settle(ok(null)));
        return;
      }
      grpcJs[rpc](input, metadata, (err: grpc.ServiceError | null, res: unknown) =>
        resolve(err ? failed(err) : ok(output(res))),
      );
    });
  }

  return {
    call(protocol, rpc, request = {}, headers = {}) {
      switch (protocol) {
        case "rest":
          return viaRest(rpc, request, headers);
        case "grpc-js":
          return viaGrpcJs(rpc, request, headers);
        default:
          return viaConnectEs(protocol, rpc, request, headers);
      }
    },
    close() {
      grpcJs.close();
    },
  };
}
