import { type DescMethod, type DescService, getOption, hasOption } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  type Interceptor,
} from "@connectrpc/connect";
import { min_role, Role as RolePb } from "../../gen/jobqueue/v1/options_pb.js";
import type { AuditOutcome } from "../audit/audit-event.js";
import type { Authentication } from "../auth/api-keys.js";
import { type Caller, type Role, reaches } from "../auth/principal.js";
import { validateJobId } from "../job/validate.js";

/** The authenticated caller of a request, for the handlers. */
export const CALLER = createContextKey<Caller | null>(null, { description: "caller" });
/** The peer address of a request, set by the server before any handler runs. */
export const REMOTE_ADDRESS = createContextKey<string | null>(null, {
  description: "remote address",
});
/** The protocol of a request when it is not told by its content type ("rest"). */
export const PROTOCOL = createContextKey<string | null>(null, { description: "protocol" });

const ROLE_OF: Record<RolePb, Role | null> = {
  [RolePb.UNSPECIFIED]: null,
  [RolePb.READER]: "reader",
  [RolePb.SUBMITTER]: "submitter",
  [RolePb.ADMIN]: "admin",
};

/**
 * Whether a service is one of ours (package `jobqueue.*`), whose methods are guarded; others
 * (health, reflection) stay open to everyone.
 */
export function isGuarded(service: DescService): boolean {
  return service.typeName.startsWith("jobqueue.");
}

/**
 * The lowest role that may call a method: its `jobqueue.v1.min_role` option, declared next to the
 * method in the proto. Null for the methods of services that are not guarded.
 */
export function minRoleOf(method: DescMethod): Role | null {
  if (!isGuarded(method.parent)) return null;
  const role = hasOption(method, min_role) ? ROLE_OF[getOption(method, min_role)] : null;
  if (!role) throw new Error(`${method.parent.typeName}.${method.name} declares no min_role`);
  return role;
}

/**
 * Checks at start-up that every method of every guarded service declares its role, so a new
 * service or method cannot be served open by omission.
 */
export function assertRolesDeclared(services: DescService[]): void {
  for (const service of services) for (const method of service.methods) minRoleOf(method);
}

/** A refused call, as the transport reports it to the facade (which decides what to keep). */
export interface Refusal {
  caller: Caller;
  /** The method's name, e.g. "GetJob". */
  action: string;
  outcome: Extract<AuditOutcome, "unauthenticated" | "permission_denied" | "resource_exhausted">;
  /** The job the request named, when it names a well-formed one. */
  jobIdOf: () => Promise<string | null>;
}

export interface AuthOptions {
  /** Null: no authentication, every caller may do everything. */
  authenticate: ((headers: Headers) => Authentication) | null;
  /** Records a refusal (through the facade: the transport never writes). */
  refused: (refusal: Refusal) => Promise<void>;
  /**
   * Asked before authenticating: whether this address is refused for now because it keeps failing
   * authentication; answers the seconds to wait, or 0.
   */
  throttled?: (remoteAddress: string | null) => number;
  /** Told of every failed authentication. */
  authFailed?: (remoteAddress: string | null) => void;
}

/**
 * Authentication and role checks, one interceptor for every protocol (the Connect router and the
 * REST transcoder run the same interceptors). Guarded methods need a key whose role reaches the
 * method's `min_role`; refusals are reported with the job the call names and say nothing about
 * why beyond their code.
 */
export function createAuthInterceptor(options: AuthOptions): Interceptor {
  const { authenticate, refused } = options;
  const roles = new Map<DescMethod, Role | null>();
  const roleOf = (method: DescMethod) => {
    let role = roles.get(method);
    if (role === undefined) {
      role = minRoleOf(method);
      roles.set(method, role);
    }
    return role;
  };

  return (next) => async (req) => {
    const minRole = roleOf(req.method);
    if (minRole === null) return next(req);
    const remoteAddress = req.contextValues.get(REMOTE_ADDRESS);
    const protocol = req.contextValues.get(PROTOCOL) ?? protocolOf(req.header.get("content-type"));
    if (!authenticate) {
      req.contextValues.set(CALLER, { principal: null, remoteAddress, protocol });
      return next(req);
    }
    // A server-streaming request is a stream of one message; it is read only to be refused.
    const jobIdOf = async () => {
      try {
        const message = req.stream ? await firstOf(req.message) : req.message;
        const value = (message as { jobId?: unknown } | undefined)?.jobId;
        return typeof value === "string" ? validateJobId(value) : null;
      } catch {
        return null;
      }
    };
    const wait = options.throttled?.(remoteAddress) ?? 0;
    if (wait > 0) {
      await refused({
        caller: { principal: null, remoteAddress, protocol },
        action: req.method.name,
        outcome: "resource_exhausted",
        jobIdOf: async () => null,
      });
      const err = new ConnectError(
        "too many failed authentications from this address; retry later",
        Code.ResourceExhausted,
      );
      err.metadata.set("retry-after", String(wait));
      throw err;
    }
    const auth = authenticate(req.header);
    if (auth.kind !== "principal") {
      options.authFailed?.(remoteAddress);
      await refused({
        caller: { principal: null, remoteAddress, protocol },
        action: req.method.name,
        outcome: "unauthenticated",
        jobIdOf,
      });
      throw new ConnectError("a valid API key is required", Code.Unauthenticated);
    }
    const caller: Caller = { principal: auth.principal, remoteAddress, protocol };
    if (!reaches(auth.principal.role, minRole)) {
      await refused({ caller, action: req.method.name, outcome: "permission_denied", jobIdOf });
      throw new ConnectError("not allowed", Code.PermissionDenied);
    }
    req.contextValues.set(CALLER, caller);
    return next(req);
  };
}

/** The caller a handler runs for; set by the auth interceptor for every guarded call. */
export function callerOf(values: ContextValues): Caller {
  const caller = values.get(CALLER);
  if (!caller) throw new ConnectError("internal error", Code.Internal);
  return caller;
}

async function firstOf<T>(messages: AsyncIterable<T>): Promise<T | undefined> {
  for await (const message of messages) return message;
  return undefined;
}

/** The RPC protocol a content type names. */
export function protocolOf(contentType: string | null): string {
  const ct = contentType ?? "";
  if (ct.startsWith("application/grpc-web")) return "grpc-web";
  if (ct.startsWith("application/grpc")) return "grpc";
  return "connect";
}
