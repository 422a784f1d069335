import http2 from "node:http2";
import { Writable } from "node:stream";
import { type DescMessage, fromJson, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CancelJobRequestSchema,
  EnqueueJobRequestSchema,
  EnqueueJobsRequestSchema,
  GetJobRequestSchema,
  ListJobsRequestSchema,
  WatchJobRequestSchema,
} from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";

/**
 * A seeded fuzzer over every protocol and encoding: valid requests, mutated (truncated, bytes
 * flipped or inserted, invalid varints and tags, invalid UTF-8, broken envelopes, JSON nested
 * deep, keys repeated, values of the wrong type…), sent to a real server. Every answer must be a
 * client error that names something, never a 5xx (INTERNAL or UNKNOWN over gRPC), and the log
 * must show no stack for any of them.
 *
 * JOBQUEUE_FUZZ_RUNS (default 1000, a second or two) sets the number of inputs, JOBQUEUE_FUZZ_SEED the seed; a
 * failure prints the seed and the input, so it can be replayed.
 */
const RUNS = Number(process.env.JOBQUEUE_FUZZ_RUNS ?? 1000);
const SEED = Number(process.env.JOBQUEUE_FUZZ_SEED ?? 20261130);

function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(xs: readonly T[]): T => xs[int(xs.length)]! };
}
type Rng = ReturnType<typeof prng>;

const JOB = {
  url: "http://127.0.0.1:9/x",
  method: "POST",
  headers: { "x-a": "1" },
  body: { a: [1, 2, { b: "c" }] },
  tags: ["t"],
  scheduledAt: "2099-01-01T00:00:00Z",
};
const JOB_ID = "j_01HXYZ0000000000000000000A";

interface Rpc {
  name: string;
  schema: DescMessage;
  json: Record<string, unknown>;
}
const RPCS: Rpc[] = [
  { name: "EnqueueJob", schema: EnqueueJobRequestSchema, json: JOB },
  { name: "EnqueueJobs", schema: EnqueueJobsRequestSchema, json: { jobs: [JOB, JOB] } },
  { name: "GetJob", schema: GetJobRequestSchema, json: { jobId: JOB_ID } },
  { name: "CancelJob", schema: CancelJobRequestSchema, json: { jobId: JOB_ID } },
  {
    name: "ListJobs",
    schema: ListJobsRequestSchema,
    json: { status: ["JOB_STATUS_QUEUED"], pageSize: 5 },
  },
  { name: "WatchJob", schema: WatchJobRequestSchema, json: { jobId: JOB_ID } },
];

const VALUES = [[], {}, "x", "", 0, -1, 1.5, 1e308, true, null, [[]], { a: {} }, "\u0000", "é"];

