import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../../src/auth/api-keys.js";
import { startTarget, type Target } from "../../../test/helpers/target.js";
import { startTestApp, type TestApp } from "../../../test/helpers/test-app.js";
import {
  createJobQueueClient,
  isJobQueueError,
  type JobQueueClient,
  JobQueueError,
  type Protocol,
} from "../src/index.js";

// The client against a real server (its own SQLite file, API keys on) and a real target, over
// each protocol it offers.

let target: Target;
let app: TestApp;
const alice = generateApiKey("alice", "submitter");

beforeAll(async () => {
  target = await startTarget();
  target.on("/echo", (req, res) => {
    res
      .writeHead(200, { "content-type": "application/json" })
      .end(JSON.stringify({ method: req.method, got: JSON.parse(req.body.toString() || "null") }));
  });
  app = await startTestApp({ JOBQUEUE_API_KEYS: alice.line });
});

afterAll(async () => {
  await app?.stop();
  await target?.close();
});

const expectError = async (promise: Promise<unknown>): Promise<JobQueueError> => {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(JobQueueError);
    return err as JobQueueError;
  }
  throw new Error("expected the call to fail");
};

// Connect over HTTP/1.1 (the default) makes its unary calls as plain requests; over HTTP/2 every
// call goes through connect-node's transport.
describe.each([
  { label: "connect", protocol: "connect" },
  { label: "connect-h2", protocol: "connect", httpVersion: "2" },
  { label: "grpc", protocol: "grpc" },
  { label: "grpc-web", protocol: "grpc-web" },
] as { label: string; protocol: Protocol; httpVersion?: "2" }[])(
  "over $label",
  ({ label, protocol, httpVersion }) => {
    let client: JobQueueClient;
    beforeAll(() => {
      client = createJobQueueClient({ baseUrl: app.url, apiKey: alice.key, protocol, httpVersion });
    });

    it("submits a JSON body as a plain value, waits for the job and reads its result as plain JSON", async () => {
      const tag = `ts-${label}`;
      const { jobId, status } = await client.enqueue({
        url: `${target.url}/echo`,
        body: { hello: ["world", 1, true, null], nested: { a: 1.5 } },
        headers: { "X-Trace": "t1", Authorization: "Bearer downstream" },
        tags: [tag],
        maxAttempts: 2,
        backoffStrategy: "linear",
      });
      expect(status).toBe("queued");
      expect(jobId).toMatch(/^j_[0-9A-Z]{26}$/);

      const done = await client.waitUntilDone(jobId);
      expect(done).toMatchObject({
        jobId,
        status: "succeeded",
        method: "POST",
        attempt: 1,
        maxAttempts: 2,
        backoffStrategy: "linear",
        body: { hello: ["world", 1, true, null], nested: { a: 1.5 } },
        headers: { "X-Trace": "t1", Authorization: "***" },
        owner: "alice",
        ttlSeconds: null,
      });
      expect(done.finishedAt).toBeInstanceOf(Date);

      const result = await client.result(jobId);
      expect(result).toMatchObject({
        status: "succeeded",
        responseStatus: 200,
        responseBodyEncoding: "json",
        responseBody: {
          method: "POST",
          got: { hello: ["world", 1, true, null], nested: { a: 1.5 } },
        },
        truncated: false,
        error: null,
      });
      const attempts = await client.attempts(jobId);
      expect(attempts).toMatchObject([{ attempt: 1, outcome: "succeeded", responseStatus: 200 }]);

      const { jobs, nextPageToken } = await client.list({ tags: [tag], status: ["succeeded"] });
      expect(jobs.map((j) => j.jobId)).toEqual([jobId]);
      expect(nextPageToken).toBeNull();
      expect(await client.get(jobId)).toEqual(done);
    });

    it("sends a bytes body as it is, and watches the job to its end", async () => {
      const bytes = new Uint8Array([0, 1, 2, 250, 255]);
      const { jobId } = await client.enqueue({
        url: `${target.url}/bytes-${label}`,
        method: "PUT",
        body: bytes,
      });
      const seen: string[] = [];
      for await (const job of client.watch(jobId)) seen.push(job.status);
      expect(seen.at(-1)).toBe("succeeded");
      const received = target.received(`/bytes-${label}`);
      expect(received).toHaveLength(1);
      expect(received[0]!.method).toBe("PUT");
      expect([...received[0]!.body]).toEqual([...bytes]);
      expect((await client.get(jobId)).body).toEqual(bytes);
    });

    it("enqueues several jobs at once and cancels one", async () => {
      target.on(`/held-${label}`, () => {
        // never answered: the job stays running until canceled
      });
      const [held, other] = await client.enqueueMany([
        { url: `${target.url}/held-${label}` },
        { url: `${target.url}/other-${label}` },
      ]);
      await target.request(`/held-${label}`);
      const canceled = await client.cancel(held!.jobId);
      expect(canceled.status).toBe("canceled");
      expect((await client.waitUntilDone(other!.jobId)).status).toBe("succeeded");
    });

    it("throws typed errors: code, message and the field at fault", async () => {
      const bad = await expectError(client.enqueue({ url: "ftp://example.com/" }));
      expect(bad).toMatchObject({ code: "invalid_argument", field: "url" });
      expect(bad.message).toMatch(/^url: scheme "ftp" is not allowed/);

      const batch = await expectError(
        client.enqueueMany([{ url: `${target.url}/a` }, { url: "nope" }]),
      );
      expect(batch).toMatchObject({ code: "invalid_argument", field: "jobs[1].url" });

      const missing = await expectError(client.get(`j_${"0".repeat(26)}`));
      expect(missing.code).toBe("not_found");
      expect(isJobQueueError(missing, "not_found")).toBe(true);

      const { jobId } = await client.enqueue({ url: `${target.url}/done-${label}` });
      await client.waitUntilDone(jobId);
      const late = await expectError(client.cancel(jobId));
      expect(late.code).toBe("failed_precondition");

      const stranger = createJobQueueClient({
        baseUrl: app.url,
        apiKey: "jq_wrong",
        protocol,
        httpVersion,
      });
      expect((await expectError(stranger.get(jobId))).code).toBe("unauthenticated");
      const anonymous = createJobQueueClient({ baseUrl: app.url, protocol, httpVersion });
      expect((await expectError(anonymous.list())).code).toBe("unauthenticated");
    });
  },
);

