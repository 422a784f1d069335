import type { Job } from "../../../gen/jobqueue/v1/job_pb.js";
import { StatusBadge, Time } from "./bits.js";
import { Link } from "./link.js";

/** Jobs as rows: each id links to the job's page. */
export function JobsTable(props: { jobs: Job[]; compact?: boolean; caption: string }) {
  const { jobs, compact } = props;
  return (
    <div class="overflow-auto">
      <table class="striped jobs">
        <caption class="visually-hidden">{props.caption}</caption>
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Status</th>
            <th scope="col">Request</th>
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
