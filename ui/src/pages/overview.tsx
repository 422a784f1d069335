import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useState } from "preact/hooks";
import type { StatusCounts } from "../../../gen/jobqueue/v1/job_pb.js";
import type { GetQueueStatsResponse } from "../../../gen/jobqueue/v1/queue_service_pb.js";
import type { Api } from "../api/client.js";
import { ErrorNote, LiveNote, Section, StatusBadge } from "../components/bits.js";
import { type MinuteCounts, SuccessRateChart, ThroughputChart } from "../components/charts.js";
import { JobsTable } from "../components/jobs-table.js";
import { Link } from "../components/link.js";
import { NodesTable } from "../components/nodes-table.js";
import { duration, STATUSES, statusName } from "../format.js";
import { usePoll } from "../live/poll.js";
import { useJobEvents } from "../live/watch-jobs.js";

/** Minutes of history the charts can show. */
const WINDOWS = [15, 60, 360] as const;
/** Failed jobs listed under the charts. */
const RECENT = 5;

/** A status's count of a StatusCounts message. */
export function countOf(counts: StatusCounts | undefined, status: string): number {
  if (!counts) return 0;
  return Number((counts as unknown as Record<string, bigint>)[status] ?? 0n);
}

/**
 * Counts by status and by queue (GetJobCounts), jobs ended per minute and the success rate over a
 * window (GetQueueStats of every queue, added up), call latency by queue and the slowest
 * destinations (GetQueueStats), the latest failed jobs and the nodes. Follows
 * WatchJobs: any job's change reads it again (at most every 2 s); paused while the tab is hidden.
 */
