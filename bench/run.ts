/**
 * The JobQueue benchmark: `npm run bench` (or `npm run bench -- --quick` for a smoke test).
 *
 * A job queue's overhead is everything between "the client asked" and "the HTTP call went out",
 * and between "the response came back" and "the result is durable". The limit is the same calls
 * made directly; the alternative users would pick is BullMQ on Redis. Every process below is
 * separate, all traffic stays on 127.0.0.1, and every run stops by itself (each phase has a
 * timeout; every child process is stopped at the end, on failure and on Ctrl-C too).
 *
 * Processes: the target (bench/target.ts: keep-alive HTTP server, tiny JSON and echo routes), the
 * JobQueue server started as a user starts it (`node dist/src/main.js`, what `npm start` runs,
 * configured by JOBQUEUE_* variables, a fresh SQLite file on disk per phase,
 * JOBQUEUE_CONCURRENCY = C), the JobQueue client (bench/jobqueue-client.ts: REST over HTTP/1.1
 * by default, Connect or gRPC over HTTP/2), the BullMQ worker (bench/bullmq-worker.ts,
 * concurrency C) and client (bench/bullmq-client.ts) on two Redis servers: the machine's
 * (127.0.0.1:6379, no persistence) and a durable one the run starts and stops
 * (`redis-server --port 6390 --appendonly yes --appendfsync always --save ''`, its files in the
 * run's temporary directory), the direct contestant (bench/direct.ts) and the store
 * micro-benchmark (bench/store-claim.ts).
 *
 * Each round runs, in this order (rounds interleave the contestants; ratios are taken within a
 * round, and the report shows the median with min–max over the rounds):
 *
 * - End to end, N jobs, each one GET to the target's /json, body read, status and body stored:
 *   1. direct: undici, C calls in flight, results kept in memory. jobs/s = N ÷ time from the first
 *      call to the last body read.
 *   2. JobQueue over REST, one `POST /jobs` per job (128 calls in flight), and 3. `POST
 *      /jobs:batch` of 500 (2 in flight). Timed in the client from the first submit until the last
 *      job is `succeeded`: the client waits for the target to count N calls, then polls
 *      ListJobs(status = queued|running, page_size = 1) every 2 ms until it is empty. A job is only
 *      `succeeded` once its result row is committed (fsynced), so the end is "the last result is
 *      durable and readable". Then every job is checked (ListJobs(succeeded) counts N, none in any
 *      other status, a sample of GetJobResult holds the 200 and body). The server's CPU time
 *      (/proc/<pid>/stat) over the run, ÷ N, is its CPU per job.
 *   4. BullMQ, on each Redis: addBulk of 500 (2 in flight) to a fresh queue; a worker process of
 *      concurrency C makes the same undici call and returns { status, body }; timed until the
 *      queue's completed count is N (polled every 2 ms after the target has counted N). Jobs keep
 *      their results (no removeOnComplete), 3 attempts with exponential backoff, like JobQueue's
 *      defaults. The queue is obliterated afterwards. CPU per job: the worker's and Redis's.
 * - Enqueue only (nothing runs the jobs): JobQueue jobs are scheduled a day ahead (the worker pool
 *   still wakes on each enqueue, as it would for any scheduled job); BullMQ has no worker. JobQueue
 *   REST batch on a fresh server; then REST `POST /jobs`, Connect unary and gRPC unary (128 in
 *   flight each) on one server; BullMQ addBulk and Queue.add (128 in flight) on each Redis.
 * - enqueue→start latency: a fresh server with an idle pool; the client sends `POST /jobs` at a steady
 *   200 jobs/s (open loop; 1 s warm-up, then 5 s measured); each job calls the target's /lat with the
 *   client's send time; the target subtracts it from its receive time. Both are CLOCK_MONOTONIC
 *   (`process.hrtime.bigint()`, one clock for every process on Linux), so the figure spans client
 *   encode, HTTP/2, the enqueue commit, the wake-up, the claim commit and the call reaching the
 *   target. (The server's own timestamps are whole milliseconds: too coarse for a 0.5 ms target.)
 *   The same for BullMQ (Queue.add, worker idle), for reference.
 * - Claim rate: the store alone, in a child process (createSqliteJobStore on a file). A cycle is
 *   jobClaim(limit C) plus one jobFinishAttempt per claimed job; after each cycle (untimed) as many
 *   jobs are inserted as were claimed so the depth holds. 1k queued (a fresh file) against the big
 *   queue (1M by default: a file built once per run with jobInsertMany in batches of 1000). Each
 *   runs until `--claims` jobs or `--claim-seconds`, whichever first.
 * - RSS: a copy of the big-queue file (all due, so the server works through its backlog at C) under
 *   the real server; for `--rss-seconds` a client mixes ListJobs, GetJob, GetJobResult and
 *   EnqueueJob (8 in flight) while VmRSS is read from /proc/<pid>/status every 100 ms. The figure
 *   is the peak of those samples.
 *
 * PostgreSQL (phase `pg`): end to end (`POST /jobs:batch`) with one JobQueue node and with two
 * nodes on one PostgreSQL schema (the client submits to the first; both claim), enqueue only (REST
 * batch and unary) on one node, and the store's claim rate with 1k and with the big queue queued
 * (prefilled once per run into a schema of its own). PostgreSQL is the machine's
 * (JOBQUEUE_BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/test); every schema the run
 * makes is dropped at the end.
 *
 * Results: bench/results/<date>.json (options, machine, versions, every round's raw figures) and
 * <date>.md, and bench/results/latest.md for a full run (not --quick, not --only).
 *
 * Flags: --n, --c, --rounds, --quick, --big (depth of the big queue), --claims, --claim-seconds,
 * --rate, --latency-seconds, --rss-seconds, --rpc-inflight, --batch-size, --batch-inflight,
 * --phase-timeout (seconds), --only (comma list of: direct, jq-rest-unary, jq-rest-batch, bullmq,
 * bullmq-durable, enqueue, latency, claim, pg, rss), --server-cpu-prof <dir> (run every JobQueue server under --cpu-prof),
 * --server-node-args="<flags>" (more Node.js flags for every JobQueue server, split at spaces: GC
 * flags to compare, or `--import <file>` to load a profiler),
 * --dir (where temporary files go), --keep (keep them).
 */
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import pg from "pg";
import type { DirectResult } from "./direct.js";
import type { E2eResult, RateResult, RssLoadResult } from "./jobqueue-client.js";
import type { LatencyResult } from "./open-loop.js";
import {
  type Child,
  forkChild,
  killAll,
  PhaseTimeout,
  REPO_ROOT,
  type RedisProcess,
  readCpuMs,
  readRss,
  type ServerProcess,
  startRedis,
  startServer,
} from "./processes.js";
import { createProgressBar } from "./progress-bar.js";
import { describeMachine, markdown, RAW_FIGURES, summarize, TARGET_FIGURES } from "./report.js";
import { percentile } from "./stats.js";
import type { ClaimResult } from "./store-claim.js";

