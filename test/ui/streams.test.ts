import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { launchBrowser } from "./browser.js";

/**
 * The event stream as a browser page uses it: EventSource on a server without keys, and a
 * WebSocket carrying its key as a subprotocol on one with keys (a page cannot set headers on
 * either), both from the server's own origin.
 */
describe("the event stream in chromium", () => {
  let browser: Browser;
  let target: Target;
  const ada = generateApiKey("ada", "admin");

  beforeAll(async () => {
    browser = await launchBrowser();
    target = await startTarget();
    target.on("/ok", (_req, res) => {
      res.writeHead(200).end("ok");
    });
  });

  afterAll(async () => {
    await browser?.close();
    await target?.close();
  });

  async function pageOf(t: TestApp): Promise<Page> {
    const page = await browser.newPage();
    // Any page of the server's origin will do: the dashboard's.
    await page.goto(`${t.url}/ui/`);
    return page;
  }

  it("EventSource: a page follows a job from queued to succeeded", async () => {
    const t = await startTestApp();
    try {
      const page = await pageOf(t);
      const from = (await t.rest.get("/jobs?page_size=1")).json.watch_cursor as string;
      const id = await t.enqueue({ url: `${target.url}/ok` });
      const types = await page.evaluate(
        ([cursor, jobId]) =>
          new Promise<string[]>((resolve, reject) => {
            const seen: string[] = [];
            const es = new EventSource(`/events?job_ids=${jobId}&after_cursor=${cursor}`);
            for (const type of ["queued", "running", "attempt_ended", "succeeded"]) {
              es.addEventListener(type, (e) => {
                const data = JSON.parse((e as MessageEvent).data);
                seen.push(
                  `${data.event.type}:${(e as MessageEvent).lastEventId === data.event.cursor}`,
                );
                if (type === "succeeded") {
                  es.close();
                  resolve(seen);
                }
              });
            }
            es.onerror = () => reject(new Error("EventSource failed"));
          }),
        [from, id] as const,
      );
      expect(types).toEqual([
        "queued:true",
        "running:true",
        "attempt_ended:true",
        "succeeded:true",
      ]);
      await page.close();
    } finally {
      await t.stop();
    }
  });

  it("WebSocket: the key goes as a subprotocol; without it the handshake is refused", async () => {
    const t = await startTestApp({ JOBQUEUE_API_KEYS: ada.line });
    try {
      const page = await pageOf(t);
      const id = await (async () => {
        const res = await fetch(`${t.url}/jobs`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${ada.key}` },
          body: JSON.stringify({
            url: `${target.url}/ok`,
            scheduled_at: new Date(Date.now() + 86_400_000).toISOString(),
          }),
        });
        expect(res.status).toBe(200);
        return ((await res.json()) as { job_id: string }).job_id;
      })();
      const got = await page.evaluate(
        ([key, jobId]) =>
          new Promise<{ protocol: string; first: unknown; refused: boolean }>((resolve) => {
            const url = `ws://${(globalThis as unknown as { location: { host: string } }).location.host}/jobs/${jobId}/events`;
            const ws = new WebSocket(url, ["jobqueue.v1", `jobqueue.bearer.${key}`]);
            ws.onclose = (e) =>
              resolve({ protocol: `closed ${e.code} ${e.reason}`, first: null, refused: false });
            ws.onmessage = (m) => {
              ws.onclose = null;
              const first = JSON.parse(m.data as string);
              const protocol = ws.protocol;
              ws.close();
              const bare = new WebSocket(url, ["jobqueue.v1"]);
              bare.onopen = () => resolve({ protocol, first, refused: false });
              bare.onerror = () => resolve({ protocol, first, refused: true });
            };
          }),
        [ada.key, id] as const,
      );
      expect(got.protocol).toBe("jobqueue.v1");
      expect(got.first).toMatchObject({ job: { job_id: id, status: "queued" } });
      expect(got.refused).toBe(true);
      await page.close();
    } finally {
      await t.stop();
    }
  });
});
