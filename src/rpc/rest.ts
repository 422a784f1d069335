import { isUtf8 } from "node:buffer";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  getOption,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import {
  Code,
  type ConnectError,
  type ContextValues,
  createServiceImplSpec,
  type Interceptor,
  type ServiceImpl,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { WebSocketServer } from "ws";
import { http } from "../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../gen/google/api/http_pb.js";
import { InvalidArgumentError } from "../job/errors.js";
import { CALL_RECORD } from "./access-log.js";
import { codeName, httpStatusOf, toConnectError, violatedField } from "./errors.js";
import {
  refuseNoStream,
  serveSse,
  serveWebSocket,
  WS_PROTOCOL,
  webSocketHeaders,
} from "./http-streams.js";
import { parseJsonStrict } from "./json-text.js";
import { NodeHeaders } from "./node-headers.js";
import { fromRestJson, queryToJson, toRestJson } from "./rest-json.js";
import { composeServerStream, type StreamCall, streamRequest } from "./stream-call.js";
import { composeUnary, unaryRequest } from "./unary-call.js";

type NodeHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
type Request = Parameters<NodeHandler>[0];
type Response = Parameters<NodeHandler>[1];

/** A REST route derived from a method's google.api.http rule. */
export interface RestRoute {
  httpMethod: string;
  /** The path template, e.g. "/jobs/{job_id}". */
  template: string;
  segments: ({ literal: string } | { field: string })[];
  method: DescMethod;
  /** "*" (the whole body is the request), a field name, or "" (no body). */
  body: string;
  /** The response field to answer with instead of the whole response, or "". */
  responseBody: string;
}

/**
 * Reads the google.api.http rules of a service's methods into routes, at start-up, so that a route
 * cannot drift from its RPC. Supports the rule forms the proto uses: get/post/put/patch/delete with
 * `{field}` path variables, `body` and `response_body`.
 */
export function deriveRestRoutes(service: DescService): RestRoute[] {
  const routes: RestRoute[] = [];
  for (const method of service.methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
    const rule = getOption(method, http);
    for (const r of [rule, ...rule.additionalBindings]) {
      const route = toRoute(method, r);
      if (route) routes.push(route);
    }
  }
  return routes;
}

function toRoute(method: DescMethod, rule: HttpRule): RestRoute | null {
  if (rule.pattern.case === undefined || rule.pattern.case === "custom") return null;
  const template = rule.pattern.value;
  const segments = template
    .split("/")
    .filter((s) => s !== "")
    .map((s) => {
      const m = /^\{([a-z_][a-z0-9_]*)(?:=\*)?\}$/.exec(s);
      if (m) {
        if (!method.input.fields.some((f) => f.name === m[1])) {
          throw new Error(`${method.name}: path variable {${m[1]}} is not a request field`);
        }
        return { field: m[1]! };
      }
      if (s.includes("{")) throw new Error(`${method.name}: unsupported path template ${template}`);
      return { literal: s };
    });
  return {
    httpMethod: rule.pattern.case.toUpperCase(),
    template,
    segments,
    method,
    body: rule.body,
    responseBody: rule.responseBody,
  };
}

/** A service as it is registered with the server: its descriptor and its handlers. */
export interface ServiceRegistration {
  service: DescService;
  impl: object;
}

/** A service and its handlers, type-checked against each other. */
export function serve<S extends DescService>(
  service: S,
  impl: Partial<ServiceImpl<S>>,
): ServiceRegistration {
  return { service, impl };
}

export interface RestTranscoderOptions {
  /** Every registered service; each method with a google.api.http rule gets its routes. */
  services: ServiceRegistration[];
  /** The same interceptors the Connect router runs (auth, errors, …), in the same order. */
  interceptors: Interceptor[];
  logger: Logger;
  /** Request bodies larger than this are refused with a 400 naming the body. */
  maxRequestBytes: number;
  /** Aborted when the server begins to stop: the calls' signals abort too. */
  shutdownSignal?: AbortSignal;
}

type BoundRoute = RestRoute &
  (
    | {
        kind: "unary";
        /** The method's handler behind the interceptors, composed once at start-up. */
        call: (req: UnaryRequest) => Promise<UnaryResponse>;
      }
    | { kind: "stream"; call: StreamCall }
  );

/**
 * The REST transcoder: serves the routes derived from every registered service's google.api.http
 * rules with the seed's JSON, by running the method's handler through the same interceptors as
 * the RPC protocols. A new service gets its REST routes by registration alone. Returns false when
 * no route has the path, so the caller can answer 404 its own way.
 *
 * Per call it allocates what a call needs and no more (profiled on GET /jobs/{job_id}: per-call
 * AbortControllers and their DOMExceptions were 17% of the server's busy time): the interceptor
 * chain is composed once per route, headers are read from Node's object without copying, and the
 * call's abort signal exists only if a handler asks for it.
 */
export function createRestTranscoder(options: RestTranscoderOptions) {
  const { logger, interceptors } = options;
  const routes: BoundRoute[] = [];
  for (const { service, impl } of options.services) {
    const spec = createServiceImplSpec(service, impl as never);
    for (const route of deriveRestRoutes(service)) {
      const clash = routes.find(
        (r) => r.httpMethod === route.httpMethod && r.template === route.template,
      );
      if (clash) {
        throw new Error(
          `${route.httpMethod} ${route.template} is bound to both ${clash.method.name} and ${route.method.name}`,
        );
      }
      const method = spec.methods[route.method.localName]!;
      if (method.kind === "unary") {
        routes.push({ ...route, kind: "unary", call: composeUnary(method, interceptors, "rest") });
      } else if (method.kind === "server_streaming" && route.httpMethod === "GET") {
        routes.push({
          ...route,
          kind: "stream",
          call: composeServerStream(method, interceptors, "rest"),
        });
      }
    }
  }
  /** Routes by their number of path segments. */
  const bySegments = new Map<number, BoundRoute[]>();
  for (const route of routes) {
    const list = bySegments.get(route.segments.length) ?? [];
    list.push(route);
    bySegments.set(route.segments.length, list);
  }

  /** The route of a method and path, or the methods the path has if none is this one. */
  function find(verb: string | undefined, pathname: string) {
    const parts = pathname.split("/").filter((s) => s !== "");
    let verbs: Set<string> | null = null;
    for (const route of bySegments.get(parts.length) ?? []) {
      const vars = match(route, parts);
      if (vars === null) continue;
      if (route.httpMethod === verb) return { route, vars, verbs: null };
      verbs = verbs ?? new Set();
      verbs.add(route.httpMethod);
    }
    return { route: null, vars: null, verbs };
  }

  /** Records the route for the access log and metrics. */
  function record(contextValues: ContextValues, route: RestRoute): void {
    const rec = contextValues.get(CALL_RECORD);
    if (rec) {
      rec.route = route.template;
      rec.rpc = `${route.method.parent.typeName}/${route.method.name}`;
    }
  }

  /** The call of a streaming route, opened when the transport is ready for it. */
  function openStream(
    req: Request,
    route: Extract<BoundRoute, { kind: "stream" }>,
    query: URLSearchParams | null,
    vars: Record<string, string>,
    header: Headers,
    contextValues: ContextValues,
  ) {
    return async (signal: AbortSignal) => {
      const json = await requestJson(req, route, query, vars, options.maxRequestBytes);
      // A reconnecting EventSource says where it was: resume there.
      const last = req.headers["last-event-id"];
      if (
        typeof last === "string" &&
        last !== "" &&
        route.method.input.fields.some((f) => f.name === "after_cursor")
      ) {
        json.after_cursor = last;
      }
      const input = fromRestJson(route.method.input, json);
      return route.call(
        streamRequest({
          method: route.method,
          input,
          url: `http://${req.headers.host ?? "localhost"}${req.url ?? "/"}`,
          header,
          contextValues,
          signal,
        }),
      );
    };
  }

  async function handleRest(
    req: Request,
    res: Response,
    contextValues: ContextValues,
  ): Promise<boolean> {
    const raw = req.url ?? "/";
    const q = raw.indexOf("?");
    const pathname = q === -1 ? raw : raw.slice(0, q);
    // HEAD is served wherever GET is, without the body.
    const verb = req.method === "HEAD" ? "GET" : req.method;
    const { route: hit, vars, verbs } = find(verb, pathname);
    if (!hit || !vars) {
      if (!verbs) return false;
      if (verbs.has("GET")) verbs.add("HEAD");
      const allow = [...verbs].join(", ");
      sendJson(res, 405, { code: "unimplemented", message: `use ${allow}` }, { allow });
      return true;
    }
    const route = hit;
    record(contextValues, route);
    const query = q === -1 ? null : new URLSearchParams(raw.slice(q + 1));
    if (route.kind === "stream") {
      const header = new NodeHeaders(req.headers);
      await serveSse(
        res as ServerResponse,
        route.method.output,
        openStream(req, route, query, vars, header, contextValues),
        logger,
        options.shutdownSignal,
        req.method === "HEAD",
      );
      return true;
    }
    try {
      const json = await requestJson(req, route, query, vars, options.maxRequestBytes);
      const input = fromRestJson(route.method.input, json);
      const output = await route.call(
        unaryRequest(req, res, route.method, input, contextValues, options.shutdownSignal),
      );
      sendJson(res, 200, responseJson(route, output.message as Record<string, unknown>));
    } catch (err) {
      sendError(res, toConnectError(err, logger));
    }
    return true;
  }
  /**
   * A WebSocket handshake (HTTP/1.1 upgrade) on a streaming route: the same call as its Server-Sent
   * Events, through the same interceptors, framed as WebSocket messages.
   */
  function upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    contextValues: ContextValues,
  ): void {
    const raw = req.url ?? "/";
    const q = raw.indexOf("?");
    const pathname = q === -1 ? raw : raw.slice(0, q);
    const { route, vars } = find("GET", pathname);
    if (route?.kind !== "stream" || !vars) {
      refuseNoStream(socket, pathname);
      return;
    }
    record(contextValues, route);
    const query = q === -1 ? null : new URLSearchParams(raw.slice(q + 1));
    const header = webSocketHeaders(req);
    void serveWebSocket(
      wss,
      req,
      socket,
      head,
      route.method.output,
      openStream(req, route, query, vars, header, contextValues),
      logger,
      options.shutdownSignal,
    );
  }
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: 64 * 1024,
    // A browser offers its key as a subprotocol beside jobqueue.v1: jobqueue.v1 is the answer.
    handleProtocols: (protocols) => (protocols.has(WS_PROTOCOL) ? WS_PROTOCOL : false),
  });
  /** The HTTP methods the routes use. */
  const methods = [...new Set(routes.map((r) => r.httpMethod))];
  return Object.assign(handleRest, { methods, upgrade });
}

