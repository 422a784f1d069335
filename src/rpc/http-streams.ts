import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { DescMessage, JsonObject, JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError, type StreamResponse } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { WebSocket, WebSocketServer } from "ws";
import { codeName, httpStatusOf, toConnectError, violatedField } from "./errors.js";
import { toRestJson } from "./rest-json.js";

/**
 * The HTTP forms of a server stream, for browsers and shells: Server-Sent Events (`curl -N`,
 * `EventSource`) and WebSocket, on the REST route of a streaming method. Both carry each message
 * as its REST JSON; both send nothing until the call is accepted and its first message is in, so
 * a refused call or a bad cursor is an ordinary HTTP error with the REST error body.
 */

/** The WebSocket subprotocol a browser offers with its key (browsers cannot set headers). */
export const WS_PROTOCOL = "jobqueue.v1";
const WS_BEARER = "jobqueue.bearer.";

/** Starts the call; rejects if the pipeline refuses it. */
export type OpenStream = (signal: AbortSignal) => Promise<StreamResponse>;

/** The error a stream ended with, in REST's JSON shape. */
function errorJson(err: ConnectError): JsonObject {
  const field = err.code === Code.InvalidArgument ? violatedField(err) : undefined;
  return { code: codeName(err.code), message: err.rawMessage, ...(field ? { field } : {}) };
}

/**
 * How a message is framed as an event: its `id` is the cursor it carries (so an `EventSource` that
 * reconnects sends it back as Last-Event-ID and resumes there), its `event` name the type of the
 * job event it carries (`running`, `succeeded`, …) or `heartbeat`.
 */
export function sseFrame(json: JsonObject): string {
  const event = json.event as JsonObject | undefined;
  const heartbeat = json.heartbeat as JsonObject | undefined;
  const id = (event?.cursor ?? heartbeat?.cursor) as string | undefined;
  const name = heartbeat ? "heartbeat" : (event?.type as string | undefined);
  let frame = id ? `id: ${id}\n` : "";
  if (name) frame += `event: ${name}\n`;
  return `${frame}data: ${JSON.stringify(json)}\n\n`;
}

/**
 * Makes the call and reads its first message: a refused call, a bad request or an expired cursor
 * fail here, before the transport has answered anything.
 */
async function openFirst(
  open: OpenStream,
  signal: AbortSignal,
  logger: Logger,
): Promise<
  { messages: AsyncIterator<unknown>; first: IteratorResult<unknown> } | { error: ConnectError }
> {
  try {
    const messages = (await open(signal)).message[Symbol.asyncIterator]();
    return { messages, first: await messages.next() };
  } catch (err) {
    return { error: toConnectError(err, logger) };
  }
}

/** Serves a stream as Server-Sent Events. */
export async function serveSse(
  res: ServerResponse,
  output: DescMessage,
  open: OpenStream,
  logger: Logger,
  shutdown: AbortSignal | undefined,
  head: boolean,
): Promise<void> {
  const ac = new AbortController();
  const abort = () => ac.abort();
  res.once("close", abort);
  shutdown?.addEventListener("abort", abort, { once: true });
  let messages: AsyncIterator<unknown> | null = null;
  try {
    const opened = await openFirst(open, ac.signal, logger);
    if ("error" in opened) {
      sendErrorJson(res, opened.error);
      return;
    }
    messages = opened.messages;
    const first = opened.first;
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      // Proxies that buffer responses (nginx) must pass each event on as it comes.
      "x-accel-buffering": "no",
    });
    if (head) {
      res.end();
      return;
    }
    let next = first;
    while (!next.done && !ac.signal.aborted) {
      const frame = sseFrame(toRestJson(output, next.value as never) as JsonObject);
      if (!res.write(frame)) await drained(res);
      try {
        next = await messages.next();
      } catch (err) {
        const cerr = toConnectError(err, logger);
        if (!ac.signal.aborted)
          res.write(`event: error\ndata: ${JSON.stringify(errorJson(cerr))}\n\n`);
        break;
      }
    }
    res.end();
  } finally {
    shutdown?.removeEventListener("abort", abort);
    await messages?.return?.().catch(() => {});
  }
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.once("drain", done);
    res.once("close", done);
  });
}

