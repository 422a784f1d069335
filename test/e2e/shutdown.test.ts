import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred } from "../helpers/wait-for.js";

/**
 * Graceful shutdown keeps the port open while calls in flight finish, and says "not serving":
 * 503 on /healthz, UNAVAILABLE with Retry-After on REST and RPC calls, NOT_SERVING on
 * grpc.health.v1; only then does the port close.
 */
describe("while the server stops", () => {
  let t: TestApp;
  let target: Target;
  const release = deferred();

  beforeAll(async () => {
    target = await startTarget();
    target.on("/slow", async (_req, res) => {
      await release.promise;
      res.end("done");
    });
    t = await startTestApp({ JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "30" });
  });
  afterAll(async () => {
    release.resolve();
    await t?.stop();
    await target?.close();
  });

  it("answers not serving on every protocol during the grace period, then closes the port", async () => {
    const id = await t.enqueue({ url: `${target.url}/slow` });
    await target.request("/slow");
    const stopped = t.app.stop();

    const health = await fetch(`${t.url}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toEqual({ status: "not_serving" });

    const rest = await fetch(`${t.url}/jobs/${id}`);
    expect(rest.status).toBe(503);
    expect(rest.headers.get("retry-after")).toBe("30");
    expect(await rest.json()).toMatchObject({ code: "unavailable" });

    const transport = createGrpcTransport({ baseUrl: t.url });
    const err = await createClient(JobQueueService, transport)
      .getJob({ jobId: id })
      .then(
        () => null,
        (e) => e,
      );
    expect(err).toMatchObject({ code: 14 });
    expect(err.metadata.get("retry-after")).toBe("30");
    const check = await createClient(Health, transport).check({});
    expect(check.status).toBe(ServingStatus.NOT_SERVING);

    // The call in flight finishes; then the server is gone.
    release.resolve();
    await stopped;
    await expect(fetch(`${t.url}/healthz`)).rejects.toThrow();
    expect(target.received("/slow")).toHaveLength(1);
  });
});
