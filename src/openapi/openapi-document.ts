import {
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  getOption,
  ScalarType,
} from "@bufbuild/protobuf";
import { FeatureSet_FieldPresence } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { http } from "../../gen/google/api/annotations_pb.js";
import type { HttpRule } from "../../gen/google/api/http_pb.js";

/**
 * The OpenAPI 3.1 description of the REST API, derived from the services' google.api.http rules
 * and message descriptors, the same ones the REST routes are derived from at start-up, in the REST
 * JSON the server speaks: proto field names (snake_case), enums by their lowercase name without the
 * type's prefix (`"queued"`), `null` for anything unset (lists `[]`, maps `{}`), RFC 3339 times,
 * free JSON for google.protobuf.Value, 64-bit integers as numbers, errors as
 * `{code, message, field?}`. `scripts/generate-openapi.ts` writes it to `openapi/openapi.json`.
 */

type Schema = Record<string, unknown>;
export type OpenApiDocument = Record<string, unknown>;

export interface OpenApiOptions {
  /** Every service served (each method with a google.api.http rule becomes an operation). */
  services: DescService[];
  version: string;
  /**
   * The leading comment of a proto element by its full name: "jobqueue.v1.Job",
   * "jobqueue.v1.Job.url", "jobqueue.v1.JobStatus", "jobqueue.v1.JobQueueService.GetJob".
   */
  comments?: (fullName: string) => string | undefined;
}

/** The REST route of one google.api.http binding. */
interface Route {
  verb: string;
  /** The OpenAPI path: the rule's template with `{field=*}` read as `{field}`. */
  path: string;
  pathFields: string[];
  body: string;
  responseBody: string;
}

const WKT = "google.protobuf.";

/** Every error status the REST API may answer, each with the codes that map to it. */
const ERROR_RESPONSES: Record<string, string> = {
  "400": "Bad input: `field` names the field at fault (invalid_argument).",
  "401": "No API key, or an unknown one (unauthenticated).",
  "403": "The API key's role may not do this (permission_denied).",
  "404": "No such job, queue or operation, or not the caller's (not_found).",
  "410":
    "The cursor is older than the event retention (out_of_range): list again and watch from the list's watch_cursor.",
  "409":
    "Not allowed in the current state (failed_precondition), or already there: a reused idempotency key with another request, a queue's name in use (already_exists).",
};

