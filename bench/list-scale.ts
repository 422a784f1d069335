/**
 * What the operator's reads cost with few jobs stored and with many: the job list's pages and
 * filters (what the dashboard and `jobqueue list` ask), the counts, a queue's statistics and a
 * bulk action's dry-run count, each timed through the REST API of a real server holding 1,000 jobs
 * and then 1,000,000 (`--sizes`), one call at a time.
 *
 *   npm run bench:list -- [--sizes 1000,1000000] [--calls 200]
 *
 * The stored jobs look like a server's after a while: 90% succeeded, 3% failed (error code
 * `http_status`), 2% canceled, 5% queued a day ahead (so none runs), spread over two queues, ten
 * tags and ten destination hosts, finished over the last 24 hours. They are inserted through the
 * store (jobInsertMany); their end states are then written with one SQL UPDATE per state, which is
 * what reaching them through the workers would leave (the maintained counts follow by trigger).
 * Reports the median and p95 latency of each call at each size and the ratio of the largest size
 * to the smallest.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { monotonicFactory } from "ulid";
import type { NewJob } from "../src/job/types.js";
import { createSqliteJobStore } from "../src/store/sqlite/sqlite-job-store.js";
import { benchJob } from "./new-job.js";
import { startServer } from "./processes.js";
import { percentile } from "./stats.js";

const { values: args } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,1000000" },
    calls: { type: "string", default: "200" },
  },
});
const SIZES = args.sizes.split(",").map(Number);
const CALLS = Number(args.calls);
const HOUR = 3_600_000;

interface Query {
  name: string;
  /** Path and query, or a POST with its JSON body. */
  path: string;
  body?: unknown;
}

function queries(now: number, deepToken: string): Query[] {
  const lastHour = new Date(now - HOUR).toISOString();
  return [
    { name: "list, first page (50)", path: "/jobs?page_size=50" },
    { name: "list, page 20 by cursor", path: `/jobs?page_size=50&page_token=${deepToken}` },
    { name: "list, status=failed", path: "/jobs?page_size=50&status=failed" },
    { name: "list, status=queued", path: "/jobs?page_size=50&status=queued" },
    {
      name: "list, failed in the last hour",
      path: `/jobs?page_size=50&status=failed&finished_after=${lastHour}`,
    },
    { name: "list, queue=emails", path: "/jobs?page_size=50&queue=emails" },
    { name: "list, tag=t3", path: "/jobs?page_size=50&tag=t3" },
    { name: "list, host=h3.example", path: "/jobs?page_size=50&host=h3.example" },
    { name: "GetJobCounts", path: "/jobs:counts" },
    { name: "GetQueueStats (default)", path: "/queues/default/stats" },
    {
      name: "RetryJobs dry run (all failed)",
      path: "/jobs:retry",
      body: { filter: { status: ["failed"] }, dry_run: true },
    },
  ];
}

/** Fills a new SQLite file with `size` jobs shaped as described above. */
async function fill(path: string, size: number, now: number): Promise<void> {
  const store = createSqliteJobStore({ path });
  await store.queueCreate({
    name: "emails",
    concurrency: null,
    rate: null,
    maxAttempts: null,
    backoffStrategy: null,
    backoffBaseMs: null,
    ttlMs: null,
    paused: false,
  });
  const nextUlid = monotonicFactory();
  const start = now - 24 * HOUR;
  for (let done = 0; done < size; ) {
    const n = Math.min(1000, size - done);
    const batch: NewJob[] = [];
    for (let i = 0; i < n; i++) {
      const k = done + i;
      const createdAt = start + Math.floor((k / size) * 24 * HOUR);
      const host = `h${k % 10}.example`;
      batch.push(
        benchJob(`j_${nextUlid(createdAt)}`, createdAt, `https://${host}/hook/${k}`, {
          runAt: now + 24 * HOUR,
          scheduledAt: now + 24 * HOUR,
          method: k % 4 === 0 ? "GET" : "POST",
          headers: { "content-type": "application/json" },
          body: { kind: "json", value: { n: k } },
          tags: [`t${k % 10}`],
          queue: k % 10 === 0 ? "emails" : "default",
        }),
      );
    }
    await store.jobInsertMany(batch);
    done += n;
    if (done % 50_000 === 0 || done === size) process.stderr.write(`  filled ${done}/${size}\n`);
  }
  await store.close();

  const db = new Database(path);
  const end = (state: string, from: number, to: number, extra = "") =>
    db
      .prepare(
        `UPDATE jobs SET state = '${state}', attempt = 1, started_at = created_at,
           finished_at = created_at + 150, updated_at = created_at + 150${extra}
         WHERE rowid % 100 >= ${from} AND rowid % 100 < ${to}`,
      )
      .run();
  end("succeeded", 0, 90);
  end("failed", 90, 93, ", last_error_code = 'http_status', last_error = 'HTTP 500'");
  end("canceled", 93, 95);
  db.close();
}

