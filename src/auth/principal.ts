/** Who is calling, once their API key has been checked. */
export interface Principal {
  name: string;
  role: Role;
}

export const ROLES = ["admin", "submitter", "reader"] as const;
export type Role = (typeof ROLES)[number];

/** What a call does, in the terms roles are granted. */
export type Action = "enqueue" | "read" | "cancel" | "audit";

const GRANTS: Record<Role, ReadonlySet<Action>> = {
  admin: new Set(["enqueue", "read", "cancel", "audit"]),
  submitter: new Set(["enqueue", "read", "cancel"]),
  reader: new Set(["read"]),
};

/** Whether a role may perform an action at all (ownership is checked separately). */
export function may(role: Role, action: Action): boolean {
  return GRANTS[role].has(action);
}

/** Whether a principal sees every job, or only its own. */
export function seesAllJobs(principal: Principal | null): boolean {
  return principal === null || principal.role === "admin";
}

/**
 * The caller of an operation, as the queue records it: the principal (null when the server runs
 * without authentication), where the call came from and over which protocol.
 */
export interface Caller {
  principal: Principal | null;
  remoteAddress: string | null;
  protocol: string;
}

/** A caller for work the server does on its own behalf (tests, tools). */
export const SYSTEM_CALLER: Caller = { principal: null, remoteAddress: null, protocol: "internal" };
