import { join } from "node:path";
import {
  type DescMessage,
  type DescMethod,
  type DescService,
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
import { QueueService } from "../../gen/jobqueue/v1/queue_service_pb.js";
import { ScheduleService } from "../../gen/jobqueue/v1/schedule_service_pb.js";

/**
 * One way to call any JobQueueService or QueueService method over every protocol the server speaks, so that a test
 * can state an expectation once and check it on each: REST (fetch), Connect JSON over HTTP/1.1,
 * gRPC-Web over HTTP/1.1, gRPC over h2c (connect-node) and gRPC over h2c with @grpc/grpc-js and
 * @grpc/proto-loader (an independent implementation of the wire format).
 */

export const PROTOCOLS = ["rest", "connect", "grpc-web", "grpc", "grpc-js"] as const;
export type Protocol = (typeof PROTOCOLS)[number];

/** Every method of JobQueueService, then of QueueService (a test checks the list is whole). */
export const RPCS = [
  "EnqueueJob",
  "EnqueueJobs",
  "GetJob",
  "GetJobResult",
  "ListJobAttempts",
  "ListJobs",
  "CancelJob",
  "WatchJob",
  "WatchJobs",
  "ListAuditEvents",
  "RetryJob",
  "DeleteJob",
  "CancelJobs",
  "RetryJobs",
  "DeleteJobs",
  "GetOperation",
  "ListOperations",
  "CancelOperation",
  "GetJobCounts",
  "ListNodes",
  "GetCaller",
  "CreateQueue",
  "UpdateQueue",
  "GetQueue",
  "ListQueues",
  "PauseQueue",
  "ResumeQueue",
  "DeleteQueue",
  "GetQueueStats",
] as const;
export type Rpc = (typeof RPCS)[number];

/** The services the clients call, each with its methods. */
export const SERVICES: readonly DescService[] = [JobQueueService, QueueService];

/** Every method of ScheduleService (test/e2e/schedules.test.ts covers them on every protocol). */
export const SCHEDULE_RPCS = [
  "CreateSchedule",
  "GetSchedule",
  "ListSchedules",
  "UpdateSchedule",
  "DeleteSchedule",
  "PauseSchedule",
  "ResumeSchedule",
  "TriggerSchedule",
] as const;
export type ScheduleRpc = (typeof SCHEDULE_RPCS)[number];
/** Any method the clients can call. */
export type AnyRpc = Rpc | ScheduleRpc;
const ALL_SERVICES: readonly DescService[] = [...SERVICES, ScheduleService];

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
   * Calls `rpc` with `request` (JSON with proto field names, e.g. `{ job_id }`, enums by their
   * proto names: REST gets them lowercase without their prefix, as its contract says) and
   * `headers`. A stream (WatchJob, WatchJobs) returns after its first message and cancels the
   * stream; over REST it is read as Server-Sent Events.
   */
  call(
    protocol: Protocol,
    rpc: AnyRpc,
    request?: JsonObject,
    headers?: Record<string, string>,
  ): Promise<CallResult>;
  /** Closes the grpc-js channels so the server can stop at once. */
  close(): void;
}

export const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
export const apiKey = (key: string) => ({ "x-api-key": key });

const PROTO_DIR = join(import.meta.dirname, "../../proto");

type Verb = "GET" | "POST" | "PATCH" | "DELETE";

/**
 * REST routes, as the proto's google.api.http rules declare them (written out, not derived), and
 * the field a rule's `response_body` answers with (the client wraps it back into the response).
 */
const REST_ROUTES: Record<
  AnyRpc,
  { verb: Verb; path: string; responseBody?: string; stream?: true }
> = {
  // Streams over REST are Server-Sent Events: the client reads the first.
  WatchJob: { verb: "GET", path: "/jobs/{job_id}/events", stream: true },
  WatchJobs: { verb: "GET", path: "/events", stream: true },
  EnqueueJob: { verb: "POST", path: "/jobs" },
  EnqueueJobs: { verb: "POST", path: "/jobs:batch" },
  GetJob: { verb: "GET", path: "/jobs/{job_id}", responseBody: "job" },
  GetJobResult: { verb: "GET", path: "/jobs/{job_id}/result" },
  ListJobAttempts: { verb: "GET", path: "/jobs/{job_id}/attempts" },
  ListJobs: { verb: "GET", path: "/jobs" },
  CancelJob: { verb: "POST", path: "/jobs/{job_id}/cancel", responseBody: "job" },
  ListAuditEvents: { verb: "GET", path: "/audit" },
  RetryJob: { verb: "POST", path: "/jobs/{job_id}/retry", responseBody: "job" },
  DeleteJob: { verb: "DELETE", path: "/jobs/{job_id}" },
  CancelJobs: { verb: "POST", path: "/jobs:cancel" },
  RetryJobs: { verb: "POST", path: "/jobs:retry" },
  DeleteJobs: { verb: "POST", path: "/jobs:delete" },
  GetOperation: { verb: "GET", path: "/operations/{operation_id}", responseBody: "operation" },
  ListOperations: { verb: "GET", path: "/operations" },
  CancelOperation: {
    verb: "POST",
    path: "/operations/{operation_id}/cancel",
    responseBody: "operation",
  },
  GetJobCounts: { verb: "GET", path: "/jobs:counts" },
  ListNodes: { verb: "GET", path: "/nodes" },
  GetCaller: { verb: "GET", path: "/whoami" },
  CreateQueue: { verb: "POST", path: "/queues", responseBody: "queue" },
  UpdateQueue: { verb: "PATCH", path: "/queues/{name}", responseBody: "queue" },
  GetQueue: { verb: "GET", path: "/queues/{name}", responseBody: "queue" },
  ListQueues: { verb: "GET", path: "/queues" },
  PauseQueue: { verb: "POST", path: "/queues/{name}/pause", responseBody: "queue" },
  ResumeQueue: { verb: "POST", path: "/queues/{name}/resume", responseBody: "queue" },
  DeleteQueue: { verb: "DELETE", path: "/queues/{name}" },
  GetQueueStats: { verb: "GET", path: "/queues/{name}/stats" },
  CreateSchedule: { verb: "POST", path: "/schedules", responseBody: "schedule" },
  GetSchedule: { verb: "GET", path: "/schedules/{schedule_id}", responseBody: "schedule" },
  ListSchedules: { verb: "GET", path: "/schedules" },
  UpdateSchedule: {
    verb: "PATCH",
    path: "/schedules/{schedule_id}",
    responseBody: "schedule",
  },
  DeleteSchedule: { verb: "DELETE", path: "/schedules/{schedule_id}" },
  PauseSchedule: {
    verb: "POST",
    path: "/schedules/{schedule_id}/pause",
    responseBody: "schedule",
  },
  ResumeSchedule: {
    verb: "POST",
    path: "/schedules/{schedule_id}/resume",
    responseBody: "schedule",
  },
  TriggerSchedule: { verb: "POST", path: "/schedules/{schedule_id}/trigger" },
};

