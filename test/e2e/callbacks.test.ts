import { randomBytes } from "node:crypto";
import { lookup } from "node:dns/promises";
import { existsSync, readFileSync } from "node:fs";
import type { JsonObject } from "@bufbuild/protobuf";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { generateSigningSecret } from "../../src/job/signing.js";
import { bearer, type Clients, createClients, type Protocol } from "../helpers/clients.js";
import { startTarget, type Target } from "../helpers/target.js";
import { STORE_KINDS, startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";
import { verifyWebhook } from "../helpers/webhooks.js";

/**
 * Callbacks and signed calls end to end, on SQLite and PostgreSQL, over REST, Connect and gRPC:
 * a job's outcome POSTed to its callback_url by a delivery job (the JSON of GET
 * /jobs/{job_id}/result), retried on a 500, refused by the outbound policy, canceled like any job;
 * Standard Webhooks signatures verified by the `standardwebhooks` library, through a rotation; a
 * job's own signed call; secrets never on a read or in the logs.
 */

const PROTOCOLS: Protocol[] = ["rest", "connect", "grpc"];

/** The principal's two active secrets (a rotation under way), and a job's own. */
const OLD = generateSigningSecret(randomBytes);
const NEW = generateSigningSecret(randomBytes);
const OWN = generateSigningSecret(randomBytes);
const alice = generateApiKey("alice", "submitter");
const bob = generateApiKey("bob", "submitter");
const admin = generateApiKey("root", "admin");

/** A name the outbound policy resolves to a private address (the only fake: DNS). */
const PRIVATE_HOST = "hooks.internal.test";
const resolve = async (hostname: string) =>
  hostname === PRIVATE_HOST
    ? [{ address: "10.0.0.7", family: 4 }]
    : (await lookup(hostname, { all: true })).map((a) => ({
        address: a.address,
        family: a.family,
      }));

describe.each(STORE_KINDS)("callbacks and signing (%s)", (store) => {
  let t: TestApp;
  let target: Target;
  let clients: Clients;
  const logLines: string[] = [];

  beforeAll(async () => {
    target = await startTarget();
    t = await startTestApp(
      {
        JOBQUEUE_API_KEYS: [
          `${alice.line} ${OLD} ${NEW}`,
          bob.line,
          `${admin.line} ${generateSigningSecret(randomBytes)}`,
        ].join(","),
        JOBQUEUE_DEFAULT_BACKOFF_SECONDS: "0.01",
        JOBQUEUE_LOG_LEVEL: "trace",
      },
      {
        resolve,
        logger: pino({ level: "trace" }, { write: (line: string) => logLines.push(line) }),
      },
      { store },
    );
    clients = createClients(t.url);
  });

  afterAll(async () => {
    clients?.close();
    await t?.stop();
    await target?.close();
  });

  /** REST with alice's key (or another's). */
  async function rest(path: string, init: { method?: string; body?: unknown; key?: string } = {}) {
    const res = await fetch(t.url + path, {
      method: init.method ?? (init.body === undefined ? "GET" : "POST"),
      headers: {
        ...bearer(init.key ?? alice.key),
        ...(init.body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    return { status: res.status, json: (await res.json()) as any };
  }

  async function enqueue(protocol: Protocol, job: JsonObject, key = alice.key) {
    const res = await clients.call(protocol, "EnqueueJob", job, bearer(key));
    expect(res.ok, JSON.stringify(res.body ?? res.message)).toBe(true);
    return res.body.job_id as string;
  }

  /** A job, read by the admin (who sees every principal's). */
  async function jobOf(id: string) {
    return (await rest(`/jobs/${id}`, { key: admin.key })).json;
  }

  async function waitEnded(id: string) {
    return waitFor(
      async () => {
        const job = await jobOf(id);
        return ["succeeded", "failed", "canceled"].includes(job.status) ? job : undefined;
      },
      { what: `job ${id} to end` },
    );
  }

  it.each(PROTOCOLS)(
    "delivers the result's JSON to callback_url, signed with every active secret (%s)",
    async (protocol) => {
      const work = `/work-${protocol}`;
      const hook = `/hook-${protocol}`;
      target.on(work, (_req, res) => {
        res.writeHead(201, { "content-type": "application/json" }).end('{"order":42}');
      });
      const id = await enqueue(protocol, {
        url: target.url + work,
        method: "POST",
        body: { n: 1 },
        callback_url: target.url + hook,
        tags: ["orders"],
      });
      const received = await target.request(hook);
      const source = await waitEnded(id);
      expect(source.status).toBe("succeeded");
      expect(source.callback_url).toBe(target.url + hook);

      // The body is GET /jobs/{job_id}/result's answer, field for field.
      const result = await rest(`/jobs/${id}/result`);
      expect(JSON.parse(received.body.toString("utf8"))).toEqual(result.json);
      expect(result.json).toMatchObject({ status: "succeeded", response_body: { order: 42 } });
      expect(received.method).toBe("POST");
      expect(received.headers["content-type"]).toBe("application/json");

      // A receiver that knows either secret (before or after moving over) accepts it.
      expect(verifyWebhook(received, OLD)).toEqual(result.json);
      expect(verifyWebhook(received, NEW)).toEqual(result.json);
      expect(() => verifyWebhook(received, OWN)).toThrow();
      expect(String(received.headers["webhook-signature"]).split(" ")).toHaveLength(2);

      // The delivery is a job, linked both ways, seen over the same protocol.
      const deliveryId = source.callback_job_id as string;
      expect(received.headers["webhook-id"]).toBe(deliveryId);
      const delivery = await waitEnded(deliveryId);
      expect(delivery).toMatchObject({
        status: "succeeded",
        callback_of: id,
        tags: ["callback"],
        method: "POST",
        url: target.url + hook,
        owner: "alice",
      });
      const got = await clients.call(protocol, "GetJob", { job_id: deliveryId }, bearer(alice.key));
      expect(got.body.job.callback_of).toBe(id);
      const listed = await clients.call(
        protocol,
        "ListJobs",
        { tag: ["callback"] },
        bearer(alice.key),
      );
      expect(listed.body.jobs.map((j: { job_id: string }) => j.job_id)).toContain(deliveryId);
    },
  );

  it("retries a delivery the receiver answers 500, then delivers it: the same webhook-id", async () => {
    target.on("/hook-500", (_req, res, n) => {
      if (n === 1) res.writeHead(500).end("not yet");
      else res.writeHead(204).end();
    });
    const id = await enqueue("rest", {
      url: `${target.url}/ok`,
      callback_url: `${target.url}/hook-500`,
    });
    const second = await target.request("/hook-500", 2);
    const first = target.received("/hook-500")[0]!;
    const source = await waitEnded(id);
    const delivery = await waitFor(
      async () => {
        const d = await jobOf(source.callback_job_id);
        return d.status === "succeeded" ? d : undefined;
      },
      { what: "the delivery to succeed" },
    );
    expect(delivery.attempt).toBe(2);
    expect(first.headers["webhook-id"]).toBe(delivery.job_id);
    expect(second.headers["webhook-id"]).toBe(delivery.job_id);
    expect(second.body.equals(first.body)).toBe(true);
    expect(verifyWebhook(first, OLD)).toBeTruthy();
    expect(verifyWebhook(second, NEW)).toBeTruthy();
    const attempts = await rest(`/jobs/${delivery.job_id}/attempts`);
    expect(
      attempts.json.attempts.map((a: { response_status: number }) => a.response_status),
    ).toEqual([500, 204]);
  });

  it.each(PROTOCOLS)(
    "refuses a callback to a private address: at submit for an IP, as a failed delivery for a name (%s)",
    async (protocol) => {
      for (const [url, problem] of [
        ["http://10.0.0.7/hook", /callback_url: .*private/],
        ["ftp://example.com/hook", /callback_url: scheme "ftp" is not allowed/],
        [`https://example.com/${"x".repeat(9000)}`, /callback_url: is longer than/],
        ["https://user:pw@example.com/hook", /callback_url: carries credentials/],
      ] as const) {
        const res = await clients.call(
          protocol,
          "EnqueueJob",
          { url: `${target.url}/ok`, callback_url: url },
          bearer(alice.key),
        );
        expect(res.ok).toBe(false);
        expect(res.code).toBe(3); // INVALID_ARGUMENT
        if (protocol === "rest") expect(res.httpStatus).toBe(400);
        expect(res.message).toMatch(problem);
      }

      const id = await enqueue(protocol, {
        url: `${target.url}/ok`,
        callback_url: `http://${PRIVATE_HOST}:${new URL(target.url).port}/hook`,
      });
      const source = await waitEnded(id);
      expect(source.status).toBe("succeeded");
      const delivery = await waitEnded(source.callback_job_id);
      expect(delivery).toMatchObject({
        status: "failed",
        callback_of: id,
        attempt: 1,
        last_error_code: "destination_blocked",
      });
      expect(delivery.last_error).toMatch(/10\.0\.0\.7/);
    },
  );

  it("cancels a delivery in flight like any job: its call is aborted", async () => {
    const release = deferred();
    target.on("/hook-slow", async (_req, res) => {
      await release.promise;
      res.writeHead(200).end();
    });
    const id = await enqueue("connect", {
      url: `${target.url}/ok`,
      callback_url: `${target.url}/hook-slow`,
    });
    const held = await target.request("/hook-slow");
    const deliveryId = (await waitEnded(id)).callback_job_id as string;
    await waitFor(async () => (await jobOf(deliveryId)).status === "running", {
      what: "the delivery to run",
    });
    const canceled = await clients.call(
      "connect",
      "CancelJob",
      { job_id: deliveryId },
      bearer(alice.key),
    );
    expect(canceled.ok).toBe(true);
    expect(await held.closed).toBe("aborted");
    release.resolve();
    const delivery = await waitEnded(deliveryId);
    expect(delivery.status).toBe("canceled");
    // A canceled delivery reports nothing further: no delivery of a delivery.
    expect(delivery.callback_job_id).toBeNull();
  });

  it.each(PROTOCOLS)(
    "signs a job's own call when asked: the principal's secrets, or its own (%s)",
    async (protocol) => {
      const path = `/signed-${protocol}`;
      const byPrincipal = await enqueue(protocol, {
        url: target.url + path,
        method: "POST",
        body: { hello: "world" },
        sign: true,
      });
      const first = await target.request(path, 1);
      expect(first.headers["webhook-id"]).toBe(byPrincipal);
      expect(verifyWebhook(first, OLD)).toEqual({ hello: "world" });
      expect(verifyWebhook(first, NEW)).toEqual({ hello: "world" });

      // bob has no secret of his own: his job brings one.
      const byJob = await enqueue(
        protocol,
        { url: target.url + path, method: "PUT", body: "plain text", signing_secret: OWN },
        bob.key,
      );
      const second = await target.request(path, 2);
      expect(second.headers["webhook-id"]).toBe(byJob);
      expect(() => verifyWebhook(second, OWN, true)).not.toThrow();
      expect(second.body.toString("utf8")).toBe("plain text");
      expect(() => verifyWebhook(second, OLD, true)).toThrow();

      // A GET without secrets signs nothing; asking to sign without any is refused, naming sign.
      const refused = await clients.call(
        protocol,
        "EnqueueJob",
        { url: target.url + path, sign: true },
        bearer(bob.key),
      );
      expect(refused.ok).toBe(false);
      expect(refused.code).toBe(3);
      expect(refused.message).toMatch(/^sign: there is no secret to sign with/);
      const bad = await clients.call(
        protocol,
        "EnqueueJob",
        { url: target.url + path, signing_secret: "whsec_tooshort" },
        bearer(bob.key),
      );
      expect(bad.ok).toBe(false);
      expect(bad.message).toMatch(/^signing_secret: /);
      expect(bad.message).not.toContain("tooshort");
    },
  );

  it("never shows a signing secret on a read, or in the logs", async () => {
    const id = await enqueue(
      "rest",
      {
        url: `${target.url}/ok`,
        signing_secret: `${OWN} ${NEW}`,
        callback_url: `${target.url}/hook-secret`,
      },
      bob.key,
    );
    const received = await target.request("/hook-secret");
    expect(() => verifyWebhook(received, OWN)).not.toThrow();
    const source = await waitEnded(id);
    await waitEnded(source.callback_job_id);

    const secrets = [OWN, NEW, OLD].map((s) => s.slice("whsec_".length));
    const reads: unknown[] = [source, await jobOf(source.callback_job_id)];
    for (const protocol of PROTOCOLS) {
      for (const [rpc, req] of [
        ["GetJob", { job_id: id }],
        ["ListJobs", {}],
        ["GetJobResult", { job_id: id }],
        ["ListJobAttempts", { job_id: id }],
        ["WatchJob", { job_id: id }],
      ] as const) {
        const res = await clients.call(protocol, rpc, req, bearer(admin.key));
        expect(res.ok).toBe(true);
        reads.push(res.body);
      }
    }
    expect(source.signing_secret).toBe("***");
    expect(source.sign).toBe(true);
    const text = JSON.stringify(reads);
    const logs = logLines.join("");
    expect(logs.length).toBeGreaterThan(0);
    // Sealed at rest: no byte of a secret in the SQLite file or its WAL.
    const files =
      store === "sqlite"
        ? [t.dbPath, `${t.dbPath}-wal`]
            .filter((f) => existsSync(f))
            .map((f) => readFileSync(f).toString("latin1"))
            .join("")
        : "";
    for (const s of secrets) {
      expect(text).not.toContain(s);
      expect(logs).not.toContain(s);
      expect(files).not.toContain(s);
    }
  });
});

describe("a signed job whose secrets are gone by the time it runs", () => {
  it("fails as secret_unreadable naming where a secret was expected, and is not sent unsigned", async () => {
    const target = await startTarget();
    const secret = generateSigningSecret(randomBytes);
    const first = await startTestApp({ JOBQUEUE_SIGNING_SECRETS: secret });
    let second: TestApp | undefined;
    try {
      expect((await first.rest.post("/queues/default/pause", {})).status).toBe(200);
      const id = await first.enqueue({ url: `${target.url}/signed`, sign: true });
      await first.app.stop(); // the database stays: first.stop() below lets it go
      // Restarted on the same jobs without the secret.
      second = await startTestApp({}, {}, { database: first.database });
      expect((await second.rest.post("/queues/default/resume", {})).status).toBe(200);
      const job = await second.waitForStatus(id, "failed");
      expect(job.last_error_code).toBe("secret_unreadable");
      expect(job.last_error).toMatch(/no signing secret.*JOBQUEUE_SIGNING_SECRETS/);
      expect(target.received("/signed")).toEqual([]);
    } finally {
      await second?.stop();
      await first.stop();
      await target.close();
    }
  });
});
