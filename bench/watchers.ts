/**
 * What watchers of the event stream cost one server: the memory of idle watchers, and how long an
 * event takes to reach all of them, per transport (Server-Sent Events, WebSocket, gRPC).
 *
 *   npm run bench:watchers -- [--watchers 2000] [--events 50]
 *
 * Starts the server as a user does on a temporary SQLite file, then per transport opens
 * `--watchers` streams on `/events` (or WatchJobs), waits until the server counts them
 * (jobqueue_event_stream_watchers), reads the server's memory after a full garbage collection
 * (over the inspector protocol), enqueues `--events` jobs in
 * one batch and times until every watcher has every one, then closes them and waits until the
 * server counts none. The watchers run in this process: the delivery time includes their cost.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Agent, request } from "undici";
import WebSocket from "ws";
import { JobQueueService } from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { startServer } from "./processes.js";

const { values: args } = parseArgs({
  options: {
    watchers: { type: "string", default: "2000" },
    events: { type: "string", default: "50" },
  },
});
const N = Number(args.watchers);
const EVENTS = Number(args.events);

interface Watcher {
  /** Resolves once this watcher has seen `count` job events. */
  seen(count: number): Promise<void>;
  close(): void;
}

/** Counts the job events a stream delivers and resolves waits on the count. */
function counter() {
  let n = 0;
  const waits: { count: number; resolve: () => void }[] = [];
  return {
    add() {
      n++;
      for (const w of waits.filter((w) => w.count <= n)) {
        waits.splice(waits.indexOf(w), 1);
        w.resolve();
      }
    },
    seen(count: number) {
      if (n >= count) return Promise.resolve();
      return new Promise<void>((resolve) => waits.push({ count, resolve }));
    },
  };
}

async function sseWatcher(url: string, agent: Agent): Promise<Watcher> {
  const ac = new AbortController();
  const res = await request(`${url}/events`, { dispatcher: agent, signal: ac.signal });
  const c = counter();
  let buffer = "";
  res.body.setEncoding("utf8");
  res.body.on("data", (chunk: string) => {
    buffer += chunk;
    let end = buffer.indexOf("\n\n");
    while (end !== -1) {
      if (buffer.slice(0, end).includes('"event":{')) c.add();
      buffer = buffer.slice(end + 2);
      end = buffer.indexOf("\n\n");
    }
  });
  res.body.on("error", () => {});
  return { seen: c.seen, close: () => ac.abort() };
}

function wsWatcher(url: string): Promise<Watcher> {
  const ws = new WebSocket(`${url.replace("http", "ws")}/events`);
  const c = counter();
  ws.on("message", (data) => {
    if (String(data).includes('"event":{')) c.add();
  });
  ws.on("error", () => {});
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve({ seen: c.seen, close: () => ws.close() }));
    ws.once("error", reject);
  });
}

async function grpcWatcher(client: ReturnType<typeof grpcClient>): Promise<Watcher> {
  const ac = new AbortController();
  const c = counter();
  const stream = client.watchJobs({}, { signal: ac.signal, timeoutMs: 0 })[Symbol.asyncIterator]();
  await stream.next(); // the first heartbeat: the server holds the watcher
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await stream.next();
        if (done) return;
        if (value.kind.case === "event") c.add();
      }
    } catch {
      // closed
    }
  })();
  return { seen: c.seen, close: () => ac.abort() };
}

function grpcClient(url: string) {
  return createClient(JobQueueService, createGrpcTransport({ baseUrl: url }));
}

async function metric(url: string, name: string): Promise<number> {
  const res = await request(`${url}/metrics`);
  const text = await res.body.text();
  return Number(new RegExp(`^${name} (\\d+)`, "m").exec(text)?.[1] ?? Number.NaN);
}

const watcherCount = (url: string) => metric(url, "jobqueue_event_stream_watchers");

/**
 * The server's memory after a full garbage collection, asked for over the inspector protocol (the
 * server runs with --inspect on a port of its own): without it, a collection that happens to run
 * between two readings swamps what a watcher holds.
 */
