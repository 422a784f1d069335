import { spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createLogDestination } from "../../src/log/log-destination.js";
import { fillDisk, mountTmpfs } from "../helpers/tmpfs.js";
import { waitFor } from "../helpers/wait-for.js";

const CHILD = fileURLToPath(new URL("./log-destination-child.ts", import.meta.url));
const TSX = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "jobqueue-log-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

interface Report {
  when: string;
  dropped: number;
  buffered: number;
  gone: boolean;
}

/** Runs the child with its stdout on a pipe the test controls; resolves its reports and exit. */
function runChild(params: { lines: number; maxBufferedBytes: number }) {
  const child = spawn(process.execPath, ["--import", TSX, CHILD, JSON.stringify(params)], {
    stdio: ["pipe", "pipe", "pipe"],
  });
  const reports: Report[] = [];
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr += chunk;
    for (const line of chunk.split("\n").filter((l) => l.startsWith("{"))) {
      reports.push(JSON.parse(line) as Report);
    }
  });
  const exited = once(child, "close") as Promise<[number | null, string | null]>;
  return { child, reports, exited, stderr: () => stderr };
}

describe("the log destination on a pipe", () => {
  it("keeps the event loop free when nobody reads the pipe: lines beyond its buffer are dropped and counted", async () => {
    const run = runChild({ lines: 20_000, maxBufferedBytes: 64 * 1024 });
    // The test never reads the child's stdout: the pipe (64 KiB) fills, then the buffer.
    run.child.stdout.pause();
    run.child.stdin.write("go\n");
    const timer = await waitFor(() => run.reports.find((r) => r.when === "timer"), {
      what: "the child's timer to fire while its stdout pipe is full",
    });
    expect(timer.dropped).toBeGreaterThan(0);
    expect(timer.dropped).toBeLessThan(20_000);
    expect(timer.buffered).toBeLessThanOrEqual(64 * 1024);
    expect(timer.gone).toBe(false);
    // Reading again lets the buffered lines through and the child exit by itself.
    let received = 0;
    run.child.stdout.on("data", (chunk: Buffer) => {
      received += chunk.toString().split("\n").length - 1;
    });
    run.child.stdout.resume();
    const [code] = await run.exited;
    expect(code, run.stderr()).toBe(0);
    expect(received + timer.dropped).toBe(20_000);
  });

  it("gives up a closed pipe (EPIPE) without throwing: every line counts as dropped", async () => {
    const run = runChild({ lines: 1000, maxBufferedBytes: 1 << 20 });
    run.child.stdout.destroy();
    run.child.stdin.write("go\n");
    const [code] = await run.exited;
    expect(code, run.stderr()).toBe(0);
    const flushed = run.reports.find((r) => r.when === "flushed");
    expect(flushed).toEqual({ when: "flushed", dropped: 1000, buffered: 0, gone: true });
  });
});

describe("the log destination on a file", () => {
  it("writes every line, in order, and flush resolves once they are on the file", async () => {
    const path = join(dir, "log");
    const fd = openSync(path, "a");
    try {
      const destination = createLogDestination({ fd });
      for (let i = 0; i < 5000; i++) destination.write(`line ${i}\n`);
      await destination.flush(10_000);
      const lines = readFileSync(path, "utf8").split("\n").slice(0, -1);
      expect(lines).toHaveLength(5000);
      expect(lines.every((l, i) => l === `line ${i}`)).toBe(true);
      expect(destination.dropped).toBe(0);
      expect(destination.buffered).toBe(0);
    } finally {
      closeSync(fd);
    }
  });

  it("on a full disk drops and counts lines without throwing, and reports them once it can write again", async (ctx) => {
    const mnt = join(dir, "full");
    const mount = mountTmpfs(mnt, { sizeKiB: 64 });
    if ("skip" in mount) return ctx.skip(mount.skip);
    try {
      const fd = openSync(join(mnt, "log"), "a");
      const filler = join(mnt, "filler");
      fillDisk(filler);
      const recovered: number[] = [];
      const destination = createLogDestination({
        fd,
        retryMs: 20,
        maxBufferedBytes: 4096,
        onRecovered: (n) => recovered.push(n),
      });
      for (let i = 0; i < 1000; i++) destination.write(`line ${i} ${"x".repeat(40)}\n`);
      await waitFor(() => destination.dropped >= 1000 || undefined, {
        what: "every line to be dropped on the full disk",
      });
      expect(destination.gone).toBe(false);
      unlinkSync(filler);
      destination.write("after\n");
      await waitFor(() => recovered.length > 0 || undefined, { what: "the recovery report" });
      expect(recovered[0]).toBeGreaterThanOrEqual(1000);
      await destination.flush(5000);
      expect(readFileSync(join(mnt, "log"), "utf8")).toContain("after\n");
      closeSync(fd);
    } finally {
      mount.unmount();
    }
  });
});
