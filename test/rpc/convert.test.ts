import { create, toBinary, toJson } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { JobSchema } from "../../gen/jobqueue/v1/job_pb.js";
import type { Job } from "../../src/job/types.js";
import { jobToPb } from "../../src/rpc/convert.js";
import { storedJob } from "../../src/store/rows.js";
import { newJob, T0 } from "../store/conformance/harness.js";

/** A stored job in a given state, from the conformance suite's job factory. */
function job(over: Partial<Job> = {}): Job {
  return { ...storedJob(newJob()), ...over };
}

describe("jobToPb", () => {
  const cases: [string, Job][] = [
    ["a new job with the defaults", job()],
    [
      "every optional field set",
      job({
        status: "failed",
        attempt: 3,
        maxAttempts: 3,
        priority: -5,
        scheduledAt: T0 + 1_000,
        startedAt: T0 + 2_000,
        finishedAt: T0 + 3_000,
        expiresAt: T0 + 86_400_000,
        ttlMs: 86_400_000,
        headers: { "X-Trace": "abc" },
        secretHeaderNames: ["authorization"],
        params: { q: "1" },
        body: { kind: "json", value: { a: [1, null, "x"], b: { c: true } } },
        tags: ["billing", "eu"],
        idempotencyKey: "order-1",
        lastError: "boom",
        lastErrorCode: "http_status",
        owner: "sam",
        rateLimitKey: "shared",
        followRedirects: true,
        maxRedirects: 7,
        callbackUrl: "https://hooks.example/x",
        sign: true,
        sealedSigningSecret: "sealed",
        callbackOf: "j_01HXYZ0000000000000000000A",
        callbackJobId: "j_01HXYZ0000000000000000000B",
        scheduleId: "s_1",
        scheduleTick: T0,
      }),
    ],
    ["a binary body", job({ body: { kind: "bytes", bytes: Uint8Array.from([0, 255, 7]) } })],
    ["a JSON string body", job({ body: { kind: "json", value: "plain" } })],
    ["a running job", job({ status: "running", attempt: 1, startedAt: T0 + 5 })],
  ];

  // The wire message is built as a whole (so that protobuf's create() takes it as it is); it must
  // be the very message create() builds, field by field, from the same values.
  for (const [name, j] of cases) {
    it(`is the message create() makes of the same fields: ${name}`, () => {
      const message = jobToPb(j);
      const { $typeName, ...fields } = message;
      expect($typeName).toBe("jobqueue.v1.Job");
      expect(create(JobSchema, message)).toBe(message);
      const made = create(JobSchema, fields);
      // Unset fields are keys holding undefined here and absent keys there: both read as unset.
      const set = Object.fromEntries(Object.entries(message).filter(([, v]) => v !== undefined));
      expect(set).toStrictEqual(made);
      expect(toBinary(JobSchema, message)).toEqual(toBinary(JobSchema, made));
      expect(toJson(JobSchema, message)).toEqual(toJson(JobSchema, made));
    });
  }

  it("masks secret headers and the signing secret", () => {
    const m = jobToPb(
      job({ headers: { a: "1" }, secretHeaderNames: ["authorization"], sealedSigningSecret: "x" }),
    );
    expect(m.headers).toEqual({ a: "1", authorization: "***" });
    expect(m.signingSecret).toBe("***");
  });
});
