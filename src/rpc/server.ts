import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import {
  Code,
  ConnectError,
  type ContextValues,
  createConnectRouter,
  createContextValues,
  type Interceptor,
} from "@connectrpc/connect";
import type { UniversalHandler } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { CALL_RECORD, type CallRecord, codeOfCall, type EndedCall } from "./access-log.js";
import { CALLER, PROTOCOL, protocolOf, REMOTE_ADDRESS } from "./auth.js";
import { createCors } from "./cors.js";
import { withClientErrors } from "./malformed-input.js";
import { createRestTranscoder, type ServiceRegistration, sendError, sendJson } from "./rest.js";
import { createUnaryFastPath } from "./unary-fast-path.js";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

export interface RpcServerOptions {
  host: string;
  port: number;
  logger: Logger;
  /**
   * Every service, served on every protocol: gRPC, gRPC-Web and Connect on their RPC paths, and
   * REST on the routes their google.api.http rules declare.
   */
  services: ServiceRegistration[];
  /** The pipeline every call of every protocol passes (errors, authentication, …), outermost first. */
  interceptors: Interceptor[];
  /** Whether GET /healthz answers 200; false once the process begins to stop. */
  serving: () => boolean;
  /** Whether GET /readyz answers 200 (the store takes writes, not stopping), and why not. */
  readiness: () => { ready: boolean; reason: string | null };
  /**
   * Open documents served before the API routes (the OpenAPI document, the dashboard's files):
   * each answers a request it knows and returns true, or returns false.
   */
  pages?: ((req: Request, res: Response, path: string) => boolean)[];
  /** Largest RPC message accepted, in bytes. */
  readMaxBytes: number;
  /** Where one line per call goes (protocol, route, code, duration, principal); null: none. */
  accessLog?: Logger | null;
  /** Told of every call as it ends (the metrics); null: nobody. */
  onCall?: ((call: EndedCall) => void) | null;
  /**
   * Answers GET /metrics (the Prometheus exposition, or a refusal); null: /metrics is not served.
   * Given the request's headers and remote address.
   */
  metrics?:
    | ((
        headers: Headers,
        remoteAddress: string | null,
      ) => Promise<{ status: number; headers: Record<string, string>; body: string }>)
    | null;
  /** Origins browsers may call from (CORS); empty: CORS is off. */
  corsOrigins?: string[];
  /** Aborted when the server begins to stop: streaming handlers end. */
  shutdownSignal: AbortSignal;
}

export interface RpcServer {
  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<{ host: string; port: number }>;
  /**
   * Lets requests in progress finish for up to `graceMs` while the port stays open (calls arriving
   * meanwhile are answered "not serving" by the pipeline), then stops accepting connections and
   * closes what is left. Idempotent.
   */
  close(graceMs: number): Promise<void>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
/** Endpoints of the server's own, named as such in the metrics. */
const OWN_PATHS = new Set(["/healthz", "/readyz", "/metrics"]);
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/**
 * One port for every protocol. Each connection's first bytes decide: the HTTP/2 preface goes to
 * an HTTP/2 server (gRPC over h2c, Connect, gRPC-Web, REST over h2c), anything else to an
 * HTTP/1.1 server (REST, Connect, gRPC-Web, /healthz). Both run the same request handler.
 */
export function createRpcServer(options: RpcServerOptions): RpcServer {
  const { logger } = options;
  const accessLog = options.accessLog ?? null;
  const onCall = options.onCall ?? null;
  const router = createConnectRouter({
    interceptors: options.interceptors,
    jsonOptions: { ignoreUnknownFields: false },
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: options.shutdownSignal,
    acceptCompression: [compressionGzip, compressionBrotli],
  });
  for (const { service, impl } of options.services) router.service(service, impl as never);
  const rpcPaths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) {
    rpcPaths.set(h.requestPath, withClientErrors(h, options.readMaxBytes));
  }
  const rest = createRestTranscoder({
    services: options.services,
    interceptors: options.interceptors,
    logger,
    maxRequestBytes: options.readMaxBytes,
    shutdownSignal: options.shutdownSignal,
  });

  const fastPath = createUnaryFastPath({
    services: options.services,
    interceptors: options.interceptors,
    logger,
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: options.shutdownSignal,
  });
  const cors = options.corsOrigins?.length ? createCors(options.corsOrigins, rest.methods) : null;

  /** The one entry of every request, whatever its protocol. */
  function handler(req: Request, res: Response) {
    inFlight++;
    res.once("close", ended);
    if (cors?.(req, res)) return;
    // While the server stops, calls are answered "not serving"; HTTP/1.1 clients are told not to
    // keep the connection, so they reconnect elsewhere.
    if (closing && !("stream" in req)) res.setHeader("connection", "close");
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    const contextValues = createContextValues().set(
      REMOTE_ADDRESS,
      req.socket?.remoteAddress ?? null,
    );
    const rpc = rpcPaths.get(path);
    if (accessLog || onCall) {
      const record: CallRecord = {
        route: rpc ? path : null,
        rpc: rpc ? path.slice(1) : null,
        code: null,
      };
      contextValues.set(CALL_RECORD, record);
      const started = performance.now();
      res.once("close", () => callEnded(req, res, path, contextValues, record, started));
    }
    if (rpc) {
      if (!fastPath(path, req, res, contextValues)) serveRpc(rpc, req, res, contextValues);
    } else void serveOther(req, res, path, contextValues);
  }

