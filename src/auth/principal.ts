/** Who is calling, once their API key has been checked. */
export interface Principal {
  name: string;
  role: Role;
}

export const ROLES = ["admin", "submitter", "reader"] as const;
export type Role = (typeof ROLES)[number];

/** Roles are ranked: each may do what the roles below it may (reader < submitter < admin). */
const RANK: Record<Role, number> = { reader: 1, submitter: 2, admin: 3 };

/**
 * Whether a role reaches the lowest role a method declares (its `jobqueue.v1.min_role` option;
 * ownership is checked separately).
 */
export function reaches(role: Role, minRole: Role): boolean {
  return RANK[role] >= RANK[minRole];
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
