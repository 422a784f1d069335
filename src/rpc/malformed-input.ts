import { isUtf8 } from "node:buffer";
import type { JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type {
  UniversalHandler,
  UniversalServerRequest,
  UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { InvalidArgumentError } from "../job/errors.js";
import { CALL_RECORD, type CallRecord, statusName } from "./access-log.js";
import { codeName } from "./errors.js";
import { parseJsonStrict } from "./json-text.js";
import { explainJsonError } from "./rest-json.js";

/**
 * Malformed input to the RPC protocols answered as the client's fault, on every protocol and
 * encoding. connect-es reports a binary message it cannot parse ("premature EOF", "invalid
 * varint", "illegal tag", invalid UTF-8, DataView offsets) as INTERNAL, and JSON it cannot decode
 * without naming where. This wraps each RPC handler:
 *
 * - Connect unary JSON bodies are read here and parsed like REST's (strictly: malformed JSON,
 *   repeated keys, nesting too deep and invalid UTF-8 are INVALID_ARGUMENT naming where), then
 *   handed to connect-es already parsed, so the JSON is parsed once;
 * - a JSON message connect-es cannot decode is named by its field path (`jobs[0]`);
 * - a binary parse failure becomes INVALID_ARGUMENT: in a Connect unary answer, in gRPC's
 *   trailers, in gRPC-Web's trailer frame. (Streaming calls parse inside the interceptors, where
 *   {@link clientFaultOf} does the same.)
 */
export function withClientErrors(
  handler: UniversalHandler,
  readMaxBytes: number,
): UniversalHandler {
  const unary = handler.method.methodKind === "unary";
  const wrapped = async (req: UniversalServerRequest): Promise<UniversalServerResponse> => {
    const ct = req.header.get("content-type") ?? "";
    if (ct.startsWith("application/grpc")) {
      const res = await handler(req);
      const record = req.contextValues?.get(CALL_RECORD) ?? null;
      return ct.startsWith("application/grpc-web")
        ? fixGrpcWebTrailer(res, record)
        : fixGrpcTrailer(res, record);
    }
    let json: JsonValue | undefined;
    if (
      unary &&
      req.method === "POST" &&
      /^application\/json(;|$)/i.test(ct) &&
      req.header.get("content-encoding") === null
    ) {
      const body = await readUpTo(req.body as AsyncIterable<Uint8Array>, readMaxBytes);
      if (body.bytes === null) {
        // Too large: connect-es answers it, from the bytes read so far and the rest.
        return handler({ ...req, body: body.rest });
      }
      try {
        if (!isUtf8(body.bytes)) throw new InvalidArgumentError("body", "is not valid UTF-8");
        json = parseJsonStrict(Buffer.from(body.bytes).toString("utf8"));
      } catch (err) {
        if (err instanceof InvalidArgumentError)
          return connectError(400, "invalid_argument", err.message);
        throw err;
      }
      req = { ...req, body: json };
    }
    const res = await handler(req);
    if (res.status === 200 || !unary) return res;
    return fixConnectUnaryError(res, handler, json);
  };
  return Object.assign(wrapped, handler);
}

/**
 * A library error that is the client's fault, restated: binary parse failures are
 * INVALID_ARGUMENT naming the message. Null when the error is not one of those.
 */
export function clientFaultOf(err: ConnectError): ConnectError | null {
  if (err.code !== Code.Internal) return null;
  const m = err.rawMessage;
  let message: string | null = null;
  if (m.startsWith("parse binary: ")) {
    message = `request: not a valid protobuf message (${m.slice("parse binary: ".length)})`;
  } else if (m === "received compressed envelope, but do not know how to decompress") {
    message = "request: a message is flagged as compressed, but the request names no encoding";
  } else if (m === "decompression failed") {
    message = "request: a compressed message does not decompress";
  }
  return message === null ? null : new ConnectError(message, Code.InvalidArgument);
}

function restated(code: string, message: string): { code: number; message: string } | null {
  if (code !== "internal" && code !== "13") return null;
  const fault = clientFaultOf(new ConnectError(message, Code.Internal));
  return fault ? { code: fault.code, message: fault.rawMessage } : null;
}

async function fixConnectUnaryError(
  res: UniversalServerResponse,
  handler: UniversalHandler,
  json: JsonValue | undefined,
): Promise<UniversalServerResponse> {
  if (res.status !== 500 && res.status !== 400) return res;
  if (res.header?.get("content-encoding")) return res;
  const bytes = await readAll(res.body);
  let error: { code?: string; message?: string };
  try {
    error = JSON.parse(Buffer.from(bytes).toString("utf8")) as typeof error;
  } catch {
    return { ...res, body: once(bytes) };
  }
  if (res.status === 500) {
    const fix = restated(error.code ?? "", error.message ?? "");
    if (fix) return connectError(400, "invalid_argument", fix.message, res.header);
  } else if (json !== undefined && /^cannot decode /.test(error.message ?? "")) {
    const { field, problem } = explainJsonError(handler.method.input, json);
    return connectError(400, "invalid_argument", `${field}: ${problem}`, res.header);
  }
  return { ...res, body: once(bytes) };
}

function fixGrpcTrailer(
  res: UniversalServerResponse,
  record: CallRecord | null,
): UniversalServerResponse {
  const { body, trailer } = res;
  if (!body || !trailer) return res;
  const fix = () => {
    const status = trailer.get("grpc-status");
    if (record && status !== null) record.code = statusName(Number(status));
    if (status !== "13") return;
    const fixed = restated(status, decodeURIComponent(trailer.get("grpc-message") ?? ""));
    if (!fixed) return;
    trailer.set("grpc-status", String(fixed.code));
    trailer.set("grpc-message", encodeURIComponent(fixed.message));
    if (record) record.code = codeName(fixed.code);
  };
  fix(); // a unary call's failure is already known
  return {
    ...res,
    body: (async function* () {
      yield* body;
      fix();
    })(),
  };
}

function fixGrpcWebTrailer(
  res: UniversalServerResponse,
  record: CallRecord | null,
): UniversalServerResponse {
  const { body } = res;
  if (!body) return res;
  return {
    ...res,
    body: (async function* () {
      for await (const chunk of body) yield fixTrailerFrame(chunk, record);
    })(),
  };
}

/** Rewrites a gRPC-Web trailer frame (flag 0x80) that carries a restated status. */
function fixTrailerFrame(chunk: Uint8Array, record: CallRecord | null): Uint8Array {
  if (chunk.byteLength < 5 || (chunk[0]! & 0x80) === 0) return chunk;
  const length = Buffer.from(chunk.buffer, chunk.byteOffset + 1, 4).readUInt32BE(0);
  if (length !== chunk.byteLength - 5) return chunk;
  const text = Buffer.from(chunk.buffer, chunk.byteOffset + 5, length).toString("latin1");
  const status = /grpc-status: *(\d+)/i.exec(text)?.[1];
  const message = /grpc-message: *([^\r\n]*)/i.exec(text)?.[1] ?? "";
  if (record && status !== undefined) record.code = statusName(Number(status));
  if (status !== "13") return chunk;
  const fixed = restated(status, decodeURIComponent(message));
  if (!fixed) return chunk;
  if (record) record.code = codeName(fixed.code);
  const out = Buffer.from(
    `grpc-status: ${fixed.code}\r\ngrpc-message: ${encodeURIComponent(fixed.message)}\r\n`,
    "latin1",
  );
  const head = Buffer.alloc(5);
  head[0] = chunk[0]!;
  head.writeUInt32BE(out.byteLength, 1);
  return Buffer.concat([head, out]);
}

function connectError(
  status: number,
  code: string,
  message: string,
  headers?: Headers,
): UniversalServerResponse {
  const body = Buffer.from(JSON.stringify({ code, message }));
  const header = new Headers(headers);
  header.set("content-type", "application/json");
  header.set("content-length", String(body.byteLength));
  return { status, header, body: once(body) };
}

async function readUpTo(
  body: AsyncIterable<Uint8Array>,
  max: number,
): Promise<
  { bytes: Uint8Array; rest?: undefined } | { bytes: null; rest: AsyncIterable<Uint8Array> }
> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const it = body[Symbol.asyncIterator]();
  for (;;) {
    const next = await it.next();
    if (next.done) break;
    chunks.push(next.value);
    size += next.value.byteLength;
    if (size > max) {
      return {
        bytes: null,
        rest: (async function* () {
          yield* chunks;
          for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
        })(),
      };
    }
  }
  return { bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) };
}

async function readAll(body: AsyncIterable<Uint8Array> | undefined): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

async function* once(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