/** The data of the first Server-Sent Event of a stream, as JSON. */
async function firstEvent(body: ReadableStream<Uint8Array>): Promise<unknown> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const end = text.indexOf("\n\n");
    if (end !== -1) {
      const data = text
        .slice(0, end)
        .split("\n")
        .find((l) => l.startsWith("data: "));
      return JSON.parse(data!.slice("data: ".length));
    }
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended before its first event");
    text += decoder.decode(value, { stream: true });
  }
}

export function serviceOf(rpc: AnyRpc): DescService {
  const service = ALL_SERVICES.find((s) => s.methods.some((m) => m.name === rpc));
  if (!service) throw new Error(`no method ${rpc}`);
  return service;
}

function methodOf(rpc: AnyRpc): DescMethod {
  return serviceOf(rpc).methods.find((m) => m.name === rpc)!;
}

/** Proto JSON → REST JSON: enum values lowercase without their shared prefix. */
function restRequest(desc: DescMessage, json: JsonValue): JsonValue {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return json;
  const out: JsonObject = {};
  for (const [name, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.name === name || f.jsonName === name);
    if (!field) {
      out[name] = value;
      continue;
    }
    const enumOf =
      field.fieldKind === "enum"
        ? field.enum
        : field.fieldKind === "list" && field.listKind === "enum"
          ? field.enum
          : undefined;
    const shortName = (v: JsonValue): JsonValue => {
      if (typeof v !== "string" || !enumOf) return v;
      const prefix = (enumOf.sharedPrefix ?? "").toUpperCase();
      return v.startsWith(prefix) ? v.slice(prefix.length).toLowerCase() : v;
    };
    const message =
      field.fieldKind === "message" || (field.fieldKind === "list" && field.listKind === "message")
        ? field.message
        : undefined;
    const each = (v: JsonValue): JsonValue =>
      enumOf
        ? shortName(v)
        : message && !message.typeName.startsWith("google.protobuf.")
          ? restRequest(message, v)
          : v;
    out[name] = Array.isArray(value) ? value.map(each) : each(value);
  }
  return out;
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
  const definition = protoLoader.loadSync(
    [
      "jobqueue/v1/job_queue_service.proto",
      "jobqueue/v1/queue_service.proto",
      "jobqueue/v1/schedule_service.proto",
    ],
    { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String, oneofs: true },
  );
  const grpcJs = new Map(
    ALL_SERVICES.map((s) => {
      const def = definition[s.typeName] as grpc.ServiceDefinition;
      const Client = grpc.makeGenericClientConstructor(def, s.name);
      const client = new Client(new URL(baseUrl).host, grpc.credentials.createInsecure()) as any;
      return [s.typeName, { def, client }] as const;
    }),
  );

  async function viaRest(rpc: AnyRpc, request: JsonObject, headers: Record<string, string>) {
    const route = REST_ROUTES[rpc];
    const rest = { ...(restRequest(methodOf(rpc).input, request) as JsonObject) };
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
    const ac = new AbortController();
    const res = await fetch(url, {
      method: route.verb,
      headers: {
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body,
      signal: ac.signal,
    });
    if (route.stream && res.ok) {
      const first = await firstEvent(res.body as ReadableStream<Uint8Array>);
      ac.abort();
      return { ...ok(first), httpStatus: res.status };
    }
    const text = await res.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    if (res.ok) {
      return {
        ...ok(route.responseBody ? { [route.responseBody]: json } : json),
        httpStatus: res.status,
      };
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
    rpc: AnyRpc,
    request: JsonObject,
    headers: Record<string, string>,
  ): Promise<CallResult> {
    const method = methodOf(rpc);
    const client = createClient(serviceOf(rpc), transports[protocol]) as any;
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
    rpc: AnyRpc,
    request: JsonObject,
    headers: Record<string, string>,
  ): Promise<CallResult> {
    const method = methodOf(rpc);
    const { def: service, client: grpcClient } = grpcJs.get(serviceOf(rpc).typeName)!;
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
        const call = grpcClient[rpc](input, metadata) as grpc.ClientReadableStream<unknown>;
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
      grpcClient[rpc](input, metadata, (err: grpc.ServiceError | null, res: unknown) =>
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
      for (const { client } of grpcJs.values()) client.close();
    },
  };
}
