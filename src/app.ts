import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import type { ConnectRouter } from "@connectrpc/connect";
import { type Logger, pino } from "pino";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { JobQueueService } from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { createAuthenticator } from "./auth/api-keys.js";
import type { Config } from "./config.js";
import { type Clock, systemClock } from "./job/clock.js";
import { LOG_FORMAT } from "./log/logger.js";
import { createLeaseRescuer } from "./maintenance/lease-rescuer.js";
import { createScheduler } from "./maintenance/scheduler.js";
import { createTtlCleaner } from "./maintenance/ttl-cleaner.js";
import { createNotifier } from "./notify/notifier.js";
import { serveOpenApi } from "./openapi/serve-openapi.js";
import { createJobQueue, type JobQueue } from "./queue/job-queue.js";
import { createAuthGate } from "./rpc/auth.js";
import { registerHealth } from "./rpc/health.js";
import { createJobQueueServiceImpl } from "./rpc/job-queue-service.js";
import { registerReflection } from "./rpc/reflection.js";
import { createRestHandler } from "./rpc/rest.js";
import { createRpcServer } from "./rpc/server.js";
import { createSecretBox } from "./secrets/secret-box.js";
import { loadOrCreateKeyFile } from "./secrets/secret-keys.js";
import type { JobStore } from "./store/job-store.js";
import { createSqliteJobStore } from "./store/sqlite/sqlite-job-store.js";
import { createHttpDispatcher } from "./worker/dispatcher.js";
import { createOutboundPolicy } from "./worker/outbound-policy.js";
import { createLimitResolver } from "./worker/rate-limits.js";
import { createWorkerPool } from "./worker/worker-pool.js";

export const VERSION = "0.1.0";

export interface App {
  readonly queue: JobQueue;
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
  clock?: Clock;
  /** The resolver the outbound policy checks host names with (tests inject one). */
  resolve?: (hostname: string) => Promise<{ address: string; family: number }[]>;
}

function ephemeralKey(logger: Logger): Buffer {
  logger.warn(
    "JOBQUEUE_SECRET_KEY is not set and the database is in memory: using a throwaway key",
  );
  return randomBytes(32);
}

/** Wires the rooms together: store, notifier, queue, worker pool, maintenance and the server. */
export function createApp(config: Config, deps: AppDeps = {}): App {
  const logger = deps.logger ?? pino({ ...LOG_FORMAT, level: config.logLevel });
  const clock = deps.clock ?? systemClock;
  const store = createSqliteJobStore({ path: config.dbPath });
  const notifier = createNotifier();
  const policy = createOutboundPolicy({
    allowed: config.allowedHosts,
    denied: config.deniedHosts,
    resolve: deps.resolve,
  });
  const secretBox = createSecretBox(
    config.secretKeys ??
      (config.dbPath === ":memory:"
        ? [ephemeralKey(logger)]
        : [loadOrCreateKeyFile(join(dirname(config.dbPath), "secret.key"), logger)]),
  );
  const queue = createJobQueue({
    store,
    notifier,
    clock,
    secretBox,
    limits: {
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
      maxBatchSize: config.maxBatchSize,
      refuseDestination: (url) => policy.refuse(url),
    },
    watchPollMs: Math.max(config.pollIntervalMs, 1000),
  });
  const dispatcher = createHttpDispatcher({
    resultMaxBytes: config.resultMaxBytes,
    userAgent: `jobqueue/${VERSION}`,
    policy,
  });
  const pool = createWorkerPool({
    store,
    notifier,
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
    worker: randomBytes(6).toString("hex"),
    limits: createLimitResolver(config.hostLimits),
    secretBox,
  });
  const scheduler = createScheduler({
    store,
    notifier,
    clock,
    logger,
    maxIntervalMs: Math.max(config.pollIntervalMs, 1000),
  });
  const rescuer = createLeaseRescuer({
    store,
    notifier,
    clock,
    logger,
    intervalMs: Math.max(100, Math.min(config.leaseMs / 2, 5_000)),
  });
  const cleaner = createTtlCleaner({
    store,
    clock,
    logger,
    maxIntervalMs: config.cleanupIntervalMs,
    auditRetentionMs: config.auditRetentionMs,
  });
  const gate = createAuthGate({
    authenticate: config.auth.enabled ? createAuthenticator(config.auth.keys) : null,
    store,
    clock,
    logger,
  });

  const impl = createJobQueueServiceImpl(queue, logger);
  const shutdown = new AbortController();
  let serving = false;
  let markStopping!: () => void;
  const stopping = new Promise<void>((resolve) => {
    markStopping = resolve;
  });
  const serviceNames = [JobQueueService.typeName];
  const routes = (router: ConnectRouter) => {
    router.service(JobQueueService, impl);
    registerReflection(router, [JobQueueService, Health]);
    registerHealth(router, serviceNames, { serving: () => serving, stopping });
  };
  const rest = createRestHandler({
    service: JobQueueService,
    impl,
    logger,
    maxRequestBytes: config.maxRequestBytes,
    gate,
  });
  const server = createRpcServer({
    host: config.host,
    port: config.port,
    logger,
    routes,
    fallback: async (req, res) => serveOpenApi(req, res) || rest(req, res),
    serving: () => serving,
    readMaxBytes: config.maxRequestBytes,
    shutdownSignal: shutdown.signal,
    interceptors: [gate.interceptor],
  });

  let stopped: Promise<void> | null = null;
  return {
    queue,
    store,
    async start() {
      // Limits may have changed since the last run: waiting jobs are re-judged at their next claim.
      await store.jobPromoteWaiting({ limit: Number.MAX_SAFE_INTEGER });
      rescuer.start();
      scheduler.start();
      cleaner.start();
      pool.start();
      const address = await server.listen();
      serving = true;
      logger.info(
        {
          ...address,
          db: config.dbPath,
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
        await Promise.all([
          pool.stop(config.shutdownGraceMs),
          server.close(config.shutdownGraceMs),
        ]);
        await Promise.all([rescuer.stop(), scheduler.stop(), cleaner.stop()]);
        await dispatcher.close();
        await store.close();
        logger.info("stopped");
      })();
      return stopped;
    },
  };
}
