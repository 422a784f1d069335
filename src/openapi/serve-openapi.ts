import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import document from "../../openapi/openapi.json" with { type: "json" };

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;

/** The committed document (`npm run generate` writes it; CI fails if it drifts from proto/). */
const body = Buffer.from(JSON.stringify(document));

/**
 * Answers `GET /openapi.json` (and HEAD) with the OpenAPI document of the REST API; returns false
 * for any other request. Open to every caller, like health and reflection: it describes the API,
 * it holds no data.
 */
export function serveOpenApi(
  req: Parameters<NodeHandler>[0],
  res: Parameters<NodeHandler>[1],
): boolean {
  const path = (req.url ?? "/").split("?")[0];
  if (path !== "/openapi.json" || (req.method !== "GET" && req.method !== "HEAD")) return false;
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": String(body.length),
    "cache-control": "no-cache",
  });
  if (req.method === "HEAD") res.end();
  else res.end(body);
  return true;
}
