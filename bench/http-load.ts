/**
 * Read, enqueue and RPC throughput of one JobQueue server, measured with load generators that are not
 * JavaScript, so the client's cost does not hide the server's: `wrk` (REST over HTTP/1.1) and
 * `h2load` (Connect and gRPC over HTTP/2, and REST's /healthz over HTTP/2 as its baseline).
 *
 *   npm run bench:http -- [--jobs 10000] [--seconds 5] [--rounds 2] [--cpu-prof DIR]
 *
 * Starts the server as `npm start` does (node dist/src/main.js, built first when the sources are
 * newer) on a temporary SQLite file holding `--jobs` jobs scheduled a day ahead (none runs), then
 * for each round runs every scenario for `--seconds` and reports calls/s, the ratio to the same
 * server's /healthz rate in the same round and protocol, the server's CPU per call (utime +
 * stime from /proc/<pid>/stat) and what that makes per core (calls per second of server CPU, and
 * its ratio to /healthz's: the server's own cost, apart from what the load generator takes).
 * Needs Debian's `wrk` and `nghttp2-client` (`apt-get install -y wrk nghttp2-client`).
 */
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  EnqueueJobRequestSchema,
  GetJobRequestSchema,
} from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { fromRestJson } from "../src/rpc/rest-json.js";
import { grpcFrame } from "../src/rpc/unary-fast-path.js";
import { buildOnce, REPO_ROOT } from "./processes.js";

const run = promisify(execFile);
const { values: args } = parseArgs({
  options: {
    jobs: { type: "string", default: "10000" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "2" },
    "cpu-prof": { type: "string" },
    only: { type: "string" },
  },
});
const JOBS = Number(args.jobs);
const SECONDS = Number(args.seconds);
const ROUNDS = Number(args.rounds);
const CLK_TCK = 100; // getconf CLK_TCK on Linux

interface Scenario {
  name: string;
  /** The /healthz scenario this one is compared with. */
  baseline: string;
  /** Runs the load; resolves with completed calls and how many failed. */
  load(base: string, ctx: Context): Promise<{ calls: number; failed: number }>;
}

interface Context {
  jobId: string;
  dir: string;
}

async function wrk(url: string, script?: string): Promise<{ calls: number; failed: number }> {
  const argv = ["-t2", "-c32", `-d${SECONDS}s`, "--latency"];
  if (script) argv.push("-s", script);
  const { stdout } = await run("wrk", [...argv, url], { maxBuffer: 1 << 20 });
  const calls = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? 0);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    stdout,
  );
  const socketErrors = errors ? errors.slice(1).reduce((a, b) => a + Number(b), 0) : 0;
  return { calls, failed: non2xx + socketErrors };
}

async function h2load(
  url: string,
  body: string | null,
  headers: string[],
): Promise<{ calls: number; failed: number }> {
  const argv = ["-c4", "-m16", "-t1", `-D${SECONDS}`, "--warm-up-time=1"];
  if (body) argv.push("-d", body);
  for (const h of headers) argv.push("-H", h);
  argv.push(url);
  const { stdout } = await run("h2load", argv, { maxBuffer: 1 << 20 });
  const m =
    /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
      stdout,
    );
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(stdout);
  if (!m) throw new Error(`h2load said:\n${stdout}`);
  const bad = status ? Number(status[3]) + Number(status[4]) : 0;
  return { calls: Number(m[2]), failed: Number(m[3]) + Number(m[4]) + bad };
}

/**
 * One unary method over Connect (binary) and gRPC, its request in `<file>.bin` and `<file>.grpc`;
 * with `deadline`, each call carries one of 10 s (as clients that set deadlines send it).
 */
function rpcScenarios(rpc: string, file: string, deadline = false): Scenario[] {
  const url = (base: string) => `${base}/jobqueue.v1.JobQueueService/${rpc}`;
  const baseline = "GET /healthz (h2load, h2)";
  const what = deadline ? `${rpc} with a deadline` : rpc;
  return [
    {
      name: `Connect ${what}, binary (h2load, h2)`,
      baseline,
      load: (base, ctx) =>
        h2load(url(base), join(ctx.dir, `${file}.bin`), [
          "content-type: application/proto",
          ...(deadline ? ["connect-timeout-ms: 10000"] : []),
        ]),
    },
    {
      name: `gRPC ${what} (h2load, h2)`,
      baseline,
      load: (base, ctx) =>
        h2load(url(base), join(ctx.dir, `${file}.grpc`), [
          "content-type: application/grpc",
          "te: trailers",
          ...(deadline ? ["grpc-timeout: 10S"] : []),
        ]),
    },
  ];
}

