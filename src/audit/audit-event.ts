/** One entry of the audit log: a mutating call, or any denied call. */
export interface AuditEvent {
  at: number;
  /** The principal's name; null for anonymous callers (no or an invalid key, or auth off). */
  principal: string | null;
  /** The RPC method, e.g. "EnqueueJob", "CancelJob". */
  action: string;
  jobId: string | null;
  remoteAddress: string | null;
  /** "grpc", "grpc-web", "connect" or "rest". */
  protocol: string;
  outcome: AuditOutcome;
  /** A short, secret-free note (e.g. why it was denied). */
  detail: string | null;
}

export const AUDIT_OUTCOMES = [
  "ok",
  "unauthenticated",
  "permission_denied",
  "invalid_argument",
  "not_found",
  "failed_precondition",
  "resource_exhausted",
  "error",
] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

export interface StoredAuditEvent extends AuditEvent {
  id: number;
}
