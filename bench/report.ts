/**
 * What the benchmark reports: the figures (with their targets), the machine and versions, and the
 * JSON and markdown written to bench/results/.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { REPO_ROOT } from "./processes.js";
import { type Spread, spread } from "./stats.js";

export interface Target {
  op: ">=" | "<=";
  value: number;
}

export interface FigureSpec {
  key: string;
  label: string;
  unit: string;
  digits: number;
  target?: Target;
  /** Shown next to the target, e.g. what the issue expects of BullMQ. */
  note?: string;
}

const ratio = (
  key: string,
  label: string,
  target?: Target,
  note?: string,
  digits = 2,
): FigureSpec => ({ key, label, unit: "×", digits, target, note });
const rate = (key: string, label: string, unit = "jobs/s"): FigureSpec => ({
  key,
  label,
  unit,
  digits: 0,
});
const ms = (key: string, label: string): FigureSpec => ({ key, label, unit: "ms", digits: 2 });
const us = (key: string, label: string, target?: Target): FigureSpec => ({
  key,
  label,
  unit: "µs",
  digits: 0,
  target,
});

/** Ratios and bounds the issue sets, in the order the table shows them. */
export const TARGET_FIGURES: FigureSpec[] = [
  ratio("e2eRestUnaryVsBullmq", "end to end, REST `POST /jobs` per job ÷ BullMQ (addBulk)", {
    op: ">=",
    value: 1,
  }),
  ratio("e2eRestBatchVsBullmq", "end to end, REST `POST /jobs:batch` ÷ BullMQ (addBulk)", {
    op: ">=",
    value: 1.5,
  }),
  ratio(
    "e2eRestUnaryVsBullmqDurable",
    "end to end, REST `POST /jobs` per job ÷ BullMQ on durable Redis",
    undefined,
    "reference",
  ),
  ratio(
    "e2eRestBatchVsBullmqDurable",
    "end to end, REST `POST /jobs:batch` ÷ BullMQ on durable Redis",
    undefined,
    "reference",
  ),
  ratio(
    "e2eRestUnaryVsDirect",
    "end to end, REST `POST /jobs` per job ÷ direct",
    {
      op: ">=",
      value: 0.6,
    },
    undefined,
    3,
  ),
  ratio(
    "e2eRestBatchVsDirect",
    "end to end, REST `POST /jobs:batch` ÷ direct",
    {
      op: ">=",
      value: 0.6,
    },
    undefined,
    3,
  ),
  ratio("e2eBullmqVsDirect", "BullMQ end to end ÷ direct", undefined, "reference", 3),
  ratio("enqueueRestVsBullmqAdd", "enqueue only, REST `POST /jobs` ÷ BullMQ `add()`", {
    op: ">=",
    value: 1,
  }),
  ratio(
    "enqueueRestVsBullmqDurableAdd",
    "enqueue only, REST `POST /jobs` ÷ BullMQ `add()` on durable Redis",
    undefined,
    "reference",
  ),
  ratio("enqueueConnectVsRest", "enqueue only, Connect unary (HTTP/2) ÷ REST", {
    op: ">=",
    value: 0.8,
  }),
  ratio("enqueueGrpcVsRest", "enqueue only, gRPC unary (HTTP/2) ÷ REST", {
    op: ">=",
    value: 0.8,
  }),
  ratio("enqueueBatchVsBullmqAddBulk", "enqueue only, REST `POST /jobs:batch` ÷ BullMQ `addBulk`", {
    op: ">=",
    value: 1.5,
  }),
  ratio(
    "enqueueBatchVsBullmqDurableAddBulk",
    "enqueue only, REST `POST /jobs:batch` ÷ `addBulk` on durable Redis",
    undefined,
    "reference",
  ),
  {
    ...ms("latencyP50", "submit (REST) → call starts, p50 at 200 jobs/s"),
    target: { op: "<=", value: 1 },
  },
  {
    ...ms("latencyP99", "submit (REST) → call starts, p99 at 200 jobs/s"),
    target: { op: "<=", value: 4 },
  },
  us("e2eRestUnaryCpuUsPerJob", "server CPU per job, end to end, `POST /jobs` per job", {
    op: "<=",
    value: 100,
  }),
  us("e2eRestBatchCpuUsPerJob", "server CPU per job, end to end, `POST /jobs:batch`", {
    op: "<=",
    value: 100,
  }),
  ratio(
    "claimBigVsSmall",
    "claim rate, big queue ÷ 1k queued (claim + finish)",
    { op: ">=", value: 0.8 },
    undefined,
    3,
  ),
  {
    key: "rssPeakMb",
    label: "server RSS with the big queue stored (peak)",
    unit: "MB",
    digits: 0,
    target: { op: "<=", value: 200 },
  },
];

