import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { type ConnectRouter, createContextValues, type Interceptor } from "@connectrpc/connect";
import { type ConnectNodeAdapterOptions, connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { REMOTE_ADDRESS } from "./auth.js";
import { sendJson } from "./rest.js";

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
type Request = Parameters<NodeHandler>[0];
type Response = Parameters<NodeHandler>[1];

export interface RpcServerOptions {
  host: string;
  port: number;
  logger: Logger;
  /** Registers the Connect services (gRPC, gRPC-Web and Connect on their RPC paths). */
  routes: (router: ConnectRouter) => void;
  /** Serves paths the RPC router does not know; resolves false when it does not know them either. */
  fallback: (req: Request, res: Response) => Promise<boolean>;
  /** Whether GET /healthz answers 200; false once the process begins to stop. */
  serving: () => boolean;
  /** Whether GET /readyz answers 200 (the store takes writes, not stopping), and why not. */
  readiness: () => { ready: boolean; reason: string | null };
  /** Largest RPC message accepted, in bytes. */
  readMaxBytes: number;
  /** Aborted when the server begins to stop: streaming handlers end. */
  shutdownSignal: AbortSignal;
  /** Run around every RPC (authentication and role checks). */
  interceptors: Interceptor[];
}

export interface RpcServer {
  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  listen(): Promise<{ host: string; port: number }>;
  /**
   * Stops accepting connections, lets requests in progress finish for up to `graceMs`, then closes
   * what is left. Idempotent.
   */
  close(graceMs: number): Promise<void>;
}

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/**
 * One port for every protocol. Each connection's first bytes decide: the HTTP/2 preface goes to
 * an HTTP/2 server (gRPC over h2c, Connect, gRPC-Web, REST over h2c), anything else to an
 * HTTP/1.1 server (REST, Connect, gRPC-Web, /healthz). Both run the same request handler.
 */
export function createRpcServer(options: RpcServerOptions): RpcServer {
  const { logger } = options;
  const handler = connectNodeAdapter({
    routes: options.routes,
    jsonOptions: { ignoreUnknownFields: false },
    readMaxBytes: options.readMaxBytes,
    shutdownSignal: options.shutdownSignal,
    interceptors: options.interceptors,
    contextValues: (req) =>
      createContextValues().set(REMOTE_ADDRESS, req.socket?.remoteAddress ?? null),
    fallback: (req, res) => {
      void serveFallback(req, res);
    },
  });

  async function serveFallback(req: Request, res: Response) {
    try {
      const path = (req.url ?? "/").split("?")[0];
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
      if (await options.fallback(req, res)) return;
      sendJson(res, 404, { code: "not_found", message: `no route for ${req.method} ${path}` });
    } catch (err) {
      logger.error({ err }, "request failed");
      if (!res.headersSent) sendJson(res, 500, { code: "internal", message: "internal error" });
      else res.end();
    }
  }

  const h1 = http.createServer({ keepAliveTimeout: 5_000, headersTimeout: 30_000 }, handler);
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