const REDIS = { host: "127.0.0.1", port: 6379 };
/** BullMQ's durable peer: a redis-server of the run's own, every write fsynced before it answers. */
const DURABLE_REDIS = { host: "127.0.0.1", port: 6390 };
const DURABLE_REDIS_ARGS = ["--appendonly", "yes", "--appendfsync", "always", "--save", ""];
const PHASES = [
  "direct",
  "jq-rest-unary",
  "jq-rest-batch",
  "bullmq",
  "bullmq-durable",
  "enqueue",
  "latency",
  "claim",
  "pg",
  "rss",
];
const PG_URL = process.env.JOBQUEUE_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test";
/** Every node on one database needs the same key for secret headers. */
const PG_SECRET_KEY = randomBytes(32).toString("hex");

const { values: flags } = parseArgs({
  options: {
    n: { type: "string" },
    c: { type: "string" },
    rounds: { type: "string" },
    quick: { type: "boolean", default: false },
    big: { type: "string" },
    claims: { type: "string" },
    "claim-seconds": { type: "string" },
    rate: { type: "string" },
    "latency-seconds": { type: "string" },
    "rss-seconds": { type: "string" },
    "rpc-inflight": { type: "string" },
    "batch-size": { type: "string" },
    "batch-inflight": { type: "string" },
    "phase-timeout": { type: "string" },
    only: { type: "string" },
    "server-cpu-prof": { type: "string" },
    "server-node-args": { type: "string" },
    dir: { type: "string" },
    keep: { type: "boolean", default: false },
  },
  strict: true,
});

function intFlag(name: keyof typeof flags, quick: number, full: number): number {
  const raw = flags[name];
  if (raw === undefined || typeof raw === "boolean") return flags.quick ? quick : full;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
  return n;
}

const opts = {
  n: intFlag("n", 3_000, 50_000),
  c: intFlag("c", 64, 64),
  rounds: intFlag("rounds", 1, 3),
  big: intFlag("big", 20_000, 1_000_000),
  small: 1_000,
  claims: intFlag("claims", 3_000, 20_000),
  claimSeconds: intFlag("claim-seconds", 3, 15),
  rate: intFlag("rate", 200, 200),
  latencySeconds: intFlag("latency-seconds", 2, 5),
  rssSeconds: intFlag("rss-seconds", 2, 10),
  rpcInflight: intFlag("rpc-inflight", 128, 128),
  batchSize: intFlag("batch-size", 500, 500),
  batchInflight: intFlag("batch-inflight", 2, 2),
  phaseTimeoutMs: intFlag("phase-timeout", 600, 2400) * 1000,
  only: flags.only ? flags.only.split(",").map((s) => s.trim()) : PHASES,
  quick: flags.quick,
  cpuProfDir: flags["server-cpu-prof"] ? resolve(flags["server-cpu-prof"]) : null,
  serverNodeArgs: flags["server-node-args"]?.split(" ").filter(Boolean) ?? [],
};
for (const phase of opts.only) {
  if (!PHASES.includes(phase))
    throw new Error(`--only: unknown phase ${phase} (${PHASES.join(", ")})`);
}
const want = (phase: string) => opts.only.includes(phase);

/** Steps per round, for the progress bar. */
const STEPS: Record<string, number> = {
  direct: 1,
  "jq-rest-unary": 1,
  "jq-rest-batch": 1,
  bullmq: 1,
  "bullmq-durable": 1,
  enqueue: 8,
  latency: 2,
  claim: 2,
  pg: 6,
  rss: 1,
};
const needsBig = want("claim") || want("rss");
const totalSteps =
  (needsBig ? 1 : 0) +
  (want("pg") ? 1 : 0) +
  opts.rounds * opts.only.reduce((sum, p) => sum + (STEPS[p] ?? 0), 0);
const bar = createProgressBar(totalSteps);

const runStamp = new Date().toISOString().slice(0, 19).replace(/:/g, "-");
const runId = `${runStamp}-${process.pid}`;
mkdirSync(flags.dir ?? os.tmpdir(), { recursive: true });
const workDir = mkdtempSync(join(resolve(flags.dir ?? os.tmpdir()), "jobqueue-bench-"));
const bullQueues = new Set<string>();
const pgSchemas = new Set<string>();
const errors: string[] = [];
let target: Child | null = null;
let durableRedis: RedisProcess | null = null;
let targetUrl = "";

