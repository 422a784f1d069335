import { create } from "@bufbuild/protobuf";
import { type Command, Option } from "commander";
import { BackoffStrategy } from "../../../gen/jobqueue/v1/job_pb.js";
import {
  type Queue,
  QueueSchema,
  QueueSettingsSchema,
} from "../../../gen/jobqueue/v1/queue_service_pb.js";
import { contextOf } from "../context.js";
import { CliError, EXIT } from "../exit-codes.js";
import { type Output, restJson, table, time, writeJson } from "../output.js";

interface SettingFlags {
  concurrency?: string;
  rate?: string;
  burst?: string;
  maxAttempts?: string;
  backoff?: string;
  backoffSeconds?: string;
  ttl?: string;
}

const BACKOFFS: Record<string, BackoffStrategy> = {
  default: BackoffStrategy.UNSPECIFIED,
  fixed: BackoffStrategy.FIXED,
  linear: BackoffStrategy.LINEAR,
  exponential: BackoffStrategy.EXPONENTIAL,
};

const outputOption = (formats = ["table", "json"]) =>
  new Option("-o, --output <format>", formats.join(", ")).choices(formats).default("table");

/**
 * `queues list|get|create|update|pause|resume|delete`: the named queues and their settings
 * (QueueService). Creating, changing, pausing and deleting need an admin key.
 */
export function registerQueues(program: Command): void {
  const queues = program
    .command("queues")
    .description("named queues: list, get, create, update, pause, resume, delete");

  queues
    .command("list")
    .description("list every queue with its settings")
    .addOption(outputOption(["table", "json", "jsonl"]))
    .action(async (opts: { output: "table" | "json" | "jsonl" }, cmd: Command) => {
      const { queues: api, o } = contextOf(cmd);
      const { queues: list } = await api().listQueues({});
      if (opts.output !== "table")
        return writeJson(
          o,
          opts.output,
          list.map((q) => restJson(QueueSchema, q)),
        );
      o.out(queuesTable(o, list));
    });

  queues
    .command("get")
    .description("show a queue's settings")
    .argument("<name>")
    .addOption(outputOption())
    .action(async (name: string, opts: { output: string }, cmd: Command) => {
      const { queues: api, o } = contextOf(cmd);
      show(o, (await api().getQueue({ name })).queue, opts.output);
    });

  const settings = (cmd: Command) =>
    cmd
      .option("--concurrency <n>", "calls in flight at most for this queue on each node")
      .option("--rate <per-second>", "calls per second at most, all nodes together")
      .option("--burst <n>", "calls that may start back to back before the rate applies")
      .option("--max-attempts <n>", "default attempts of its jobs (1 to 100)")
      .addOption(
        new Option("--backoff <strategy>", "default backoff of its jobs").choices(
          Object.keys(BACKOFFS),
        ),
      )
      .option("--backoff-seconds <s>", "default backoff base of its jobs")
      .option("--ttl <seconds>", "default: delete its jobs this long after they end")
      .addHelpText(
        "after",
        "\nA setting left out is unchanged; 0 (or --backoff default) sets it back to the node's.",
      );

  settings(queues.command("create").description("create a queue (admin)").argument("<name>"))
    .addOption(outputOption())
    .action(async (name: string, opts: SettingFlags & { output: string }, cmd: Command) => {
      const { queues: api, o } = contextOf(cmd);
      const res = await api().createQueue({ name, settings: settingsOf(opts) });
      show(o, res.queue, opts.output);
    });

  settings(
    queues
      .command("update")
      .description("change some of a queue's settings (admin)")
      .argument("<name>"),
  )
    .addOption(outputOption())
    .action(async (name: string, opts: SettingFlags & { output: string }, cmd: Command) => {
      const { queues: api, o } = contextOf(cmd);
      const s = settingsOf(opts);
      if (Object.keys(opts).filter((k) => k !== "output").length === 0)
        throw new CliError("give at least one setting to change (see --help)", EXIT.usage);
      const res = await api().updateQueue({ name, settings: s });
      show(o, res.queue, opts.output);
    });

  for (const verb of ["pause", "resume"] as const) {
    queues
      .command(verb)
      .description(
        verb === "pause"
          ? "stop the queue's jobs from starting on every node (calls in flight finish; admin)"
          : "let the queue's jobs start again (admin)",
      )
      .argument("<name>")
      .addOption(outputOption())
      .action(async (name: string, opts: { output: string }, cmd: Command) => {
        const { queues: api, o } = contextOf(cmd);
        const res =
          verb === "pause" ? await api().pauseQueue({ name }) : await api().resumeQueue({ name });
        if (opts.output === "json") return show(o, res.queue, "json");
        o.out(
          `${name}  ${res.queue?.paused ? o.paint("yellow", "paused") : o.paint("green", "running")}\n`,
        );
      });
  }

  queues
    .command("delete")
    .description(
      'delete a queue with no queued or running job (its finished jobs stay; not "default"; admin)',
    )
    .argument("<name>")
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { queues: api, o } = contextOf(cmd);
      await api().deleteQueue({ name });
      o.out(`${name}  deleted\n`);
    });
}

