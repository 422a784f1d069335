import type { ListCursor } from "./job-store.js";
import type { JobRow } from "./rows.js";

/**
 * A list page from the rows of either driver's list query: the jobs, and where the next page
 * starts. Without conditions checked row by row, a page of `limit` plus one row says whether more
 * follow. A bounded scan's rows also carry how many jobs the walk looked at and the last one it
 * looked at (`examined`, `edge_id`, `edge_finished`): when the walk ran to its bound before the
 * page filled, the next page continues from that last job.
 */
export function pageOf(
  q: { scanned: boolean; finishOrder: boolean; walkLimit: number },
  rows: (JobRow & { examined?: number; edge_id?: string | null; edge_finished?: number | null })[],
  limit: number,
): { rows: JobRow[]; next: ListCursor | null } {
  const cursorOf = (id: string, finishedAt: number | null | undefined): ListCursor =>
    q.finishOrder ? { id, finishedAt: finishedAt ?? 0 } : { id };
  const matched = rows.filter((r) => r.id !== null && r.id !== undefined);
  if (matched.length > limit) {
    const last = matched[limit - 1]!;
    return { rows: matched.slice(0, limit), next: cursorOf(last.id, last.finished_at) };
  }
  if (!q.scanned) return { rows: matched, next: null };
  const edge = rows[0];
  const exhausted = !edge || (edge.examined ?? 0) < q.walkLimit || !edge.edge_id;
  return {
    rows: matched,
    next: exhausted ? null : cursorOf(edge.edge_id!, edge.edge_finished),
  };
}
