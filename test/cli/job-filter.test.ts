import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  AttemptOutcome,
  JobEventSchema,
  JobEventType,
  JobSchema,
  JobStatus,
} from "../../gen/jobqueue/v1/job_pb.js";
import { CliError } from "../../src/cli/exit-codes.js";
import { applyEvent } from "../../src/cli/follow.js";
import {
  conditionsOf,
  describeConditions,
  hasConditions,
  timeArg,
} from "../../src/cli/job-filter.js";

const NOW = new Date("2026-11-30T12:00:00Z");

describe("the CLI's filter flags", () => {
  it.each([
    ["90s", "2026-11-30T11:58:30.000Z"],
    ["30m", "2026-11-30T11:30:00.000Z"],
    ["2h", "2026-11-30T10:00:00.000Z"],
    ["7d", "2026-11-23T12:00:00.000Z"],
    ["2026-11-01T00:00:00Z", "2026-11-01T00:00:00.000Z"],
    ["2026-11-01T09:00:00+09:00", "2026-11-01T00:00:00.000Z"],
  ])("time %s is %s", (v, iso) => {
    expect(timeArg(v, "--x", NOW).toISOString()).toBe(iso);
  });

  it.each(["yesterday", "-2h", "2h ago", "12", ""])("refuses time %j naming the flag", (v) => {
    expect(() => timeArg(v, "--finished-before", NOW)).toThrow(/--finished-before/);
  });

  it("turns flags into the fields ListJobsRequest and JobFilter share", () => {
    const c = conditionsOf(
      {
        status: ["failed,canceled", "QUEUED"],
        tag: ["a", "b"],
        queue: "reports",
        finishedBefore: "7d",
        method: "post",
        errorCode: "timeout",
        minAttempts: "2",
      },
      NOW,
    );
    expect(c).toMatchObject({
      status: [JobStatus.FAILED, JobStatus.CANCELED, JobStatus.QUEUED],
      tag: ["a", "b"],
      queue: "reports",
      method: "POST",
      errorCode: "timeout",
      minAttempts: 2,
      host: "",
      urlContains: "",
    });
    expect(timestampDate(c.finishedBefore!).toISOString()).toBe("2026-11-23T12:00:00.000Z");
    expect(c.createdAfter).toBeUndefined();
    expect(hasConditions(c)).toBe(true);
    expect(hasConditions(conditionsOf({}, NOW))).toBe(false);
  });

  it("refuses an unknown status and a bad --min-attempts with a usage error", () => {
    expect(() => conditionsOf({ status: ["sleeping"] })).toThrow(CliError);
    expect(() => conditionsOf({ minAttempts: "-1" })).toThrow(/--min-attempts/);
  });

  it("says the conditions in words for the question", () => {
    expect(describeConditions({ status: ["failed"], tag: ["sync", "eu"], queue: "q" })).toBe(
      "status failed, tag sync,eu, queue q",
    );
    expect(describeConditions({})).toBe("every job");
  });
});

describe("a watched job after an event", () => {
  const job = create(JobSchema, {
    jobId: "j_1",
    status: JobStatus.QUEUED,
    attempt: 0,
    maxAttempts: 3,
  });
  const at = (s: string) => timestampFromDate(new Date(s));

  it("takes the status, attempt, start, error and end from the events", () => {
    const running = applyEvent(
      job,
      create(JobEventSchema, {
        type: JobEventType.RUNNING,
        status: JobStatus.RUNNING,
        attempt: 1,
        at: at("2026-11-30T12:00:01Z"),
      }),
    );
    expect(running).toMatchObject({ status: JobStatus.RUNNING, attempt: 1, maxAttempts: 3 });
    expect(running.startedAt).toEqual(at("2026-11-30T12:00:01Z"));
    const retry = applyEvent(
      running,
      create(JobEventSchema, {
        type: JobEventType.RETRY_SCHEDULED,
        status: JobStatus.QUEUED,
        attempt: 1,
        error: "HTTP 503",
        outcome: AttemptOutcome.FAILED,
        runAt: at("2026-11-30T12:00:05Z"),
        at: at("2026-11-30T12:00:02Z"),
      }),
    );
    expect(retry).toMatchObject({ status: JobStatus.QUEUED, lastError: "HTTP 503" });
    expect(retry.nextRunAt).toEqual(at("2026-11-30T12:00:05Z"));
    expect(retry.finishedAt).toBeUndefined();
    const failed = applyEvent(
      retry,
      create(JobEventSchema, {
        type: JobEventType.FAILED,
        status: JobStatus.FAILED,
        at: at("2026-11-30T12:00:09Z"),
      }),
    );
    expect(failed).toMatchObject({ status: JobStatus.FAILED, attempt: 1, lastError: "HTTP 503" });
    expect(failed.finishedAt).toEqual(at("2026-11-30T12:00:09Z"));
    expect(job.status).toBe(JobStatus.QUEUED); // the job given is left as it was
  });
});
