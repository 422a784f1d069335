import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { type DescMessage, type MessageShape, toBinary, toJsonString } from "@bufbuild/protobuf";
import { createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import {
  CancelJobResponseSchema,
  GetJobResponseSchema,
  GetJobResultResponseSchema,
  JobQueueService,
  ListJobAttemptsResponseSchema,
  ListJobsResponseSchema,
  WatchJobResponseSchema,
} from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { keyId } from "../../src/secrets/secret-box.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred } from "../helpers/wait-for.js";

/**
 * Secret headers end to end: sent to the target as given, sealed in the database (no byte of the
 * value in the SQLite file or its WAL), masked as "***" on every read over every protocol, absent
 * from the logs; the generated key file and key rotation across restarts.
 */

let target: Target;
/** Every app a test started (several, across restarts); all are stopped after it. */
const apps: TestApp[] = [];
/** Data directories a test made itself (to restart on the same database); removed after it. */
const dirs: string[] = [];

beforeEach(async () => {
  target = await startTarget();
});

afterEach(async () => {
  for (const app of apps.splice(0)) await app.stop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  await target.close();
});

async function start(env: Record<string, string> = {}, logger?: pino.Logger): Promise<TestApp> {
  const app = await startTestApp(env, logger ? { logger } : {});
  apps.push(app);
  return app;
}

/** An env whose database lives in a directory the test owns, so a new app can reopen it. */
function ownDataDir(): { dir: string; dbPath: string; env: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), "jobqueue-secrets-"));
  dirs.push(dir);
  const dbPath = join(dir, "jobqueue.db");
  // Grace 0: a call held by the target is aborted at once on stop and its job put back.
  return {
    dir,
    dbPath,
    env: { JOBQUEUE_DB_URL: `sqlite:///${dbPath}`, JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "0" },
  };
}

/** A long random value that cannot appear anywhere by chance. */
const unique = (label: string) => `${label}-${randomBytes(24).toString("hex")}`;

/** A pino logger at trace level whose every line lands in `lines`. */
function captureLogs() {
  const lines: string[] = [];
  const logger = pino({ level: "trace" }, { write: (line: string) => lines.push(line) });
  return { logger, text: () => lines.join("") };
}

/** The sealed form of a job's secret headers, as the store keeps it. */
async function sealedOf(t: TestApp, jobId: string): Promise<string | null | undefined> {
  return (await t.app.store.jobGet({ id: jobId }))?.sealedHeaders;
}

/** A message as it crossed the wire: its binary encoding (latin1) and its canonical JSON. */
function wire<D extends DescMessage>(schema: D, message: MessageShape<D>): string {
  return `${Buffer.from(toBinary(schema, message)).toString("latin1")}\n${toJsonString(schema, message)}`;
}

/** A target path whose first `held` requests are never answered; later ones get 200. */
function holdFirst(path: string, held: number) {
  target.on(path, (_req, res, n) => {
    if (n > held) res.writeHead(200, { "content-type": "text/plain" }).end("ok");
  });
}

const MASKED = {
  Authorization: "***",
  Cookie: "***",
  "X-Api-Key": "***",
  "X-Signature": "***",
};
const SECRET_NAMES = ["Authorization", "Cookie", "X-Api-Key", "X-Signature"];

