import { isUtf8 } from "node:buffer";
import http2 from "node:http2";
import {
  type DescMethod,
  fromBinary,
  fromJson,
  type JsonValue,
  toBinary,
  toJsonString,
} from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createServiceImplSpec,
  type Interceptor,
} from "@connectrpc/connect";
import {
  codeToHttpStatus,
  errorToJsonBytes,
  parseTimeout as parseConnectTimeout,
} from "@connectrpc/connect/protocol-connect";
import {
  parseTimeout as parseGrpcTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "pino";
import { InvalidArgumentError } from "../job/errors.js";
import { CALL_RECORD, recordError } from "./access-log.js";
import { toConnectError } from "./errors.js";
import { parseJsonStrict } from "./json-text.js";
import type { ServiceRegistration } from "./rest.js";
import { explainJsonError } from "./rest-json.js";
import { composeUnary, type UnaryCall, unaryRequest } from "./unary-call.js";

type Request = import("node:http").IncomingMessage | http2.Http2ServerRequest;
type Response = import("node:http").ServerResponse | http2.Http2ServerResponse;

export interface UnaryFastPathOptions {
  services: ServiceRegistration[];
  /** The same interceptors the Connect router runs. */
  interceptors: Interceptor[];
  logger: Logger;
  readMaxBytes: number;
  shutdownSignal: AbortSignal;
}

interface Entry {
  method: DescMethod;
  grpc: UnaryCall;
  connect: UnaryCall;
}

const GRPC_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const CONNECT_TYPES = new Map<string, "binary" | "json">([
  ["application/proto", "binary"],
  ["application/json", "json"],
  ["application/json; charset=utf-8", "json"],
]);

/**
 * Serves the common unary calls itself: gRPC (binary, HTTP/2) and Connect unary (binary or JSON
 * POST) without compression, with or without a deadline, through the same interceptors as every
 * other call; everything else (streams, gRPC-Web, Connect GET, compressed messages, gRPC JSON)
 * goes to connect-es. Connect-es builds each call from async-generator pipelines and three
 * AbortControllers (whose aborts each make a DOMException): profiled on GetJob over gRPC, that was
 * 780 µs of server CPU per call, of which the handler was under 60; the wire format of a unary
 * call is a length-prefixed message and a status, which this writes directly. Returns whether it
 * took the request.
 */
export function createUnaryFastPath(options: UnaryFastPathOptions) {
  const { logger, readMaxBytes, shutdownSignal } = options;
  const entries = new Map<string, Entry>();
  for (const { service, impl } of options.services) {
    const spec = createServiceImplSpec(service, impl as never);
    for (const method of service.methods) {
      const m = spec.methods[method.localName]!;
      if (m.kind !== "unary") continue;
      entries.set(`/${service.typeName}/${method.name}`, {
        method,
        grpc: composeUnary(m, options.interceptors, "grpc"),
        connect: composeUnary(m, options.interceptors, "connect"),
      });
    }
  }

  return function serveUnary(
    path: string,
    req: Request,
    res: Response,
    values: ContextValues,
  ): boolean {
    if (req.method !== "POST") return false;
    const entry = entries.get(path);
    if (!entry) return false;
    const h = req.headers;
    const ct = (h["content-type"] ?? "").toLowerCase();
    if (GRPC_TYPES.has(ct)) {
      if (!("stream" in req)) return false;
      const encoding = h["grpc-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      void serveGrpc(entry, req, res as http2.Http2ServerResponse, values);
      return true;
    }
    const kind = CONNECT_TYPES.get(ct);
    if (kind) {
      const encoding = h["content-encoding"];
      if (encoding !== undefined && encoding !== "identity") return false;
      void serveConnect(entry, kind, req, res, values);
      return true;
    }
    return false;
  };

  async function serveGrpc(
    entry: Entry,
    req: http2.Http2ServerRequest,
    res: http2.Http2ServerResponse,
    values: ContextValues,
  ) {
    let error: ConnectError | null = null;
    let output: Uint8Array | null = null;
    const deadline = deadlineOf(parseGrpcTimeout, req.headers["grpc-timeout"]);
    const body = await readBody(req, readMaxBytes + 5);
    try {
      if (body === null) {
        throw new ConnectError(
          `message is larger than configured readMaxBytes ${readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      if (deadline.error) throw deadline.error;
      const bytes = unframe(body);
      const input = parseBinary(entry.method, bytes);
      const out = await entry.grpc(
        unaryRequest(req, res, entry.method, input, values, shutdownSignal, deadline.at),
      );
      output = grpcFrame(toBinary(entry.method.output, out.message));
    } catch (err) {
      error = toConnectError(err, logger);
      recordError(values.get(CALL_RECORD), error);
    }
    if (res.destroyed || res.stream.destroyed) return;
    const trailers = error
      ? Object.fromEntries(setTrailerStatus(new Headers(), error))
      : { "grpc-status": "0" };
    res.writeHead(200, { "content-type": "application/grpc+proto" });
    res.addTrailers(trailers);
    if (body === null) {
      // Answered before the request was read to its end: reset the stream once the trailers
      // are out, so the client stops sending (see server.ts).
      const stream = req.stream;
      stream.once("wantTrailers", () =>
        setImmediate(() => {
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        }),
      );
    }
    if (output) res.end(output);
    else res.end();
  }

  async function serveConnect(
    entry: Entry,
    kind: "binary" | "json",
    req: Request,
    res: Response,
    values: ContextValues,
  ) {
    const deadline = deadlineOf(parseConnectTimeout, req.headers["connect-timeout-ms"]);
    const body = await readBody(req, readMaxBytes);
    let payload: Uint8Array;
    let status = 200;
    const headers: Record<string, string | string[]> = {};
    try {
      if (body === null) {
        throw new ConnectError(
          `message is larger than configured readMaxBytes ${readMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      if (deadline.error) throw deadline.error;
      const input =
        kind === "binary" ? parseBinary(entry.method, body) : parseJson(entry.method, body);
      const out = await entry.connect(
        unaryRequest(req, res, entry.method, input, values, shutdownSignal, deadline.at),
      );
      payload =
        kind === "binary"
          ? toBinary(entry.method.output, out.message)
          : Buffer.from(toJsonString(entry.method.output, out.message));
      headers["content-type"] = kind === "binary" ? "application/proto" : "application/json";
    } catch (err) {
      const cerr = toConnectError(err, logger);
      recordError(values.get(CALL_RECORD), cerr);
      status = codeToHttpStatus(cerr.code);
      cerr.metadata.forEach((value, name) => {
        headers[name] = value;
      });
      headers["content-type"] = "application/json";
      payload = errorToJsonBytes(cerr, {});
    }
    if (res.destroyed) return;
    headers["content-length"] = String(payload.byteLength);
    (res as import("node:http").ServerResponse).writeHead(status, headers);
    res.end(payload);
  }
}

/**
 * When the call's deadline passes (epoch ms), from its header (`connect-timeout-ms`,
 * `grpc-timeout`) as the protocol's own parser reads it, counted from the request's arrival; or
 * why the header is refused (invalid_argument, as connect-es answers it). As through connect-es,
 * the deadline aborts the handler's signal and shows in its context's `timeoutMs()`; it does not
 * cut the call short by itself.
 */
function deadlineOf(
  parse: (
    value: string | null,
    maxTimeoutMs: number,
  ) => { timeoutMs?: number; error?: ConnectError },
  value: string | string[] | undefined,
): { at?: number; error?: ConnectError } {
  if (value === undefined) return {};
  const parsed = parse(Array.isArray(value) ? value.join(", ") : value, Number.POSITIVE_INFINITY);
  if (parsed.error) return { error: parsed.error };
  return parsed.timeoutMs === undefined ? {} : { at: Date.now() + parsed.timeoutMs };
}

/** The request body, or null when it is larger than `max` (the rest is left unread). */
function readBody(req: Request, max: number): Promise<Buffer | null> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > max) return Promise.resolve(null);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > max) {
        req.off("data", onData);
        req.off("end", onEnd);
        req.pause();
        resolve(null);
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    req.on("data", onData);
    req.once("end", onEnd);
    req.once("error", () => resolve(Buffer.alloc(0)));
  });
}

/** The one message of a unary gRPC request: a 5-byte prefix (flag, length) and the message. */
function unframe(body: Buffer): Uint8Array {
  if (body.byteLength < 5) {
    throw new ConnectError(
      "protocol error: missing input message for unary method",
      Code.Unimplemented,
    );
  }
  const flag = body[0]!;
  const length = body.readUInt32BE(1);
  if (flag & 1) {
    throw new ConnectError(
      "request: a message is flagged as compressed, but the request names no encoding",
      Code.InvalidArgument,
    );
  }
  if (body.byteLength < 5 + length) {
    throw new ConnectError(
      `protocol error: promised ${length} bytes in enveloped message, got ${body.byteLength - 5} bytes`,
      Code.InvalidArgument,
    );
  }
  if (body.byteLength > 5 + length) {
    throw new ConnectError(
      "protocol error: received extra input message for unary method",
      Code.Unimplemented,
    );
  }
  return body.subarray(5);
}

/** A message in a gRPC length-prefixed frame, uncompressed. */
export function grpcFrame(message: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(5 + message.byteLength);
  out[0] = 0;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
}

function parseBinary(method: DescMethod, bytes: Uint8Array) {
  try {
    return fromBinary(method.input, bytes);
  } catch (err) {
    throw new ConnectError(
      `request: not a valid protobuf message (${(err as Error).message})`,
      Code.InvalidArgument,
    );
  }
}

function parseJson(method: DescMethod, bytes: Buffer) {
  if (!isUtf8(bytes)) throw new InvalidArgumentError("body", "is not valid UTF-8");
  const json: JsonValue = parseJsonStrict(bytes.toString("utf8"));
  try {
    return fromJson(method.input, json, { ignoreUnknownFields: false });
  } catch {
    const { field, problem } = explainJsonError(method.input, json);
    throw new InvalidArgumentError(field, problem);
  }
}