function show(o: Output, q: Queue | undefined, output: string): void {
  if (!q) throw new CliError("the server answered no queue", EXIT.error);
  if (output === "json") {
    writeJson(o, "jsonl", [restJson(QueueSchema, q)]);
    return;
  }
  const rows: [string, string][] = [
    ["queue", q.name],
    ["state", q.paused ? o.paint("yellow", "paused") : o.paint("green", "running")],
    ["concurrency", setting(q.concurrency, " per node")],
    ["rate", setting(q.ratePerSecond, "/s")],
    ["burst", setting(q.burst)],
    ["max attempts", setting(q.maxAttempts)],
    ["backoff", backoffName(q.backoffStrategy)],
    ["backoff base", setting(q.backoffSeconds, " s")],
    ["ttl", setting(q.ttlSeconds, " s")],
    ["created", time(q.createdAt) || "(built in)"],
  ];
  if (q.updatedAt) rows.push(["updated", time(q.updatedAt)]);
  const w = Math.max(...rows.map(([k]) => k.length));
  o.out(rows.map(([k, v]) => `${o.paint("bold", k.padEnd(w))}  ${v}\n`).join(""));
}

function queuesTable(o: Output, list: Queue[]): string {
  return table(o, list, [
    { title: "QUEUE", value: (q) => q.name },
    {
      title: "STATE",
      value: (q) => (q.paused ? "paused" : "running"),
      style: (q) => (q.paused ? "yellow" : null),
    },
    { title: "CONCURRENCY", value: (q) => cell(q.concurrency) },
    { title: "RATE/S", value: (q) => cell(q.ratePerSecond) },
    { title: "BURST", value: (q) => cell(q.burst) },
    { title: "MAX ATTEMPTS", value: (q) => cell(q.maxAttempts) },
    {
      title: "BACKOFF",
      value: (q) =>
        q.backoffStrategy === BackoffStrategy.UNSPECIFIED && q.backoffSeconds === undefined
          ? "-"
          : backoffName(q.backoffStrategy, q.backoffSeconds),
    },
    { title: "TTL", value: (q) => cell(q.ttlSeconds, " s") },
    { title: "CREATED", value: (q) => time(q.createdAt) },
  ]);
}

function setting(v: number | undefined, unit = "", unset = "node default"): string {
  return v === undefined ? unset : `${v}${unit}`;
}

/** In a table: "-" for the node's default. */
function cell(v: number | undefined, unit = ""): string {
  return setting(v, unit, "-");
}

function backoffName(s: BackoffStrategy, seconds?: number): string {
  const name = Object.entries(BACKOFFS).find(([, v]) => v === s)?.[0] ?? "default";
  const base = name === "default" ? "node default" : name;
  return seconds === undefined ? base : `${base} ${seconds} s`;
}

function settingsOf(f: SettingFlags) {
  const int = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n))
      throw new CliError(`${flag}: ${JSON.stringify(v)} is not a whole number`, EXIT.usage);
    return n;
  };
  const real = (v: string | undefined, flag: string) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (v.trim() === "" || !Number.isFinite(n))
      throw new CliError(`${flag}: ${JSON.stringify(v)} is not a number`, EXIT.usage);
    return n;
  };
  return create(QueueSettingsSchema, {
    concurrency: int(f.concurrency, "--concurrency"),
    ratePerSecond: real(f.rate, "--rate"),
    burst: int(f.burst, "--burst"),
    maxAttempts: int(f.maxAttempts, "--max-attempts"),
    backoffStrategy: f.backoff === undefined ? undefined : BACKOFFS[f.backoff],
    backoffSeconds: real(f.backoffSeconds, "--backoff-seconds"),
    ttlSeconds: int(f.ttl, "--ttl"),
  });
}
