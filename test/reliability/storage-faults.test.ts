import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  buildFaultShim,
  type Fault,
  type FaultShim,
  mountTmpfs,
  type Tmpfs,
} from "../helpers/faults.js";
import {
  type ServerProcess,
  spawnServerProcess,
  startServerProcess,
} from "../helpers/server-process.js";
import { startTarget, type Target } from "../helpers/target.js";
import { deferred, waitFor } from "../helpers/wait-for.js";
import { allEnded, listAll, readiness } from "./harness.js";

/**
 * The real server on storage that fails for real: a small tmpfs filled to its last byte, the same
 * tmpfs remounted read-only, and fsync / write calls failing with EIO (a shim preloaded into the
 * server process, see test/helpers/fault-shim.c). Each time: readiness turns off with the reason,
 * clients get 503 / UNAVAILABLE with Retry-After naming what is wrong and where, nothing
 * acknowledged is lost, jobs whose outcome could not be written are not left running, and the
 * node comes back by itself once the fault is gone. Skipped, saying why, where the test cannot
 * mount a tmpfs or build the shim.
 */

let target: Target;
const servers: ServerProcess[] = [];

beforeEach(async () => {
  target = await startTarget();
});

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.kill("SIGKILL");
    await s.exited;
  }
  await target.close();
});

async function startServer(dbPath: string, env: Record<string, string> = {}) {
  const server = await startServerProcess({
    JOBQUEUE_PORT: "0",
    JOBQUEUE_DB_URL: `sqlite:///${dbPath}`,
    JOBQUEUE_POLL_INTERVAL: "0.05",
    JOBQUEUE_CONCURRENCY: "8",
    JOBQUEUE_MIN_FREE_DISK_MB: "1",
    ...env,
  });
  servers.push(server);
  return server;
}

/** A POST /jobs with its Retry-After header. */
async function enqueue(server: ServerProcess, job: object) {
  const res = await fetch(`${server.url}/jobs`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(job),
  });
  const json: any = await res.json();
  return { status: res.status, retryAfter: res.headers.get("retry-after"), json };
}

/** Checks what a client sees while the store is down: 503 with Retry-After, saying `what`. */
function expectUnavailable(res: Awaited<ReturnType<typeof enqueue>>, what: RegExp) {
  expect(res.status, JSON.stringify(res.json)).toBe(503);
  expect(res.json.code).toBe("unavailable");
  expect(res.json.message).toMatch(what);
  expect(Number(res.retryAfter)).toBeGreaterThanOrEqual(1);
}

/** A body that no write of it fits in a full disk's slack. */
const PAD = { pad: "x".repeat(64 * 1024) };

const fs = await mountTmpfs(48 * 1_048_576);
const noTmpfs = "skip" in fs ? fs.skip : null;
if (noTmpfs) console.warn(`storage faults on a tmpfs: skipped: ${noTmpfs}`);

describe.skipIf(noTmpfs !== null)("on a tmpfs of the test's own", () => {
  const tmpfs = fs as Tmpfs;
  let dbPath: string;
  let n = 0;

  beforeEach(() => {
    const dir = join(tmpfs.dir, `t${n++}`);
    mkdirSync(dir);
    dbPath = join(dir, "jobqueue.db");
  });

  afterEach(async () => {
    tmpfs.free();
    await tmpfs.readWrite().catch(() => {});
  });

  afterAll(() => tmpfs.unmount());

  it("disk full: not ready, 503s saying the disk is full, outcomes kept until there is room, then every acknowledged job runs once", async () => {
    const gate = deferred();
    const calls = new Map<string, number>();
    target.on("/work", async (req, res) => {
      const i = req.query.get("i")!;
      calls.set(i, (calls.get(i) ?? 0) + 1);
      await gate.promise;
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(PAD));
    });
    const server = await startServer(dbPath);
    const acknowledged: string[] = [];
    for (let i = 0; i < 40; i++) {
      const res = await enqueue(server, { url: `${target.url}/work?i=${i}`, body: PAD });
      expect(res.status).toBe(200);
      acknowledged.push(res.json.job_id);
    }
    // Eight calls are held in flight at the target.
    await waitFor(() => target.received("/work").length === 8, { what: "8 calls in flight" });

    tmpfs.fill();
    // Writes go on while they fit in the room the database already has; the first that needs
    // more is refused, and readiness follows.
    let next = 40;
    const refused = await waitFor(
      async () => {
        const res = await enqueue(server, { url: `${target.url}/work?i=${next}`, body: PAD });
        if (res.status === 503) return res;
        expect(res.status).toBe(200);
        acknowledged.push(res.json.job_id);
        next++;
        return undefined;
      },
      { what: "an enqueue to be refused" },
    );
    expectUnavailable(refused, new RegExp(`the disk holding ${dbPath} is full`));
    await waitFor(async () => !(await readiness(server)).ready, { what: "readiness to turn off" });
    const down = await readiness(server);
    expect(down).toMatchObject({ live: true, grpc: "NOT_SERVING" });
    expect(down.reason).toMatch(/full/);

    // The held calls end; their outcomes cannot be written and are kept, not lost.
    gate.resolve();
    await waitFor(
      () =>
        server.logs.some(
          (l) => l.msg === "the store did not take an attempt's outcome; trying again",
        ),
      { what: "the pool to retry an outcome" },
    );

    tmpfs.free();
    await waitFor(async () => (await readiness(server)).ready, {
      what: "readiness to come back",
      timeoutMs: 15_000,
    });
    expect((await readiness(server)).grpc).toBe("SERVING");
    await allEnded(server.rest);
    const stored = await listAll(server.rest);
    for (const id of acknowledged) expect(stored.get(id)?.status, id).toBe("succeeded");
    // What was refused was not stored (the transaction rolled back).
    expect(stored.size).toBe(acknowledged.length);
    // Each job called once: the outcomes written late were still under their lease.
    for (let i = 0; i < next; i++) expect(calls.get(String(i)), `calls of job ${i}`).toBe(1);
    expect(calls.has(String(next))).toBe(false);
  });

  it("read-only file system at a restart: the start-up check refuses it in one line naming the path, nothing is changed, and the next start runs the jobs", async () => {
    let server = await startServer(dbPath);
    const done = (await enqueue(server, { url: `${target.url}/ok` })).json.job_id as string;
    const later = (
      await enqueue(server, {
        url: `${target.url}/ok`,
        scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
      })
    ).json.job_id as string;
    await waitFor(async () => (await server.rest.get(`/jobs/${done}`)).json.status === "succeeded");
    server.kill("SIGTERM");
    expect((await server.exited).code).toBe(0);

    // A node that cannot write its database would answer every call 503: it does not start, and
    // says why in one line (a supervisor restarts it, and the line says what to fix).
    await tmpfs.readOnly();
    const refused = spawnServerProcess({
      JOBQUEUE_PORT: "0",
      JOBQUEUE_DB_URL: `sqlite:///${dbPath}`,
    });
    expect((await refused.exited).code).toBe(1);
    const fatal = refused.logs.filter((l) => l.level === "fatal");
    expect(fatal).toHaveLength(1);
    expect(String(fatal[0]!.msg)).toContain("read-only file system (EROFS)");
    expect(String(fatal[0]!.msg)).toContain(dirname(dbPath));

    await tmpfs.readWrite();
    server = await startServer(dbPath);
    expect((await server.rest.get(`/jobs/${done}`)).json.status).toBe("succeeded");
    expect((await server.rest.get(`/jobs/${later}`)).json.status).toBe("queued");
    const fresh = (await enqueue(server, { url: `${target.url}/ok` })).json.job_id as string;
    await waitFor(
      async () => (await server.rest.get(`/jobs/${fresh}`)).json.status === "succeeded",
    );
  });
});

