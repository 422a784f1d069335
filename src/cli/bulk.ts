import { create } from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { SingleBar } from "cli-progress";
import {
  type Operation,
  OperationKind,
  OperationSchema,
  OperationState,
} from "../../gen/jobqueue/v1/job_pb.js";
import { type JobFilter, JobFilterSchema } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import type { Api } from "./client.js";
import type { Context } from "./context.js";
import { CliError, EXIT, type ExitCode } from "./exit-codes.js";
import type { JobConditions } from "./job-filter.js";
import { type Output, restJson, writeJson } from "./output.js";
import { askYesNo, canAsk } from "./prompt.js";

export type BulkKind = "cancel" | "retry" | "delete";

const WORDS: Record<BulkKind, { past: string; ing: string }> = {
  cancel: { past: "canceled", ing: "canceling" },
  retry: { past: "retried", ing: "retrying" },
  delete: { past: "deleted", ing: "deleting" },
};

/** How often a followed operation is read (GetOperation). */
const FOLLOW_MS = 250;

export interface BulkOptions {
  /** The conditions, and what they say in words (for the prompt). */
  conditions: JobConditions;
  described: string;
  /** Retry's overrides. */
  maxAttempts?: number;
  scheduledAt?: Timestamp;
  /** Only count. */
  dryRun: boolean;
  /** No prompt. */
  yes: boolean;
  /** Follow the operation to its end (default), or print it and return. */
  wait: boolean;
  /** A progress bar on a terminal. */
  progress: boolean;
  output: "table" | "json";
}

/**
 * A bulk action over the jobs that match: a dry run first (the count, exact or "more than N"),
 * then a yes/no prompt on a terminal (`--yes` skips it; without a terminal and without `--yes`
 * nothing is done: exit 9), then the operation, followed to its end with a progress bar on a
 * terminal. Ctrl-C while it runs asks whether to cancel the operation (without a terminal to ask
 * on, it cancels it); a second Ctrl-C leaves it running and exits 130.
 */
export async function runBulk(ctx: Context, kind: BulkKind, opts: BulkOptions): Promise<void> {
  const { o } = ctx;
  const api = ctx.api();
  const filter = create(JobFilterSchema, opts.conditions);
  const preview = await call(api, kind, filter, opts, true);
  const count = Number(preview.count);
  const amount = preview.countCapped
    ? `more than ${count.toLocaleString("en-US")}`
    : count.toLocaleString("en-US");
  // As POST /jobs:cancel answers a dry run.
  const previewJson = { count, count_capped: preview.countCapped, operation: null };
  const jobs = `${amount} job${count === 1 && !preview.countCapped ? "" : "s"}`;
  if (opts.dryRun) {
    if (opts.output === "json") return writeJson(o, "jsonl", [previewJson]);
    o.out(`${kind} would act on ${jobs} (${opts.described})\n`);
    return;
  }
  if (count === 0 && !preview.countCapped) {
    o.err(`no job matches (${opts.described}): nothing to ${kind}\n`);
    if (opts.output === "json") writeJson(o, "jsonl", [previewJson]);
    return;
  }
  if (!opts.yes) {
    if (!canAsk()) {
      throw new CliError(
        `${jobs} match (${opts.described}); nothing done: pass --yes to ${kind} them without a prompt (stdin is not a terminal)`,
        EXIT.notConfirmed,
      );
    }
    const answer = await askYesNo(`${capitalize(kind)} ${jobs} (${opts.described})? [y/N] `);
    if (answer === "interrupted") throw new CliError("nothing done", EXIT.interrupted);
    if (answer !== "yes") throw new CliError("nothing done", EXIT.notConfirmed);
  }
  const started = await call(api, kind, filter, opts, false);
  const op = started.operation;
  if (!op) throw new CliError("the server started no operation", EXIT.error);
  if (!opts.wait) {
    if (opts.output === "json") return writeJson(o, "jsonl", [restJson(OperationSchema, op)]);
    o.out(`${op.operationId}\n`);
    o.err(`${WORDS[kind].ing} ${jobs}: jobqueue operations get ${op.operationId}\n`);
    return;
  }
  const { operation: end, detached } = await followOperation(
    o,
    api,
    op,
    kind,
    opts.progress,
    `${op.operationId}: ${WORDS[kind].ing} ${jobs}\n`,
  );
  if (opts.output === "json") writeJson(o, "jsonl", [restJson(OperationSchema, end)]);
  else o.out(`${operationLine(o, end)}\n`);
  if (detached) {
    o.err(`${end.operationId} keeps running: jobqueue operations get ${end.operationId}\n`);
    process.exitCode = EXIT.interrupted;
    return;
  }
  process.exitCode = exitOfOperation(end);
  if (end.state === OperationState.FAILED) {
    o.err(`jobqueue: operation ${end.operationId} failed: ${end.error ?? "no reason given"}\n`);
  }
}

function call(api: Api, kind: BulkKind, filter: JobFilter, opts: BulkOptions, dryRun: boolean) {
  switch (kind) {
    case "cancel":
      return api.cancelJobs({ filter, dryRun });
    case "delete":
      return api.deleteJobs({ filter, dryRun });
    case "retry":
      return api.retryJobs({
        filter,
        dryRun,
        maxAttempts: opts.maxAttempts,
        scheduledAt: opts.scheduledAt,
      });
  }
}

