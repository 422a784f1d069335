import {
  create,
  type DescEnum,
  type DescField,
  type DescMessage,
  fromJson,
  type JsonObject,
  type JsonValue,
  type MessageShape,
  ScalarType,
  toJson,
} from "@bufbuild/protobuf";
import { InvalidArgumentError } from "../job/errors.js";
import { shownKey } from "./json-text.js";

/**
 * The seed's REST JSON, derived from the descriptors: proto field names (snake_case), enums in
 * lowercase without their prefix ("queued"), `null` for anything unset, 64-bit integers as
 * numbers. Well-known types keep their canonical JSON (RFC 3339 times, free JSON values).
 */

const WKT_PREFIX = "google.protobuf.";

/**
 * Encodes a message as REST JSON, in one pass over the message (profiled on GET /jobs?page_size=50:
 * protobuf's toJson followed by a second pass renaming its output took ~17% of the server's
 * time; this walks the descriptors once and builds only the answer).
 */
export function toRestJson<Desc extends DescMessage>(
  schema: Desc,
  message: MessageShape<Desc>,
): JsonValue {
  return messageOut(schema, message as unknown as Record<string, unknown>);
}

function messageOut(schema: DescMessage, message: Record<string, unknown>): JsonValue {
  if (schema.typeName.startsWith(WKT_PREFIX)) return wktOut(schema, message);
  let encode = encoders.get(schema);
  if (encode === undefined) {
    encode = compileMessageOut(schema);
    encoders.set(schema, encode);
  }
  return encode(message);
}

type Encoder = (message: Record<string, unknown>) => JsonObject;

/** Each message type's encoder, made on its first answer by {@link compileMessageOut}. */
const encoders = new WeakMap<DescMessage, Encoder>();

/**
 * The encoder of one message type: a single object literal with the JSON name of every field, in
 * the descriptor's order, each value from {@link fieldOut}. An answer object is then made with
 * all its keys at once and one hidden class per type, which JSON.stringify walks quickly too;
 * built one key at a time, a job's 45 fields were each a map transition (profiled on
 * GET /jobs?page_size=50, the loop was 10% of the server's time). The source is made from the
 * descriptor's own names, each JSON-quoted; a field named `__proto__` (which a literal would take
 * as the prototype) keeps the loop.
 */
function compileMessageOut(schema: DescMessage): Encoder {
  const fields = schema.fields;
  if (fields.some((f) => f.name === "__proto__")) {
    return (message) => {
      const out: JsonObject = {};
      for (const field of fields) {
        Object.defineProperty(out, field.name, {
          value: fieldOut(field, fieldValue(field, message)),
          enumerable: true,
          writable: true,
          configurable: true,
        });
      }
      return out;
    };
  }
  const entries = fields.map(
    (field, i) => `${JSON.stringify(field.name)}: out(f[${i}], read(f[${i}], m))`,
  );
  const make = new Function("f", "out", "read", `return (m) => ({ ${entries.join(", ")} });`);
  return make(fields, fieldOut, fieldValue) as Encoder;
}

/** A field's value in a message: its own, or its oneof's when the oneof holds it. */
function fieldValue(field: DescField, message: Record<string, unknown>): unknown {
  if (!field.oneof) return message[field.localName];
  const set = message[field.oneof.localName] as { case?: string; value?: unknown } | undefined;
  return set?.case === field.localName ? set.value : undefined;
}

function fieldOut(field: DescField, value: unknown): JsonValue {
  switch (field.fieldKind) {
    case "scalar":
      return value === undefined ? null : scalarToJson(field.scalar, value);
    case "enum":
      return value === undefined ? null : enumToJson(field.enum, value as number);
    case "message":
      return value === undefined || value === null
        ? null
        : messageOut(field.message, value as Record<string, unknown>);
    case "list":
      return (value as unknown[]).map((v) =>
        field.listKind === "enum"
          ? enumToJson(field.enum, v as number)
          : field.listKind === "message"
            ? messageOut(field.message, v as Record<string, unknown>)
            : scalarToJson(field.scalar, v),
      );
    case "map": {
      const out: JsonObject = {};
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        out[k] =
          field.mapKind === "enum"
            ? enumToJson(field.enum, v as number)
            : field.mapKind === "message"
              ? messageOut(field.message, v as Record<string, unknown>)
              : scalarToJson(field.scalar, v);
      }
      return out;
    }
  }
}

