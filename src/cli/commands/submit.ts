import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { SingleBar } from "cli-progress";
import type { Command } from "commander";
import { type Job, JobEventType } from "../../../gen/jobqueue/v1/job_pb.js";
import {
  type EnqueueJobRequest,
  EnqueueJobResponseSchema,
  EnqueueJobsRequestSchema,
} from "../../../gen/jobqueue/v1/job_queue_service_pb.js";
import { contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { followJob } from "../follow.js";
import { type JobFlags, jobJsonOfFlags, jobOfJson, readJobsFile } from "../job-input.js";
import {
  isTerminal,
  type Output,
  restJson,
  statusName,
  statusStyle,
  writeJson,
} from "../output.js";
import { changeLine, exitOfJob } from "./jobs.js";
import { progressText } from "./watch.js";

const collect = (v: string, all: string[] = []) => [...all, v];

/** Jobs from a file at least this many show a progress bar (on a terminal). */
const PROGRESS_FROM = 100;

/**
 * `submit`: one job from flags, or many from a JSON / JSON array / NDJSON file (the flags then
 * fill in what a line leaves out), sent with EnqueueJobs in batches. Prints each job id; with
 * `--wait`, follows the job until it ends and exits by its outcome.
 */
export function registerSubmit(program: Command): void {
  program
    .command("submit")
    .description("submit a job (from flags, or many from a JSON/NDJSON file)")
    .argument("[url]", "the URL to call")
    .option("-X, --method <method>", "GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS (default GET)")
    .option("-H, --header <name: value>", "a request header (repeatable)", collect)
    .option("-p, --param <name=value>", "a query parameter (repeatable)", collect)
    .option("-d, --data <json>", "a JSON body; @file reads it from a file, @- from stdin")
    .option("--data-raw <text>", "a text body sent as it is; @file reads it")
    .option("--timeout <seconds>", "bound on one attempt")
    .option("--priority <n>", "higher runs first (-1000 to 1000)")
    .option("--max-attempts <n>", "1 to 100")
    .option("--backoff <strategy>", "fixed, linear or exponential")
    .option("--backoff-seconds <s>", "the backoff base")
    .option("--scheduled-at <time>", "not before this RFC 3339 time, or +30s / +5m / +2h")
    .option("--ttl <seconds>", "delete the job this long after it ends")
    .option("-t, --tag <tag>", "a tag (repeatable)", collect)
    .option("--idempotency-key <key>", "a repeated submit with this key returns the first job")
    .option(
      "--secret-header <name>",
      "also keep this header encrypted and masked (repeatable)",
      collect,
    )
    .option("--follow-redirects", "follow 3xx redirects")
    .option("--max-redirects <n>", "1 to 10")
    .option("--rate-limit-key <key>", "share a rate and concurrency budget under this key")
    .option(
      "--callback-url <url>",
      "POST the job's result here once it ends (signed when a secret is known)",
    )
    .option("--sign", "sign the call per Standard Webhooks (with your key's signing secrets)")
    .option(
      "--signing-secret <secret>",
      "a whsec_… secret to sign the call and the callback with (implies --sign; never shown back)",
    )
    .option(
      "-f, --file <path>",
      "jobs from a file: one JSON object, a JSON array, or NDJSON; - for stdin",
    )
    .option(
      "--batch-size <n>",
      "jobs per EnqueueJobs call (up to the server's JOBQUEUE_MAX_BATCH_SIZE)",
      "500",
    )
    .option("-w, --wait", "follow the job until it ends; exit 0 succeeded, 1 failed, 7 canceled")
    .option("--no-progress", "no progress bar, even on a terminal")
    .option("-o, --output <format>", "ids (one per line), json or jsonl", "ids")
    .action(async (url: string | undefined, opts: JobFlags & SubmitOptions, cmd: Command) => {
      const { api, o } = contextOf(cmd);
      if (!["ids", "json", "jsonl"].includes(opts.output)) {
        throw new CliError("--output: use one of ids, json, jsonl", EXIT.usage);
      }
      const flags = jobJsonOfFlags(url, opts);
      const sources = opts.file
        ? readJobsFile(opts.file)
        : url === undefined
          ? (() => {
              throw new CliError("give the URL to call, or --file", EXIT.usage);
            })()
          : [{ json: {}, where: "the flags" }];
      // Every job is checked before any is sent: a bad line stops the run, not half of it.
      const jobs = sources.map((s) => jobOfJson(s.json, flags, s.where));
      if (jobs.length === 0) throw new CliError(`${opts.file}: no jobs in it`, EXIT.usage);
      if (opts.wait && jobs.length !== 1) {
        throw new CliError("--wait follows one job; this would submit several", EXIT.usage);
      }
      const batchSize = Number(opts.batchSize);
      if (!Number.isInteger(batchSize) || batchSize < 1) {
        throw new CliError("--batch-size: expected a positive whole number", EXIT.usage);
      }

      const bar =
        opts.progress && o.interactive && jobs.length >= PROGRESS_FROM
          ? new SingleBar({
              format:
                "submitting {bar} {percentage}% | {value}/{total} jobs | {rate}/s | eta {eta}s",
              stream: process.stderr,
              hideCursor: true,
              etaBuffer: 20,
            })
          : null;
      bar?.start(jobs.length, 0, { rate: 0 });
      const started = performance.now();
      const ids: string[] = [];
      const replies: unknown[] = [];
      try {
        for (let i = 0; i < jobs.length; i += batchSize) {
          const batch = jobs.slice(i, i + batchSize);
          for (const r of await send(api(), batch, i)) {
            ids.push(r.jobId);
            if (opts.output === "ids") o.out(`${r.jobId}\n`);
            else if (opts.output === "jsonl")
              writeJson(o, "jsonl", [restJson(EnqueueJobResponseSchema, r)]);
            else replies.push(restJson(EnqueueJobResponseSchema, r));
          }
          const done = i + batch.length;
          bar?.update(done, { rate: Math.round(done / ((performance.now() - started) / 1000)) });
        }
      } finally {
        bar?.stop();
      }
      if (opts.output === "json") {
        o.out(`${JSON.stringify(replies.length === 1 ? replies[0] : replies, null, 2)}\n`);
      }
      if (jobs.length > 1) o.err(`submitted ${jobs.length} jobs\n`);
      if (opts.wait) {
        const job = await waitWithStatusLine(o, () => api(), ids[0]!);
        process.exitCode = exitOfJob(job);
      }
    });
}

interface SubmitOptions {
  file?: string;
  batchSize: string;
  wait?: boolean;
  progress: boolean;
  output: string;
}

async function send(
  api: ReturnType<ReturnType<typeof contextOf>["api"]>,
  batch: EnqueueJobRequest[],
  offset: number,
) {
  if (batch.length === 1) return [await api.enqueueJob(batch[0]!)];
  try {
    return (await api.enqueueJobs(create(EnqueueJobsRequestSchema, { jobs: batch }))).jobs;
  } catch (err) {
    // The server names the job by its index in the batch: say which job of the file it is.
    const cerr = ConnectError.from(err);
    const m = /^jobs\[(\d+)\]/.exec(cerr.rawMessage);
    if (cerr.code === Code.InvalidArgument && m) {
      const n = offset + Number(m[1]) + 1;
      throw new CliError(`job ${n}: ${cerr.rawMessage.slice(m[0].length + 1).trim()}`, EXIT.usage);
    }
    throw err;
  }
}

/**
 * Follows a job until it ends. On a terminal, one status line rewritten in place (status, attempt,
 * time so far); otherwise one line per change. The last state stays on screen.
 */
async function waitWithStatusLine(
  o: Output,
  api: () => ReturnType<ReturnType<typeof contextOf>["api"]>,
  jobId: string,
): Promise<Job> {
  if (!o.interactive)
    return followJob(api(), jobId, (j, ev) => {
      if (ev?.type !== JobEventType.PROGRESS) o.err(`${changeLine(o, j)}\n`);
    });
  const started = Date.now();
  const frames = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
  let frame = 0;
  let last: Job | null = null;
  let progress = "";
  const draw = () => {
    if (!last) return;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    const done = isTerminal(last.status);
    const mark = done
      ? statusName(last.status) === "succeeded"
        ? "✔"
        : "✖"
      : frames[frame++ % frames.length];
    const status = o.paint(statusStyle(last.status) ?? "reset", statusName(last.status));
    const err = last.lastError ? ` · ${last.lastError}` : "";
    const call = !done && progress ? ` · ${progress}` : "";
    o.err(
      `\r\x1b[2K${mark} ${last.jobId} ${status} · attempt ${last.attempt}/${last.maxAttempts}${call} · ${secs} s${done ? err : ""}`,
    );
  };
  const timer = setInterval(draw, 100);
  try {
    return await followJob(api(), jobId, (j, ev) => {
      // How far the call has come (a long download), until the attempt ends.
      progress = ev?.type === JobEventType.PROGRESS ? progressText(ev) : "";
      last = j;
      draw();
    });
  } finally {
    clearInterval(timer);
    draw();
    o.err("\n");
  }
}
