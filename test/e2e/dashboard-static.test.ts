import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

/** The built dashboard is served at /ui by the server's own port (src/rpc/static-site.ts). */
describe("the dashboard's static files", () => {
  let t: TestApp;
  let site: string;
  const asset = `assets/index-${"Ab12".repeat(2)}.js`;
  const script = `console.log(${JSON.stringify("x".repeat(4000))});\n`;

  beforeAll(async () => {
    site = mkdtempSync(join(tmpdir(), "jobqueue-ui-"));
    mkdirSync(join(site, "assets"));
    writeFileSync(
      join(site, "index.html"),
      `<!doctype html><script type="module" src="/ui/${asset}"></script>`,
    );
    writeFileSync(join(site, asset), script);
    writeFileSync(join(site, "favicon.svg"), "<svg/>");
    t = await startTestApp({}, { uiDir: site });
  });
  afterAll(async () => {
    await t?.stop();
    rmSync(site, { recursive: true, force: true });
  });

  it("answers index.html for the app's routes, revalidated, with a strict CSP", async () => {
    for (const path of ["/ui/", "/ui/jobs", "/ui/jobs/j_01ABC", "/ui/nodes?x=1"]) {
      const res = await fetch(t.url + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
      expect(res.headers.get("cache-control")).toBe("no-cache");
      const csp = res.headers.get("content-security-policy") ?? "";
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain("unsafe-inline");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(await res.text()).toContain(asset);
    }
  });

  it("serves hashed assets for a year, gzipped when asked, and 304s a known ETag", async () => {
    const res = await fetch(`${t.url}/ui/${asset}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(res.headers.get("content-encoding")).toBe("gzip"); // fetch asks for gzip, and unzips
    expect(await res.text()).toBe(script);
    const again = await fetch(`${t.url}/ui/${asset}`, {
      headers: { "if-none-match": res.headers.get("etag")! },
    });
    expect(again.status).toBe(304);
    const other = await fetch(`${t.url}/ui/favicon.svg`);
    expect(other.headers.get("cache-control")).toBe("no-cache");
    expect(other.headers.get("content-type")).toBe("image/svg+xml");
  });

  it("404s a missing asset instead of answering the page", async () => {
    expect((await fetch(`${t.url}/ui/assets/index-nope.js`)).status).toBe(404);
    expect((await fetch(`${t.url}/ui/missing.css`)).status).toBe(404);
    expect((await fetch(`${t.url}/ui/..%2f..%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${t.url}/ui/%E0%A4%A`)).status).toBe(400);
  });

  it("redirects /ui to /ui/ and refuses other methods", async () => {
    const res = await fetch(`${t.url}/ui?x=1`, { redirect: "manual" });
    expect(res.status).toBe(308);
    expect(res.headers.get("location")).toBe("/ui/?x=1");
    const post = await fetch(`${t.url}/ui/`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });

  it("leaves the API's routes alone", async () => {
    const res = await fetch(`${t.url}/jobs`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ jobs: [], next_page_token: null });
    expect((await fetch(`${t.url}/uix`)).status).toBe(404);
  });

  it("says how to build the dashboard when it is not built", async () => {
    const bare = await startTestApp({}, { uiDir: join(site, "nowhere") });
    try {
      const res = await fetch(`${bare.url}/ui/`);
      expect(res.status).toBe(503);
      expect(await res.text()).toContain("npm run build:ui");
    } finally {
      await bare.stop();
    }
  });
});
