import { readFileSync } from "node:fs";
import type { JsonObject } from "@bufbuild/protobuf";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Command } from "commander";
import { JobSchema } from "../../../gen/jobqueue/v1/job_pb.js";
import {
  type Schedule,
  ScheduleSchema,
  ScheduleService,
  type ScheduleSpec,
  ScheduleSpecSchema,
} from "../../../gen/jobqueue/v1/schedule_service_pb.js";
import { InvalidArgumentError } from "../../job/errors.js";
import { parseJsonStrict } from "../../rpc/json-text.js";
import { fromRestJson } from "../../rpc/rest-json.js";
import { DEFAULT_SERVER } from "../client.js";
import { contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { type JobFlags, jobJsonOfFlags } from "../job-input.js";
import { type Output, restJson, table, time, writeJson } from "../output.js";

/**
 * `schedules list|get|create|update|delete|pause|resume|trigger`: periodic jobs (ScheduleService).
 * A schedule is a job (the `submit` flags, or a JSON template with --template) and a time rule.
 */

type ScheduleApi = Client<typeof ScheduleService>;

/** A Connect client of ScheduleService, made as the CLI's JobQueueService client is. */
function scheduleApi(cmd: Command): ScheduleApi {
  const opts = cmd.optsWithGlobals<{ server?: string; apiKey?: string }>();
  const server = opts.server ?? process.env.JOBQUEUE_SERVER ?? DEFAULT_SERVER;
  const apiKey = opts.apiKey ?? process.env.JOBQUEUE_API_KEY;
  let baseUrl: URL;
  try {
    baseUrl = new URL(server);
  } catch {
    throw new CliError(`--server: ${JSON.stringify(server)} is not a URL`, EXIT.usage);
  }
  const auth: Interceptor = (next) => (req) => {
    if (apiKey) req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
  return createClient(
    ScheduleService,
    createConnectTransport({
      baseUrl: baseUrl.href.replace(/\/$/, ""),
      httpVersion: "1.1",
      useBinaryFormat: true,
      interceptors: [auth],
      defaultTimeoutMs: 60_000,
    }),
  );
}

interface ScheduleFlags extends JobFlags {
  url?: string;
  cron?: string;
  tz?: string;
  jitter?: string;
  startAt?: string;
  endAt?: string;
  overlap?: string;
  catchUp?: string;
  catchUpWindow?: string;
  description?: string;
  queue?: string;
  template?: string;
  paused?: boolean;
  output: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

function number(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isFinite(n))
    throw new CliError(`${flag}: ${JSON.stringify(v)} is not a number`, EXIT.usage);
  return n;
}

/** The ScheduleSpec the flags describe (REST JSON read by the server's own decoder). */
function specOf(url: string | undefined, f: ScheduleFlags): ScheduleSpec {
  const json: JsonObject = {};
  let template: JsonObject = jobJsonOfFlags(url, f);
  if (f.queue !== undefined) template.queue = f.queue;
  if (f.template !== undefined) {
    const text = f.template === "-" ? readFileSync(0, "utf8") : readFileSync(f.template, "utf8");
    let parsed: unknown;
    try {
      parsed = parseJsonStrict(text);
    } catch (err) {
      throw new CliError(`--template: ${(err as Error).message}`, EXIT.usage);
    }
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new CliError("--template: a job must be a JSON object", EXIT.usage);
    }
    template = { ...template, ...(parsed as JsonObject) };
  }
  if (Object.keys(template).length > 0) json.template = template;
  if (f.cron !== undefined) json.cron = f.cron;
  if (f.tz !== undefined) json.time_zone = f.tz;
  if (f.jitter !== undefined) json.jitter_seconds = number(f.jitter, "--jitter");
  if (f.startAt !== undefined) json.start_at = f.startAt;
  if (f.endAt !== undefined) json.end_at = f.endAt;
  if (f.overlap !== undefined) json.overlap_policy = f.overlap.toLowerCase();
  if (f.catchUp !== undefined) json.catch_up = f.catchUp.toLowerCase();
  if (f.catchUpWindow !== undefined) {
    json.catch_up_window_seconds = number(f.catchUpWindow, "--catch-up-window");
  }
  if (f.description !== undefined) json.description = f.description;
  if (f.paused) json.paused = true;
  try {
    return fromRestJson(ScheduleSpecSchema, json);
  } catch (err) {
    if (err instanceof InvalidArgumentError) throw new CliError(err.message, EXIT.usage);
    throw err;
  }
}

const FORMATS = ["table", "ids", "json", "jsonl"] as const;

/** Writes schedules as a table, ids, JSON (one object for `one`, else an array) or JSON lines. */
function show(o: Output, format: string, schedules: Schedule[], one = false): void {
  if (!(FORMATS as readonly string[]).includes(format)) {
    throw new CliError(`--output: use one of ${FORMATS.join(", ")}`, EXIT.usage);
  }
  if (format === "ids") {
    for (const s of schedules) o.out(`${s.scheduleId}\n`);
    return;
  }
  if (format === "json" && one) {
    o.out(`${JSON.stringify(restJson(ScheduleSchema, schedules[0]!), null, 2)}\n`);
    return;
  }
  if (format === "json" || format === "jsonl") {
    writeJson(
      o,
      format,
      schedules.map((s) => restJson(ScheduleSchema, s)),
    );
    return;
  }
  o.out(
    table(o, schedules, [
      { title: "SCHEDULE", value: (s) => s.scheduleId },
      { title: "CRON", value: (s) => s.cron },
      { title: "TIME ZONE", value: (s) => s.timeZone },
      { title: "NEXT RUN", value: (s) => (s.paused ? "paused" : time(s.nextRunAt)) },
      { title: "LAST RUN", value: (s) => time(s.lastRunAt) },
      { title: "URL", value: (s) => s.template?.url ?? "" },
    ]),
  );
}

function withJobFlags(cmd: Command): Command {
  return cmd
    .option("-X, --method <method>", "the job's method (default GET, POST with a body)")
    .option("-H, --header <name: value>", "a request header (repeatable)", collect)
    .option("-p, --param <name=value>", "a query parameter (repeatable)", collect)
    .option("-d, --data <json>", "a JSON body; @file reads it from a file")
    .option("--data-raw <text>", "a text body sent as it is")
    .option("--timeout <seconds>", "bound on one attempt")
    .option("--max-attempts <n>", "1 to 100")
    .option("--ttl <seconds>", "delete each run's job this long after it ends")
    .option("-t, --tag <tag>", "a tag of each run's job (repeatable)", collect)
    .option("--secret-header <name>", "keep this header encrypted and masked (repeatable)", collect)
    .option("--callback-url <url>", "POST each run's result here once it ends")
    .option("--sign", "sign each run's call per Standard Webhooks (your key's secrets)")
    .option(
      "--signing-secret <secret>",
      "sign each run's call and callback with this secret (implies --sign; never shown back)",
    )
    .option("--queue <name>", "the queue the runs go to")
    .option("--template <path>", "the job as JSON (POST /jobs's body); - for stdin")
    .option("--cron <expr>", 'e.g. "0 9 * * *", "*/10 * * * * *", "@hourly", "@every 5m"')
    .option("--tz <zone>", "the IANA time zone the cron expression is read in (default UTC)")
    .option("--jitter <seconds>", "start each run up to this many seconds after its tick")
    .option("--start-at <time>", "no tick before this RFC 3339 time")
    .option("--end-at <time>", "no tick after this RFC 3339 time")
    .option("--overlap <policy>", "skip, buffer_one, allow or cancel_previous (default skip)")
    .option("--catch-up <policy>", "skip or run_missed (default skip)")
    .option("--catch-up-window <seconds>", "with run_missed: how far back missed ticks run")
    .option("--description <text>", "what the schedule is for")
    .option("-o, --output <format>", "table, ids, json or jsonl", "table");
}

export function registerSchedules(program: Command): void {
  const group = program
    .command("schedules")
    .description("periodic jobs: list, get, create, update, delete, pause, resume, trigger");

  group
    .command("list")
    .description("list schedules (yours; an admin's key: every one)")
    .option("-o, --output <format>", "table, ids, json or jsonl", "table")
    .action(async (opts: { output: string }, cmd: Command) => {
      const { o } = contextOf(cmd);
      const api = scheduleApi(cmd);
      const all: Schedule[] = [];
      let pageToken = "";
      do {
        const res = await api.listSchedules({ pageSize: 1000, pageToken });
        all.push(...res.schedules);
        pageToken = res.nextPageToken ?? "";
      } while (pageToken);
      show(o, opts.output, all);
    });

  group
    .command("get")
    .description("show a schedule")
    .argument("<schedule-id>")
    .option("-o, --output <format>", "table, ids, json or jsonl", "json")
    .action(async (id: string, opts: { output: string }, cmd: Command) => {
      const { o } = contextOf(cmd);
      const { schedule } = await scheduleApi(cmd).getSchedule({ scheduleId: id });
      if (schedule) show(o, opts.output, [schedule], true);
    });

  withJobFlags(
    group
      .command("create")
      .description("create a schedule: the job (as `submit` takes it) and --cron")
      .argument("[url]", "the URL each run calls"),
  )
    .option("--paused", "create it paused")
    .action(async (url: string | undefined, opts: ScheduleFlags, cmd: Command) => {
      const { o } = contextOf(cmd);
      const { schedule } = await scheduleApi(cmd).createSchedule({
        schedule: specOf(url, opts),
      });
      if (schedule) show(o, opts.output, [schedule], true);
    });

  withJobFlags(
    group
      .command("update")
      .description("change a schedule (the flags given; a new template replaces the old one)")
      .argument("<schedule-id>")
      .option("--url <url>", "the URL each run calls (with the job flags: a new template)"),
  ).action(async (id: string, opts: ScheduleFlags, cmd: Command) => {
    const { o } = contextOf(cmd);
    const { schedule } = await scheduleApi(cmd).updateSchedule({
      scheduleId: id,
      schedule: specOf(opts.url, opts),
    });
    if (schedule) show(o, opts.output, [schedule], true);
  });

  for (const [name, what] of [
    ["pause", "stop a schedule's ticks"],
    ["resume", "start a schedule's ticks again from the next one"],
  ] as const) {
    group
      .command(name)
      .description(what)
      .argument("<schedule-id>")
      .option("-o, --output <format>", "table, ids, json or jsonl", "table")
      .action(async (id: string, opts: { output: string }, cmd: Command) => {
        const { o } = contextOf(cmd);
        const api = scheduleApi(cmd);
        const { schedule } =
          name === "pause"
            ? await api.pauseSchedule({ scheduleId: id })
            : await api.resumeSchedule({ scheduleId: id });
        if (schedule) show(o, opts.output, [schedule], true);
      });
  }

  group
    .command("delete")
    .description("delete a schedule (the jobs it enqueued stay)")
    .argument("<schedule-id>")
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const { o } = contextOf(cmd);
      await scheduleApi(cmd).deleteSchedule({ scheduleId: id });
      o.err(`deleted ${id}\n`);
    });

  group
    .command("trigger")
    .description("enqueue one run now; prints the job id")
    .argument("<schedule-id>")
    .option("-o, --output <format>", "ids or json", "ids")
    .action(async (id: string, opts: { output: string }, cmd: Command) => {
      const { o } = contextOf(cmd);
      const { job } = await scheduleApi(cmd).triggerSchedule({ scheduleId: id });
      if (!job) return;
      if (opts.output === "json") writeJson(o, "json", [restJson(JobSchema, job)]);
      else o.out(`${job.jobId}\n`);
    });
}