let cleaningUp: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaningUp ??= (async () => {
    bar.stop();
    await killAll();
    durableRedis = null;
    for (const schema of pgSchemas) await dropPgSchema(schema).catch(() => {});
    if (bullQueues.size > 0) {
      for (const entry of bullQueues) {
        const slash = entry.indexOf("/");
        const port = Number(entry.slice(0, slash));
        const name = entry.slice(slash + 1);
        if (port !== REDIS.port) continue; // the durable Redis is gone with its files
        const q = new Queue(name, {
          connection: { host: "127.0.0.1", port, maxRetriesPerRequest: 1 },
        });
        await q.obliterate({ force: true }).catch(() => {});
        await q.close().catch(() => {});
      }
    }
    if (!flags.keep) rmSync(workDir, { recursive: true, force: true });
  })();
  return cleaningUp;
}
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    process.stderr.write(`\n${signal}: stopping every benchmark process\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

/** Mirrors a child's reported progress on the bar until `work` settles. */
async function withProgress<T>(child: Child, work: Promise<T>): Promise<T> {
  const timer = setInterval(() => {
    const p = child.progress;
    if (p) bar.update(p.stage, p.done, p.total);
  }, 200);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

function removeDb(path: string) {
  for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
}

const cpuProfArgs = () => [
  ...opts.serverNodeArgs,
  ...(opts.cpuProfDir ? ["--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`] : []),
];

/** Starts a JobQueue server (under --cpu-prof if asked: the profile is named after its pid). */
async function serve(
  dbPath: string,
  phase: string,
  ready: "healthz" | "listening" = "healthz",
): Promise<ServerProcess> {
  const server = await startServer({
    dbPath,
    concurrency: opts.c,
    nodeArgs: cpuProfArgs(),
    ready,
  });
  if (opts.cpuProfDir)
    bar.log(`  server pid ${server.pid} (${phase}) profiles to ${opts.cpuProfDir}`);
  return server;
}

async function withServer<T>(
  name: string,
  work: (server: ServerProcess) => Promise<T>,
): Promise<T> {
  const dbPath = join(workDir, `${name}.db`);
  const server = await serve(dbPath, name);
  try {
    return await work(server);
  } finally {
    await server.stop();
    removeDb(dbPath);
  }
}

/** A PostgreSQL schema of this run's (dropped at the end), as a JOBQUEUE_DB_URL. */
function pgSchemaUrl(name: string): string {
  const schema = `bench_${name.replace(/[^a-z0-9]/gi, "_").toLowerCase()}`.slice(0, 60);
  pgSchemas.add(schema);
  const u = new URL(PG_URL);
  u.searchParams.set("schema", schema);
  return u.toString();
}

async function dropPgSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end();
  }
  pgSchemas.delete(schema);
}

const schemaOf = (url: string) => new URL(url).searchParams.get("schema")!;

/** `nodes` JobQueue servers on one new PostgreSQL schema, started one after the other. */
async function withPostgresServers<T>(
  name: string,
  nodes: number,
  work: (servers: ServerProcess[]) => Promise<T>,
): Promise<T> {
  const url = pgSchemaUrl(name);
  const servers: ServerProcess[] = [];
  try {
    for (let i = 0; i < nodes; i++) {
      servers.push(
        await startServer({
          dbPath: url,
          concurrency: opts.c,
          nodeArgs: cpuProfArgs(),
          env: { JOBQUEUE_SECRET_KEY: PG_SECRET_KEY, JOBQUEUE_NODE_ID: `${name}-${i + 1}` },
        }),
      );
    }
    return await work(servers);
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    await dropPgSchema(schemaOf(url));
  }
}

async function runJobQueueClient<R>(params: Record<string, unknown>): Promise<R> {
  const child = forkChild("./jobqueue-client.ts", { target: targetUrl, ...params });
  return withProgress(child, child.result<R>(opts.phaseTimeoutMs));
}

type RedisConnection = { host: string; port: number };

/** The Redis servers BullMQ runs on: the machine's (no persistence) and the durable one. */
interface BullRedis {
  phase: "bullmq" | "bullmq-durable";
  label: string;
  /** Infix of the figures' keys. */
  key: "Bullmq" | "BullmqDurable";
  port: number;
  connection: RedisConnection;
  pid: number;
}
const redises: BullRedis[] = [];
function bullRedises(): BullRedis[] {
  return redises;
}

/** Sum of the CPU time of processes (those gone count 0). */
function sumCpuMs(pids: number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += readCpuMs(pid);
    } catch {
      // exited, or not readable
    }
  }
  return sum;
}

async function runBullmqClient<R>(
  queue: string,
  redis: RedisConnection,
  params: Record<string, unknown>,
): Promise<R> {
  bullQueues.add(`${redis.port}/${queue}`);
  const child = forkChild("./bullmq-client.ts", {
    queue,
    redis,
    target: targetUrl,
    ...params,
  });
  const result = await withProgress(child, child.result<R>(opts.phaseTimeoutMs));
  bullQueues.delete(`${redis.port}/${queue}`);
  return result;
}

async function withBullmqWorker<T>(
  queue: string,
  redis: RedisConnection,
  work: (workerPid: number) => Promise<T>,
): Promise<T> {
  const worker = forkChild("./bullmq-worker.ts", { queue, concurrency: opts.c, redis });
  try {
    await worker.ready();
    return await work(worker.process.pid!);
  } finally {
    await worker.stop();
  }
}

const perSec = (n: number, ms: number) => n / (ms / 1000);

