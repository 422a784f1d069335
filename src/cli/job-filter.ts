import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import type { JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import { CliError, EXIT } from "./exit-codes.js";
import { STATUS_NAMES, statusFromName } from "./output.js";

/**
 * The job conditions shared by `list` (ListJobsRequest) and the bulk forms of `cancel`, `retry`
 * and `delete` (JobFilter): the two messages name these fields alike, so one object fills either.
 */
export interface JobConditions {
  status: JobStatus[];
  tag: string[];
  queue: string;
  createdAfter?: Timestamp;
  createdBefore?: Timestamp;
  finishedAfter?: Timestamp;
  finishedBefore?: Timestamp;
  updatedAfter?: Timestamp;
  host: string;
  method: string;
  urlContains: string;
  errorCode: string;
  minAttempts: number;
}

/** The flags of the conditions, as commander parses them. */
export interface ConditionFlags {
  status?: string[];
  tag?: string[];
  queue?: string;
  createdAfter?: string;
  createdBefore?: string;
  finishedAfter?: string;
  finishedBefore?: string;
  updatedAfter?: string;
  host?: string;
  method?: string;
  urlContains?: string;
  errorCode?: string;
  minAttempts?: string;
}

const TIME_HELP = "an RFC 3339 time, or an age (30m, 2h, 7d: that long ago)";

/** Adds the condition flags to a command. */
export function addConditionOptions(cmd: Command): Command {
  return cmd
    .option(
      "-s, --status <status...>",
      `only these statuses (${STATUS_NAMES.join(", ")}); commas work too`,
    )
    .option("-t, --tag <tag...>", "only jobs carrying every one of these tags")
    .option("-q, --queue <name>", "only jobs of this queue")
    .option("--created-after <time>", TIME_HELP)
    .option("--created-before <time>", TIME_HELP)
    .option("--finished-after <time>", TIME_HELP)
    .option("--finished-before <time>", TIME_HELP)
    .option("--updated-after <time>", TIME_HELP)
    .option("--host <host>", "only jobs calling this host (e.g. api.example.com)")
    .option("--method <method>", "only jobs with this HTTP method")
    .option("--url-contains <text>", "only jobs whose URL contains this text")
    .option("--error-code <code>", 'only jobs whose latest attempt failed so (e.g. "timeout")')
    .option("--min-attempts <n>", "only jobs that made at least this many attempts");
}

/** The conditions the flags give (the server checks the values, naming the field). */
export function conditionsOf(f: ConditionFlags, now = new Date()): JobConditions {
  const status = (f.status ?? [])
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
  const when = (v: string | undefined, flag: string) =>
    v === undefined ? undefined : timestampFromDate(timeArg(v, flag, now));
  let minAttempts = 0;
  if (f.minAttempts !== undefined) {
    minAttempts = Number(f.minAttempts);
    if (!Number.isInteger(minAttempts) || minAttempts < 0)
      throw new CliError("--min-attempts: expected a whole number", EXIT.usage);
  }
  return {
    status,
    tag: f.tag ?? [],
    queue: f.queue ?? "",
    createdAfter: when(f.createdAfter, "--created-after"),
    createdBefore: when(f.createdBefore, "--created-before"),
    finishedAfter: when(f.finishedAfter, "--finished-after"),
    finishedBefore: when(f.finishedBefore, "--finished-before"),
    updatedAfter: when(f.updatedAfter, "--updated-after"),
    host: f.host ?? "",
    method: f.method?.toUpperCase() ?? "",
    urlContains: f.urlContains ?? "",
    errorCode: f.errorCode ?? "",
    minAttempts,
  };
}

/** Whether any condition is set (a bulk action over every job needs `--all`). */
export function hasConditions(c: JobConditions): boolean {
  return Object.values(c).some((v) =>
    Array.isArray(v) ? v.length > 0 : v !== undefined && v !== "" && v !== 0,
  );
}

/** The conditions in words, for a prompt: `status failed, tag nightly`. */
export function describeConditions(f: ConditionFlags): string {
  const parts: string[] = [];
  const add = (name: string, v: string | string[] | undefined) => {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) return;
    parts.push(`${name} ${Array.isArray(v) ? v.join(",") : v}`);
  };
  add("status", f.status);
  add("tag", f.tag);
  add("queue", f.queue);
  add("created after", f.createdAfter);
  add("created before", f.createdBefore);
  add("finished after", f.finishedAfter);
  add("finished before", f.finishedBefore);
  add("updated after", f.updatedAfter);
  add("host", f.host);
  add("method", f.method);
  add("URL containing", f.urlContains);
  add("error code", f.errorCode);
  add("at least attempts", f.minAttempts);
  return parts.length ? parts.join(", ") : "every job";
}

/** An RFC 3339 time, or an age before `now`: `90s`, `30m`, `2h`, `7d`. */
export function timeArg(v: string, flag: string, now = new Date()): Date {
  const age = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(v.trim());
  if (age) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[age[2] as "s" | "m" | "h" | "d"];
    return new Date(now.getTime() - Number(age[1]) * unit);
  }
  const d = new Date(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(d.getTime()))
    throw new CliError(
      `${flag}: ${JSON.stringify(v)} is neither an RFC 3339 time nor an age like 2h`,
      EXIT.usage,
    );
  return d;
}
