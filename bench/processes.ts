import { type ChildProcess, fork, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Pool, request } from "undici";
import type { ChildMessage, ParentMessage } from "./child-main.js";

/** The repository root: the JobQueue server is started from here, as a user starts it. */
export const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
/** tsx's loader as a file URL, so forked children resolve it whatever their cwd. */
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

/** Every process this run started and that has not exited yet. */
const live = new Set<ChildProcess>();

function track(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  live.add(child);
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
    child.once("error", () => {
      live.delete(child);
      resolve({ code: null, signal: "spawn-error" });
    });
  });
}

export class PhaseTimeout extends Error {
  override readonly name = "PhaseTimeout";
}

export interface Progress {
  stage: string;
  done: number;
  total: number;
}

/** A forked benchmark process (see child-main.ts for its side). */
export interface Child {
  readonly process: ChildProcess;
  /** Latest progress the child reported. */
  readonly progress: Progress | null;
  /** Resolves once a long-lived child says it is ready. */
  ready(): Promise<unknown>;
  /** Resolves with a one-shot child's result; rejects if it fails, exits early or times out. */
  result<R>(timeoutMs: number): Promise<R>;
  /** Asks a long-lived child something and waits for the answer. */
  query<R>(what: string, args?: unknown): Promise<R>;
  /** Asks it to stop, then kills it if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Forks `bench/<script>` under tsx with its parameters as JSON in argv[2]. */
export function forkChild(script: string, params: unknown, execArgv: string[] = []): Child {
  const path = fileURLToPath(new URL(script, import.meta.url));
  const proc = fork(path, [JSON.stringify(params)], {
    execArgv: ["--import", TSX, ...execArgv],
    stdio: ["ignore", "inherit", "pipe", "ipc"],
    cwd: REPO_ROOT,
  });
  let stderr = "";
  proc.stderr!.setEncoding("utf8");
  proc.stderr!.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-8000);
  });
  const exited = track(proc);
  let progress: Progress | null = null;
  let nextId = 1;
  const waiting = new Map<number, (value: unknown) => void>();
  let readyValue: { info?: unknown } | null = null;
  const readyWaiters: ((v: unknown) => void)[] = [];
  let resultValue: { ok: true; value: unknown } | { ok: false; message: string } | null = null;
  const resultWaiters: (() => void)[] = [];

  proc.on("message", (m: ChildMessage) => {
    switch (m.type) {
      case "progress":
        progress = { stage: m.stage, done: m.done, total: m.total };
        break;
      case "ready":
        readyValue = { info: m.info };
        for (const w of readyWaiters.splice(0)) w(m.info);
        break;
      case "reply":
        waiting.get(m.id)?.(m.value);
        waiting.delete(m.id);
        break;
      case "result":
        resultValue = { ok: true, value: m.value };
        for (const w of resultWaiters.splice(0)) w();
        break;
      case "error":
        resultValue = { ok: false, message: m.message };
        for (const w of resultWaiters.splice(0)) w();
        break;
    }
  });

  const describeExit = (e: { code: number | null; signal: string | null }) =>
    `${script} exited (code ${e.code}, signal ${e.signal})${stderr ? `\n${stderr}` : ""}`;

  return {
    process: proc,
    get progress() {
      return progress;
    },
    ready() {
      if (readyValue) return Promise.resolve(readyValue.info);
      return Promise.race([
        new Promise<unknown>((resolve) => readyWaiters.push(resolve)),
        exited.then((e) => {
          if (resultValue && !resultValue.ok) throw new Error(`${script}: ${resultValue.message}`);
          throw new Error(describeExit(e));
        }),
      ]);
    },
    async result<R>(timeoutMs: number): Promise<R> {
      let timer: NodeJS.Timeout | undefined;
      const gotResult = new Promise<void>((resolve) => {
        if (resultValue) resolve();
        else resultWaiters.push(resolve);
      });
      try {
        await Promise.race([
          gotResult,
          exited.then(async (e) => {
            // The result message can trail the exit event by a tick.
            await new Promise((r) => setTimeout(r, 50));
            if (!resultValue) throw new Error(describeExit(e));
          }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(new PhaseTimeout(`${script} did not finish within ${timeoutMs / 1000}s`)),
              timeoutMs,
            );
          }),
        ]);
      } finally {
        clearTimeout(timer);
      }
      const r = resultValue!;
      if (!r.ok) throw new Error(`${script}: ${r.message}`);
      await Promise.race([exited, new Promise((res) => setTimeout(res, 10_000))]);
      return r.value as R;
    },
    query<R>(what: string, args?: unknown): Promise<R> {
      const id = nextId++;
      return new Promise<R>((resolve, reject) => {
        waiting.set(id, resolve as (v: unknown) => void);
        const message: ParentMessage = { type: "query", id, what, args };
        proc.send(message, (err) => {
          if (err) {
            waiting.delete(id);
            reject(err);
          }
        });
      });
    },
    stop: (graceMs = 5_000) =>
      stopProcess(proc, exited, graceMs, () => {
        if (proc.connected) proc.send({ type: "stop" } satisfies ParentMessage);
        else proc.kill("SIGTERM");
      }),
  };
}

async function stopProcess(
  proc: ChildProcess,
  exited: Promise<unknown>,
  graceMs: number,
  ask: () => void,
): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    ask();
  } catch {
    proc.kill("SIGTERM");
  }
  const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** A JobQueue server process, started as a user starts it. */