function checkE2e(name: string, r: E2eResult) {
  if (r.succeeded !== r.n || r.notSucceeded !== 0 || r.sampleOk !== r.sampleSize) {
    throw new Error(
      `${name}: ${r.succeeded} of ${r.n} succeeded, ${r.notSucceeded} in another status, ` +
        `${r.sampleOk}/${r.sampleSize} sampled results hold the target's answer`,
    );
  }
}

type Figures = Record<string, number>;

/** How long each step took, and whether it completed. */
const steps: { round: number; step: string; seconds: number; ok: boolean }[] = [];

/** Runs one step, recording its failure (or timeout) instead of ending the run. */
async function step(round: number, label: string, fn: () => Promise<void>): Promise<void> {
  bar.phase(`round ${round}/${opts.rounds}: ${label}`);
  const started = performance.now();
  let ok = false;
  try {
    await fn();
    ok = true;
  } catch (err) {
    const what = err instanceof PhaseTimeout ? "timed out" : "failed";
    const message = `round ${round}, ${label} ${what}: ${err instanceof Error ? err.message : String(err)}`;
    errors.push(message.split("\n")[0]!);
    bar.log(message);
    await killStragglers();
  } finally {
    const seconds = (performance.now() - started) / 1000;
    steps.push({ round, step: label, seconds, ok });
    bar.log(`round ${round}: ${label} ${ok ? "done" : "ended"} in ${seconds.toFixed(1)} s`);
  }
}

/** After a failed step: stop everything but the target. */
async function killStragglers() {
  await killAll([target?.process, durableRedis?.process].filter((p) => p !== undefined));
}

/** On a timeout, says how far the run got (calls the target saw). */
async function progressOnTimeout<T>(run: string, n: number, work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (!(err instanceof PhaseTimeout)) throw err;
    const count = (await target?.query<number>("count", { run })) ?? 0;
    throw new PhaseTimeout(`${err.message} (the target had seen ${count} of ${n} calls)`);
  }
}

async function forget(run: string) {
  await target?.query("forget", { run });
}

/** The 1-minute load average at the start and end of each round: other work on the machine. */
const loadAverages: { round: number; start: number; end: number }[] = [];

