import type { Job } from "../../../gen/jobqueue/v1/job_pb.js";
import { StatusBadge, Time } from "./bits.js";
import { Link } from "./link.js";

/** Which rows are selected, for bulk actions. */
export interface Selection {
  selected: ReadonlySet<string>;
  toggle(jobId: string): void;
  /** Selects every row given, or none when all of them are selected. */
  toggleAll(jobIds: string[]): void;
}

/** Jobs as rows: each id links to the job's page; with `selection`, each row has a checkbox. */
export function JobsTable(props: {
  jobs: Job[];
  compact?: boolean;
  caption: string;
  selection?: Selection;
}) {
  const { jobs, compact, selection } = props;
  const ids = jobs.map((j) => j.jobId);
  const allSelected = selection !== undefined && ids.every((id) => selection.selected.has(id));
  return (
    <div class="overflow-auto">
      <table class="striped jobs">
        <caption class="visually-hidden">{props.caption}</caption>
        <thead>
          <tr>
            {selection && (
              <th scope="col" class="select">
                <input
                  type="checkbox"
                  aria-label="Select every job on this page"
                  checked={allSelected}
                  onChange={() => selection.toggleAll(ids)}
                />
              </th>
            )}
            <th scope="col">Job</th>
            <th scope="col">Status</th>
            <th scope="col">Request</th>
            {!compact && (
              <th scope="col" class="wide-only">
                Queue
              </th>
            )}
            {!compact && (
              <th scope="col" class="wide-only">
                Attempts
              </th>
            )}
            {!compact && (
              <th scope="col" class="wide-only">
                Tags
              </th>
            )}
            <th scope="col">Created</th>
            {!compact && (
              <th scope="col" class="xwide-only">
                Updated
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {jobs.map((job) => (
            <tr key={job.jobId} data-job-id={job.jobId}>
              {selection && (
                <td class="select">
                  <input
                    type="checkbox"
                    aria-label={`Select ${job.jobId}`}
                    checked={selection.selected.has(job.jobId)}
                    onChange={() => selection.toggle(job.jobId)}
                  />
                </td>
              )}
              <td>
                <Link href={`/jobs/${encodeURIComponent(job.jobId)}`} class="job-id">
                  {job.jobId}
                </Link>
              </td>
              <td>
                <StatusBadge status={job.status} />
              </td>
              <td class="request-cell" title={`${job.method} ${job.url}`}>
                <span class="method">{job.method}</span> <span class="url">{job.url}</span>
              </td>
              {!compact && <td class="wide-only">{job.queue}</td>}
              {!compact && (
                <td class="wide-only">
                  {job.attempt} / {job.maxAttempts}
                </td>
              )}
              {!compact && (
                <td class="wide-only">
                  {job.tags.map((t) => (
                    <span class="tag" key={t}>
                      {t}
                    </span>
                  ))}
                </td>
              )}
              <td>
                <Time ts={job.createdAt} />
              </td>
              {!compact && (
                <td class="xwide-only">
                  <Time ts={job.updatedAt} />
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
