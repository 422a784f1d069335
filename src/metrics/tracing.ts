import type { AttemptEndRecord } from "../job/types.js";
import type { ClaimedJob } from "../store/job-store.js";
import type { WorkerPoolObserver } from "../worker/worker-pool.js";

/** OpenTelemetry traces of the attempts this node makes. */
export interface Tracing extends WorkerPoolObserver {
  /** Exports what is buffered, then stops. */
  shutdown(): Promise<void>;
}

/**
 * Traces every attempt this node makes as a span (`jobqueue.attempt`, from its claim to the end of
 * its call) with the outbound HTTP call inside it as a client span, exported over OTLP/HTTP (JSON)
 * to `url` in batches. The OpenTelemetry packages are loaded only when this is called, i.e. only
 * when JOBQUEUE_OTLP_TRACES_URL is set. Spans carry the job id, the attempt number, the method,
 * the destination host and port, the response status and the error code; never the URL's path or
 * query, headers or bodies. Extra exporter headers (an API key of the collector) come from the
 * standard OTEL_EXPORTER_OTLP_TRACES_HEADERS / OTEL_EXPORTER_OTLP_HEADERS.
 */
export async function createTracing(options: {
  url: string;
  serviceName: string;
  version: string;
  nodeId: string;
}): Promise<Tracing> {
  const [
    api,
    { BasicTracerProvider, BatchSpanProcessor },
    { OTLPTraceExporter },
    { resourceFromAttributes },
  ] = await Promise.all([
    import("@opentelemetry/api"),
    import("@opentelemetry/sdk-trace-base"),
    import("@opentelemetry/exporter-trace-otlp-http"),
    import("@opentelemetry/resources"),
  ]);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      "service.name": options.serviceName,
      "service.version": options.version,
      "service.instance.id": options.nodeId,
    }),
    spanProcessors: [
      new BatchSpanProcessor(new OTLPTraceExporter({ url: options.url }), {
        scheduledDelayMillis: 1_000,
      }),
    ],
  });
  const tracer = provider.getTracer("jobqueue", options.version);
  /** When each attempt in flight was claimed (wall clock), by job and lease. */
  const claimedAt = new Map<string, number>();
  const keyOf = (job: ClaimedJob) => `${job.id} ${job.leaseToken}`;

  function destination(job: ClaimedJob): Record<string, string | number> {
    try {
      const u = new URL(job.url);
      const port = u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80;
      return {
        "server.address": u.hostname,
        "server.port": port,
        "url.scheme": u.protocol.slice(0, -1),
      };
    } catch {
      return {};
    }
  }

  function traceAttempt(job: ClaimedJob, end: AttemptEndRecord) {
    const endedAt = Date.now();
    const callMs = end.durationMs ?? 0;
    const startedAt = claimedAt.get(keyOf(job)) ?? endedAt - callMs;
    claimedAt.delete(keyOf(job));
    const failed = end.outcome !== "succeeded";
    const attempt = tracer.startSpan("jobqueue.attempt", {
      kind: api.SpanKind.CONSUMER,
      startTime: startedAt,
      attributes: {
        "jobqueue.job.id": job.id,
        "jobqueue.attempt": job.attempt,
        "jobqueue.attempt.outcome": end.outcome,
        "jobqueue.bucket": job.bucket,
        ...(end.errorCode ? { "error.type": end.errorCode } : {}),
      },
    });
    if (end.durationMs !== null) {
      const call = tracer.startSpan(
        job.method,
        {
          kind: api.SpanKind.CLIENT,
          startTime: endedAt - callMs,
          attributes: {
            "http.request.method": job.method,
            ...destination(job),
            ...(end.responseStatus !== null
              ? { "http.response.status_code": end.responseStatus }
              : {}),
            ...(end.errorCode ? { "error.type": end.errorCode } : {}),
          },
        },
        api.trace.setSpan(api.context.active(), attempt),
      );
      if (failed)
        call.setStatus({ code: api.SpanStatusCode.ERROR, message: end.error ?? undefined });
      call.end(endedAt);
    }
    if (failed)
      attempt.setStatus({ code: api.SpanStatusCode.ERROR, message: end.error ?? undefined });
    attempt.end(endedAt);
  }

  return {
    claimed({ jobs }) {
      const now = Date.now();
      for (const job of jobs) claimedAt.set(keyOf(job), now);
    },
    attemptEnded({ job, end }) {
      traceAttempt(job, end);
    },
    shutdown: () => provider.shutdown(),
  };
}
