import { writeFileSync } from "node:fs";
import { type Command, Option } from "commander";
import {
  AttemptSchema,
  BodyEncoding,
  type Job,
  JobSchema,
} from "../../../gen/jobqueue/v1/job_pb.js";
import {
  GetJobResultResponseSchema,
  ListJobAttemptsResponseSchema,
} from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import { contextOf, formatOf } from "../context.js";
import { CliError, EXIT, type ExitCode } from "../exit-codes.js";
import { addConditionOptions, type ConditionFlags, conditionsOf } from "../job-filter.js";
import {
  isTerminal,
  ms,
  type Output,
  outcomeName,
  restJson,
  statusName,
  statusStyle,
  table,
  time,
  toJson,
  ValueSchema,
  writeJson,
} from "../output.js";

const outputOption = () =>
  new Option("-o, --output <format>", "table, json or jsonl")
    .choices(["table", "json", "jsonl"])
    .default("table");

/** Registers the commands that read jobs: get, result, attempts, list. */
export function registerJobCommands(program: Command): void {
  program
    .command("get")
    .description("show a job")
    .argument("<job-id>")
    .addOption(outputOption())
    .action(async (jobId: string, opts: { output: string }, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      const { job } = await api().getJob({ jobId });
      if (!job) throw new CliError("the server answered no job", EXIT.error);
      const format = formatOf(opts.output);
      if (format !== "table") return writeJson(o, format, [restJson(JobSchema, job)]);
      o.out(describeJob(o, job));
    });

  program
    .command("result")
    .description("show a job's latest response (or error); --body writes the raw body")
    .argument("<job-id>")
    .option(
      "--body [file]",
      "write the response body (binary and text as received, JSON re-serialized) to a file, or stdout",
    )
    .addOption(outputOption().choices(["table", "json"]))
    .action(async (jobId: string, opts: { body?: string | true; output: string }, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      const r = await api().getJobResult({ jobId });
      if (opts.body !== undefined) {
        if (r.responseStatus === undefined && r.responseBody === undefined) {
          throw new CliError(`job ${jobId} has no response yet`, EXIT.conflict);
        }
        const bytes = bodyBytes(
          r.responseBodyEncoding,
          r.responseBody ? toJson(ValueSchema, r.responseBody) : null,
        );
        if (opts.body === true || opts.body === "-") process.stdout.write(bytes);
        else writeFileSync(opts.body, bytes);
        if (r.truncated)
          o.err("note: the body was cut at the server's JOBQUEUE_RESULT_MAX_BYTES\n");
        return;
      }
      const format = formatOf(opts.output, ["table", "json"]);
      if (format === "json")
        return writeJson(o, "jsonl", [restJson(GetJobResultResponseSchema, r)]);
      const rows: [string, string][] = [
        ["job", r.jobId],
        ["status", statusName(r.status)],
        ["attempt", String(r.attempt)],
        ["http status", r.responseStatus === undefined ? "(no answer)" : String(r.responseStatus)],
        ["took", ms(r.durationMs)],
        ["finished", time(r.finishedAt)],
      ];
      if (r.error) rows.push(["error", r.error]);
      if (r.truncated) rows.push(["truncated", "yes (JOBQUEUE_RESULT_MAX_BYTES)"]);
      o.out(facts(o, rows));
      const headers = Object.entries(r.responseHeaders).sort(([a], [b]) => a.localeCompare(b));
      if (headers.length) {
        o.out(`\n${o.paint("bold", "headers")}\n`);
        for (const [k, v] of headers) o.out(`  ${k}: ${v}\n`);
      }
      if (r.responseBody) {
        const body = toJson(ValueSchema, r.responseBody);
        o.out(`\n${o.paint("bold", "body")}\n`);
        if (r.responseBodyEncoding === BodyEncoding.BASE64) {
          o.out(
            `  (binary, ${bodyBytes(r.responseBodyEncoding, body).length} bytes: --body FILE writes it)\n`,
          );
        } else if (typeof body === "string") {
          o.out(`${body}${body.endsWith("\n") ? "" : "\n"}`);
        } else {
          o.out(`${JSON.stringify(body, null, 2)}\n`);
        }
      }
    });

  program
    .command("attempts")
    .description("list every attempt of a job, oldest first")
    .argument("<job-id>")
    .addOption(outputOption())
    .action(async (jobId: string, opts: { output: string }, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      const res = await api().listJobAttempts({ jobId });
      const format = formatOf(opts.output);
      if (format === "json") {
        return writeJson(o, "jsonl", [restJson(ListJobAttemptsResponseSchema, res)]);
      }
      if (format === "jsonl")
        return writeJson(
          o,
          "jsonl",
          res.attempts.map((a) => restJson(AttemptSchema, a)),
        );
      if (res.attempts.length === 0) {
        o.err("no attempt has started yet\n");
        return;
      }
      o.out(
        table(o, res.attempts, [
          { title: "#", value: (a) => String(a.attempt) },
          { title: "OUTCOME", value: (a) => outcomeName(a.outcome) },
          {
            title: "HTTP",
            value: (a) => (a.responseStatus === undefined ? "" : String(a.responseStatus)),
          },
          { title: "NODE", value: (a) => a.node ?? "" },
          { title: "STARTED", value: (a) => time(a.startedAt) },
          { title: "TOOK", value: (a) => ms(a.durationMs) },
          { title: "ERROR", value: (a) => [a.errorCode, a.error].filter(Boolean).join(": ") },
        ]),
      );
    });

  addConditionOptions(program.command("list").description("list jobs, newest first"))
    .option("-n, --limit <n>", "at most this many jobs, over as many pages as it takes", "50")
    .option("--all", "every job that matches (ignores --limit)")
    .option("--page-size <n>", "jobs per call (1 to the server's JOBQUEUE_MAX_PAGE_SIZE)", "200")
    .option("--page-token <token>", "start from this page (a next_page_token)")
    .option("--schedule <schedule-id>", "only jobs enqueued by this schedule")
    .addOption(outputOption())
    .action(async (opts: ListFlags, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      const format = formatOf(opts.output);
      const request = conditionsOf(opts as ConditionFlags);
      const limit = opts.all ? Number.POSITIVE_INFINITY : positive(opts.limit, "--limit");
      const pageSize = positive(opts.pageSize, "--page-size");
      const jobs: Job[] = [];
      let count = 0;
      let token: string | undefined = opts.pageToken ?? "";
      while (token !== undefined && count < limit) {
        const res = await api().listJobs({
          ...request,
          scheduleId: opts.schedule ?? "",
          pageSize: Math.min(pageSize, limit - count),
          pageToken: token,
        });
        count += res.jobs.length;
        token = res.nextPageToken;
        // Streamed as it comes for jsonl: a long --all listing shows at once and stays small.
        if (format === "jsonl")
          writeJson(
            o,
            "jsonl",
            res.jobs.map((j) => restJson(JobSchema, j)),
          );
        else jobs.push(...res.jobs);
      }
      if (format === "json")
        return writeJson(
          o,
          "json",
          jobs.map((j) => restJson(JobSchema, j)),
        );
      if (format === "jsonl") return;
      if (jobs.length === 0) o.err("no jobs match\n");
      else o.out(jobsTable(o, jobs));
      if (token !== undefined) o.err(`more jobs: --page-token ${token}\n`);
    });
}

