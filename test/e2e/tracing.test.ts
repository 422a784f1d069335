import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes: { key: string; value: Record<string, unknown> }[];
  status?: { code?: number };
}

/** A collector of OTLP/HTTP JSON traces on 127.0.0.1: what the exporter posts, span by span. */
async function startCollector() {
  const spans: OtlpSpan[] = [];
  const resources: Record<string, unknown>[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      for (const rs of body.resourceSpans ?? []) {
        resources.push(attrs(rs.resource?.attributes ?? []));
        for (const ss of rs.scopeSpans ?? []) spans.push(...(ss.spans ?? []));
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    resources,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function attrs(list: { key: string; value: Record<string, unknown> }[]): Record<string, unknown> {
  return Object.fromEntries(
    list.map(({ key, value }) => {
      const v = value.stringValue ?? value.intValue ?? value.boolValue ?? value.doubleValue;
      return [key, typeof v === "string" && /^\d+$/.test(v) && "intValue" in value ? Number(v) : v];
    }),
  );
}

let t: TestApp | undefined;
let target: Target | undefined;
let collector: Awaited<ReturnType<typeof startCollector>> | undefined;

afterEach(async () => {
  await t?.stop();
  await target?.close();
  await collector?.close();
  t = target = collector = undefined;
});

describe("OpenTelemetry traces (JOBQUEUE_OTLP_TRACES_URL)", () => {
  it("exports each attempt as a span with its outbound call inside", async () => {
    collector = await startCollector();
    target = await startTarget();
    target.on("/fail", (_req, res) => {
      res.writeHead(503).end("down");
    });
    t = await startTestApp({ JOBQUEUE_OTLP_TRACES_URL: collector.url, JOBQUEUE_NODE_ID: "n1" });
    const ok = await t.enqueue({ url: `${target.url}/ok`, method: "POST" });
    const failed = await t.enqueue({ url: `${target.url}/fail?token=secret`, max_attempts: 1 });
    await t.waitForStatus(ok, "succeeded");
    await t.waitForStatus(failed, "failed");
    const spans = await waitFor(
      () => (collector!.spans.length >= 4 ? collector!.spans : undefined),
      { what: "four spans exported" },
    );

    const attemptOf = (jobId: string) =>
      spans.find(
        (s) => s.name === "jobqueue.attempt" && attrs(s.attributes)["jobqueue.job.id"] === jobId,
      )!;
    const callIn = (parent: OtlpSpan) => spans.find((s) => s.parentSpanId === parent.spanId)!;

    const okAttempt = attemptOf(ok);
    expect(attrs(okAttempt.attributes)).toMatchObject({
      "jobqueue.attempt": 1,
      "jobqueue.attempt.outcome": "succeeded",
      "jobqueue.bucket": "127.0.0.1",
    });
    const okCall = callIn(okAttempt);
    expect(okCall.name).toBe("POST");
    expect(okCall.traceId).toBe(okAttempt.traceId);
    expect(attrs(okCall.attributes)).toMatchObject({
      "http.request.method": "POST",
      "server.address": "127.0.0.1",
      "server.port": Number(new URL(target.url).port),
      "http.response.status_code": 200,
    });
    // The call lies within its attempt.
    expect(BigInt(okCall.startTimeUnixNano)).toBeGreaterThanOrEqual(
      BigInt(okAttempt.startTimeUnixNano),
    );
    expect(BigInt(okCall.endTimeUnixNano)).toBeLessThanOrEqual(BigInt(okAttempt.endTimeUnixNano));

    const failedAttempt = attemptOf(failed);
    expect(failedAttempt.status?.code).toBe(2); // ERROR
    expect(attrs(failedAttempt.attributes)["error.type"]).toBe("http_status");
    const failedCall = callIn(failedAttempt);
    expect(attrs(failedCall.attributes)["http.response.status_code"]).toBe(503);
    // Nothing of the URL but its host and port: the query may carry a secret.
    expect(JSON.stringify(spans)).not.toContain("secret");
    expect(collector.resources[0]).toMatchObject({
      "service.name": "jobqueue",
      "service.instance.id": "n1",
    });
  });
});
