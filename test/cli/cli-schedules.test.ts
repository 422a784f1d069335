import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { runCli } from "./run-cli.js";

/** `jobqueue schedules …`: the real binary, in its own process, against a real server. */
describe("jobqueue schedules", () => {
  let t: TestApp;
  let target: Target;
  let env: Record<string, string>;

  beforeAll(async () => {
    t = await startTestApp();
    target = await startTarget();
    env = { JOBQUEUE_SERVER: t.url };
  });
  afterAll(async () => {
    await t?.stop();
    await target?.close();
  });

  it("creates, lists, shows, updates, pauses, resumes, triggers and deletes a schedule", async () => {
    const created = await runCli(
      [
        "schedules",
        "create",
        `${target.url}/nightly`,
        "-X",
        "POST",
        "-d",
        '{"report":"daily"}',
        "-H",
        "Authorization: Bearer s3cret",
        "-t",
        "nightly",
        "--cron",
        "0 9 * * *",
        "--tz",
        "Europe/Berlin",
        "--overlap",
        "buffer_one",
        "--jitter",
        "30",
        "-o",
        "json",
      ],
      { env },
    );
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    const schedule = JSON.parse(created.stdout);
    expect(schedule).toMatchObject({
      cron: "0 9 * * *",
      time_zone: "Europe/Berlin",
      overlap_policy: "buffer_one",
      jitter_seconds: 30,
      template: { url: `${target.url}/nightly`, method: "POST", tags: ["nightly"] },
    });
    // The secret header is kept, and shown masked.
    expect(schedule.template.headers.Authorization).toBe("***");
    const id = schedule.schedule_id as string;

    const list = await runCli(["schedules", "list"], { env });
    expect(list.code).toBe(0);
    const [head, row] = list.stdout.trimEnd().split("\n");
    expect(head).toMatch(/^SCHEDULE\s+CRON\s+TIME ZONE\s+NEXT RUN\s+LAST RUN\s+URL$/);
    expect(row).toContain(id);
    expect(row).toContain("Europe/Berlin");

    const updated = await runCli(["schedules", "update", id, "--cron", "@every 5m", "-o", "json"], {
      env,
    });
    expect(updated.code).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({
      cron: "@every 5m",
      time_zone: "Europe/Berlin",
    });

    const paused = await runCli(["schedules", "pause", id, "-o", "json"], { env });
    expect(JSON.parse(paused.stdout).paused).toBe(true);
    const listedPaused = await runCli(["schedules", "list"], { env });
    expect(listedPaused.stdout).toMatch(/paused/);

    // A trigger runs now, also while paused, with the template's secret header.
    const triggered = await runCli(["schedules", "trigger", id], { env });
    expect(triggered.code).toBe(0);
    const jobId = triggered.stdout.trim();
    expect(jobId).toMatch(/^j_[0-9A-Z]{26}$/);
    const received = await target.request("/nightly");
    expect(received.headers.authorization).toBe("Bearer s3cret");
    expect(JSON.parse(received.body.toString())).toEqual({ report: "daily" });

    const resumed = await runCli(["schedules", "resume", id, "-o", "json"], { env });
    expect(JSON.parse(resumed.stdout).paused).toBe(false);
    const got = await runCli(["schedules", "get", id], { env });
    expect(JSON.parse(got.stdout).schedule_id).toBe(id);

    const deleted = await runCli(["schedules", "delete", id], { env });
    expect(deleted.code).toBe(0);
    const gone = await runCli(["schedules", "get", id], { env });
    expect(gone.code).toBe(3);
    expect(gone.stderr).toContain("not found");
  });

  it("refuses a bad cron expression naming the field, exit 2", async () => {
    const bad = await runCli(["schedules", "create", `${target.url}/x`, "--cron", "61 * * * *"], {
      env,
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("cron");
  });
});
