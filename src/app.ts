import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { type Logger, pino } from "pino";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { JobQueueService } from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { QueueService } from "../gen/jobqueue/v1/queue_service_pb.js";
import { ScheduleService } from "../gen/jobqueue/v1/schedule_service_pb.js";
import { createAuthenticator, signingSecretsOf } from "./auth/api-keys.js";
import { createAuthFailureThrottle } from "./auth/auth-failures.js";
import type { Config } from "./config.js";
import { type Clock, systemClock } from "./job/clock.js";
import { createLimitResolver } from "./job/rate-limits.js";
import { LOG_FORMAT } from "./log/logger.js";
import { createLeaderElector } from "./maintenance/leader-elector.js";
import { createLeaseRescuer } from "./maintenance/lease-rescuer.js";
import { createNodeHeartbeat } from "./maintenance/node-heartbeat.js";
import { createOperationRunner } from "./maintenance/operation-runner.js";
import type { Service } from "./maintenance/periodic-service.js";
import { createScheduleTicker } from "./maintenance/schedule-ticker.js";
import { createScheduler } from "./maintenance/scheduler.js";
import { createStatsCompactor } from "./maintenance/stats-compactor.js";
import { createTtlCleaner } from "./maintenance/ttl-cleaner.js";
import { createMetrics, type Metrics, STATS_CAP } from "./metrics/metrics.js";
import { createTracing } from "./metrics/tracing.js";
import { serveOpenApi } from "./openapi/serve-openapi.js";
import { PACKAGE_ROOT, VERSION } from "./package-info.js";
import { createEventHub } from "./queue/event-hub.js";
import { createJobQueue, type JobQueue } from "./queue/job-queue.js";
import { createOperator, type Operator } from "./queue/operator.js";
import { createQueueDirectory } from "./queue/queue-directory.js";
import { createReadiness } from "./queue/readiness.js";
import { createRefusalLog } from "./queue/refusal-log.js";
import { createScheduleBook, type ScheduleBook } from "./queue/schedule-book.js";
import { assertRolesDeclared, createAuthInterceptor } from "./rpc/auth.js";
import { createErrorInterceptor } from "./rpc/errors.js";
import { createServingInterceptor, healthService } from "./rpc/health.js";
import { createJobQueueServiceImpl } from "./rpc/job-queue-service.js";
import { createQueueServiceImpl } from "./rpc/queue-service.js";
import { reflectionServices } from "./rpc/reflection.js";
import { type ServiceRegistration, serve } from "./rpc/rest.js";
import { createScheduleServiceImpl } from "./rpc/schedule-service.js";
import { createRpcServer } from "./rpc/server.js";
import { createStaticSite } from "./rpc/static-site.js";
import { createSecretBox } from "./secrets/secret-box.js";
import { loadOrCreateKeyFile } from "./secrets/secret-keys.js";
import type { JobStore } from "./store/job-store.js";
import { openStore } from "./store/open-store.js";
import { createHttpDispatcher } from "./worker/dispatcher.js";
import { createOutboundPolicy } from "./worker/outbound-policy.js";
import { createWorkerPool, type WorkerPoolObserver } from "./worker/worker-pool.js";

export interface App {
  readonly queue: JobQueue;
  readonly operator: Operator;
  readonly schedules: ScheduleBook;
  readonly store: JobStore;
  /** Starts the background services and the server; resolves with the bound address. */
  start(): Promise<{ host: string; port: number }>;
  /**
   * Stops gracefully: health turns to not-serving, claiming stops, calls in flight get the grace
   * period to finish, then the rest are aborted and their jobs put back. Idempotent.
   */
  stop(): Promise<void>;
}

export interface AppDeps {
  logger?: Logger;
  /** The time of the store and the workers; by default the system's (SQLite) or the database's. */
  clock?: Clock;
  /** The resolver the outbound policy checks host names with (tests inject one). */
  resolve?: (hostname: string) => Promise<{ address: string; family: number }[]>;
  /** The built dashboard served at /ui; by default the package's `ui/dist`. */
  uiDir?: string;
  /** How often event-stream watchers get a heartbeat (default 15 s). */
  eventHeartbeatMs?: number;
  /** Jobs a bulk operation acts on per transaction (tests make it small to stop one midway). */
  operationBatch?: number;
  /** How often the leader looks for due schedule ticks (default 1 s). */
  scheduleTickMs?: number;
}

