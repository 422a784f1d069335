import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { prepareCli, runCli, startCli } from "./run-cli.js";

// The binary builds dist/ on its first run after a change: once, before the tests and their timeouts.
beforeAll(prepareCli, 600_000);

/** Queued jobs due next year (they stay queued): `n` of them carrying `tag`, in batches. */
async function seedQueued(t: TestApp, n: number, tag: string, url: string): Promise<void> {
  const due = new Date(Date.now() + 30 * 86_400_000).toISOString();
  for (let i = 0; i < n; i += 500) {
    const jobs = Array.from({ length: Math.min(500, n - i) }, () => ({
      url,
      tags: [tag],
      scheduled_at: due,
    }));
    const res = await t.rest.post("/jobs:batch", { jobs });
    if (res.status !== 200) throw new Error(`seed: ${res.status} ${JSON.stringify(res.json)}`);
  }
}

const ESC = "\u001b";

const lines = (text: string) =>
  text
    .trim()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l));

/** `retry`, `delete`, the bulk forms and `operations`: the real binary against a real server. */
describe("jobqueue retry, delete and bulk actions", () => {
  let t: TestApp;
  let target: Target;
  let env: Record<string, string>;

  beforeAll(async () => {
    // Small batches: an operation over a few hundred jobs takes many steps, so a bar has a way to go.
    t = await startTestApp({}, { operationBatch: 5 });
    target = await startTarget();
    env = { JOBQUEUE_SERVER: t.url };
  });
  afterAll(async () => {
    await t?.stop();
    await target?.close();
  });

  it("retry runs a failed job again with a new cap on attempts; delete removes a finished one", async () => {
    let calls = 0;
    target.on("/flaky", (_req, res) => {
      calls++;
      res.writeHead(calls === 1 ? 500 : 200).end("ok");
    });
    const sub = await runCli(["submit", `${target.url}/flaky`, "--max-attempts", "1", "--wait"], {
      env,
    });
    expect(sub.code).toBe(1);
    const jobId = sub.stdout.trim();

    // Deleting a job that has not ended is a conflict (exit 6).
    const queued = await t.enqueue({
      url: `${target.url}/later`,
      scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
    });
    const early = await runCli(["delete", queued], { env });
    expect(early.code).toBe(6);
    expect(early.stderr).toMatch(/^jobqueue: /);

    const tooFew = await runCli(["retry", jobId, "--max-attempts", "1"], { env });
    expect(tooFew.code).toBe(2);
    expect(tooFew.stderr).toContain("max_attempts");

    const retried = await runCli(["retry", jobId, "--max-attempts", "4", "-o", "json"], { env });
    expect(retried.code, retried.stderr).toBe(0);
    expect(lines(retried.stdout)).toMatchObject([
      { job_id: jobId, status: "queued", attempt: 1, max_attempts: 4 },
    ]);
    const done = await t.waitForStatus(jobId, "succeeded");
    expect(done.attempt).toBe(2);
    const again = await runCli(["retry", jobId], { env });
    expect(again.code).toBe(6); // a succeeded job is not retried

    const del = await runCli(["delete", jobId], { env });
    expect(del.code).toBe(0);
    expect(del.stdout).toMatch(new RegExp(`^${jobId}\\s+deleted$`, "m"));
    expect((await runCli(["get", jobId], { env })).code).toBe(3);
    expect((await runCli(["delete", jobId], { env })).code).toBe(3);

    // A retry later, table output: the new status and attempts.
    const canceled = await runCli(["cancel", queued], { env });
    expect(canceled.code).toBe(0);
    const later = await runCli(["retry", queued, "--scheduled-at", "+1h"], { env });
    expect(later.code).toBe(0);
    expect(later.stdout).toMatch(new RegExp(`^${queued}\\s+queued\\s+attempt 0/\\d+$`, "m"));
    const job = (await t.rest.get(`/jobs/${queued}`)).json;
    expect(job.status).toBe("queued");
    expect(Date.parse(job.next_run_at)).toBeGreaterThan(Date.now() + 3_000_000);
  });

  it("bulk by filter: a dry run counts, no --yes without a terminal is exit 9 and changes nothing, --yes runs the operation to its end", async () => {
    const tag = "bulk-a";
    await seedQueued(t, 120, tag, `${target.url}/never`);

    const dry = await runCli(["cancel", "--tag", tag, "--dry-run"], { env });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toBe(`cancel would act on 120 jobs (tag ${tag})\n`);
    const dryJson = await runCli(
      ["cancel", "--tag", tag, "--status", "queued", "--dry-run", "-o", "json"],
      {
        env,
      },
    );
    expect(lines(dryJson.stdout)).toEqual([{ count: 120, count_capped: false, operation: null }]);
    // Nothing to retry yet: they are queued.
    const none = await runCli(["retry", "--tag", tag, "--dry-run"], { env });
    expect(none.stdout).toContain("retry would act on 0 jobs");

    const refused = await runCli(["cancel", "--tag", tag], { env });
    expect(refused.code).toBe(9);
    expect(refused.stderr).toContain("120 jobs match");
    expect(refused.stderr).toContain("--yes");
    expect((await t.rest.get(`/jobs:counts`)).json.total.canceled).toBe(0);

    const run = await runCli(["cancel", "--tag", tag, "--yes", "-o", "json"], { env });
    expect(run.code, run.stderr).toBe(0);
    const [op] = lines(run.stdout);
    expect(op).toMatchObject({
      kind: "cancel",
      state: "succeeded",
      estimate: 120,
      affected: 120,
    });
    expect(op.operation_id).toMatch(/^op_[0-9A-Z]{26}$/);
    // No bar off a terminal; the operation is named on stderr.
    expect(run.stderr).toContain(`${op.operation_id}: canceling 120 jobs`);
    expect(run.stderr).not.toMatch(/\d+%/);

    const get = await runCli(["operations", "get", op.operation_id], { env });
    expect(get.stdout).toBe(`${op.operation_id} succeeded: 120 jobs canceled of 120 examined\n`);
    const list = await runCli(["operations", "list", "-o", "json"], { env });
    expect(JSON.parse(list.stdout).map((o: { operation_id: string }) => o.operation_id)).toContain(
      op.operation_id,
    );
    const listTable = await runCli(["operations", "list"], { env });
    expect(listTable.stdout).toMatch(
      new RegExp(`^${op.operation_id}\\s+cancel\\s+succeeded\\s+120\\s+120\\s+120\\s`, "m"),
    );
    expect((await runCli(["operations", "cancel", op.operation_id], { env })).code).toBe(6);
    expect((await runCli(["operations", "get", `op_${"0".repeat(26)}`], { env })).code).toBe(3);

    // Delete them: table output names the operation and the count.
    const del = await runCli(["delete", "--tag", tag, "--status", "canceled", "--yes"], { env });
    expect(del.code, del.stderr).toBe(0);
    expect(del.stdout).toMatch(/^op_[0-9A-Z]{26} succeeded: 120 jobs deleted of 120 examined$/m);
    const left = await runCli(["list", "--tag", tag, "-o", "json"], { env });
    expect(JSON.parse(left.stdout)).toEqual([]);

    // Usage: no filter and no id, ids with a filter, --dry-run with ids.
    expect((await runCli(["cancel"], { env })).code).toBe(2);
    expect((await runCli(["delete", "j_x", "--tag", tag], { env })).code).toBe(2);
    expect((await runCli(["retry", "--status", "sleeping"], { env })).code).toBe(2);
    expect((await runCli(["cancel", "--finished-before", "yesterday"], { env })).code).toBe(2);
  });

  it("on a terminal: the count in a question, y, then a progress bar to the end", async () => {
    const tag = "bulk-tty";
    await seedQueued(t, 300, tag, `${target.url}/never`);
    const run = await runCli(["cancel", "--tag", tag], { env, tty: true, stdin: "y\n" });
    expect(run.code, run.stdout.slice(-2000)).toBe(0);
    expect(run.stdout).toContain(`Cancel 300 jobs (tag ${tag})? [y/N]`);
    expect(run.stdout).toMatch(/canceling .* 100% \| 300\/300 jobs \| 300 canceled/);
    // Colours on a terminal.
    expect(run.stdout).toMatch(
      new RegExp(`op_[0-9A-Z]{26} ${ESC}\\[32msucceeded${ESC}\\[39m: 300 jobs canceled`),
    );
    expect(
      (await t.rest.post("/jobs:cancel", { filter: { tag: [tag] }, dry_run: true })).json.count,
    ).toBe(0);

    // Any other answer: nothing done, exit 9.
    const no = await runCli(["retry", "--tag", tag], { env, tty: true, stdin: "n\n" });
    expect(no.code).toBe(9);
    expect(no.stdout).toContain("nothing done");
    expect(
      (await t.rest.post("/jobs:retry", { filter: { tag: [tag] }, dry_run: true })).json.count,
    ).toBe(300);
  });
});

