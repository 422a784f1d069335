import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type http from "node:http";
import type http2 from "node:http2";
import { extname, join, relative, sep } from "node:path";
import { gzipSync } from "node:zlib";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/**
 * The dashboard's Content-Security-Policy: its own scripts, styles and API only; no inline code,
 * no framing, no other origin. `data:` images are the CSS library's inline SVG icons.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS = {
  "content-security-policy": DASHBOARD_CSP,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "x-frame-options": "DENY",
  "cross-origin-opener-policy": "same-origin",
};

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".webmanifest": "application/manifest+json",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};
const COMPRESSIBLE = new Set([".html", ".js", ".css", ".json", ".svg", ".webmanifest", ".txt"]);
/** Vite writes content-hashed file names under this folder: they never change, so cache forever. */
const HASHED_DIR = "assets/";

interface File {
  body: Buffer;
  gzipped: Buffer | null;
  type: string;
  etag: string;
  immutable: boolean;
}

export interface StaticSiteOptions {
  /** The built dashboard (`index.html` and `assets/`); null or missing: answered 503. */
  root: string | null;
  /** Where it is served, e.g. "/ui". */
  mount: string;
}

/**
 * Serves a built single-page app under `mount`, from memory (read once, at start: a rebuilt
 * dashboard is served after a restart). Hashed assets are cached for a year; any other path under
 * the mount that is not a file answers `index.html` (client-side routes), never cached without
 * revalidation. Every answer carries a strict CSP. Returns false for paths outside the mount.
 */
export function createStaticSite(options: StaticSiteOptions) {
  const { mount } = options;
  const files =
    options.root && existsSync(join(options.root, "index.html")) ? load(options.root) : null;

  return function serveStatic(req: Request, res: Response, path: string): boolean {
    if (path !== mount && !path.startsWith(`${mount}/`)) return false;
    if (req.method !== "GET" && req.method !== "HEAD") {
      send(res, 405, "text/plain; charset=utf-8", `${req.method} is not allowed here\n`, {
        allow: "GET, HEAD",
      });
      return true;
    }
    if (path === mount) {
      const q = req.url?.indexOf("?") ?? -1;
      const query = q === -1 ? "" : (req.url ?? "").slice(q);
      send(res, 308, "text/plain; charset=utf-8", "", { location: `${mount}/${query}` });
      return true;
    }
    if (!files) {
      send(
        res,
        503,
        "text/plain; charset=utf-8",
        "The dashboard is not built: run `npm run build:ui` (npm ci does it), then restart.\n",
        { "retry-after": "60" },
      );
      return true;
    }
    let name: string;
    try {
      name = decodeURIComponent(path.slice(mount.length + 1));
    } catch {
      send(res, 400, "text/plain; charset=utf-8", "bad escape in the path\n");
      return true;
    }
    let file = files.get(name);
    if (!file) {
      // A missing asset is a 404 (an HTML page in its place would only confuse the browser); any
      // other path is a route of the app.
      if (name.startsWith(HASHED_DIR) || extname(name) !== "") {
        send(res, 404, "text/plain; charset=utf-8", "not found\n");
        return true;
      }
      file = files.get("index.html")!;
    }
    const cache = file.immutable ? "public, max-age=31536000, immutable" : "no-cache";
    if (req.headers["if-none-match"] === file.etag) {
      send(res, 304, null, null, { etag: file.etag, "cache-control": cache });
      return true;
    }
    const gzip = file.gzipped !== null && /\bgzip\b/.test(String(req.headers["accept-encoding"]));
    send(res, 200, file.type, gzip ? file.gzipped! : file.body, {
      etag: file.etag,
      "cache-control": cache,
      vary: "accept-encoding",
      ...(gzip ? { "content-encoding": "gzip" } : {}),
    });
    return true;
  };
}

function load(root: string): Map<string, File> {
  const files = new Map<string, File>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const full = join(dir, entry);
      if (statSync(full).isDirectory()) {
        walk(full);
        continue;
      }
      const name = relative(root, full).split(sep).join("/");
      const ext = extname(name);
      const body = readFileSync(full);
      const gzipped = COMPRESSIBLE.has(ext) && body.length > 1024 ? gzipSync(body) : null;
      files.set(name, {
        body,
        gzipped,
        type: TYPES[ext] ?? "application/octet-stream",
        etag: `"${createHash("sha256").update(body).digest("base64url").slice(0, 22)}"`,
        immutable: name.startsWith(HASHED_DIR),
      });
    }
  };
  walk(root);
  return files;
}

function send(
  res: Response,
  status: number,
  type: string | null,
  body: string | Buffer | null,
  headers: Record<string, string> = {},
): void {
  const all: Record<string, string | number> = { ...SECURITY_HEADERS, ...headers };
  if (type) all["content-type"] = type;
  if (body !== null) all["content-length"] = Buffer.byteLength(body);
  (res as http.ServerResponse).writeHead(status, all);
  // Node drops the body itself for HEAD.
  if (body === null) res.end();
  else res.end(body);
}