async function inspector(port: number) {
  const list = (await (await request(`http://127.0.0.1:${port}/json/list`)).body.json()) as {
    webSocketDebuggerUrl: string;
  }[];
  const ws = new WebSocket(list[0]!.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  let id = 0;
  const send = (method: string, params: object = {}) =>
    new Promise<any>((resolve) => {
      const mine = ++id;
      const onMessage = (data: WebSocket.RawData) => {
        const msg = JSON.parse(String(data));
        if (msg.id !== mine) return;
        ws.off("message", onMessage);
        resolve(msg.result);
      };
      ws.on("message", onMessage);
      ws.send(JSON.stringify({ id: mine, method, params }));
    });
  return {
    /** Heap in use and resident set size, in bytes, after a full collection. */
    async memory(): Promise<{ heap: number; rss: number }> {
      await send("HeapProfiler.collectGarbage");
      const r = await send("Runtime.evaluate", {
        expression: "JSON.stringify(process.memoryUsage())",
        returnByValue: true,
      });
      const m = JSON.parse(r.result.value) as { heapUsed: number; rss: number };
      return { heap: m.heapUsed, rss: m.rss };
    },
    close: () => ws.close(),
  };
}

async function until(what: string, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 120_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const dir = mkdtempSync(join(tmpdir(), "jobqueue-bench-watchers-"));
const inspectPort = 9229 + Math.floor(Math.random() * 500);
const server = await startServer({
  dbPath: join(dir, "jobqueue.db"),
  concurrency: 16,
  nodeArgs: [`--inspect=127.0.0.1:${inspectPort}`],
  // The jobs are scheduled a day ahead: each makes one event, none runs.
  env: { JOBQUEUE_METRICS: "open" },
});
const rows: string[] = [];
const memory = await inspector(inspectPort);
try {
  // A first pass warms the server up (code compiled, heap grown); the second is reported.
  const passes = ["sse", "websocket", "grpc", "sse", "websocket", "grpc"] as const;
  for (const [pass, transport] of passes.entries()) {
    const reported = pass >= passes.length / 2;
    const agent = new Agent({ connections: null, pipelining: 0 });
    const client = grpcClient(server.url);
    const before = await memory.memory();
    const watchers: Watcher[] = [];
    for (let i = 0; i < N; i++) {
      watchers.push(
        transport === "sse"
          ? await sseWatcher(server.url, agent)
          : transport === "websocket"
            ? await wsWatcher(server.url)
            : await grpcWatcher(client),
      );
      if (i % 100 === 99) process.stderr.write(`\r${transport}: ${i + 1}/${N} watchers open   `);
    }
    await until(
      "the server to count the watchers",
      async () => (await watcherCount(server.url)) === N,
    );
    const held = await memory.memory();
    const scheduled = new Date(Date.now() + 86_400_000).toISOString();
    const started = performance.now();
    const res = await request(`${server.url}/jobs:batch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        jobs: Array.from({ length: EVENTS }, () => ({
          url: "http://127.0.0.1:9/none",
          scheduled_at: scheduled,
        })),
      }),
    });
    if (res.statusCode !== 200)
      throw new Error(`enqueue: ${res.statusCode} ${await res.body.text()}`);
    await res.body.dump();
    await Promise.all(watchers.map((w) => w.seen(EVENTS)));
    const delivered = performance.now() - started;
    for (const w of watchers) w.close();
    await until(
      "the server to let the watchers go",
      async () => (await watcherCount(server.url)) === 0,
    );
    await agent.close();
    process.stderr.write("\r\x1b[K");
    const kb = (bytes: number) => `${(bytes / N / 1024).toFixed(1)} KB`;
    if (reported) {
      rows.push(
        `| ${transport} | ${N.toLocaleString("en")} | ${kb(held.rss - before.rss)} | ${kb(held.heap - before.heap)} | ${delivered.toFixed(0)} ms |`,
      );
    }
    console.error(`${transport}: ${reported ? "measured" : "warmed up"}`);
  }
} finally {
  memory.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
console.log(
  [
    `Event-stream watchers on one server (${new Date().toISOString()}, ${EVENTS} events each):`,
    "",
    "| transport | idle watchers | server RSS per watcher | JS heap per watcher | every watcher has every event |",
    "| --- | ---: | ---: | ---: | ---: |",
    ...rows,
  ].join("\n"),
);