function wktOut(schema: DescMessage, message: Record<string, unknown>): JsonValue {
  if (schema.typeName === "google.protobuf.Timestamp") {
    return timestampOut(message as { seconds: bigint; nanos: number }, schema, message);
  }
  return toJson(schema, create(schema, message as never));
}

/** RFC 3339 dates ("YYYY-MM-DDT") by day since the epoch, made once per day seen. */
const datesOfDays = new Map<number, string>();

/**
 * RFC 3339 in UTC, with 0, 3, 6 or 9 fractional digits, as protobuf's JSON writes it. The date is
 * made once per day and the time of day by arithmetic: a job has six timestamps, and making each
 * through a Date, toISOString() and replace() took ~1 µs (0.2 µs this way).
 */
function timestampOut(
  ts: { seconds: bigint; nanos: number },
  schema: DescMessage,
  message: Record<string, unknown>,
): JsonValue {
  const seconds = Number(ts.seconds);
  const n = ts.nanos;
  if (n < 0 || n > 999_999_999 || !(seconds >= -62135596800 && seconds <= 253402300799)) {
    return toJson(schema, create(schema, message as never)); // which says what is wrong
  }
  const day = Math.floor(seconds / 86_400);
  let date = datesOfDays.get(day);
  if (date === undefined) {
    if (datesOfDays.size >= 1024) datesOfDays.clear();
    date = new Date(day * 86_400_000).toISOString().slice(0, 11);
    datesOfDays.set(day, date);
  }
  const t = seconds - day * 86_400;
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const s = t % 60;
  let z = "Z";
  if (n > 0) {
    if (n % 1_000_000 === 0) z = `.${String(n / 1_000_000 + 1000).slice(1)}Z`;
    else if (n % 1000 === 0) z = `.${String(n / 1000 + 1_000_000).slice(1)}Z`;
    else z = `.${String(n + 1_000_000_000).slice(1)}Z`;
  }
  return `${date}${h < 10 ? "0" : ""}${h}:${m < 10 ? "0" : ""}${m}:${s < 10 ? "0" : ""}${s}${z}`;
}

function enumToJson(desc: DescEnum, value: number): JsonValue {
  if (value === 0) return null;
  const v = desc.value[value];
  return v ? shortEnumName(desc, v.name) : value;
}

