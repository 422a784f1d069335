import { type Command, Option } from "commander";
import type { StatusCounts } from "../../../gen/jobqueue/v1/job_pb.js";
import {
  GetJobCountsResponseSchema,
  JobCountGrouping,
} from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import { GetQueueStatsResponseSchema } from "../../../gen/jobqueue/v1/queue_service_pb.js";
import { contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { type Output, restJson, table, time, writeJson } from "../output.js";

interface StatsFlags {
  queue?: string;
  groupBy?: "host" | "tag";
  limit: string;
  window: string;
  output: "table" | "json";
}

/**
 * `stats`: jobs by status, in all and by queue (GetJobCounts; `--group-by host|tag` adds the
 * largest groups of queued and running jobs); `stats --queue <name>`: that queue's counts, calls in
 * flight, the job next in line, throughput per minute and success rate (GetQueueStats).
 */
export function registerStats(program: Command): void {
  program
    .command("stats")
    .description("job counts by status and queue; with --queue, that queue's statistics")
    .option(
      "-q, --queue <name>",
      "one queue: counts, in flight, throughput per minute, success rate",
    )
    .addOption(
      new Option("--group-by <what>", "also the largest groups of queued and running jobs").choices(
        ["host", "tag"],
      ),
    )
    .option("--limit <n>", "with --group-by: at most this many groups", "20")
    .option("--window <minutes>", "with --queue: minutes of throughput (1 to 1440)", "15")
    .addOption(
      new Option("-o, --output <format>", "table or json")
        .choices(["table", "json"])
        .default("table"),
    )
    .action(async (opts: StatsFlags, cmd: Command) => {
      const { api, queues, o } = contextOf(cmd);
      if (opts.queue !== undefined && opts.groupBy === undefined) {
        const stats = await queues().getQueueStats({
          name: opts.queue,
          windowMinutes: whole(opts.window, "--window"),
        });
        if (opts.output === "json")
          return writeJson(o, "jsonl", [restJson(GetQueueStatsResponseSchema, stats)]);
        const c = stats.counts;
        const ended = stats.perMinute.reduce(
          (n, m) => n + Number(m.succeeded) + Number(m.failed) + Number(m.canceled),
          0,
        );
        const rows: [string, string][] = [
          ["queue", stats.queue],
          ["queued", String(c?.queued ?? 0)],
          ["running", `${c?.running ?? 0} (calls in flight: ${stats.running})`],
          ["succeeded", String(c?.succeeded ?? 0)],
          ["failed", String(c?.failed ?? 0)],
          ["canceled", String(c?.canceled ?? 0)],
          [
            "next in line",
            stats.oldestQueuedAt ? `due since ${time(stats.oldestQueuedAt)}` : "none",
          ],
          [
            "success rate",
            stats.successRate === undefined
              ? "none ended"
              : `${(stats.successRate * 100).toFixed(1)}%`,
          ],
          [
            "ended",
            `${ended} in the last ${stats.perMinute.length} minute${stats.perMinute.length === 1 ? "" : "s"}`,
          ],
        ];
        const w = Math.max(...rows.map(([k]) => k.length));
        o.out(rows.map(([k, v]) => `${o.paint("bold", k.padEnd(w))}  ${v}\n`).join(""));
        if (stats.perMinute.length) {
          o.out("\n");
          o.out(
            table(o, stats.perMinute, [
              { title: "MINUTE", value: (m) => time(m.minute) },
              {
                title: "SUCCEEDED",
                value: (m) => String(m.succeeded),
                style: (m) => (m.succeeded ? "green" : null),
              },
              {
                title: "FAILED",
                value: (m) => String(m.failed),
                style: (m) => (m.failed ? "red" : null),
              },
              { title: "CANCELED", value: (m) => String(m.canceled) },
            ]),
          );
        }
        return;
      }
      const counts = await api().getJobCounts({
        groupBy:
          opts.groupBy === "host"
            ? JobCountGrouping.HOST
            : opts.groupBy === "tag"
              ? JobCountGrouping.TAG
              : JobCountGrouping.UNSPECIFIED,
        queue: opts.queue ?? "",
        limit: whole(opts.limit, "--limit"),
      });
      if (opts.output === "json")
        return writeJson(o, "jsonl", [restJson(GetJobCountsResponseSchema, counts)]);
      const rows = [
        ...counts.queues.map((q) => ({ name: q.queue, counts: q.counts, all: false })),
        { name: "(all)", counts: counts.total, all: true },
      ];
      o.out(countsTable(o, rows));
      if (opts.groupBy) {
        o.out("\n");
        if (counts.groups.length === 0)
          o.out(`no queued or running jobs to group by ${opts.groupBy}\n`);
        else
          o.out(
            table(o, counts.groups, [
              { title: opts.groupBy.toUpperCase(), value: (g) => g.key, max: 60 },
              { title: "QUEUED", value: (g) => String(g.queued) },
              { title: "RUNNING", value: (g) => String(g.running) },
            ]),
          );
        if (counts.groupsCapped)
          o.err("the groups counted at most 100,000 jobs: their counts are lower bounds\n");
      }
    });
}

function countsTable(
  o: Output,
  rows: { name: string; counts: StatusCounts | undefined; all: boolean }[],
): string {
  const n = (c: StatusCounts | undefined, k: keyof Omit<StatusCounts, "$typeName" | "$unknown">) =>
    Number(c?.[k] ?? 0);
  const total = (c: StatusCounts | undefined) =>
    n(c, "queued") + n(c, "running") + n(c, "succeeded") + n(c, "failed") + n(c, "canceled");
  return table(o, rows, [
    { title: "QUEUE", value: (r) => r.name, style: (r) => (r.all ? "bold" : null) },
    { title: "QUEUED", value: (r) => String(n(r.counts, "queued")) },
    {
      title: "RUNNING",
      value: (r) => String(n(r.counts, "running")),
      style: (r) => (n(r.counts, "running") ? "cyan" : null),
    },
    {
      title: "SUCCEEDED",
      value: (r) => String(n(r.counts, "succeeded")),
      style: (r) => (n(r.counts, "succeeded") ? "green" : null),
    },
    {
      title: "FAILED",
      value: (r) => String(n(r.counts, "failed")),
      style: (r) => (n(r.counts, "failed") ? "red" : null),
    },
    {
      title: "CANCELED",
      value: (r) => String(n(r.counts, "canceled")),
      style: (r) => (n(r.counts, "canceled") ? "yellow" : null),
    },
    { title: "TOTAL", value: (r) => String(total(r.counts)) },
  ]);
}

function whole(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(`${flag}: expected a positive whole number`, EXIT.usage);
  return n;
}
