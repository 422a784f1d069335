import { describe, expect, it } from "vitest";
import {
  chooseBodyEncoding,
  fitsAsJson,
  presentBody,
  presentResponseBody,
} from "../../src/job/response-body.js";
import type { BodyEncoding } from "../../src/job/types.js";

const utf8 = (s: string) => new TextEncoder().encode(s);
const bytes = (...b: number[]) => Uint8Array.from(b);

/** "héllo €" cut inside the euro sign (E2 82 AC): the first two of its three bytes. */
const cutMidCharacter = utf8("héllo €").subarray(0, -1);
/** A PNG signature: not UTF-8 (0x89 is a lone continuation byte). */
const png = bytes(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);

describe("chooseBodyEncoding", () => {
  const table: {
    name: string;
    contentType: string | undefined;
    body: Uint8Array;
    truncated?: boolean;
    expected: BodyEncoding;
  }[] = [
    {
      name: "valid application/json",
      contentType: "application/json",
      body: utf8('{"a":1}'),
      expected: "json",
    },
    {
      name: "application/json with a charset",
      contentType: "application/json; charset=utf-8",
      body: utf8("[1,2]"),
      expected: "json",
    },
    {
      name: "upper-case APPLICATION/JSON",
      contentType: "APPLICATION/JSON",
      body: utf8('"x"'),
      expected: "json",
    },
    {
      name: "application/problem+json",
      contentType: "application/problem+json",
      body: utf8('{"title":"Not Found","status":404}'),
      expected: "json",
    },
    { name: "text/json", contentType: "text/json", body: utf8("true"), expected: "json" },
    {
      name: "JSON with no content-type",
      contentType: undefined,
      body: utf8('{"ok":true}'),
      expected: "json",
    },
    {
      name: "JSON with an empty content-type",
      contentType: "",
      body: utf8("42"),
      expected: "json",
    },
    {
      name: "application/json that does not parse",
      contentType: "application/json",
      body: utf8("<html>oops</html>"),
      expected: "text",
    },
    {
      name: "application/json that is not UTF-8",
      contentType: "application/json",
      body: png,
      expected: "base64",
    },
    {
      name: "text/html",
      contentType: "text/html; charset=utf-8",
      body: utf8("<p>hi</p>"),
      expected: "text",
    },
    {
      name: "text/html that happens to be valid JSON",
      contentType: "text/html",
      body: utf8("123"),
      expected: "text",
    },
    { name: "text/plain", contentType: "text/plain", body: utf8("héllo"), expected: "text" },
    {
      name: "application/xml",
      contentType: "application/xml",
      body: utf8("<a/>"),
      expected: "text",
    },
    {
      name: "an unknown type with a charset",
      contentType: "application/x-custom; charset=utf-8",
      body: utf8("abc"),
      expected: "text",
    },
    {
      name: "text/plain with invalid UTF-8",
      contentType: "text/plain",
      body: bytes(0x61, 0xff, 0x62),
      expected: "base64",
    },
    {
      name: "application/octet-stream",
      contentType: "application/octet-stream",
      body: bytes(0, 1, 2, 255),
      expected: "base64",
    },
    {
      name: "application/octet-stream even when the bytes are text",
      contentType: "application/octet-stream",
      body: utf8("plain text"),
      expected: "base64",
    },
    { name: "image/png", contentType: "image/png", body: png, expected: "base64" },
    {
      name: "binary with no content-type",
      contentType: undefined,
      body: png,
      expected: "base64",
    },
    {
      name: "truncated JSON",
      contentType: "application/json",
      body: utf8('{"items":[1,2,'),
      truncated: true,
      expected: "text",
    },
    {
      name: "JSON cut by the cap that still parses",
      contentType: "application/json",
      body: utf8("12"),
      truncated: true,
      expected: "text",
    },
    {
      name: "truncated UTF-8 cut mid-character",
      contentType: "text/plain",
      body: cutMidCharacter,
      truncated: true,
      expected: "text",
    },
    {
      name: "truncated UTF-8 cut mid-character with no content-type",
      contentType: undefined,
      body: cutMidCharacter,
      truncated: true,
      expected: "text",
    },
    {
      name: "the same bytes, not truncated, are not text",
      contentType: "text/plain",
      body: cutMidCharacter,
      truncated: false,
      expected: "base64",
    },
    {
      name: "empty body with no content-type",
      contentType: undefined,
      body: bytes(),
      expected: "text",
    },
    {
      name: "empty body with application/json",
      contentType: "application/json",
      body: bytes(),
      expected: "text",
    },
  ];

  it.each(table)("$name → $expected", ({ contentType, body, truncated, expected }) => {
    expect(chooseBodyEncoding(contentType, body, truncated ?? false)).toBe(expected);
  });
});

