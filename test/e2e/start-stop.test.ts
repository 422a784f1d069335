import { once } from "node:events";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SETTINGS } from "../../src/config.js";
import {
  type LogLine,
  type SpawnedProcess,
  type SpawnOptions,
  spawnServerProcess,
  whenListening,
} from "../helpers/server-process.js";
import { startTarget, type Target } from "../helpers/target.js";
import { restClient, testEnv } from "../helpers/test-app.js";
import { fillDisk, mountTmpfs, remountReadOnly } from "../helpers/tmpfs.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

// The real process as an operator runs it: through `npm start`, under a supervisor's signals, with
// its stdout closed or its log file's disk full, and failing to start in ways that must be clear.

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const VERSION = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).version as string;

let target: Target;
let dir: string;
let spawned: SpawnedProcess[];
let cleanups: (() => void)[];

beforeEach(async () => {
  target = await startTarget();
  dir = mkdtempSync(join(tmpdir(), "jobqueue-start-stop-"));
  spawned = [];
  cleanups = [];
});

afterEach(async () => {
  for (const proc of spawned) proc.kill("SIGKILL");
  await Promise.all(spawned.map((proc) => proc.exited.catch(() => {})));
  for (const cleanup of cleanups.reverse()) cleanup();
  await target.close();
  rmSync(dir, { recursive: true, force: true });
});

function envWith(extra: Record<string, string> = {}): Record<string, string> {
  return { ...testEnv(dir), JOBQUEUE_LOG_LEVEL: "info", ...extra };
}

function spawnServer(env: Record<string, string>, options: SpawnOptions = {}): SpawnedProcess {
  const proc = spawnServerProcess(env, options);
  spawned.push(proc);
  return proc;
}

/** Whether a process is alive (a zombie waiting to be reaped counts as gone). */
function isRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

const noStack = (text: string) => !/\n\s+at |"stack"/.test(text);

describe("npm start", () => {
  it("SIGTERM to the PID npm start gives a supervisor reaches the server: calls in flight finish, the server exits, npm exits 0", {
    timeout: 180_000,
  }, async () => {
    const release = deferred();
    target.on("/slow", async (_req, res) => {
      await release.promise;
      res.writeHead(200).end("done");
    });
    const npm = await whenListening(
      spawnServer(envWith({ JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "30" }), {
        command: { file: "npm", args: ["start", "--silent"] },
        cwd: ROOT,
      }),
    );
    const server = npm.logs.find((l) => l.msg === "jobqueue listening")!.pid as number;
    expect(server, "npm runs the server as its own child, not in a shell").not.toBe(npm.child.pid);
    expect(readFileSync(`/proc/${server}/cmdline`, "utf8").split("\0")).toContain(
      "dist/src/main.js",
    );
    const { json } = await npm.rest.post("/jobs", { url: `${target.url}/slow` });
    await target.request("/slow");

    npm.kill("SIGTERM");
    await npm.waitForLog((l) => l.msg === "stopping", '"stopping"');
    expect(isRunning(server), "the server drains its call in flight").toBe(true);
    release.resolve();
    expect(await npm.exited).toEqual({ code: 0, signal: null });
    expect(isRunning(server)).toBe(false);
    expect(npm.logs.at(-1)?.msg).toBe("stopped");
    const attempt = npm.logs.find((l) => l.msg === "attempt finished");
    expect(attempt).toMatchObject({ jobId: json.job_id, status: "succeeded" });
  });

  it("Ctrl-C (SIGINT to the process group, which npm also forwards) stops the server gracefully, once", {
    timeout: 180_000,
  }, async () => {
    const npm = await whenListening(
      spawnServer(envWith(), {
        command: { file: "npm", args: ["start", "--silent"] },
        cwd: ROOT,
        detached: true,
      }),
    );
    const server = npm.logs.find((l) => l.msg === "jobqueue listening")!.pid as number;
    process.kill(-npm.child.pid!, "SIGINT");
    // npm may end by the SIGINT itself (as in a terminal) or with the server's exit code 0.
    const { code, signal } = await npm.exited;
    expect([0, "SIGINT"]).toContain(code ?? signal);
    expect(isRunning(server)).toBe(false);
    expect(npm.logs.filter((l) => l.msg === "signal received")).toHaveLength(1);
    expect(npm.logs.some((l) => l.msg === "second signal; exiting now")).toBe(false);
    expect(npm.logs.at(-1)?.msg).toBe("stopped");
  });
});