// What the plain-request path (Connect over HTTP/1.1) does when the server misbehaves: each case
// is a real HTTP server on 127.0.0.1 answering one way.
describe("Connect over HTTP/1.1 against a server that misbehaves", () => {
  let server: Server;
  let url: string;
  let answer: (req: IncomingMessage, res: ServerResponse) => void;
  const seen: IncomingMessage[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push(req);
      req.resume();
      req.on("end", () => answer(req, res));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("sends the key, the binary content type and the deadline; a late answer is deadline_exceeded", async () => {
    answer = () => {}; // never answers
    const client = createJobQueueClient({ baseUrl: url, apiKey: "jq_k", timeoutMs: 150 });
    const err = await expectError(client.get("j_x"));
    expect(err.code).toBe("deadline_exceeded");
    const req = seen.at(-1)!;
    expect(req.url).toBe("/jobqueue.v1.JobQueueService/GetJob");
    expect(req.headers).toMatchObject({
      authorization: "Bearer jq_k",
      "content-type": "application/proto",
      "connect-protocol-version": "1",
      "connect-timeout-ms": "150",
    });
  });

  it("an aborted signal cancels the call in flight, and one aborted before never sends it", async () => {
    // The server says when the call has reached it (and never answers it).
    const arrived = new Promise<void>((resolve) => {
      answer = () => resolve();
    });
    const client = createJobQueueClient({ baseUrl: url });
    const ac = new AbortController();
    const pending = client.get("j_x", { signal: ac.signal });
    await arrived;
    const before = seen.length;
    ac.abort();
    expect((await expectError(pending)).code).toBe("canceled");
    expect((await expectError(client.get("j_x", { signal: ac.signal }))).code).toBe("canceled");
    expect(seen.length).toBe(before);
  });

  it("a proxy's HTML error page is an error from its HTTP status, and a 200 that is not protobuf is internal", async () => {
    const client = createJobQueueClient({ baseUrl: url });
    answer = (_req, res) =>
      res.writeHead(502, { "content-type": "text/html" }).end("<h1>Bad Gateway</h1>");
    expect(await expectError(client.get("j_x"))).toMatchObject({
      code: "unavailable",
      message: "HTTP 502",
    });
    answer = (_req, res) => res.writeHead(200, { "content-type": "text/plain" }).end("hello");
    expect((await expectError(client.get("j_x"))).code).toBe("internal");
    answer = (_req, res) =>
      res.writeHead(200, { "content-type": "application/proto" }).end(Buffer.from([0x0a, 0xff]));
    const garbled = await expectError(client.get("j_x"));
    expect(garbled.code).toBe("internal");
    expect(garbled.message).toMatch(/does not parse/);
    answer = (_req, res) =>
      res
        .writeHead(404, { "content-type": "application/json" })
        .end(JSON.stringify({ code: "not_found", message: "no job j_x" }));
    expect(await expectError(client.get("j_x"))).toMatchObject({
      code: "not_found",
      message: "no job j_x",
    });
  });

  it("a server that is not there is unavailable, naming why", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const client = createJobQueueClient({ baseUrl: `http://127.0.0.1:${port}` });
    const err = await expectError(client.get("j_x"));
    expect(err.code).toBe("unavailable");
    expect(err.message).toMatch(/ECONNREFUSED/);
  });
});