const SCENARIOS: Scenario[] = [
  {
    name: "GET /healthz (wrk, h1)",
    baseline: "GET /healthz (wrk, h1)",
    load: (base) => wrk(`${base}/healthz`),
  },
  {
    name: "GET /jobs/{job_id} (wrk, h1)",
    baseline: "GET /healthz (wrk, h1)",
    load: (base, ctx) => wrk(`${base}/jobs/${ctx.jobId}`),
  },
  {
    name: "GET /jobs/{job_id} of no job: 404 (wrk, h1)",
    baseline: "GET /healthz (wrk, h1)",
    load: (base) => wrk(`${base}/jobs/j_01ARZ3NDEKTSV4RRFFQ69G5FAV`),
  },
  {
    name: "GET /jobs?page_size=50 (wrk, h1)",
    baseline: "GET /healthz (wrk, h1)",
    load: (base) => wrk(`${base}/jobs?page_size=50`),
  },
  {
    name: "POST /jobs (wrk, h1)",
    baseline: "GET /healthz (wrk, h1)",
    load: (base, ctx) => wrk(`${base}/jobs`, join(ctx.dir, "enqueue.lua")),
  },
  {
    name: "GET /healthz (h2load, h2)",
    baseline: "GET /healthz (h2load, h2)",
    load: (base) => h2load(`${base}/healthz`, null, []),
  },
  {
    name: "GET /jobs/{job_id} (h2load, h2)",
    baseline: "GET /healthz (h2load, h2)",
    load: (base, ctx) => h2load(`${base}/jobs/${ctx.jobId}`, null, []),
  },
  ...rpcScenarios("GetJob", "get-job"),
  ...rpcScenarios("GetJob", "get-job", true),
  {
    name: "POST /jobs (h2load, h2)",
    baseline: "GET /healthz (h2load, h2)",
    load: (base, ctx) =>
      h2load(`${base}/jobs`, join(ctx.dir, "enqueue.json"), ["content-type: application/json"]),
  },
  ...rpcScenarios("EnqueueJob", "enqueue"),
];

