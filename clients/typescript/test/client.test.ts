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

describe.each(["connect", "grpc", "grpc-web"] as Protocol[])("over %s", (protocol) => {
  let client: JobQueueClient;
  beforeAll(() => {
    client = createJobQueueClient({ baseUrl: app.url, apiKey: alice.key, protocol });
  });

  it("submits a JSON body as a plain value, waits for the job and reads its result as plain JSON", async () => {
    const tag = `ts-${protocol}`;
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
      url: `${target.url}/bytes-${protocol}`,
      method: "PUT",
      body: bytes,
    });
    const seen: string[] = [];
    for await (const job of client.watch(jobId)) seen.push(job.status);
    expect(seen.at(-1)).toBe("succeeded");
    const received = target.received(`/bytes-${protocol}`);
    expect(received).toHaveLength(1);
    expect(received[0]!.method).toBe("PUT");
    expect([...received[0]!.body]).toEqual([...bytes]);
    expect((await client.get(jobId)).body).toEqual(bytes);
  });

  it("enqueues several jobs at once and cancels one", async () => {
    target.on(`/held-${protocol}`, () => {
      // never answered: the job stays running until canceled
    });
    const [held, other] = await client.enqueueMany([
      { url: `${target.url}/held-${protocol}` },
      { url: `${target.url}/other-${protocol}` },
    ]);
    await target.request(`/held-${protocol}`);
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

    const { jobId } = await client.enqueue({ url: `${target.url}/done-${protocol}` });
    await client.waitUntilDone(jobId);
    const late = await expectError(client.cancel(jobId));
    expect(late.code).toBe("failed_precondition");

    const stranger = createJobQueueClient({ baseUrl: app.url, apiKey: "jq_wrong", protocol });
    expect((await expectError(stranger.get(jobId))).code).toBe("unauthenticated");
    const anonymous = createJobQueueClient({ baseUrl: app.url, protocol });
    expect((await expectError(anonymous.list())).code).toBe("unauthenticated");
  });
});
