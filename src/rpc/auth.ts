import type { DescMethod } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  type ContextValues,
  createContextKey,
  type Interceptor,
} from "@connectrpc/connect";
import type { Logger } from "pino";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import type { AuditOutcome } from "../audit/audit-event.js";
import type { Authentication } from "../auth/api-keys.js";
import { type Action, type Caller, may } from "../auth/principal.js";
import type { Clock } from "../job/clock.js";
import { validateJobId } from "../job/validate.js";
import type { JobStore } from "../store/job-store.js";

/** The authenticated caller of a request, for the handlers. */
export const CALLER = createContextKey<Caller | null>(null, { description: "caller" });
/** The peer address of a request, set by the server before any handler runs. */
export const REMOTE_ADDRESS = createContextKey<string | null>(null, {
  description: "remote address",
});

/**
 * What each JobQueueService method does, in the terms roles are granted. Every method is listed
 * (a new RPC does not compile until it is given an action), and one missing at run time is refused.
 */
const ACTIONS: Record<keyof typeof JobQueueService.method, Action> = {
  enqueueJob: "enqueue",
  enqueueJobs: "enqueue",
  getJob: "read",
  getJobResult: "read",
  cancelJob: "cancel",
  listJobs: "read",
  listJobAttempts: "read",
  watchJob: "read",
  listNodes: "read",
  listAuditEvents: "audit",
};

export interface AuthGateOptions {
  /** Null: no authentication, every caller may do everything. */
  authenticate: ((headers: Headers) => Authentication) | null;
  store: JobStore;
  clock: Clock;
  logger: Logger;
}

/**
 * Authentication and role checks, identical for every protocol: the Connect interceptor (gRPC,
 * gRPC-Web, Connect) and the REST handler both call {@link AuthGate.admit}. Only the
 * JobQueueService is guarded; health and reflection stay open. Refusals are audited, with the job
 * the call names, and say nothing about why beyond their code.
 */
export interface AuthGate {
  /**
   * `jobIdOf` reads the job the request names; it is only called to record a refusal (an
   * accepted call's job is recorded by the queue), and only a well-formed job id is kept.
   */
  admit(
    method: DescMethod,
    headers: Headers,
    remoteAddress: string | null,
    protocol: string,
    jobIdOf?: () => unknown,
  ): Promise<Caller | null>;
  interceptor: Interceptor;
}

export function createAuthGate(options: AuthGateOptions): AuthGate {
  const { authenticate, store, clock, logger } = options;

  async function refuse(
    method: DescMethod,
    caller: Caller,
    jobIdOf: (() => unknown) | undefined,
    outcome: AuditOutcome,
    code: Code,
    message: string,
  ): Promise<never> {
    try {
      await store.auditInsert([
        {
          at: clock.now(),
          principal: caller.principal?.name ?? null,
          action: method.name,
          jobId: await wellFormedJobId(jobIdOf),
          remoteAddress: caller.remoteAddress,
          protocol: caller.protocol,
          outcome,
          detail: null,
        },
      ]);
    } catch (err) {
      logger.error({ err }, "recording a refused call in the audit log failed");
    }
    throw new ConnectError(message, code);
  }

  async function admit(
    method: DescMethod,
    headers: Headers,
    remoteAddress: string | null,
    protocol: string,
    jobIdOf?: () => unknown,
  ): Promise<Caller | null> {
    if (method.parent.typeName !== JobQueueService.typeName) return null;
    if (!authenticate) return { principal: null, remoteAddress, protocol };
    const auth = authenticate(headers);
    if (auth.kind !== "principal") {
      const anonymous: Caller = { principal: null, remoteAddress, protocol };
      return refuse(
        method,
        anonymous,
        jobIdOf,
        "unauthenticated",
        Code.Unauthenticated,
        "a valid API key is required",
      );
    }
    const caller: Caller = { principal: auth.principal, remoteAddress, protocol };
    const action: Action | undefined = ACTIONS[method.localName as keyof typeof ACTIONS];
    if (action === undefined || !may(auth.principal.role, action)) {
      return refuse(
        method,
        caller,
        jobIdOf,
        "permission_denied",
        Code.PermissionDenied,
        "not allowed",
      );
    }
    return caller;
  }

  const interceptor: Interceptor = (next) => async (req) => {
    const caller = await admit(
      req.method,
      req.header,
      req.contextValues.get(REMOTE_ADDRESS),
      protocolOf(req.header.get("content-type")),
      // A server-streaming request is a stream of one message; it is read only to be refused.
      async () => {
        const message = req.stream ? await firstOf(req.message) : req.message;
        return (message as { jobId?: unknown } | undefined)?.jobId;
      },
    );
    if (caller) req.contextValues.set(CALLER, caller);
    return next(req);
  };

  return { admit, interceptor };
}

/** The caller a handler runs for; set by the gate for every JobQueueService call. */
export function callerOf(values: ContextValues): Caller {
  const caller = values.get(CALLER);
  if (!caller) throw new ConnectError("internal error", Code.Internal);
  return caller;
}

/** The job id a refused request names, if it names one that could exist. */
async function wellFormedJobId(jobIdOf: (() => unknown) | undefined): Promise<string | null> {
  try {
    const value = await jobIdOf?.();
    return typeof value === "string" ? validateJobId(value) : null;
  } catch {
    return null;
  }
}

async function firstOf<T>(messages: AsyncIterable<T>): Promise<T | undefined> {
  for await (const message of messages) return message;
  return undefined;
}

function protocolOf(contentType: string | null): string {
  const ct = contentType ?? "";
  if (ct.startsWith("application/grpc-web")) return "grpc-web";
  if (ct.startsWith("application/grpc")) return "grpc";
  return "connect";
}