/** Answers an error in REST's JSON shape: `{code, message[, field]}` and its HTTP status. */
export function sendError(res: Response, cerr: ConnectError): void {
  const field = cerr.code === Code.InvalidArgument ? violatedField(cerr) : undefined;
  const headers: Record<string, string> = {};
  cerr.metadata.forEach((value, name) => {
    headers[name] = value;
  });
  if (cerr.code === Code.Unauthenticated) headers["www-authenticate"] = 'Bearer realm="jobqueue"';
  sendJson(
    res,
    httpStatusOf(cerr.code),
    { code: codeName(cerr.code), message: cerr.rawMessage, ...(field ? { field } : {}) },
    headers,
  );
}

function match(route: RestRoute, parts: string[]): Record<string, string> | null {
  if (parts.length !== route.segments.length) return null;
  const vars: Record<string, string> = {};
  for (let i = 0; i < parts.length; i++) {
    const seg = route.segments[i]!;
    const part = parts[i]!;
    if ("literal" in seg) {
      if (seg.literal !== part) return null;
    } else {
      try {
        vars[seg.field] = decodeURIComponent(part);
      } catch {
        return null;
      }
    }
  }
  return vars;
}

async function requestJson(
  req: Request,
  route: RestRoute,
  query: URLSearchParams | null,
  vars: Record<string, string>,
  maxBytes: number,
): Promise<JsonObject> {
  let json: JsonObject = {};
  if (route.body !== "") {
    const body = await readBody(req, maxBytes);
    if (body.trim() !== "") {
      const parsed = parseJsonStrict(body);
      if (route.body === "*") {
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          throw new InvalidArgumentError("body", "must be a JSON object");
        }
        json = parsed;
      } else {
        json = { [route.body]: parsed };
      }
    }
  }
  if (route.body !== "*") {
    if (query) Object.assign(json, queryToJson(route.method.input, query));
  } else if (query && [...query.keys()].length > 0) {
    const name = [...query.keys()][0]!;
    throw new InvalidArgumentError(name, "query parameters are not accepted here; send JSON");
  }
  for (const [field, value] of Object.entries(vars)) {
    if (field in json && json[field] !== value) {
      throw new InvalidArgumentError(field, "differs between the path and the body");
    }
    json[field] = value;
  }
  return json;
}