/**
 * Reads the operation until it ends, drawing a bar on a terminal. Ctrl-C asks whether to cancel
 * it (or cancels it when there is no terminal to ask on); a second Ctrl-C, or Ctrl-C at that
 * question, leaves it running (`detached`).
 */
export async function followOperation(
  o: Output,
  api: Api,
  first: Operation,
  kind: BulkKind | null,
  progress = true,
  /** Written to stderr when no bar is drawn, once Ctrl-C is handled. */
  announce = "",
): Promise<{ operation: Operation; detached: boolean }> {
  const words = WORDS[kind ?? kindName(first.kind)];
  const bar =
    progress && o.interactive
      ? new SingleBar({
          format: `${words.ing} {bar} {percentage}% | {value}/{total} jobs | {affected} ${words.past}`,
          stream: process.stderr,
          hideCursor: true,
          barsize: 30,
        })
      : null;
  let op = first;
  const totalOf = (x: Operation) => Math.max(Number(x.estimate), Number(x.examined), 1);
  let asking: Promise<void> | null = null;
  let cancelAsked = false;
  let detached = false;
  let wake: (() => void) | null = null;

  const cancelNow = async () => {
    cancelAsked = true;
    try {
      const res = await api.cancelOperation({ operationId: op.operationId });
      if (res.operation) op = res.operation;
    } catch (err) {
      // It may have ended meanwhile (FAILED_PRECONDITION): the loop reads how.
      o.err(`jobqueue: could not cancel ${op.operationId}: ${(err as Error).message}\n`);
    }
    wake?.();
  };
  const onSigint = () => {
    if (asking) return; // the question has the terminal; readline takes its Ctrl-C
    if (cancelAsked || !canAsk()) {
      if (cancelAsked) {
        detached = true;
        wake?.();
        return;
      }
      o.err(`\ncanceling ${op.operationId} (what it did so far stays done)\n`);
      void cancelNow();
      return;
    }
    bar?.stop();
    asking = (async () => {
      const answer = await askYesNo(
        `\nCancel ${op.operationId}? What it did so far stays done; otherwise it keeps going. [y/N] `,
      );
      if (answer === "yes") await cancelNow();
      else if (answer === "interrupted") detached = true;
      else bar?.start(totalOf(op), Number(op.examined), { affected: Number(op.affected) });
      asking = null;
      wake?.();
    })();
  };
  // Ctrl-C is handled before anything says the operation is under way (a signal that came
  // between the two would end the process by default).
  process.on("SIGINT", onSigint);
  if (bar) bar.start(totalOf(op), Number(op.examined), { affected: Number(op.affected) });
  else if (announce) o.err(announce);
  try {
    for (;;) {
      if (!asking) {
        bar?.setTotal(totalOf(op));
        bar?.update(Number(op.examined), { affected: Number(op.affected) });
      }
      if (op.state !== OperationState.RUNNING || detached) {
        if (asking) {
          await asking;
          continue;
        }
        return { operation: op, detached };
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, FOLLOW_MS);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
      if (detached) continue;
      const res = await api.getOperation({ operationId: op.operationId });
      if (res.operation) op = res.operation;
    }
  } finally {
    process.off("SIGINT", onSigint);
    bar?.stop();
  }
}

/** The exit code of an operation's end: 0 succeeded, 10 canceled, 8 failed. */
export function exitOfOperation(op: Operation): ExitCode {
  switch (op.state) {
    case OperationState.SUCCEEDED:
      return EXIT.ok;
    case OperationState.CANCELED:
      return EXIT.operationCanceled;
    case OperationState.RUNNING:
      return EXIT.ok;
    default:
      return EXIT.error;
  }
}

export function kindName(k: OperationKind): BulkKind {
  return k === OperationKind.RETRY ? "retry" : k === OperationKind.DELETE ? "delete" : "cancel";
}

export function stateName(s: OperationState): string {
  return (
    {
      [OperationState.UNSPECIFIED]: "unknown",
      [OperationState.RUNNING]: "running",
      [OperationState.SUCCEEDED]: "succeeded",
      [OperationState.CANCELED]: "canceled",
      [OperationState.FAILED]: "failed",
    }[s] ?? "unknown"
  );
}

export function stateStyle(s: OperationState) {
  return s === OperationState.SUCCEEDED
    ? "green"
    : s === OperationState.FAILED
      ? "red"
      : s === OperationState.CANCELED
        ? "yellow"
        : s === OperationState.RUNNING
          ? "cyan"
          : "reset";
}

/** `op_… succeeded: 200 jobs canceled of 200 examined`. */
export function operationLine(o: Output, op: Operation): string {
  const words = WORDS[kindName(op.kind)];
  const affected = Number(op.affected);
  return `${op.operationId} ${o.paint(stateStyle(op.state), stateName(op.state))}: ${affected.toLocaleString("en-US")} job${affected === 1 ? "" : "s"} ${words.past} of ${Number(op.examined).toLocaleString("en-US")} examined`;
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
