import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Progress } from "../../src/job/events.js";
import type { Job } from "../../src/job/types.js";
import { createHttpDispatcher, type HttpDispatcher } from "../../src/worker/dispatcher.js";
import { createOutboundPolicy } from "../../src/worker/outbound-policy.js";
import { newJob } from "../store/conformance/harness.js";

/**
 * The dispatcher against a real HTTP server on 127.0.0.1: the answer collected from undici's
 * handler calls, the cap, redirects whose bodies are not read, progress, aborts and timeouts.
 */
describe("http dispatcher", () => {
  const CAP = 1024;
  let server: http.Server;
  let base: string;
  let dispatcher: HttpDispatcher;
  /** Connections the server saw closed, by the path of their last request. */
  const closed: string[] = [];
  /** Requests that never get an answer, ended after the tests. */
  const hanging: http.ServerResponse[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const path = req.url ?? "/";
      req.socket.once("close", () => closed.push(path));
      if (path === "/ok") {
        res.writeHead(200, { "content-type": "application/json", "x-a": ["1", "2"] });
        res.end('{"ok":true}');
      } else if (path === "/big") {
        // Far more than the cap, in chunks; the client stops reading and closes.
        res.writeHead(200, { "content-type": "application/octet-stream" });
        const chunk = Buffer.alloc(16 * 1024, 0x61);
        const write = () => {
          while (res.write(chunk)) if (res.destroyed) return;
        };
        res.on("drain", write);
        write();
      } else if (path === "/redirect-endless") {
        // A redirect whose body never ends: following it must not wait for that body.
        res.writeHead(302, { location: "/ok" });
        res.write("moved ");
        const timer = setInterval(() => res.write("and moving "), 5);
        res.on("close", () => clearInterval(timer));
      } else if (path === "/hang") {
        hanging.push(res);
      } else {
        res.writeHead(404).end();
      }
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    dispatcher = createHttpDispatcher({
      resultMaxBytes: CAP,
      userAgent: "jobqueue-test",
      policy: createOutboundPolicy({ allowed: ["127.0.0.1"], denied: [] }),
    });
  });

  afterAll(async () => {
    for (const res of hanging) res.end();
    await dispatcher.close();
    server.closeAllConnections();
    server.close();
  });

  const job = (path: string, over: Partial<Job> = {}) =>
    ({ ...newJob({ method: "GET", url: `${base}${path}` }), ...over }) as Job;

  it("collects the status, headers and body of an answer, and tells its progress", async () => {
    const progress: Progress[] = [];
    const result = await dispatcher.call(job("/ok"), {}, new AbortController(), (p) =>
      progress.push(p),
    );
    expect(result).toMatchObject({
      kind: "response",
      status: 200,
      truncated: false,
      headers: { "content-type": "application/json", "x-a": "1, 2" },
    });
    expect(Buffer.from((result as { body: Uint8Array }).body).toString()).toBe('{"ok":true}');
    expect(progress).toEqual([
      { phase: "connected" },
      { phase: "headers", status: 200 },
      { phase: "body", status: 200, bytes: 11 },
    ]);
  });

  it("keeps the first bytes up to the cap, reads no further and closes the connection", async () => {
    const result = await dispatcher.call(job("/big"), {}, new AbortController());
    expect(result).toMatchObject({ kind: "response", status: 200, truncated: true });
    const body = (result as { body: Uint8Array }).body;
    expect(body.byteLength).toBe(CAP);
    expect(Buffer.from(body).every((b) => b === 0x61)).toBe(true);
    await expect.poll(() => closed.includes("/big")).toBe(true);
    // The next call gets a connection of its own and its whole answer.
    expect(await dispatcher.call(job("/ok"), {}, new AbortController())).toMatchObject({
      kind: "response",
      status: 200,
      truncated: false,
    });
  });

  it("follows a redirect without reading its body, which here never ends", async () => {
    const result = await dispatcher.call(
      job("/redirect-endless", { followRedirects: true }),
      {},
      new AbortController(),
    );
    expect(result).toMatchObject({ kind: "response", status: 200 });
    expect(Buffer.from((result as { body: Uint8Array }).body).toString()).toBe('{"ok":true}');
  });

  it("answers a redirect it does not follow as it is, body capped", async () => {
    const result = await dispatcher.call(job("/redirect-endless"), {}, new AbortController());
    expect(result).toMatchObject({ kind: "response", status: 302, truncated: true });
    expect((result as { headers: Record<string, string> }).headers.location).toBe("/ok");
  });

  it("ends a call aborted while it waits for the answer, as aborted", async () => {
    const abort = new AbortController();
    const call = dispatcher.call(job("/hang"), {}, abort);
    await expect.poll(() => hanging.length).toBeGreaterThan(0);
    abort.abort();
    expect(await call).toMatchObject({ kind: "aborted" });
  });

  it("ends a call past the job's timeout as a timeout", async () => {
    const result = await dispatcher.call(
      job("/hang", { timeoutMs: 200 }),
      {},
      new AbortController(),
    );
    expect(result).toMatchObject({ kind: "error", code: "timeout" });
  });

  it("ends a call to a closed port as a network error", async () => {
    const closedPort = http.createServer();
    closedPort.listen(0, "127.0.0.1");
    await once(closedPort, "listening");
    const port = (closedPort.address() as AddressInfo).port;
    closedPort.close();
    await once(closedPort, "close");
    const result = await dispatcher.call(
      { ...newJob({ method: "GET", url: `http://127.0.0.1:${port}/` }) } as Job,
      {},
      new AbortController(),
    );
    expect(result).toMatchObject({ kind: "error", code: "network" });
    expect((result as { message: string }).message).toMatch(/ECONNREFUSED/);
  });
});