export function OverviewPage(props: { api: Api }) {
  const { api } = props;
  const [windowMinutes, setWindow] = useState<number>(60);
  const data = usePoll(
    async (signal) => {
      const [counts, queues, failed] = await Promise.all([
        api.getJobCounts({}, { signal }),
        api.queues.listQueues({}, { signal }),
        api.listJobs({ status: [STATUSES[3]], pageSize: RECENT }, { signal }),
      ]);
      const stats = await Promise.all(
        queues.queues.map((q) =>
          api.queues.getQueueStats({ name: q.name, windowMinutes }, { signal }),
        ),
      );
      // The queues' minutes are the same minutes: add them up by position.
      const minutes: MinuteCounts[] = [];
      for (const s of stats) {
        s.perMinute.forEach((m, i) => {
          const into = minutes[i] ?? {
            at: m.minute ? timestampDate(m.minute) : new Date(),
            succeeded: 0,
            failed: 0,
            canceled: 0,
          };
          minutes[i] = into;
          into.succeeded += Number(m.succeeded);
          into.failed += Number(m.failed);
          into.canceled += Number(m.canceled);
        });
      }
      return { counts, stats, minutes, failed: failed.jobs, queues: queues.queues };
    },
    `overview:${windowMinutes}`,
    { intervalMs: 30_000, keepOnNewKey: true },
  );
  const streaming = useJobEvents(api, {}, () => data.refresh(), { coalesceMs: 2_000 });
  const nodes = usePoll((signal) => api.listNodes({}, { signal }), "nodes", {
    intervalMs: 15_000,
  });

  const minutes = data.data?.minutes ?? [];
  const ended = minutes.reduce(
    (a, m) => ({ succeeded: a.succeeded + m.succeeded, failed: a.failed + m.failed }),
    { succeeded: 0, failed: 0 },
  );
  const rate =
    ended.succeeded + ended.failed > 0 ? ended.succeeded / (ended.succeeded + ended.failed) : null;
  const total = data.data?.counts.total;

  return (
    <>
      <div class="page-head">
        <h1>Overview</h1>
        <LiveNote
          live={data.live && streaming}
          visible={data.live}
          stream
          updatedAt={data.updatedAt}
        />
      </div>
      <ErrorNote error={data.error} what="Counts could not be read" />

      <Section title="Jobs by status" id="by-status">
        <div class="status-cards">
          {STATUSES.map((status) => {
            const name = statusName(status);
            return (
              <Link key={status} href={`/jobs?status=${name}`} class={`status-card status-${name}`}>
                <StatusBadge status={status} />
                <strong data-count={name}>
                  {total ? countOf(total, name).toLocaleString("en") : "…"}
                </strong>
                <small>jobs</small>
              </Link>
            );
          })}
        </div>
      </Section>

      <Section
        title="Throughput"
        id="throughput"
        aside={
          <label class="inline">
            Window{" "}
            <select
              value={windowMinutes}
              onChange={(e) => setWindow(Number((e.currentTarget as HTMLSelectElement).value))}
            >
              {WINDOWS.map((w) => (
                <option key={w} value={w}>
                  {w < 60 ? `${w} min` : `${w / 60} h`}
                </option>
              ))}
            </select>
          </label>
        }
      >
        <div class="charts">
          <div>
            <h3>Jobs ended per minute</h3>
            <ThroughputChart minutes={minutes} />
          </div>
          <div>
            <h3>
              Success rate{" "}
              <strong data-success-rate>
                {rate === null ? "—" : `${(rate * 100).toFixed(1)} %`}
              </strong>
            </h3>
            <SuccessRateChart minutes={minutes} />
          </div>
        </div>
        <p class="muted">
          Succeeded ÷ (succeeded + failed) of the jobs that ended in the window, all queues
          together. {ended.succeeded.toLocaleString("en")} succeeded,{" "}
          {ended.failed.toLocaleString("en")} failed.
        </p>
      </Section>

      <Section
        title="Queues"
        id="queues-counts"
        aside={<Link href="/queues">Manage queues →</Link>}
      >
        {data.data && (
          <div class="overflow-auto">
            <table class="striped counts">
              <caption class="visually-hidden">Jobs by queue and status</caption>
              <thead>
                <tr>
                  <th scope="col">Queue</th>
                  {STATUSES.map((s) => (
                    <th scope="col" key={s} class="num">
                      {statusName(s)}
                    </th>
                  ))}
                  <th scope="col" class="num wide-only">
                    Success rate
                  </th>
                </tr>
              </thead>
              <tbody>
                {data.data.counts.queues.map((q) => {
                  const stats = data.data?.stats.find((s) => s.queue === q.queue);
                  const paused = data.data?.queues.find((x) => x.name === q.queue)?.paused;
                  return (
                    <tr key={q.queue} data-queue={q.queue}>
                      <th scope="row">
                        <Link href={`/jobs?queue=${encodeURIComponent(q.queue)}`}>{q.queue}</Link>
                        {paused && <span class="badge paused">paused</span>}
                      </th>
                      {STATUSES.map((s) => (
                        <td key={s} class="num">
                          {countOf(q.counts, statusName(s)).toLocaleString("en")}
                        </td>
                      ))}
                      <td class="num wide-only">
                        {stats?.successRate === undefined
                          ? "—"
                          : `${(stats.successRate * 100).toFixed(1)} %`}
                      </td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
      </Section>

      <Section title="Latency" id="latency">
        <p class="muted">
          How long the calls of the jobs that ended in the window took (each job's last attempt), by
          queue; and the destinations whose calls took longest.
        </p>
        {data.data && <LatencyTables stats={data.data.stats} />}
      </Section>

      {data.data && data.data.failed.length > 0 && (
        <Section title="Latest failed" id="latest-failed">
          <JobsTable jobs={data.data.failed} compact caption="Latest failed jobs" />
          <p>
            <Link href="/jobs?status=failed">All failed jobs →</Link>
          </p>
        </Section>
      )}

      <Section title="Nodes" id="nodes">
        <ErrorNote error={nodes.error} what="Nodes could not be read" />
        {nodes.data && <NodesTable nodes={nodes.data.nodes} />}
      </Section>
    </>
  );
}

/** Percentiles by queue, and the slowest destinations of every queue together (by p90). */
function LatencyTables(props: { stats: GetQueueStatsResponse[] }) {
  const withLatency = props.stats.filter((s) => s.latency && s.latency.samples > 0n);
  if (withLatency.length === 0) return <p class="muted">No call ended in the window.</p>;
  const slowest = props.stats
    .flatMap((s) => s.slowestDestinations.map((d) => ({ queue: s.queue, ...d })))
    .sort((a, b) => (b.latency?.p90Ms ?? 0) - (a.latency?.p90Ms ?? 0))
    .slice(0, 5);
  return (
    <div class="charts">
      <div class="overflow-auto">
        <table class="striped latency">
          <caption>Call durations by queue</caption>
          <thead>
            <tr>
              <th scope="col">Queue</th>
              <th scope="col" class="num">
                Calls
              </th>
              <th scope="col" class="num">
                p50
              </th>
              <th scope="col" class="num">
                p90
              </th>
              <th scope="col" class="num">
                p99
              </th>
              <th scope="col" class="num wide-only">
                Max
              </th>
            </tr>
          </thead>
          <tbody>
            {withLatency.map((s) => (
              <tr key={s.queue} data-latency-queue={s.queue}>
                <th scope="row">{s.queue}</th>
                <td class="num">{s.latency!.samples.toLocaleString("en")}</td>
                <td class="num">{duration(s.latency!.p50Ms)}</td>
                <td class="num">{duration(s.latency!.p90Ms)}</td>
                <td class="num">{duration(s.latency!.p99Ms)}</td>
                <td class="num wide-only">{duration(s.latency!.maxMs)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <div class="overflow-auto">
        <table class="striped slowest">
          <caption>Slowest destinations (p90; 3 calls or more)</caption>
          <thead>
            <tr>
              <th scope="col">Host</th>
              <th scope="col" class="wide-only">
                Queue
              </th>
              <th scope="col" class="num">
                Calls
              </th>
              <th scope="col" class="num">
                p90
              </th>
              <th scope="col" class="num">
                Max
              </th>
            </tr>
          </thead>
          <tbody>
            {slowest.length === 0 && (
              <tr>
                <td colSpan={5} class="muted">
                  No destination had 3 calls in the window.
                </td>
              </tr>
            )}
            {slowest.map((d) => (
              <tr key={`${d.queue}|${d.host}`} data-slow-host={d.host}>
                <th scope="row">
                  <Link href={`/jobs?host=${encodeURIComponent(d.host)}`}>{d.host || "—"}</Link>
                </th>
                <td class="wide-only">{d.queue}</td>
                <td class="num">{(d.latency?.samples ?? 0n).toLocaleString("en")}</td>
                <td class="num">{duration(d.latency?.p90Ms ?? 0)}</td>
                <td class="num">{duration(d.latency?.maxMs ?? 0)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </div>
  );
}