function mutateJson(rng: Rng, value: unknown): string {
  const text = JSON.stringify(value);
  switch (rng.int(10)) {
    case 0:
      return text.slice(0, rng.int(text.length));
    case 1: {
      const i = rng.int(text.length);
      return (
        text.slice(0, i) +
        rng.pick(["{", "}", "[", "]", ",", ":", '"', "\\", "x", "1"]) +
        text.slice(i)
      );
    }
    case 2: {
      const depth = rng.pick([10, 65, 100, 1000, 10_000]);
      return text.replace(/}$/, `,"extra":${"[".repeat(depth)}${"]".repeat(depth)}}`);
    }
    case 3: {
      // a key given twice, verbatim or under its other name
      const m = /"(\w+)":/.exec(text);
      if (!m) return text;
      const other =
        rng.int(2) === 0 ? m[1]! : m[1]!.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
      return text.replace(/^\{/, `{"${other}":${JSON.stringify(rng.pick(VALUES))},`);
    }
    case 4: {
      // a field of the wrong type, at the top or one level down
      const obj = JSON.parse(text) as Record<string, unknown>;
      const keys = Object.keys(obj);
      const key = rng.pick(keys);
      if (Array.isArray(obj[key]) && (obj[key] as unknown[]).length > 0 && rng.int(2) === 0) {
        (obj[key] as unknown[])[0] = rng.pick(VALUES);
      } else {
        obj[key] = rng.pick(VALUES);
      }
      return JSON.stringify(obj);
    }
    case 5:
      return JSON.stringify(rng.pick(VALUES));
    case 6:
      return text.replace(/^\{/, `{"${rng.pick(["nope", "__proto__", "constructor", ""])}":1,`);
    case 7:
      return `${"[".repeat(10_000)}${"]".repeat(10_000)}`;
    case 8:
      return text.replace(/^\{/, `{"jobs":[${"{".repeat(0)}[]],`);
    default:
      return text + rng.pick(["", " ", "x", "}", "\u0000"]);
  }
}

function mutateBytes(rng: Rng, bytes: Uint8Array): Buffer {
  const b = Buffer.from(bytes);
  switch (rng.int(8)) {
    case 0:
      return b.subarray(0, rng.int(b.length));
    case 1: {
      const c = Buffer.from(b);
      for (let n = 1 + rng.int(4); n > 0; n--)
        if (c.length > 0) c[rng.int(c.length)] = rng.int(256);
      return c;
    }
    case 2:
      return Buffer.concat([
        b,
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      ]);
    case 3:
      return Buffer.concat([Buffer.from([0x00]), b]); // illegal tag: field 0
    case 4:
      return Buffer.concat([Buffer.from([0x0a, 0x03, 0xff, 0xfe, 0xfd]), b.subarray(2)]); // invalid UTF-8
    case 5:
      return Buffer.concat([b, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])]); // a length past the end
    case 6:
      return Buffer.concat([b, Buffer.from([0x0d, 0x01])]); // fixed32 cut short (DataView)
    default: {
      const c = Buffer.alloc(rng.int(64));
      for (let i = 0; i < c.length; i++) c[i] = rng.int(256);
      return c;
    }
  }
}

function envelope(rng: Rng | null, payload: Buffer): Buffer {
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length, 1);
  if (rng && rng.int(6) === 0) {
    // a broken frame: a wrong length, or the compressed flag without compression
    if (rng.int(2) === 0) head.writeUInt32BE(payload.length + 1 + rng.int(100), 1);
    else head[0] = 1;
  }
  return Buffer.concat([head, payload]);
}

function toPb(rpc: Rpc): Uint8Array {
  return toBinary(rpc.schema, fromJson(rpc.schema, rpc.json as JsonValue));
}

interface Answer {
  status: number;
  code: string;
  message: string;
}

interface Input {
  protocol: string;
  rpc: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | string | null;
  method?: string;
}

