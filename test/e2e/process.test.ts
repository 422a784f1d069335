import { once } from "node:events";
import { existsSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createSqliteJobStore } from "../../src/store/sqlite/sqlite-job-store.js";
import {
  type ServerProcess,
  type SpawnedProcess,
  spawnServerProcess,
  whenListening,
} from "../helpers/server-process.js";
import { startTarget, type Target } from "../helpers/target.js";
import { testEnv } from "../helpers/test-app.js";
import { deferred, waitFor } from "../helpers/wait-for.js";

// The real process, started as in production (`node --import tsx src/main.ts`), crashed with
// SIGKILL or stopped with SIGTERM, and started again on the same SQLite file.

let target: Target;
let dir: string;
let dbPath: string;
let spawned: SpawnedProcess[];

beforeEach(async () => {
  target = await startTarget();
  dir = mkdtempSync(join(tmpdir(), "jobqueue-process-"));
  dbPath = join(dir, "jobqueue.db");
  spawned = [];
});

afterEach(async () => {
  for (const proc of spawned) proc.kill("SIGKILL");
  await Promise.all(spawned.map((proc) => proc.exited.catch(() => {})));
  await target.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The test's environment (its own SQLite file, an ephemeral port) plus `extra`. */
function envWith(extra: Record<string, string> = {}): Record<string, string> {
  return { ...testEnv(dir), JOBQUEUE_LOG_LEVEL: "info", ...extra };
}

/** Spawns a process that the test does not expect to start listening. */
function spawnServer(env: Record<string, string>, cwd?: string): SpawnedProcess {
  const proc = spawnServerProcess(env, { cwd });
  spawned.push(proc);
  return proc;
}

/** Spawns a process, kept for afterEach, and waits until it listens. */
function startServer(extra: Record<string, string> = {}): Promise<ServerProcess> {
  return whenListening(spawnServer(envWith(extra)));
}

async function enqueue(proc: ServerProcess, job: Record<string, unknown>): Promise<string> {
  const res = await proc.rest.post("/jobs", job);
  if (res.status !== 200) throw new Error(`enqueue: ${res.status} ${JSON.stringify(res.json)}`);
  return res.json.job_id as string;
}

function waitForStatus(proc: ServerProcess, id: string, ...statuses: string[]): Promise<any> {
  return waitFor(
    async () => {
      const { json } = await proc.rest.get(`/jobs/${id}`);
      return statuses.includes(json.status) ? json : undefined;
    },
    { what: `job ${id} to be ${statuses.join(" or ")}` },
  );
}

async function attemptsOf(proc: ServerProcess, id: string): Promise<unknown[][]> {
  const { json } = await proc.rest.get(`/jobs/${id}/attempts`);
  return json.attempts.map((a: any) => [a.attempt, a.outcome, a.error_code ?? null]);
}

/**
 * What the store holds for a job, read through the store while no server runs: a restarted server
 * would act on the job and hide the state the last one left behind.
 */
async function readStored(id: string, path = dbPath) {
  const store = createSqliteJobStore({ path });
  try {
    const job = await store.jobGet({ id });
    const attempts = (await store.attemptList({ jobId: id })).map((a) => [
      a.attempt,
      a.outcome,
      a.errorCode,
    ]);
    return {
      job: job && {
        status: job.status,
        attempt: job.attempt,
        last_error: job.lastError,
        lease_expires_at: job.leaseExpiresAt,
      },
      attempts,
    };
  } finally {
    await store.close();
  }
}

const isStopping = (l: { msg?: string }) => l.msg === "stopping";
const GRACE_OVER = "grace period over; aborting calls in flight";

describe("a crash (SIGKILL) mid-call", () => {
  it("loses nothing: once the lease expires a new process runs the job again, and the first attempt reads as lost", async () => {
    target.on("/crash", (_req, res, n) => {
      // The first request is held open until the process dies; the second is answered.
      if (n >= 2) res.writeHead(200, { "content-type": "text/plain" }).end("again");
    });
    const first = await startServer({ JOBQUEUE_LEASE_SECONDS: "1" });
    const id = await enqueue(first, { url: `${target.url}/crash`, max_attempts: 3 });
    const held = await target.request("/crash");

    first.kill("SIGKILL");
    expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(await held.closed).toBe("aborted");

    // The acknowledged job is on disk, mid-attempt, with the dead process's lease.
    const stored = await readStored(id);
    expect(stored.job).toMatchObject({ status: "running", attempt: 1 });
    expect(stored.job!.lease_expires_at).not.toBeNull();
    expect(stored.attempts).toEqual([[1, "running", null]]);

    const second = await startServer({ JOBQUEUE_LEASE_SECONDS: "1" });
    const job = await waitForStatus(second, id, "succeeded", "failed");
    expect(job).toMatchObject({ status: "succeeded", attempt: 2, max_attempts: 3 });
    expect(await attemptsOf(second, id)).toEqual([
      [1, "lost", "lease_expired"],
      [2, "succeeded", null],
    ]);
    const requests = target.received("/crash");
    expect(requests).toHaveLength(2);
    // Not run again before the dead process's lease ran out.
    expect(requests[1]!.at).toBeGreaterThanOrEqual(stored.job!.lease_expires_at!);
    const { json: result } = await second.rest.get(`/jobs/${id}/result`);
    expect(result).toMatchObject({ attempt: 2, response_status: 200, response_body: "again" });
  });

  it("on the last attempt fails the job with a lease error and does not call the target again", async () => {
    target.on("/crash-last", () => {
      // held open; never answered
    });
    const first = await startServer({ JOBQUEUE_LEASE_SECONDS: "1" });
    const id = await enqueue(first, { url: `${target.url}/crash-last`, max_attempts: 1 });
    const held = await target.request("/crash-last");

    first.kill("SIGKILL");
    expect(await first.exited).toEqual({ code: null, signal: "SIGKILL" });
    expect(await held.closed).toBe("aborted");
    expect((await readStored(id)).job).toMatchObject({ status: "running", attempt: 1 });

    const second = await startServer({ JOBQUEUE_LEASE_SECONDS: "1" });
    const job = await waitForStatus(second, id, "succeeded", "failed", "queued");
    expect(job.status).toBe("failed");
    expect(job.attempt).toBe(1);
    expect(job.last_error).toMatch(/lease/);
    expect(job.finished_at).not.toBeNull();
    expect(await attemptsOf(second, id)).toEqual([[1, "lost", "lease_expired"]]);
    const { json: result } = await second.rest.get(`/jobs/${id}/result`);
    expect(result).toMatchObject({ status: "failed", attempt: 1 });
    expect(result.error).toMatch(/lease/);
    expect(target.received("/crash-last")).toHaveLength(1);
  });
  it("does not run a dead process's job again before its lease runs out", async () => {
    target.on("/crash-wait", (_req, res, n) => {
      if (n >= 2) res.writeHead(200).end();
    });
    // A lease long enough that the next process is up well before it runs out (renewals every
    // third of it leave at least 3.3 s after the kill; a start takes about 1 s).
    const lease = { JOBQUEUE_LEASE_SECONDS: "5" };
    const first = await startServer(lease);
    const id = await enqueue(first, { url: `${target.url}/crash-wait`, max_attempts: 3 });
    await target.request("/crash-wait");
    first.kill("SIGKILL");
    await first.exited;
    const expiresAt = (await readStored(id)).job!.lease_expires_at!;

    const second = await startServer(lease);
    const up = Date.parse(second.logs.find((l) => l.msg === "jobqueue listening")!.time);
    expect(up, "the premise: the lease still holds when the new process is up").toBeLessThan(
      expiresAt,
    );
    // Its rescuer has made its first pass (at start) and left the job alone.
    expect((await second.rest.get(`/jobs/${id}`)).json).toMatchObject({
      status: "running",
      attempt: 1,
    });
    const retried = await target.request("/crash-wait", 2);
    expect(retried.at).toBeGreaterThanOrEqual(expiresAt);
    expect(await waitForStatus(second, id, "succeeded", "failed")).toMatchObject({
      status: "succeeded",
      attempt: 2,
    });
  });
});

describe("a graceful stop (SIGTERM)", () => {
  it("lets a call that ends within the grace period finish and record its outcome, then exits 0", async () => {
    const release = deferred();
    target.on("/slow", async (_req, res) => {
      await release.promise;
      res.writeHead(200, { "content-type": "text/plain" }).end("done");
    });
    const proc = await startServer({ JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "5" });
    const id = await enqueue(proc, { url: `${target.url}/slow`, max_attempts: 3 });
    const req = await target.request("/slow");

    proc.kill("SIGTERM");
    await proc.waitForLog(isStopping, '"stopping"');
    release.resolve();
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    expect(await req.closed).toBe("finished");
    expect(proc.logs.some((l) => l.msg === GRACE_OVER)).toBe(false);
    expect(proc.logs.at(-1)?.msg).toBe("stopped");

    const stored = await readStored(id);
    expect(stored.job).toMatchObject({ status: "succeeded", attempt: 1, lease_expires_at: null });
    expect(stored.attempts).toEqual([[1, "succeeded", null]]);
    expect(target.received("/slow")).toHaveLength(1);
  });

  it("aborts a call still running when the grace period ends and puts the job back with the attempt refunded", async () => {
    target.on("/stuck", (_req, res, n) => {
      // The first request is never answered; the second is.
      if (n >= 2) res.writeHead(200).end();
    });
    const proc = await startServer({ JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "0.3" });
    const id = await enqueue(proc, { url: `${target.url}/stuck`, max_attempts: 3 });
    const req = await target.request("/stuck");

    const signalledAt = Date.now();
    proc.kill("SIGTERM");
    expect(await proc.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeGreaterThanOrEqual(300);
    expect(await req.closed).toBe("aborted");
    expect(proc.logs.some((l) => l.msg === GRACE_OVER)).toBe(true);

    const stored = await readStored(id);
    expect(stored.job).toMatchObject({ status: "queued", attempt: 0, lease_expires_at: null });
    expect(stored.attempts).toEqual([[1, "interrupted", "interrupted"]]);

    const next = await startServer();
    const job = await waitForStatus(next, id, "succeeded", "failed");
    expect(job).toMatchObject({ status: "succeeded", attempt: 1 });
    expect(await attemptsOf(next, id)).toEqual([
      [1, "interrupted", "interrupted"],
      [1, "succeeded", null],
    ]);
    expect(target.received("/stuck")).toHaveLength(2);
  });

  it("stops claiming: a queued job waiting for the only slot is not started when the slot frees", async () => {
    const release = deferred();
    target.on("/first", async (_req, res) => {
      await release.promise;
      res.writeHead(200).end();
    });
    const proc = await startServer({
      JOBQUEUE_CONCURRENCY: "1",
      JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "5",
    });
    const first = await enqueue(proc, { url: `${target.url}/first` });
    await target.request("/first");
    const waiting = await enqueue(proc, { url: `${target.url}/waiting` });
    expect((await proc.rest.get(`/jobs/${waiting}`)).json.status).toBe("queued");

    proc.kill("SIGTERM");
    await proc.waitForLog(isStopping, '"stopping"');
    release.resolve();
    expect(await proc.exited).toEqual({ code: 0, signal: null });

    expect((await readStored(first)).job).toMatchObject({ status: "succeeded", attempt: 1 });
    expect(await readStored(waiting)).toEqual({
      job: expect.objectContaining({ status: "queued", attempt: 0 }),
      attempts: [],
    });
    expect(target.received("/waiting")).toHaveLength(0);

    // It was left for the next process, which runs it.
    const next = await startServer();
    expect(await waitForStatus(next, waiting, "succeeded", "failed")).toMatchObject({
      status: "succeeded",
      attempt: 1,
    });
  });

  it("stops claiming: a job that falls due while the process drains is not started", async () => {
    const release = deferred();
    target.on("/first", async (_req, res) => {
      await release.promise;
      res.writeHead(200).end();
    });
    const proc = await startServer({ JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "10" });
    await enqueue(proc, { url: `${target.url}/first` });
    await target.request("/first");
    const dueAt = Date.now() + 2000;
    const later = await enqueue(proc, {
      url: `${target.url}/later`,
      scheduled_at: new Date(dueAt).toISOString(),
    });

    proc.kill("SIGTERM");
    const stopping = await proc.waitForLog(isStopping, '"stopping"');
    // The premise: stopping began before the job fell due.
    expect(Date.parse(stopping.time)).toBeLessThan(dueAt);
    // The process drains (the first call is held) while the job falls due and several poll
    // intervals (50 ms) pass. There is no event for "did not claim"; time is the condition.
    await waitFor(() => Date.now() > dueAt + 300, { what: "the job to be overdue" });
    expect(proc.hasExited).toBe(false);
    release.resolve();
    expect(await proc.exited).toEqual({ code: 0, signal: null });

    expect(await readStored(later)).toEqual({
      job: expect.objectContaining({ status: "queued", attempt: 0 }),
      attempts: [],
    });
    expect(target.received("/later")).toHaveLength(0);
  });
});

describe("start-up", () => {
  it.each([
    ["JOBQUEUE_CONCURRENCY", "abc"],
    ["JOBQUEUE_DB_URL", "postgres://x"],
  ])(
    "refuses %s=%s: exit code 2, stderr names the variable, nothing is created",
    async (name, value) => {
      const proc = spawnServer(envWith({ [name]: value }));
      expect(await proc.exited).toEqual({ code: 2, signal: null });
      expect(proc.stderr).toContain(name);
      expect(proc.stderr).toContain("invalid configuration");
      expect(proc.logs.some((l) => l.msg === "jobqueue listening")).toBe(false);
      expect(existsSync(dbPath)).toBe(false);
    },
  );

  it("exits non-zero with a fatal log naming JOBQUEUE_PORT when the port is taken", async () => {
    const blocker = net.createServer();
    blocker.listen(0, "127.0.0.1");
    await once(blocker, "listening");
    try {
      const { port } = blocker.address() as net.AddressInfo;
      const proc = spawnServer(envWith({ JOBQUEUE_PORT: String(port) }));
      const exit = await proc.exited;
      expect(exit.signal).toBeNull();
      expect(exit.code).not.toBe(0);
      expect(exit.code).not.toBeNull();
      const fatal = proc.logs.find((l) => l.level === "fatal");
      expect(fatal?.msg).toContain("JOBQUEUE_PORT");
      expect(fatal?.msg).toContain(String(port));
      expect(proc.logs.some((l) => l.msg === "jobqueue listening")).toBe(false);
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it.each([
    ["sqlite+aiosqlite:///./data/jobqueue.db", "data/jobqueue.db"],
    ["sqlite+aiosqlite:///jobs.db", "jobs.db"],
  ])(
    "reads the seed's URL spelling %s relative to the working directory",
    async (dbUrl, relative) => {
      const expected = join(realpathSync(dir), relative);
      const proc = await whenListening(spawnServer(envWith({ JOBQUEUE_DB_URL: dbUrl }), dir));
      const listening = proc.logs.find((l) => l.msg === "jobqueue listening")!;
      expect(listening.db).toBe(expected);
      expect(existsSync(expected)).toBe(true);

      const id = await enqueue(proc, { url: `${target.url}/ok` });
      await waitForStatus(proc, id, "succeeded");
      proc.kill("SIGTERM");
      expect(await proc.exited).toEqual({ code: 0, signal: null });
      expect((await readStored(id, expected)).job).toMatchObject({
        status: "succeeded",
        attempt: 1,
      });
    },
  );
});