function scalarToJson(scalar: ScalarType, value: unknown): JsonValue {
  switch (typeof value) {
    case "bigint": {
      const n = Number(value);
      return Number.isSafeInteger(n) ? n : value.toString();
    }
    case "number":
      if (Number.isFinite(value)) return value;
      return Number.isNaN(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";
    case "string":
      return isInt64(scalar) ? scalarOut(scalar, value) : value;
    case "boolean":
      return value;
    default:
      if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
      return value as JsonValue;
  }
}

function shortEnumName(desc: DescEnum, name: string): string {
  const prefix = desc.sharedPrefix ?? "";
  return name.slice(prefix.length).toLowerCase();
}

function scalarOut(scalar: ScalarType, value: JsonValue): JsonValue {
  if (typeof value === "string" && isInt64(scalar)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  return value;
}

function isInt64(scalar: ScalarType): boolean {
  return (
    scalar === ScalarType.INT64 ||
    scalar === ScalarType.UINT64 ||
    scalar === ScalarType.SINT64 ||
    scalar === ScalarType.FIXED64 ||
    scalar === ScalarType.SFIXED64
  );
}

/**
 * Decodes REST JSON into a message. Accepts proto and JSON field names, lowercase enum names and
 * `null` for "unset"; rejects unknown fields and wrong types with an {@link InvalidArgumentError}
 * naming the field.
 */
export function fromRestJson<Desc extends DescMessage>(
  schema: Desc,
  json: unknown,
  path = "",
): MessageShape<Desc> {
  const normalized = normalize(schema, json, path);
  try {
    return fromJson(schema, normalized, { ignoreUnknownFields: false });
  } catch {
    const { field, problem } = explainJsonError(schema, normalized, path);
    throw new InvalidArgumentError(field, problem);
  }
}

/**
 * Finds where a JSON message that does not decode goes wrong, by decoding its fields one at a
 * time and descending into the one at fault: `{field: "jobs[0].timeout_sec", problem: "must be a
 * number (got \"x\")"}`. Accepts proto and JSON field names; names fields by their proto names.
 */
export function explainJsonError(
  schema: DescMessage,
  json: unknown,
  path = "",
): { field: string; problem: string } {
  const here = path.replace(/\.$/, "") || "body";
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return { field: here, problem: "must be a JSON object" };
  }
  const seen = new Map<string, string>();
  for (const [key, value] of Object.entries(json as JsonObject)) {
    const field = fieldsByKey(schema).get(key);
    if (!field) return { field: path + shownKey(key), problem: "unknown field" };
    const twice = seen.get(field.name);
    if (twice !== undefined) {
      return { field: path + field.name, problem: `is given twice (as ${twice} and ${key})` };
    }
    seen.set(field.name, key);
    if (decodes(schema, { [key]: value })) continue;
    const at = path + field.name;
    if (field.fieldKind === "message" && !field.message.typeName.startsWith(WKT_PREFIX)) {
      if (value !== null) return explainJsonError(field.message, value, `${at}.`);
    }
    if (field.fieldKind === "list" && Array.isArray(value)) {
      if (field.listKind === "message" && !field.message.typeName.startsWith(WKT_PREFIX)) {
        for (const [i, item] of value.entries()) {
          if (!decodes(field.message, item)) {
            return explainJsonError(field.message, item, `${at}[${i}].`);
          }
        }
      }
    }
    return { field: at, problem: describeBadValue(field, value) };
  }
  return { field: here, problem: "is not a valid request" };
}

function decodes(schema: DescMessage, json: JsonValue): boolean {
  try {
    fromJson(schema, json, { ignoreUnknownFields: false });
    return true;
  } catch {
    return false;
  }
}

function normalize(schema: DescMessage, json: unknown, path: string): JsonObject {
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new InvalidArgumentError(path.replace(/\.$/, "") || "body", "must be a JSON object");
  }
  const out: JsonObject = {};
  const byKey = fieldsByKey(schema);
  const given = json as JsonObject;
  for (const key in given) {
    if (!Object.hasOwn(given, key)) continue;
    const field = byKey.get(key);
    if (!field) throw new InvalidArgumentError(path + shownKey(key), "unknown field");
    // A field is named twice only as both its names; the first of the two met is `key`.
    const other = key === field.name ? field.jsonName : field.name;
    if (other !== key && Object.hasOwn(given, other)) {
      throw new InvalidArgumentError(path + field.name, `is given twice (as ${key} and ${other})`);
    }
    const value = given[key]!;
    if (value === null && !isValueField(field)) continue;
    out[field.name] = normalizeField(field, value, `${path}${field.name}`);
  }
  for (const oneof of schema.oneofs) {
    const set = oneof.fields.filter((f) => f.name in out);
    if (set.length > 1) {
      throw new InvalidArgumentError(
        path + set[1]!.name,
        `only one of ${set.map((f) => f.name).join(" and ")} may be set`,
      );
    }
  }
  return out;
}

/** Each message type's fields by their proto and JSON names. */
const fieldMaps = new WeakMap<DescMessage, Map<string, DescField>>();

function fieldsByKey(schema: DescMessage): Map<string, DescField> {
  let map = fieldMaps.get(schema);
  if (map === undefined) {
    map = new Map();
    for (const f of schema.fields) map.set(f.jsonName, f);
    // Should a JSON name be another field's proto name (protoc refuses such a clash), the proto
    // name wins.
    for (const f of schema.fields) map.set(f.name, f);
    fieldMaps.set(schema, map);
  }
  return map;
}

function isValueField(field: DescField): boolean {
  return field.fieldKind === "message" && field.message.typeName === "google.protobuf.Value";
}

function normalizeField(field: DescField, value: JsonValue, path: string): JsonValue {
  switch (field.fieldKind) {
    case "enum":
      return enumIn(field.enum, value);
    case "list":
      if (!Array.isArray(value)) throw new InvalidArgumentError(path, "must be a JSON array");
      if (field.listKind === "enum") return value.map((v) => enumIn(field.enum, v));
      if (field.listKind === "message" && !field.message.typeName.startsWith(WKT_PREFIX)) {
        return value.map((v, i) => normalize(field.message, v, `${path}[${i}].`));
      }
      return value;
    case "map":
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        throw new InvalidArgumentError(path, "must be a JSON object");
      }
      return value;
    case "message":
      if (field.message.typeName.startsWith(WKT_PREFIX)) return value;
      return normalize(field.message, value, `${path}.`);
    default:
      return value;
  }
}

