import {
  create,
  createFileRegistry,
  type DescEnum,
  type DescField,
  type DescMessage,
  fromJson,
  type JsonObject,
  type JsonValue,
  ScalarType,
  toJson,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorProtoSchema,
  TimestampSchema,
  timestampFromMs,
  ValueSchema,
} from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  AttemptOutcome,
  AttemptSchema,
  AuditEventSchema,
  BodyEncoding,
  JobSchema,
  JobStatus,
} from "../../gen/jobqueue/v1/job_pb.js";
import {
  EnqueueJobRequestSchema,
  GetJobResultResponseSchema,
  ListJobAttemptsResponseSchema,
} from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { fromRestJson, toRestJson } from "../../src/rpc/rest-json.js";

/**
 * The one-pass REST encoder against the two-pass one it replaced (protobuf's canonical JSON with
 * proto names and implicit fields, then renamed: enums short and lowercase, nulls for unset,
 * 64-bit integers as numbers), kept here as the oracle.
 */
function oracle(schema: DescMessage, message: unknown): JsonValue {
  const json = toJson(schema, message as never, {
    useProtoFieldName: true,
    alwaysEmitImplicit: true,
  });
  return restify(schema, json);
}
function restify(schema: DescMessage, json: JsonValue): JsonValue {
  if (schema.typeName.startsWith("google.protobuf.")) return json;
  const obj = (json ?? {}) as JsonObject;
  const out: JsonObject = {};
  for (const field of schema.fields) {
    const value = obj[field.name];
    out[field.name] =
      value === undefined
        ? field.fieldKind === "list"
          ? []
          : field.fieldKind === "map"
            ? {}
            : null
        : restifyField(field, value);
  }
  return out;
}
function restifyField(field: DescField, value: JsonValue): JsonValue {
  const one = (kind: string, v: JsonValue, f: DescField) =>
    kind === "enum"
      ? enumOut(f.enum!, v)
      : kind === "message"
        ? restify(f.message!, v)
        : scalarOut(f.scalar!, v);
  switch (field.fieldKind) {
    case "list":
      return (value as JsonValue[]).map((v) => one(field.listKind, v, field));
    case "map":
      return Object.fromEntries(
        Object.entries(value as JsonObject).map(([k, v]) => [k, one(field.mapKind, v, field)]),
      );
    default:
      return one(field.fieldKind, value, field);
  }
}
function enumOut(desc: DescEnum, value: JsonValue): JsonValue {
  if (typeof value !== "string") return value;
  const v = desc.values.find((x) => x.name === value);
  if (!v || v.number === 0) return null;
  return v.name.slice((desc.sharedPrefix ?? "").length).toLowerCase();
}
function scalarOut(scalar: ScalarType | undefined, value: JsonValue): JsonValue {
  const int64 = [
    ScalarType.INT64,
    ScalarType.UINT64,
    ScalarType.SINT64,
    ScalarType.FIXED64,
    ScalarType.SFIXED64,
  ];
  if (typeof value === "string" && scalar !== undefined && int64.includes(scalar)) {
    const n = Number(value);
    return Number.isSafeInteger(n) ? n : value;
  }
  return value;
}

const ts = (ms: number, nanos?: number) => ({
  ...timestampFromMs(ms),
  ...(nanos === undefined ? {} : { nanos }),
});

const CASES: [string, DescMessage, unknown][] = [
  ["an empty job", JobSchema, create(JobSchema)],
  [
    "a full job",
    JobSchema,
    create(JobSchema, {
      jobId: "j_01HXYZ0000000000000000000A",
      status: JobStatus.RUNNING,
      attempt: 2,
      maxAttempts: 3,
      priority: -5,
      scheduledAt: ts(1_700_000_000_000),
      createdAt: ts(1_700_000_000_123),
      startedAt: ts(1_700_000_000_000, 123_456_000),
      finishedAt: ts(1_700_000_000_000, 123_456_789),
      method: "POST",
      url: "https://example.com/x",
      timeoutSec: 1.5,
      tags: ["a", "b"],
      headers: { "x-a": "1", authorization: "***" },
      secretHeaders: ["authorization"],
      followRedirects: true,
      params: { q: "1" },
      payload: {
        case: "body",
        value: fromJson(ValueSchema, { a: [1, null, { b: "c" }], d: true }),
      },
      ttlSeconds: 60,
      lastError: "boom",
    }),
  ],
  [
    "a job with bytes",
    JobSchema,
    create(JobSchema, { payload: { case: "bodyBytes", value: new Uint8Array([0, 1, 255]) } }),
  ],
  [
    "a result",
    GetJobResultResponseSchema,
    create(GetJobResultResponseSchema, {
      jobId: "j_x",
      status: JobStatus.SUCCEEDED,
      responseStatus: 200,
      responseHeaders: { "content-type": "application/json" },
      responseBody: fromJson(ValueSchema, "text"),
      responseBodyEncoding: BodyEncoding.TEXT,
      durationMs: 12,
      attempt: 1,
      finishedAt: ts(0),
    }),
  ],
  [
    "attempts",
    ListJobAttemptsResponseSchema,
    create(ListJobAttemptsResponseSchema, {
      jobId: "j_x",
      attempts: [
        create(AttemptSchema, {
          attempt: 1,
          outcome: AttemptOutcome.FAILED,
          retryable: true,
          durationMs: 3,
        }),
      ],
    }),
  ],
  [
    "an audit event with a safe id",
    AuditEventSchema,
    create(AuditEventSchema, { id: 42n, time: ts(5), action: "CancelJob" }),
  ],
  [
    "an audit event with a huge id",
    AuditEventSchema,
    create(AuditEventSchema, { id: 2n ** 60n, action: "x" }),
  ],
];