interface ListFlags extends ConditionFlags {
  limit: string;
  all?: boolean;
  pageSize: string;
  pageToken?: string;
  schedule?: string;
  output: string;
}

/** The exit code a job's end maps to (watch, submit --wait). */
export function exitOfJob(job: Job): ExitCode {
  const s = statusName(job.status);
  return s === "succeeded" ? EXIT.ok : s === "canceled" ? EXIT.jobCanceled : EXIT.jobFailed;
}

/** One line per change: time, status, attempt, and the error once the job has failed. */
export function changeLine(o: Output, job: Job): string {
  const at = time(job.updatedAt);
  const status = o.paint(statusStyle(job.status) ?? "reset", statusName(job.status).padEnd(9));
  const attempt = `attempt ${job.attempt}/${job.maxAttempts}`;
  const err =
    job.lastError && (isTerminal(job.status) || job.attempt > 0) ? `  ${job.lastError}` : "";
  return `${at}  ${job.jobId}  ${status}  ${attempt}${err}`;
}

export function jobsTable(o: Output, jobs: Job[]): string {
  return table(o, jobs, [
    { title: "JOB", value: (j) => j.jobId },
    { title: "STATUS", value: (j) => statusName(j.status), style: (j) => statusStyle(j.status) },
    { title: "ATTEMPT", value: (j) => `${j.attempt}/${j.maxAttempts}` },
    { title: "METHOD", value: (j) => j.method },
    { title: "URL", value: (j) => j.url, max: 60 },
    { title: "TAGS", value: (j) => j.tags.join(","), max: 30 },
    { title: "CREATED", value: (j) => time(j.createdAt) },
  ]);
}

