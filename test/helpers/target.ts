import { EventEmitter, once } from "node:events";
import http, { type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** A request as the target received it. */
export interface Received {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** Epoch ms when the request's headers arrived. */
  at: number;
  /** Resolves "aborted" if the client closed the connection before the response ended. */
  closed: Promise<"aborted" | "finished">;
}

export type TargetHandler = (
  req: Received,
  res: ServerResponse,
  /** 1 for the first request to this path, and so on. */
  n: number,
) => void | Promise<void>;

/**
 * A scripted HTTP server on 127.0.0.1 and an ephemeral port, one per test. Paths get handlers;
 * unscripted paths answer 200 {"ok":true}. Every request is recorded.
 */
export interface Target {
  /** e.g. http://127.0.0.1:41234 */
  readonly url: string;
  readonly requests: Received[];
  on(path: string, handler: TargetHandler): void;
  /** Requests received for a path so far. */
  received(path: string): Received[];
  /** Resolves with the nth request (1-based) to `path`, waiting for it if needed. */
  request(path: string, n?: number): Promise<Received>;
  close(): Promise<void>;
}

export async function startTarget(): Promise<Target> {
  const handlers = new Map<string, TargetHandler>();
  const counts = new Map<string, number>();
  const requests: Received[] = [];
  const events = new EventEmitter();
  const server = http.createServer(async (req, res) => {
    const at = Date.now();
    const url = new URL(req.url ?? "/", "http://target");
    const closed = new Promise<"aborted" | "finished">((resolve) => {
      res.once("close", () => resolve(res.writableFinished ? "finished" : "aborted"));
    });
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    try {
      await once(req, "end");
    } catch {
      return;
    }
    const n = (counts.get(url.pathname) ?? 0) + 1;
    counts.set(url.pathname, n);
    const received: Received = {
      method: req.method ?? "",
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      body: Buffer.concat(chunks),
      at,
      closed,
    };
    requests.push(received);
    events.emit("request", received);
    const handler = handlers.get(url.pathname);
    if (!handler) {
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
      return;
    }
    try {
      await handler(received, res, n);
    } catch {
      res.destroy();
    }
  });
  const sockets = new Set<import("node:net").Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const received = (path: string) => requests.filter((r) => r.path === path);

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    on(path, handler) {
      handlers.set(path, handler);
    },
    received,
    request(path, n = 1) {
      const have = received(path);
      if (have.length >= n) return Promise.resolve(have[n - 1]!);
      return new Promise((resolve) => {
        const listener = () => {
          const now = received(path);
          if (now.length >= n) {
            events.off("request", listener);
            resolve(now[n - 1]!);
          }
        };
        events.on("request", listener);
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