describe("presentBody", () => {
  it("json: the parsed value", () => {
    expect(presentBody(utf8('{"message":"hello","n":[1,null]}'), "json")).toEqual({
      message: "hello",
      n: [1, null],
    });
    expect(presentBody(utf8('"just a string"'), "json")).toBe("just a string");
  });

  it("text: the UTF-8 string", () => {
    expect(presentBody(utf8("héllo €"), "text")).toBe("héllo €");
    expect(presentBody(bytes(), "text")).toBe("");
  });

  it("text: an incomplete last character reads as a replacement character", () => {
    expect(presentBody(cutMidCharacter, "text")).toBe("héllo \uFFFD");
  });

  it("base64: the bytes in standard base64", () => {
    expect(presentBody(bytes(0, 1, 2, 255), "base64")).toBe("AAEC/w==");
    expect(presentBody(png, "base64")).toBe("iVBORw0KGgo=");
  });

  it("reads only the view's bytes, not the whole underlying buffer", () => {
    const whole = utf8('xx{"a":1}yy');
    const view = whole.subarray(2, 9);
    expect(presentBody(view, "json")).toEqual({ a: 1 });
    expect(presentBody(view, "text")).toBe('{"a":1}');
    expect(presentBody(view, "base64")).toBe(Buffer.from('{"a":1}').toString("base64"));
  });

  it("round-trips: what chooseBodyEncoding picks, presentBody can present", () => {
    const cases: [string | undefined, Uint8Array][] = [
      ["application/json", utf8('{"a":[1,2]}')],
      ["text/plain", utf8("hi")],
      ["image/png", png],
    ];
    const presented = cases.map(([type, body]) =>
      presentBody(body, chooseBodyEncoding(type, body, false)),
    );
    expect(presented).toEqual([{ a: [1, 2] }, "hi", "iVBORw0KGgo="]);
  });
});

describe("bodies a client cannot take as JSON", () => {
  const nested = (depth: number, open = "[", close = "]") =>
    utf8(`${open.repeat(depth)}1${close.repeat(depth)}`);

  it("keeps JSON up to 32 levels and 100,000 values as JSON", () => {
    expect(fitsAsJson(nested(32))).toBe(true);
    expect(fitsAsJson(nested(33))).toBe(false);
    expect(fitsAsJson(utf8(`[${"0,".repeat(99_999)}0]`))).toBe(true);
    expect(fitsAsJson(utf8(`[${"0,".repeat(100_000)}0]`))).toBe(false);
    // brackets and commas inside strings are text, escaped quotes do not end them
    expect(fitsAsJson(utf8(JSON.stringify({ s: `\\"${"[,".repeat(100_000)}` })))).toBe(true);
  });

  it("stores a deep JSON response as text", () => {
    expect(chooseBodyEncoding("application/json", nested(33), false)).toBe("text");
    expect(chooseBodyEncoding("application/json", nested(32), false)).toBe("json");
  });

  it("shows a deep body stored as JSON (before the rule) as text, marked so", () => {
    expect(presentResponseBody(nested(10_000), "json")).toEqual({
      encoding: "text",
      value: Buffer.from(nested(10_000)).toString("utf8"),
    });
    expect(presentResponseBody(nested(2), "json")).toEqual({ encoding: "json", value: [[1]] });
  });
});
