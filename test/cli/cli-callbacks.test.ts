import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateSigningSecret } from "../../src/job/signing.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";
import { verifyWebhook } from "../helpers/webhooks.js";
import { prepareCli, runCli } from "./run-cli.js";

// The binary builds dist/ on its first run after a change: once, before the tests and their timeouts.
beforeAll(prepareCli, 600_000);

const SECRET = generateSigningSecret(randomBytes);
const OTHER = generateSigningSecret(randomBytes);

/** `submit`, `get`, `list` and `schedules` with callbacks, signing and schedules: the real binary. */
describe("jobqueue CLI: callbacks, signed calls, schedules' jobs", () => {
  let t: TestApp;
  let target: Target;
  let env: Record<string, string>;
  const tmp = mkdtempSync(join(tmpdir(), "jobqueue-cli-hooks-"));

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

  it("submits a signed call with a callback; get shows the delivery and never the secret", async () => {
    target.on("/work", (_req, res) => {
      res.writeHead(201, { "content-type": "application/json" }).end('{"order":42}');
    });
    const sub = await runCli(
      [
        "submit",
        `${target.url}/work`,
        "-X",
        "POST",
        "-d",
        '{"hello":"cli"}',
        "--callback-url",
        `${target.url}/hook`,
        "--signing-secret",
        SECRET,
        "--wait",
      ],
      { env },
    );
    expect(sub.code, sub.stderr).toBe(0);
    const id = sub.stdout.trim();
    expect(id).toMatch(/^j_[0-9A-Z]{26}$/);

    // The call itself is signed with the job's secret, and only with it.
    const call = await target.request("/work");
    expect(call.headers["webhook-id"]).toBe(id);
    expect(verifyWebhook(call, SECRET)).toEqual({ hello: "cli" });
    expect(() => verifyWebhook(call, OTHER)).toThrow();

    // Then the callback: the result's JSON, signed too.
    const hook = await target.request("/hook");
    expect(hook.method).toBe("POST");
    expect(verifyWebhook(hook, SECRET)).toMatchObject({
      job_id: id,
      status: "succeeded",
      response_body: { order: 42 },
    });
    const deliveryId = String(hook.headers["webhook-id"]);
    expect(deliveryId).toMatch(/^j_[0-9A-Z]{26}$/);

    const got = await runCli(["get", id], { env });
    expect(got.code, got.stderr).toBe(0);
    expect(got.stdout).toMatch(new RegExp(`^callback url\\s+${target.url}/hook$`, "m"));
    expect(got.stdout).toMatch(new RegExp(`^callback job\\s+${deliveryId}$`, "m"));
    expect(got.stdout).toMatch(/^signed\s+yes \(the job's own secret\)$/m);
    expect(got.stdout).not.toMatch(/^schedule/m);

    const delivery = await runCli(["get", deliveryId], { env });
    expect(delivery.code, delivery.stderr).toBe(0);
    expect(delivery.stdout).toMatch(new RegExp(`^callback of\\s+${id}$`, "m"));

    // No read shows the secret: the table, JSON (masked as ***), nor the delivery.
    const json = await runCli(["get", id, "-o", "json"], { env });
    const [job] = JSON.parse(json.stdout); // `get -o json` writes an array of one
    expect(job).toMatchObject({
      callback_url: `${target.url}/hook`,
      callback_job_id: deliveryId,
      sign: true,
      signing_secret: "***",
    });
    const key = SECRET.slice("whsec_".length);
    for (const out of [got.stdout, json.stdout, delivery.stdout, sub.stdout, sub.stderr]) {
      expect(out).not.toContain(key);
    }
  });

  it("takes callback_url and signing_secret from a jobs file, the flags filling in", async () => {
    const file = join(tmp, "jobs.ndjson");
    writeFileSync(
      file,
      [
        JSON.stringify({ url: `${target.url}/file-1`, signing_secret: OTHER }),
        JSON.stringify({ url: `${target.url}/file-2` }),
      ].join("\n"),
    );
    const sub = await runCli(
      [
        "submit",
        "--file",
        file,
        "--callback-url",
        `${target.url}/file-hook`,
        "--signing-secret",
        SECRET,
      ],
      { env },
    );
    expect(sub.code, sub.stderr).toBe(0);
    const [first, second] = sub.stdout.trim().split("\n");
    // The line's own secret wins over the flag's; the other line takes the flag's.
    verifyWebhook(await target.request("/file-1"), OTHER); // throws unless signed so
    verifyWebhook(await target.request("/file-2"), SECRET); // throws unless signed so
    const hooks = await Promise.all([1, 2].map((n) => target.request("/file-hook", n)));
    const delivered = hooks.map((h) => {
      const body = JSON.parse(h.body.toString("utf8")) as { job_id: string };
      verifyWebhook(h, body.job_id === first ? OTHER : SECRET);
      return body.job_id;
    });
    expect(delivered.sort()).toEqual([first, second].sort());
  });

  it("refuses a bad signing secret naming the field, without echoing it (exit 2)", async () => {
    const bad = await runCli(
      ["submit", `${target.url}/never`, "--signing-secret", "whsec_tooshort"],
      { env },
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/signing_secret/);
    expect(bad.stderr).not.toContain("tooshort");

    // Nor a wrongly typed one from a file (checked before anything is sent).
    const file = join(tmp, "bad-secret.json");
    writeFileSync(file, JSON.stringify({ url: `${target.url}/never`, signing_secret: [SECRET] }));
    const typed = await runCli(["submit", "--file", file], { env });
    expect(typed.code).toBe(2);
    expect(typed.stderr).toMatch(/signing_secret: must be a string/);
    expect(typed.stderr).not.toContain(SECRET.slice("whsec_".length, 20));
  });

  it("refuses --sign without any secret to sign with, naming sign (exit 2)", async () => {
    const res = await runCli(["submit", `${target.url}/never`, "--sign"], { env });
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/sign: there is no secret to sign with/);
    expect(target.received("/never")).toEqual([]);
  });

  it("get shows a ticked job's schedule and tick", async () => {
    const created = await runCli(
      ["schedules", "create", `${target.url}/every-second`, "--cron", "* * * * * *", "-o", "ids"],
      { env },
    );
    expect(created.code, created.stderr).toBe(0);
    const scheduleId = created.stdout.trim();
    const job = await waitFor(
      async () => {
        const res = await runCli(["list", "--schedule", scheduleId, "-o", "json"], { env });
        const jobs = JSON.parse(res.stdout) as { job_id: string; schedule_tick: string | null }[];
        return jobs.find((j) => j.schedule_tick !== null);
      },
      { what: "a tick's job" },
    );
    expect((await runCli(["schedules", "delete", scheduleId], { env })).code).toBe(0);
    const got = await runCli(["get", job.job_id], { env });
    expect(got.stdout).toMatch(new RegExp(`^schedule\\s+${scheduleId}$`, "m"));
    expect(got.stdout).toMatch(/^schedule tick\s+\d{4}-\d{2}-\d{2}T/m);
  });

  it("signs a schedule's runs, and list --schedule lists only that schedule's jobs", async () => {
    const create = async (path: string, extra: string[]) => {
      const res = await runCli(
        [
          "schedules",
          "create",
          `${target.url}${path}`,
          "--cron",
          "0 9 * * *",
          "-t",
          "cli-sched",
          ...extra,
          "-o",
          "json",
        ],
        { env },
      );
      expect(res.code, res.stderr).toBe(0);
      return JSON.parse(res.stdout) as { schedule_id: string; template: Record<string, unknown> };
    };
    const signed = await create("/sched", [
      "--signing-secret",
      SECRET,
      "--callback-url",
      `${target.url}/sched-hook`,
    ]);
    expect(signed.template).toMatchObject({
      callback_url: `${target.url}/sched-hook`,
      signing_secret: "***",
    });
    const other = await create("/sched-other", []);

    const trigger = async (id: string) => {
      const res = await runCli(["schedules", "trigger", id], { env });
      expect(res.code, res.stderr).toBe(0);
      return res.stdout.trim();
    };
    const jobId = await trigger(signed.schedule_id);
    const otherJob = await trigger(other.schedule_id);

    verifyWebhook(await target.request("/sched"), SECRET); // throws unless signed so
    verifyWebhook(await target.request("/sched-hook"), SECRET); // throws unless signed so
    await target.request("/sched-other");

    const list = await runCli(["list", "--schedule", signed.schedule_id, "-o", "json"], { env });
    expect(list.code, list.stderr).toBe(0);
    const jobs = JSON.parse(list.stdout) as { job_id: string; schedule_id: string }[];
    expect(jobs.map((j) => j.job_id)).toEqual([jobId]);
    expect(jobs[0]!.schedule_id).toBe(signed.schedule_id);
    const table = await runCli(["list", "--schedule", other.schedule_id], { env });
    expect(table.stdout).toContain(otherJob);
    expect(table.stdout).not.toContain(jobId);

    // The job's facts name its schedule (a trigger has no tick).
    const got = await waitFor(
      async () => {
        const res = await runCli(["get", jobId], { env });
        return /^callback job/m.test(res.stdout) ? res : undefined;
      },
      { what: "the triggered job's callback" },
    );
    expect(got.stdout).toMatch(new RegExp(`^schedule\\s+${signed.schedule_id}$`, "m"));
    expect(got.stdout).not.toMatch(/^schedule tick/m);
    expect(got.stdout).not.toContain(SECRET.slice("whsec_".length));
  });
});