export interface ServerProcess {
  readonly pid: number;
  readonly port: number;
  readonly url: string;
  /** SIGTERM (the server's graceful stop), then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface ServerOptions {
  /** The SQLite file, or a PostgreSQL URL (`postgres://…?schema=…`). */
  dbPath: string;
  concurrency: number;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  env?: Record<string, string>;
  /**
   * When the server counts as started: once GET /healthz answers 200 (the default), or as soon as
   * its port accepts connections (a server too busy to answer still has a measurable RSS).
   */
  ready?: "healthz" | "listening";
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Resolves once a TCP connection to 127.0.0.1:port is accepted (then closes it). */
function accepts(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve();
    });
    socket.once("error", reject);
  });
}

/** Builds dist/ once per run when the sources are newer (`npm start`'s own prestart step). */
let built: Promise<void> | null = null;
export function buildOnce(): Promise<void> {
  built ??= new Promise((resolve, reject) => {
    const proc = spawn("sh", ["scripts/prestart.sh"], { cwd: REPO_ROOT, stdio: "inherit" });
    proc.once("error", reject);
    proc.once("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`scripts/prestart.sh exited with ${code}`)),
    );
  });
  return built;
}

/**
 * The compiled server, as `npm start` runs it (`node dist/src/main.js`, built first when the
 * sources are newer), from the repository root, configured only through JOBQUEUE_*
 * environment variables. Its profiles (--cpu-prof) then name the lines of dist/, which follow
 * src/ line for line. It logs at warn (at the default, info, it writes a line per attempt), so
 * its "jobqueue listening" line is not there to read: the port is chosen here, and the server is
 * ready once GET /healthz answers 200 (or, with `ready: "listening"`, once the port accepts).
 */
export async function startServer(options: ServerOptions): Promise<ServerProcess> {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("JOBQUEUE_")),
  );
  await buildOnce();
  const port = await freePort();
  const proc = spawn(process.execPath, [...(options.nodeArgs ?? []), "dist/src/main.js"], {
    cwd: REPO_ROOT,
    env: {
      ...inherited,
      JOBQUEUE_HOST: "127.0.0.1",
      JOBQUEUE_PORT: String(port),
      JOBQUEUE_DB_URL: /^postgres(ql)?:/.test(options.dbPath)
        ? options.dbPath
        : `sqlite:///${options.dbPath}`,
      JOBQUEUE_CONCURRENCY: String(options.concurrency),
      JOBQUEUE_LOG_LEVEL: "warn",
      // Required once the outbound (SSRF) guard lands; harmless before.
      JOBQUEUE_ALLOWED_HOSTS: "127.0.0.1",
      JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "5",
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = track(proc);
  let hasExited = false;
  void exited.then(() => {
    hasExited = true;
  });
  let output = "";
  proc.stdout!.setEncoding("utf8");
  proc.stderr!.setEncoding("utf8");
  const keep = (chunk: string) => {
    output = (output + chunk).slice(-8000);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  const url = `http://127.0.0.1:${port}`;
  const deadline = performance.now() + 120_000;
  for (;;) {
    if (hasExited) throw new Error(`the server exited before it was ready\n${output}`);
    if (performance.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`the server was not ready within 120 s\n${output}`);
    }
    try {
      if (options.ready === "listening") {
        await accepts(port);
        break;
      }
      const res = await request(`${url}/healthz`, { signal: AbortSignal.timeout(20_000) });
      await res.body.dump();
      if (res.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    pid: proc.pid!,
    port,
    url,
    stop: (graceMs = 15_000) => stopProcess(proc, exited, graceMs, () => proc.kill("SIGTERM")),
  };
}

/** One `POST /jobs` of a JSON body on `pool`; throws with the server's answer unless it is a 200. */
export async function postJob(pool: Pool, body: string): Promise<void> {
  const res = await pool.request({
    path: "/jobs",
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`POST /jobs: ${res.statusCode} ${text}`);
}

/** Resident set size and its peak, in bytes, from /proc/<pid>/status. */
export function readRss(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (name: string) =>
    Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? 0);
  return { rss: kb("VmRSS") * 1024, hwm: kb("VmHWM") * 1024 };
}

/**
 * Kills every process this run started (but those in `except`): SIGTERM, then SIGKILL for those
 * still there after 5 s.
 */
export async function killAll(except: ChildProcess[] = []): Promise<void> {
  const procs = [...live].filter((p) => !except.includes(p));
  if (procs.length === 0) return;
  const gone = procs.map(
    (p) =>
      new Promise<void>((resolve) => {
        if (p.exitCode !== null || p.signalCode !== null) return resolve();
        p.once("exit", () => resolve());
      }),
  );
  for (const p of procs) p.kill("SIGTERM");
  const timer = setTimeout(() => {
    for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  }, 5_000);
  await Promise.all(gone);
  clearTimeout(timer);
}

/** CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat. */
export function readCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces), from field 3 on: utime is 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / CLK_TCK;
}

/** Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`; 100 on Linux). */
const CLK_TCK = 100;

/** A redis-server of the benchmark's own. */
export interface RedisProcess {
  readonly process: ChildProcess;
  readonly pid: number;
  readonly port: number;
  stop(): Promise<void>;
}

/**
 * Starts `redis-server` on 127.0.0.1:`port` with `args` (e.g. the durable settings), its files in
 * `dir`; resolves once it accepts connections. Stopped by {@link killAll} too.
 */
export async function startRedis(port: number, dir: string, args: string[]): Promise<RedisProcess> {
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, ...args],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const exited = track(proc);
  let output = "";
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString("utf8")).slice(-4000);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  const deadline = performance.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server on port ${port} exited\n${output}`);
    if (performance.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`redis-server on port ${port} did not listen within 20 s\n${output}`);
    }
    try {
      await accepts(port);
      break;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return {
    process: proc,
    pid: proc.pid!,
    port,
    stop: () => stopProcess(proc, exited, 5_000, () => proc.kill("SIGTERM")),
  };
}