function enumIn(desc: DescEnum, value: JsonValue): JsonValue {
  if (typeof value !== "string") return value;
  const prefix = (desc.sharedPrefix ?? "").toUpperCase();
  const full = value.toUpperCase().startsWith(prefix) ? value : prefix + value.toUpperCase();
  const match = desc.values.find((v) => v.name === full || v.name === value);
  // The zero value means "not set"; naming it is not a choice, so it reads as unknown.
  return match && match.number !== 0 ? match.name : value;
}

/**
 * Fields whose values may hold secrets: an error about one does not show the value (a signing
 * secret; headers, which may be secret ones; URLs, which may carry credentials).
 */
const SECRET_FIELDS = new Set(["signing_secret", "headers", "url", "callback_url"]);

/** Says what a field expects, for a value that does not fit it. */
function describeBadValue(field: DescField, value: unknown): string {
  const shown = JSON.stringify(value) ?? String(value);
  // A secret's value is never echoed, not even a wrongly typed one: messages reach clients and logs.
  const got = SECRET_FIELDS.has(field.name)
    ? "(value not shown)"
    : `(got ${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown})`;
  const kind = field.fieldKind === "list" || field.fieldKind === "map" ? field.fieldKind : null;
  const elem = field.fieldKind === "list" ? field.listKind : field.fieldKind;
  const each = kind === "list" ? "each item " : kind === "map" ? "each value " : "";
  if (elem === "enum" && field.enum) {
    const names = field.enum.values
      .filter((v) => v.number !== 0)
      .map((v) => shortEnumName(field.enum!, v.name));
    return `${each}must be one of ${names.join(", ")} ${got}`;
  }
  if (elem === "message" && field.message?.typeName === "google.protobuf.Timestamp") {
    return `${each}must be an RFC 3339 time such as "2025-09-22T14:00:00Z" ${got}`;
  }
  if ((elem === "scalar" || kind === "map") && field.scalar !== undefined) {
    return `${each}must be ${scalarNoun(field.scalar)} ${got}`;
  }
  return `has an invalid value ${got}`;
}

function scalarNoun(scalar: ScalarType): string {
  switch (scalar) {
    case ScalarType.STRING:
      return "a string";
    case ScalarType.BOOL:
      return "true or false";
    case ScalarType.BYTES:
      return "base64 data";
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return "a number";
    default:
      return "an integer in range";
  }
}

/**
 * Converts query parameters (strings, possibly repeated) to JSON typed by the fields they name,
 * so that `?status=queued&status=running&page_size=10` decodes like its JSON equivalent.
 */
export function queryToJson(schema: DescMessage, query: URLSearchParams): JsonObject {
  const out: JsonObject = {};
  for (const key of new Set(query.keys())) {
    const field = fieldsByKey(schema).get(key);
    if (!field) throw new InvalidArgumentError(shownKey(key), "unknown query parameter");
    const values = query.getAll(key);
    if (field.fieldKind === "list") {
      out[field.name] = values
        .flatMap((v) => v.split(","))
        .filter((v) => v !== "")
        .map((v) => (field.listKind === "scalar" ? scalarFromString(field.scalar, v, key) : v));
    } else if (field.fieldKind === "scalar") {
      if (values.length > 1) throw new InvalidArgumentError(key, "must not be repeated");
      out[field.name] = scalarFromString(field.scalar, values[0]!, key);
    } else if (field.fieldKind === "enum" || field.fieldKind === "message") {
      if (values.length > 1) throw new InvalidArgumentError(key, "must not be repeated");
      out[field.name] = values[0]!;
    } else {
      throw new InvalidArgumentError(key, "cannot be given as a query parameter");
    }
  }
  return out;
}

function scalarFromString(scalar: ScalarType, raw: string, key: string): JsonValue {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return raw;
    case ScalarType.BOOL:
      if (raw === "true" || raw === "false") return raw === "true";
      throw new InvalidArgumentError(key, "must be true or false");
    default: {
      const n = Number(raw);
      if (raw.trim() === "" || !Number.isFinite(n)) {
        throw new InvalidArgumentError(key, `must be a number (got ${JSON.stringify(raw)})`);
      }
      return n;
    }
  }
}