async function runRound(
  round: number,
  bigPath: string | null,
  pgBigUrl: string | null,
): Promise<Figures> {
  const f: Figures = {};
  const load = { round, start: os.loadavg()[0]!, end: 0 };
  loadAverages.push(load);
  const tag = (name: string) => `${runId}-r${round}-${name}`;

  if (want("direct")) {
    await step(round, "direct (undici, no queue)", async () => {
      const run = tag("direct");
      const child = forkChild("./direct.ts", {
        url: `${targetUrl}/json?run=${run}`,
        n: opts.n,
        concurrency: opts.c,
      });
      const r = await withProgress(child, child.result<DirectResult>(opts.phaseTimeoutMs));
      if (r.ok !== r.n) throw new Error(`${r.ok} of ${r.n} calls answered 200 with a body`);
      f.directJobsPerSec = perSec(r.n, r.elapsedMs);
      await forget(run);
    });
  }

  for (const submit of ["unary", "batch"] as const) {
    if (!want(`jq-rest-${submit}`)) continue;
    const what =
      submit === "unary" ? "POST /jobs per job" : `POST /jobs:batch of ${opts.batchSize}`;
    await step(round, `JobQueue end-to-end over REST, ${what}`, async () => {
      const run = tag(`jq-rest-${submit}`);
      let cpuMs = 0;
      const r = await withServer(run, async (server) => {
        const cpu0 = readCpuMs(server.pid);
        const result = await progressOnTimeout(
          run,
          opts.n,
          runJobQueueClient<E2eResult>({
            mode: "e2e",
            protocol: "rest",
            server: server.url,
            run,
            n: opts.n,
            submit,
            batchSize: opts.batchSize,
            batchInflight: opts.batchInflight,
            rpcInflight: opts.rpcInflight,
          }),
        );
        cpuMs = readCpuMs(server.pid) - cpu0;
        return result;
      });
      checkE2e(`JobQueue REST ${submit}`, r);
      const key = submit === "batch" ? "e2eRestBatch" : "e2eRestUnary";
      f[`${key}JobsPerSec`] = perSec(r.n, r.elapsedMs);
      f[`${key}CpuUsPerJob`] = (cpuMs * 1000) / r.n;
      bar.log(
        `  REST ${submit}: ${f[`${key}JobsPerSec`]!.toFixed(0)} jobs/s, server CPU ${f[`${key}CpuUsPerJob`]!.toFixed(0)} µs/job (submit phase ${(r.submitMs / 1000).toFixed(1)} s, total ${(r.elapsedMs / 1000).toFixed(1)} s)`,
      );
      await forget(run);
    });
  }

  for (const redis of bullRedises()) {
    if (!want(redis.phase)) continue;
    await step(
      round,
      `BullMQ end-to-end (addBulk of ${opts.batchSize}), ${redis.label}`,
      async () => {
        const run = tag(redis.phase);
        const queue = `bench-${run}`;
        let cpuMs = 0;
        const r = await withBullmqWorker(queue, redis.connection, async (worker) => {
          const pids = [worker, redis.pid];
          const cpu0 = sumCpuMs(pids);
          const result = await progressOnTimeout(
            run,
            opts.n,
            runBullmqClient<E2eResult>(queue, redis.connection, {
              mode: "e2e",
              run,
              n: opts.n,
              batchSize: opts.batchSize,
              batchInflight: opts.batchInflight,
            }),
          );
          cpuMs = sumCpuMs(pids) - cpu0;
          return result;
        });
        checkE2e(`BullMQ (${redis.label})`, r);
        f[`e2e${redis.key}JobsPerSec`] = perSec(r.n, r.elapsedMs);
        f[`e2e${redis.key}CpuUsPerJob`] = (cpuMs * 1000) / r.n;
        bar.log(
          `  BullMQ ${redis.label}: ${f[`e2e${redis.key}JobsPerSec`]!.toFixed(0)} jobs/s, worker + Redis CPU ${f[`e2e${redis.key}CpuUsPerJob`]!.toFixed(0)} µs/job`,
        );
        await forget(run);
      },
    );
  }

  if (want("enqueue")) {
    await step(
      round,
      `enqueue only: JobQueue REST POST /jobs:batch of ${opts.batchSize}`,
      async () => {
        const run = tag("enq-batch");
        await withServer(run, async (server) => {
          const cpu0 = readCpuMs(server.pid);
          const r = await runJobQueueClient<RateResult>({
            mode: "enqueue",
            protocol: "rest",
            server: server.url,
            run,
            n: opts.n,
            submit: "batch",
            batchSize: opts.batchSize,
            batchInflight: opts.batchInflight,
            rpcInflight: opts.rpcInflight,
          });
          f.enqueueRestBatchJobsPerSec = perSec(r.n, r.elapsedMs);
          f.enqueueRestBatchCpuUsPerJob = ((readCpuMs(server.pid) - cpu0) * 1000) / r.n;
        });
      },
    );
    // Unary enqueue over REST, Connect and gRPC share one server, in that order.
    const run = tag("enq-unary");
    const dbPath = join(workDir, `${run}.db`);
    let server: ServerProcess | null = null;
    try {
      server = await serve(dbPath, run);
      for (const [protocol, label, key] of [
        ["rest", "REST POST /jobs (HTTP/1.1)", "enqueueRest"],
        ["connect", "Connect EnqueueJob (binary, HTTP/2)", "enqueueConnect"],
        ["grpc", "gRPC EnqueueJob (HTTP/2)", "enqueueGrpc"],
      ] as const) {
        await step(round, `enqueue only: JobQueue ${label}`, async () => {
          const s = server as ServerProcess;
          const cpu0 = readCpuMs(s.pid);
          const r = await runJobQueueClient<RateResult>({
            mode: "enqueue",
            protocol,
            server: s.url,
            run,
            n: opts.n,
            submit: "unary",
            batchSize: opts.batchSize,
            batchInflight: opts.batchInflight,
            rpcInflight: opts.rpcInflight,
          });
          f[`${key}JobsPerSec`] = perSec(r.n, r.elapsedMs);
          f[`${key}CpuUsPerJob`] = ((readCpuMs(s.pid) - cpu0) * 1000) / r.n;
        });
      }
    } finally {
      await (server as ServerProcess | null)?.stop();
      removeDb(dbPath);
    }
    for (const redis of bullRedises()) {
      await step(round, `enqueue only: BullMQ addBulk, ${redis.label}`, async () => {
        const r = await runBullmqClient<RateResult>(
          `bench-${tag(`bull-bulk-${redis.port}`)}`,
          redis.connection,
          {
            mode: "enqueue-bulk",
            run: tag(`bull-bulk-${redis.port}`),
            n: opts.n,
            batchSize: opts.batchSize,
            batchInflight: opts.batchInflight,
          },
        );
        f[`${redis.key}AddBulkJobsPerSec`] = perSec(r.n, r.elapsedMs);
      });
      await step(round, `enqueue only: BullMQ Queue.add, ${redis.label}`, async () => {
        const r = await runBullmqClient<RateResult>(
          `bench-${tag(`bull-add-${redis.port}`)}`,
          redis.connection,
          {
            mode: "enqueue-add",
            run: tag(`bull-add-${redis.port}`),
            n: opts.n,
            rpcInflight: opts.rpcInflight,
          },
        );
        f[`${redis.key}AddJobsPerSec`] = perSec(r.n, r.elapsedMs);
      });
    }
  }

  if (want("latency")) {
    const latencyParams = {
      protocol: "rest",
      mode: "latency",
      rate: opts.rate,
      warmupMs: 1000,
      measureMs: opts.latencySeconds * 1000,
    };
    await step(round, `enqueue→start at ${opts.rate} jobs/s: JobQueue (REST)`, async () => {
      const run = tag("lat");
      const r = await withServer(run, (server) =>
        runJobQueueClient<LatencyResult>({ ...latencyParams, server: server.url, run }),
      );
      const samples = await target!.query<number[]>("latencies", { run });
      if (samples.length !== r.sent) throw new Error(`${samples.length} of ${r.sent} jobs arrived`);
      f.latencyP50 = percentile(samples, 50);
      f.latencyP99 = percentile(samples, 99);
      f.latencyMax = percentile(samples, 100);
      bar.log(
        `  p50 ${f.latencyP50.toFixed(2)} ms, p99 ${f.latencyP99.toFixed(2)} ms, max ${f.latencyMax.toFixed(2)} ms (sender lag at worst ${r.maxLagMs.toFixed(2)} ms)`,
      );
      await forget(run);
      await forget(`${run}-warmup`);
    });
    await step(round, `enqueue→start at ${opts.rate} jobs/s: BullMQ`, async () => {
      const run = tag("bull-lat");
      const queue = `bench-${run}`;
      const r = await withBullmqWorker(queue, REDIS, () =>
        runBullmqClient<LatencyResult>(queue, REDIS, { ...latencyParams, run }),
      );
      const samples = await target!.query<number[]>("latencies", { run });
      if (samples.length !== r.sent) throw new Error(`${samples.length} of ${r.sent} jobs arrived`);
      f.bullmqLatencyP50 = percentile(samples, 50);
      f.bullmqLatencyP99 = percentile(samples, 99);
      await forget(run);
      await forget(`${run}-warmup`);
    });
  }

  if (want("claim") && bigPath) {
    const claim = async (path: string, depth: number) => {
      const child = forkChild("./store-claim.ts", {
        mode: "claim",
        path,
        depth,
        url: `${targetUrl}/json?run=claim`,
        concurrency: opts.c,
        claims: opts.claims,
        maxMs: opts.claimSeconds * 1000,
      });
      return withProgress(child, child.result<ClaimResult>(opts.phaseTimeoutMs));
    };
    await step(round, `claim rate, ${opts.small.toLocaleString("en-US")} queued`, async () => {
      const path = join(workDir, `claim-small-r${round}.db`);
      try {
        const r = await claim(path, opts.small);
        f.claimSmallJobsPerSec = perSec(r.claimed, r.cycleMs);
        f.claimOnlySmallJobsPerSec = perSec(r.claimed, r.claimMs);
      } finally {
        removeDb(path);
      }
    });
    await step(round, `claim rate, ${opts.big.toLocaleString("en-US")} queued`, async () => {
      const r = await claim(bigPath, opts.big);
      f.claimBigJobsPerSec = perSec(r.claimed, r.cycleMs);
      f.claimOnlyBigJobsPerSec = perSec(r.claimed, r.claimMs);
      bar.log(
        `  big queue: ${r.claimed} claimed in ${r.cycles} cycles, ${(r.cycleMs / r.cycles).toFixed(1)} ms per cycle${r.timedOut ? ` (stopped at ${opts.claimSeconds} s)` : ""}`,
      );
    });
    if (f.claimSmallJobsPerSec && f.claimBigJobsPerSec) {
      f.claimBigVsSmall = f.claimBigJobsPerSec / f.claimSmallJobsPerSec;
      f.claimOnlyBigVsSmall = f.claimOnlyBigJobsPerSec! / f.claimOnlySmallJobsPerSec!;
    }
  }

  if (want("pg")) {
    for (const nodes of [1, 2]) {
      await step(round, `PostgreSQL, ${nodes} node(s): end-to-end, POST /jobs:batch`, async () => {
        const run = tag(`pg${nodes}`);
        const r = await withPostgresServers(run, nodes, (servers) =>
          progressOnTimeout(
            run,
            opts.n,
            runJobQueueClient<E2eResult>({
              mode: "e2e",
              protocol: "rest",
              server: servers[0]!.url,
              run,
              n: opts.n,
              submit: "batch",
              batchSize: opts.batchSize,
              batchInflight: opts.batchInflight,
              rpcInflight: opts.rpcInflight,
            }),
          ),
        );
        checkE2e(`PostgreSQL, ${nodes} node(s)`, r);
        f[`pg${nodes}E2eBatchJobsPerSec`] = perSec(r.n, r.elapsedMs);
        bar.log(`  ${nodes} node(s): ${f[`pg${nodes}E2eBatchJobsPerSec`]!.toFixed(0)} jobs/s`);
        await forget(run);
      });
    }
    for (const submit of ["batch", "unary"] as const) {
      await step(round, `PostgreSQL, 1 node: enqueue only, REST ${submit}`, async () => {
        const run = tag(`pg-enq-${submit}`);
        const r = await withPostgresServers(run, 1, (servers) =>
          runJobQueueClient<RateResult>({
            mode: "enqueue",
            protocol: "rest",
            server: servers[0]!.url,
            run,
            n: opts.n,
            submit,
            batchSize: opts.batchSize,
            batchInflight: opts.batchInflight,
            rpcInflight: opts.rpcInflight,
          }),
        );
        f[submit === "batch" ? "pgEnqueueBatchJobsPerSec" : "pgEnqueueUnaryJobsPerSec"] = perSec(
          r.n,
          r.elapsedMs,
        );
      });
    }
    const pgClaim = async (url: string, depth: number, prefilled: boolean) => {
      const child = forkChild("./store-claim.ts", {
        mode: "claim",
        path: url,
        depth,
        prefilled,
        url: `${targetUrl}/json?run=claim`,
        concurrency: opts.c,
        claims: opts.claims,
        maxMs: opts.claimSeconds * 1000,
      });
      return withProgress(child, child.result<ClaimResult>(opts.phaseTimeoutMs));
    };
    await step(
      round,
      `PostgreSQL claim rate, ${opts.small.toLocaleString("en-US")} queued`,
      async () => {
        const url = pgSchemaUrl(tag("pg-claim-small"));
        try {
          const r = await pgClaim(url, opts.small, false);
          f.pgClaimSmallJobsPerSec = perSec(r.claimed, r.cycleMs);
        } finally {
          await dropPgSchema(schemaOf(url));
        }
      },
    );
    if (pgBigUrl) {
      await step(
        round,
        `PostgreSQL claim rate, ${opts.big.toLocaleString("en-US")} queued`,
        async () => {
          const r = await pgClaim(pgBigUrl, opts.big, true);
          f.pgClaimBigJobsPerSec = perSec(r.claimed, r.cycleMs);
        },
      );
    }
  }

  if (want("rss") && bigPath) {
    await step(round, `RSS with ${opts.big.toLocaleString("en-US")} jobs stored`, async () => {
      const run = tag("rss");
      const copy = join(workDir, `${run}.db`);
      copyFileSync(bigPath, copy);
      // Only until it listens: with this backlog it may take minutes to answer a request.
      const server = await serve(copy, run, "listening");
      try {
        f.rssStartMb = readRss(server.pid).rss / 2 ** 20;
        let peak = f.rssStartMb;
        const sampler = setInterval(() => {
          try {
            peak = Math.max(peak, readRss(server.pid).rss / 2 ** 20);
          } catch {
            // exited
          }
        }, 100);
        try {
          const r = await runJobQueueClient<RssLoadResult>({
            mode: "rss-load",
            server: server.url,
            run,
            durationMs: opts.rssSeconds * 1000,
            inflight: 8,
          });
          peak = Math.max(peak, readRss(server.pid).rss / 2 ** 20);
          f.rssHwmMb = readRss(server.pid).hwm / 2 ** 20;
          f.rssCallsAnswered = r.reads + r.enqueues;
          f.rssCallsUnanswered = r.errors;
          bar.log(
            `  ${r.reads} reads and ${r.enqueues} enqueues answered, ${r.errors} calls failed and ${r.cut} cut by the window's end in ${opts.rssSeconds} s; RSS peak ${peak.toFixed(0)} MB`,
          );
        } finally {
          clearInterval(sampler);
        }
        f.rssPeakMb = peak;
      } finally {
        await server.stop();
        removeDb(copy);
        await forget(run);
      }
    });
  }

  const ratio = (key: string, over: string, under: string) => {
    if (f[over] && f[under]) f[key] = f[over]! / f[under]!;
  };
  ratio("e2eRestUnaryVsDirect", "e2eRestUnaryJobsPerSec", "directJobsPerSec");
  ratio("e2eRestBatchVsDirect", "e2eRestBatchJobsPerSec", "directJobsPerSec");
  ratio("e2eBullmqVsDirect", "e2eBullmqJobsPerSec", "directJobsPerSec");
  ratio("pg1E2eBatchVsDirect", "pg1E2eBatchJobsPerSec", "directJobsPerSec");
  ratio("pg2E2eBatchVsDirect", "pg2E2eBatchJobsPerSec", "directJobsPerSec");
  ratio("pgClaimBigVsSmall", "pgClaimBigJobsPerSec", "pgClaimSmallJobsPerSec");
  ratio("e2eRestUnaryVsBullmq", "e2eRestUnaryJobsPerSec", "e2eBullmqJobsPerSec");
  ratio("e2eRestBatchVsBullmq", "e2eRestBatchJobsPerSec", "e2eBullmqJobsPerSec");
  ratio("e2eRestUnaryVsBullmqDurable", "e2eRestUnaryJobsPerSec", "e2eBullmqDurableJobsPerSec");
  ratio("e2eRestBatchVsBullmqDurable", "e2eRestBatchJobsPerSec", "e2eBullmqDurableJobsPerSec");
  ratio("enqueueRestVsBullmqAdd", "enqueueRestJobsPerSec", "BullmqAddJobsPerSec");
  ratio("enqueueRestVsBullmqDurableAdd", "enqueueRestJobsPerSec", "BullmqDurableAddJobsPerSec");
  ratio("enqueueConnectVsRest", "enqueueConnectJobsPerSec", "enqueueRestJobsPerSec");
  ratio("enqueueGrpcVsRest", "enqueueGrpcJobsPerSec", "enqueueRestJobsPerSec");
  ratio("enqueueBatchVsBullmqAddBulk", "enqueueRestBatchJobsPerSec", "BullmqAddBulkJobsPerSec");
  ratio(
    "enqueueBatchVsBullmqDurableAddBulk",
    "enqueueRestBatchJobsPerSec",
    "BullmqDurableAddBulkJobsPerSec",
  );
  load.end = os.loadavg()[0]!;
  return f;
}

