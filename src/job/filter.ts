import { InvalidArgumentError } from "./errors.js";
import {
  type ErrorCode,
  HTTP_METHODS,
  type HttpMethod,
  JOB_STATUSES,
  type JobStatus,
  TERMINAL_STATUSES,
} from "./types.js";
import { validateQueueName } from "./validate.js";

/**
 * Which jobs a list or a bulk action is about. Every condition must hold. Times are epoch ms and
 * exclusive. Status, tags, queue and the creation and finishing times are read from indexes;
 * host, method, URL text, error code, attempts and `updatedAfter` are checked on the jobs an
 * index walk visits, a bounded number per page (see the README's "Filters").
 */
export interface JobFilter {
  statuses?: JobStatus[];
  /** Every one must match. */
  tags?: string[];
  queue?: string;
  createdAfter?: number;
  createdBefore?: number;
  /** Only finished jobs; the list is then ordered by finishing time, latest first. */
  finishedAfter?: number;
  finishedBefore?: number;
  updatedAfter?: number;
  /** The URL's host, lowercase. */
  host?: string;
  method?: HttpMethod;
  /** Text the URL contains (case-sensitive). */
  urlContains?: string;
  /** The error code of the latest failed attempt. */
  errorCode?: ErrorCode;
  /** Jobs that have made at least this many attempts. */
  minAttempts?: number;
  /** These jobs only (a selection in the dashboard). */
  jobIds?: string[];
  /** Jobs enqueued by this schedule. */
  scheduleId?: string;
}

/** A filter as it arrives from a transport: strings for the enums, absent for "any". */
export interface JobFilterInput {
  statuses?: string[];
  tags?: string[];
  queue?: string;
  createdAfter?: number;
  createdBefore?: number;
  finishedAfter?: number;
  finishedBefore?: number;
  updatedAfter?: number;
  host?: string;
  method?: string;
  urlContains?: string;
  errorCode?: string;
  minAttempts?: number;
  jobIds?: string[];
  scheduleId?: string;
}

export const ERROR_CODES: readonly ErrorCode[] = [
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

/** The conditions checked row by row rather than read from an index. */
export const SCANNED_CONDITIONS = [
  "host",
  "method",
  "urlContains",
  "errorCode",
  "minAttempts",
  "updatedAfter",
] as const satisfies readonly (keyof JobFilter)[];

/** Whether a filter has conditions checked row by row (its pages are bounded scans). */
export function isScanned(filter: JobFilter): boolean {
  return SCANNED_CONDITIONS.some((k) => filter[k] !== undefined);
}

/** Whether a filter orders by finishing time (it asks for jobs finished within a window). */
export function ordersByFinish(filter: JobFilter): boolean {
  return filter.finishedAfter !== undefined || filter.finishedBefore !== undefined;
}

const JOB_ID = /^j_[0-9A-HJKMNP-TV-Z]{26}$/;

/** Checks a filter; throws {@link InvalidArgumentError} naming the field (REST names). */
export function validateFilter(input: JobFilterInput, limits: { maxTags: number }): JobFilter {
  const filter: JobFilter = {};
  if (input.statuses?.length) {
    filter.statuses = input.statuses.map((s) => {
      if (!(JOB_STATUSES as readonly string[]).includes(s)) {
        throw new InvalidArgumentError(
          "status",
          `unknown status ${JSON.stringify(s)}; use one of ${JOB_STATUSES.join(", ")}`,
        );
      }
      return s as JobStatus;
    });
  }
  if (input.tags?.length) {
    if (input.tags.length > limits.maxTags) {
      throw new InvalidArgumentError("tag", `at most ${limits.maxTags} tags`);
    }
    filter.tags = [...new Set(input.tags)];
  }
  if (input.queue) filter.queue = validateQueueName(input.queue);
  for (const [key, field] of [
    ["createdAfter", "created_after"],
    ["createdBefore", "created_before"],
    ["finishedAfter", "finished_after"],
    ["finishedBefore", "finished_before"],
    ["updatedAfter", "updated_after"],
  ] as const) {
    const v = input[key];
    if (v === undefined) continue;
    if (!Number.isFinite(v)) throw new InvalidArgumentError(field, "is not a valid time");
    filter[key] = v;
  }
  const ordered = (after: keyof JobFilter, before: keyof JobFilter, field: string) => {
    const a = filter[after] as number | undefined;
    const b = filter[before] as number | undefined;
    if (a !== undefined && b !== undefined && a >= b) {
      throw new InvalidArgumentError(
        field,
        `must be earlier than ${field.replace("after", "before")}`,
      );
    }
  };
  ordered("createdAfter", "createdBefore", "created_after");
  ordered("finishedAfter", "finishedBefore", "finished_after");
  if (ordersByFinish(filter) && filter.statuses?.some((s) => !TERMINAL_STATUSES.has(s))) {
    throw new InvalidArgumentError(
      "status",
      "finished_after and finished_before only match finished jobs (succeeded, failed, canceled)",
    );
  }
  if (input.host) {
    const host = input.host.trim().toLowerCase();
    if (host.length > 253 || !/^[a-z0-9.:[\]_-]+$/.test(host)) {
      throw new InvalidArgumentError("host", "is not a host name");
    }
    filter.host = host;
  }
  if (input.method) {
    const m = input.method.toUpperCase();
    if (!(HTTP_METHODS as readonly string[]).includes(m)) {
      throw new InvalidArgumentError(
        "method",
        `unknown method ${JSON.stringify(input.method)}; use one of ${HTTP_METHODS.join(", ")}`,
      );
    }
    filter.method = m as HttpMethod;
  }
  if (input.urlContains) {
    if (input.urlContains.length > 200) {
      throw new InvalidArgumentError("url_contains", "is longer than 200 characters");
    }
    filter.urlContains = input.urlContains;
  }
  if (input.errorCode) {
    if (!(ERROR_CODES as readonly string[]).includes(input.errorCode)) {
      throw new InvalidArgumentError(
        "error_code",
        `unknown error code ${JSON.stringify(input.errorCode)}; use one of ${ERROR_CODES.join(", ")}`,
      );
    }
    filter.errorCode = input.errorCode as ErrorCode;
  }
  if (input.minAttempts !== undefined && input.minAttempts !== 0) {
    if (!Number.isInteger(input.minAttempts) || input.minAttempts < 0 || input.minAttempts > 1000) {
      throw new InvalidArgumentError("min_attempts", "must be a whole number from 0 to 1000");
    }
    filter.minAttempts = input.minAttempts;
  }
  if (input.jobIds?.length) {
    if (input.jobIds.length > 1000) {
      throw new InvalidArgumentError("job_ids", "at most 1000 job ids");
    }
    for (const id of input.jobIds) {
      if (!JOB_ID.test(id))
        throw new InvalidArgumentError("job_ids", `${JSON.stringify(id)} is not a job id`);
    }
    filter.jobIds = [...new Set(input.jobIds)];
  }
  if (input.scheduleId) {
    if (!/^s_[0-9A-HJKMNP-TV-Z]{26}$/.test(input.scheduleId)) {
      throw new InvalidArgumentError(
        "schedule_id",
        `${JSON.stringify(input.scheduleId)} is not a schedule id`,
      );
    }
    filter.scheduleId = input.scheduleId;
  }
  return filter;
}