/** Builds the document; pure (same descriptors and comments, same document). */
export function buildOpenApiDocument(options: OpenApiOptions): OpenApiDocument {
  const { services } = options;
  const methods = services.flatMap((s) => s.methods);
  const comment = (name: string) => options.comments?.(name)?.trim() || undefined;
  const schemas: Record<string, Schema> = {};
  const paths: Record<string, Record<string, unknown>> = {};

  /** Component names in use, so a message needed both ways gets two distinct names. */
  const named = new Map<string, string>();
  const outputs = new Set<string>();
  for (const method of methods) reachable(method.output, outputs);

  function componentName(message: DescMessage, mode: Mode): string {
    const key = `${mode}:${message.typeName}`;
    const known = named.get(key);
    if (known) return known;
    const short = message.typeName.slice(message.typeName.lastIndexOf(".") + 1);
    const name = mode === "request" && outputs.has(message.typeName) ? `${short}Input` : short;
    named.set(key, name);
    schemas[name] = {}; // reserved before recursing (a message may contain itself)
    schemas[name] = messageSchema(message, mode);
    return name;
  }

  function ref(message: DescMessage, mode: Mode): Schema {
    return { $ref: `#/components/schemas/${componentName(message, mode)}` };
  }

  function messageSchema(message: DescMessage, mode: Mode): Schema {
    const properties: Record<string, Schema> = {};
    for (const field of message.fields) {
      // A field without a comment of its own is described by its enum's (JobStatus' lifecycle).
      properties[field.name] = withDescription(
        fieldSchema(field, mode),
        comment(`${message.typeName}.${field.name}`) ??
          (field.enum ? comment(field.enum.typeName) : undefined),
      );
    }
    return withDescription(
      {
        type: "object",
        properties,
        // The server answers every field (null when unset) and refuses unknown ones.
        ...(mode === "response" ? { required: message.fields.map((f) => f.name) } : {}),
        additionalProperties: false,
      },
      comment(message.typeName),
    );
  }

  function fieldSchema(field: DescField, mode: Mode): Schema {
    switch (field.fieldKind) {
      case "list": {
        const items =
          field.listKind === "message"
            ? messageValueSchema(field.message, mode, false)
            : field.listKind === "enum"
              ? enumSchema(field.enum, false)
              : scalarSchema(field.scalar);
        return { type: mode === "request" ? ["array", "null"] : "array", items };
      }
      case "map": {
        const values =
          field.mapKind === "message"
            ? messageValueSchema(field.message, mode, false)
            : field.mapKind === "enum"
              ? enumSchema(field.enum, false)
              : scalarSchema(field.scalar);
        return {
          type: mode === "request" ? ["object", "null"] : "object",
          additionalProperties: values,
        };
      }
      case "enum":
        // The zero value ("unspecified") reads as null; requests may send null for "unset".
        return enumSchema(field.enum, true);
      case "message":
        return messageValueSchema(field.message, mode, true);
      case "scalar": {
        // A field with explicit presence (proto3 optional, a oneof member) is null when unset;
        // implicit ones always carry a value. Requests may send null for any field ("unset").
        const nullable = mode === "request" || field.presence !== FeatureSet_FieldPresence.IMPLICIT;
        return nullable ? orNull(scalarSchema(field.scalar)) : scalarSchema(field.scalar);
      }
    }
  }

  function messageValueSchema(message: DescMessage, mode: Mode, nullable: boolean): Schema {
    if (message.typeName.startsWith(WKT)) return wellKnown(message, nullable);
    const schema = ref(message, mode);
    return nullable ? { anyOf: [schema, { type: "null" }] } : schema;
  }

  for (const method of methods) {
    if (method.methodKind !== "unary" && method.methodKind !== "server_streaming") continue;
    const rule = getOption(method, http);
    const bindings = [rule, ...rule.additionalBindings];
    bindings.forEach((binding, i) => {
      const route = toRoute(method, binding);
      if (!route) return;
      const operation = operationOf(method, route, i === 0 ? method.name : `${method.name}${i}`);
      paths[route.path] ??= {};
      paths[route.path]![route.verb] = operation;
    });
  }

  function operationOf(method: DescMethod, route: Route, operationId: string) {
    const input = method.input;
    const parameters: Schema[] = route.pathFields.map((name) => {
      const field = input.fields.find((f) => f.name === name)!;
      return withDescription(
        { name, in: "path", required: true, schema: queryValueSchema(field) },
        comment(`${input.typeName}.${name}`),
      );
    });
    if (route.body !== "*") {
      for (const field of input.fields) {
        if (route.pathFields.includes(field.name) || field.name === route.body) continue;
        const schema = queryParameterSchema(field);
        if (!schema) continue;
        parameters.push(
          withDescription(
            {
              name: field.name,
              in: "query",
              required: false,
              schema,
              ...(field.fieldKind === "list" ? { style: "form", explode: true } : {}),
            },
            comment(`${input.typeName}.${field.name}`),
          ),
        );
      }
    }
    let requestBody: Schema | undefined;
    if (route.body === "*") {
      const fields = input.fields.filter((f) => !route.pathFields.includes(f.name));
      if (fields.length > 0) {
        const schema =
          route.pathFields.length === 0
            ? ref(input, "request")
            : {
                type: "object",
                properties: Object.fromEntries(
                  fields.map((f) => [f.name, fieldSchema(f, "request")]),
                ),
                additionalProperties: false,
              };
        requestBody = {
          required: route.pathFields.length === 0,
          content: { "application/json": { schema } },
        };
      }
    } else if (route.body !== "") {
      const field = input.fields.find((f) => f.name === route.body)!;
      requestBody = {
        required: true,
        content: { "application/json": { schema: fieldSchema(field, "request") } },
      };
    }
    const output =
      route.responseBody === ""
        ? ref(method.output, "response")
        : fieldSchema(method.output.fields.find((f) => f.name === route.responseBody)!, "response");
    const errors = ["400", "401", "403"];
    if (route.pathFields.length > 0) errors.push("404");
    if (route.verb !== "get") errors.push("409");
    const streaming = method.methodKind === "server_streaming";
    const resumes = input.fields.some((f) => f.name === "after_cursor");
    if (resumes) errors.push("410");
    if (resumes) {
      parameters.push({
        name: "Last-Event-ID",
        in: "header",
        required: false,
        schema: { type: "string" },
        description:
          "Resume after this cursor (sent by a reconnecting EventSource); it overrides after_cursor.",
      });
    }
    const description = [
      comment(`${method.parent.typeName}.${method.name}`),
      streaming
        ? "Served as Server-Sent Events: one event per message, its data the message as JSON, its " +
          "id the cursor it carries, its name the job event's type (or heartbeat); an error after " +
          "the start is a last event named error. The same path upgrades to a WebSocket (one " +
          "message a frame; a browser offers the subprotocols jobqueue.v1 and " +
          "jobqueue.bearer.<key>)."
        : undefined,
    ]
      .filter((d) => d !== undefined)
      .join("\n\n");
    const schema = "anyOf" in output ? (output.anyOf as Schema[])[0]! : (output as Schema);
    return {
      operationId,
      tags: [route.path.split("/")[1]!.split(":")[0]!],
      ...(description ? { summary: firstSentence(description), description } : {}),
      ...(parameters.length > 0 ? { parameters } : {}),
      ...(requestBody ? { requestBody } : {}),
      responses: {
        "200": {
          description: streaming
            ? "Server-Sent Events; each event's data is one message, as JSON of this schema"
            : "OK",
          content: { [streaming ? "text/event-stream" : "application/json"]: { schema } },
        },
        ...Object.fromEntries(
          errors.map((status) => [status, { $ref: `#/components/responses/${status}` }]),
        ),
        default: { $ref: "#/components/responses/default" },
      },
    };
  }

  const codes = Object.values(Code)
    .filter((c): c is Code => typeof c === "number")
    .map(codeName);
  const errorResponse = (description: string) => ({
    description,
    content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } },
  });

  return {
    openapi: "3.1.0",
    info: {
      title: "JobQueue REST API",
      version: options.version,
      description: [
        ...services.map((s) => comment(s.typeName)),
        "",
        "Generated from the protobuf service and its google.api.http rules; the same API is served " +
          "over gRPC, gRPC-Web and Connect. JSON uses the proto field names, enums in lowercase " +
          'without their prefix ("queued"), null for anything unset, RFC 3339 UTC times, and free ' +
          "JSON for request and response bodies.",
      ]
        .filter((l) => l !== undefined)
        .join("\n"),
      license: { name: "MIT", identifier: "MIT" },
    },
    servers: [{ url: "http://127.0.0.1:8080", description: "A local server on the default port" }],
    // Without API keys configured (loopback only) calls need none; with keys, either header.
    security: [{}, { bearerAuth: [] }, { apiKeyHeader: [] }],
    tags: [...new Set(Object.keys(paths).map((p) => p.split("/")[1]!.split(":")[0]!))].map(
      (name) => ({ name }),
    ),
    paths,
    components: {
      schemas: {
        ...schemas,
        Error: {
          type: "object",
          description: "What every error answer carries.",
          properties: {
            code: {
              type: "string",
              enum: codes,
              description: "The gRPC status code's name in snake_case.",
            },
            message: { type: "string", description: "What is wrong, for a person." },
            field: {
              type: "string",
              description:
                'With invalid_argument: the field at fault, e.g. "url" or "jobs[2].url".',
            },
          },
          required: ["code", "message"],
          additionalProperties: false,
        },
      },
      responses: {
        ...Object.fromEntries(
          Object.entries(ERROR_RESPONSES).map(([status, d]) => [status, errorResponse(d)]),
        ),
        default: errorResponse("Another error (e.g. 429, 503), with the same body."),
      },
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description: "An API key as a bearer token.",
        },
        apiKeyHeader: { type: "apiKey", in: "header", name: "x-api-key" },
      },
    },
  };
}

