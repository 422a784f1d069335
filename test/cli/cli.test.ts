import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { deferred } from "../helpers/wait-for.js";
import { prepareCli, runCli, startCli } from "./run-cli.js";

// The binary builds dist/ on its first run after a change: once, before the tests and their timeouts.
beforeAll(prepareCli, 600_000);

/** The `jobqueue` command: the real binary, in its own process, against a real server. */
describe("jobqueue CLI", () => {
  let t: TestApp;
  let target: Target;
  let env: Record<string, string>;
  const tmp = mkdtempSync(join(tmpdir(), "jobqueue-cli-"));

  beforeAll(async () => {
    t = await startTestApp();
    target = await startTarget();
    env = { JOBQUEUE_SERVER: t.url };
  });
  afterAll(async () => {
    await t?.stop();
    await target?.close();
    rmSync(tmp, { recursive: true, force: true });
  });

  it("submits from flags, waits for the end, and shows the job as a table and as JSON", async () => {
    target.on("/ok", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"answer":42}');
    });
    const sub = await runCli(
      [
        "submit",
        `${target.url}/ok`,
        "-X",
        "POST",
        "-d",
        '{"n":1}',
        "-H",
        "Authorization: Bearer s3cret",
        "-t",
        "cli",
        "-t",
        "first",
        "--wait",
      ],
      { env },
    );
    expect(sub.stderr).toMatch(/succeeded/);
    expect(sub.code).toBe(0);
    const jobId = sub.stdout.trim();
    expect(jobId).toMatch(/^j_[0-9A-Z]{26}$/);
    const received = await target.request("/ok");
    expect(received.headers.authorization).toBe("Bearer s3cret");
    expect(JSON.parse(received.body.toString())).toEqual({ n: 1 });

    const list = await runCli(["list", "--tag", "cli"], { env });
    expect(list.code).toBe(0);
    const [head, row, ...rest] = list.stdout.trimEnd().split("\n");
    expect(head).toMatch(/^JOB\s+STATUS\s+ATTEMPT\s+METHOD\s+URL\s+TAGS\s+CREATED$/);
    expect(row).toMatch(
      new RegExp(
        `^${jobId}\\s+succeeded\\s+1/3\\s+POST\\s+${target.url}/ok\\s+cli,first\\s+\\d{4}-`,
      ),
    );
    expect(rest).toEqual([]);
    expect(list.stdout).not.toContain("\u001b["); // no colours off a terminal

    const json = await runCli(["list", "--tag", "cli", "-o", "json"], { env });
    const jobs = JSON.parse(json.stdout);
    expect(jobs).toHaveLength(1);
    // REST's JSON: snake_case, lowercase statuses, secrets masked.
    expect(jobs[0]).toMatchObject({
      job_id: jobId,
      status: "succeeded",
      tags: ["cli", "first"],
      headers: { Authorization: "***" },
    });

    // Short flags of the command (-s is --status here, not the server).
    const short = await runCli(["list", "-s", "succeeded,failed", "-t", "cli", "-o", "jsonl"], {
      env,
    });
    expect(
      short.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).job_id),
    ).toEqual([jobId]);
    const none = await runCli(["list", "-s", "queued", "-t", "cli", "-o", "json"], { env });
    expect(JSON.parse(none.stdout)).toEqual([]);

    const get = await runCli(["get", jobId, "-o", "json"], { env });
    expect(JSON.parse(get.stdout)).toEqual([jobs[0]]);
    const getTable = await runCli(["get", jobId], { env });
    expect(getTable.stdout).toMatch(/^status\s+succeeded$/m);
    expect(getTable.stdout).toMatch(/^header\s+Authorization: \*\*\*$/m);

    const result = await runCli(["result", jobId, "--body"], { env });
    expect(result.stdout).toBe('{"answer":42}');
    const attempts = await runCli(["attempts", jobId, "-o", "jsonl"], { env });
    const lines = attempts.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(lines).toMatchObject([{ attempt: 1, outcome: "succeeded", response_status: 200 }]);
  });

  it("writes a binary body to a file byte for byte", async () => {
    const bytes = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) % 256));
    target.on("/bin", (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" }).end(bytes);
    });
    const sub = await runCli(["submit", `${target.url}/bin`, "--wait"], { env });
    expect(sub.code).toBe(0);
    const file = join(tmp, "body.bin");
    const res = await runCli(["result", sub.stdout.trim(), "--body", file], { env });
    expect(res.code).toBe(0);
    expect(readFileSync(file).equals(bytes)).toBe(true);
    const shown = await runCli(["result", sub.stdout.trim()], { env });
    expect(shown.stdout).toContain("(binary, 3000 bytes");
  });

  it("exits 1 when a waited-for job fails, and says why", async () => {
    target.on("/boom", (_req, res) => {
      res.writeHead(500).end("no");
    });
    const sub = await runCli(["submit", `${target.url}/boom`, "--max-attempts", "1", "--wait"], {
      env,
    });
    expect(sub.code).toBe(1);
    expect(sub.stderr).toMatch(/failed/);
    const attempts = await runCli(["attempts", sub.stdout.trim()], { env });
    expect(attempts.stdout).toMatch(/^1\s+failed\s+500\s/m);
  });

  it("watch follows a running job and ends when it ends: 0 succeeded, 7 canceled", async () => {
    const release = deferred();
    target.on("/hold", async (_req, res) => {
      await release.promise;
      res.writeHead(200).end("done");
    });
    const jobId = await t.enqueue({ url: `${target.url}/hold` });
    await t.waitForStatus(jobId, "running");
    const watch = startCli(["watch", jobId], { env });
    await watch.waitForOutput(/running/, "the running line");
    release.resolve();
    const end = await watch.exited;
    expect(end.code).toBe(0);
    const lines = end.stdout.trim().split("\n");
    expect(lines[0]).toMatch(new RegExp(`${jobId}\\s+running\\s+attempt 1/3`));
    expect(lines.at(-1)).toMatch(new RegExp(`${jobId}\\s+succeeded\\s+attempt 1/3`));

    target.on("/forever", () => new Promise(() => {}));
    const held = await t.enqueue({ url: `${target.url}/forever` });
    await t.waitForStatus(held, "running");
    const watch2 = startCli(["watch", held, "-o", "jsonl"], { env });
    await watch2.waitForOutput(/"running"/);
    const cancel = await runCli(["cancel", held], { env });
    expect(cancel.code).toBe(0);
    expect(cancel.stdout).toMatch(new RegExp(`^${held}\\s+canceled$`, "m"));
    const end2 = await watch2.exited;
    expect(end2.code).toBe(7);
    expect(JSON.parse(end2.stdout.trim().split("\n").at(-1)!)).toMatchObject({
      job_id: held,
      status: "canceled",
    });

    const again = await runCli(["cancel", held], { env });
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(/^jobqueue: /);
  });

  it("exit codes: usage 2, not found 3, unreachable 5", async () => {
    expect((await runCli(["list", "--status", "nope"], { env })).code).toBe(2);
    expect((await runCli(["list", "--bogus"], { env })).code).toBe(2);
    expect((await runCli(["get", "j_nope"], { env })).code).toBe(2);
    expect((await runCli(["submit"], { env })).code).toBe(2);
    const bad = await runCli(["submit", "ftp://x/"], { env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/url/);
    const missing = await runCli(["get", "j_01ARZ3NDEKTSV4RRFFQ69G5FAV"], { env });
    expect(missing.code).toBe(3);
    const down = await runCli(["list"], { env: { JOBQUEUE_SERVER: "http://127.0.0.1:9" } });
    expect(down.code).toBe(5);
    expect(down.stderr).toContain("cannot reach the server at http://127.0.0.1:9");
    expect((await runCli(["--help"], { env })).code).toBe(0);
  });

  it("submits a 10,000-line NDJSON file in batches with a progress bar on a terminal", async () => {
    const file = join(tmp, "jobs.ndjson");
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString();
    const lines = Array.from({ length: 10_000 }, (_, i) =>
      JSON.stringify({
        url: `${target.url}/bulk/${i}`,
        tags: ["bulk"],
        scheduled_at: tomorrow,
      }),
    );
    writeFileSync(file, `${lines.join("\n")}\n`);
    const run = await runCli(["submit", "--file", file, "--batch-size", "1000"], {
      env,
      tty: true,
    });
    expect(run.code, run.stdout.slice(-2000)).toBe(0);
    // On a terminal: the bar (redrawn in place) reaches the end; stdout and stderr are merged.
    expect(run.stdout).toMatch(/submitting .*100% \| 10000\/10000 jobs/);
    expect(run.stdout).toContain("submitted 10000 jobs");
    const ids = new Set(run.stdout.match(/j_[0-9A-Z]{26}/g));
    expect(ids.size).toBe(10_000);
    const all = await runCli(
      ["list", "--tag", "bulk", "--all", "-o", "jsonl", "--page-size", "1000"],
      { env },
    );
    const listed = all.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).job_id);
    expect(listed).toHaveLength(10_000);
    expect(new Set(listed)).toEqual(ids);
    // Off a terminal: no bar, only the ids and the summary, however many jobs.
    const some = join(tmp, "some.ndjson");
    writeFileSync(some, `${lines.slice(0, 300).join("\n")}\n`);
    const quiet = await runCli(["submit", "-f", some, "--batch-size", "100"], { env });
    expect(quiet.code).toBe(0);
    expect(quiet.stdout.trim().split("\n")).toHaveLength(300);
    expect(quiet.stderr).toBe("submitted 300 jobs\n");
    const small = join(tmp, "two.json");
    writeFileSync(
      small,
      JSON.stringify([{ url: `${target.url}/a` }, { url: `${target.url}/b`, method: "DELETE" }]),
    );
    const plain = await runCli(["submit", "-f", small, "--scheduled-at", "+1h"], { env });
    expect(plain.code).toBe(0);
    expect(plain.stdout.trim().split("\n")).toHaveLength(2);
    expect(plain.stderr).not.toContain("submitting");
  });

  it("stops on a bad line before sending anything, naming the line", async () => {
    const file = join(tmp, "bad.ndjson");
    writeFileSync(
      file,
      `{"url":"${target.url}/x","tags":["badfile"]}\n{"url":"${target.url}/y","priority":"high"}\n`,
    );
    const run = await runCli(["submit", "-f", file], { env });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("line 2");
    expect(run.stderr).toContain("priority");
    const list = await runCli(["list", "--tag", "badfile", "-o", "json"], { env });
    expect(JSON.parse(list.stdout)).toEqual([]);
  });

  it("keygen prints a key and its line; npm run keygen's output is the same", async () => {
    const run = await runCli(["keygen", "alice", "reader"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^ {2}jq_[\w-]+$/m);
    expect(run.stdout).toMatch(/^ {2}alice reader sha256:[0-9a-f]{64}$/m);
    expect((await runCli(["keygen", "alice", "boss"])).code).toBe(2);
  });

  it("nodes lists this server's node", async () => {
    const run = await runCli(["nodes", "-o", "json"], { env });
    expect(JSON.parse(run.stdout)).toMatchObject([
      { node_id: t.config.nodeId, leader: expect.any(Boolean) },
    ]);
    const table = await runCli(["nodes"], { env });
    expect(table.stdout).toMatch(/^NODE\s+LEADER\s+IN FLIGHT/);
  });

  it("serve starts the server as npm start does, dashboard included, and stops on SIGTERM", async () => {
    const dir = mkdtempSync(join(tmpdir(), "jobqueue-serve-"));
    const serve = startCli(["serve"], {
      env: {
        JOBQUEUE_PORT: "0",
        JOBQUEUE_DB_URL: `sqlite:///${join(dir, "jobqueue.db")}`,
        JOBQUEUE_LOG_LEVEL: "info",
      },
    });
    try {
      const line = await serve.waitForOutput(/^\{.*"msg":"jobqueue listening".*\}$/m);
      const { port } = JSON.parse(line) as { port: number };
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
      const ui = await fetch(`http://127.0.0.1:${port}/ui/`);
      // 200 once npm ci (or npm run build:ui) has built the dashboard, 503 saying how before.
      expect([200, 503]).toContain(ui.status);
      serve.child.kill("SIGTERM");
      expect((await serve.exited).code).toBe(0);
    } finally {
      serve.child.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
