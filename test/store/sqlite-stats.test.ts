import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import { STATS_SQL } from "../../src/store/sqlite/sqlite-stats.js";

let dir: string;
let db: Database.Database;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "jobqueue-stats-"));
  const path = join(dir, "jobs.db");
  await createSqliteJobStore({ path }).close(); // the schema
  db = new Database(path, { readonly: true });
});

afterAll(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

it.each(Object.entries(STATS_SQL))(
  "the metrics' %s read walks an index, never the jobs table",
  (_name, sql) => {
    const bind = new Array((sql.match(/\?/g) ?? []).length).fill(0);
    const plan = (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...bind) as { detail: string }[]).map(
      (r) => r.detail,
    );
    for (const line of plan) expect(/^SCAN jobs\b(?!.*INDEX)/.test(line), line).toBe(false);
    expect(
      plan.some((l) => /USING (COVERING )?INDEX jobs_/.test(l)),
      plan.join(" | "),
    ).toBe(true);
  },
);