describe("fuzzing every protocol and encoding", () => {
  let t: TestApp;
  let session: http2.ClientHttp2Session;
  const log: string[] = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _enc, done) {
        log.push(String(chunk));
        done();
      },
    });
    t = await startTestApp(
      { JOBQUEUE_MAX_REQUEST_BYTES: "65536", JOBQUEUE_MAX_BODY_BYTES: "32768" },
      {
        logger: pino({ level: "debug" }, sink),
      },
    );
    session = http2.connect(t.url);
  });
  afterAll(async () => {
    session?.close();
    await t?.stop();
  });

  function generate(rng: Rng): Input {
    const rpc = rng.pick(RPCS);
    const path = `/jobqueue.v1.JobQueueService/${rpc.name}`;
    const streaming = rpc.name === "WatchJob";
    const protocol = rng.pick([
      "rest",
      "rest-path",
      "connect-json",
      "connect-proto",
      "connect-get",
      "grpc-web",
      "grpc",
      "grpc-json",
    ]);
    switch (protocol) {
      case "rest-path": {
        const path = rng.pick([
          `/jobs/${JOB_ID.slice(0, rng.int(JOB_ID.length))}`,
          "/jobs/%ZZ",
          "/jobs/%E0%A4%A",
          `/jobs/${"x".repeat(rng.int(5000))}`,
          `/jobs/${JOB_ID}/result?x=1`,
          `/jobs/${JOB_ID}/attempts?job_id=other`,
          "//jobs",
          "/jobs/../jobs",
          `/audit?since=${encodeURIComponent(rng.pick(["x", "2026-13-45T99:00:00Z", "-1"]))}`,
          `/jobs?page_token=${"A".repeat(rng.int(300))}`,
        ]);
        const method = rng.pick(["GET", "POST", "HEAD", "DELETE", "PATCH"]);
        return {
          protocol,
          rpc: "-",
          path,
          headers: {},
          body: method === "POST" ? "{}" : null,
          method,
        };
      }
      case "connect-get": {
        const get = rng.pick(RPCS.filter((r) => r.name === "GetJob" || r.name === "ListJobs"));
        const binary = rng.int(2) === 0;
        const message = binary
          ? mutateBytes(rng, toPb(get)).toString("base64url")
          : encodeURIComponent(mutateJson(rng, get.json));
        const query = `connect=v1&encoding=${binary ? "proto" : "json"}${binary ? "&base64=1" : ""}&message=${message}`;
        return {
          protocol,
          rpc: get.name,
          path: `/jobqueue.v1.JobQueueService/${get.name}?${query}`,
          headers: {},
          body: null,
          method: "GET",
        };
      }
      case "rest": {
        const kind = rng.int(4);
        if (kind === 0)
          return {
            protocol,
            rpc: "EnqueueJob",
            path: "/jobs",
            headers: { "content-type": "application/json" },
            body: mutateJson(rng, restJob()),
          };
        if (kind === 1)
          return {
            protocol,
            rpc: "EnqueueJobs",
            path: "/jobs:batch",
            headers: { "content-type": "application/json" },
            body: mutateJson(rng, { jobs: [restJob(), restJob()] }),
          };
        if (kind === 2) {
          const raw = Buffer.from(JSON.stringify(restJob()));
          return {
            protocol,
            rpc: "EnqueueJob",
            path: "/jobs",
            headers: { "content-type": "application/json" },
            body: mutateBytes(rng, raw),
          };
        }
        const query = rng.pick([
          "status=nope",
          "page_size=x",
          "page_size=100000",
          "created_after=yesterday",
          "page_token=%ZZ",
          "tag=a&tag=",
          "nope=1",
          "status=queued&status=queued",
          "page_size=1&page_size=2",
        ]);
        return {
          protocol,
          rpc: "ListJobs",
          path: `/jobs?${query}`,
          headers: {},
          body: null,
          method: "GET",
        };
      }
      case "connect-json":
        if (streaming) {
          return {
            protocol,
            rpc: rpc.name,
            path,
            headers: { "content-type": "application/connect+json" },
            body: envelope(rng, Buffer.from(mutateJson(rng, rpc.json))),
          };
        }
        return {
          protocol,
          rpc: rpc.name,
          path,
          headers: { "content-type": "application/json" },
          body:
            rng.int(5) === 0
              ? mutateBytes(rng, Buffer.from(JSON.stringify(rpc.json)))
              : mutateJson(rng, rpc.json),
        };
      case "connect-proto":
        if (streaming) {
          return {
            protocol,
            rpc: rpc.name,
            path,
            headers: { "content-type": "application/connect+proto" },
            body: envelope(rng, mutateBytes(rng, toPb(rpc))),
          };
        }
        return {
          protocol,
          rpc: rpc.name,
          path,
          headers: { "content-type": "application/proto" },
          body: mutateBytes(rng, toPb(rpc)),
        };
      case "grpc-web":
        return {
          protocol,
          rpc: rpc.name,
          path,
          headers: { "content-type": "application/grpc-web+proto" },
          body: envelope(rng, mutateBytes(rng, toPb(rpc))),
        };
      case "grpc-json":
        return {
          protocol,
          rpc: rpc.name,
          path,
          headers: { "content-type": "application/grpc+json" },
          body: envelope(rng, Buffer.from(mutateJson(rng, rpc.json))),
        };
      default:
        return {
          protocol,
          rpc: rpc.name,
          path,
          headers: { "content-type": "application/grpc" },
          body: envelope(rng, mutateBytes(rng, toPb(rpc))),
        };
    }
  }

  async function send(input: Input): Promise<Answer> {
    if (input.protocol.startsWith("grpc") && input.protocol !== "grpc-web") return sendH2(input);
    const res = await fetch(t.url + input.path, {
      method: input.method ?? "POST",
      headers: input.headers,
      body: input.body,
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    // A HEAD answer has no body to name anything: its status is all there is.
    if (input.method === "HEAD") {
      return {
        status: res.status,
        code: res.ok ? "ok" : "head",
        message: "HEAD answers carry no body",
      };
    }
    const ct = res.headers.get("content-type") ?? "";
    if (ct.startsWith("application/grpc-web")) {
      const text = bytes.toString("latin1");
      const status = /grpc-status: *(\d+)/.exec(text)?.[1] ?? res.headers.get("grpc-status") ?? "?";
      const message = decodeURIComponent(/grpc-message: *([^\r\n]*)/.exec(text)?.[1] ?? "");
      return { status: res.status, code: status, message };
    }
    if (ct.startsWith("application/connect+")) {
      const text = bytes.toString("utf8");
      const m = /\{"error":(\{.*\})/.exec(text);
      const error = m
        ? (JSON.parse(m[1]!.replace(/\}\s*\}\s*$/, "}")) as { code: string; message: string })
        : null;
      return { status: res.status, code: error?.code ?? "ok", message: error?.message ?? "" };
    }
    let json: { code?: string; message?: string } = {};
    try {
      json = JSON.parse(bytes.toString("utf8"));
    } catch {
      // not JSON: a protobuf success answer
    }
    return {
      status: res.status,
      code: res.ok ? "ok" : (json.code ?? "?"),
      message: json.message ?? "",
    };
  }

  function sendH2(input: Input): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": input.path,
        te: "trailers",
        ...input.headers,
      });
      let status = 0;
      let trailers: http2.IncomingHttpHeaders = {};
      let headers: http2.IncomingHttpHeaders = {};
      req.on("response", (h) => {
        headers = h;
        status = Number(h[":status"]);
      });
      req.on("trailers", (h) => {
        trailers = h;
      });
      req.on("data", () => {});
      req.on("error", reject);
      req.on("close", () => {
        const grpcStatus = String(trailers["grpc-status"] ?? headers["grpc-status"] ?? "?");
        const message = decodeURIComponent(
          String(trailers["grpc-message"] ?? headers["grpc-message"] ?? ""),
        );
        resolve({ status, code: grpcStatus, message });
      });
      req.end(input.body ?? undefined);
    });
  }

  it(`answers ${RUNS} malformed inputs (seed ${SEED}) with client errors that name something`, async () => {
    const rng = prng(SEED);
    const failures: string[] = [];
    const codes = new Map<string, number>();
    for (let i = 0; i < RUNS && failures.length < 10; i++) {
      const input = generate(rng);
      const answer = await send(input);
      const key = `${input.protocol} ${answer.status} ${answer.code}`;
      codes.set(key, (codes.get(key) ?? 0) + 1);
      const serverFault =
        answer.status >= 500 ||
        ["13", "2", "internal", "unknown", "?"].includes(answer.code) ||
        answer.status === 0;
      const ok = answer.code === "ok" || answer.code === "0";
      // Bad input is named: "<field path>: <problem>"; other refusals say what they are.
      const invalid = answer.code === "invalid_argument" || answer.code === "3";
      const unnamed =
        !ok && !(invalid ? /^\S[\s\S]*?: \S/.test(answer.message) : /\S \S/.test(answer.message));
      if (serverFault || unnamed) {
        failures.push(
          `#${i} ${input.protocol} ${input.rpc} ${input.path}: ${JSON.stringify(answer)} for ${JSON.stringify(String(input.body).slice(0, 200))}`,
        );
      }
    }
    const errors = log.filter((line) => line.startsWith('{"level":50')).slice(0, 3);
    expect(failures, `seed ${SEED}; answers: ${JSON.stringify([...codes])}; ${errors}`).toEqual([]);
    const stacks = log.filter((line) => line.includes('"stack"'));
    expect(stacks.slice(0, 3)).toEqual([]);
  });
});

function restJob() {
  return {
    url: "http://127.0.0.1:9/x",
    method: "POST",
    headers: { "x-a": "1" },
    body: { a: [1, 2, { b: "c" }] },
    tags: ["t"],
    scheduled_at: "2099-01-01T00:00:00Z",
  };
}
