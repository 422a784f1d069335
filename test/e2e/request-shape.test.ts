import { randomBytes } from "node:crypto";
import { Code } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type CallResult, type Clients, createClients, PROTOCOLS } from "../helpers/clients.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

/**
 * What a submit may carry, end to end on every protocol: credentials in the URL become a sealed
 * Authorization header (never shown, stored or logged in clear); a body goes with a method that
 * can carry one.
 */

let target: Target;
let app: TestApp;
let clients: Clients;
let lines: string[];

beforeEach(async () => {
  target = await startTarget();
  lines = [];
  const logger = pino({ level: "trace" }, { write: (line: string) => lines.push(line) });
  app = await startTestApp({}, { logger });
  clients = createClients(app.url);
});

afterEach(async () => {
  clients.close();
  await app.stop();
  await target.close();
});

/** The stored row's url and plain headers, read from the file by a second connection. */
function storedRow(jobId: string): string {
  const db = new Database(app.dbPath, { readonly: true, fileMustExist: true });
  try {
    return JSON.stringify(db.prepare("SELECT * FROM jobs WHERE id = ?").get(jobId));
  } finally {
    db.close();
  }
}

/**
 * The error message as the client shows it; grpc-js decodes grpc-message with decodeURI, which
 * leaves the %3A, %2C... that connect-node's encodeURIComponent wrote, so it is decoded here.
 */
function messageOf(result: CallResult): string {
  return decodeURIComponent(result.message);
}

describe("credentials in the URL (user:password@host)", () => {
  it.each(PROTOCOLS)(
    "over %s: are sent as Authorization: Basic, and never read back, stored or logged in clear",
    async (protocol) => {
      const password = `pw-${randomBytes(12).toString("hex")}`;
      const url = new URL(`${target.url}/private?x=1`);
      url.username = "ann@example.com";
      url.password = `${password}:with colon`;
      const submitted = await clients.call(protocol, "EnqueueJob", {
        url: url.href,
        headers: { "X-Trace": "t1" },
      });
      expect(submitted.ok, submitted.message).toBe(true);
      const jobId = submitted.body.job_id as string;

      const received = await target.request("/private");
      const expected = Buffer.from(`ann@example.com:${password}:with colon`).toString("base64");
      expect(received.headers.authorization).toBe(`Basic ${expected}`);
      expect(received.headers["x-trace"]).toBe("t1");

      await app.waitForStatus(jobId, "succeeded");
      const { body } = await clients.call(protocol, "GetJob", { job_id: jobId });
      expect(body.job.url).toBe(`${target.url}/private?x=1`);
      expect(body.job.headers).toEqual({ "X-Trace": "t1", Authorization: "***" });
      expect(body.job.secret_headers).toEqual(["Authorization"]);

      expect(storedRow(jobId)).not.toContain(password);
      expect(storedRow(jobId)).not.toContain(expected);
      expect(lines.join("")).not.toContain(password);
      expect(lines.join("")).not.toContain(expected);
      expect(lines.join("")).not.toContain("ann@example.com");
    },
  );

  it.each(PROTOCOLS)(
    "over %s: with an Authorization header as well, are refused naming url",
    async (protocol) => {
      const result = await clients.call(protocol, "EnqueueJob", {
        url: `http://user:secret@${new URL(target.url).host}/x`,
        headers: { authorization: "Bearer abc" },
      });
      expect(result.ok).toBe(false);
      expect(result.code).toBe(Code.InvalidArgument);
      expect(messageOf(result)).toMatch(/^url: carries credentials/);
      if (protocol === "rest") {
        expect(result.httpStatus).toBe(400);
        expect(result.body.field).toBe("url");
      }
      expect(result.message).not.toContain("secret");
      expect(target.requests).toHaveLength(0);
    },
  );
});

describe("a body", () => {
  it.each(PROTOCOLS.flatMap((p) => ["GET", "HEAD"].map((m) => [p, m] as const)))(
    "over %s: with method %s is refused naming body",
    async (protocol, method) => {
      const result = await clients.call(protocol, "EnqueueJob", {
        method,
        url: `${target.url}/x`,
        body: { a: 1 },
      });
      expect(result.ok).toBe(false);
      expect(result.code).toBe(Code.InvalidArgument);
      expect(messageOf(result)).toMatch(
        new RegExp(`^body: a ${method} request cannot carry a body`),
      );
      if (protocol === "rest") {
        expect(result.httpStatus).toBe(400);
        expect(result.body.field).toBe("body");
      }
    },
  );

  it.each(PROTOCOLS)("over %s: without a method makes the job a POST", async (protocol) => {
    const result = await clients.call(protocol, "EnqueueJob", {
      url: `${target.url}/post`,
      body: { a: 1 },
    });
    expect(result.ok, result.message).toBe(true);
    const received = await target.request("/post");
    expect(received.method).toBe("POST");
    expect(JSON.parse(received.body.toString())).toEqual({ a: 1 });
    const { body } = await clients.call(protocol, "GetJob", { job_id: result.body.job_id });
    expect(body.job.method).toBe("POST");
  });

  it("without a body, a job without a method is still a GET", async () => {
    const jobId = await app.enqueue({ url: `${target.url}/get` });
    expect((await target.request("/get")).method).toBe("GET");
    expect((await app.rest.get(`/jobs/${jobId}`)).json.method).toBe("GET");
  });
});