describe("toRestJson", () => {
  it.each(CASES)("encodes %s as the two-pass encoder did", (_name, schema, message) => {
    const json = toRestJson(schema, message as never);
    expect(json).toEqual(oracle(schema, message));
    // In the descriptor's field order, as the seed's examples show them.
    expect(Object.keys(json as JsonObject)).toEqual(schema.fields.map((f) => f.name));
  });

  it("writes timestamps as protobuf's JSON does, from year 1 to 9999, at every precision", () => {
    // A fixed sequence (xorshift), so a failure names the same timestamps every run.
    let x = 20261201;
    const next = (n: number) => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    const min = -62135596800; // 0001-01-01T00:00:00Z
    const max = 253402300799; // 9999-12-31T23:59:59Z
    const seconds = [min, max, -1, 0, 951782400 /* 2000-02-29 */, 4107542399, 1_764_547_199];
    for (let i = 0; i < 5000; i++) seconds.push(min + next(max - min) + next(2));
    const nanos = [0, 1, 999_999_999, 5_000_000, 120_000, 123_456_789];
    for (const [i, s] of seconds.entries()) {
      const random = [next(1000) * 1_000_000, next(1_000_000) * 1000, next(1_000_000_000)];
      for (const n of [...nanos, ...random]) {
        const t = create(TimestampSchema, { seconds: BigInt(s), nanos: n });
        const json = toRestJson(JobSchema, create(JobSchema, { createdAt: t })) as JsonObject;
        if (json.created_at !== toJson(TimestampSchema, t)) {
          expect({ i, s, n, got: json.created_at }).toEqual({
            i,
            s,
            n,
            got: toJson(TimestampSchema, t),
          });
        }
      }
    }
  });

  it("writes a field named __proto__ as a field, not as the answer's prototype", () => {
    const string = (name: string, number: number) => ({
      name,
      number,
      type: FieldDescriptorProto_Type.STRING,
      label: FieldDescriptorProto_Label.OPTIONAL,
      jsonName: name,
    });
    const file = create(FileDescriptorProtoSchema, {
      name: "t.proto",
      package: "t",
      syntax: "proto3",
      messageType: [{ name: "M", field: [string("__proto__", 1), string("b", 2)] }],
    });
    const schema = createFileRegistry(file, () => undefined).getMessage("t.M")!;
    const message = create(schema) as unknown as Record<string, unknown>;
    message[schema.fields[0]!.localName] = "x";
    message.b = "y";
    const json = toRestJson(schema, message as never);
    expect(JSON.stringify(json)).toBe('{"__proto__":"x","b":"y"}');
    expect(Object.getPrototypeOf(json)).toBe(Object.prototype);
  });
});

describe("fromRestJson", () => {
  it("names a wrongly typed secret's, header's or URL's field without echoing its value", () => {
    const secret = "whsec_c2VjcmV0LXZhbHVlLW5ldmVyLXNob3du";
    for (const value of [[secret], { s: secret }]) {
      expect(() =>
        fromRestJson(EnqueueJobRequestSchema, { url: "https://x.test/", signing_secret: value }),
      ).toThrow(/^signing_secret: must be a string \(value not shown\)$/);
    }
    // Nor a header's (it may be a secret one) or a URL's (it may carry credentials).
    expect(() =>
      fromRestJson(EnqueueJobRequestSchema, {
        url: "https://x.test/",
        headers: { authorization: [`Bearer ${secret}`] },
      }),
    ).toThrow(/^headers: each value must be a string \(value not shown\)$/);
    expect(() =>
      fromRestJson(EnqueueJobRequestSchema, { url: [`https://u:${secret}@x.test/`] }),
    ).toThrow(/^url: must be a string \(value not shown\)$/);
    // Other fields still show what they got.
    expect(() => fromRestJson(EnqueueJobRequestSchema, { timeout_sec: "x" })).toThrow(
      /\(got "x"\)/,
    );
  });
});

describe("fromRestJson field names", () => {
  it("takes a field by its proto name or its JSON name, and refuses both at once, even with one null", () => {
    const byProto = fromRestJson(EnqueueJobRequestSchema, {
      url: "https://x.test/",
      timeout_sec: 7,
    });
    const byJson = fromRestJson(EnqueueJobRequestSchema, { url: "https://x.test/", timeoutSec: 7 });
    expect(byProto.timeoutSec).toBe(7);
    expect(byJson.timeoutSec).toBe(7);
    expect(() =>
      fromRestJson(EnqueueJobRequestSchema, {
        timeoutSec: 7,
        url: "https://x.test/",
        timeout_sec: null,
      }),
    ).toThrow(/^timeout_sec: is given twice \(as timeoutSec and timeout_sec\)$/);
    expect(() => fromRestJson(EnqueueJobRequestSchema, { timeout_sec: 7, timeoutSec: 8 })).toThrow(
      /^timeout_sec: is given twice \(as timeout_sec and timeoutSec\)$/,
    );
  });

  it("names an unknown field by its path, __proto__ and inherited names included", () => {
    expect(() =>
      fromRestJson(EnqueueJobRequestSchema, { url: "https://x.test/", urll: 1 }),
    ).toThrow(/^urll: unknown field$/);
    expect(() =>
      fromRestJson(
        EnqueueJobRequestSchema,
        JSON.parse('{"url":"https://x.test/","__proto__":{"priority":9}}'),
      ),
    ).toThrow(/unknown field$/);
    for (const key of ["constructor", "toString", "hasOwnProperty"]) {
      expect(() =>
        fromRestJson(EnqueueJobRequestSchema, { url: "https://x.test/", [key]: 1 }),
      ).toThrow(new RegExp(`^${key}: unknown field$`));
    }
  });
});
