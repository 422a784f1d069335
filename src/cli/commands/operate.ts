import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Command, Option } from "commander";
import { JobSchema, OperationSchema } from "../../../gen/jobqueue/v1/job_pb.js";
import {
  type BulkKind,
  exitOfOperation,
  followOperation,
  kindName,
  operationLine,
  runBulk,
  stateName,
  stateStyle,
} from "../bulk.js";
import { type Context, contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import {
  addConditionOptions,
  type ConditionFlags,
  conditionsOf,
  describeConditions,
  hasConditions,
} from "../job-filter.js";
import { whenArg } from "../job-input.js";
import { restJson, statusName, statusStyle, table, time, writeJson } from "../output.js";

interface ActionFlags extends ConditionFlags {
  output: "table" | "json";
  all?: boolean;
  dryRun?: boolean;
  yes?: boolean;
  wait: boolean;
  progress: boolean;
  maxAttempts?: string;
  scheduledAt?: string;
}

const WHAT: Record<BulkKind, string> = {
  cancel: "cancel jobs: a queued one at once, a running one has its call aborted",
  retry:
    "run failed or canceled jobs again on the same id (attempts keep counting; one more is allowed unless --max-attempts)",
  delete: "delete finished jobs with their attempts and results",
};

/**
 * `cancel`, `retry` and `delete`: of the jobs named, or, with filter flags instead of ids, of
 * every job that matches (a bulk operation: count preview, confirmation, progress; see bulk.ts);
 * and `operations list|get|watch|cancel`.
 */
export function registerOperateCommands(program: Command): void {
  for (const kind of ["cancel", "retry", "delete"] as const) {
    const cmd = program
      .command(kind)
      .description(`${WHAT[kind]}; with filter flags instead of ids: every job that matches`)
      .argument("[job-id...]");
    addConditionOptions(cmd);
    if (kind === "retry") {
      cmd
        .option("--max-attempts <n>", "the new cap on attempts (must exceed the attempts made)")
        .option(
          "--scheduled-at <time>",
          "run no earlier than this RFC 3339 time, or +30s / +5m / +2h",
        );
    }
    cmd
      .option("--all", "every job (no filter flag): cancel/retry/delete all that can be")
      .option("--dry-run", "with a filter: only count the jobs it would act on")
      .option("-y, --yes", "with a filter: do not ask for confirmation")
      .option("--no-wait", "with a filter: start the operation, print its id, do not follow it")
      .option("--no-progress", "no progress bar, even on a terminal")
      .addOption(
        new Option("-o, --output <format>", "table or json")
          .choices(["table", "json"])
          .default("table"),
      )
      .addHelpText(
        "after",
        `
With filter flags, jobqueue first counts the matching jobs (exactly, or "more than 10,000") and asks
before it starts; --yes skips the question, and without a terminal to ask on it is required (else
exit 9). The operation is followed with a progress bar; Ctrl-C asks whether to cancel it.`,
      )
      .action(async (jobIds: string[], opts: ActionFlags, c: Command) => {
        const ctx = contextOf(c);
        const conditions = conditionsOf(opts);
        const filtered = hasConditions(conditions) || opts.all === true;
        if (jobIds.length > 0 && filtered) {
          throw new CliError(
            "give job ids or filter flags (--status, --tag, …), not both",
            EXIT.usage,
          );
        }
        const maxAttempts =
          opts.maxAttempts === undefined ? undefined : count(opts.maxAttempts, "--max-attempts");
        const scheduledAt =
          opts.scheduledAt === undefined
            ? undefined
            : timestampFromDate(new Date(whenArg(opts.scheduledAt)));
        if (filtered) {
          return runBulk(ctx, kind, {
            conditions,
            described: describeConditions(opts),
            maxAttempts,
            scheduledAt,
            dryRun: opts.dryRun === true,
            yes: opts.yes === true,
            wait: opts.wait,
            progress: opts.progress,
            output: opts.output,
          });
        }
        if (jobIds.length === 0) {
          throw new CliError(
            `give job ids, or filter flags (--status, --tag, …; --all for every job) to ${kind} many`,
            EXIT.usage,
          );
        }
        if (opts.dryRun) throw new CliError("--dry-run goes with filter flags", EXIT.usage);
        await actOnIds(ctx, kind, jobIds, opts.output, { maxAttempts, scheduledAt });
      });
  }

  const ops = program
    .command("operations")
    .description("bulk operations (cancel/retry/delete by filter): list, show, follow, cancel");
  ops
    .command("list")
    .description("list bulk operations, newest first")
    .option("-n, --limit <n>", "at most this many", "50")
    .addOption(
      new Option("-o, --output <format>", "table, json or jsonl")
        .choices(["table", "json", "jsonl"])
        .default("table"),
    )
    .action(async (opts: { limit: string; output: "table" | "json" | "jsonl" }, c: Command) => {
      const { api, o } = contextOf(c);
      const { operations } = await api().listOperations({ pageSize: count(opts.limit, "--limit") });
      if (opts.output !== "table")
        return writeJson(
          o,
          opts.output,
          operations.map((op) => restJson(OperationSchema, op)),
        );
      if (operations.length === 0) return o.err("no operations\n");
      o.out(
        table(o, operations, [
          { title: "OPERATION", value: (op) => op.operationId },
          { title: "KIND", value: (op) => kindName(op.kind) },
          {
            title: "STATE",
            value: (op) => stateName(op.state),
            style: (op) => stateStyle(op.state),
          },
          {
            title: "ESTIMATE",
            value: (op) => `${op.estimateCapped ? ">" : ""}${Number(op.estimate)}`,
          },
          { title: "EXAMINED", value: (op) => String(op.examined) },
          { title: "AFFECTED", value: (op) => String(op.affected) },
          { title: "BY", value: (op) => op.principal ?? "" },
          { title: "CREATED", value: (op) => time(op.createdAt) },
          { title: "FINISHED", value: (op) => time(op.finishedAt) },
        ]),
      );
    });
  ops
    .command("get")
    .description("show a bulk operation")
    .argument("<operation-id>")
    .addOption(
      new Option("-o, --output <format>", "table or json")
        .choices(["table", "json"])
        .default("table"),
    )
    .action(async (id: string, opts: { output: string }, c: Command) => {
      const { api, o } = contextOf(c);
      const { operation } = await api().getOperation({ operationId: id });
      if (!operation) throw new CliError("the server answered no operation", EXIT.error);
      if (opts.output === "json")
        return writeJson(o, "jsonl", [restJson(OperationSchema, operation)]);
      o.out(`${operationLine(o, operation)}\n`);
      if (operation.error) o.out(`error: ${operation.error}\n`);
    });
  ops
    .command("watch")
    .description(
      "follow a bulk operation with a progress bar until it ends (0 succeeded, 10 canceled, 8 failed)",
    )
    .argument("<operation-id>")
    .option("--no-progress", "no progress bar, even on a terminal")
    .addOption(
      new Option("-o, --output <format>", "table or json")
        .choices(["table", "json"])
        .default("table"),
    )
    .action(async (id: string, opts: { output: string; progress: boolean }, c: Command) => {
      const { api, o } = contextOf(c);
      const { operation } = await api().getOperation({ operationId: id });
      if (!operation) throw new CliError("the server answered no operation", EXIT.error);
      const { operation: end, detached } = await followOperation(
        o,
        api(),
        operation,
        null,
        opts.progress,
      );
      if (opts.output === "json") writeJson(o, "jsonl", [restJson(OperationSchema, end)]);
      else o.out(`${operationLine(o, end)}\n`);
      process.exitCode = detached ? EXIT.interrupted : exitOfOperation(end);
    });
  ops
    .command("cancel")
    .description("stop a running bulk operation between two batches (what it did stays done)")
    .argument("<operation-id>")
    .addOption(
      new Option("-o, --output <format>", "table or json")
        .choices(["table", "json"])
        .default("table"),
    )
    .action(async (id: string, opts: { output: string }, c: Command) => {
      const { api, o } = contextOf(c);
      const { operation } = await api().cancelOperation({ operationId: id });
      if (!operation) throw new CliError("the server answered no operation", EXIT.error);
      if (opts.output === "json")
        return writeJson(o, "jsonl", [restJson(OperationSchema, operation)]);
      o.out(`${operationLine(o, operation)}\n`);
    });
}

/** cancel / retry / delete of the jobs named, one call each, in order; the first refusal stops. */
async function actOnIds(
  ctx: Context,
  kind: BulkKind,
  jobIds: string[],
  output: "table" | "json",
  retry: { maxAttempts?: number; scheduledAt?: ReturnType<typeof timestampFromDate> },
): Promise<void> {
  const { api, o } = ctx;
  for (const jobId of jobIds) {
    if (kind === "delete") {
      await api().deleteJob({ jobId });
      if (output === "json") writeJson(o, "jsonl", [{ job_id: jobId, deleted: true }]);
      else o.out(`${jobId}  deleted\n`);
      continue;
    }
    const { job } =
      kind === "cancel"
        ? await api().cancelJob({ jobId })
        : await api().retryJob({ jobId, ...retry });
    if (!job) continue;
    if (output === "json") writeJson(o, "jsonl", [restJson(JobSchema, job)]);
    else
      o.out(
        `${job.jobId}  ${o.paint(statusStyle(job.status) ?? "reset", statusName(job.status))}${
          kind === "retry" ? `  attempt ${job.attempt}/${job.maxAttempts}` : ""
        }\n`,
      );
  }
}

function count(v: string, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(`${flag}: expected a positive whole number`, EXIT.usage);
  return n;
}
