import { isScanned, ordersByFinish } from "../../job/filter.js";
import { TERMINAL_STATUSES } from "../../job/types.js";
import type { JobListParams } from "../job-store.js";
import { idBounds, STATES_OF } from "../rows.js";

/**
 * The SQL of a list page (and of the jobs a bulk action walks): an index walk chosen from the
 * filter, newest first (latest finished first with a finishing-time window), that stops after a
 * page. Indexed conditions (status, tags, queue, job ids, creation time as id bounds, finishing
 * time, owner) narrow the walk itself; conditions checked row by row (host, method, URL text,
 * error code, attempts, updated time) are applied to at most `scanLimit` walked rows, and the
 * result says where the walk stopped so the next page continues from there. Its LIMITs are
 * `? + 0` for the reason the store's are (see SQL in ./sqlite-job-store.ts).
 */
export interface ListQuery {
  sql: string;
  args: unknown[];
  /** Whether rows carry `examined`, `edge_id` and `edge_finished` (a bounded scan). */
  scanned: boolean;
  finishOrder: boolean;
  /** Rows the walk reads at most (the page + 1 when nothing is scanned). */
  walkLimit: number;
}

export function listQuery(params: JobListParams, now: number): ListQuery {
  const scanned = isScanned(params);
  const finishOrder = ordersByFinish(params);
  const page = params.limit + 1;
  const walkLimit = scanned ? Math.max(1, params.scanLimit ?? 10_000) : page;
  const order = finishOrder ? "j.finished_at DESC, j.id DESC" : "j.id DESC";
  const plainOrder = finishOrder ? "finished_at DESC, id DESC" : "id DESC";
  const reverse = finishOrder ? "finished_at, id" : "id";

  const conds: string[] = ["(j.expires_at IS NULL OR j.expires_at > ?)"];
  const args: unknown[] = [now];
  const cond = (sql: string, ...values: unknown[]) => {
    conds.push(sql);
    args.push(...values);
  };
  if (params.ownedBy !== undefined) cond("j.owner = ?", params.ownedBy);
  if (params.scheduleId !== undefined) cond("j.schedule_id = ?", params.scheduleId);
  const { low, high } = idBounds(params.createdAfter, params.createdBefore);
  if (low !== null) cond("j.id > ? AND j.created_at > ?", low, params.createdAfter);
  if (high !== null) cond("j.id < ? AND j.created_at < ?", high, params.createdBefore);
  if (params.after) {
    if (finishOrder) {
      cond(
        "(j.finished_at < ? OR (j.finished_at = ? AND j.id < ?))",
        params.after.finishedAt ?? 0,
        params.after.finishedAt ?? 0,
        params.after.id,
      );
    } else cond("j.id < ?", params.after.id);
  }
  if (params.idAtMost !== undefined) cond("j.id <= ?", params.idAtMost);
  if (params.finishedAfter !== undefined) cond("j.finished_at > ?", params.finishedAfter);
  if (params.finishedBefore !== undefined) cond("j.finished_at < ?", params.finishedBefore);

  const [firstTag, ...otherTags] = params.tags ?? [];
  for (const tag of otherTags) {
    cond("EXISTS (SELECT 1 FROM job_tags o WHERE o.tag = ? AND o.job_id = j.id)", tag);
  }
  let states = params.statuses?.length ? params.statuses.flatMap((s) => STATES_OF[s]) : null;
  if (finishOrder) {
    const terminal = [...TERMINAL_STATUSES].flatMap((s) => STATES_OF[s]);
    states = states ? states.filter((s) => terminal.includes(s)) : terminal;
  }

  // The walk: the index that serves the most selective indexed condition, in list order.
  let walk: { sql: string; args: unknown[] };
  const where = () => conds.join(" AND ");
  const inList = (values: unknown[]) => values.map(() => "?").join(", ");
  if (params.jobIds?.length) {
    if (params.queue !== undefined) cond("j.queue = ?", params.queue);
    if (states) cond(`j.state IN (${inList(states)})`, ...states);
    walk = {
      sql: `SELECT j.* FROM jobs j WHERE j.id IN (${inList(params.jobIds)}) AND ${where()}
        ORDER BY ${order} LIMIT ? + 0`,
      args: [...params.jobIds, ...args, walkLimit],
    };
  } else if (firstTag !== undefined && !finishOrder) {
    if (params.queue !== undefined) cond("j.queue = ?", params.queue);
    if (states) cond(`j.state IN (${inList(states)})`, ...states);
    walk = {
      // CROSS JOIN fixes the order: walk the tag's entries newest first, look each job up.
      sql: `SELECT j.* FROM job_tags t CROSS JOIN jobs j ON j.id = t.job_id
        WHERE t.tag = ? AND ${where()} ORDER BY t.job_id DESC LIMIT ? + 0`,
      args: [firstTag, ...args, walkLimit],
    };
  } else if (states) {
    if (firstTag !== undefined) {
      cond("EXISTS (SELECT 1 FROM job_tags o WHERE o.tag = ? AND o.job_id = j.id)", firstTag);
    }
    if (params.queue !== undefined) cond("j.queue = ?", params.queue);
    const index = finishOrder ? "jobs_finished" : "jobs_state";
    const branch = `SELECT * FROM (SELECT j.* FROM jobs j INDEXED BY ${index}
        WHERE j.state = ? AND ${where()} ORDER BY ${order} LIMIT ? + 0)`;
    walk = {
      sql: `SELECT * FROM (${states.map(() => branch).join(" UNION ALL ")})
        ORDER BY ${plainOrder} LIMIT ? + 0`,
      args: [...states.flatMap((state) => [state, ...args, walkLimit]), walkLimit],
    };
  } else if (params.scheduleId !== undefined && !finishOrder) {
    if (params.queue !== undefined) cond("j.queue = ?", params.queue);
    walk = {
      sql: `SELECT j.* FROM jobs j INDEXED BY jobs_schedule WHERE ${where()}
        ORDER BY ${order} LIMIT ? + 0`,
      args: [...args, walkLimit],
    };
  } else if (params.queue !== undefined) {
    walk = {
      sql: `SELECT j.* FROM jobs j INDEXED BY jobs_queue WHERE j.queue = ? AND ${where()}
        ORDER BY ${order} LIMIT ? + 0`,
      args: [params.queue, ...args, walkLimit],
    };
  } else {
    walk = {
      sql: `SELECT j.* FROM jobs j WHERE ${where()} ORDER BY ${order} LIMIT ? + 0`,
      args: [...args, walkLimit],
    };
  }
  if (!scanned) return { sql: walk.sql, args: walk.args, scanned, finishOrder, walkLimit };

  const scan: string[] = [];
  const scanArgs: unknown[] = [];
  if (params.host !== undefined) {
    scan.push("host = ?");
    scanArgs.push(params.host);
  }
  if (params.method !== undefined) {
    scan.push("method = ?");
    scanArgs.push(params.method);
  }
  if (params.urlContains !== undefined) {
    scan.push("instr(url, ?) > 0");
    scanArgs.push(params.urlContains);
  }
  if (params.errorCode !== undefined) {
    scan.push("last_error_code = ?");
    scanArgs.push(params.errorCode);
  }
  if (params.minAttempts !== undefined) {
    scan.push("attempt >= ?");
    scanArgs.push(params.minAttempts);
  }
  if (params.updatedAfter !== undefined) {
    scan.push("updated_at > ?");
    scanArgs.push(params.updatedAfter);
  }
  return {
    sql: `WITH walk AS MATERIALIZED (${walk.sql})
      SELECT e.examined, e.edge_id, e.edge_finished, m.* FROM
        (SELECT (SELECT count(*) FROM walk) AS examined,
                (SELECT id FROM walk ORDER BY ${reverse} LIMIT 1) AS edge_id,
                (SELECT finished_at FROM walk ORDER BY ${reverse} LIMIT 1) AS edge_finished) e
        LEFT JOIN (SELECT * FROM walk WHERE ${scan.join(" AND ")}
          ORDER BY ${plainOrder} LIMIT ? + 0) m ON 1`,
    args: [...walk.args, ...scanArgs, page],
    scanned,
    finishOrder,
    walkLimit,
  };
}
