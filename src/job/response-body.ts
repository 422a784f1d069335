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
    if (text && !truncated && parsesAsJson(body)) return "json";
    return text ? "text" : "base64";
  }
  if (TEXT_TYPE.test(mime) || hasCharset) return text ? "text" : "base64";
  return "base64";
}

/** The body as a JSON value for clients: the parsed JSON, the text, or the base64 string. */
export function presentBody(body: Uint8Array, encoding: BodyEncoding): JsonValue {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  switch (encoding) {
    case "json":
      return JSON.parse(buf.toString("utf8")) as JsonValue;
    case "text":
      return buf.toString("utf8");
    case "base64":
      return buf.toString("base64");
  }
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