describe("secret headers", () => {
  it("reach the target, read as *** on every protocol, and never touch the database file or the logs", async () => {
    const secrets = {
      authorization: `Bearer ${unique("auth")}`,
      cookie: `session=${unique("cookie")}`,
      apiKey: unique("apikey"),
      signature: unique("signature"),
    };
    const secretValues = Object.values(secrets);
    const trace = unique("trace");
    const logs = captureLogs();
    const t = await start({}, logs.logger);

    // No JOBQUEUE_SECRET_KEY: a key was generated beside the database, private, with a warning.
    const keyPath = join(dirname(t.dbPath), "secret.key");
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    expect(logs.text()).toMatch(/generated a key into this file/);

    const release = deferred();
    target.on("/secret", async (_req, res) => {
      await release.promise;
      res.writeHead(200, { "content-type": "application/json" }).end('{"ok":true}');
    });
    const id = await t.enqueue({
      method: "POST",
      url: `${target.url}/secret`,
      headers: {
        Authorization: secrets.authorization,
        Cookie: secrets.cookie,
        "X-Api-Key": secrets.apiKey,
        "X-Signature": secrets.signature,
        "X-Trace": trace,
      },
      secret_headers: ["X-Signature"],
      body: { hello: "world" },
    });

    // The target gets every real value.
    const received = await target.request("/secret");
    expect(received.headers.authorization).toBe(secrets.authorization);
    expect(received.headers.cookie).toBe(secrets.cookie);
    expect(received.headers["x-api-key"]).toBe(secrets.apiKey);
    expect(received.headers["x-signature"]).toBe(secrets.signature);
    expect(received.headers["x-trace"]).toBe(trace);

    // Watchers over Connect (HTTP/2) and gRPC follow the job from running to its end.
    const watchOver = (transport: Transport) => {
      const first = deferred<JobStatus | undefined>();
      const all = (async () => {
        const out: { status: JobStatus | undefined; wire: string }[] = [];
        const client = createClient(JobQueueService, transport);
        for await (const res of client.watchJob({ jobId: id })) {
          expect(res.job?.headers).toEqual({ ...MASKED, "X-Trace": trace });
          out.push({ status: res.job?.status, wire: wire(WatchJobResponseSchema, res) });
          first.resolve(res.job?.status);
        }
        return out;
      })();
      return { first: first.promise, all };
    };
    const watches = [
      watchOver(createConnectTransport({ baseUrl: t.url, httpVersion: "2" })),
      watchOver(createGrpcTransport({ baseUrl: t.url })),
    ];
    for (const w of watches) expect(await w.first).toBe(JobStatus.RUNNING);

    // While the call is in flight, the database and its WAL hold no secret byte.
    const dbFiles = () =>
      [t.dbPath, `${t.dbPath}-wal`].filter(existsSync).map((f) => readFileSync(f));
    const assertNoSecretIn = (files: Buffer[]) => {
      const all = Buffer.concat(files);
      // The non-secret header is there in clear: the search does find what is stored.
      expect(all.includes(trace)).toBe(true);
      for (const value of [...secretValues, secrets.authorization.slice("Bearer ".length)]) {
        files.forEach((file, i) => {
          expect(file.includes(value), `database file ${i} holds ${value}`).toBe(false);
        });
      }
    };
    assertNoSecretIn(dbFiles());
    expect(existsSync(`${t.dbPath}-wal`)).toBe(true);
    expect(await sealedOf(t, id)).toMatch(
      new RegExp(`^v1\\.${keyId(Buffer.from(readFileSync(keyPath, "utf8").trim(), "base64"))}\\.`),
    );

    release.resolve();
    await t.waitForStatus(id, "succeeded");
    const watched = await Promise.all(watches.map((w) => w.all));
    for (const messages of watched) {
      expect(messages.at(-1)?.status).toBe(JobStatus.SUCCEEDED);
    }

    // A second job, canceled, so CancelJob's answer is checked too.
    const canceled = await t.enqueue({
      url: `${target.url}/never`,
      headers: { "x-api-key": secrets.apiKey, "x-signature": secrets.signature },
      secret_headers: ["X-SIGNATURE"],
      scheduled_at: new Date(Date.now() + 86_400_000).toISOString(),
    });

    // Every read, every protocol: the values are *** and the secret never appears.
    const responses: Record<string, string> = {
      watch: watched
        .flat()
        .map((m) => m.wire)
        .join("\n"),
    };

    const job = (await t.rest.get(`/jobs/${id}`)).json;
    expect(job.headers).toEqual({ ...MASKED, "X-Trace": trace });
    expect(job.secret_headers).toEqual(SECRET_NAMES);
    responses.restGet = JSON.stringify(job);
    const list = (await t.rest.get("/jobs")).json;
    expect(list.jobs.find((j: any) => j.job_id === id).headers).toEqual(job.headers);
    responses.restList = JSON.stringify(list);
    responses.restResult = JSON.stringify((await t.rest.get(`/jobs/${id}/result`)).json);
    responses.restAttempts = JSON.stringify((await t.rest.get(`/jobs/${id}/attempts`)).json);
    responses.restAudit = JSON.stringify((await t.rest.get("/audit")).json);

    const connectJson = async (method: string, body: unknown) => {
      const res = await fetch(`${t.url}/jobqueue.v1.JobQueueService/${method}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(200);
      return res.text();
    };
    responses.connectGet = await connectJson("GetJob", { jobId: id });
    expect(JSON.parse(responses.connectGet).job.headers).toEqual(job.headers);
    expect(JSON.parse(responses.connectGet).job.secretHeaders).toEqual(SECRET_NAMES);
    responses.connectList = await connectJson("ListJobs", {});
    responses.connectResult = await connectJson("GetJobResult", { jobId: id });
    responses.connectAttempts = await connectJson("ListJobAttempts", { jobId: id });

    const transports = {
      grpc: createGrpcTransport({ baseUrl: t.url }),
      grpcWeb: createGrpcWebTransport({ baseUrl: t.url, httpVersion: "1.1" }),
    };
    for (const [name, transport] of Object.entries(transports)) {
      const client = createClient(JobQueueService, transport);
      const got = await client.getJob({ jobId: id });
      expect(got.job?.headers).toEqual(job.headers);
      expect(got.job?.secretHeaders).toEqual(SECRET_NAMES);
      const listed = await client.listJobs({});
      expect(listed.jobs.find((j) => j.jobId === id)?.headers).toEqual(job.headers);
      responses[`${name}Get`] = wire(GetJobResponseSchema, got);
      responses[`${name}List`] = wire(ListJobsResponseSchema, listed);
      responses[`${name}Result`] = wire(
        GetJobResultResponseSchema,
        await client.getJobResult({ jobId: id }),
      );
      responses[`${name}Attempts`] = wire(
        ListJobAttemptsResponseSchema,
        await client.listJobAttempts({ jobId: id }),
      );
    }
    const cancel = await createClient(JobQueueService, transports.grpc).cancelJob({
      jobId: canceled,
    });
    expect(cancel.job?.headers).toEqual({ "x-api-key": "***", "x-signature": "***" });
    responses.grpcCancel = wire(CancelJobResponseSchema, cancel);

    for (const [name, text] of Object.entries(responses)) {
      for (const value of secretValues) expect(text, `the ${name} response`).not.toContain(value);
    }

    // The logs (trace level) saw the job, and none of its secrets.
    expect(logs.text()).toContain(id);
    for (const value of secretValues) expect(logs.text(), "the logs").not.toContain(value);

    // Closed: the WAL is checkpointed into the main file, which holds no secret either.
    await t.app.stop();
    expect(existsSync(`${t.dbPath}-wal`)).toBe(false);
    assertNoSecretIn([readFileSync(t.dbPath)]);
    for (const value of secretValues) expect(logs.text(), "the logs").not.toContain(value);
  });

  it("reuses the generated key file on restart: a job stored before it still sends its secret", async () => {
    const { dir, env } = ownDataDir();
    const secret = `Bearer ${unique("auth")}`;
    const keyPath = join(dir, "secret.key");
    holdFirst("/restart", 1);
    const first = await start(env);
    const key = readFileSync(keyPath, "utf8");

    const id = await first.enqueue({
      url: `${target.url}/restart`,
      headers: { Authorization: secret },
    });
    expect((await target.request("/restart", 1)).headers.authorization).toBe(secret);
    // Stopping aborts the held call and puts the job back, its attempt refunded.
    await first.app.stop();

    const second = await start(env);
    expect(readFileSync(keyPath, "utf8")).toBe(key);
    expect(statSync(keyPath).mode & 0o777).toBe(0o600);
    expect((await target.request("/restart", 2)).headers.authorization).toBe(secret);
    const job = await second.waitForStatus(id, "succeeded", "failed");
    expect(job).toMatchObject({ status: "succeeded", attempt: 1 });
  });

  it("rotates keys: B,A opens A's secrets and seals with B; B alone fails A's job as secret_unreadable", async () => {
    const { dir, env } = ownDataDir();
    const keyA = randomBytes(32);
    const keyB = randomBytes(32);
    const oldSecret = unique("old");
    const newSecret = unique("new");
    // The old job's first two calls hang until their app stops, so it outlives two restarts.
    holdFirst("/rotate", 2);

    const withA = await start({ ...env, JOBQUEUE_SECRET_KEY: keyA.toString("hex") });
    expect(existsSync(join(dir, "secret.key"))).toBe(false);
    const oldJob = await withA.enqueue({
      url: `${target.url}/rotate`,
      headers: { "X-Api-Key": oldSecret },
      max_attempts: 3,
    });
    expect((await target.request("/rotate", 1)).headers["x-api-key"]).toBe(oldSecret);
    expect(await sealedOf(withA, oldJob)).toMatch(new RegExp(`^v1\\.${keyId(keyA)}\\.`));
    await withA.app.stop();

    // B first, A after it: the old job's secret still opens; new jobs are sealed with B.
    const withBA = await start({
      ...env,
      JOBQUEUE_SECRET_KEY: `${keyB.toString("hex")},${keyA.toString("base64")}`,
    });
    expect((await target.request("/rotate", 2)).headers["x-api-key"]).toBe(oldSecret);
    const newJob = await withBA.enqueue({
      url: `${target.url}/fresh`,
      headers: { "X-Api-Key": newSecret },
    });
    expect((await target.request("/fresh")).headers["x-api-key"]).toBe(newSecret);
    await withBA.waitForStatus(newJob, "succeeded");
    expect(await sealedOf(withBA, newJob)).toMatch(new RegExp(`^v1\\.${keyId(keyB)}\\.`));
    // Rotation does not re-seal stored jobs: the old one still names A.
    expect(await sealedOf(withBA, oldJob)).toMatch(new RegExp(`^v1\\.${keyId(keyA)}\\.`));
    await withBA.app.stop();

    // B alone: the old job cannot be opened; it fails at once, clearly, without calling or retrying.
    const withB = await start({ ...env, JOBQUEUE_SECRET_KEY: keyB.toString("hex") });
    const failed = await withB.waitForStatus(oldJob, "succeeded", "failed");
    expect(failed).toMatchObject({ status: "failed", attempt: 1, max_attempts: 3 });
    expect(failed.last_error).toContain(`key ${keyId(keyA)}`);
    expect(failed.last_error).toMatch(/cannot open the job's secret headers.*not configured/);
    const attempts = (await withB.rest.get(`/jobs/${oldJob}/attempts`)).json.attempts;
    expect(attempts.map((a: any) => [a.attempt, a.outcome, a.error_code])).toEqual([
      [1, "interrupted", "interrupted"],
      [1, "interrupted", "interrupted"],
      [1, "failed", "secret_unreadable"],
    ]);
    expect(attempts[2].retryable).toBe(false);
    expect(attempts[2].error).toBe(failed.last_error);
    expect((await withB.rest.get(`/jobs/${oldJob}/result`)).json).toMatchObject({
      status: "failed",
      response_status: null,
      error: failed.last_error,
    });
    expect(target.received("/rotate")).toHaveLength(2);
    // The job sealed with B is still readable by its key.
    expect((await withB.rest.get(`/jobs/${newJob}`)).json.headers).toEqual({ "X-Api-Key": "***" });
  });
});
