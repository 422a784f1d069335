import { Code, ConnectError } from "@connectrpc/connect";
import { Role } from "../../../gen/jobqueue/v1/options_pb.js";
import { createApi } from "./client.js";

/** What the caller may do: the server's roles, or "open" when it runs without authentication. */
export type Access = "open" | "admin" | "submitter" | "reader";

const KEY = "jobqueue.apiKey";
const ACCESS = "jobqueue.access";

/**
 * The API key lives in sessionStorage only (gone when the tab closes; never in a URL, a cookie or
 * localStorage), with the access it was found to grant.
 */
export const session = {
  apiKey(): string | null {
    return sessionStorage.getItem(KEY);
  },
  access(): Access | null {
    const a = sessionStorage.getItem(ACCESS);
    return a === "open" || a === "admin" || a === "submitter" || a === "reader" ? a : null;
  },
  save(apiKey: string | null, access: Access) {
    if (apiKey) sessionStorage.setItem(KEY, apiKey);
    else sessionStorage.removeItem(KEY);
    sessionStorage.setItem(ACCESS, access);
  },
  clear() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ACCESS);
  },
};

/** Whether `access` may call a method whose lowest role is `role`. */
export function allows(access: Access, role: "reader" | "submitter" | "admin"): boolean {
  const rank = { reader: 1, submitter: 2, admin: 3, open: 3 } as const;
  return rank[access] >= rank[role];
}

/**
 * Finds what a key (or none) may do with GetCaller (every role may call it): the key's role, or
 * "open" when the server runs without authentication. Resolves null when the key (or its
 * absence) is refused.
 */
export async function probeAccess(apiKey: string | null): Promise<Access | null> {
  const api = createApi({ apiKey: () => apiKey, onUnauthenticated: () => {} });
  try {
    const caller = await api.getCaller({});
    if (!caller.authenticationRequired) return "open";
    return ROLES[caller.role] ?? "reader";
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) return null;
    throw err;
  }
}

const ROLES: Record<Role, Access | undefined> = {
  [Role.UNSPECIFIED]: undefined,
  [Role.READER]: "reader",
  [Role.SUBMITTER]: "submitter",
  [Role.ADMIN]: "admin",
};
