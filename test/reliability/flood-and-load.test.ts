import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { afterAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { createClients, type Protocol } from "../helpers/clients.js";
import { type ServerProcess, startServerProcess } from "../helpers/server-process.js";
import { startTarget } from "../helpers/target.js";
import { sampleRss, scale } from "./harness.js";

/**
 * Load on the real server: an unauthenticated flood (the audit log must grow by a bounded number
 * of rows, not one per call), and 200 clients calling at once for a while on REST, Connect and
 * gRPC (not a single error).
 */
const FLOOD_CALLS = scale(100_000, 20_000);
const CLIENTS = 200;
const LOAD_SECONDS = scale(30, 8);

const dirs: string[] = [];
const servers: ServerProcess[] = [];
afterAll(async () => {
  for (const s of servers) {
    s.kill("SIGKILL");
    await s.exited;
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dbIn(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `jobqueue-${name}-`));
  dirs.push(dir);
  return join(dir, "jobqueue.db");
}

describe("load", () => {
  it(`an unauthenticated flood of ${FLOOD_CALLS} calls adds a bounded number of audit rows`, async () => {
    const admin = generateApiKey("ada", "admin");
    const dbPath = dbIn("flood");
    const server = await startServerProcess({
      JOBQUEUE_PORT: "0",
      JOBQUEUE_DB_URL: `sqlite:///${dbPath}`,
      JOBQUEUE_API_KEYS: admin.line,
    });
    servers.push(server);
    const dispatcher = new Agent({ connections: 32 });
    const statuses = new Map<number, number>();
    const rss = sampleRss(server.child.pid!, 200);
    const started = Date.now();
    let next = 0;
    const worker = async (k: number) => {
      while (next < FLOOD_CALLS) {
        next++;
        // REST and Connect alike, a bad key or none.
        const res =
          k % 2 === 0
            ? await request(`${server.url}/jobs/j_01ARZ3NDEKTSV4RRFFQ69G5FAV`, {
                dispatcher,
                headers: { authorization: "Bearer not-a-key" },
              })
            : await request(`${server.url}/jobqueue.v1.JobQueueService/GetJob`, {
                dispatcher,
                method: "POST",
                headers: { "content-type": "application/json" },
                body: '{"jobId":"j_01ARZ3NDEKTSV4RRFFQ69G5FAV"}',
              });
        await res.body.dump();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      }
    };
    await Promise.all(Array.from({ length: 32 }, (_, k) => worker(k)));
    const seconds = (Date.now() - started) / 1000;
    rss.stop();
    await dispatcher.close();
    server.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);

    expect((statuses.get(401) ?? 0) + (statuses.get(429) ?? 0)).toBe(FLOOD_CALLS);
    const store = createSqliteJobStore({ path: dbPath });
    try {
      const { events } = await store.auditList({ limit: 1_000_000 });
      // Refusals are recorded one by one up to 10 per kind (address, principal, method, outcome,
      // protocol) and minute, then counted into one row per kind and minute. Kinds here: 2
      // protocols × 2 outcomes (unauthenticated, throttled).
      const minutes = Math.ceil(seconds / 60) + 1;
      const bound = minutes * 4 * (10 + 1);
      const size = statSync(dbPath).size;
      console.info(
        `flood: ${FLOOD_CALLS} calls in ${seconds.toFixed(1)} s (${JSON.stringify([...statuses])}), ${events.length} audit rows (bound ${bound}), database ${(size / 1024).toFixed(0)} KiB, server RSS max ${(rss.max / 1_048_576).toFixed(0)} MiB`,
      );
      expect(events.length).toBeLessThanOrEqual(bound);
      expect(size).toBeLessThan(2 * 1_048_576);
      // Every refusal is accounted for: one by one, or in a row's "refused N more times".
      const counted = events.reduce((n, e) => {
        const more = /^refused (\d+) more times/.exec(e.detail ?? "");
        return n + (more ? Number(more[1]) : 1);
      }, 0);
      expect(counted).toBe(FLOOD_CALLS);
    } finally {
      await store.close();
    }
  });

  it(`${CLIENTS} clients for ${LOAD_SECONDS} s on REST, Connect and gRPC: no errors`, async () => {
    const target = await startTarget();
    const server = await startServerProcess({
      JOBQUEUE_PORT: "0",
      JOBQUEUE_DB_URL: `sqlite:///${dbIn("load")}`,
      JOBQUEUE_CONCURRENCY: "32",
      JOBQUEUE_POLL_INTERVAL: "0.1",
    });
    servers.push(server);
    const clients = createClients(server.url);
    const protocols: Protocol[] = ["rest", "connect", "grpc"];
    const errors: string[] = [];
    let calls = 0;
    const deadline = Date.now() + LOAD_SECONDS * 1000;
    const client = async (k: number) => {
      const protocol = protocols[k % protocols.length]!;
      const check = (what: string, res: { ok: boolean; code: number; message: string }) => {
        calls++;
        if (!res.ok && errors.length < 20)
          errors.push(`${protocol} ${what}: ${res.code} ${res.message}`);
      };
      while (Date.now() < deadline) {
        const enqueued = await clients.call(protocol, "EnqueueJob", {
          url: `${target.url}/ok?c=${k}`,
          tags: [`client-${k % 10}`],
        });
        check("EnqueueJob", enqueued);
        if (!enqueued.ok) continue;
        check("GetJob", await clients.call(protocol, "GetJob", { job_id: enqueued.body.job_id }));
        check(
          "ListJobs",
          await clients.call(protocol, "ListJobs", { page_size: 10, tag: [`client-${k % 10}`] }),
        );
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, k) => client(k)));
    console.info(
      `load: ${CLIENTS} clients, ${LOAD_SECONDS} s, ${calls} calls, ${(calls / LOAD_SECONDS).toFixed(0)}/s, errors ${errors.length}`,
    );
    expect(errors).toEqual([]);
    expect(calls).toBeGreaterThan(CLIENTS * 3);
    await target.close();
  });
});
