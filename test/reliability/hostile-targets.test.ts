import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { waitFor } from "../helpers/wait-for.js";
import { rssOf, sampleRss, scale } from "./harness.js";

/**
 * Targets that misbehave on purpose, many at once, against the real server with its memory
 * sampled from /proc: an endless body, a 2 GB body, a body trickled a byte at a time, connections
 * reset mid-response, malformed chunked encoding, thousands of headers. Every job must end (cut
 * at the result cap, timed out, or failed with a network error), its result must read back, and
 * the server's resident memory must stay bounded whatever the targets send.
 */
const EACH = scale(40, 12);
/** What the server may grow by, over its memory after start-up, with every hostile call at once. */
const RSS_GROWTH_BOUND = 200 * 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), "jobqueue-hostile-"));
let server: ServerProcess;
let hostile: net.Server;
let hostileUrl: string;
const sockets = new Set<net.Socket>();

/** A raw TCP server speaking just enough HTTP/1.1 to misbehave in each way, by path. */
function serveHostile(socket: net.Socket, path: string) {
  const alive = () => !socket.destroyed;
  switch (path) {
    case "/endless": {
      socket.write(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
      );
      const chunk = `10000\r\n${"x".repeat(0x10000)}\r\n`;
      const pump = () => {
        while (alive() && socket.write(chunk)) {}
        if (alive()) socket.once("drain", pump);
      };
      pump();
      return;
    }
    case "/2gb": {
      socket.write(
        "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 2147483648\r\n\r\n",
      );
      const block = Buffer.alloc(1 << 20, 7);
      let sent = 0;
      const pump = () => {
        while (alive() && sent < 2 ** 31 && socket.write(block)) sent += block.length;
        if (alive() && sent < 2 ** 31) socket.once("drain", pump);
      };
      pump();
      return;
    }
    case "/trickle": {
      socket.write("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 100000\r\n\r\n");
      const timer = setInterval(() => (alive() ? socket.write("x") : clearInterval(timer)), 50);
      socket.once("close", () => clearInterval(timer));
      return;
    }
    case "/reset":
      socket.write(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\nhalf",
      );
      setTimeout(() => socket.resetAndDestroy(), 20);
      return;
    case "/bad-chunks":
      socket.end(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nnot a chunk size\r\n0\r\n\r\n",
      );
      return;
    case "/headers": {
      let head = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n";
      for (let i = 0; i < 5_000; i++) head += `x-h${i}: ${"v".repeat(20)}\r\n`;
      socket.end(`${head}\r\nok`);
      return;
    }
    default:
      socket.end("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
  }
}

beforeAll(async () => {
  hostile = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let head = "";
    const onData = (data: Buffer) => {
      head += data.toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end === -1) return;
      socket.off("data", onData);
      socket.resume();
      const path = head.split(" ")[1]?.split("?")[0] ?? "/";
      serveHostile(socket, path);
    };
    socket.on("data", onData);
  });
  hostile.listen(0, "127.0.0.1");
  await once(hostile, "listening");
  hostileUrl = `http://127.0.0.1:${(hostile.address() as net.AddressInfo).port}`;
  server = await startServerProcess({
    JOBQUEUE_PORT: "0",
    JOBQUEUE_DB_URL: `sqlite:///${join(dir, "jobqueue.db")}`,
    JOBQUEUE_CONCURRENCY: "64",
    JOBQUEUE_POLL_INTERVAL: "0.1",
    JOBQUEUE_RESULT_MAX_BYTES: String(1 << 20),
  });
});

afterAll(async () => {
  server?.kill("SIGKILL");
  await server?.exited;
  for (const s of sockets) s.destroy();
  hostile?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("hostile targets", () => {
  it(`${EACH} of each kind at once end cleanly with the server's memory bounded`, async () => {
    // Warm up (first calls, JIT, the pool's buffers), then take the baseline.
    const warm = await server.rest.post("/jobs", { url: `${hostileUrl}/bad-chunks` });
    await waitFor(
      async () => (await server.rest.get(`/jobs/${warm.json.job_id}`)).json.status === "failed",
    );
    const baseline = rssOf(server.child.pid!);
    const rss = sampleRss(server.child.pid!);

    const kinds = ["endless", "2gb", "trickle", "reset", "bad-chunks", "headers"] as const;
    const jobs: { kind: (typeof kinds)[number]; id: string }[] = [];
    for (const kind of kinds) {
      const res = await server.rest.post("/jobs:batch", {
        jobs: Array.from({ length: EACH }, () => ({
          url: `${hostileUrl}/${kind}`,
          timeout_sec: 3,
          max_attempts: 1,
        })),
      });
      expect(res.status).toBe(200);
      for (const j of res.json.jobs) jobs.push({ kind, id: j.job_id });
    }
    await waitFor(
      async () => {
        const res = await server.rest.get("/jobs?status=queued&status=running&page_size=1");
        return res.status === 200 && res.json.jobs.length === 0;
      },
      { what: "every hostile job to end", timeoutMs: 120_000, intervalMs: 200 },
    );
    rss.stop();

    const outcomes = new Map<string, Set<string>>();
    for (const { kind, id } of jobs) {
      const job = (await server.rest.get(`/jobs/${id}`)).json;
      const result = await server.rest.get(`/jobs/${id}/result`);
      expect(result.status, `${kind} ${id}: the result reads back`).toBe(200);
      const seen = outcomes.get(kind) ?? new Set();
      seen.add(`${job.status}${result.json.truncated ? " truncated" : ""}`);
      outcomes.set(kind, seen);
    }
    const summary = Object.fromEntries([...outcomes].map(([k, v]) => [k, [...v].sort()]));
    console.info(
      `hostile targets: ${jobs.length} jobs; RSS baseline ${mib(baseline)}, max ${mib(rss.max)} (${rss.samples.length} samples); outcomes ${JSON.stringify(summary)}`,
    );
    // Cut at the result cap, not read to the end.
    expect(summary.endless).toEqual(["succeeded truncated"]);
    expect(summary["2gb"]).toEqual(["succeeded truncated"]);
    // A byte every 50 ms does not stretch an attempt past its timeout.
    expect(summary.trickle).toEqual(["failed"]);
    for (const kind of ["reset", "bad-chunks", "headers"])
      expect(summary[kind]).toEqual(["failed"]);
    expect(rss.max - baseline).toBeLessThan(RSS_GROWTH_BOUND);
    // The server is still itself.
    expect((await server.rest.get("/readyz")).status).toBe(200);
  });
});

function mib(bytes: number): string {
  return `${(bytes / 1_048_576).toFixed(0)} MiB`;
}
