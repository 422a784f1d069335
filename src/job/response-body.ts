import { isUtf8 } from "node:buffer";
import type { BodyEncoding, JsonValue } from "./types.js";

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json$|^text\/json$/;
const TEXT_TYPE =
  /^text\/|^application\/(?:[\w.+-]+\+)?xml$|^application\/(?:javascript|ecmascript|x-www-form-urlencoded|graphql|yaml|x-yaml|x-ndjson)$/;

/**
 * Chooses how a response body is presented: parsed JSON when it is JSON, a string when it is
 * text, base64 otherwise. A JSON body cut by the size cap is no longer JSON, so it reads as text.
 */
export function chooseBodyEncoding(
  contentType: string | undefined,
  body: Uint8Array,
  truncated: boolean,
): BodyEncoding {
  const mime = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  const hasCharset = /;\s*charset=/i.test(contentType ?? "");
  const text = isText(body, truncated);
  if (JSON_TYPE.test(mime) || mime === "") {
    if (text && !truncated && parsesAsJson(body) && fitsAsJson(body)) return "json";
    return text ? "text" : "base64";
  }
  if (TEXT_TYPE.test(mime) || hasCharset) return text ? "text" : "base64";
  return "base64";
}

/**
 * The most a body shown as JSON may nest (objects and arrays) and hold (values). Every JSON level
 * is two to three protobuf messages once a body travels as a google.protobuf.Value (Value, then
 * Struct and its map entry, or ListValue), and the clients we test stop at 100 nested messages:
 * protobuf-es (the generated TypeScript client) from 50 levels, Python's upb from about 33. At
 * 32 levels every one of them reads it. 100,000 values keep the decoded tree, and a 1 MiB result's
 * binary form, within what gRPC clients accept by default (4 MiB).
 */
export const JSON_BODY_MAX_DEPTH = 32;
export const JSON_BODY_MAX_VALUES = 100_000;

/** How a stored body is shown: its encoding (which may fall back from json to text) and value. */
export interface PresentedBody {
  encoding: BodyEncoding;
  value: JsonValue;
}

/**
 * The body as clients see it: the parsed JSON, the text, or the base64 string. A body stored as
 * JSON that nests or holds more than {@link JSON_BODY_MAX_DEPTH} / {@link JSON_BODY_MAX_VALUES}
 * is shown as text, marked so: decided at read time, so results stored before the rule existed
 * read the same way.
 */
export function presentResponseBody(body: Uint8Array, encoding: BodyEncoding): PresentedBody {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  switch (encoding) {
    case "json":
      if (!fitsAsJson(body)) return { encoding: "text", value: buf.toString("utf8") };
      return { encoding, value: JSON.parse(buf.toString("utf8")) as JsonValue };
    case "text":
      return { encoding, value: buf.toString("utf8") };
    case "base64":
      return { encoding, value: buf.toString("base64") };
  }
}

/** The value {@link presentResponseBody} shows. */
export function presentBody(body: Uint8Array, encoding: BodyEncoding): JsonValue {
  return presentResponseBody(body, encoding).value;
}

/**
 * Whether JSON text stays within {@link JSON_BODY_MAX_DEPTH} and {@link JSON_BODY_MAX_VALUES}. Reads
 * only its structure (brackets, commas and where strings start and end), without recursion.
 */
export function fitsAsJson(body: Uint8Array): boolean {
  let depth = 0;
  let values = 1;
  const n = body.byteLength;
  for (let i = 0; i < n; i++) {
    const c = body[i]!;
    if (c === 0x22 /* " */) {
      for (i++; i < n && body[i] !== 0x22; i++) if (body[i] === 0x5c /* \ */) i++;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > JSON_BODY_MAX_DEPTH) return false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */) {
      if (++values > JSON_BODY_MAX_VALUES) return false;
    }
  }
  return true;
}

function isText(body: Uint8Array, truncated: boolean): boolean {
  if (isUtf8(body)) return true;
  if (!truncated) return false;
  // The cap may have cut a multi-byte character in two: forgive exactly that incomplete tail.
  const cut = incompleteTail(body);
  return cut > 0 && isUtf8(body.subarray(0, body.byteLength - cut));
}

/** The length of a UTF-8 sequence started but not finished at the end of `body`, or 0. */
function incompleteTail(body: Uint8Array): number {
  for (let back = 1; back <= Math.min(3, body.byteLength); back++) {
    const byte = body[body.byteLength - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: keep looking for the lead
    const need = byte >= 0xf0 && byte <= 0xf4 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc2 ? 2 : 0;
    return need > back ? back : 0;
  }
  return 0;
}

function parsesAsJson(body: Uint8Array): boolean {
  if (body.byteLength === 0) return false;
  try {
    JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
    return true;
  } catch {
    return false;
  }
}
