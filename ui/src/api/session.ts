import { Code, ConnectError } from "@connectrpc/connect";
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

/** A job id that is well formed and never issued (the ULID of time zero, all zeros). */
const NO_SUCH_JOB = "j_00000000000000000000000000";

/**
 * Finds what a key (or none) may do, using calls every role may make or is refused before any
 * effect: ListNodes (any valid key; refused without one when the server needs keys),
 * ListAuditEvents (admins only), CancelJob of a job that cannot exist (submitters get NOT_FOUND,
 * readers PERMISSION_DENIED; nothing is canceled). Without a key, "open" if the server answers
 * anyway (it runs without authentication). Resolves null when the key (or its absence) is refused.
 *
 * TODO(issue 10): replace the probes with one call that answers the caller's principal and role,
 * when the API has it; the refused probes of non-admins are counted in the audit log meanwhile.
 */
export async function probeAccess(apiKey: string | null): Promise<Access | null> {
  const api = createApi({ apiKey: () => apiKey, onUnauthenticated: () => {} });
  try {
    await api.listNodes({});
  } catch (err) {
    if (ConnectError.from(err).code === Code.Unauthenticated) return null;
    throw err;
  }
  if (apiKey === null) return "open";
  if (await refused(() => api.listAuditEvents({ pageSize: 1 }))) {
    return (await refused(() => api.cancelJob({ jobId: NO_SUCH_JOB }))) ? "reader" : "submitter";
  }
  return "admin";
}

async function refused(call: () => Promise<unknown>): Promise<boolean> {
  try {
    await call();
    return false;
  } catch (err) {
    const code = ConnectError.from(err).code;
    if (code === Code.PermissionDenied) return true;
    if (code === Code.NotFound || code === Code.FailedPrecondition) return false;
    throw err;
  }
}
