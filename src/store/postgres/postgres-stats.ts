import { jobStatsOf } from "../job-stats.js";
import type { JobStats } from "../job-store.js";
import { STATES_OF } from "../rows.js";
import type { Tag } from "./client.js";

/**
 * The bounded reads of {@link JobStats}, as in the SQLite driver: each count walks the (state, id)
 * index and stops after `cap` entries; the oldest due job is found by a skip scan over the claim
 * index, one seek per priority present.
 */
export async function readJobStats(sql: Tag, cap: number): Promise<JobStats> {
  const states = Object.values(STATES_OF).flat();
  const [counts, [oldest], waiting, deferred] = await Promise.all([
    sql<{ state: string; n: string }>`SELECT st AS state,
          (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE state = st LIMIT ${cap}) s) AS n
        FROM unnest(${states}::text[]) AS st`,
    sql<{ at: string | null }>`WITH RECURSIVE p(pr) AS (
          SELECT max(priority) FROM jobs WHERE state = 'available'
          UNION ALL
          SELECT (SELECT max(priority) FROM jobs WHERE state = 'available' AND priority < p.pr)
          FROM p WHERE p.pr IS NOT NULL)
        SELECT min((SELECT min(run_at) FROM jobs WHERE state = 'available' AND priority = p.pr))
          AS at
        FROM p WHERE p.pr IS NOT NULL`,
    sql<{ bucket: string; n: string }>`SELECT bucket, count(*) AS n FROM (
          SELECT bucket FROM jobs WHERE state = 'waiting' LIMIT ${cap}) s
        GROUP BY bucket`,
    sql<{
      bucket: string;
      n: string;
    }>`SELECT bucket, count(*) FILTER (WHERE rate_reserved) AS n FROM (
          SELECT bucket, rate_reserved FROM jobs WHERE state = 'scheduled' LIMIT ${cap}) s
        GROUP BY bucket`,
  ]);
  const at = oldest?.at;
  return jobStatsOf({
    cap,
    byState: new Map(counts.map((r) => [r.state, Number(r.n)])),
    waiting: waiting.map((r) => ({ bucket: r.bucket, n: Number(r.n) })),
    deferred: deferred.map((r) => ({ bucket: r.bucket, n: Number(r.n) })),
    oldestDueAt: at === null || at === undefined ? null : Number(at),
  });
}
