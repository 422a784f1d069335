import { styleText } from "node:util";
import { type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { type Timestamp, timestampDate, ValueSchema } from "@bufbuild/protobuf/wkt";
import { AttemptOutcome, JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import { toRestJson } from "../rpc/rest-json.js";

export type Format = "table" | "json" | "jsonl";

type Style = Parameters<typeof styleText>[0];

/**
 * Where a command writes: stdout for results (tables, JSON, bodies), stderr for progress and
 * messages. Colours only when the stream is a terminal and NO_COLOR is not set. That decision is
 * ours alone: styleText's own check (validateStream) would also drop colours wherever CI is set.
 */
export interface Output {
  readonly color: boolean;
  /** Whether stderr is a terminal (live status lines, progress bars). */
  readonly interactive: boolean;
  out(text: string): void;
  err(text: string): void;
  paint(style: Style, text: string): string;
}

export function createOutput(options: { color?: boolean } = {}): Output {
  const color = options.color ?? (process.stdout.isTTY === true && !process.env.NO_COLOR);
  return {
    color,
    interactive: process.stderr.isTTY === true,
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    paint: (style, text) => (color ? styleText(style, text, { validateStream: false }) : text),
  };
}

/** A message as REST JSON: the seed's shape (snake_case, lowercase statuses, RFC 3339 times). */
export function restJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>) {
  return toRestJson(schema, message);
}

/** Writes items as one JSON document (an array) or one JSON line each. */
export function writeJson(o: Output, format: "json" | "jsonl", items: unknown[]): void {
  if (format === "jsonl") for (const item of items) o.out(`${JSON.stringify(item)}\n`);
  else o.out(`${JSON.stringify(items, null, 2)}\n`);
}

export interface Column<T> {
  title: string;
  value: (row: T) => string;
  /** A style for the cell (applied after padding, so colours do not break alignment). */
  style?: (row: T) => Style | null;
  /** Cut to this many characters, with "…". */
  max?: number;
}

/** A plain text table, columns padded to their widest cell. */
export function table<T>(o: Output, rows: T[], columns: Column<T>[]): string {
  const cells = rows.map((r) =>
    columns.map((c) => {
      const v = c.value(r);
      return c.max !== undefined && v.length > c.max ? `${v.slice(0, c.max - 1)}…` : v;
    }),
  );
  const widths = columns.map((c, i) =>
    Math.max(c.title.length, ...cells.map((row) => row[i]!.length)),
  );
  const line = (values: string[], styles: (Style | null)[]) =>
    values
      .map((v, i) => {
        const padded = i === values.length - 1 ? v : v.padEnd(widths[i]!);
        const style = styles[i];
        return style ? o.paint(style, padded) : padded;
      })
      .join("  ")
      .trimEnd();
  const head = line(
    columns.map((c) => c.title),
    columns.map(() => "bold"),
  );
  const body = rows.map((r, ri) =>
    line(
      cells[ri]!,
      columns.map((c) => c.style?.(r) ?? null),
    ),
  );
  return `${[head, ...body].join("\n")}\n`;
}

const STATUS: Record<JobStatus, string> = {
  [JobStatus.UNSPECIFIED]: "unknown",
  [JobStatus.QUEUED]: "queued",
  [JobStatus.RUNNING]: "running",
  [JobStatus.SUCCEEDED]: "succeeded",
  [JobStatus.FAILED]: "failed",
  [JobStatus.CANCELED]: "canceled",
};

export const STATUS_NAMES = ["queued", "running", "succeeded", "failed", "canceled"] as const;

export function statusName(s: JobStatus): string {
  return STATUS[s] ?? "unknown";
}

export function statusFromName(name: string): JobStatus | undefined {
  const i = STATUS_NAMES.indexOf(name.toLowerCase() as (typeof STATUS_NAMES)[number]);
  return i === -1 ? undefined : ((i + 1) as JobStatus);
}

export function isTerminal(s: JobStatus): boolean {
  return s === JobStatus.SUCCEEDED || s === JobStatus.FAILED || s === JobStatus.CANCELED;
}

export function statusStyle(s: JobStatus): Style | null {
  switch (s) {
    case JobStatus.SUCCEEDED:
      return "green";
    case JobStatus.FAILED:
      return "red";
    case JobStatus.CANCELED:
      return "yellow";
    case JobStatus.RUNNING:
      return "cyan";
    default:
      return null;
  }
}

export function outcomeName(o: AttemptOutcome): string {
  return (
    {
      [AttemptOutcome.UNSPECIFIED]: "unknown",
      [AttemptOutcome.RUNNING]: "running",
      [AttemptOutcome.SUCCEEDED]: "succeeded",
      [AttemptOutcome.FAILED]: "failed",
      [AttemptOutcome.CANCELED]: "canceled",
      [AttemptOutcome.INTERRUPTED]: "interrupted",
      [AttemptOutcome.LOST]: "lost",
    }[o] ?? "unknown"
  );
}

/** RFC 3339 in UTC, to the second ("" when unset). */
export function time(ts: Timestamp | undefined): string {
  return ts ? `${timestampDate(ts).toISOString().slice(0, 19)}Z` : "";
}

export function ms(n: number | undefined): string {
  if (n === undefined) return "";
  return n < 1000 ? `${n} ms` : `${(n / 1000).toFixed(n < 10_000 ? 2 : 1)} s`;
}

export { toJson, ValueSchema };