function readBody(req: Request, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.byteLength;
      if (size > maxBytes) {
        req.removeAllListeners("data");
        req.resume();
        reject(new InvalidArgumentError("body", `is larger than ${maxBytes} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      const bytes = Buffer.concat(chunks);
      if (!isUtf8(bytes)) reject(new InvalidArgumentError("body", "is not valid UTF-8"));
      else resolve(bytes.toString("utf8"));
    });
    req.on("error", reject);
  });
}

function responseJson(route: RestRoute, output: Record<string, unknown>): JsonValue {
  const schema: DescMessage = route.method.output;
  if (route.responseBody === "") return toRestJson(schema, output as never);
  const field = schema.fields.find((f) => f.name === route.responseBody);
  if (field?.fieldKind !== "message") {
    throw new Error(`${route.method.name}: response_body ${route.responseBody} is not a message`);
  }
  const value = output[field.localName] ?? create(field.message);
  return toRestJson(field.message, value as never);
}

/** Writes a JSON answer; works on HTTP/1.1 and HTTP/2 responses alike. */
export function sendJson(
  res: Response,
  status: number,
  body: JsonValue,
  headers: Record<string, string> = {},
): void {
  const payload = JSON.stringify(body);
  (res as ServerResponse).writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload); // Node drops the body itself for HEAD
}