/** The job the enqueue scenarios submit: the seed's example, scheduled a day ahead (none runs). */
function enqueueBody(): string {
  return JSON.stringify({
    method: "POST",
    url: "https://jobqueue-bench.example/never",
    headers: { "content-type": "application/json" },
    body: { n: 1, payload: "x".repeat(64) },
    timeout_sec: 30,
    max_attempts: 3,
    tags: ["bench"],
    scheduled_at: new Date(Date.now() + 86_400_000).toISOString(),
  });
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

async function startServer(dir: string) {
  const env = {
    ...process.env,
    JOBQUEUE_HOST: "127.0.0.1",
    JOBQUEUE_PORT: "0",
    JOBQUEUE_DB_URL: `sqlite:///${join(dir, "jobqueue.db")}`,
    JOBQUEUE_LOG_LEVEL: "info",
    JOBQUEUE_MAX_BATCH_SIZE: "1000",
  };
  const execArgv: string[] = [];
  if (args["cpu-prof"]) execArgv.push("--cpu-prof", `--cpu-prof-dir=${args["cpu-prof"]}`);
  await buildOnce();
  const child = spawn(process.execPath, [...execArgv, "dist/src/main.js"], {
    cwd: REPO_ROOT,
    env,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    child.stdout.on("data", (chunk: Buffer) => {
      buf += chunk;
      for (const line of buf.split("\n")) {
        if (line.includes('"jobqueue listening"')) resolve(JSON.parse(line).port);
      }
    });
    child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
  });
  child.stdout.resume();
  return { child, base: `http://127.0.0.1:${port}` };
}

async function seed(base: string): Promise<string> {
  const scheduledAt = new Date(Date.now() + 86_400_000).toISOString();
  let first = "";
  for (let done = 0; done < JOBS; done += 1000) {
    const n = Math.min(1000, JOBS - done);
    const jobs = Array.from({ length: n }, (_, i) => ({
      url: "https://jobqueue-bench.example/never",
      method: "POST",
      headers: { "content-type": "application/json" },
      body: { n: done + i, payload: "x".repeat(64) },
      tags: ["bench"],
      scheduled_at: scheduledAt,
    }));
    const res = await fetch(`${base}/jobs:batch`, {
      method: "POST",
      body: JSON.stringify({ jobs }),
    });
    if (!res.ok) throw new Error(`seeding: ${res.status} ${await res.text()}`);
    const json = (await res.json()) as { jobs: { job_id: string }[] };
    first ||= json.jobs[Math.floor(json.jobs.length / 2)]!.job_id;
  }
  return first;
}

async function main() {
  for (const tool of ["wrk", "h2load"]) {
    await run("which", [tool]).catch(() => {
      throw new Error(`${tool} is missing: apt-get install -y wrk nghttp2-client`);
    });
  }
  const dir = mkdtempSync(join(tmpdir(), "jobqueue-http-load-"));
  const { child, base } = await startServer(dir);
  try {
    const jobId = await seed(base);
    const message = toBinary(GetJobRequestSchema, create(GetJobRequestSchema, { jobId }));
    writeFileSync(join(dir, "get-job.bin"), message);
    writeFileSync(join(dir, "get-job.grpc"), grpcFrame(message));
    const body = enqueueBody();
    writeFileSync(join(dir, "enqueue.json"), body);
    writeFileSync(
      join(dir, "enqueue.lua"),
      `wrk.method = "POST"\nwrk.body = ${JSON.stringify(body)}\nwrk.headers["Content-Type"] = "application/json"\n`,
    );
    const enqueue = toBinary(
      EnqueueJobRequestSchema,
      fromRestJson(EnqueueJobRequestSchema, JSON.parse(body)),
    );
    writeFileSync(join(dir, "enqueue.bin"), enqueue);
    writeFileSync(join(dir, "enqueue.grpc"), grpcFrame(enqueue));
    const ctx: Context = { jobId, dir };
    const scenarios = SCENARIOS.filter((s) => !args.only || s.name.includes(args.only));
    const results: Record<string, { rate: number[]; cpuUs: number[]; failed: number }> = {};
    for (let round = 1; round <= ROUNDS; round++) {
      for (const s of scenarios) {
        const before = cpuTicks(child.pid!);
        const { calls, failed } = await s.load(base, ctx);
        const ticks = cpuTicks(child.pid!) - before;
        const r = results[s.name] ?? { rate: [], cpuUs: [], failed: 0 };
        results[s.name] = r;
        r.rate.push(calls / SECONDS);
        r.cpuUs.push(calls > 0 ? (ticks / CLK_TCK / calls) * 1e6 : Number.NaN);
        r.failed += s.name.includes(": 404") ? 0 : failed;
        process.stderr.write(`round ${round}: ${s.name}: ${Math.round(calls / SECONDS)}/s\n`);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const lines = [
      `JobQueue read/RPC load: ${JOBS} jobs stored, ${SECONDS} s per run, ${ROUNDS} rounds (medians); wrk -t2 -c32 (HTTP/1.1), h2load -c4 -m16 (HTTP/2)`,
      "",
      "| scenario | calls/s | × /healthz | server CPU µs/call | calls/s per server core | × /healthz per core | failed |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ];
    for (const s of scenarios) {
      const r = results[s.name]!;
      const rate = median(r.rate);
      const cpuUs = median(r.cpuUs);
      const baseline = results[s.baseline];
      const ratio = baseline ? (rate / median(baseline.rate)).toFixed(2) : "-";
      // Calls per second of the server's CPU time (all its threads): its own cost, whatever the
      // load generator leaves it of the machine.
      const ratioPerCore = baseline ? (median(baseline.cpuUs) / cpuUs).toFixed(2) : "-";
      lines.push(
        `| ${s.name} | ${Math.round(rate)} | ${ratio} | ${Math.round(cpuUs)} | ${Math.round(1e6 / cpuUs)} | ${ratioPerCore} | ${r.failed} |`,
      );
    }
    for (const [rpc, rest] of [
      ["GetJob", "GET /jobs/{job_id}"],
      ["EnqueueJob", "POST /jobs"],
    ]) {
      const grpc = results[`gRPC ${rpc} (h2load, h2)`];
      const connect = results[`Connect ${rpc}, binary (h2load, h2)`];
      const restH2 = results[`${rest} (h2load, h2)`];
      if (grpc && connect && restH2) {
        lines.push(
          "",
          `Unary RPC vs REST over HTTP/2 (${rpc}): Connect ${(median(connect.rate) / median(restH2.rate)).toFixed(2)}×, gRPC ${(median(grpc.rate) / median(restH2.rate)).toFixed(2)}× of REST's rate.`,
        );
      }
    }
    console.log(lines.join("\n"));
  } finally {
    child.kill("SIGTERM");
    await new Promise((resolve) => child.once("exit", resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