type Mode = "request" | "response";

function reachable(message: DescMessage, seen: Set<string>) {
  if (seen.has(message.typeName) || message.typeName.startsWith(WKT)) return;
  seen.add(message.typeName);
  for (const field of message.fields) {
    if (field.message) reachable(field.message, seen);
  }
}

function toRoute(method: DescMethod, rule: HttpRule): Route | null {
  if (rule.pattern.case === undefined || rule.pattern.case === "custom") return null;
  const pathFields: string[] = [];
  const path = rule.pattern.value.replace(/\{([a-z_][a-z0-9_]*)(?:=\*)?\}/g, (_m, name: string) => {
    if (!method.input.fields.some((f) => f.name === name)) {
      throw new Error(`${method.name}: path variable {${name}} is not a request field`);
    }
    pathFields.push(name);
    return `{${name}}`;
  });
  const literal = path.replace(/\{[a-z_][a-z0-9_]*\}/g, "");
  if (literal.includes("{") || literal.includes("*")) {
    throw new Error(`${method.name}: unsupported path template ${rule.pattern.value}`);
  }
  return {
    verb: rule.pattern.case,
    path,
    pathFields,
    body: rule.body,
    responseBody: rule.responseBody,
  };
}

/** An enum as REST spells it: lowercase names without the type's shared prefix, no zero value. */
function enumSchema(desc: DescEnum, nullable: boolean): Schema {
  const prefix = desc.sharedPrefix ?? "";
  const names: (string | null)[] = desc.values
    .filter((v) => v.number !== 0)
    .map((v) => v.name.slice(prefix.length).toLowerCase());
  return nullable
    ? { type: ["string", "null"], enum: [...names, null] }
    : { type: "string", enum: names };
}