describe("stopping whatever happens to stdout", () => {
  it.each(["SIGTERM", "SIGINT"] as const)(
    "exits on %s after its stdout pipe was closed, having kept serving meanwhile",
    async (signal) => {
      target.on("/fail", (_req, res) => {
        res.writeHead(500).end();
      });
      const proc = await whenListening(spawnServer(envWith()));
      const rest = proc.rest;
      proc.child.stdout!.destroy();
      // Log lines after the close: attempts at info, then the stop itself.
      for (let i = 0; i < 20; i++) {
        const { status } = await rest.post("/jobs", {
          url: `${target.url}/fail`,
          max_attempts: 1,
        });
        expect(status).toBe(200);
      }
      await waitFor(() => (target.received("/fail").length === 20 ? true : undefined), {
        what: "the 20 attempts",
      });
      expect((await rest.get("/healthz")).status).toBe(200);
      proc.kill(signal);
      expect(await proc.exited).toEqual({ code: 0, signal: null });
    },
  );

  it("exits on SIGTERM under `| head -1`", async () => {
    const tsx = ["--import", "tsx", "src/main.ts"].join(" ");
    const sh = spawnServer(envWith(), {
      command: { file: "sh", args: ["-c", `node ${tsx} | head -n 1`] },
      cwd: ROOT,
    });
    const first = await sh.waitForLog(() => true, "the first log line");
    const server = first.pid as number;
    // Past the first line `head` has exited; the server's next lines meet a closed pipe.
    await waitFor(() => (isRunning(server) ? true : undefined), { what: "the server" });
    process.kill(server, "SIGTERM");
    expect(await sh.exited).toEqual({ code: 0, signal: null });
    await waitFor(() => (isRunning(server) ? undefined : true), { what: "the server to exit" });
  });

  it("keeps serving while its log file's disk is full, counts what it dropped, and exits on SIGTERM", async (ctx) => {
    const mnt = join(dir, "logs");
    const mount = mountTmpfs(mnt, { sizeKiB: 256 });
    if ("skip" in mount) return ctx.skip(mount.skip);
    cleanups.push(mount.unmount);
    target.on("/fail", (_req, res) => {
      res.writeHead(500).end();
    });
    const logPath = join(mnt, "server.log");
    const fd = openSync(logPath, "a");
    const proc = spawnServer(envWith(), { stdout: fd });
    closeSync(fd);
    const logs = () =>
      readFileSync(logPath, "utf8")
        .split("\n")
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as LogLine];
          } catch {
            return []; // a line the full disk cut short
          }
        });
    const listening = await waitFor(() => logs().find((l) => l.msg === "jobqueue listening"), {
      what: "the server to listen",
    });
    const rest = restClient(`http://127.0.0.1:${listening.port}`);

    const filler = join(mnt, "filler");
    fillDisk(filler);
    for (let i = 0; i < 20; i++) {
      expect(
        (await rest.post("/jobs", { url: `${target.url}/fail`, max_attempts: 1 })).status,
      ).toBe(200);
    }
    await waitFor(() => (target.received("/fail").length === 20 ? true : undefined), {
      what: "the 20 attempts",
    });
    expect((await rest.get("/healthz")).json).toEqual({ status: "serving" });
    // The log file's last page may have taken a few lines; not all 20.
    const attemptLines = () => logs().filter((l) => l.msg === "attempt finished").length;
    expect(attemptLines()).toBeLessThan(20);

    unlinkSync(filler);
    await rest.post("/jobs", { url: `${target.url}/fail`, max_attempts: 1 });
    const report = await waitFor(() => logs().find((l) => l.msg?.startsWith("log lines dropped")), {
      what: "the dropped-lines report",
    });
    expect(report.level).toBe("warn");
    const dropped = report.dropped as number;
    expect(dropped).toBeGreaterThan(0);
    // Each attempt's line was either written (late, from the buffer, once there was room) or
    // counted as dropped.
    await waitFor(() => (attemptLines() + dropped >= 21 ? true : undefined), {
      what: "every attempt line to be written or counted",
    });

    proc.kill("SIGTERM");
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    expect(logs().at(-1)?.msg).toBe("stopped");
  });
});