describe("jobqueue bulk actions interrupted with Ctrl-C", () => {
  let t: TestApp;
  let env: Record<string, string>;

  beforeAll(async () => {
    // Another node leads: this one runs no operation, so one stays running until it is canceled.
    t = await startTestApp({}, {}, { follower: true });
    env = { JOBQUEUE_SERVER: t.url };
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("without a terminal, Ctrl-C cancels the operation: exit 10", async () => {
    const tag = "int-plain";
    await seedQueued(t, 50, tag, "http://127.0.0.1:9/");
    const run = startCli(["cancel", "--tag", tag, "--yes"], { env });
    const line = await run.waitForOutput(/op_[0-9A-Z]{26}: canceling 50 jobs/);
    const id = line.slice(0, 29);
    run.child.kill("SIGINT");
    const end = await run.exited;
    expect(end.code, end.stderr).toBe(10);
    expect(end.stdout).toBe(`${id} canceled: 0 jobs canceled of 0 examined\n`);
    const got = await runCli(["operations", "get", id, "-o", "json"], { env });
    expect(lines(got.stdout)).toMatchObject([{ operation_id: id, state: "canceled" }]);
  });

  it("on a terminal, Ctrl-C asks; y cancels it (exit 10)", async () => {
    const tag = "int-tty";
    await seedQueued(t, 40, tag, "http://127.0.0.1:9/");
    const run = startCli(["cancel", "--tag", tag, "--yes"], { env, tty: true, keepStdin: true });
    await run.waitForOutput(/canceling .* 0\/40 jobs/, "the progress bar");
    run.child.stdin!.write("\u0003");
    await run.waitForOutput(/Cancel op_[0-9A-Z]{26}\? .*\[y\/N\]/, "the question");
    run.child.stdin!.end("y\r");
    const end = await run.exited;
    expect(end.code, end.stdout.slice(-2000)).toBe(10);
    expect(end.stdout).toMatch(
      new RegExp(`op_[0-9A-Z]{26} ${ESC}\\[33mcanceled${ESC}\\[39m: 0 jobs canceled`),
    );
    const ops = JSON.parse((await runCli(["operations", "list", "-o", "json"], { env })).stdout);
    expect(ops[0]).toMatchObject({ state: "canceled" });
  });
});
