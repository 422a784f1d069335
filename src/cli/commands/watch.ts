import { type Command, Option } from "commander";
import {
  type Job,
  type JobEvent,
  JobEventSchema,
  JobEventType,
  JobSchema,
} from "../../../gen/jobqueue/v1/job_pb.js";
import { contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { followJob, watchEvents } from "../follow.js";
import {
  type Output,
  restJson,
  STATUS_NAMES,
  statusFromName,
  statusName,
  statusStyle,
  time,
  writeJson,
} from "../output.js";
import { changeLine, exitOfJob } from "./jobs.js";

interface WatchFlags {
  status?: string[];
  tag?: string[];
  queue?: string;
  cursor?: string;
  output: "table" | "jsonl";
}

/**
 * `watch <job-id>`: one job, live, until it ends (exit by its outcome). `watch --status/--tag/
 * --queue` (or none: every job): the event stream of the jobs that match, live until Ctrl-C.
 * Both read the event stream (WatchJobs), not a poll, and resume from the last cursor after a
 * disconnect.
 */
export function registerWatch(program: Command): void {
  program
    .command("watch")
    .description(
      "follow a job live until it ends (exit 0 succeeded, 1 failed, 7 canceled), or the events of the jobs matching a filter until Ctrl-C",
    )
    .argument("[job-id]")
    .option(
      "-s, --status <status...>",
      `only events after which the job is in one of these statuses (${STATUS_NAMES.join(", ")})`,
    )
    .option("-t, --tag <tag...>", "only jobs carrying every one of these tags")
    .option("-q, --queue <name>", "only jobs of this queue")
    .option(
      "--cursor <cursor>",
      "start after this cursor (an event's cursor from an earlier watch) instead of now",
    )
    .addOption(
      new Option(
        "-o, --output <format>",
        "table, or jsonl (one job per change, or one event per line)",
      )
        .choices(["table", "jsonl"])
        .default("table"),
    )
    .action(async (jobId: string | undefined, opts: WatchFlags, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      const filtered =
        (opts.status?.length ?? 0) > 0 || (opts.tag?.length ?? 0) > 0 || opts.queue !== undefined;
      if (jobId !== undefined) {
        if (filtered || opts.cursor !== undefined)
          throw new CliError(
            "give a job id, or filter flags (--status, --tag, --queue), not both",
            EXIT.usage,
          );
        const job = await followJob(api(), jobId, (j, ev) => {
          if (opts.output === "jsonl") {
            if (ev?.type !== JobEventType.PROGRESS) writeJson(o, "jsonl", [restJson(JobSchema, j)]);
          } else if (ev?.type === JobEventType.PROGRESS) {
            o.out(`${progressLine(o, j, ev)}\n`);
          } else o.out(`${changeLine(o, j)}\n`);
        });
        process.exitCode = exitOfJob(job);
        return;
      }

      const status = (opts.status ?? [])
        .flatMap((s) => s.split(","))
        .filter((s) => s !== "")
        .map((s) => {
          const st = statusFromName(s);
          if (st === undefined)
            throw new CliError(
              `--status: ${JSON.stringify(s)} is not one of ${STATUS_NAMES.join(", ")}`,
              EXIT.usage,
            );
          return st;
        });
      const stop = new AbortController();
      let cursor = opts.cursor ?? "";
      const onSigint = () => stop.abort();
      process.once("SIGINT", onSigint);
      try {
        const items = watchEvents(
          api(),
          { status, tag: opts.tag ?? [], queue: opts.queue ?? "" },
          { afterCursor: cursor, signal: stop.signal },
        );
        for await (const item of items) {
          if (item.kind === "opened") {
            cursor = item.cursor;
            if (!item.resumed) o.err(`watching from cursor ${item.cursor} (Ctrl-C stops)\n`);
            continue;
          }
          cursor = item.event.cursor;
          if (opts.output === "jsonl")
            writeJson(o, "jsonl", [restJson(JobEventSchema, item.event)]);
          else o.out(`${eventLine(o, item.event)}\n`);
        }
      } catch (err) {
        if (!stop.signal.aborted) throw err;
      } finally {
        process.off("SIGINT", onSigint);
      }
      o.err(`stopped; resume with --cursor ${cursor}\n`);
      process.exitCode = EXIT.interrupted;
    });
}

const TYPES: Record<JobEventType, string> = {
  [JobEventType.UNSPECIFIED]: "unknown",
  [JobEventType.QUEUED]: "queued",
  [JobEventType.SCHEDULED]: "scheduled",
  [JobEventType.WAITING]: "waiting",
  [JobEventType.RUNNING]: "running",
  [JobEventType.PROGRESS]: "progress",
  [JobEventType.ATTEMPT_ENDED]: "attempt_ended",
  [JobEventType.RETRY_SCHEDULED]: "retry_scheduled",
  [JobEventType.SUCCEEDED]: "succeeded",
  [JobEventType.FAILED]: "failed",
  [JobEventType.CANCELED]: "canceled",
  [JobEventType.EXPIRED]: "expired",
  [JobEventType.DELETED]: "deleted",
};

/** One line per event: time, job, what happened, the status after it, and the details. */
export function eventLine(o: Output, ev: JobEvent): string {
  const details: string[] = [];
  if (ev.attempt !== undefined) details.push(`attempt ${ev.attempt}`);
  if (ev.node) details.push(`on ${ev.node}`);
  if (ev.responseStatus !== undefined) details.push(`HTTP ${ev.responseStatus}`);
  if (ev.progress) details.push(progressText(ev));
  if (ev.errorCode || ev.error) details.push([ev.errorCode, ev.error].filter(Boolean).join(": "));
  if (ev.runAt && (ev.type === JobEventType.SCHEDULED || ev.type === JobEventType.RETRY_SCHEDULED))
    details.push(`due ${time(ev.runAt)}`);
  if (ev.queue && ev.queue !== "default") details.push(`queue ${ev.queue}`);
  const type = o.paint(statusStyle(ev.status) ?? "reset", (TYPES[ev.type] ?? "unknown").padEnd(15));
  return `${time(ev.at)}  ${ev.jobId}  ${type}  ${statusName(ev.status).padEnd(9)}  ${details.join("  ")}`.trimEnd();
}

function progressLine(o: Output, job: Job, ev: JobEvent): string {
  return `${changeLine(o, { ...job, updatedAt: ev.at })}  ${progressText(ev)}`;
}

/** How far a call has come: `body HTTP 200 1.2 MiB`. */
export function progressText(ev: JobEvent): string {
  const p = ev.progress;
  if (!p) return "";
  const parts = [p.phase];
  if (p.responseStatus !== undefined) parts.push(`HTTP ${p.responseStatus}`);
  if (p.bytes !== undefined) parts.push(bytes(Number(p.bytes)));
  return parts.join(" ");
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}
