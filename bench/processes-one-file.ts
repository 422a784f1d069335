/**
 * Several server processes on one SQLite file, against one: does a second process (a second core)
 * raise the end-to-end rate? Each round starts `k` servers (as `npm start` does) on a fresh file,
 * splits the client's keep-alive connections evenly among them (what a primary handing out
 * sockets, or SO_REUSEPORT, would do), submits `--n` jobs with one `POST /jobs` each (`--c` in
 * flight), each job a GET of the target's tiny JSON, and stops when the target has seen every
 * call (the last results may still be committing; a call seen twice fails the run). Reports jobs/s and the servers' CPU per job (utime + stime from /proc, all of them),
 * for k = 1 and k = `--processes`, interleaved over `--rounds`.
 *
 *   node --import tsx bench/processes-one-file.ts [--n 10000] [--c 128] [--processes 2] [--rounds 2]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Pool } from "undici";
import { forkChild, postJob, readCpuMs, type ServerProcess, startServer } from "./processes.js";

const { values } = parseArgs({
  options: {
    n: { type: "string", default: "10000" },
    c: { type: "string", default: "128" },
    processes: { type: "string", default: "2" },
    rounds: { type: "string", default: "2" },
  },
});
const N = Number(values.n);
const C = Number(values.c);
const K = Number(values.processes);
const ROUNDS = Number(values.rounds);

const target = forkChild("./target.ts", {});
const targetUrl = ((await target.ready()) as { url: string }).url;

async function round(k: number, run: string): Promise<{ perSec: number; cpuUsPerJob: number }> {
  const dir = mkdtempSync(join(tmpdir(), "processes-one-file-"));
  const servers: ServerProcess[] = [];
  try {
    for (let i = 0; i < k; i++) {
      servers.push(await startServer({ dbPath: join(dir, "jobqueue.db"), concurrency: 64 }));
    }
    const pools = servers.map((s) => new Pool(s.url, { connections: C / k, pipelining: 1 }));
    const body = JSON.stringify({ method: "GET", url: `${targetUrl}/json?run=${run}` });
    const cpu0 = servers.map((s) => readCpuMs(s.pid));
    const t0 = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: C }, async (_, lane) => {
        const pool = pools[lane % k]!;
        while (next++ < N) await postJob(pool, body);
      }),
    );
    let seen = await target.query<number>("count", { run });
    while (seen < N) {
      await new Promise((resolve) => setTimeout(resolve, 2));
      seen = await target.query<number>("count", { run });
    }
    const ms = performance.now() - t0;
    if (seen > N) throw new Error(`the target saw ${seen} calls for ${N} jobs`);
    const cpuMs = servers.reduce((sum, s, i) => sum + readCpuMs(s.pid) - cpu0[i]!, 0);
    await Promise.all(pools.map((p) => p.close()));
    await target.query("forget", { run });
    return { perSec: (N / ms) * 1000, cpuUsPerJob: (cpuMs * 1000) / N };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

try {
  const lines = [
    `One POST /jobs per job end to end, ${N} jobs, ${C} in flight, servers sharing one SQLite file`,
    "",
    "| round | processes | jobs/s | servers' CPU µs/job |",
    "| ---: | ---: | ---: | ---: |",
  ];
  for (let r = 1; r <= ROUNDS; r++) {
    for (const k of [1, K]) {
      const { perSec, cpuUsPerJob } = await round(k, `r${r}k${k}`);
      process.stderr.write(`round ${r}, ${k} process(es): ${Math.round(perSec)} jobs/s\n`);
      lines.push(`| ${r} | ${k} | ${Math.round(perSec)} | ${Math.round(cpuUsPerJob)} |`);
    }
  }
  console.log(lines.join("\n"));
} finally {
  await target.stop();
}