function ephemeralKey(logger: Logger): Buffer {
  logger.warn(
    "JOBQUEUE_SECRET_KEY is not set and the database is in memory: using a throwaway key",
  );
  return randomBytes(32);
}

/** How often a node writes its heartbeat; it counts as alive for three of these. */
const HEARTBEAT_MS = 5_000;
/** Per-minute throughput kept for this long (a day). */
const STATS_KEEP_MINUTES = 24 * 60;
/** Nodes silent this long are forgotten. */
const FORGET_NODES_MS = 86_400_000;

/**
 * Wires the rooms together: store (opened, migrations applied), queue, worker pool, the
 * maintenance services its node runs while it leads, and the server.
 */
export async function createApp(config: Config, deps: AppDeps = {}): Promise<App> {
  const logger = deps.logger ?? pino({ ...LOG_FORMAT, level: config.logLevel });
  const clock = deps.clock ?? systemClock;
  const db = config.db;
  const limits = createLimitResolver(config.hostLimits);
  let serving = false;
  // Read when scraped, once everything below exists.
  const metrics: Metrics | null =
    config.metrics === "off"
      ? null
      : createMetrics({
          stats: () => store.jobStats({ cap: STATS_CAP }),
          inFlight: () => pool.inFlightByBucket(),
          limited: (bucket) => (limits?.(bucket) ?? null) !== null,
          ready: () => serving && readiness.state().ready,
          watchers: () => events.watchers,
          now: () => clock.now(),
        });
  const tracing = config.otlpTracesUrl
    ? await createTracing({
        url: config.otlpTracesUrl,
        serviceName: "jobqueue",
        version: VERSION,
        nodeId: config.nodeId,
      })
    : null;
  const observers: WorkerPoolObserver[] = [];
  if (metrics) observers.push(metrics);
  if (tracing) observers.push(tracing);
  const opened = await openStore(db, {
    poolSize: config.dbPoolSize,
    clock: deps.clock,
    minFreeBytes: config.minFreeDiskBytes,
    onCommit: metrics ? (commit) => metrics.committed(commit) : undefined,
    callbacks: {
      maxBytes: config.callbackMaxBytes,
      maxAttempts: config.callbackMaxAttempts,
      timeoutMs: config.defaultTimeoutMs,
      backoffBaseMs: config.defaultBackoffBaseMs,
    },
  });
  const signingSecrets = signingSecretsOf(
    [...config.apiKeysFile, ...config.apiKeys],
    config.signingSecrets,
  );
  const readiness = createReadiness({ store: opened, logger });
  const store: JobStore = metrics ? metrics.instrument(readiness.store) : readiness.store;
  const events = createEventHub({
    store,
    logger,
    now: () => clock.now(),
    heartbeatMs: deps.eventHeartbeatMs,
  });
  const policy = createOutboundPolicy({
    allowed: config.allowedHosts,
    denied: config.deniedHosts,
    resolve: deps.resolve,
  });
  const secretBox = createSecretBox(
    config.secretKeys ??
      (db.kind === "sqlite" && db.path !== ":memory:"
        ? [loadOrCreateKeyFile(join(dirname(db.path), "secret.key"), logger)]
        : [ephemeralKey(logger)]),
  );
  const refusals = createRefusalLog({
    store,
    clock,
    individualPerWindow: config.auditRefusalsPerMinute,
    onError: (err) => logger.error({ err }, "recording refused calls in the audit log failed"),
  });
  const authFailures = createAuthFailureThrottle({ clock, limit: config.authFailuresPerMinute });
  const queues = createQueueDirectory({ store, logger });
  /** What a submitted job may be, for jobs and for schedules' templates alike. */
  const jobLimits = {
    defaultTimeoutMs: config.defaultTimeoutMs,
    maxTimeoutMs: config.maxTimeoutMs,
    defaultMaxAttempts: config.defaultMaxAttempts,
    defaultBackoffStrategy: config.defaultBackoffStrategy,
    defaultBackoffBaseMs: config.defaultBackoffBaseMs,
    defaultTtlMs: config.defaultTtlMs,
    maxTtlMs: config.maxTtlMs,
    maxBodyBytes: config.maxBodyBytes,
    maxUrlLength: config.maxUrlLength,
    maxHeaders: config.maxHeaders,
    maxHeaderBytes: config.maxHeaderBytes,
    maxTags: config.maxTags,
    maxTagLength: config.maxTagLength,
    maxPageSize: config.maxPageSize,
    refuseDestination: (url: URL) => policy.refuse(url),
  };
  const queue = createJobQueue({
    queues,
    refusals,
    store,
    clock,
    secretBox,
    signingSecrets,
    limits: { ...jobLimits, maxBatchSize: config.maxBatchSize },
    events,
  });
  const schedules = createScheduleBook({
    store,
    queue,
    queues,
    clock,
    secretBox,
    logger,
    limits: jobLimits,
  });
  const dispatcher = createHttpDispatcher({
    resultMaxBytes: config.resultMaxBytes,
    userAgent: `jobqueue/${VERSION}`,
    policy,
  });
  const operator = createOperator({
    store,
    clock,
    queues,
    limits: { maxTtlMs: config.maxTtlMs, maxTags: config.maxTags, maxPageSize: config.maxPageSize },
  });
  const pool = createWorkerPool({
    store,
    queues,
    dispatcher,
    clock,
    logger,
    concurrency: config.concurrency,
    leaseMs: config.leaseMs,
    pollIntervalMs: config.pollIntervalMs,
    retryPolicy: {
      backoffMaxMs: config.backoffMaxMs,
      retryAfterMaxMs: config.retryAfterMaxMs,
      jitter: 0.2,
      random: Math.random,
    },
    node: config.nodeId,
    limits,
    secretBox,
    signingSecrets,
    observer:
      observers.length === 0
        ? undefined
        : {
            claimed: (c) => {
              for (const o of observers) o.claimed(c);
            },
            attemptEnded: (a) => {
              for (const o of observers) o.attemptEnded(a);
            },
          },
  });
  const startedAt = clock.now();
  const heartbeat = createNodeHeartbeat({
    store,
    logger,
    intervalMs: Math.min(HEARTBEAT_MS, Math.max(100, config.leaseMs / 3)),
    beat: () => ({
      id: config.nodeId,
      startedAt,
      version: VERSION,
      concurrency: config.concurrency,
      inFlight: pool.inFlight,
    }),
  });
  // Limits may have changed since the last run: waiting jobs are re-judged at their next claim.
  const rejudgeWaiting: Service = {
    start() {
      store.jobPromoteWaiting({ limit: Number.MAX_SAFE_INTEGER }).catch((err: Error) => {
        logger.warn({ err: err.message }, "could not re-judge waiting jobs");
      });
    },
    async stop() {},
  };
  const elector = createLeaderElector({
    store,
    logger,
    node: config.nodeId,
    ttlMs: config.leaseMs,
    services: [
      rejudgeWaiting,
      createScheduler({
        store,
        clock,
        logger,
        maxIntervalMs: Math.max(config.pollIntervalMs, 1000),
      }),
      createLeaseRescuer({
        store,
        logger,
        intervalMs: Math.max(100, Math.min(config.leaseMs / 2, 5_000)),
      }),
      createTtlCleaner({
        store,
        clock,
        logger,
        maxIntervalMs: config.cleanupIntervalMs,
        auditRetentionMs: config.auditRetentionMs,
        eventRetentionMs: config.eventRetentionMs,
        forgetNodesAfterMs: FORGET_NODES_MS,
      }),
      createOperationRunner({ store, logger, intervalMs: 5_000, batch: deps.operationBatch }),
      createStatsCompactor({ store, logger, intervalMs: 5_000, keepMinutes: STATS_KEEP_MINUTES }),
      createScheduleTicker({ schedules, clock, logger, intervalMs: deps.scheduleTickMs }),
    ],
  });
  const authenticate = config.auth.enabled ? createAuthenticator(config.auth.keys) : null;
  const interceptors = [
    createErrorInterceptor(logger),
    createServingInterceptor(() => serving, Math.max(1, Math.ceil(config.shutdownGraceMs / 1000))),
    createAuthInterceptor({
      authenticate,
      throttled: (address) => authFailures.retryAfter(address),
      authFailed: (address) => authFailures.failed(address),
      refused: async ({ caller, action, outcome, jobIdOf }) => {
        try {
          await queue.recordRefusal(caller, action, outcome, await jobIdOf());
        } catch (err) {
          logger.error({ err }, "recording a refused call in the audit log failed");
        }
      },
    }),
  ];
  const shutdown = new AbortController();
  let markStopping!: () => void;
  const stopping = new Promise<void>((resolve) => {
    markStopping = resolve;
  });
  // Every service served, on every protocol; a new one is added here and nowhere else.
  const served: ServiceRegistration[] = [
    serve(JobQueueService, createJobQueueServiceImpl(queue, operator, config.maxPageSize)),
    serve(QueueService, createQueueServiceImpl(operator)),
    serve(ScheduleService, createScheduleServiceImpl(schedules)),
  ];
  assertRolesDeclared(served.map((s) => s.service));
  const services: ServiceRegistration[] = [
    ...served,
    healthService(
      served.map((s) => s.service.typeName),
      { serving: () => serving && readiness.state().ready, stopping },
    ),
    ...reflectionServices([...served.map((s) => s.service), Health]),
  ];
  const server = createRpcServer({
    host: config.host,
    port: config.port,
    logger,
    services,
    interceptors,
    pages: [
      serveOpenApi,
      createStaticSite({ root: deps.uiDir ?? join(PACKAGE_ROOT, "ui", "dist"), mount: "/ui" }),
    ],
    serving: () => serving,
    readiness: () => {
      const state = readiness.state();
      if (!serving) return { ready: false, reason: "the server is starting or stopping" };
      return state;
    },
    readMaxBytes: config.maxRequestBytes,
    corsOrigins: config.corsOrigins,
    accessLog: config.accessLog ? logger.child({ log: "access" }) : null,
    onCall: metrics ? (call) => metrics.callEnded(call) : null,
    metrics: metrics
      ? async (headers, address) => {
          const open = config.metrics === "open" || (config.metrics === "auto" && !authenticate);
          if (!open) {
            const refusal = (status: number, code: string, message: string, more = {}) => ({
              status,
              headers: { "content-type": "application/json", ...more },
              body: JSON.stringify({ code, message }),
            });
            const wait = authFailures.retryAfter(address);
            if (wait > 0) {
              return refusal(429, "resource_exhausted", "too many failed authentications", {
                "retry-after": String(wait),
              });
            }
            if (authenticate?.(headers).kind !== "principal") {
              authFailures.failed(address);
              return refusal(401, "unauthenticated", "GET /metrics needs a valid API key", {
                "www-authenticate": 'Bearer realm="jobqueue"',
              });
            }
          }
          const { contentType, body } = await metrics.render();
          return { status: 200, headers: { "content-type": contentType }, body };
        }
      : null,
    shutdownSignal: shutdown.signal,
  });

  let stopped: Promise<void> | null = null;
  return {
    queue,
    operator,
    schedules,
    store,
    async start() {
      await queues.start();
      readiness.start();
      heartbeat.start();
      elector.start();
      pool.start();
      const address = await server.listen();
      serving = true;
      logger.info(
        {
          ...address,
          db: db.kind === "sqlite" ? db.path : `postgres (schema ${db.schema})`,
          node: config.nodeId,
          concurrency: config.concurrency,
          auth: config.auth.enabled ? `${config.auth.keys.length} API keys` : "none",
          version: VERSION,
        },
        "jobqueue listening",
      );
      return address;
    },
    stop() {
      if (stopped) return stopped;
      stopped = (async () => {
        serving = false;
        markStopping();
        logger.info({ graceMs: config.shutdownGraceMs, inFlight: pool.inFlight }, "stopping");
        shutdown.abort();
        // The port stays open until the calls in flight have finished (jobs and RPCs alike, within
        // the grace period), answering "not serving" meanwhile.
        const deadline = Date.now() + config.shutdownGraceMs;
        await pool.stop(config.shutdownGraceMs);
        await server.close(Math.max(0, deadline - Date.now()));
        await Promise.all([elector.stop(), heartbeat.stop(), readiness.stop(), queues.stop()]);
        await dispatcher.close();
        await tracing?.shutdown().catch((err: Error) => {
          logger.warn({ err: err.message }, "exporting the last traces failed");
        });
        await events.stop();
        await refusals.stop();
        await store.close();
        logger.info("stopped");
      })();
      return stopped;
    },
  };
}
