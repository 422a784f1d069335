/**
 * What a read costs, part by part, in this process: a job read by its id as `GET /jobs/{job_id}`
 * answers it (the row, `rowToJob`, `jobToPb`, `toRestJson`, `JSON.stringify`), and a page of a
 * list as SQLite hands it over (the whole rows against their ids alone, which gives the cost of
 * each column value better-sqlite3 makes). Fills a temporary SQLite file through the store with
 * `--jobs` jobs shaped like the seed's example (JSON headers and body, a tag), then times each
 * part in a loop (µs per call, the best of `--rounds`).
 *
 *   node --import tsx bench/read-path.ts [--jobs 10000] [--rounds 3]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { monotonicFactory } from "ulid";
import { GetJobResponseSchema } from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { jobToPb } from "../src/rpc/convert.js";
import { toRestJson } from "../src/rpc/rest-json.js";
import { type JobRow, rowToJob } from "../src/store/rows.js";
import { objectRows } from "../src/store/sqlite/object-rows.js";
import { createSqliteJobStore } from "../src/store/sqlite/sqlite-job-store.js";
import { benchJob } from "./new-job.js";

const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "10000" },
    rounds: { type: "string", default: "3" },
  },
});
const JOBS = Number(values.jobs);
const ROUNDS = Number(values.rounds);
const PAGE = 51; // a page of 50 and the row that says whether there is a next one

const dir = mkdtempSync(join(tmpdir(), "read-path-"));
try {
  const path = join(dir, "jobs.db");
  const store = createSqliteJobStore({ path });
  const nextUlid = monotonicFactory();
  const now = Date.now();
  for (let done = 0; done < JOBS; done += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, JOBS - done) }, (_, i) =>
        store.jobInsert(
          benchJob(`j_${nextUlid(now)}`, now, "https://jobqueue-bench.example/never", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: { kind: "json", value: { n: done + i, payload: "x".repeat(64) } },
            tags: ["bench"],
            runAt: now + 86_400_000,
            scheduledAt: now + 86_400_000,
          }),
        ),
      ),
    );
  }
  await store.close();

  const db = new Database(path, { readonly: true });
  // The condition every read of the store puts on a job: not expired.
  const live = "(expires_at IS NULL OR expires_at > ?)";
  const id = (db.prepare(`SELECT id FROM jobs WHERE ${live} ORDER BY id DESC`).pluck().get(now) ??
    "") as string;
  const byId = objectRows<JobRow>(db.prepare(`SELECT * FROM jobs WHERE id = ? AND ${live}`));
  const idOnly = db.prepare(`SELECT id FROM jobs WHERE id = ? AND ${live}`).raw(true);
  const page = db.prepare(`SELECT * FROM jobs WHERE ${live} ORDER BY id DESC LIMIT ?`).raw(true);
  const pageIds = db
    .prepare(`SELECT id FROM jobs WHERE ${live} ORDER BY id DESC LIMIT ?`)
    .raw(true);
  const columns = page.columns().length;

  const row = byId.get(id, now)!;
  const job = rowToJob(row);
  const answer = { $typeName: "jobqueue.v1.GetJobResponse" as const, job: jobToPb(job) };
  const json = toRestJson(GetJobResponseSchema, answer);
  const parts: [string, () => unknown][] = [
    ["job by id: row (all columns)", () => byId.get(id, now)],
    ["job by id: its id alone", () => idOnly.get(id, now)],
    ["rowToJob", () => rowToJob(row)],
    ["jobToPb", () => jobToPb(job)],
    ["toRestJson (GetJobResponse)", () => toRestJson(GetJobResponseSchema, answer)],
    [`JSON.stringify (${JSON.stringify(json).length} bytes)`, () => JSON.stringify(json)],
    [
      "the five above in a row",
      () =>
        JSON.stringify(
          toRestJson(GetJobResponseSchema, {
            $typeName: "jobqueue.v1.GetJobResponse",
            job: jobToPb(rowToJob(byId.get(id, now)!)),
          }),
        ),
    ],
    [`page of ${PAGE}: rows (${columns} columns)`, () => page.all(now, PAGE)],
    [`page of ${PAGE}: ids alone`, () => pageIds.all(now, PAGE)],
  ];
  const best = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    for (const [name, fn] of parts) {
      const n = name.startsWith("page") ? 2_000 : 50_000;
      for (let i = 0; i < n / 10; i++) fn();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) fn();
      const us = Number(process.hrtime.bigint() - t0) / n / 1000;
      best.set(name, Math.min(best.get(name) ?? Number.POSITIVE_INFINITY, us));
    }
    process.stderr.write(`round ${round + 1} of ${ROUNDS}\n`);
  }
  db.close();
  const lines = [`${JOBS} jobs stored; µs per call, best of ${ROUNDS} rounds`, ""];
  for (const [name] of parts) lines.push(`${name.padEnd(40)} ${best.get(name)!.toFixed(2)} µs`);
  const perValue =
    ((best.get(`page of ${PAGE}: rows (${columns} columns)`)! -
      best.get(`page of ${PAGE}: ids alone`)!) /
      (PAGE * (columns - 1))) *
    1000;
  lines.push("", `each column value of a page beyond the id: ${perValue.toFixed(0)} ns`);
  console.log(lines.join("\n"));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
