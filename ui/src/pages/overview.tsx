import type { Job } from "../../../gen/jobqueue/v1/job_pb.js";
import type { Api } from "../api/client.js";
import { ErrorNote, LiveNote, Section, StatusBadge } from "../components/bits.js";
import { JobsTable } from "../components/jobs-table.js";
import { Link } from "../components/link.js";
import { NodesTable } from "../components/nodes-table.js";
import { STATUSES, statusName } from "../format.js";
import { usePoll } from "../live/poll.js";

/** Jobs shown per status on the overview. */
const RECENT = 5;

interface Recent {
  byStatus: { status: (typeof STATUSES)[number]; jobs: Job[]; more: boolean }[];
}

/**
 * What the API gives today: the latest jobs of each status (ListJobs) and the nodes (ListNodes).
 * Counts, throughput, success rate and latency take the marked slots once the server offers
 * GetJobCounts and GetQueueStats (issue 10); the page then follows WatchJobs (issue 8).
 */
export function OverviewPage(props: { api: Api }) {
  const { api } = props;
  const recent = usePoll<Recent>(
    async (signal) => ({
      byStatus: await Promise.all(
        STATUSES.map(async (status) => {
          const res = await api.listJobs({ status: [status], pageSize: RECENT }, { signal });
          return { status, jobs: res.jobs, more: res.nextPageToken !== undefined };
        }),
      ),
    }),
    "overview",
  );
  const nodes = usePoll((signal) => api.listNodes({}, { signal }), "nodes");

  return (
    <>
      <div class="page-head">
        <h1>Overview</h1>
        <LiveNote live={recent.live} updatedAt={recent.updatedAt} />
      </div>

      <Section title="Jobs by status" id="by-status">
        <ErrorNote error={recent.error} what="Jobs could not be read" />
        {/* Slot: counts by status and queue from GetJobCounts (issue 10). Until then each card
            says how many of the latest it shows, and whether there are more. */}
        <div class="status-cards">
          {STATUSES.map((status) => {
            const entry = recent.data?.byStatus.find((b) => b.status === status);
            const n = entry?.jobs.length ?? 0;
            return (
              <Link
                key={status}
                href={`/jobs?status=${statusName(status)}`}
                class={`status-card status-${statusName(status)}`}
              >
                <StatusBadge status={status} />
                <strong data-count={statusName(status)}>
                  {entry === undefined ? "…" : entry.more ? `${n}+` : n}
                </strong>
                <small>{entry?.more ? "latest shown; more exist" : "jobs"}</small>
              </Link>
            );
          })}
        </div>
        <p class="muted slot" data-slot="counts">
          Exact counts, throughput, success rate and latency appear here once the server offers job
          counts and queue statistics.
        </p>
      </Section>

      {STATUSES.map((status) => {
        const entry = recent.data?.byStatus.find((b) => b.status === status);
        if (!entry || entry.jobs.length === 0) return null;
        return (
          <Section
            key={status}
            title={`Latest ${statusName(status)}`}
            id={`latest-${statusName(status)}`}
          >
            <JobsTable jobs={entry.jobs} compact caption={`Latest ${statusName(status)} jobs`} />
            {entry.more && (
              <p>
                <Link href={`/jobs?status=${statusName(status)}`}>
                  All {statusName(status)} jobs →
                </Link>
              </p>
            )}
          </Section>
        );
      })}

      <Section title="Nodes" id="nodes">
        <ErrorNote error={nodes.error} what="Nodes could not be read" />
        {nodes.data && <NodesTable nodes={nodes.data.nodes} />}
      </Section>
    </>
  );
}
