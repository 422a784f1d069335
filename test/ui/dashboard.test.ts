import { mkdirSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { bearer } from "../helpers/clients.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { launchBrowser } from "./browser.js";

const ROOT = join(import.meta.dirname, "../..");
/** Every page's screenshot, kept as a CI artifact (never committed). */
const SHOTS = process.env.UI_SCREENSHOTS_DIR ?? join(ROOT, ".tmp/ui-screenshots");
/** With UPDATE_DOCS_SCREENSHOTS=1, the README's screenshots in docs/ are written too. */
const DOCS = process.env.UPDATE_DOCS_SCREENSHOTS === "1" ? join(ROOT, "docs") : null;

const admin = generateApiKey("alice", "admin");
const submitter = generateApiKey("alice", "submitter");
const reader = generateApiKey("alice", "reader");

/** The dashboard in chromium against a real server with API keys, a real target behind it. */
describe("dashboard", () => {
  let t: TestApp;
  let target: Target;
  let browser: Browser;
  let context: BrowserContext;
  /** Console errors (a CSP violation among them) seen by any page: none are expected (the
   * browser logs each refused call, 400 to 404, which the tests cause on purpose). */
  const consoleErrors: string[] = [];

  async function newPage(viewport = { width: 1280, height: 900 }): Promise<Page> {
    const page = await context.newPage();
    await page.setViewportSize(viewport);
    page.on("console", (m) => {
      if (m.type() === "error" && !/status of 40[0134]/.test(m.text()))
        consoleErrors.push(m.text());
    });
    page.on("pageerror", (e) => consoleErrors.push(e.message));
    return page;
  }

  async function signIn(page: Page, key: string) {
    await page.goto(`${t.url}/ui/`);
    await page.fill("input[name=apiKey]", key);
    await page.click("button[type=submit]");
    await page.waitForSelector("[data-access]");
  }

  async function shot(page: Page, name: string, docs = false) {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    if (docs && DOCS) {
      // The README's: the top of the page, up to 1,500 px (a job's attempts included).
      const { width } = page.viewportSize()!;
      const height = Math.min(1500, await page.evaluate("document.documentElement.scrollHeight"));
      await page.screenshot({
        path: join(DOCS, `dashboard-${name}.png`),
        fullPage: true,
        clip: { x: 0, y: 0, width, height: height as number },
      });
    }
  }

  const enqueue = async (job: Record<string, unknown>) => {
    const res = await fetch(`${t.url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${submitter.key}` },
      body: JSON.stringify(job),
    });
    const json = (await res.json()) as { job_id: string };
    if (res.status !== 200) throw new Error(JSON.stringify(json));
    return json.job_id;
  };
  const statusOf = async (jobId: string) => {
    const res = await fetch(`${t.url}/jobs/${jobId}`, {
      headers: { authorization: `Bearer ${admin.key}` },
    });
    return ((await res.json()) as { status: string }).status;
  };
  const waitStatus = async (jobId: string, status: string) => {
    for (;;) {
      if ((await statusOf(jobId)) === status) return;
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  let failedJob: string;
  const trickling: ServerResponse[] = [];
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    if (DOCS) mkdirSync(DOCS, { recursive: true });
    target = await startTarget();
    target.on("/ok", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end('{"order":17,"paid":true}');
    });
    target.on("/flaky", (_req, res) => {
      res.writeHead(503, { "content-type": "text/plain" }).end("try later");
    });
    target.on("/hold", () => new Promise(() => {}));
    // Answers at once, then sends its body when a test writes it.
    target.on("/trickle", (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      res.write("first part;");
      trickling.push(res);
      return new Promise(() => {});
    });
    t = await startTestApp({
      JOBQUEUE_API_KEYS: [admin.line, submitter.line, reader.line].join(","),
      JOBQUEUE_AUTH_FAILURES_PER_MINUTE: "0",
    });
    // A small world: succeeded, failed after two attempts, queued for later, 30 more for paging.
    const ok = await enqueue({
      url: `${target.url}/ok`,
      method: "POST",
      body: { order: 17 },
      tags: ["alpha", "orders"],
    });
    failedJob = await enqueue({
      url: `${target.url}/flaky`,
      headers: { Authorization: "Bearer very-secret-token", "X-Trace": "t-1" },
      max_attempts: 2,
      backoff_seconds: 0,
      tags: ["beta"],
    });
    for (let i = 0; i < 30; i++) {
      await enqueue({
        url: `${target.url}/later/${i}`,
        scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
        tags: ["paging"],
      });
    }
    await waitStatus(ok, "succeeded");
    await waitStatus(failedJob, "failed");
    browser = await launchBrowser();
    context = await browser.newContext();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.stop();
    await target?.close();
  });

  it("asks for a key, refuses a wrong one, and signs in with a good one", async () => {
    const page = await newPage();
    await page.goto(`${t.url}/ui/jobs`);
    await page.waitForSelector("input[name=apiKey]");
    expect(await page.locator("nav .nav-pages").count()).toBe(0);
    await shot(page, "sign-in", true);
    await page.fill("input[name=apiKey]", "jq_not-a-key");
    await page.click("button[type=submit]");
    await page.getByText("The server refused this key.").waitFor();
    // The key never goes into the URL.
    expect(page.url()).not.toContain("jq_");
    await page.fill("input[name=apiKey]", submitter.key);
    await page.click("button[type=submit]");
    await page.locator("[data-access=submitter]").waitFor();
    expect(page.url()).toBe(`${t.url}/ui/jobs`);
    expect(page.url()).not.toContain(submitter.key);
    // (Expressions as strings: this file is type-checked without the DOM's types.)
    const stored = await page.evaluate(`({
      session: sessionStorage.getItem("jobqueue.apiKey"),
      local: Object.keys(localStorage).filter((k) => localStorage.getItem(k)?.includes("jq_")),
      cookie: document.cookie,
    })`);
    expect(stored).toEqual({ session: submitter.key, local: [], cookie: "" });
    // Signing out forgets it.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForSelector("input[name=apiKey]");
    expect(await page.evaluate(`sessionStorage.getItem("jobqueue.apiKey")`)).toBeNull();
    await page.close();
  });

  it("shows the overview: counts by status and queue, throughput, success rate, the node", async () => {
    const page = await newPage();
    await signIn(page, admin.key);
    await page.locator("[data-count=failed]").filter({ hasText: "1" }).waitFor();
    expect(await page.locator("[data-count=succeeded]").textContent()).toBe("1");
    expect(await page.locator("[data-count=queued]").textContent()).toBe("30");
    // By queue: every job went to the default queue.
    const row = page.locator("table.counts tr[data-queue=default]");
    expect((await row.locator("td").allInnerTexts()).slice(0, 5)).toEqual([
      "30",
      "0",
      "1",
      "1",
      "0",
    ]);
    // One succeeded and one failed in the window: 50 %, with a bar for each.
    expect(await page.locator("[data-success-rate]").textContent()).toBe("50.0 %");
    expect(await page.locator("[data-chart=throughput] rect.bar-succeeded").count()).toBe(1);
    expect(await page.locator("[data-chart=throughput] rect.bar-failed").count()).toBe(1);
    // Latency of the two calls that ended; no destination has the 3 calls to be ranked yet.
    expect(await page.locator("tr[data-latency-queue=default] td").first().textContent()).toBe("2");
    expect(await page.locator("table.slowest").textContent()).toContain("No destination");
    await page.locator("#latest-failed").getByText(failedJob).waitFor();
    await page.locator("table.nodes").getByText(t.config.nodeId).waitFor();
    await page.locator(".live-note[data-live=on]").waitFor();
    await shot(page, "overview", true);
    await page.goto(`${t.url}/ui/nodes`);
    await page.locator("table.nodes").getByText(t.config.nodeId).waitFor();
    await shot(page, "nodes", true);
    await page.goto(`${t.url}/ui/`);
    // Keyboard: from the top, the skip link, then the navigation; Enter follows a link.
    await page.reload();
    await page.locator("[data-count=failed]").waitFor();
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement?.textContent")).toBe("Skip to content");
    await page.locator("nav a", { hasText: "Jobs" }).focus();
    await page.keyboard.press("Enter");
    await page.waitForURL(`${t.url}/ui/jobs`);
    // The new page's content has the focus, as after a page load. The URL changes at the click;
    // the focus moves once the new page has rendered, so the test waits for it (or times out).
    await page.waitForFunction('document.activeElement?.id === "main"');
    expect(await page.evaluate("document.activeElement?.id")).toBe("main");
    await page.close();
  });

  it("filters the list by status and tag, and pages with the cursor", async () => {
    const page = await newPage();
    await signIn(page, admin.key);
    await page.goto(`${t.url}/ui/jobs`);
    await page.locator("tr[data-job-id]").first().waitFor();
    await page.check("input[name=status][value=failed]");
    await page.click("text=Apply filters");
    await page.waitForURL(/status=failed/);
    await page.locator(`tr[data-job-id="${failedJob}"]`).waitFor();
    expect(await page.locator("tr[data-job-id]").count()).toBe(1);
    await shot(page, "jobs-filtered");

    // Every filter of the API is in the form: the URL text, the method, the host.
    await page.goto(`${t.url}/ui/jobs`);
    await page.locator("tr[data-job-id]").first().waitFor();
    await page.fill("input[name=url_contains]", "/flaky");
    await page.selectOption("select[name=method]", "GET");
    await page.fill("input[name=host]", "127.0.0.1");
    await page.click("text=Apply filters");
    await page.waitForURL(/url_contains=%2Fflaky/);
    expect(page.url()).toMatch(/method=GET/);
    await expect.poll(() => page.locator("tr[data-job-id]").count()).toBe(1);
    await page.locator(`tr[data-job-id="${failedJob}"]`).waitFor();
    await page.goto(`${t.url}/ui/jobs?error_code=http_status`);
    await expect.poll(() => page.locator("tr[data-job-id]").count()).toBe(1);

    await page.goto(`${t.url}/ui/jobs?tag=alpha`);
    await page.locator("tr[data-job-id] .tag", { hasText: "alpha" }).first().waitFor();
    expect(await page.locator("tr[data-job-id]").count()).toBe(1);

    await page.goto(`${t.url}/ui/jobs?tag=paging&page_size=25`);
    await page.locator("tr[data-job-id]").nth(24).waitFor();
    const first = await page
      .locator("tr[data-job-id]")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")));
    expect(first).toHaveLength(25);
    await page.click("text=Older →");
    await page.getByText("Page 2").waitFor();
    // (Not page.waitForFunction: its polling evaluates strings in the page, which the CSP forbids.)
    await expect.poll(() => page.locator("tr[data-job-id]").count()).toBe(5);
    const second = await page
      .locator("tr[data-job-id]")
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-job-id")));
    expect(second.filter((id) => first.includes(id))).toEqual([]);
    expect(await page.locator("button", { hasText: "Older →" }).isDisabled()).toBe(true);
    await page.click("text=← Newer");
    await page.getByText("Page 1").waitFor();

    await page.goto(`${t.url}/ui/jobs`);
    await page.locator("tr[data-job-id]").first().waitFor();
    await shot(page, "jobs");
    await page.close();
  });

  it("opens a job: the request with secrets masked, the timeline, every attempt and the result", async () => {
    const page = await newPage();
    await signIn(page, admin.key);
    await page.goto(`${t.url}/ui/jobs/${failedJob}`);
    await page.locator("tr[data-attempt='2']").waitFor();
    expect(await page.locator(".job-title .badge").textContent()).toBe("failed");
    const attempts = (await page.locator("table.attempts tbody tr").allInnerTexts()).map((row) =>
      row.split("\t").map((cell) => cell.trim()),
    );
    expect(attempts).toHaveLength(2);
    for (const [i, row] of attempts.entries()) {
      expect(row[0]).toBe(String(i + 1));
      expect(row[1]).toMatch(/^failed/);
      expect(row[2]).toBe("503");
      expect(row[3]).toBe(t.config.nodeId);
    }
    const request = await page.locator("#request").textContent();
    expect(request).toContain("X-Trace");
    expect(request).toContain("t-1");
    expect(request).toContain("secret");
    expect(await page.content()).not.toContain("very-secret-token");
    expect(await page.locator("ol.timeline li[data-kind=ended]").count()).toBe(2);
    expect(await page.locator("ol.timeline li[data-kind=finished]").textContent()).toContain(
      "Job failed",
    );
    expect(await page.locator("#result [data-body-kind=text] pre").textContent()).toBe("try later");
    // An admin may act, but a finished job offers no cancel.
    expect(await page.locator("button[data-action=cancel]").count()).toBe(0);
    await shot(page, "job", true);
    await page.close();
  });

  it("cancels a running job from its page, and follows a cancel made elsewhere live", async () => {
    const jobId = await enqueue({ url: `${target.url}/hold`, tags: ["held"] });
    await waitStatus(jobId, "running");
    const page = await newPage();
    await signIn(page, submitter.key);
    await page.goto(`${t.url}/ui/jobs/${jobId}`);
    await page.locator(".job-title .badge", { hasText: "running" }).waitFor();
    await page.locator("[data-live=on]").waitFor();
    await page.click("button[data-action=cancel]");
    await page.locator("dialog[open]").waitFor();
    await shot(page, "cancel-confirm");
    await page.click("button[data-confirm=cancel]");
    await page.locator(".job-title .badge", { hasText: "canceled" }).waitFor();
    await page.locator("tr[data-attempt='1'] .badge", { hasText: "canceled" }).waitFor();
    expect(await page.locator("button[data-action=cancel]").count()).toBe(0);
    expect(await statusOf(jobId)).toBe("canceled");

    // Canceled by another client while the page is open: WatchJob brings the change.
    const other = await enqueue({ url: `${target.url}/hold` });
    await waitStatus(other, "running");
    await page.goto(`${t.url}/ui/jobs/${other}`);
    await page.locator("[data-live=on]").waitFor();
    const res = await fetch(`${t.url}/jobs/${other}/cancel`, {
      method: "POST",
      headers: { authorization: `Bearer ${admin.key}`, "content-type": "application/json" },
      body: "{}",
    });
    expect(res.status).toBe(200);
    await page.locator(".job-title .badge", { hasText: "canceled" }).waitFor();
    await page.locator(".live-note", { hasText: "final" }).waitFor();
    await page.close();
  });

  it("shows how far a running call has come, from the stream", async () => {
    const jobId = await enqueue({ url: `${target.url}/trickle` });
    await waitStatus(jobId, "running");
    const page = await newPage();
    await signIn(page, reader.key);
    await page.goto(`${t.url}/ui/jobs/${jobId}`);
    await page.locator("[data-live=on]").waitFor();
    // More of the body arrives while the page is open: WatchJob reports the bytes read.
    await expect.poll(() => trickling.length).toBe(1);
    trickling[0]!.write("x".repeat(4096));
    await page.locator(".call-progress[data-progress=body]").waitFor();
    expect(await page.locator(".call-progress").textContent()).toContain("HTTP 200");
    await shot(page, "job-progress");
    trickling[0]!.end("done");
    await page.locator(".job-title .badge", { hasText: "succeeded" }).waitFor();
    expect(await page.locator(".call-progress").count()).toBe(0);
    await page.close();
  });

  it("retries a failed job from its page and follows it to its next end", async () => {
    const jobId = await enqueue({ url: `${target.url}/flaky`, max_attempts: 1, tags: ["again"] });
    await waitStatus(jobId, "failed");
    const page = await newPage();
    await signIn(page, submitter.key);
    await page.goto(`${t.url}/ui/jobs/${jobId}`);
    await page.locator(".job-title .badge", { hasText: "failed" }).waitFor();
    await page.click("button[data-action=retry]");
    // It runs again on the same id (one more attempt allowed), and fails again: seen live.
    await page.locator("tr[data-attempt='2']").waitFor();
    await page.locator(".job-title .badge", { hasText: "failed" }).waitFor();
    expect(await statusOf(jobId)).toBe("failed");
    expect(await page.locator("table.attempts tbody tr").count()).toBe(2);
    // A finished job can be deleted, after a confirmation; the list is shown after.
    await page.click("button[data-action=delete]");
    await page.locator("dialog[open]").waitFor();
    await page.click("button[data-confirm=delete]");
    await page.waitForURL(`${t.url}/ui/jobs`);
    const res = await fetch(`${t.url}/jobs/${jobId}`, { headers: bearer(admin.key) });
    expect(res.status).toBe(404);
    await page.close();
  });

  it("bulk-cancels every job matching a filter after the count preview, and shows the progress", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(
        await enqueue({
          url: `${target.url}/later/bulk-${i}`,
          scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
          tags: ["bulk"],
        }),
      );
    }
    const page = await newPage();
    await signIn(page, submitter.key);
    await page.goto(`${t.url}/ui/jobs?tag=bulk`);
    await expect.poll(() => page.locator("tr[data-job-id]").count()).toBe(3);
    await page.locator(".live-note[data-live=on]").waitFor();
    // Selecting rows offers the selection's actions.
    await page.locator(`tr[data-job-id="${ids[0]}"] input[type=checkbox]`).check();
    await page.locator(".bulk-bar strong", { hasText: "1" }).waitFor();
    expect(await page.locator("[data-bulk=cancel-selected]").isDisabled()).toBe(false);
    await shot(page, "jobs-selected");

    // By keyboard: Enter opens the preview, Escape leaves it with nothing done.
    await page.locator("[data-bulk=cancel-matching]").focus();
    await page.keyboard.press("Enter");
    await page.locator("dialog[open] [data-bulk-count='3']").waitFor();
    await page.keyboard.press("Escape");
    await page.locator("dialog[open]").waitFor({ state: "detached" });
    for (const id of ids) expect(await statusOf(id)).toBe("queued");

    await page.click("[data-bulk=cancel-matching]");
    await page.locator("dialog[open] [data-bulk-count='3']").waitFor();
    expect(await page.locator("dialog[open]").textContent()).toContain("tags bulk");
    await shot(page, "bulk-preview", true);
    // Nothing changed before the confirmation.
    for (const id of ids) expect(await statusOf(id)).toBe("queued");
    await page.click("button[data-confirm=bulk-cancel]");
    await page.locator("dialog[open] [data-operation-state=done]").waitFor();
    expect(await page.locator("dialog[open] [data-affected]").textContent()).toBe("3");
    for (const id of ids) expect(await statusOf(id)).toBe("canceled");
    await page.click("dialog[open] >> text=Close");
    // The list shows the change (the stream or the refresh after the action).
    await expect
      .poll(() => page.locator("tr[data-job-id] .badge", { hasText: "canceled" }).count())
      .toBe(3);
    // The operation stays listed with what it did.
    await page.click("details.operations summary");
    const op = page.locator("table.operations tbody tr").first();
    await op.locator("[data-operation-state=done]").waitFor();
    expect(await op.locator("td.num").first().textContent()).toBe("3");
    await page.close();
  });

  it("pauses and resumes a queue, and edits its settings", async () => {
    // A second queue, with a rate and defaults of its own.
    const created = await fetch(`${t.url}/queues`, {
      method: "POST",
      headers: { ...bearer(admin.key), "content-type": "application/json" },
      body: JSON.stringify({
        name: "emails",
        settings: { concurrency: 2, rate_per_second: 5, burst: 10, max_attempts: 5 },
      }),
    });
    expect(created.status).toBe(200);
    const page = await newPage();
    await signIn(page, admin.key);
    await page.goto(`${t.url}/ui/queues`);
    const row = page.locator("tr[data-queue=default]");
    await row.locator("[data-state=active]").waitFor();
    await row.locator("[data-queue-action=pause]").click();
    await row.locator("[data-state=paused]").waitFor();
    const read = async () =>
      (await (await fetch(`${t.url}/queues/default`, { headers: bearer(admin.key) })).json()) as {
        paused: boolean;
        concurrency?: number;
        rate_per_second?: number;
      };
    expect((await read()).paused).toBe(true);
    await shot(page, "queues", true);
    await row.locator("[data-queue-action=resume]").click();
    await row.locator("[data-state=active]").waitFor();
    expect((await read()).paused).toBe(false);

    await row.locator("[data-queue-action=edit]").click();
    await page.locator("dialog[open]").waitFor();
    await page.fill("dialog[open] input[name=concurrency]", "3");
    await page.fill("dialog[open] input[name=rate_per_second]", "50");
    await page.click("button[data-confirm=save-queue]");
    await row.locator("td", { hasText: "50/s" }).waitFor();
    expect(await read()).toMatchObject({ paused: false, concurrency: 3, rate_per_second: 50 });
    // Back to the node's defaults (an emptied field resets it).
    await row.locator("[data-queue-action=edit]").click();
    await page.fill("dialog[open] input[name=concurrency]", "");
    await page.fill("dialog[open] input[name=rate_per_second]", "");
    await page.click("button[data-confirm=save-queue]");
    await page.locator("dialog[open]").waitFor({ state: "detached" });
    await expect.poll(async () => (await read()).concurrency ?? null).toBeNull();
    await page.close();
  });

  it("pauses live updates while the tab is hidden and resumes when it shows", async () => {
    const page = await newPage();
    await signIn(page, admin.key);
    await page.goto(`${t.url}/ui/jobs`);
    await page.locator(".live-note[data-live=on]").waitFor();
    const setVisibility = (state: "hidden" | "visible") =>
      page.evaluate(`
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "${state}" });
        document.dispatchEvent(new Event("visibilitychange"));
      `);
    await setVisibility("hidden");
    await page.locator(".live-note[data-live=off]", { hasText: "paused" }).waitFor();
    const listed = page.waitForRequest((r) =>
      r.url().endsWith("/jobqueue.v1.JobQueueService/ListJobs"),
    );
    await setVisibility("visible");
    await listed;
    await page.locator(".live-note[data-live=on]").waitFor();
    await page.close();
  });

  it("gives a reader no action buttons", async () => {
    const jobId = await enqueue({ url: `${target.url}/hold` });
    await waitStatus(jobId, "running");
    const page = await newPage();
    await signIn(page, reader.key);
    expect(await page.locator("[data-access=reader]").textContent()).toContain("read-only");
    // GetCaller names the key's principal.
    await page.locator("[data-access=reader] .principal", { hasText: "alice" }).waitFor();
    await page.goto(`${t.url}/ui/jobs/${jobId}`);
    await page.locator(".job-title .badge", { hasText: "running" }).waitFor();
    await page.locator("#attempts").waitFor();
    expect(await page.locator("button[data-action]").count()).toBe(0);
    await shot(page, "job-reader");
    // No bulk actions nor row selection on the list, no queue actions.
    await page.goto(`${t.url}/ui/jobs`);
    await page.locator("tr[data-job-id]").first().waitFor();
    expect(await page.locator("[data-bulk]").count()).toBe(0);
    expect(await page.locator("tr[data-job-id] input[type=checkbox]").count()).toBe(0);
    await page.goto(`${t.url}/ui/queues`);
    await page.locator("tr[data-queue=default]").waitFor();
    expect(await page.locator("[data-queue-action]").count()).toBe(0);
    expect(await page.locator("main button").count()).toBe(0);
    await page.close();
  });

  it("works at phone width and in the dark theme", async () => {
    const page = await newPage({ width: 390, height: 844 });
    await signIn(page, admin.key);
    await page.locator("[data-count=failed]").waitFor();
    const overflow = await page.evaluate(
      "document.documentElement.scrollWidth - window.innerWidth",
    );
    expect(overflow).toBe(0);
    await shot(page, "overview-phone", true);
    await page.goto(`${t.url}/ui/jobs/${failedJob}`);
    await page.locator("tr[data-attempt='2']").waitFor();
    expect(
      await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"),
    ).toBeLessThanOrEqual(0);
    await shot(page, "job-phone");
    // The wide tables scroll in their own box; the page itself never scrolls sideways.
    for (const path of ["/jobs", "/queues"]) {
      await page.goto(`${t.url}/ui${path}`);
      await page.locator("[data-job-id], [data-queue]").first().waitFor();
      expect(
        await page.evaluate("document.documentElement.scrollWidth - window.innerWidth"),
      ).toBeLessThanOrEqual(0);
    }
    await shot(page, "queues-phone");
    // The theme toggle cycles auto → light → dark, and is kept.
    const toggle = page.locator("button.theme-toggle");
    await toggle.click();
    await toggle.click();
    expect(await page.evaluate("document.documentElement.dataset.theme")).toBe("dark");
    await page.goto(`${t.url}/ui/jobs`);
    await page.locator("tr[data-job-id]").first().waitFor();
    expect(await page.evaluate("document.documentElement.dataset.theme")).toBe("dark");
    await page.setViewportSize({ width: 1280, height: 900 });
    await shot(page, "jobs-dark", true);
    await page.close();
  });

  it("lists schedules, shows one with its template and jobs, runs and pauses it; a reader only reads", async () => {
    const createSchedule = async (spec: Record<string, unknown>) => {
      const res = await fetch(`${t.url}/schedules`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${submitter.key}` },
        body: JSON.stringify({ schedule: spec }),
      });
      const json = (await res.json()) as { schedule_id: string };
      if (res.status !== 200) throw new Error(JSON.stringify(json));
      return json.schedule_id;
    };
    // Yearly: no tick comes during the test; only "Run now" enqueues.
    const daily = await createSchedule({
      description: "daily report",
      template: {
        url: `${target.url}/ok`,
        method: "POST",
        headers: { Authorization: "Bearer schedule-secret", "X-Report": "daily" },
        body: { report: "daily" },
      },
      cron: "0 9 1 1 *",
      time_zone: "Europe/Berlin",
      overlap_policy: "allow",
    });
    const doomed = await createSchedule({
      template: { url: `${target.url}/ok` },
      cron: "0 0 1 1 *",
    });
    const page = await newPage();
    await signIn(page, submitter.key);
    await page.getByRole("link", { name: "Schedules" }).click();
    const row = page.locator(`tr[data-schedule-id=${daily}]`);
    await row.waitFor();
    expect(await row.textContent()).toContain("Europe/Berlin");
    expect(await row.textContent()).toContain("0 9 1 1 *");
    expect(await row.locator("[data-paused=false]").count()).toBe(1);
    await shot(page, "schedules-list");
    await row.getByRole("link", { name: daily }).click();
    await page.locator("#template").waitFor();
    // The template's secret header is masked; the others are shown.
    expect(await page.locator("#template").textContent()).not.toContain("schedule-secret");
    expect(await page.locator("#template").textContent()).toContain("daily");
    await page.locator("#schedule-jobs").getByText("No job enqueued").waitFor();
    // Run now: its job appears in the schedule's jobs, linking to the job page.
    await page.click("[data-schedule-action=trigger]");
    const jobRow = page.locator("#schedule-jobs tr[data-job-id]");
    await jobRow.first().waitFor();
    const jobId = (await jobRow.first().getAttribute("data-job-id"))!;
    await waitStatus(jobId, "succeeded");
    // Pause: the badge says so and Resume replaces Pause.
    await page.click("[data-schedule-action=pause]");
    await page.locator("[data-schedule-action=resume]").waitFor();
    expect(await page.locator(".schedule-title [data-paused=true]").count()).toBe(1);
    await shot(page, "schedules", true);
    // The job page names its schedule (run now: no tick) and links back.
    await page.goto(`${t.url}/ui/jobs/${jobId}`);
    const link = page.locator(`[data-schedule=${daily}] a`);
    await link.waitFor();
    expect(await page.locator(`[data-schedule=${daily}]`).textContent()).toContain("no tick");
    await link.click();
    await page.locator(".schedule-title").getByText(daily).waitFor();
    // Delete asks first.
    await page.goto(`${t.url}/ui/schedules/${doomed}`);
    await page.click("[data-schedule-action=delete]");
    await page.locator("dialog[open]").getByText("cannot be undone").waitFor();
    await page.click("[data-confirm=delete]");
    await page.waitForURL(`${t.url}/ui/schedules`);
    await page.locator(`tr[data-schedule-id=${daily}]`).waitFor();
    expect(await page.locator(`tr[data-schedule-id=${doomed}]`).count()).toBe(0);
    // Create one from the form: the server's refusal names the field; then it opens the new one.
    await page.click("[data-schedule-create=open]");
    await page.fill("input[name=cron]", "30 8 * * 1-5");
    await page.fill("input[name=timeZone]", "Nowhere/Atlantis");
    await page.selectOption("select[name=method]", "POST");
    await page.fill("input[name=url]", `${target.url}/ok`);
    await page.fill("textarea[name=body]", '{"from": "form"}');
    await page.click("[data-schedule-create=submit]");
    await page.locator("form.schedule-create .error-note", { hasText: "time_zone" }).waitFor();
    await page.fill("input[name=timeZone]", "Asia/Tokyo");
    await page.click("[data-schedule-create=submit]");
    await page.locator(".schedule-title").waitFor();
    expect(await page.locator("#summary").textContent()).toContain("Asia/Tokyo");
    expect(await page.locator("#template").textContent()).toContain('"from": "form"');
    await page.close();
    // A reader sees the schedule and its jobs, and no action.
    const readerPage = await newPage();
    await signIn(readerPage, reader.key);
    await readerPage.goto(`${t.url}/ui/schedules/${daily}`);
    await readerPage.locator("#schedule-jobs tr[data-job-id]").first().waitFor();
    expect(await readerPage.locator("[data-schedule-action]").count()).toBe(0);
    expect(await readerPage.locator("main fieldset.actions").count()).toBe(0);
    await readerPage.goto(`${t.url}/ui/schedules`);
    await readerPage.locator(`tr[data-schedule-id=${daily}]`).waitFor();
    expect(await readerPage.locator("[data-schedule-create]").count()).toBe(0);
    await readerPage.close();
  });

  it("links a job with a callback to its delivery job, and back", async () => {
    const jobId = await enqueue({ url: `${target.url}/ok`, callback_url: `${target.url}/ok` });
    await waitStatus(jobId, "succeeded");
    const page = await newPage();
    await signIn(page, reader.key);
    await page.goto(`${t.url}/ui/jobs/${jobId}`);
    const callback = page.locator(`[data-callback-url="${target.url}/ok"]`);
    await callback.locator("a").waitFor();
    const deliveryId = (await callback.locator("a code").textContent())!;
    await callback.locator("a").click();
    await page.locator(".job-title").getByText(deliveryId).waitFor();
    await page.locator(`[data-callback-of=${jobId}]`).click();
    await page.locator(".job-title").getByText(jobId).waitFor();
    await page.close();
  });

  it("logged no console errors (no CSP violation among them)", () => {
    expect(consoleErrors).toEqual([]);
  });
});
