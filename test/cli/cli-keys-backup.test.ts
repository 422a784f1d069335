import { cpSync, existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { startTarget } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";
import { prepareCli, runCli } from "./run-cli.js";

// The binary builds dist/ on its first run after a change: once, before the tests and their timeouts.
beforeAll(prepareCli, 600_000);

/** The `jobqueue` command with API keys, and `backup` (the real binary, against real servers). */
describe("jobqueue CLI with API keys", () => {
  let t: TestApp;
  const submitter = generateApiKey("alice", "submitter");
  const reader = generateApiKey("alice", "reader");

  beforeAll(async () => {
    t = await startTestApp({ JOBQUEUE_API_KEYS: `${submitter.line},${reader.line}` });
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("exit 4 without a key or with a reader's for an action; works with the right key", async () => {
    const env = { JOBQUEUE_SERVER: t.url };
    const none = await runCli(["list"], { env });
    expect(none.code).toBe(4);
    expect(none.stderr).toContain("JOBQUEUE_API_KEY");
    const sub = await runCli(["submit", "https://example.com/", "--scheduled-at", "+1h"], {
      env: { ...env, JOBQUEUE_API_KEY: submitter.key },
    });
    expect(sub.code).toBe(0);
    const jobId = sub.stdout.trim();
    const asReader = { ...env, JOBQUEUE_API_KEY: reader.key };
    const read = await runCli(["get", jobId, "-o", "json"], { env: asReader });
    expect(read.code).toBe(0);
    expect((await runCli(["cancel", jobId], { env: asReader })).code).toBe(4);
    const flag = await runCli(["--api-key", submitter.key, "cancel", jobId], { env });
    expect(flag.code).toBe(0);

    // The operator commands by role: a reader reads counts and queues, changes nothing.
    expect((await runCli(["stats", "-o", "json"], { env: asReader })).code).toBe(0);
    expect((await runCli(["queues", "list"], { env: asReader })).code).toBe(0);
    expect((await runCli(["queues", "pause", "default"], { env: asReader })).code).toBe(4);
    expect((await runCli(["retry", jobId], { env: asReader })).code).toBe(4);
    expect(
      (await runCli(["delete", "--status", "canceled", "--yes"], { env: asReader })).code,
    ).toBe(4);
    // A submitter acts on its own jobs; queues are for admins.
    const asSubmitter = { ...env, JOBQUEUE_API_KEY: submitter.key };
    expect((await runCli(["queues", "create", "mine"], { env: asSubmitter })).code).toBe(4);
    const del = await runCli(["delete", "--status", "canceled", "--yes", "-o", "json"], {
      env: asSubmitter,
    });
    expect(del.code, del.stderr).toBe(0);
    expect(JSON.parse(del.stdout)).toMatchObject({ state: "succeeded", affected: 1 });
  });
});

describe("jobqueue backup", () => {
  it("copies the store and its key while the server runs; a server started on the copy reads the jobs and opens their secrets", async () => {
    const target = await startTarget();
    const t = await startTestApp();
    const restoredDir = mkdtempSync(join(tmpdir(), "jobqueue-restored-"));
    const backupDir = join(mkdtempSync(join(tmpdir(), "jobqueue-backup-")), "b");
    let restored: TestApp | null = null;
    try {
      const done = await t.enqueue({ url: `${target.url}/done`, tags: ["before"] });
      await t.waitForStatus(done, "succeeded");
      // Due a little after the backup: it runs on the restored server, which must open its secret.
      const later = await t.enqueue({
        url: `${target.url}/later`,
        headers: { Authorization: "Bearer kept-secret" },
        scheduled_at: new Date(Date.now() + 4_000).toISOString(),
      });
      const run = await runCli(["backup", backupDir, "--db", t.dbPath]);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toMatch(/backed up .* to .*jobqueue\.db/);
      expect(statSync(join(backupDir, "secret.key")).mode & 0o077).toBe(0);
      expect((await runCli(["backup", backupDir, "--db", t.dbPath])).code).toBe(6);
      await t.stop();

      // The documented restore: the two files into the data folder, then start.
      cpSync(join(backupDir, "jobqueue.db"), join(restoredDir, "jobqueue.db"));
      cpSync(join(backupDir, "secret.key"), join(restoredDir, "secret.key"));
      expect(existsSync(join(restoredDir, "jobqueue.db-wal"))).toBe(false);
      restored = await startTestApp({
        JOBQUEUE_DB_URL: `sqlite:///${join(restoredDir, "jobqueue.db")}`,
      });
      const env = { JOBQUEUE_SERVER: restored.url };
      const get = await runCli(["get", done, "-o", "json"], { env });
      expect(JSON.parse(get.stdout)[0]).toMatchObject({
        job_id: done,
        status: "succeeded",
        tags: ["before"],
      });
      const req = await target.request("/later");
      expect(req.headers.authorization).toBe("Bearer kept-secret");
      await waitFor(
        async () =>
          (await runCli(["get", later, "-o", "json"], { env })).stdout.includes('"succeeded"'),
        {
          what: "the restored job to succeed",
        },
      );
    } finally {
      await restored?.stop();
      await target.close();
      rmSync(restoredDir, { recursive: true, force: true });
      rmSync(join(backupDir, ".."), { recursive: true, force: true });
    }
  });

  it("refuses a PostgreSQL store and says what to use", async () => {
    const run = await runCli([
      "backup",
      join(tmpdir(), "nope"),
      "--db",
      "postgres://x@127.0.0.1/db",
    ]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("pg_dump");
  });
});
