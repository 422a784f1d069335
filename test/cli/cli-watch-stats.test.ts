import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred } from "../helpers/wait-for.js";
import { prepareCli, runCli, startCli } from "./run-cli.js";

// The binary builds dist/ on its first run after a change: once, before the tests and their timeouts.
beforeAll(prepareCli, 600_000);

const ESC = "\u001b";

const lines = (text: string) =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

/**
 * A TCP proxy in front of the server whose connections can be cut, and which can refuse new
 * ones for a while: a network that drops, for the watch's resume.
 */
interface Proxy {
  url: string;
  /** Cuts every connection open now; while `down`, new connections are cut at once. */
  cut(): void;
  down: boolean;
  close(): Promise<void>;
}

async function startProxy(port: number): Promise<Proxy> {
  const sockets = new Set<Socket>();
  const proxy: Proxy = {
    url: "",
    down: false,
    cut() {
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    close: () => new Promise((r) => server.close(() => r())),
  };
  const server: Server = createServer((client) => {
    if (proxy.down) {
      client.destroy();
      return;
    }
    const upstream = tcpConnect(port, "127.0.0.1");
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no port");
  proxy.url = `http://127.0.0.1:${address.port}`;
  return proxy;
}

/** `watch`, `stats` and `queues`: the real binary against a real server. */
describe("jobqueue watch, stats and queues", () => {
  let t: TestApp;
  let target: Target;
  let proxy: Proxy;
  let env: Record<string, string>;

  beforeAll(async () => {
    t = await startTestApp();
    target = await startTarget();
    proxy = await startProxy(t.port);
    env = { JOBQUEUE_SERVER: t.url };
    target.on("/ok", (_req, res) => {
      res.writeHead(200).end("ok");
    });
    target.on("/fail", (_req, res) => {
      res.writeHead(404).end("no");
    });
  });
  afterAll(async () => {
    await proxy?.close();
    await t?.stop();
    await target?.close();
  });

  it("watch of a filter prints the matching jobs' events live (table and jsonl); Ctrl-C ends it with the cursor to resume from", async () => {
    const watch = startCli(["watch", "--tag", "w1", "-o", "jsonl"], { env });
    const opened = await watch.waitForOutput(/watching from cursor (\S+)/);
    const from = opened.split(" ").at(-1)!;
    const a = await t.enqueue({ url: `${target.url}/ok`, tags: ["w1"] });
    const b = await t.enqueue({ url: `${target.url}/fail`, tags: ["w1"], max_attempts: 1 });
    await t.enqueue({ url: `${target.url}/ok`, tags: ["other"] });
    await watch.waitForOutput(new RegExp(`"job_id":"${b}".*"type":"failed"`), "b's end");
    await watch.waitForOutput(new RegExp(`"job_id":"${a}".*"type":"succeeded"`), "a's end");
    watch.child.kill("SIGINT");
    const end = await watch.exited;
    expect(end.code).toBe(130);
    const events = lines(end.stdout);
    // Only the jobs with the tag, each event once, in the stream's order.
    expect(new Set(events.map((e) => e.job_id))).toEqual(new Set([a, b]));
    const cursors = events.map((e) => e.cursor);
    expect(new Set(cursors).size).toBe(cursors.length);
    expect([...cursors].sort()).toEqual(cursors);
    const typesOf = (id: string) => events.filter((e) => e.job_id === id).map((e) => e.type);
    expect(typesOf(a)).toEqual(["queued", "running", "attempt_ended", "succeeded"]);
    expect(typesOf(b)).toEqual(["queued", "running", "attempt_ended", "failed"]);
    const last = cursors.at(-1);
    expect(end.stderr).toMatch(new RegExp(`resume with --cursor ${last}\\b`));

    // From the first cursor again, as a table: the same events, read back from the stream.
    const again = startCli(["watch", "--tag", "w1", "--cursor", from], { env });
    await again.waitForOutput(new RegExp(`${b}\\s+failed\\s+failed\\s+attempt 1\\s.*404`));
    await again.waitForOutput(new RegExp(`${a}\\s+succeeded\\s+succeeded`));
    again.child.kill("SIGINT");
    const table = (await again.exited).stdout.trim().split("\n");
    expect(table).toHaveLength(events.length);
    expect(table[0]).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}j_[0-9A-Z]{26} {2}queued\s+queued/,
    );
    expect(table.join("\n")).not.toContain(ESC);

    // A --status filter: only the failure.
    const failures = startCli(["watch", "--status", "failed", "--cursor", from, "-o", "jsonl"], {
      env,
    });
    await failures.waitForOutput(new RegExp(`"job_id":"${b}"`));
    failures.child.kill("SIGINT");
    expect(lines((await failures.exited).stdout)).toMatchObject([{ job_id: b, type: "failed" }]);

    const bad = await runCli(["watch", "--cursor", "nope", "--tag", "w1"], { env });
    expect(bad.code).toBe(2);
    expect((await runCli(["watch", a, "--tag", "w1"], { env })).code).toBe(2);
  });

  it("watch resumes from its last cursor after the connection drops: every event once, none missed", async () => {
    const watch = startCli(["watch", "--tag", "w2", "-o", "jsonl"], {
      env: { JOBQUEUE_SERVER: proxy.url },
    });
    await watch.waitForOutput(/watching from cursor/);
    const a = await t.enqueue({ url: `${target.url}/ok`, tags: ["w2"] });
    await watch.waitForOutput(new RegExp(`"job_id":"${a}".*"type":"succeeded"`));
    // The network drops, and stays down while another job runs from start to end.
    proxy.down = true;
    proxy.cut();
    const b = await t.enqueue({ url: `${target.url}/ok`, tags: ["w2"] });
    await t.waitForStatus(b, "succeeded");
    proxy.down = false;
    await watch.waitForOutput(
      new RegExp(`"job_id":"${b}".*"type":"succeeded"`),
      "b's events after the resume",
    );
    watch.child.kill("SIGINT");
    const events = lines((await watch.exited).stdout);
    const typesOf = (id: string) => events.filter((e) => e.job_id === id).map((e) => e.type);
    expect(typesOf(a)).toEqual(["queued", "running", "attempt_ended", "succeeded"]);
    expect(typesOf(b)).toEqual(["queued", "running", "attempt_ended", "succeeded"]);
    const cursors = events.map((e) => e.cursor);
    expect(new Set(cursors).size).toBe(cursors.length);
  });

  it("watch of one job ends when the job ends, also when it ended while the connection was down", async () => {
    const release = deferred();
    target.on("/held", async (_req, res) => {
      await release.promise;
      res.writeHead(200).end("done");
    });
    const jobId = await t.enqueue({ url: `${target.url}/held` });
    await t.waitForStatus(jobId, "running");
    const watch = startCli(["watch", jobId], { env: { JOBQUEUE_SERVER: proxy.url } });
    await watch.waitForOutput(new RegExp(`${jobId}\\s+running`));
    proxy.down = true;
    proxy.cut();
    release.resolve();
    await t.waitForStatus(jobId, "succeeded");
    proxy.down = false;
    const end = await watch.exited;
    expect(end.code, end.stderr).toBe(0);
    const out = end.stdout.trim().split("\n");
    expect(out[0]).toMatch(new RegExp(`${jobId}\\s+running\\s+attempt 1/3`));
    expect(out.at(-1)).toMatch(new RegExp(`${jobId}\\s+succeeded\\s+attempt 1/3`));

    // A job that has already ended: one line, at once, and its exit code.
    const failed = await t.enqueue({ url: `${target.url}/fail`, max_attempts: 1 });
    await t.waitForStatus(failed, "failed");
    const done = await runCli(["watch", failed, "-o", "jsonl"], { env });
    expect(done.code).toBe(1);
    expect(lines(done.stdout)).toMatchObject([{ job_id: failed, status: "failed" }]);
    expect((await runCli(["watch", "j_01ARZ3NDEKTSV4RRFFQ69G5FAV"], { env })).code).toBe(3);
  });

  it("watch of one job shows how far a long call has come, then its end", async () => {
    const release = deferred();
    target.on("/slow", async (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.write(Buffer.alloc(64 * 1024));
      await release.promise;
      res.end(Buffer.alloc(1024));
    });
    // Held in a paused queue until the watch is open: the call's progress comes after that.
    expect((await runCli(["queues", "create", "slow"], { env })).code).toBe(0);
    expect((await runCli(["queues", "pause", "slow"], { env })).code).toBe(0);
    const jobId = await t.enqueue({ url: `${target.url}/slow`, queue: "slow" });
    const watch = startCli(["watch", jobId], { env });
    await watch.waitForOutput(new RegExp(`${jobId}\\s+queued`));
    expect((await runCli(["queues", "resume", "slow"], { env })).code).toBe(0);
    // The server reports a call's progress after its first second.
    await watch.waitForOutput(
      new RegExp(`${jobId}\\s+running\\s+attempt 1/3\\s+(headers|body) HTTP 200`),
    );
    release.resolve();
    const end = await watch.exited;
    expect(end.code).toBe(0);
    expect(end.stdout.trim().split("\n").at(-1)).toMatch(new RegExp(`${jobId}\\s+succeeded`));
  });

  it("stats: counts by status and queue as a table and as JSON; one queue's statistics", async () => {
    const create = await runCli(["queues", "create", "stats-q", "--concurrency", "3"], { env });
    expect(create.code, create.stderr).toBe(0);
    const ok = await t.enqueue({ url: `${target.url}/ok`, queue: "stats-q" });
    const bad = await t.enqueue({ url: `${target.url}/fail`, queue: "stats-q", max_attempts: 1 });
    await t.waitForStatus(ok, "succeeded");
    await t.waitForStatus(bad, "failed");
    await t.enqueue({
      url: `${target.url}/ok`,
      queue: "stats-q",
      scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
    });

    const json = await runCli(["stats", "-o", "json"], { env });
    expect(json.code).toBe(0);
    const counts = JSON.parse(json.stdout);
    expect(counts).toEqual((await t.rest.get("/jobs:counts")).json);
    expect(counts.queues).toContainEqual({
      queue: "stats-q",
      counts: { queued: 1, running: 0, succeeded: 1, failed: 1, canceled: 0 },
    });

    const table = await runCli(["stats"], { env });
    const rows = table.stdout.trimEnd().split("\n");
    expect(rows[0]).toMatch(/^QUEUE\s+QUEUED\s+RUNNING\s+SUCCEEDED\s+FAILED\s+CANCELED\s+TOTAL$/);
    expect(rows).toContainEqual(expect.stringMatching(/^stats-q\s+1\s+0\s+1\s+1\s+0\s+3$/));
    const t0 = counts.total;
    const sum = t0.queued + t0.running + t0.succeeded + t0.failed + t0.canceled;
    expect(rows.at(-1)).toMatch(
      new RegExp(
        `^\\(all\\)\\s+${t0.queued}\\s+${t0.running}\\s+${t0.succeeded}\\s+${t0.failed}\\s+${t0.canceled}\\s+${sum}$`,
      ),
    );

    const q = await runCli(["stats", "--queue", "stats-q", "-o", "json"], { env });
    expect(JSON.parse(q.stdout)).toMatchObject({
      queue: "stats-q",
      counts: { queued: 1, succeeded: 1, failed: 1 },
      success_rate: 0.5,
    });
    const qt = await runCli(["stats", "--queue", "stats-q", "--window", "5"], { env });
    expect(qt.stdout).toMatch(/^success rate\s+50\.0%$/m);
    // The queued job is due in an hour: none waits yet.
    expect(qt.stdout).toMatch(/^next in line\s+none$/m);
    expect(qt.stdout).toMatch(/^MINUTE\s+SUCCEEDED\s+FAILED\s+CANCELED$/m);
    const grouped = await runCli(["stats", "--group-by", "host", "-o", "json"], { env });
    expect(JSON.parse(grouped.stdout).groups).toContainEqual({
      key: "127.0.0.1",
      queued: expect.any(Number),
      running: 0,
    });

    expect((await runCli(["stats", "--queue", "nope"], { env })).code).toBe(3);
    expect((await runCli(["stats", "--window", "0", "--queue", "stats-q"], { env })).code).toBe(2);

    // Colours on a terminal only (and not with NO_COLOR).
    const tty = await runCli(["stats"], { env, tty: true });
    expect(tty.stdout).toContain(`${ESC}[1mQUEUE`);
    const noColor = await runCli(["stats"], { env: { ...env, NO_COLOR: "1" }, tty: true });
    expect(noColor.stdout).not.toContain(ESC);
  });

  it("queues: create, list, get, update, pause, resume, delete as tables and JSON, with their exit codes", async () => {
    const created = await runCli(
      [
        "queues",
        "create",
        "reports",
        "--concurrency",
        "2",
        "--rate",
        "5",
        "--burst",
        "10",
        "--max-attempts",
        "5",
        "--backoff",
        "fixed",
        "--backoff-seconds",
        "30",
        "--ttl",
        "86400",
        "-o",
        "json",
      ],
      { env },
    );
    expect(created.code, created.stderr).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({
      name: "reports",
      concurrency: 2,
      rate_per_second: 5,
      burst: 10,
      max_attempts: 5,
      backoff_strategy: "fixed",
      backoff_seconds: 30,
      ttl_seconds: 86400,
      paused: false,
    });
    expect((await runCli(["queues", "create", "reports"], { env })).code).toBe(6);
    const badName = await runCli(["queues", "create", "Bad Name"], { env });
    expect(badName.code).toBe(2);
    expect((await runCli(["queues", "create", "x", "--concurrency", "two"], { env })).code).toBe(2);

    const list = await runCli(["queues", "list"], { env });
    const rows = list.stdout.trimEnd().split("\n");
    expect(rows[0]).toMatch(
      /^QUEUE\s+STATE\s+CONCURRENCY\s+RATE\/S\s+BURST\s+MAX ATTEMPTS\s+BACKOFF\s+TTL\s+CREATED$/,
    );
    expect(rows).toContainEqual(
      expect.stringMatching(/^default\s+running\s+-\s+-\s+-\s+-\s+-\s+-$/),
    );
    expect(rows).toContainEqual(
      expect.stringMatching(/^reports\s+running\s+2\s+5\s+10\s+5\s+fixed 30 s\s+86400 s\s+\d{4}-/),
    );
    const listJson = await runCli(["queues", "list", "-o", "json"], { env });
    expect(JSON.parse(listJson.stdout).map((q: { name: string }) => q.name)).toContain("reports");

    const updated = await runCli(
      ["queues", "update", "reports", "--concurrency", "4", "--rate", "0"],
      {
        env,
      },
    );
    expect(updated.code).toBe(0);
    expect(updated.stdout).toMatch(/^concurrency\s+4 per node$/m);
    expect(updated.stdout).toMatch(/^rate\s+node default$/m);
    expect(updated.stdout).toMatch(/^max attempts\s+5$/m);
    expect((await runCli(["queues", "update", "reports"], { env })).code).toBe(2);

    const paused = await runCli(["queues", "pause", "reports"], { env });
    expect(paused.stdout).toBe("reports  paused\n");
    const job = await t.enqueue({ url: `${target.url}/ok`, queue: "reports" });
    const got = await runCli(["queues", "get", "reports", "-o", "json"], { env });
    expect(JSON.parse(got.stdout)).toMatchObject({ name: "reports", paused: true, concurrency: 4 });
    expect((await runCli(["queues", "get", "reports"], { env })).stdout).toMatch(
      /^state\s+paused$/m,
    );
    expect((await t.rest.get(`/jobs/${job}`)).json.status).toBe("queued");
    // Not empty: deleting it is a conflict.
    expect((await runCli(["queues", "delete", "reports"], { env })).code).toBe(6);
    const resumed = await runCli(["queues", "resume", "reports", "-o", "json"], { env });
    expect(JSON.parse(resumed.stdout)).toMatchObject({ paused: false });
    await t.waitForStatus(job, "succeeded");
    const deleted = await runCli(["queues", "delete", "reports"], { env });
    expect(deleted.code, deleted.stderr).toBe(0);
    expect(deleted.stdout).toBe("reports  deleted\n");
    expect((await runCli(["queues", "get", "reports"], { env })).code).toBe(3);
    expect((await runCli(["queues", "delete", "default"], { env })).code).not.toBe(0);
  });
});
