/**
 * The target HTTP server every contestant calls, in its own process on 127.0.0.1 (keep-alive).
 *
 * - `GET /json?run=R`: a tiny JSON answer (`{"ok":true}`); counts requests per run.
 * - `/echo?…`: answers the method, query and request body back as JSON.
 * - `GET /lat?run=R&t=NS`: like /json, and records `now - t` where both are CLOCK_MONOTONIC
 *   nanoseconds (`process.hrtime.bigint()`), i.e. how long ago the client sent the enqueue.
 * - `GET /_count?run=R`: how many requests run R has made so far (for completion gating).
 *
 * The orchestrator asks for counts and latencies over IPC.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { runService } from "./child-main.js";

const JSON_BODY = Buffer.from('{"ok":true}');

runService<Record<string, never>>(async () => {
  const counts = new Map<string, number>();
  const latencies = new Map<string, number[]>();

  function query(url: string): { path: string; params: Map<string, string> } {
    const q = url.indexOf("?");
    const params = new Map<string, string>();
    if (q === -1) return { path: url, params };
    for (const pair of url.slice(q + 1).split("&")) {
      const eq = pair.indexOf("=");
      if (eq > 0) params.set(pair.slice(0, eq), decodeURIComponent(pair.slice(eq + 1)));
    }
    return { path: url.slice(0, q), params };
  }

  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const at = process.hrtime.bigint();
    const { path, params } = query(req.url ?? "/");
    const run = params.get("run") ?? "";
    if (path === "/json" || path === "/lat") {
      counts.set(run, (counts.get(run) ?? 0) + 1);
      if (path === "/lat") {
        const t = params.get("t");
        if (t) {
          const list = latencies.get(run) ?? [];
          if (list.length === 0) latencies.set(run, list);
          list.push(Number(at - BigInt(t)) / 1e6);
        }
      }
      req.resume();
      res.writeHead(200, {
        "content-type": "application/json",
        "content-length": JSON_BODY.length,
      });
      res.end(JSON_BODY);
      return;
    }
    if (path === "/echo") {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = JSON.stringify({
          method: req.method,
          query: Object.fromEntries(params),
          body: Buffer.concat(chunks).toString("utf8"),
        });
        res.writeHead(200, { "content-type": "application/json" }).end(body);
      });
      return;
    }
    if (path === "/_count") {
      req.resume();
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ count: counts.get(run) ?? 0 }));
      return;
    }
    req.resume();
    res.writeHead(404).end();
  });
  server.listen(0, "127.0.0.1");
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const { port } = server.address() as AddressInfo;

  return {
    info: { url: `http://127.0.0.1:${port}` },
    query(what, args) {
      const run = (args as { run: string }).run;
      if (what === "count") return counts.get(run) ?? 0;
      if (what === "latencies") return latencies.get(run) ?? [];
      if (what === "forget") {
        counts.delete(run);
        latencies.delete(run);
        return true;
      }
      throw new Error(`unknown query ${what}`);
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
});
