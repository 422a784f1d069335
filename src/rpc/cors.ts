import type http from "node:http";
import type http2 from "node:http2";
import { cors as connectCors } from "@connectrpc/connect";

type Request = http.IncomingMessage | http2.Http2ServerRequest;
type Response = http.ServerResponse | http2.Http2ServerResponse;

/** Request headers browsers may send: Connect's and gRPC-Web's, and the API key headers. */
const ALLOWED_HEADERS = [...connectCors.allowedHeaders, "Authorization", "X-Api-Key"].join(", ");
/**
 * Response headers scripts may read: gRPC-Web's status and details, Connect's encodings, and what
 * REST and refusals answer with (Retry-After, WWW-Authenticate).
 */
const EXPOSED_HEADERS = [...connectCors.exposedHeaders, "Retry-After", "WWW-Authenticate"].join(
  ", ",
);
const MAX_AGE_SECONDS = "7200";

/**
 * CORS for browser clients on other origins: off unless origins are configured
 * (`JOBQUEUE_CORS_ORIGINS`). An allowed origin gets its own name back (or `*` when any origin is
 * allowed) with the headers Connect, gRPC-Web and REST need exposed; a preflight (`OPTIONS` with
 * `Access-Control-Request-Method`) is answered on every path, 204 for an allowed origin and 403
 * otherwise. No credentials (cookies) are involved: API keys travel in headers.
 *
 * Returns whether the request was answered (a preflight).
 */
export function createCors(origins: string[], methods: string[]) {
  const any = origins.includes("*");
  const allowed = new Set(origins);
  const allowMethods = [...new Set(["GET", "HEAD", "POST", ...methods])].join(", ");

  return function applyCors(req: Request, res: Response): boolean {
    const origin = req.headers.origin;
    if (origin === undefined) return false;
    const ok = any || allowed.has(origin);
    const preflight =
      req.method === "OPTIONS" && req.headers["access-control-request-method"] !== undefined;
    if (ok) {
      res.setHeader("access-control-allow-origin", any ? "*" : origin);
      if (!any) res.setHeader("vary", "Origin");
    }
    if (!preflight) {
      if (ok) res.setHeader("access-control-expose-headers", EXPOSED_HEADERS);
      return false;
    }
    if (!ok) {
      const body = JSON.stringify({
        code: "permission_denied",
        message: `origin ${origin} is not allowed (JOBQUEUE_CORS_ORIGINS)`,
      });
      (res as http.ServerResponse).writeHead(403, {
        "content-type": "application/json",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
      return true;
    }
    (res as http.ServerResponse).writeHead(204, {
      "access-control-allow-methods": allowMethods,
      "access-control-allow-headers": ALLOWED_HEADERS,
      "access-control-max-age": MAX_AGE_SECONDS,
      "content-length": 0,
    });
    res.end();
    return true;
  };
}

/** Checks a configured origin: `*`, or `scheme://host[:port]` with nothing after. */
export function parseOrigin(raw: string): string {
  if (raw === "*") return raw;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`${JSON.stringify(raw)} is not an origin such as https://app.example.com`);
  }
  if (url.origin === "null" || url.origin !== raw.replace(/\/$/, "")) {
    throw new Error(
      `${JSON.stringify(raw)} is not an origin such as https://app.example.com (scheme, host and port only)`,
    );
  }
  return url.origin;
}
