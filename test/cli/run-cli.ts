import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { waitFor } from "../helpers/wait-for.js";

/** The real `jobqueue` binary, as npm links it. */
export const BIN = fileURLToPath(new URL("../../bin/jobqueue.js", import.meta.url));
const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Brings the binary's build up to date before a file's tests (call it in `beforeAll` with a long
 * timeout). The binary builds dist/ itself on its first run after a source change; test files
 * starting at once would each start that build, and a test's own timeout would pay for it. One
 * file builds (a lock directory held across processes) while the others wait for it.
 */
export async function prepareCli(): Promise<void> {
  const lock = join(
    tmpdir(),
    `jobqueue-cli-build-${createHash("sha256").update(ROOT).digest("hex").slice(0, 12)}`,
  );
  await waitFor(
    () => {
      try {
        mkdirSync(lock);
        return true;
      } catch {
        // A lock left by a test run that died is not waited for.
        try {
          if (Date.now() - statSync(lock).mtimeMs > 600_000) rmSync(lock, { recursive: true });
        } catch {}
        return false;
      }
    },
    { timeoutMs: 600_000, intervalMs: 100, what: "another test file to build the CLI" },
  );
  try {
    await promisify(execFile)("sh", [join(ROOT, "scripts/prestart.sh")], { cwd: ROOT });
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

export interface CliRun {
  readonly child: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when stdout or stderr (as `script` merges them) first matches. */
  waitForOutput(match: RegExp, what?: string): Promise<string>;
  readonly exited: Promise<{ code: number | null; stdout: string; stderr: string }>;
}

/**
 * Runs `jobqueue <args>` in its own process with `env` over a clean environment (no JOBQUEUE_* of
 * the parent's). `tty: true` runs it under `script`, on a pseudo-terminal (progress bars, live
 * status lines), with stdout and stderr merged.
 */
export function startCli(
  args: string[],
  options: {
    env?: Record<string, string>;
    tty?: boolean;
    stdin?: string;
    /** Leave stdin open (write to `child.stdin` later: keys on the terminal with `tty`). */
    keepStdin?: boolean;
    cwd?: string;
  } = {},
): CliRun {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("JOBQUEUE_") && k !== "NO_COLOR"),
  );
  const env = { ...inherited, ...options.env };
  const quoted = [process.execPath, BIN, ...args]
    .map((a) => `'${a.replaceAll("'", `'\\''`)}'`)
    .join(" ");
  const child = options.tty
    ? spawn("script", ["-qefc", `stty cols 120; exec ${quoted}`, "/dev/null"], {
        // CI=true as on a CI runner, where Node's own colour detection says no: the CLI's must not.
        env: { CI: "true", ...env, TERM: "xterm-256color" },
        cwd: options.cwd,
        stdio: ["pipe", "pipe", "pipe"],
      })
    : spawn(process.execPath, [BIN, ...args], {
        env,
        cwd: options.cwd,
        stdio: ["pipe", "pipe", "pipe"],
      });
  let stdout = "";
  let stderr = "";
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding("utf8").on("data", (c: string) => {
    stdout += c;
    for (const w of waiters) w();
  });
  child.stderr!.setEncoding("utf8").on("data", (c: string) => {
    stderr += c;
    for (const w of waiters) w();
  });
  if (options.stdin !== undefined) child.stdin!.end(options.stdin);
  else if (!options.keepStdin) child.stdin!.end();
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>(
    (resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code) => resolve({ code, stdout, stderr }));
    },
  );
  return {
    child,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
    waitForOutput(match, what = String(match)) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = match.exec(stdout) ?? match.exec(stderr);
          if (m) {
            waiters.delete(check);
            resolve(m[0]);
          }
        };
        waiters.add(check);
        check();
        void exited.then(() => {
          if (waiters.has(check)) {
            waiters.delete(check);
            reject(
              new Error(`jobqueue exited before ${what}\nstdout:\n${stdout}\nstderr:\n${stderr}`),
            );
          }
        });
      });
    },
  };
}

/** Runs `jobqueue <args>` to its end. */
export function runCli(args: string[], options: Parameters<typeof startCli>[1] = {}) {
  return startCli(args, options).exited;
}
