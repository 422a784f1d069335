import { isScanned, ordersByFinish } from "../../job/filter.js";
import { TERMINAL_STATUSES } from "../../job/types.js";
import type { JobListParams } from "../job-store.js";
import { idBounds, type JobRow, STATES_OF } from "../rows.js";
import type { Db, Transaction } from "./client.js";
import type { Sql } from "./sql.js";

type Fragment = Sql;
type Query = Db | Transaction;

/**
 * The PostgreSQL form of a list page's query; the same walk and bounds as the SQLite driver's
 * (src/store/sqlite/list-query.ts, where the plan is explained). Rows of a bounded scan carry
 * `examined`, `edge_id` and `edge_finished`; {@link pageOf} from the SQLite module reads both.
 */
export function listQuery(
  q: Query,
  params: JobListParams,
  now: Fragment,
): { query: Fragment; scanned: boolean; finishOrder: boolean; walkLimit: number } {
  const scanned = isScanned(params);
  const finishOrder = ordersByFinish(params);
  const page = params.limit + 1;
  const walkLimit = scanned ? Math.max(1, params.scanLimit ?? 10_000) : page;
  const order = finishOrder ? q`j.finished_at DESC, j.id DESC` : q`j.id DESC`;
  const plainOrder = finishOrder ? q`finished_at DESC, id DESC` : q`id DESC`;
  const reverse = finishOrder ? q`finished_at, id` : q`id`;

  const conds: Fragment[] = [q`(j.expires_at IS NULL OR j.expires_at > ${now})`];
  if (params.ownedBy !== undefined) conds.push(q`j.owner = ${params.ownedBy}`);
  if (params.scheduleId !== undefined) conds.push(q`j.schedule_id = ${params.scheduleId}`);
  const { low, high } = idBounds(params.createdAfter, params.createdBefore);
  if (low !== null) conds.push(q`j.id > ${low} AND j.created_at > ${params.createdAfter!}`);
  if (high !== null) conds.push(q`j.id < ${high} AND j.created_at < ${params.createdBefore!}`);
  if (params.after) {
    if (finishOrder) {
      const at = params.after.finishedAt ?? 0;
      conds.push(q`(j.finished_at, j.id) < (${at}::bigint, ${params.after.id})`);
    } else conds.push(q`j.id < ${params.after.id}`);
  }
  if (params.idAtMost !== undefined) conds.push(q`j.id <= ${params.idAtMost}`);
  if (params.finishedAfter !== undefined) conds.push(q`j.finished_at > ${params.finishedAfter}`);
  if (params.finishedBefore !== undefined) conds.push(q`j.finished_at < ${params.finishedBefore}`);
  const [firstTag, ...otherTags] = params.tags ?? [];
  for (const tag of otherTags) {
    conds.push(q`EXISTS (SELECT 1 FROM job_tags o WHERE o.tag = ${tag} AND o.job_id = j.id)`);
  }
  let states = params.statuses?.length ? params.statuses.flatMap((s) => STATES_OF[s]) : null;
  if (finishOrder) {
    const terminal = [...TERMINAL_STATUSES].flatMap((s) => STATES_OF[s]);
    states = states ? states.filter((s) => terminal.includes(s)) : terminal;
  }

  let walk: Fragment;
  const where = () => joinSql(q, conds, q` AND `);
  if (params.jobIds?.length) {
    if (params.queue !== undefined) conds.push(q`j.queue = ${params.queue}`);
    if (states) conds.push(q`j.state = ANY(${states})`);
    walk = q`SELECT j.* FROM jobs j WHERE j.id = ANY(${params.jobIds}) AND ${where()}
      ORDER BY ${order} LIMIT ${walkLimit}`;
  } else if (firstTag !== undefined && !finishOrder) {
    if (params.queue !== undefined) conds.push(q`j.queue = ${params.queue}`);
    if (states) conds.push(q`j.state = ANY(${states})`);
    walk = q`SELECT j.* FROM job_tags t JOIN jobs j ON j.id = t.job_id
      WHERE t.tag = ${firstTag} AND ${where()} ORDER BY t.job_id DESC LIMIT ${walkLimit}`;
  } else if (states) {
    if (firstTag !== undefined) {
      conds.push(
        q`EXISTS (SELECT 1 FROM job_tags o WHERE o.tag = ${firstTag} AND o.job_id = j.id)`,
      );
    }
    if (params.queue !== undefined) conds.push(q`j.queue = ${params.queue}`);
    const cond = where();
    const branches = states.map(
      (state) => q`(SELECT j.* FROM jobs j WHERE j.state = ${state} AND ${cond}
        ORDER BY ${order} LIMIT ${walkLimit})`,
    );
    walk = q`SELECT * FROM (${joinSql(q, branches, q` UNION ALL `)}) u
      ORDER BY ${plainOrder} LIMIT ${walkLimit}`;
  } else if (params.queue !== undefined) {
    walk = q`SELECT j.* FROM jobs j WHERE j.queue = ${params.queue} AND ${where()}
      ORDER BY ${order} LIMIT ${walkLimit}`;
  } else {
    walk = q`SELECT j.* FROM jobs j WHERE ${where()} ORDER BY ${order} LIMIT ${walkLimit}`;
  }
  if (!scanned) return { query: walk, scanned, finishOrder, walkLimit };

  const scan: Fragment[] = [];
  if (params.host !== undefined) scan.push(q`host = ${params.host}`);
  if (params.method !== undefined) scan.push(q`method = ${params.method}`);
  if (params.urlContains !== undefined) scan.push(q`strpos(url, ${params.urlContains}) > 0`);
  if (params.errorCode !== undefined) scan.push(q`last_error_code = ${params.errorCode}`);
  if (params.minAttempts !== undefined) scan.push(q`attempt >= ${params.minAttempts}`);
  if (params.updatedAfter !== undefined) scan.push(q`updated_at > ${params.updatedAfter}`);
  return {
    query: q`WITH walk AS MATERIALIZED (${walk})
      SELECT e.examined, e.edge_id, e.edge_finished, m.* FROM
        (SELECT (SELECT count(*) FROM walk) AS examined,
                (SELECT id FROM walk ORDER BY ${reverse} LIMIT 1) AS edge_id,
                (SELECT finished_at FROM walk ORDER BY ${reverse} LIMIT 1) AS edge_finished) e
        LEFT JOIN (SELECT * FROM walk WHERE ${joinSql(q, scan, q` AND `)}
          ORDER BY ${plainOrder} LIMIT ${page}) m ON true`,
    scanned,
    finishOrder,
    walkLimit,
  };
}

export type { JobRow };

export function joinSql(q: Query, parts: Fragment[], separator: Fragment): Fragment {
  return parts.reduce((acc, part, i) => (i === 0 ? part : q`${acc}${separator}${part}`));
}