function scalarSchema(scalar: ScalarType): Schema {
  switch (scalar) {
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    case ScalarType.DOUBLE:
      return { type: "number", format: "double" };
    case ScalarType.FLOAT:
      return { type: "number", format: "float" };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { type: "integer", format: "int32" };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { type: "integer", minimum: 0, maximum: 4294967295 };
    default:
      // 64-bit integers: a number (the server answers a string only beyond 2^53).
      return { type: "integer", format: "int64" };
  }
}

function wellKnown(message: DescMessage, nullable: boolean): Schema {
  const n = (schema: Schema) => (nullable ? orNull(schema) : schema);
  switch (message.typeName) {
    case "google.protobuf.Timestamp":
      return n({ type: "string", format: "date-time" });
    case "google.protobuf.Duration":
      return n({ type: "string", pattern: "^-?[0-9]+(\\.[0-9]+)?s$" });
    case "google.protobuf.Value":
      return {}; // any JSON, null included
    case "google.protobuf.Struct":
      return n({ type: "object" });
    case "google.protobuf.ListValue":
      return n({ type: "array" });
    case "google.protobuf.Empty":
      return n({ type: "object", additionalProperties: false });
    default:
      throw new Error(`no OpenAPI mapping for ${message.typeName}`);
  }
}

/** A path parameter's schema (a scalar or an enum, never null). */
function queryValueSchema(field: DescField): Schema {
  if (field.fieldKind === "enum") return enumSchema(field.enum, false);
  if (field.fieldKind === "scalar") return scalarSchema(field.scalar);
  throw new Error(`${field.toString()}: a path variable must be a scalar or an enum`);
}

/** A query parameter's schema, or null for fields a query cannot carry (maps, messages). */
function queryParameterSchema(field: DescField): Schema | null {
  if (field.fieldKind === "list") {
    if (field.listKind === "enum") return { type: "array", items: enumSchema(field.enum, false) };
    if (field.listKind === "scalar") return { type: "array", items: scalarSchema(field.scalar) };
    return null;
  }
  if (field.fieldKind === "message") {
    return field.message.typeName === "google.protobuf.Timestamp"
      ? { type: "string", format: "date-time" }
      : null;
  }
  if (field.fieldKind === "map") return null;
  return queryValueSchema(field);
}

function orNull(schema: Schema): Schema {
  const type = schema.type;
  return { ...schema, type: Array.isArray(type) ? [...type, "null"] : [type, "null"] };
}

function withDescription(schema: Schema, description: string | undefined): Schema {
  return description ? { ...schema, description } : schema;
}

function firstSentence(text: string): string {
  const flat = text.replace(/\s+/g, " ").trim();
  const end = flat.search(/[.;:](\s|$)/);
  return end === -1 ? flat : flat.slice(0, end);
}

/** Connect's snake_case name of a code ("invalid_argument"), as the REST error body spells it. */
function codeName(code: Code): string {
  return Code[code]!.replace(/[A-Z]/g, (c, i) => (i === 0 ? c : `_${c}`)).toLowerCase();
}
