import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";
import { type Rest, restClient } from "./test-app.js";

/** The entry point, by absolute path, so a process may run with any working directory. */
const MAIN = fileURLToPath(new URL("../../src/main.ts", import.meta.url));
/** tsx's ESM loader as a file URL: `--import tsx` would resolve against the child's cwd. */
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

/** One JSON log line as the server writes it. */
export interface LogLine {
  /** "trace", "debug", "info", "warn", "error" or "fatal". */
  level: string;
  /** ISO 8601, UTC. */
  time: string;
  msg?: string;
  [key: string]: unknown;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  /** The child's working directory; relative database paths resolve against it. */
  cwd?: string;
  /** Where the child's stdout goes: a pipe the harness reads (default) or a file descriptor. */
  stdout?: "pipe" | number;
  /** Runs this instead of `node --import tsx src/main.ts` (e.g. `npm start`). */
  command?: { file: string; args: string[] };
  /** Arguments after src/main.ts (e.g. `--help`). */
  args?: string[];
  /** Starts the child in a process group of its own (to signal the group, as a terminal does). */
  detached?: boolean;
}

/** A spawned `node --import tsx src/main.ts`, its output collected as it arrives. */
export interface SpawnedProcess {
  readonly child: ChildProcess;
  /** Everything written to stdout so far. */
  readonly stdout: string;
  /** Everything written to stderr so far. */
  readonly stderr: string;
  /** The stdout lines that parsed as JSON, in order. */
  readonly logs: LogLine[];
  /** Resolves with the first log line (already written or still to come) that matches. */
  waitForLog(match: (line: LogLine) => boolean, what?: string): Promise<LogLine>;
  /** Sends a signal; a no-op once the process has exited. */
  kill(signal: NodeJS.Signals): void;
  /** Resolves when the process has exited and its output streams are drained. */
  readonly exited: Promise<Exit>;
  /** Whether the process has exited. */
  readonly hasExited: boolean;
}

/** A spawned process that logged "jobqueue listening". */
export interface ServerProcess extends SpawnedProcess {
  /** http://127.0.0.1:<port> */
  readonly url: string;
  readonly port: number;
  readonly rest: Rest;
}

/**
 * Spawns the real server with exactly `env` on top of the parent's environment minus any
 * JOBQUEUE_* variable, so the parent's settings cannot leak in. Logs at info unless `env` says
 * otherwise: the harness reads them.
 */
export function spawnServerProcess(
  env: Record<string, string>,
  options: SpawnOptions = {},
): SpawnedProcess {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("JOBQUEUE_")),
  );
  const command = options.command ?? {
    file: process.execPath,
    args: ["--import", TSX, MAIN, ...(options.args ?? [])],
  };
  const child = spawn(command.file, command.args, {
    cwd: options.cwd,
    env: { ...inherited, JOBQUEUE_LOG_LEVEL: "info", JOBQUEUE_ALLOWED_HOSTS: "127.0.0.1", ...env },
    stdio: ["ignore", options.stdout ?? "pipe", "pipe"],
    detached: options.detached ?? false,
  });
  const events = new EventEmitter();
  const logs: LogLine[] = [];
  let stdout = "";
  let stderr = "";
  let partial = "";
  let hasExited = false;
  child.stderr!.setEncoding("utf8");
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => {
    stdout += chunk;
    const lines = (partial + chunk).split("\n");
    partial = lines.pop()!;
    for (const line of lines) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        continue;
      }
      if (parsed !== null && typeof parsed === "object") {
        logs.push(parsed as LogLine);
        events.emit("log", parsed);
      }
    }
  });
  child.stderr!.on("data", (chunk: string) => {
    stderr += chunk;
  });
  // "close" rather than "exit": the output is complete by then.
  const exited = new Promise<Exit>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => {
      hasExited = true;
      events.emit("exit");
      resolve({ code, signal });
    });
  });

  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    logs,
    get hasExited() {
      return hasExited;
    },
    exited,
    kill(signal) {
      if (!hasExited) child.kill(signal);
    },
    waitForLog(match, what = "a log line") {
      const found = logs.find(match);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const onLog = (line: LogLine) => {
          if (!match(line)) return;
          cleanup();
          resolve(line);
        };
        const onExit = () => {
          cleanup();
          reject(
            new Error(`the process exited before ${what}\nstdout:\n${stdout}\nstderr:\n${stderr}`),
          );
        };
        const cleanup = () => {
          events.off("log", onLog);
          events.off("exit", onExit);
        };
        if (hasExited) return onExit();
        events.on("log", onLog);
        events.once("exit", onExit);
      });
    },
  };
}

/**
 * Resolves once a spawned process logs "jobqueue listening", with the bound port, a URL and a
 * REST client; rejects with its output if it exits first.
 */
export async function whenListening(proc: SpawnedProcess): Promise<ServerProcess> {
  const line = await proc.waitForLog((l) => l.msg === "jobqueue listening", '"jobqueue listening"');
  const port = line.port as number;
  const url = `http://127.0.0.1:${port}`;
  return Object.defineProperties(proc, {
    url: { value: url, enumerable: true },
    port: { value: port, enumerable: true },
    rest: { value: restClient(url), enumerable: true },
  }) as ServerProcess;
}

/** Spawns the real server and waits until it listens (see {@link whenListening}). */
export function startServerProcess(
  env: Record<string, string>,
  options: SpawnOptions = {},
): Promise<ServerProcess> {
  return whenListening(spawnServerProcess(env, options));
}
