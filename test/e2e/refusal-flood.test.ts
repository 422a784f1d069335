import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { createClients } from "../helpers/clients.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

/**
 * An unauthenticated flood: 10,000 calls with a bad key. Each used to cost an fsynced audit row;
 * now the audit grows by a bounded number of rows, and the address is throttled once it has
 * failed JOBQUEUE_AUTH_FAILURES_PER_MINUTE times.
 */
describe("a flood of calls with a bad key", () => {
  const admin = generateApiKey("ada", "admin");
  let t: TestApp;
  let dbPath: string;

  beforeAll(async () => {
    t = await startTestApp({ JOBQUEUE_API_KEYS: admin.line });
    dbPath = t.dbPath;
  });
  afterAll(() => t?.stop());

  it("adds a bounded number of audit rows and throttles the address with 429 and Retry-After", async () => {
    const dispatcher = new Agent({ connections: 16 });
    const statuses = new Map<number, number>();
    let retryAfter: string | null = null;
    let next = 0;
    const worker = async () => {
      while (next < 10_000) {
        next++;
        const res = await request(`${t.url}/jobs/j_01ARZ3NDEKTSV4RRFFQ69G5FAV`, {
          dispatcher,
          headers: { authorization: "Bearer not-a-key" },
        });
        await res.body.dump();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
        if (res.statusCode === 429) retryAfter = String(res.headers["retry-after"]);
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    await dispatcher.close();

    // At most two minutes are touched: 300 failures each before the throttle.
    expect((statuses.get(401) ?? 0) + (statuses.get(429) ?? 0)).toBe(10_000);
    expect(statuses.get(401)).toBeLessThanOrEqual(600);
    expect(statuses.get(429)).toBeGreaterThanOrEqual(9_400);
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);

    // Throttled over the RPC protocols too, as RESOURCE_EXHAUSTED.
    const clients = createClients(t.url);
    try {
      const res = await clients.call(
        "connect",
        "GetJob",
        { job_id: "j_01ARZ3NDEKTSV4RRFFQ69G5FAV" },
        {
          authorization: "Bearer not-a-key",
        },
      );
      expect(res.code).toBe(8);
    } finally {
      clients.close();
    }
    // A valid key from the same address is refused too while the address is throttled.
    const good = await fetch(`${t.url}/jobs?page_size=1`, {
      headers: { authorization: `Bearer ${admin.key}` },
    });
    expect(good.status).toBe(429);

    await t.app.stop();
    const store = createSqliteJobStore({ path: dbPath });
    try {
      const { events } = await store.auditList({ limit: 1000 });
      // Per minute: 10 rows one by one and one count for each of unauthenticated (REST),
      // throttled (REST, Connect); two minutes at most.
      expect(events.length).toBeLessThanOrEqual(2 * (11 + 11 + 2) + 2);
      const counted = events
        .map((e) => /^refused (\d+) more times/.exec(e.detail ?? "")?.[1])
        .filter((n) => n !== undefined)
        .map(Number);
      const individual = events.filter((e) => e.detail === null).length;
      expect(counted.reduce((a, b) => a + b, 0) + individual).toBe(10_000 + 2);
    } finally {
      await store.close();
    }
  });
});