/** Every raw figure. */
export const RAW_FIGURES: FigureSpec[] = [
  rate("directJobsPerSec", "direct (undici, no queue)"),
  rate("e2eRestUnaryJobsPerSec", "JobQueue end to end, REST `POST /jobs` per job"),
  rate("e2eRestBatchJobsPerSec", "JobQueue end to end, REST `POST /jobs:batch`"),
  rate("e2eBullmqJobsPerSec", "BullMQ end to end (addBulk), Redis without persistence"),
  rate("e2eBullmqDurableJobsPerSec", "BullMQ end to end (addBulk), Redis appendfsync always"),
  us("e2eRestUnaryCpuUsPerJob", "JobQueue server CPU per job, end to end, `POST /jobs`"),
  us("e2eRestBatchCpuUsPerJob", "JobQueue server CPU per job, end to end, `POST /jobs:batch`"),
  us("e2eBullmqCpuUsPerJob", "BullMQ worker + Redis CPU per job, end to end"),
  us("e2eBullmqDurableCpuUsPerJob", "BullMQ worker + durable Redis CPU per job, end to end"),
  rate("enqueueRestJobsPerSec", "JobQueue enqueue only, REST `POST /jobs` (HTTP/1.1)"),
  rate("enqueueConnectJobsPerSec", "JobQueue enqueue only, Connect unary (binary, HTTP/2)"),
  rate("enqueueGrpcJobsPerSec", "JobQueue enqueue only, gRPC unary (HTTP/2)"),
  rate("enqueueRestBatchJobsPerSec", "JobQueue enqueue only, REST `POST /jobs:batch`"),
  us("enqueueRestCpuUsPerJob", "JobQueue server CPU per enqueue, REST `POST /jobs`"),
  us("enqueueConnectCpuUsPerJob", "JobQueue server CPU per enqueue, Connect unary"),
  us("enqueueGrpcCpuUsPerJob", "JobQueue server CPU per enqueue, gRPC unary"),
  us("enqueueRestBatchCpuUsPerJob", "JobQueue server CPU per job, REST `POST /jobs:batch`"),
  rate("BullmqAddJobsPerSec", "BullMQ enqueue only, `add()`, Redis without persistence"),
  rate("BullmqAddBulkJobsPerSec", "BullMQ enqueue only, `addBulk`, Redis without persistence"),
  rate("BullmqDurableAddJobsPerSec", "BullMQ enqueue only, `add()`, Redis appendfsync always"),
  rate(
    "BullmqDurableAddBulkJobsPerSec",
    "BullMQ enqueue only, `addBulk`, Redis appendfsync always",
  ),
  ms("latencyP50", "JobQueue submit (REST) → call starts, p50"),
  ms("latencyP99", "JobQueue submit (REST) → call starts, p99"),
  ms("latencyMax", "JobQueue submit (REST) → call starts, max"),
  ms("bullmqLatencyP50", "BullMQ add → call starts, p50"),
  ms("bullmqLatencyP99", "BullMQ add → call starts, p99"),
  rate("claimSmallJobsPerSec", "store claim + finish, 1k queued"),
  rate("claimBigJobsPerSec", "store claim + finish, big queue"),
  rate("claimOnlySmallJobsPerSec", "store jobClaim alone, 1k queued"),
  rate("claimOnlyBigJobsPerSec", "store jobClaim alone, big queue"),
  ratio("claimOnlyBigVsSmall", "jobClaim alone, big ÷ 1k", undefined, undefined, 4),
  rate("pg1E2eBatchJobsPerSec", "PostgreSQL, 1 node: end to end, `POST /jobs:batch`"),
  rate("pg2E2eBatchJobsPerSec", "PostgreSQL, 2 nodes: end to end, `POST /jobs:batch`"),
  ratio("pg1E2eBatchVsDirect", "PostgreSQL, 1 node, end to end ÷ direct"),
  ratio("pg2E2eBatchVsDirect", "PostgreSQL, 2 nodes, end to end ÷ direct"),
  rate("pgEnqueueBatchJobsPerSec", "PostgreSQL, 1 node: enqueue only, `POST /jobs:batch`"),
  rate("pgEnqueueUnaryJobsPerSec", "PostgreSQL, 1 node: enqueue only, `POST /jobs`"),
  rate("pgClaimSmallJobsPerSec", "PostgreSQL store claim + finish, 1k queued"),
  rate("pgClaimBigJobsPerSec", "PostgreSQL store claim + finish, big queue"),
  ratio("pgClaimBigVsSmall", "PostgreSQL claim + finish, big ÷ 1k"),
  { ...rate("rssStartMb", "server RSS just after start on the big queue", "MB") },
  { ...rate("rssPeakMb", "server RSS peak while serving (sampled every 100 ms)", "MB") },
  { ...rate("rssHwmMb", "server VmHWM at the end", "MB") },
  rate("rssCallsAnswered", "RPCs answered during the RSS window", "calls"),
  rate(
    "rssCallsUnanswered",
    "RPCs failed during the RSS window (not counting those still in flight at its end)",
    "calls",
  ),
];

export interface Machine {
  cpu: string;
  cores: number;
  memoryGb: number;
  os: string;
  node: string;
  sqlite: string;
  redis: string;
  packages: Record<string, string>;
  git: { commit: string; dirty: boolean };
  disk: string;
}

