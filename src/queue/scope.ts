import type { AuditEvent, AuditOutcome } from "../audit/audit-event.js";
import { type Caller, seesAllJobs } from "../auth/principal.js";
import { InvalidArgumentError } from "../job/errors.js";
import type { ListCursor } from "../store/job-store.js";

/**
 * What every facade shares: whose jobs a caller may act on, the audit event of an action, and
 * page tokens.
 */

/** Only the caller's own jobs, unless it sees every job (an admin, or no authentication). */
export function ownerScope(caller: Caller): string | undefined {
  return seesAllJobs(caller.principal) ? undefined : (caller.principal?.name ?? "");
}

export function auditOf(
  caller: Caller,
  action: string,
  outcome: AuditOutcome,
  jobId: string | null,
  now: number,
  detail: string | null = null,
): AuditEvent {
  return {
    at: now,
    principal: caller.principal?.name ?? null,
    action,
    jobId,
    remoteAddress: caller.remoteAddress,
    protocol: caller.protocol,
    outcome,
    detail,
  };
}

export const PAGE_SIZE_DEFAULT = 50;

/** A page size within 1 and `max`; 0 or absent: the default. */
export function pageSizeOf(requested: number | undefined, max: number): number {
  const size = requested || PAGE_SIZE_DEFAULT;
  if (!Number.isInteger(size) || size < 1 || size > max) {
    throw new InvalidArgumentError(
      "page_size",
      `must be between 1 and ${max} (JOBQUEUE_MAX_PAGE_SIZE)`,
    );
  }
  return size;
}

/** A page token: the position after which the next page starts, opaque to clients. */
export function encodePageToken(after: ListCursor | number | string): string {
  return Buffer.from(JSON.stringify({ after })).toString("base64url");
}

export function badToken(): InvalidArgumentError {
  return new InvalidArgumentError("page_token", "is not a token this server issued");
}

const JOB_ID = /^j_[0-9A-Z]{26}$/;

/** The position a page token encodes: a list cursor, an audit event id or an operation id. */
export function decodePageToken(token: string): ListCursor | number | string {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as unknown;
    const after = (parsed as { after?: unknown } | null)?.after;
    if (typeof after === "number" && Number.isSafeInteger(after)) return after;
    if (typeof after === "string" && /^op_[0-9A-Z]{26}$/.test(after)) return after;
    // Tokens of older servers: a bare job id.
    if (typeof after === "string" && JOB_ID.test(after)) return { id: after };
    if (after !== null && typeof after === "object") {
      const { id, finishedAt } = after as { id?: unknown; finishedAt?: unknown };
      if (typeof id === "string" && JOB_ID.test(id)) {
        if (finishedAt === undefined) return { id };
        if (typeof finishedAt === "number" && Number.isSafeInteger(finishedAt)) {
          return { id, finishedAt };
        }
      }
    }
  } catch {
    // fall through: not ours
  }
  throw badToken();
}

/** The schedule id a ListSchedules page token encodes, or undefined if it is not one of ours. */
export function decodeScheduleToken(token: string): string | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8")) as unknown;
    const after = (parsed as { after?: unknown } | null)?.after;
    if (typeof after === "string" && /^s_[0-9A-Z]{26}$/.test(after)) return after;
  } catch {
    // not ours
  }
  return undefined;
}
