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

/** Ratios and bounds the issue sets, in the order the table shows them. */
export const TARGET_FIGURES: FigureSpec[] = [
  {
    key: "e2eBatchVsDirect",
    label: "JobQueue end-to-end (batch enqueue) ÷ direct",
    unit: "×",
    digits: 3,
    target: { op: ">=", value: 0.6 },
  },
  {
    key: "e2eUnaryVsDirect",
    label: "JobQueue end-to-end (unary enqueue) ÷ direct",
    unit: "×",
    digits: 3,
    target: { op: ">=", value: 0.6 },
  },
  {
    key: "e2eBullmqVsDirect",
    label: "BullMQ end-to-end ÷ direct (reference)",
    unit: "×",
    digits: 3,
    note: "issue: about 0.2",
  },
  {
    key: "enqueueBatchVsBullmq",
    label: "batch enqueue ÷ BullMQ addBulk",
    unit: "×",
    digits: 2,
    target: { op: ">=", value: 3 },
  },
  {
    key: "enqueueUnaryVsNoop",
    label: "unary enqueue ÷ no-op RPC (Health/Check), same server",
    unit: "×",
    digits: 3,
    target: { op: ">=", value: 0.8 },
  },
  {
    key: "latencyP50",
    label: "enqueue→start p50 at 200 jobs/s, idle pool",
    unit: "ms",
    digits: 2,
    target: { op: "<=", value: 0.5 },
  },
  {
    key: "latencyP99",
    label: "enqueue→start p99 at 200 jobs/s, idle pool",
    unit: "ms",
    digits: 2,
    target: { op: "<=", value: 2 },
  },
  {
    key: "claimBigVsSmall",
    label: "claim rate, big queue ÷ 1k queued (claim + finish)",
    unit: "×",
    digits: 3,
    target: { op: ">=", value: 0.8 },
  },
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
  { key: "directJobsPerSec", label: "direct (undici, no queue)", unit: "jobs/s", digits: 0 },
  {
    key: "e2eBatchJobsPerSec",
    label: "JobQueue end-to-end, batch enqueue",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "e2eUnaryJobsPerSec",
    label: "JobQueue end-to-end, unary enqueue",
    unit: "jobs/s",
    digits: 0,
  },
  { key: "e2eBullmqJobsPerSec", label: "BullMQ end-to-end (addBulk)", unit: "jobs/s", digits: 0 },
  {
    key: "enqueueBatchJobsPerSec",
    label: "JobQueue enqueue only, EnqueueJobs batches",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "enqueueUnaryJobsPerSec",
    label: "JobQueue enqueue only, EnqueueJob unary",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "noopRpcPerSec",
    label: "no-op RPC (grpc.health.v1.Health/Check), same server",
    unit: "calls/s",
    digits: 0,
  },
  {
    key: "bullmqAddBulkJobsPerSec",
    label: "BullMQ enqueue only, addBulk",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "bullmqAddJobsPerSec",
    label: "BullMQ enqueue only, Queue.add unary",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "noopRoundTripP50",
    label: "no-op RPC round trip p50, one call at a time (floor under enqueue→start)",
    unit: "ms",
    digits: 2,
  },
  {
    key: "noopRoundTripP99",
    label: "no-op RPC round trip p99, one call at a time",
    unit: "ms",
    digits: 2,
  },
  { key: "latencyP50", label: "JobQueue enqueue→start p50", unit: "ms", digits: 2 },
  { key: "latencyP99", label: "JobQueue enqueue→start p99", unit: "ms", digits: 2 },
  { key: "latencyMax", label: "JobQueue enqueue→start max", unit: "ms", digits: 2 },
  { key: "bullmqLatencyP50", label: "BullMQ add→start p50", unit: "ms", digits: 2 },
  { key: "bullmqLatencyP99", label: "BullMQ add→start p99", unit: "ms", digits: 2 },
  {
    key: "claimSmallJobsPerSec",
    label: "store claim + finish, 1k queued",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "claimBigJobsPerSec",
    label: "store claim + finish, big queue",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "claimOnlySmallJobsPerSec",
    label: "store jobClaim alone, 1k queued",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "claimOnlyBigJobsPerSec",
    label: "store jobClaim alone, big queue",
    unit: "jobs/s",
    digits: 0,
  },
  { key: "claimOnlyBigVsSmall", label: "jobClaim alone, big ÷ 1k", unit: "×", digits: 4 },
  {
    key: "pg1E2eBatchJobsPerSec",
    label: "PostgreSQL, 1 node: end-to-end, batch enqueue",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "pg2E2eBatchJobsPerSec",
    label: "PostgreSQL, 2 nodes: end-to-end, batch enqueue",
    unit: "jobs/s",
    digits: 0,
  },
  { key: "pg1E2eBatchVsDirect", label: "PostgreSQL, 1 node, ÷ direct", unit: "×", digits: 2 },
  { key: "pg2E2eBatchVsDirect", label: "PostgreSQL, 2 nodes, ÷ direct", unit: "×", digits: 2 },
  {
    key: "pgEnqueueBatchJobsPerSec",
    label: "PostgreSQL, 1 node: enqueue only, batches",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "pgEnqueueUnaryJobsPerSec",
    label: "PostgreSQL, 1 node: enqueue only, unary",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "pgClaimSmallJobsPerSec",
    label: "PostgreSQL store claim + finish, 1k queued",
    unit: "jobs/s",
    digits: 0,
  },
  {
    key: "pgClaimBigJobsPerSec",
    label: "PostgreSQL store claim + finish, big queue",
    unit: "jobs/s",
    digits: 0,
  },
  { key: "pgClaimBigVsSmall", label: "PostgreSQL claim, big ÷ 1k", unit: "×", digits: 2 },
  {
    key: "rssStartMb",
    label: "server RSS just after start on the big queue",
    unit: "MB",
    digits: 0,
  },
  {
    key: "rssPeakMb",
    label: "server RSS peak while serving (sampled every 100 ms)",
    unit: "MB",
    digits: 0,
  },
  { key: "rssHwmMb", label: "server VmHWM at the end", unit: "MB", digits: 0 },
  {
    key: "rssCallsAnswered",
    label: "RPCs answered during the RSS window",
    unit: "calls",
    digits: 0,
  },
  {
    key: "rssCallsUnanswered",
    label: "RPCs failed or unanswered during the RSS window",
    unit: "calls",
    digits: 0,
  },
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
