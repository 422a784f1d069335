import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { GetJobResultResponseSchema } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import {
  CALLBACK_TAG,
  callbackBody,
  DEFAULT_CALLBACK_SETTINGS,
  reportsOutcome,
  resultJson,
  terminalTransition,
} from "../../src/job/callbacks.js";
import type { Job, JobResult, JobStatus } from "../../src/job/types.js";
import { resultToPb } from "../../src/rpc/convert.js";
import { toRestJson } from "../../src/rpc/rest-json.js";

const NOW = 1_735_689_600_000;

function job(overrides: Partial<Job> = {}): Job {
  return {
    id: "j_01JGFJJZ000000000000000000",
    status: "succeeded",
    attempt: 1,
    maxAttempts: 3,
    priority: 4,
    runAt: NOW,
    scheduledAt: null,
    createdAt: NOW,
    updatedAt: NOW + 50,
    startedAt: NOW,
    finishedAt: NOW + 50,
    expiresAt: null,
    method: "POST",
    url: "https://api.example/orders",
    headers: {},
    sealedHeaders: null,
    secretHeaderNames: [],
    params: {},
    body: null,
    timeoutMs: 10_000,
    backoffStrategy: "exponential",
    backoffBaseMs: 1000,
    ttlMs: 3_600_000,
    tags: ["orders"],
    idempotencyKey: null,
    requestHash: null,
    followRedirects: false,
    maxRedirects: 5,
    rateLimitKey: null,
    bucket: "api.example",
    owner: "alice",
    lastError: null,
    leaseExpiresAt: null,
    queue: "default",
    host: "api.example",
    lastErrorCode: null,
    callbackUrl: "https://hooks.example/done",
    sign: false,
    sealedSigningSecret: null,
    callbackOf: null,
    callbackJobId: null,
    ...overrides,
  };
}

const jsonResult: JobResult = {
  jobId: job().id,
  attempt: 1,
  response: {
    status: 201,
    headers: { "content-type": "application/json" },
    body: Buffer.from('{"order":42,"items":[1,2]}'),
    bodyEncoding: "json",
    truncated: false,
  },
  error: null,
  durationMs: 48,
  finishedAt: NOW + 50,
};

/** What the REST transport answers at GET /jobs/{job_id}/result for this job and result. */
function restResult(j: Job, r: JobResult | null) {
  return toRestJson(
    GetJobResultResponseSchema,
    create(GetJobResultResponseSchema, resultToPb(j, r)),
  );
}

describe("resultJson", () => {
  it.each<[string, Job, JobResult | null]>([
    ["a JSON response", job(), jsonResult],
    [
      "a text response, cut",
      job({ status: "failed" }),
      {
        ...jsonResult,
        response: {
          status: 500,
          headers: { "content-type": "text/plain" },
          body: Buffer.from("boom"),
          bodyEncoding: "text",
          truncated: true,
        },
        error: "HTTP 500",
        finishedAt: NOW + 51_234,
      },
    ],
    [
      "a binary response",
      job(),
      {
        ...jsonResult,
        response: {
          status: 200,
          headers: {},
          body: new Uint8Array([0, 1, 2, 255]),
          bodyEncoding: "base64",
          truncated: false,
        },
      },
    ],
    [
      "a network error",
      job({ status: "failed" }),
      { ...jsonResult, response: null, error: "ECONNREFUSED", durationMs: 3 },
    ],
    ["a job canceled before any attempt", job({ status: "canceled", attempt: 0 }), null],
  ])("is the REST answer of GET /jobs/{job_id}/result for %s", (_, j, r) => {
    expect(resultJson(j, r)).toEqual(restResult(j, r));
  });
});

describe("callbackBody", () => {
  it("is the whole result when it fits", () => {
    expect(callbackBody(job(), jsonResult, 65_536)).toEqual(resultJson(job(), jsonResult));
  });

  it("leaves the response body out past the cap, marked truncated, then the headers", () => {
    const big: JobResult = {
      ...jsonResult,
      response: {
        ...jsonResult.response!,
        body: Buffer.from(JSON.stringify({ data: "x".repeat(5000) })),
      },
    };
    const body = callbackBody(job(), big, 2048);
    expect(body.response_body).toBeNull();
    expect(body.truncated).toBe(true);
    expect(body.response_status).toBe(201);
    expect(body.response_headers).toEqual({ "content-type": "application/json" });
    expect(Buffer.byteLength(JSON.stringify(body))).toBeLessThanOrEqual(2048);

    const manyHeaders: JobResult = {
      ...big,
      response: {
        ...big.response!,
        headers: Object.fromEntries(
          Array.from({ length: 100 }, (_, i) => [`x-h${i}`, "v".repeat(30)]),
        ),
      },
    };
    const cut = callbackBody(job(), manyHeaders, 2048);
    expect(cut.response_headers).toEqual({});
    expect(Buffer.byteLength(JSON.stringify(cut))).toBeLessThanOrEqual(2048);
  });
});

describe("terminalTransition", () => {
  const settings = { ...DEFAULT_CALLBACK_SETTINGS, maxAttempts: 7, backoffBaseMs: 250 };
  const id = "j_01JGFJJZ111111111111111111";

  it.each<JobStatus>(["succeeded", "failed", "canceled"])(
    "makes a delivery when a job with a callback URL ends as %s",
    (status) => {
      const source = job({ status, sealedSigningSecret: "v1.sealed" });
      const { callback } = terminalTransition({
        job: source,
        result: jsonResult,
        id,
        now: NOW + 60,
        settings,
      });
      expect(callback).toMatchObject({
        id,
        method: "POST",
        url: "https://hooks.example/done",
        headers: { "content-type": "application/json" },
        body: { kind: "json", value: resultJson(source, jsonResult) },
        tags: [CALLBACK_TAG],
        callbackOf: source.id,
        callbackUrl: null,
        owner: "alice",
        queue: "default",
        priority: 4,
        maxAttempts: 7,
        backoffStrategy: "exponential",
        backoffBaseMs: 250,
        ttlMs: 3_600_000,
        sign: true,
        sealedSigningSecret: "v1.sealed",
        bucket: "hooks.example",
        host: "hooks.example",
        createdAt: NOW + 60,
        runAt: NOW + 60,
        idempotencyKey: null,
      });
    },
  );

  it.each<[string, Partial<Job>]>([
    ["has no callback URL", { callbackUrl: null }],
    ["is itself a delivery (no loops)", { callbackOf: "j_01JGFJJZ222222222222222222" }],
    ["has not ended", { status: "queued" }],
    ["is running", { status: "running" }],
  ])("makes nothing for a job that %s", (_, overrides) => {
    const { callback } = terminalTransition({
      job: job(overrides),
      result: jsonResult,
      id,
      now: NOW,
      settings,
    });
    expect(callback).toBeNull();
  });

  it("reportsOutcome: a callback URL on a job that is no delivery", () => {
    expect(reportsOutcome(job())).toBe(true);
    expect(reportsOutcome(job({ callbackUrl: null }))).toBe(false);
    expect(reportsOutcome(job({ callbackOf: "j_01JGFJJZ222222222222222222" }))).toBe(false);
  });
});
