/**
 * What a JavaScript client pays per call, beside what the server pays: `--n` EnqueueJob calls
 * (jobs scheduled a day ahead, so none runs), `--c` in flight, against one server started as
 * `npm start` starts it, by each client below in a process of its own. Reports calls/s, the
 * client's CPU per call (its process's user + system time) and the server's (from /proc),
 * medians over `--rounds` interleaved rounds.
 *
 *   node --import tsx bench/client-cost.ts [--n 20000] [--c 128] [--rounds 3]
 *
 * The clients: REST `POST /jobs` with undici (what `npm run bench` drives), `@jobqueue/client`
 * with its default (Connect over HTTP/1.1, unary calls as plain requests) and over HTTP/2 and
 * gRPC (connect-node's transports), and connect-node's own Connect transport over HTTP/1.1.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs, promisify } from "node:util";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { Pool } from "undici";
import { createJobQueueClient } from "../clients/typescript/src/index.js";
import { JobQueueService } from "../gen/jobqueue/v1/job_queue_service_pb.js";
import { postJob, readCpuMs, startServer } from "./processes.js";
import { spread } from "./stats.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "20000" },
    c: { type: "string", default: "128" },
    rounds: { type: "string", default: "3" },
    // Internal: run one client against a server and print its figures as JSON.
    client: { type: "string" },
    server: { type: "string" },
  },
});
const N = Number(values.n);
const C = Number(values.c);

/** Each client: makes one enqueue call (a job to GET `url` a day from now). */
const CLIENTS: Record<string, (server: string) => () => Promise<unknown>> = {
  "REST POST /jobs (undici)": (server) => {
    const pool = new Pool(server, { connections: C });
    const body = JSON.stringify({
      method: "GET",
      url: "http://127.0.0.1:9/x",
      scheduled_at: new Date(Date.now() + 86_400_000).toISOString(),
    });
    return () => postJob(pool, body);
  },
  "@jobqueue/client, Connect over HTTP/1.1 (its default)": (server) => jobqueueClient(server, {}),
  "@jobqueue/client, Connect over HTTP/2": (server) => jobqueueClient(server, { httpVersion: "2" }),
  "@jobqueue/client, gRPC": (server) => jobqueueClient(server, { protocol: "grpc" }),
  "connect-node's Connect transport, HTTP/1.1": (server) => {
    const client = createClient(
      JobQueueService,
      createConnectTransport({ baseUrl: server, httpVersion: "1.1" }),
    );
    const scheduledAt = timestampFromMs(Date.now() + 86_400_000);
    return () => client.enqueueJob({ method: "GET", url: "http://127.0.0.1:9/x", scheduledAt });
  },
};

function jobqueueClient(
  server: string,
  o: { protocol?: "grpc"; httpVersion?: "2" },
): () => Promise<unknown> {
  const client = createJobQueueClient({ baseUrl: server, ...o });
  const scheduledAt = new Date(Date.now() + 86_400_000);
  return () => client.enqueue({ method: "GET", url: "http://127.0.0.1:9/x", scheduledAt });
}

interface Figures {
  perSec: number;
  clientUs: number;
}

/** In the child: warms up, then times N calls, C in flight. */
async function runClient(name: string, server: string): Promise<Figures> {
  const call = CLIENTS[name]!(server);
  for (let i = 0; i < 500; i++) await call();
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: C }, async () => {
      while (next++ < N) await call();
    }),
  );
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { perSec: (N / ms) * 1000, clientUs: (cpu.user + cpu.system) / N };
}

if (values.client) {
  const figures = await runClient(values.client, values.server!);
  process.stdout.write(JSON.stringify(figures));
  process.exit(0);
}

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), "client-cost-"));
const server = await startServer({ dbPath: join(dir, "jobqueue.db"), concurrency: 64 });
const results = new Map<string, { perSec: number[]; clientUs: number[]; serverUs: number[] }>();
try {
  for (let r = 1; r <= Number(values.rounds); r++) {
    for (const name of Object.keys(CLIENTS)) {
      const cpu0 = readCpuMs(server.pid);
      const argv = ["--import", "tsx", "bench/client-cost.ts", "--client", name];
      argv.push("--server", server.url, "--n", String(N), "--c", String(C));
      const { stdout } = await run(process.execPath, argv, { maxBuffer: 1 << 20 });
      // The server's CPU over the child's whole run, warm-up included: N + 500 calls.
      const serverUs = ((readCpuMs(server.pid) - cpu0) * 1000) / (N + 500);
      const f = JSON.parse(stdout) as Figures;
      const acc = results.get(name) ?? { perSec: [], clientUs: [], serverUs: [] };
      acc.perSec.push(f.perSec);
      acc.clientUs.push(f.clientUs);
      acc.serverUs.push(serverUs);
      results.set(name, acc);
      process.stderr.write(
        `round ${r}: ${name}: ${Math.round(f.perSec)} calls/s, client ${Math.round(f.clientUs)} µs/call\n`,
      );
    }
  }
  const lines = [
    `EnqueueJob from JavaScript clients: ${N} calls, ${C} in flight, medians of ${values.rounds} rounds`,
    "",
    "| client | calls/s | client CPU µs/call | server CPU µs/call |",
    "| --- | ---: | ---: | ---: |",
  ];
  const median = (values: number[]) => Math.round(spread(values)?.median ?? Number.NaN);
  for (const [name, acc] of results) {
    lines.push(
      `| ${name} | ${median(acc.perSec)} | ${median(acc.clientUs)} | ${median(acc.serverUs)} |`,
    );
  }
  console.log(lines.join("\n"));
} finally {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