async function timeCalls(url: string, q: Query): Promise<number[]> {
  const init: RequestInit = q.body
    ? {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(q.body),
      }
    : {};
  const call = async () => {
    const res = await fetch(`${url}${q.path}`, init);
    const text = await res.text();
    if (!res.ok) throw new Error(`${q.name}: ${res.status} ${text.slice(0, 300)}`);
  };
  for (let i = 0; i < 10; i++) await call();
  const samples: number[] = [];
  for (let i = 0; i < CALLS; i++) {
    const t0 = performance.now();
    await call();
    samples.push(performance.now() - t0);
  }
  return samples;
}

async function main() {
  const results = new Map<string, Map<number, number[]>>();
  for (const size of SIZES) {
    const dir = mkdtempSync(join(tmpdir(), "jobqueue-list-scale-"));
    try {
      const now = Date.now();
      process.stderr.write(`${size} jobs: filling the store\n`);
      const dbPath = join(dir, "jobqueue.db");
      await fill(dbPath, size, now);
      const server = await startServer({ dbPath, concurrency: 8 });
      try {
        // A cursor 20 pages deep, as a user paging through the list would hold.
        let token = "";
        for (let page = 0; page < 19; page++) {
          const res = await fetch(
            `${server.url}/jobs?page_size=50${token && `&page_token=${token}`}`,
          );
          const json = (await res.json()) as { next_page_token?: string };
          token = json.next_page_token ?? "";
        }
        for (const q of queries(now, token)) {
          const samples = await timeCalls(server.url, q);
          const bySize = results.get(q.name) ?? new Map<number, number[]>();
          results.set(q.name, bySize);
          bySize.set(size, samples);
          process.stderr.write(
            `  ${q.name}: p50 ${percentile(samples, 50).toFixed(2)} ms, p95 ${percentile(samples, 95).toFixed(2)} ms\n`,
          );
        }
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const small = SIZES[0]!;
  const large = SIZES[SIZES.length - 1]!;
  const lines = [
    `Operator reads through REST, one call at a time (${CALLS} calls after 10 warm-up, ms), with ${SIZES.map((s) => s.toLocaleString("en")).join(" and ")} jobs stored`,
    "",
    `| call | ${SIZES.map((s) => `p50 / p95 at ${s.toLocaleString("en")}`).join(" | ")} | p50 ratio |`,
    `| --- | ${SIZES.map(() => "---:").join(" | ")} | ---: |`,
  ];
  for (const [name, bySize] of results) {
    const cells = SIZES.map((s) => {
      const xs = bySize.get(s)!;
      return `${percentile(xs, 50).toFixed(2)} / ${percentile(xs, 95).toFixed(2)}`;
    });
    const ratio = percentile(bySize.get(large)!, 50) / percentile(bySize.get(small)!, 50);
    lines.push(`| ${name} | ${cells.join(" | ")} | ${ratio.toFixed(2)}× |`);
  }
  console.log(lines.join("\n"));
}

await main();
