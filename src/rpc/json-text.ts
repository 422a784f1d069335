import type { JsonValue } from "@bufbuild/protobuf";
import { InvalidArgumentError } from "../job/errors.js";

/** How deep a request's JSON may nest (objects and arrays), on every protocol. */
export const REQUEST_JSON_MAX_DEPTH = 64;

/**
 * Parses a JSON request body strictly and the same way for every protocol: malformed JSON, a key
 * given twice in one object and nesting deeper than `maxDepth` are refused with an
 * {@link InvalidArgumentError} naming where (`body`, `jobs[0].url`, …). `JSON.parse` alone keeps
 * the last of two equal keys silently and lets a deep document through to code that recurses.
 */
export function parseJsonStrict(text: string, maxDepth = REQUEST_JSON_MAX_DEPTH): JsonValue {
  let value: JsonValue;
  try {
    value = JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new InvalidArgumentError("body", `malformed JSON: ${(err as Error).message}`);
  }
  if (typeof value === "object" && value !== null) checkJsonText(text, maxDepth);
  return value;
}

interface Frame {
  /** Keys seen so far; null for an array. */
  keys: Set<string> | null;
  /** The current key (objects; null before the first) or index (arrays). */
  at: string | number | null;
  expectKey: boolean;
}

/**
 * Walks the text of a document JSON.parse accepted, looking only at structure: keys, brackets and
 * commas. Strings are skipped with indexOf, so the walk costs little beside the parse.
 */
function checkJsonText(text: string, maxDepth: number): void {
  const stack: Frame[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        j = text.indexOf('"', j);
        let backslashes = 0;
        for (let k = j - 1; text.charCodeAt(k) === 92; k--) backslashes++;
        if (backslashes > 0) escaped = true;
        if (backslashes % 2 === 0) break;
        j++;
      }
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.keys.has(key)) {
          throw new InvalidArgumentError(pathOf(stack, key), "is given twice");
        }
        top.keys.add(key);
        top.at = key;
        top.expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 123 /* { */ || c === 91 /* [ */) {
      if (stack.length >= maxDepth) {
        throw new InvalidArgumentError(
          pathOf(stack) || "body",
          `nests deeper than ${maxDepth} levels of JSON`,
        );
      }
      stack.push(
        c === 123
          ? { keys: new Set(), at: null, expectKey: true }
          : { keys: null, at: 0, expectKey: false },
      );
    } else if (c === 125 /* } */ || c === 93 /* ] */) {
      stack.pop();
    } else if (c === 44 /* , */) {
      const top = stack[stack.length - 1]!;
      if (top.keys) top.expectKey = true;
      else (top.at as number)++;
    }
    i++;
  }
}

/** `jobs[0].body.a`, from the frames open so far (and a key about to be added). */
function pathOf(stack: Frame[], key?: string): string {
  let path = "";
  for (const frame of stack) {
    if (frame.keys) {
      if (frame.at !== null && !(frame === stack[stack.length - 1] && key !== undefined)) {
        const shown = shownKey(frame.at as string);
        path += path === "" ? shown : `.${shown}`;
      }
    } else {
      path += `[${frame.at}]`;
    }
  }
  if (key !== undefined) path += path === "" ? shownKey(key) : `.${shownKey(key)}`;
  return path;
}

/** A key as a path shows it: as it is when it reads as a name, else quoted (`"a b"`, `""`). */
export function shownKey(key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? key : JSON.stringify(key);
}
