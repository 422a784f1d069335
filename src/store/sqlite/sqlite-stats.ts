import type Database from "better-sqlite3";
import { jobStatsOf } from "../job-stats.js";
import type { JobStats } from "../job-store.js";
import { STATES_OF } from "../rows.js";

/**
 * The bounded reads of {@link JobStats}: every count walks an index and stops after `cap`
 * entries, the oldest due job is found by a skip scan over the claim index (one seek per
 * priority), so the cost does not grow with the jobs kept. With 1,000,000 jobs (900,000
 * succeeded, 30,000 due, 5,000 waiting) and cap 10,000 it took ~5 ms, where a GROUP BY count
 * took ~100 ms.
 */
export function readJobStats(db: Database.Database, cap: number): JobStats {
  const s = statementsOf(db);
  const byState = new Map<string, number>();
  for (const states of Object.values(STATES_OF)) {
    for (const state of states) byState.set(state, s.count.get(state, cap) as number);
  }
  return jobStatsOf({
    cap,
    byState,
    waiting: s.waiting.all(cap) as { bucket: string; n: number }[],
    deferred: s.deferred.all(cap) as { bucket: string; n: number }[],
    oldestDueAt: (s.oldestDue.get() as number | null | undefined) ?? null,
  });
}

const cache = new WeakMap<Database.Database, ReturnType<typeof prepare>>();

function statementsOf(db: Database.Database) {
  let s = cache.get(db);
  if (!s) {
    s = prepare(db);
    cache.set(db, s);
  }
  return s;
}

/** The statements, for {@link readJobStats} and for the test that checks their plans. */
export const STATS_SQL = {
  count:
    "SELECT COUNT(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_state WHERE state = ? LIMIT ? + 0)",
  // Per priority present among due jobs (found by seeking past each), its earliest run time.
  oldestDue: `WITH RECURSIVE p(pr) AS (
      SELECT MAX(priority) FROM jobs INDEXED BY jobs_claim WHERE state = 'available'
      UNION ALL
      SELECT (SELECT MAX(priority) FROM jobs INDEXED BY jobs_claim
              WHERE state = 'available' AND priority < p.pr)
      FROM p WHERE p.pr IS NOT NULL)
    SELECT MIN((SELECT MIN(run_at) FROM jobs INDEXED BY jobs_claim
                WHERE state = 'available' AND priority = p.pr))
    FROM p WHERE p.pr IS NOT NULL`,
  waiting: `SELECT bucket, COUNT(*) AS n FROM (
      SELECT bucket FROM jobs INDEXED BY jobs_waiting WHERE state = 'waiting' LIMIT ? + 0)
    GROUP BY bucket`,
  deferred: `SELECT bucket, SUM(rate_reserved) AS n FROM (
      SELECT bucket, rate_reserved FROM jobs INDEXED BY jobs_scheduled
      WHERE state = 'scheduled' LIMIT ? + 0)
    GROUP BY bucket`,
};

function prepare(db: Database.Database) {
  return {
    count: db.prepare(STATS_SQL.count).pluck(),
    oldestDue: db.prepare(STATS_SQL.oldestDue).pluck(),
    waiting: db.prepare(STATS_SQL.waiting),
    deferred: db.prepare(STATS_SQL.deferred),
  };
}