const PACKAGES = [
  "better-sqlite3",
  "undici",
  "@connectrpc/connect",
  "@connectrpc/connect-node",
  "@bufbuild/protobuf",
  "pino",
  "tsx",
  "bullmq",
  "ioredis",
];

export function describeMachine(redisVersion: string, workDir: string): Machine {
  const packages: Record<string, string> = {};
  for (const name of PACKAGES) {
    try {
      const pkg = JSON.parse(
        readFileSync(join(REPO_ROOT, "node_modules", name, "package.json"), "utf8"),
      ) as { version: string };
      packages[name] = pkg.version;
    } catch {
      packages[name] = "?";
    }
  }
  const git = (args: string[]) => {
    try {
      return execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
    } catch {
      return "";
    }
  };
  let disk = "";
  try {
    disk = execFileSync("df", ["-T", workDir], { encoding: "utf8" }).trim().split("\n")[1] ?? "";
    disk = disk.split(/\s+/).slice(0, 2).join(" ");
  } catch {
    // not important
  }
  const db = new Database(":memory:");
  const sqlite = db.prepare("select sqlite_version()").pluck().get() as string;
  db.close();
  return {
    cpu: os.cpus()[0]?.model ?? "?",
    cores: os.availableParallelism(),
    memoryGb: Math.round(os.totalmem() / 2 ** 30),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    sqlite,
    redis: redisVersion,
    packages,
    git: {
      commit: git(["rev-parse", "HEAD"]),
      // Results written by earlier runs do not change what is measured.
      dirty: git(["status", "--porcelain", "--", ".", ":!bench/results"]) !== "",
    },
    disk,
  };
}

export interface SummaryRow extends FigureSpec {
  spread: Spread | null;
  met?: boolean;
}

export function summarize(specs: FigureSpec[], rounds: Record<string, number>[]): SummaryRow[] {
  return specs.map((spec) => {
    const s = spread(rounds.map((r) => r[spec.key]).filter((v): v is number => v !== undefined));
    const row: SummaryRow = { ...spec, spread: s };
    if (spec.target && s) {
      row.met =
        spec.target.op === ">=" ? s.median >= spec.target.value : s.median <= spec.target.value;
    }
    return row;
  });
}

function fmt(value: number, digits: number): string {
  if (!Number.isFinite(value)) return "–";
  return value.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export interface ReportInput {
  command: string;
  startedAt: string;
  durationS: number;
  options: Record<string, unknown>;
  machine: Machine;
  targets: SummaryRow[];
  raw: SummaryRow[];
  rounds: number;
  bigDepth: number;
  errors: string[];
  notes: string[];
}

export function markdown(r: ReportInput): string {
  const cell = (row: SummaryRow) =>
    row.spread
      ? [
          `${fmt(row.spread.median, row.digits)}${row.unit === "×" ? "×" : ` ${row.unit}`}`,
          row.spread.n > 1
            ? `${fmt(row.spread.min, row.digits)}–${fmt(row.spread.max, row.digits)}`
            : "",
        ]
      : ["not measured", ""];
  const lines: string[] = [];
  lines.push(
    `Run ${r.startedAt} (${Math.round(r.durationS)} s), ${r.rounds} round${r.rounds === 1 ? "" : "s"}, ` +
      `N = ${r.options.n} jobs, C = ${r.options.c}, big queue = ${r.bigDepth.toLocaleString("en-US")} jobs. ` +
      "Medians over the rounds, min–max beside them; ratios are computed within each round.",
    "",
    "| target | median | min–max | target | met |",
    "| --- | ---: | ---: | ---: | :---: |",
  );
  for (const row of r.targets) {
    const [median, range] = cell(row);
    const target = row.target
      ? `${row.target.op === ">=" ? "≥" : "≤"} ${row.target.value}${row.unit === "×" ? "" : ` ${row.unit}`}`
      : (row.note ?? "");
    const met = row.met === undefined ? "" : row.met ? "yes" : "**no**";
    lines.push(`| ${row.label} | ${median} | ${range} | ${target} | ${met} |`);
  }
  lines.push("", "| figure | median | min–max |", "| --- | ---: | ---: |");
  for (const row of r.raw) {
    const [median, range] = cell(row);
    lines.push(`| ${row.label} | ${median} | ${range} |`);
  }
  const m = r.machine;
  lines.push(
    "",
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGb} GB RAM, ${m.os}, disk ${m.disk || "?"}. ` +
      `Node ${m.node}, SQLite ${m.sqlite}, Redis ${m.redis}; ` +
      Object.entries(m.packages)
        .map(([k, v]) => `${k} ${v}`)
        .join(", ") +
      `. Commit ${m.git.commit.slice(0, 12)}${m.git.dirty ? " (with uncommitted changes)" : ""}.`,
    "",
    `Reproduce: \`${r.command}\``,
  );
  if (r.notes.length > 0) lines.push("", ...r.notes.map((n) => `- ${n}`));
  if (r.errors.length > 0)
    lines.push("", "Errors during the run:", ...r.errors.map((e) => `- ${e}`));
  return `${lines.join("\n")}\n`;
}
