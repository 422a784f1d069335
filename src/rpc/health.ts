import { Code, ConnectError, type Interceptor, type ServiceImpl } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";
import { type ServiceRegistration, serve } from "./rest.js";

/** What the health endpoints report: serving until the process begins to stop. */
export interface HealthState {
  serving(): boolean;
  /** Resolves when the process begins to stop. */
  stopping: Promise<void>;
}

/**
 * grpc.health.v1.Health for the whole server ("") and each served service. Check answers at once;
 * Watch sends the status now and again when the server starts to stop.
 */
export function healthService(serviceNames: string[], state: HealthState): ServiceRegistration {
  const known = new Set(["", ...serviceNames]);
  const status = () => (state.serving() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);

  const impl: ServiceImpl<typeof Health> = {
    check(req) {
      if (!known.has(req.service)) {
        throw new ConnectError(`unknown service ${req.service}`, Code.NotFound);
      }
      return { status: status() };
    },
    async *watch(req, ctx) {
      if (!known.has(req.service)) {
        yield { status: ServingStatus.SERVICE_UNKNOWN };
        return;
      }
      yield { status: status() };
      if (!state.serving()) return;
      const aborted = new Promise<void>((resolve) =>
        ctx.signal.addEventListener("abort", () => resolve(), { once: true }),
      );
      await Promise.race([state.stopping, aborted]);
      if (!ctx.signal.aborted) yield { status: ServingStatus.NOT_SERVING };
    },
    list() {
      return {
        statuses: Object.fromEntries([...known].map((name) => [name, { status: status() }])),
      };
    },
  };
  return serve(Health, impl);
}

/**
 * The serving stage of the pipeline: once the process begins to stop, every call but health
 * checks is answered UNAVAILABLE (503 over REST) with a Retry-After, on every protocol, while
 * calls already in flight finish.
 */
export function createServingInterceptor(
  serving: () => boolean,
  retryAfterSeconds: number,
): Interceptor {
  return (next) => async (req) => {
    if (serving() || req.service.typeName === Health.typeName) return next(req);
    const err = new ConnectError("the server is shutting down; retry shortly", Code.Unavailable);
    err.metadata.set("retry-after", String(retryAfterSeconds));
    throw err;
  };
}
