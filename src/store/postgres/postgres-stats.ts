import type { JobStatus } from "../../job/types.js";
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
  const byState = new Map(counts.map((r) => [r.state as string, Number(r.n)]));
  const statuses = Object.fromEntries(
    Object.entries(STATES_OF).map(([status, of]) => [
      status,
      Math.min(
        cap,
        of.reduce((n, state) => n + (byState.get(state) ?? 0), 0),
      ),
    ]),
  ) as Record<JobStatus, number>;
  const held = new Map<string, { bucket: string; waiting: number; rateDeferred: number }>();
  const entry = (bucket: string) => {
    let e = held.get(bucket);
    if (!e) {
      e = { bucket, waiting: 0, rateDeferred: 0 };
      held.set(bucket, e);
    }
    return e;
  };
  for (const r of waiting) entry(r.bucket as string).waiting = Number(r.n);
  for (const r of deferred)
    if (Number(r.n) > 0) entry(r.bucket as string).rateDeferred = Number(r.n);
  const at = oldest?.at;
  return {
    statuses,
    due: byState.get("available") ?? 0,
    oldestDueAt: at === null || at === undefined ? null : Number(at),
    heldBack: [...held.values()].sort((a, b) => (a.bucket < b.bucket ? -1 : 1)),
  };
}