async function main() {
  const startedAt = new Date();
  const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`;
  const redis = new Redis({ ...REDIS, maxRetriesPerRequest: 1, lazyConnect: true });
  let redisVersion = "?";
  try {
    await redis.connect();
    const info = await redis.info("server");
    redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? "?";
    redises.push({
      phase: "bullmq",
      label: "Redis without persistence",
      key: "Bullmq",
      port: REDIS.port,
      connection: REDIS,
      pid: Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0),
    });
  } catch (err) {
    throw new Error(
      `Redis is not reachable at 127.0.0.1:6379 (${(err as Error).message}). Start it with:\n` +
        `  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no`,
    );
  } finally {
    redis.disconnect();
  }
  const machine = describeMachine(redisVersion, workDir);
  bar.log(
    `JobQueue benchmark: N=${opts.n}, C=${opts.c}, ${opts.rounds} round(s), big queue ${opts.big}, phases ${opts.only.join(",")}; temp files in ${workDir}`,
  );

  if (want("bullmq-durable") || want("enqueue")) {
    const dir = join(workDir, "redis-durable");
    mkdirSync(dir, { recursive: true });
    durableRedis = await startRedis(DURABLE_REDIS.port, dir, DURABLE_REDIS_ARGS);
    redises.push({
      phase: "bullmq-durable",
      label: "Redis with appendfsync always",
      key: "BullmqDurable",
      port: DURABLE_REDIS.port,
      connection: DURABLE_REDIS,
      pid: durableRedis.pid,
    });
    bar.log(
      `durable Redis: redis-server --port ${DURABLE_REDIS.port} ${DURABLE_REDIS_ARGS.join(" ")} (pid ${durableRedis.pid}, files in ${dir})`,
    );
  }

  target = forkChild("./target.ts", {});
  targetUrl = ((await target.ready()) as { url: string }).url;

  let bigPath: string | null = null;
  if (needsBig) {
    bar.phase(`prefill: ${opts.big.toLocaleString("en-US")} queued jobs (once per run)`);
    bigPath = join(workDir, `big-${opts.big}.db`);
    const child = forkChild("./store-claim.ts", {
      mode: "prefill",
      path: bigPath,
      size: opts.big,
      url: `${targetUrl}/json?run=${runId}-rss`,
    });
    const r = await withProgress(
      child,
      child.result<{ size: number; elapsedMs: number }>(opts.phaseTimeoutMs * 2),
    );
    bar.log(`prefill: ${r.size} jobs in ${(r.elapsedMs / 1000).toFixed(1)} s`);
  }

  let pgBigUrl: string | null = null;
  if (want("pg")) {
    bar.phase(
      `prefill: ${opts.big.toLocaleString("en-US")} queued jobs in PostgreSQL (once per run)`,
    );
    pgBigUrl = pgSchemaUrl(`${runId}-big`);
    const child = forkChild("./store-claim.ts", {
      mode: "prefill",
      path: pgBigUrl,
      size: opts.big,
      url: `${targetUrl}/json?run=${runId}-pg`,
    });
    const r = await withProgress(
      child,
      child.result<{ size: number; elapsedMs: number }>(opts.phaseTimeoutMs * 2),
    );
    bar.log(`prefill (PostgreSQL): ${r.size} jobs in ${(r.elapsedMs / 1000).toFixed(1)} s`);
  }

  const rounds: Figures[] = [];
  for (let round = 1; round <= opts.rounds; round++) {
    rounds.push(await runRound(round, bigPath, pgBigUrl));
  }
  bar.stop();

  const finishedAt = new Date();
  const targets = summarize(TARGET_FIGURES, rounds);
  const raw = summarize(RAW_FIGURES, rounds);
  const notes = [
    `End to end: each job is one GET of a tiny JSON body from a keep-alive target on 127.0.0.1; status and body are stored (JobQueue: SQLite in WAL, each commit fdatasynced before anyone hears of it, also the response headers and the attempt; BullMQ: the return value in Redis, jobs kept on completion; direct: in memory). BullMQ runs on the machine's Redis (no persistence) and on a redis-server the run starts (port ${DURABLE_REDIS.port}, ${DURABLE_REDIS_ARGS.join(" ")}: every write fsynced before Redis answers, JobQueue's durability).`,
    `JobQueue is driven over its REST contract (JSON over HTTP/1.1 keep-alive, undici, one connection per call in flight): \`POST /jobs\` with ${opts.rpcInflight} in flight, \`POST /jobs:batch\` of ${opts.batchSize} with ${opts.batchInflight} in flight. Connect (binary) and gRPC unary enqueues: ${opts.rpcInflight} in flight on one HTTP/2 connection, on the same server as the REST unary run (after it). BullMQ addBulk: ${opts.batchSize} per call, ${opts.batchInflight} in flight; Queue.add: ${opts.rpcInflight} in flight.`,
    "Server CPU per job: utime + stime of the JobQueue server process from /proc/<pid>/stat over the client's run (submit to the last result stored), divided by N. For BullMQ: its worker process plus the Redis server over the same span.",
    "JobQueue end to end stops when ListJobs(queued|running) is empty (polled every 2 ms once the target has counted N calls); every job is then checked to be succeeded. BullMQ stops when its completed count reaches N.",
    "Enqueue only: JobQueue jobs are scheduled a day ahead so no worker runs them (the worker pool still wakes on every enqueue); BullMQ has no worker.",
    `Submit → call starts: client send time (REST \`POST /jobs\`; BullMQ \`add()\`) to target receive time on CLOCK_MONOTONIC, ${opts.rate} jobs/s open loop, 1 s warm-up then ${opts.latencySeconds} s measured, on an idle pool.`,
    `PostgreSQL: the machine's PostgreSQL with its default settings (synchronous_commit on), a schema per step; with 2 nodes each runs C = ${opts.c} calls at most (so up to ${opts.c * 2} in flight), the client submits to the first node and waits through it.`,
    `Claim rate: the SQLite store in-process; a cycle is jobClaim(limit ${opts.c}) plus a jobFinishAttempt per job; depth held by re-inserting (untimed); up to ${opts.claims} claims or ${opts.claimSeconds} s.`,
    `1-minute load average at the start/end of each round (other work on this ${machine.cores}-core machine competes with the benchmark): ${loadAverages.map((l) => `${l.start.toFixed(1)}/${l.end.toFixed(1)}`).join(", ")}.`,
    "The JobQueue server runs with JOBQUEUE_LOG_LEVEL=warn (at the default, info, it writes a log line per attempt).",
    `RSS: the real server on a copy of the ${opts.big.toLocaleString("en-US")}-job file (all due, so it works through the backlog at C = ${opts.c}) while a client mixes reads and enqueues for ${opts.rssSeconds} s; VmRSS sampled every 100 ms.`,
  ];
  const report = {
    command,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
    options: opts,
    machine,
    summary: { targets, raw },
    rounds,
    loadAverages,
    steps,
    errors,
  };
  const md = markdown({
    command,
    startedAt: startedAt.toISOString(),
    durationS: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    options: opts,
    machine,
    targets,
    raw,
    rounds: opts.rounds,
    bigDepth: opts.big,
    errors,
    notes,
  });
  const resultsDir = join(REPO_ROOT, "bench", "results");
  mkdirSync(resultsDir, { recursive: true });
  const partial = opts.quick || flags.only !== undefined;
  const base = `${runStamp}${opts.quick ? "-quick" : partial ? "-partial" : ""}`;
  writeFileSync(join(resultsDir, `${base}.json`), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(resultsDir, `${base}.md`), md);
  if (!partial) writeFileSync(join(resultsDir, "latest.md"), md);
  process.stdout.write(`\n${md}\nWritten to bench/results/${base}.{json,md}\n`);
}

let exitCode = 0;
try {
  await main();
} catch (err) {
  bar.stop();
  process.stderr.write(
    `\nbenchmark failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  exitCode = 1;
} finally {
  await cleanup();
}
process.exit(exitCode);
