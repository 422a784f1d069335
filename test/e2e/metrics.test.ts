import { afterEach, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { createClients } from "../helpers/clients.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

/** The samples of a Prometheus text exposition, keyed `name{label="v",…}` as written. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const cut = line.lastIndexOf(" ");
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return samples;
}

async function scrape(t: TestApp, headers: Record<string, string> = {}) {
  const res = await fetch(`${t.url}/metrics`, { headers });
  const text = await res.text();
  return { status: res.status, type: res.headers.get("content-type"), text, samples: parse(text) };
}

let t: TestApp | undefined;
let target: Target | undefined;

afterEach(async () => {
  await t?.stop();
  await target?.close();
  t = undefined;
  target = undefined;
});

describe("GET /metrics", () => {
  it("counts attempts, calls, claims and commits, and reads the jobs by status from the store", async () => {
    target = await startTarget();
    target.on("/fail", (_req, res) => {
      res.writeHead(500).end("no");
    });
    t = await startTestApp();
    const ok = await t.enqueue({ url: `${target.url}/ok` });
    const failed = await t.enqueue({ url: `${target.url}/fail`, max_attempts: 1 });
    const later = await t.enqueue({
      url: `${target.url}/ok`,
      scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
    });
    const viaConnect = await createClients(t.url).call("connect", "EnqueueJob", {
      url: `${target.url}/ok`,
    });
    expect(viaConnect.ok).toBe(true);
    await t.waitForStatus(ok, "succeeded");
    await t.waitForStatus(failed, "failed");
    await t.waitForStatus(viaConnect.body.job_id, "succeeded");
    expect((await t.rest.get("/no/such/path")).status).toBe(404);

    const m = await scrape(t);
    expect(m.status).toBe(200);
    expect(m.type).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = m.samples;
    expect(s.get('jobqueue_attempts_total{outcome="succeeded",error_code=""}')).toBe(2);
    expect(s.get('jobqueue_attempts_total{outcome="failed",error_code="http_status"}')).toBe(1);
    expect(s.get('jobqueue_dispatch_duration_seconds_count{outcome="succeeded"}')).toBe(2);
    expect(
      s.get(
        'jobqueue_rpc_calls_total{method="jobqueue.v1.JobQueueService/EnqueueJob",protocol="rest",code="ok"}',
      ),
    ).toBe(3);
    expect(
      s.get(
        'jobqueue_rpc_calls_total{method="jobqueue.v1.JobQueueService/EnqueueJob",protocol="connect",code="ok"}',
      ),
    ).toBe(1);
    // A path nobody routes is counted under one label, not under the path the client made up.
    expect(
      s.get('jobqueue_rpc_calls_total{method="(none)",protocol="rest",code="not_found"}'),
    ).toBe(1);
    expect([...s.keys()].some((k) => k.includes("/no/such/path"))).toBe(false);
    expect(s.get("jobqueue_claim_latency_seconds_count")).toBe(3);
    expect(s.get("jobqueue_claim_duration_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(s.get("jobqueue_store_commit_batch_size_count")).toBeGreaterThan(0);
    expect(s.get("jobqueue_store_commit_duration_seconds_count")).toBeGreaterThan(0);
    expect(s.get('jobqueue_store_call_duration_seconds_count{call="jobInsert",outcome="ok"}')).toBe(
      4,
    );
    expect(s.get('jobqueue_jobs{status="succeeded"}')).toBe(2);
    expect(s.get('jobqueue_jobs{status="failed"}')).toBe(1);
    expect(s.get('jobqueue_jobs{status="queued"}')).toBe(1);
    expect(s.get('jobqueue_jobs{status="running"}')).toBe(0);
    // The scheduled job is not due: nothing waits for a worker.
    expect(s.get("jobqueue_queue_depth")).toBe(0);
    expect(s.get("jobqueue_queue_oldest_age_seconds")).toBe(0);
    expect(s.get("jobqueue_jobs_count_cap")).toBe(10_000);
    expect(s.get('jobqueue_calls_in_flight{bucket="(unlimited)"}')).toBe(0);
    expect(s.get("jobqueue_ready")).toBe(1);
    expect(s.get("jobqueue_event_stream_watchers")).toBe(0);
    expect(s.has("process_cpu_seconds_total")).toBe(true);
    // Every metric of ours says what it is.
    const names = new Set([...s.keys()].map((k) => k.replace(/[{].*$/, "")));
    for (const name of names) {
      if (!name.startsWith("jobqueue_")) continue;
      const base = name.replace(/_(bucket|sum|count)$/, "");
      expect(m.text, name).toMatch(new RegExp(`^# HELP (${name}|${base}) \\S`, "m"));
    }
    expect(later).toMatch(/^j_/);
  });

  it("shows the calls in flight and the jobs held back per destination budget", async () => {
    target = await startTarget();
    target.on("/hold", () => {}); // never answered
    t = await startTestApp({
      JOBQUEUE_HOST_LIMITS: "127.0.0.1=concurrency=1",
      JOBQUEUE_CONCURRENCY: "4",
    });
    for (let i = 0; i < 3; i++) await t.enqueue({ url: `${target.url}/hold`, timeout_sec: 60 });
    await target.request("/hold");
    const s = await waitFor(
      async () => {
        const { samples } = await scrape(t!);
        return samples.get('jobqueue_budget_held_jobs{bucket="127.0.0.1",reason="concurrency"}') ===
          2
          ? samples
          : undefined;
      },
      { what: "two jobs waiting for the budget", timeoutMs: 15_000, intervalMs: 500 },
    );
    expect(s.get('jobqueue_calls_in_flight{bucket="127.0.0.1"}')).toBe(1);
    expect(s.get('jobqueue_jobs{status="running"}')).toBe(1);
    expect(s.get('jobqueue_jobs{status="queued"}')).toBe(2);
  });

  it("needs an API key when the API does (JOBQUEUE_METRICS=auto), and is not served when off", async () => {
    const reader = generateApiKey("prometheus", "reader");
    t = await startTestApp({ JOBQUEUE_API_KEYS: reader.line });
    const anonymous = await scrape(t);
    expect(anonymous.status).toBe(401);
    expect(JSON.parse(anonymous.text)).toMatchObject({ code: "unauthenticated" });
    expect((await scrape(t, { authorization: "Bearer wrong" })).status).toBe(401);
    const allowed = await scrape(t, { authorization: `Bearer ${reader.key}` });
    expect(allowed.status).toBe(200);
    expect(allowed.samples.get("jobqueue_ready")).toBe(1);
    await t.stop();

    t = await startTestApp({ JOBQUEUE_API_KEYS: reader.line, JOBQUEUE_METRICS: "open" });
    expect((await scrape(t)).status).toBe(200);
    await t.stop();

    t = await startTestApp({ JOBQUEUE_METRICS: "off" });
    expect((await scrape(t)).status).toBe(404);
  });
});