  /** The one place a call's end is recorded: the access log line and the metrics. */
  function callEnded(
    req: Request,
    res: Response,
    path: string,
    values: ContextValues,
    record: CallRecord,
    started: number,
  ) {
    const ms = performance.now() - started;
    const caller = values.get(CALLER);
    const protocol =
      caller?.protocol ??
      values.get(PROTOCOL) ??
      (record.route ? protocolOf(req.headers["content-type"] ?? null) : "http");
    const code = codeOfCall(record, res.statusCode);
    accessLog?.info(
      {
        protocol,
        method: req.method,
        // The path without its query (which may carry anything), or the REST route's template.
        route: record.route ?? path,
        status: res.statusCode,
        code,
        durationMs: Math.round(ms * 1000) / 1000,
        principal: caller?.principal?.name ?? null,
        remoteAddress: values.get(REMOTE_ADDRESS),
      },
      "call",
    );
    // Labelled by RPC, or by a fixed endpoint: never by a path a client made up.
    const method = record.rpc ?? (OWN_PATHS.has(path) ? path : "(none)");
    onCall?.({ method, protocol, code, seconds: ms / 1000 });
  }

  function serveRpc(rpc: UniversalHandler, req: Request, res: Response, values: ContextValues) {
    let uReq: ReturnType<typeof universalRequestFromNodeRequest>;
    try {
      uReq = universalRequestFromNodeRequest(
        req as http.IncomingMessage,
        res as never,
        undefined,
        values,
      );
    } catch {
      // No Host (HTTP/1.0) or :authority: the request cannot be served as an RPC.
      sendError(res, new ConnectError("the request has no Host header", Code.InvalidArgument));
      return;
    }
    if ("stream" in req) {
      // Answered before the request was read to its end (a message over the size limit, say): reset
      // the stream once the trailers are out, so the client stops sending instead of leaving it
      // half open. (RFC 9113 §8.1 suggests NO_ERROR, which Node does not send while the client
      // still has data in flight; CANCEL arrives after the trailers, so the status stands.)
      const stream = req.stream;
      stream.once("wantTrailers", () =>
        setImmediate(() => {
          if (!req.readableEnded && !stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        }),
      );
    }
    rpc(uReq)
      .then((uRes) => universalResponseToNodeResponse(uRes, res as http.ServerResponse))
      .catch((reason) => {
        // The client went away or the stream was reset: nothing is left to answer.
        if (ConnectError.from(reason).code === Code.Aborted) return;
        logger.debug({ rpc: rpc.method.name, reason: String(reason) }, "an RPC response was cut");
      });
  }

  async function serveOther(req: Request, res: Response, path: string, values: ContextValues) {
    try {
      if (path === "/healthz" && (req.method === "GET" || req.method === "HEAD")) {
        const ok = options.serving();
        sendJson(res, ok ? 200 : 503, { status: ok ? "serving" : "not_serving" });
        return;
      }
      if (path === "/readyz" && (req.method === "GET" || req.method === "HEAD")) {
        const { ready, reason } = options.readiness();
        sendJson(
          res,
          ready ? 200 : 503,
          ready ? { status: "ready" } : { status: "not_ready", reason },
          ready ? {} : { "retry-after": "5" },
        );
        return;
      }
      if (
        path === "/metrics" &&
        options.metrics &&
        (req.method === "GET" || req.method === "HEAD")
      ) {
        const headers = new Headers();
        for (const name of ["authorization", "x-api-key"]) {
          const value = req.headers[name];
          try {
            if (typeof value === "string") headers.set(name, value);
          } catch {
            // not a valid header value: as if absent (the key check then refuses the call)
          }
        }
        const out = await options.metrics(headers, values.get(REMOTE_ADDRESS));
        const body = Buffer.from(out.body);
        (res as http.ServerResponse).writeHead(out.status, {
          ...out.headers,
          "content-length": body.length,
        });
        res.end(body);
        return;
      }
      for (const page of options.pages ?? []) if (page(req, res, path)) return;
      values.set(PROTOCOL, "rest");
      if (await rest(req, res, values)) return;
      sendJson(res, 404, { code: "not_found", message: `no route for ${req.method} ${path}` });
    } catch (err) {
      logger.error({ err }, "request failed");
      if (!res.headersSent) sendJson(res, 500, { code: "internal", message: "internal error" });
      else res.end();
    }
  }

  const h1 = http.createServer({ keepAliveTimeout: 5_000, headersTimeout: 30_000 }, handler);
  // Malformed or oversize HTTP/1.1 requests (a 100 KB request line, too many header bytes): an
  // answer the client can read, then a half-close that lets it finish sending, rather than
  // Node's default of destroying the socket (which a client still writing sees as a reset).
  h1.on("clientError", (err: NodeJS.ErrnoException, socket: net.Socket) => {
    const pending = (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage;
    if (err.code === "ECONNRESET" || !socket.writable || pending?.headersSent) {
      socket.destroy();
      return;
    }
    const [status, reason, code, message] =
      err.code === "HPE_HEADER_OVERFLOW"
        ? [
            431,
            "Request Header Fields Too Large",
            "resource_exhausted",
            "the request line and headers are too large",
          ]
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout", "deadline_exceeded", "the request took too long to arrive"]
          : [400, "Bad Request", "invalid_argument", "request: not a valid HTTP/1.1 request"];
    const body = JSON.stringify({ code, message });
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
    socket.resume();
    setTimeout(() => socket.destroy(), 2_000).unref();
  });
  // WebSocket: a handshake on a streaming REST route (/events, /jobs/{job_id}/events).
  h1.on("upgrade", (req: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    socket.on("error", () => socket.destroy());
    const path = (req.url ?? "/").split("?")[0]!;
    if (closing || (req.headers.upgrade ?? "").toLowerCase() !== "websocket") {
      socket.end(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
      );
      return;
    }
    // A page of another site may open a WebSocket to this server (browsers do not apply CORS to
    // WebSocket): only same-origin pages and the CORS origins may, whatever the key.
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(origin, req.headers.host)) {
      const body = JSON.stringify({
        code: "permission_denied",
        message: `origin ${origin} may not open a WebSocket here (JOBQUEUE_CORS_ORIGINS)`,
      });
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    const values = createContextValues()
      .set(REMOTE_ADDRESS, req.socket?.remoteAddress ?? null)
      .set(PROTOCOL, "websocket");
    inFlight++;
    socket.once("close", ended);
    if (accessLog || onCall) {
      // The code is the call's (the pipeline records it); 101 is the handshake's status.
      const record: CallRecord = { route: null, rpc: null, code: null };
      values.set(CALL_RECORD, record);
      const started = performance.now();
      const switched = { statusCode: 101 } as Response;
      socket.once("close", () => callEnded(req, switched, path, values, record, started));
    }
    rest.upgrade(req, socket, head, values);
  });
  const corsOrigins = new Set(options.corsOrigins ?? []);
  function originAllowed(origin: string, host: string | undefined): boolean {
    if (corsOrigins.has(origin)) return true;
    try {
      return new URL(origin).host === host;
    } catch {
      return false;
    }
  }
  // h1 never listens itself (the TCP server hands it sockets), but "listening" is what starts its
  // connection tracking: idle-connection closing and the header and request timeouts.
  h1.emit("listening");
  const h2 = http2.createServer({}, handler);
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  h2.setTimeout(120_000);

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
    socket.on("error", () => socket.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const n = Math.min(head.length, H2_PREFACE.length);
      const isH2 = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (isH2 && n < H2_PREFACE.length) return; // wait for the rest of the preface
      socket.off("data", onData);
      socket.pause();
      socket.unshift(head);
      socket.setTimeout(0);
      if (isH2) {
        h2.emit("connection", socket);
      } else {
        h1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", onData);
  });

  let closing: Promise<void> | null = null;
  let inFlight = 0;
  let onIdle: (() => void) | null = null;
  const ended = () => {
    if (--inFlight === 0) onIdle?.();
  };

  return {
    listen() {
      return new Promise((resolve, reject) => {
        tcp.once("error", reject);
        tcp.listen(options.port, options.host, () => {
          tcp.off("error", reject);
          const addr = tcp.address() as net.AddressInfo;
          resolve({ host: addr.address, port: addr.port });
        });
      });
    },
    close(graceMs) {
      if (closing) return closing;
      closing = (async () => {
        // The port stays open while requests are in flight (up to the grace period): new calls
        // meanwhile get "not serving" answers from the pipeline, not a refused connection.
        if (inFlight > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, graceMs);
            onIdle = () => {
              clearTimeout(timer);
              resolve();
            };
          });
        }
        const stopped = new Promise<void>((resolve) => tcp.close(() => resolve()));
        // Closes idle keep-alive connections and stops h1's timers; busy ones close after their
        // request (the interval below), or at the end of the grace period.
        h1.close();
        for (const session of sessions) session.close();
        const timer = setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, graceMs);
        // Idle HTTP/1.1 connections close as their requests end.
        const idle = setInterval(() => h1.closeIdleConnections(), 100);
        await stopped;
        clearTimeout(timer);
        clearInterval(idle);
      })();
      return closing;
    },
  };
}
