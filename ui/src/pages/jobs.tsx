import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import type { JobStatus } from "../../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "../api/client.js";
import { ErrorNote, LiveNote } from "../components/bits.js";
import { JobsTable } from "../components/jobs-table.js";
import { STATUSES, statusFromName, statusName } from "../format.js";
import { usePoll } from "../live/poll.js";
import { navigate } from "../router.js";

/** The list's filter, as the URL's query keeps it (REST's parameter names). */
export interface JobFilter {
  status: JobStatus[];
  tag: string[];
  createdAfter: Date | null;
  createdBefore: Date | null;
  pageSize: number;
}

const PAGE_SIZES = [25, 50, 100, 200];

export function filterFromQuery(q: URLSearchParams): JobFilter {
  const date = (name: string) => {
    const v = q.get(name);
    const d = v ? new Date(v) : null;
    return d && !Number.isNaN(d.getTime()) ? d : null;
  };
  const size = Number(q.get("page_size"));
  return {
    status: q.getAll("status").flatMap((s) => statusFromName(s) ?? []),
    tag: q.getAll("tag").filter((t) => t !== ""),
    createdAfter: date("created_after"),
    createdBefore: date("created_before"),
    pageSize: PAGE_SIZES.includes(size) ? size : 50,
  };
}

export function queryOfFilter(f: JobFilter): string {
  const q = new URLSearchParams();
  for (const s of f.status) q.append("status", statusName(s));
  for (const t of f.tag) q.append("tag", t);
  if (f.createdAfter) q.set("created_after", f.createdAfter.toISOString());
  if (f.createdBefore) q.set("created_before", f.createdBefore.toISOString());
  if (f.pageSize !== 50) q.set("page_size", String(f.pageSize));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** "2026-11-30T17:32" in the browser's time zone, as datetime-local inputs take it. */
function localInputValue(d: Date | null): string {
  if (!d) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/**
 * Jobs newest first, with the API's filters (status, tags, created after/before) and cursor
 * paging: the server's next_page_token moves forward; the tokens seen are kept to move back. The
 * page on show refreshes while the tab is visible.
 *
 * Slot (issue 10): row selection and bulk actions (cancel, retry, delete) on the selected rows or
 * on everything matching the filter, after the server's count preview; more filters (finished
 * after/before, host, error code, queue).
 */
export function JobsPage(props: { api: Api; query: URLSearchParams }) {
  const { api } = props;
  const filter = filterFromQuery(props.query);
  const filterKey = queryOfFilter(filter);
  // Tokens of the pages before the one shown; the last is the current page's ("" for the first).
  const [pages, setPages] = useState<{ filterKey: string; tokens: string[] }>({
    filterKey,
    tokens: [""],
  });
  const tokens = pages.filterKey === filterKey ? pages.tokens : [""];
  const pageToken = tokens[tokens.length - 1]!;

  const list = usePoll(
    (signal) =>
      api.listJobs(
        {
          status: filter.status,
          tag: filter.tag,
          createdAfter: filter.createdAfter ? timestampFromDate(filter.createdAfter) : undefined,
          createdBefore: filter.createdBefore ? timestampFromDate(filter.createdBefore) : undefined,
          pageSize: filter.pageSize,
          pageToken,
        },
        { signal },
      ),
    `${filterKey}#${pageToken}`,
  );

  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const when = (name: string) => {
      const v = String(form.get(name) ?? "");
      return v ? new Date(v) : null;
    };
    const next: JobFilter = {
      status: form.getAll("status").flatMap((s) => statusFromName(String(s)) ?? []),
      tag: String(form.get("tag") ?? "")
        .split(",")
        .map((t) => t.trim())
        .filter((t) => t !== ""),
      createdAfter: when("created_after"),
      createdBefore: when("created_before"),
      pageSize: Number(form.get("page_size")) || 50,
    };
    navigate(`/jobs${queryOfFilter(next)}`);
  };

  return (
    <>
      <div class="page-head">
        <h1>Jobs</h1>
        <LiveNote live={list.live} updatedAt={list.updatedAt} />
      </div>
      <details class="filters" open>
        <summary>Filters</summary>
        <form onSubmit={apply} key={filterKey} aria-label="Filter jobs">
          <fieldset class="statuses">
            <legend>Status</legend>
            {STATUSES.map((s) => (
              <label key={s}>
                <input
                  type="checkbox"
                  name="status"
                  value={statusName(s)}
                  defaultChecked={filter.status.includes(s)}
                />
                {statusName(s)}
              </label>
            ))}
          </fieldset>
          <div class="filter-fields">
            <label>
              Tags (all of; comma-separated)
              <input
                name="tag"
                type="text"
                defaultValue={filter.tag.join(", ")}
                placeholder="billing, nightly"
              />
            </label>
            <label>
              Created after (local time)
              <input
                name="created_after"
                type="datetime-local"
                defaultValue={localInputValue(filter.createdAfter)}
              />
            </label>
            <label>
              Created before (local time)
              <input
                name="created_before"
                type="datetime-local"
                defaultValue={localInputValue(filter.createdBefore)}
              />
            </label>
            <label>
              Per page
              <select name="page_size">
                {PAGE_SIZES.map((n) => (
                  <option key={n} value={n} selected={n === filter.pageSize}>
                    {n}
                  </option>
                ))}
              </select>
            </label>
          </div>
          <div class="buttons">
            <button type="submit">Apply filters</button>
            <button type="button" class="secondary" onClick={() => navigate("/jobs")}>
              Clear
            </button>
          </div>
        </form>
      </details>

      <ErrorNote error={list.error} what="Jobs could not be read" />
      {list.data && list.data.jobs.length === 0 && (
        <p class="muted" data-empty="jobs">
          No jobs match{tokens.length > 1 ? " on this page" : ""}.
        </p>
      )}
      {list.data && list.data.jobs.length > 0 && <JobsTable jobs={list.data.jobs} caption="Jobs" />}
      <nav class="pager" aria-label="Pages">
        <button
          type="button"
          class="secondary"
          disabled={tokens.length <= 1}
          onClick={() => setPages({ filterKey, tokens: tokens.slice(0, -1) })}
        >
          ← Newer
        </button>
        <span>Page {tokens.length}</span>
        <button
          type="button"
          class="secondary"
          disabled={list.data?.nextPageToken === undefined}
          onClick={() => {
            const next = list.data?.nextPageToken;
            if (next !== undefined) setPages({ filterKey, tokens: [...tokens, next] });
          }}
        >
          Older →
        </button>
      </nav>
    </>
  );
}
