import { type Timestamp, timestampDate } from "@bufbuild/protobuf/wkt";
import { AttemptOutcome, JobStatus } from "../../gen/jobqueue/v1/job_pb.js";

/** The five public statuses, in the order of a job's life. */
export const STATUSES = [
  JobStatus.QUEUED,
  JobStatus.RUNNING,
  JobStatus.SUCCEEDED,
  JobStatus.FAILED,
  JobStatus.CANCELED,
] as const;

const STATUS_NAMES: Record<JobStatus, string> = {
  [JobStatus.UNSPECIFIED]: "unknown",
  [JobStatus.QUEUED]: "queued",
  [JobStatus.RUNNING]: "running",
  [JobStatus.SUCCEEDED]: "succeeded",
  [JobStatus.FAILED]: "failed",
  [JobStatus.CANCELED]: "canceled",
};

/** "queued", as REST spells it. */
export function statusName(status: JobStatus): string {
  return STATUS_NAMES[status] ?? "unknown";
}

export function statusFromName(name: string): JobStatus | undefined {
  return STATUSES.find((s) => STATUS_NAMES[s] === name);
}

export function isTerminal(status: JobStatus): boolean {
  return (
    status === JobStatus.SUCCEEDED || status === JobStatus.FAILED || status === JobStatus.CANCELED
  );
}

const OUTCOME_NAMES: Record<AttemptOutcome, string> = {
  [AttemptOutcome.UNSPECIFIED]: "unknown",
  [AttemptOutcome.RUNNING]: "running",
  [AttemptOutcome.SUCCEEDED]: "succeeded",
  [AttemptOutcome.FAILED]: "failed",
  [AttemptOutcome.CANCELED]: "canceled",
  [AttemptOutcome.INTERRUPTED]: "interrupted",
  [AttemptOutcome.LOST]: "lost",
};

export function outcomeName(outcome: AttemptOutcome): string {
  return OUTCOME_NAMES[outcome] ?? "unknown";
}

export function dateOf(ts: Timestamp | undefined): Date | null {
  return ts ? timestampDate(ts) : null;
}

/** "2026-11-30 16:32:05 UTC": exact and the same for everyone. */
export function exactTime(d: Date): string {
  return `${d.toISOString().slice(0, 19).replace("T", " ")} UTC`;
}

/** "12 s ago", "in 3 min". */
export function relativeTime(d: Date, now = Date.now()): string {
  const s = Math.round((d.getTime() - now) / 1000);
  const abs = Math.abs(s);
  const text =
    abs < 5
      ? "now"
      : abs < 90
        ? `${abs} s`
        : abs < 5400
          ? `${Math.round(abs / 60)} min`
          : abs < 129600
            ? `${Math.round(abs / 3600)} h`
            : `${Math.round(abs / 86400)} d`;
  if (text === "now") return "just now";
  return s < 0 ? `${text} ago` : `in ${text}`;
}

/** "850 ms", "2.3 s", "4 min 3 s". */
export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
  const min = Math.floor(ms / 60_000);
  return `${min} min ${Math.round((ms % 60_000) / 1000)} s`;
}

/** "1.2 KiB". */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