function describeJob(o: Output, job: Job): string {
  const rows: [string, string][] = [
    ["job", job.jobId],
    ["status", o.paint(statusStyle(job.status) ?? "reset", statusName(job.status))],
    ["attempts", `${job.attempt} of ${job.maxAttempts}`],
    ["request", `${job.method} ${job.url}`],
    ["created", time(job.createdAt)],
  ];
  if (job.scheduledAt) rows.push(["scheduled", time(job.scheduledAt)]);
  if (job.startedAt) rows.push(["started", time(job.startedAt)]);
  if (job.nextRunAt && !isTerminal(job.status)) rows.push(["next run", time(job.nextRunAt)]);
  if (job.finishedAt) rows.push(["finished", time(job.finishedAt)]);
  if (job.expiresAt) rows.push(["deleted at", time(job.expiresAt)]);
  rows.push(["priority", String(job.priority)], ["timeout", `${job.timeoutSec} s`]);
  if (job.tags.length) rows.push(["tags", job.tags.join(", ")]);
  if (job.owner) rows.push(["owner", job.owner]);
  if (job.idempotencyKey) rows.push(["idempotency", job.idempotencyKey]);
  if (job.callbackUrl) rows.push(["callback url", job.callbackUrl]);
  if (job.callbackJobId) rows.push(["callback job", job.callbackJobId]);
  if (job.callbackOf) rows.push(["callback of", job.callbackOf]);
  // Whether a call is signed, never with what: the secret stays on the server.
  if (job.sign) rows.push(["signed", job.signingSecret ? "yes (the job's own secret)" : "yes"]);
  if (job.scheduleId) rows.push(["schedule", job.scheduleId]);
  if (job.scheduleTick) rows.push(["schedule tick", time(job.scheduleTick)]);
  if (job.lastError) rows.push(["last error", job.lastError]);
  for (const [k, v] of Object.entries(job.headers)) rows.push([`header`, `${k}: ${v}`]);
  for (const [k, v] of Object.entries(job.params)) rows.push([`param`, `${k}=${v}`]);
  return facts(o, rows);
}

function facts(o: Output, rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${o.paint("bold", k.padEnd(w))}  ${v}\n`).join("");
}

/** The body as the target sent it: JSON re-serialized, text as UTF-8, base64 decoded. */
function bodyBytes(encoding: BodyEncoding, body: unknown): Buffer {
  if (body === null || body === undefined) return Buffer.alloc(0);
  if (encoding === BodyEncoding.BASE64 && typeof body === "string")
    return Buffer.from(body, "base64");
  if (typeof body === "string" && encoding === BodyEncoding.TEXT) return Buffer.from(body, "utf8");
  return Buffer.from(JSON.stringify(body), "utf8");
}

function positive(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(`${flag}: expected a positive whole number`, EXIT.usage);
  return n;
}
