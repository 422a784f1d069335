/**
 * The job list's filter: read from and written to the page's URL (REST's parameter names, so a
 * filtered view can be bookmarked), and given to ListJobs and the bulk actions as the API's
 * conditions. Pure: no DOM, tested in test/dashboard.
 */
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import { statusFromName, statusName } from "./format.js";

/** The list's filter, as the URL's query keeps it (REST's parameter names). */
export interface JobFilter {
  status: JobStatus[];
  tag: string[];
  queue: string;
  host: string;
  method: string;
  urlContains: string;
  errorCode: string;
  createdAfter: Date | null;
  createdBefore: Date | null;
  finishedAfter: Date | null;
  finishedBefore: Date | null;
  pageSize: number;
}

export const PAGE_SIZES = [25, 50, 100, 200];
export const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
/** The error codes attempts record (Attempt.error_code). */
export const ERROR_CODES = [
  "http_status",
  "timeout",
  "network",
  "destination_blocked",
  "too_many_redirects",
  "secret_unreadable",
  "canceled",
  "interrupted",
  "lease_expired",
];
export const TEXT_FIELDS = [
  ["queue", "queue"],
  ["host", "host"],
  ["method", "method"],
  ["urlContains", "url_contains"],
  ["errorCode", "error_code"],
] as const;
export const DATE_FIELDS = [
  ["createdAfter", "created_after"],
  ["createdBefore", "created_before"],
  ["finishedAfter", "finished_after"],
  ["finishedBefore", "finished_before"],
] as const;

export function filterFromQuery(q: URLSearchParams): JobFilter {
  const date = (name: string) => {
    const v = q.get(name);
    const d = v ? new Date(v) : null;
    return d && !Number.isNaN(d.getTime()) ? d : null;
  };
  const size = Number(q.get("page_size"));
  const f = {
    status: q.getAll("status").flatMap((s) => statusFromName(s) ?? []),
    tag: q.getAll("tag").filter((t) => t !== ""),
    pageSize: PAGE_SIZES.includes(size) ? size : 50,
  } as JobFilter;
  for (const [key, name] of TEXT_FIELDS) f[key] = (q.get(name) ?? "").trim();
  for (const [key, name] of DATE_FIELDS) f[key] = date(name);
  return f;
}

export function queryOfFilter(f: JobFilter): string {
  const q = new URLSearchParams();
  for (const s of f.status) q.append("status", statusName(s));
  for (const t of f.tag) q.append("tag", t);
  for (const [key, name] of TEXT_FIELDS) if (f[key]) q.set(name, f[key]);
  for (const [key, name] of DATE_FIELDS) {
    const d = f[key];
    if (d) q.set(name, d.toISOString());
  }
  if (f.pageSize !== 50) q.set("page_size", String(f.pageSize));
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** The filter's conditions as the API takes them (ListJobs and the bulk actions' JobFilter). */
export function apiFilter(f: JobFilter) {
  const ts = (d: Date | null) => (d ? timestampFromDate(d) : undefined);
  return {
    status: f.status,
    tag: f.tag,
    queue: f.queue,
    host: f.host,
    method: f.method,
    urlContains: f.urlContains,
    errorCode: f.errorCode,
    createdAfter: ts(f.createdAfter),
    createdBefore: ts(f.createdBefore),
    finishedAfter: ts(f.finishedAfter),
    finishedBefore: ts(f.finishedBefore),
  };
}

/** "status failed, queue emails", or "no condition" (every job). */
export function describeFilter(f: JobFilter): string {
  const parts: string[] = [];
  if (f.status.length) parts.push(`status ${f.status.map(statusName).join(" or ")}`);
  if (f.tag.length) parts.push(`tags ${f.tag.join(", ")}`);
  if (f.queue) parts.push(`queue ${f.queue}`);
  if (f.host) parts.push(`host ${f.host}`);
  if (f.method) parts.push(`method ${f.method}`);
  if (f.urlContains) parts.push(`URL containing "${f.urlContains}"`);
  if (f.errorCode) parts.push(`error ${f.errorCode}`);
  if (f.createdAfter || f.createdBefore) parts.push("the creation dates");
  if (f.finishedAfter || f.finishedBefore) parts.push("the finishing dates");
  return parts.length ? `the filter (${parts.join("; ")})` : "no filter (every job you may see)";
}