function sendErrorJson(res: ServerResponse, err: ConnectError): void {
  const body = JSON.stringify(errorJson(err));
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  };
  err.metadata.forEach((value, name) => {
    headers[name] = value;
  });
  if (err.code === Code.Unauthenticated) headers["www-authenticate"] = 'Bearer realm="jobqueue"';
  res.writeHead(httpStatusOf(err.code), headers);
  res.end(body);
}

/**
 * The key a WebSocket handshake carries: the Authorization or x-api-key header (any client but a
 * browser), or the subprotocol `jobqueue.bearer.<key>` offered with `jobqueue.v1` (a browser).
 */
export function webSocketHeaders(req: IncomingMessage): Headers {
  const headers = new Headers();
  for (const name of ["authorization", "x-api-key", "user-agent"]) {
    const value = req.headers[name];
    if (typeof value === "string") {
      try {
        headers.set(name, value);
      } catch {
        // not a valid header value: as if absent
      }
    }
  }
  const offered = String(req.headers["sec-websocket-protocol"] ?? "")
    .split(",")
    .map((p) => p.trim());
  const bearer = offered.find((p) => p.startsWith(WS_BEARER));
  if (bearer && !headers.has("authorization")) {
    headers.set("authorization", `Bearer ${bearer.slice(WS_BEARER.length)}`);
  }
  return headers;
}

/** Answers a refused WebSocket handshake with the REST error, then closes the socket. */
function refuseUpgrade(socket: Duplex, err: ConnectError): void {
  const status = httpStatusOf(err.code);
  const body = JSON.stringify(errorJson(err));
  socket.end(
    `HTTP/1.1 ${status} ${status === 410 ? "Gone" : "Error"}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/**
 * Serves a stream over WebSocket: each message a text frame of its REST JSON. An error after the
 * handshake is sent as a last frame `{"error": {code, message}}`, then the socket is closed with
 * code 4000 + the error's HTTP status (4410: the cursor expired; 4429: the watcher fell behind).
 * A client that does not read is not waited for beyond its socket's buffer: its stream falls
 * behind and is ended like any slow watcher.
 */
export async function serveWebSocket(
  wss: WebSocketServer,
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  output: DescMessage,
  open: OpenStream,
  logger: Logger,
  shutdown: AbortSignal | undefined,
): Promise<void> {
  const ac = new AbortController();
  const abort = () => ac.abort();
  socket.once("close", abort);
  shutdown?.addEventListener("abort", abort, { once: true });
  let messages: AsyncIterator<unknown> | null = null;
  try {
    const opened = await openFirst(open, ac.signal, logger);
    if ("error" in opened) {
      refuseUpgrade(socket, opened.error);
      return;
    }
    messages = opened.messages;
    const first = opened.first;
    const ws = await new Promise<WebSocket>((resolve) =>
      wss.handleUpgrade(req, socket, head, resolve),
    );
    ws.on("close", abort);
    ws.on("error", abort);
    const send = (json: JsonValue) =>
      new Promise<void>((resolve) => {
        ws.send(JSON.stringify(json), () => resolve());
      });
    let next = first;
    while (!next.done && !ac.signal.aborted) {
      await send(toRestJson(output, next.value as never));
      try {
        next = await messages.next();
      } catch (err) {
        const cerr = toConnectError(err, logger);
        if (!ac.signal.aborted) {
          await send({ error: errorJson(cerr) });
          ws.close(4000 + httpStatusOf(cerr.code), codeName(cerr.code));
        }
        return;
      }
    }
    if (shutdown?.aborted) ws.close(1001, "the server is stopping");
    else if (!ac.signal.aborted) ws.close(1000, "end of stream");
  } finally {
    shutdown?.removeEventListener("abort", abort);
    await messages?.return?.().catch(() => {});
  }
}

/** The answer to a WebSocket handshake on a path with no stream. */
export function refuseNoStream(socket: Duplex, path: string): void {
  refuseUpgrade(
    socket,
    new ConnectError(
      `no event stream at ${path}: use /events or /jobs/{job_id}/events`,
      Code.NotFound,
    ),
  );
}
