import { useState } from "preact/hooks";
import type { Api } from "../api/client.js";
import { type Access, allows } from "../api/session.js";
import { ErrorNote, LiveNote } from "../components/bits.js";
import { BulkActions, RecentOperations } from "../components/bulk-actions.js";
import { JobsTable } from "../components/jobs-table.js";
import { STATUSES, statusFromName, statusName } from "../format.js";
import {
  apiFilter,
  DATE_FIELDS,
  describeFilter,
  ERROR_CODES,
  filterFromQuery,
  type JobFilter,
  METHODS,
  PAGE_SIZES,
  queryOfFilter,
  TEXT_FIELDS,
} from "../job-filter.js";
import { usePoll } from "../live/poll.js";
import { useJobEvents } from "../live/watch-jobs.js";
import { navigate } from "../router.js";

/** "2026-11-30T17:32" in the browser's time zone, as datetime-local inputs take it. */
function localInputValue(d: Date | null): string {
  if (!d) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

/**
 * Jobs newest first, with every filter of the API and cursor paging: the server's
 * next_page_token moves forward; the tokens seen are kept to move back. The page on show follows
 * WatchJobs (jobs of the filter's statuses, tags and queue) while the tab is visible. Submitters
 * and admins select rows and act on them, or on everything the filter matches, after the
 * server's count preview.
 */
export function JobsPage(props: { api: Api; query: URLSearchParams; access: Access }) {
  const { api, access } = props;
  const filter = filterFromQuery(props.query);
  const filterKey = queryOfFilter(filter);
  // Tokens of the pages before the one shown; the last is the current page's ("" for the first).
  const [pages, setPages] = useState<{ filterKey: string; tokens: string[] }>({
    filterKey,
    tokens: [""],
  });
  const tokens = pages.filterKey === filterKey ? pages.tokens : [""];
  const pageToken = tokens[tokens.length - 1]!;
  const [selection, setSelection] = useState<{ filterKey: string; ids: Set<string> }>({
    filterKey,
    ids: new Set(),
  });
  const selected = selection.filterKey === filterKey ? selection.ids : new Set<string>();
  const select = (ids: Set<string>) => setSelection({ filterKey, ids });

  const list = usePoll(
    (signal) =>
      api.listJobs({ ...apiFilter(filter), pageSize: filter.pageSize, pageToken }, { signal }),
    `${filterKey}#${pageToken}`,
    // Read again on each event of the stream; the timer only catches what it could miss.
    { intervalMs: 30_000 },
  );
  const streaming = useJobEvents(api, { status: [], tag: filter.tag, queue: filter.queue }, () =>
    list.refresh(),
  );

  const apply = (e: Event) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? "").trim();
    const when = (name: string) => {
      const v = text(name);
      return v ? new Date(v) : null;
    };
    const next = {
      status: form.getAll("status").flatMap((s) => statusFromName(String(s)) ?? []),
      tag: text("tag")
        .split(",")
        .map((t) => t.trim())
        .filter((t) => t !== ""),
      pageSize: Number(form.get("page_size")) || 50,
    } as JobFilter;
    for (const [key, name] of TEXT_FIELDS) next[key] = text(name);
    for (const [key, name] of DATE_FIELDS) next[key] = when(name);
    navigate(`/jobs${queryOfFilter(next)}`);
  };

  const queues = usePoll((signal) => api.queues.listQueues({}, { signal }), "queue-names", {
    intervalMs: 60_000,
  });
  const jobs = list.data?.jobs ?? [];
  const canAct = allows(access, "submitter");

  return (
    <>
      <div class="page-head">
        <h1>Jobs</h1>
        <LiveNote
          live={list.live && streaming}
          visible={list.live}
          stream
          updatedAt={list.updatedAt}
        />
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
              Queue
              <select name="queue">
                <option value="" selected={filter.queue === ""}>
                  any
                </option>
                {(queues.data?.queues ?? []).map((q) => (
                  <option key={q.name} value={q.name} selected={q.name === filter.queue}>
                    {q.name}
                  </option>
                ))}
                {filter.queue && !queues.data?.queues.some((q) => q.name === filter.queue) && (
                  <option value={filter.queue} selected>
                    {filter.queue}
                  </option>
                )}
              </select>
            </label>
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
              Host
              <input
                name="host"
                type="text"
                defaultValue={filter.host}
                placeholder="api.example.com"
              />
            </label>
            <label>
              Method
              <select name="method">
                <option value="" selected={filter.method === ""}>
                  any
                </option>
                {METHODS.map((m) => (
                  <option key={m} value={m} selected={m === filter.method}>
                    {m}
                  </option>
                ))}
              </select>
            </label>
            <label>
              URL contains
              <input
                name="url_contains"
                type="text"
                defaultValue={filter.urlContains}
                placeholder="/invoices"
              />
            </label>
            <label>
              Error code
              <select name="error_code">
                <option value="" selected={filter.errorCode === ""}>
                  any
                </option>
                {ERROR_CODES.map((c) => (
                  <option key={c} value={c} selected={c === filter.errorCode}>
                    {c}
                  </option>
                ))}
              </select>
            </label>
            {DATE_FIELDS.map(([key, name]) => (
              <label key={name}>
                {name.replace("_", " ").replace(/^./, (c) => c.toUpperCase())} (local time)
                <input
                  name={name}
                  type="datetime-local"
                  defaultValue={localInputValue(filter[key])}
                />
              </label>
            ))}
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

      {canAct && (
        <BulkActions
          api={api}
          selected={[...selected]}
          filter={apiFilter(filter)}
          filterText={describeFilter(filter)}
          onDone={() => {
            select(new Set());
            list.refresh();
          }}
        />
      )}
      <ErrorNote error={list.error} what="Jobs could not be read" />
      {list.data && jobs.length === 0 && (
        <p class="muted" data-empty="jobs">
          No jobs match{tokens.length > 1 ? " on this page" : ""}.
        </p>
      )}
      {jobs.length > 0 && (
        <JobsTable
          jobs={jobs}
          caption="Jobs"
          selection={
            canAct
              ? {
                  selected,
                  toggle: (id) => {
                    const next = new Set(selected);
                    if (!next.delete(id)) next.add(id);
                    select(next);
                  },
                  toggleAll: (ids) => {
                    const all = ids.every((id) => selected.has(id));
                    const next = new Set(selected);
                    for (const id of ids) {
                      if (all) next.delete(id);
                      else next.add(id);
                    }
                    select(next);
                  },
                }
              : undefined
          }
        />
      )}
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
      {canAct && <RecentOperations api={api} />}
    </>
  );
}