describe("log lines", () => {
  it("carry level names and ISO times; attempts are logged at info with method and host, never the query or path", async () => {
    target.on("/ok", (_req, res) => {
      res.writeHead(200).end();
    });
    const proc = await whenListening(spawnServer(envWith()));
    const { json } = await proc.rest.post("/jobs", {
      method: "POST",
      url: `${target.url}/ok/private-path?token=hidden-query`,
      params: { also: "hidden-param" },
    });
    const line = await proc.waitForLog(
      (l) => l.msg === "attempt finished" && l.jobId === json.job_id,
      "the attempt line",
    );
    expect(line).toMatchObject({
      level: "info",
      method: "POST",
      host: new URL(target.url).host,
      status: "succeeded",
      responseStatus: 200,
    });
    expect(proc.stdout).not.toMatch(/hidden-query|hidden-param|private-path/);
    for (const l of proc.logs) {
      expect(["trace", "debug", "info", "warn", "error", "fatal"]).toContain(l.level);
      expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
  });
});

describe("start-up", () => {
  it("warns about an unknown JOBQUEUE_* variable with the closest setting's name, never its value, and starts", async () => {
    const proc = await whenListening(
      spawnServer(envWith({ JOBQUEUE_CONCURENCY: "secret-looking-value", JOBQUEUE_ZZZ: "1" })),
    );
    const typo = proc.logs.find((l) => l.variable === "JOBQUEUE_CONCURENCY");
    expect(typo).toMatchObject({ level: "warn", closest: "JOBQUEUE_CONCURRENCY" });
    expect(typo!.msg).toContain("did you mean JOBQUEUE_CONCURRENCY?");
    expect(proc.logs.find((l) => l.variable === "JOBQUEUE_ZZZ")).toMatchObject({ level: "warn" });
    expect(proc.stdout).not.toContain("secret-looking-value");
    expect(proc.logs.some((l) => l.variable === "JOBQUEUE_PORT")).toBe(false);
  });

  it("--version prints the package's version; --help every setting; a stray argument exits 2", async () => {
    const version = spawnServer({}, { args: ["--version"] });
    expect(await version.exited).toEqual({ code: 0, signal: null });
    expect(version.stdout).toBe(`${VERSION}\n`);

    const help = spawnServer({}, { args: ["--help"] });
    expect(await help.exited).toEqual({ code: 0, signal: null });
    for (const s of SETTINGS) expect(help.stdout).toContain(s.env);

    const stray = spawnServer({}, { args: ["--port=1"] });
    expect(await stray.exited).toEqual({ code: 2, signal: null });
    expect(stray.stderr).toContain("--help");
  });

  it("a busy port fails the start before anything is created: no data directory, database or key", async () => {
    const blocker = net.createServer();
    blocker.listen(0, "127.0.0.1");
    await once(blocker, "listening");
    try {
      const { port } = blocker.address() as net.AddressInfo;
      const dataDir = join(dir, "data");
      const proc = spawnServer(
        envWith({
          JOBQUEUE_PORT: String(port),
          JOBQUEUE_DB_URL: `sqlite:///${join(dataDir, "jobqueue.db")}`,
        }),
      );
      expect(await proc.exited).toEqual({ code: 1, signal: null });
      const fatal = proc.logs.filter((l) => l.level === "fatal");
      expect(fatal).toHaveLength(1);
      expect(fatal[0]!.msg).toBe(`port ${port} on 127.0.0.1 is in use (JOBQUEUE_PORT)`);
      expect(existsSync(dataDir)).toBe(false);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it("a read-only data directory is named in one log line, without a stack trace, before anything is written", async (ctx) => {
    const mnt = join(dir, "ro");
    const mount = mountTmpfs(mnt, { sizeKiB: 64, readOnly: true });
    if ("skip" in mount) return ctx.skip(mount.skip);
    cleanups.push(mount.unmount);
    for (const dbDir of [mnt, join(mnt, "sub", "dir")]) {
      const proc = spawnServer(
        envWith({ JOBQUEUE_DB_URL: `sqlite:///${join(dbDir, "jobqueue.db")}` }),
      );
      expect(await proc.exited).toEqual({ code: 1, signal: null });
      expect(proc.logs).toHaveLength(1);
      const [line] = proc.logs;
      expect(line).toMatchObject({ level: "fatal", code: "EROFS", path: dbDir });
      expect(line!.msg).toContain(dbDir);
      expect(line!.msg).toContain("read-only");
      expect(line!.msg).toContain("JOBQUEUE_DB_URL");
      expect(noStack(proc.stdout + proc.stderr)).toBe(true);
    }
  });

  it("a data directory that turned read-only since the last run is named too (not 'attempt to write a readonly database')", async (ctx) => {
    const mnt = join(dir, "data");
    const mount = mountTmpfs(mnt, { sizeKiB: 4096 });
    if ("skip" in mount) return ctx.skip(mount.skip);
    cleanups.push(mount.unmount);
    const env = envWith({ JOBQUEUE_DB_URL: `sqlite:///${join(mnt, "jobqueue.db")}` });
    const first = await whenListening(spawnServer(env));
    first.kill("SIGTERM");
    expect(await first.exited).toEqual({ code: 0, signal: null });
    remountReadOnly(mnt);

    const proc = spawnServer(env);
    expect(await proc.exited).toEqual({ code: 1, signal: null });
    expect(proc.logs).toHaveLength(1);
    expect(proc.logs[0]).toMatchObject({ level: "fatal", code: "EROFS", path: mnt });
    expect(noStack(proc.stdout + proc.stderr)).toBe(true);
  });

  it("a data directory path through a file is named", async () => {
    const file = join(dir, "not-a-dir");
    mkdirSync(dir, { recursive: true });
    closeSync(openSync(file, "w"));
    const proc = spawnServer(
      envWith({ JOBQUEUE_DB_URL: `sqlite:///${join(file, "jobqueue.db")}` }),
    );
    expect(await proc.exited).toEqual({ code: 1, signal: null });
    expect(proc.logs).toHaveLength(1);
    expect(proc.logs[0]).toMatchObject({ level: "fatal", code: "ENOTDIR", path: file });
    expect(noStack(proc.stdout + proc.stderr)).toBe(true);
  });
});