const shim = await buildFaultShim();
const noShim = "skip" in shim ? shim.skip : null;
if (noShim) console.warn(`injected I/O errors: skipped: ${noShim}`);

describe.skipIf(noShim !== null)("with I/O errors injected into the server process", () => {
  const faults = shim as FaultShim;
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "jobqueue-io-"));
  });

  afterEach(() => {
    for (const f of ["fsync", "write", "read"] as Fault[]) faults.off(f);
    rmSync(dir, { recursive: true, force: true });
  });

  afterAll(() => faults.cleanup());

  it.each([
    {
      fault: "fsync" as Fault,
      // The failed commit says so; a reopen tried meanwhile fails on its own fsync.
      says: "(could not be flushed to disk \\(fsync failed: EIO\\)|an I/O error occurred on)",
    },
    { fault: "write" as Fault, says: "an I/O error occurred on" },
  ])(
    "$fault fails with EIO: not ready, 503s saying so, acknowledged jobs kept, and it recovers by itself",
    async ({ fault, says }) => {
      const dbPath = join(dir, "jobqueue.db");
      const gate = deferred();
      target.on("/work", async (_req, res) => {
        await gate.promise;
        res.writeHead(200).end("done");
      });
      const server = await startServer(dbPath, faults.env(dir));
      const acknowledged: string[] = [];
      for (let i = 0; i < 20; i++) {
        acknowledged.push(
          (await enqueue(server, { url: `${target.url}/work?i=${i}` })).json.job_id,
        );
      }
      await waitFor(() => target.received("/work").length === 8, { what: "8 calls in flight" });

      faults.on(fault);
      const refused = await enqueue(server, { url: `${target.url}/work?i=refused` });
      expectUnavailable(refused, new RegExp(`${says}.*${dbPath}|${dbPath}.*${says}`));
      await waitFor(async () => !(await readiness(server)).ready, {
        what: "readiness to turn off",
      });
      expect((await readiness(server)).grpc).toBe("NOT_SERVING");
      if (fault === "fsync") {
        // What this connection shows may not be on disk: reads are refused too until it reopens.
        expect((await server.rest.get(`/jobs/${acknowledged[0]}`)).status).toBe(503);
      }
      gate.resolve();
      await waitFor(
        () =>
          server.logs.some(
            (l) => l.msg === "the store did not take an attempt's outcome; trying again",
          ),
        { what: "the pool to retry an outcome" },
      );

      faults.off(fault);
      await waitFor(async () => (await readiness(server)).ready, {
        what: "readiness to come back",
        timeoutMs: 15_000,
      });
      await allEnded(server.rest);
      const stored = await listAll(server.rest);
      for (const id of acknowledged) expect(stored.get(id)?.status, id).toBe("succeeded");
      // A refused write is never acknowledged; after a failed fsync it may still be found stored
      // (its commit reached the disk's cache), and then it runs like any other job.
      expect(stored.size).toBeLessThanOrEqual(acknowledged.length + 1);
      for (const job of stored.values()) expect(job.status).toBe("succeeded");
    },
  );
});
