import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

const APP = "http://app.example.test:3000";
const admin = generateApiKey("ada", "admin");

function preflight(t: TestApp, path: string, origin: string, headers: string) {
  return fetch(t.url + path, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": headers,
    },
  });
}

describe("CORS, opened per origin", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({
      JOBQUEUE_CORS_ORIGINS: `${APP},https://other.example.test`,
      JOBQUEUE_API_KEYS: admin.line,
    });
  });
  afterAll(() => t?.stop());

  it("answers a preflight on every route with what Connect, gRPC-Web and REST need", async () => {
    for (const path of [
      "/jobs",
      "/jobs/j_01HXYZ0000000000000000000A/cancel",
      "/jobqueue.v1.JobQueueService/GetJob",
      "/nowhere",
    ]) {
      const res = await preflight(
        t,
        path,
        APP,
        "content-type,connect-protocol-version,authorization",
      );
      expect(res.status, path).toBe(204);
      expect(res.headers.get("access-control-allow-origin")).toBe(APP);
      expect(res.headers.get("vary")).toBe("Origin");
      expect(res.headers.get("access-control-allow-methods")?.split(", ")).toEqual(
        expect.arrayContaining(["GET", "HEAD", "POST"]),
      );
      const allowed = (res.headers.get("access-control-allow-headers") ?? "")
        .toLowerCase()
        .split(", ");
      for (const h of [
        "content-type",
        "connect-protocol-version",
        "connect-timeout-ms",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "authorization",
        "x-api-key",
      ]) {
        expect(allowed).toContain(h);
      }
      expect(res.headers.get("access-control-max-age")).toBe("7200");
      expect(res.headers.get("access-control-allow-credentials")).toBeNull();
    }
  });

  it("exposes the headers a script needs on actual responses, errors included", async () => {
    const ok = await fetch(`${t.url}/jobs?page_size=1`, {
      headers: { origin: APP, authorization: `Bearer ${admin.key}` },
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBe(APP);
    const exposed = (ok.headers.get("access-control-expose-headers") ?? "")
      .toLowerCase()
      .split(", ");
    expect(exposed).toEqual(
      expect.arrayContaining([
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "retry-after",
        "www-authenticate",
      ]),
    );
    const refused = await fetch(`${t.url}/jobs`, { headers: { origin: APP } });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("access-control-allow-origin")).toBe(APP);
    expect(refused.headers.get("www-authenticate")).toMatch(/^Bearer/);
  });

  it("serves Connect and gRPC-Web clients that send an Origin", async () => {
    const headers = { origin: APP, authorization: `Bearer ${admin.key}` };
    for (const transport of [
      createConnectTransport({ baseUrl: t.url, httpVersion: "1.1" }),
      createGrpcWebTransport({ baseUrl: t.url, httpVersion: "1.1" }),
    ]) {
      const res = await createClient(JobQueueService, transport).listJobs(
        { pageSize: 1 },
        { headers },
      );
      expect(res.jobs).toEqual([]);
    }
    const web = await fetch(`${t.url}/jobqueue.v1.JobQueueService/ListJobs`, {
      method: "POST",
      headers: { ...headers, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      body: new Uint8Array([0, 0, 0, 0, 0]),
    });
    expect(web.headers.get("access-control-allow-origin")).toBe(APP);
  });

  it("gives an origin not listed no CORS headers, and a 403 preflight", async () => {
    const res = await preflight(t, "/jobs", "https://evil.example.test", "content-type");
    expect(res.status).toBe(403);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const get = await fetch(`${t.url}/healthz`, {
      headers: { origin: "https://evil.example.test" },
    });
    expect(get.status).toBe(200);
    expect(get.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("CORS, off by default", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t?.stop());

  it("adds no CORS headers and answers no preflight", async () => {
    const res = await preflight(t, "/jobs", APP, "content-type");
    expect(res.status).toBe(405);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    const get = await fetch(`${t.url}/jobs`, { headers: { origin: APP } });
    expect(get.status).toBe(200);
    expect(get.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("CORS for any origin", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({ JOBQUEUE_CORS_ORIGINS: "*" });
  });
  afterAll(() => t?.stop());

  it("answers with *", async () => {
    const res = await preflight(t, "/jobs", "https://anyone.example.test", "content-type");
    expect(res.status).toBe(204);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
  });
});
