import { Code, type ConnectError, createContextKey } from "@connectrpc/connect";
import { codeName } from "./errors.js";

/**
 * What the pipeline learns about a call as it passes, for the access log: the route it matched
 * (a REST template such as `/jobs/{job_id}`, or the RPC path) and the code it ended with.
 */
export interface CallRecord {
  route: string | null;
  /** The RPC the call reached, `package.Service/Method` (REST routes too); null if none. */
  rpc: string | null;
  /** Connect's name of the code the call ended with ("ok", "invalid_argument", …). */
  code: string | null;
}

/** A call as it ended, for the metrics. */
export interface EndedCall {
  /** `package.Service/Method`, or `/healthz`, `/readyz`, `/metrics`, or `(none)` (no route). */
  method: string;
  protocol: string;
  /** Connect's name of the code ("ok", "invalid_argument", …). */
  code: string;
  seconds: number;
}

/** The call's record, created by the server for every request. */
export const CALL_RECORD = createContextKey<CallRecord | null>(null, {
  description: "call record",
});

/** Records the code an error gives the call. */
export function recordError(record: CallRecord | null, err: ConnectError): void {
  if (record) record.code = codeName(err.code);
}

export function recordOk(record: CallRecord | null): void {
  if (record && record.code === null) record.code = "ok";
}

/** The name of a gRPC status number: "ok" for 0, "invalid_argument" for 3, … */
export function statusName(status: number): string {
  if (status === 0) return "ok";
  return Code[status] === undefined ? `status_${status}` : codeName(status as Code);
}

const CODE_OF_STATUS: Record<number, string> = {
  200: "ok",
  204: "ok",
  400: "invalid_argument",
  401: "unauthenticated",
  403: "permission_denied",
  404: "not_found",
  405: "unimplemented",
  408: "deadline_exceeded",
  409: "failed_precondition",
  415: "internal",
  429: "resource_exhausted",
  431: "resource_exhausted",
  499: "canceled",
  501: "unimplemented",
  503: "unavailable",
  504: "deadline_exceeded",
};

/** The code a call ended with: the one the pipeline recorded, else its HTTP status's. */
export function codeOfCall(record: CallRecord, httpStatus: number): string {
  return record.code ?? CODE_OF_STATUS[httpStatus] ?? (httpStatus >= 500 ? "internal" : "unknown");
}
