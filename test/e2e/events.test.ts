import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { JobEventType, JobStatus } from "../../gen/jobqueue/v1/job_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import { generateApiKey } from "../../src/auth/api-keys.js";
import { dbUrlFor, dropSchema, uniqueSchema } from "../helpers/postgres.js";
import { startTarget, type Target } from "../helpers/target.js";
import { startTestApp, type TestApp } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

/**
 * The event stream end to end, on both stores and every way to watch: Connect, gRPC-Web and gRPC
 * streams, Server-Sent Events and WebSocket. Each transport's messages are read into one shape so
 * the same assertions hold for all.
 */

const STORES = ["sqlite", "postgres"] as const;
const TRANSPORTS = ["connect", "grpc-web", "grpc", "sse", "websocket"] as const;
type Via = (typeof TRANSPORTS)[number];

/** A stream message, whatever carried it. */
interface Msg {
  kind: "event" | "heartbeat" | "job";
  cursor: string | null;
  jobId?: string;
  type?: string;
  status?: string;
  bytes?: number;
}

/** An error a stream was refused or ended with: the gRPC code's name. */
class StreamError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

interface Stream {
  next(): Promise<Msg | null>;
  close(): void;
}

const lower = (name: string | undefined) => name?.toLowerCase();
const snake = (code: Code) =>
  Code[code]!.replace(/[A-Z]/g, (c, i) => (i === 0 ? c : `_${c}`)).toLowerCase();

function fromJson(json: any): Msg {
  if (json.heartbeat) return { kind: "heartbeat", cursor: json.heartbeat.cursor };
  if (json.job) {
    return {
      kind: "job",
      cursor: json.event?.cursor ?? null,
      jobId: json.job.job_id,
      type: json.event?.type,
      status: json.job.status,
      bytes:
        json.event?.progress?.bytes === undefined ? undefined : Number(json.event.progress.bytes),
    };
  }
  return {
    kind: "event",
    cursor: json.event.cursor,
    jobId: json.event.job_id,
    type: json.event.type,
    status: json.event.status,
  };
}

/** Pulls from an async iterator one message at a time, as a {@link Stream}. */
function iterated<T>(it: AsyncIterator<T>, ac: AbortController, map: (m: T) => Msg): Stream {
  return {
    async next() {
      try {
        const r = await it.next();
        return r.done ? null : map(r.value);
      } catch (err) {
        const cerr = ConnectError.from(err);
        throw new StreamError(snake(cerr.code), cerr.rawMessage);
      }
    },
    close: () => ac.abort(),
  };
}

/** Server-Sent Events read off a fetch body. */
async function sse(url: string, headers: Record<string, string>): Promise<Stream> {
  const ac = new AbortController();
  const res = await fetch(url, {
    signal: ac.signal,
    headers: { accept: "text/event-stream", ...headers },
  });
  if (res.status !== 200) {
    const body = (await res.json()) as { code: string; message: string };
    throw Object.assign(new StreamError(body.code, body.message), { httpStatus: res.status });
  }
  const reader = (res.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  return {
    async next() {
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end !== -1) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const line = (name: string) =>
            frame
              .split("\n")
              .find((l) => l.startsWith(`${name}: `))
              ?.slice(name.length + 2);
          const data = JSON.parse(line("data")!);
          if (line("event") === "error") throw new StreamError(data.code, data.message);
          const msg = fromJson(data);
          // The frame's id is the message's cursor.
          expect(line("id") ?? null).toBe(msg.cursor);
          return msg;
        }
        const { value, done } = await reader.read().catch(() => ({ value: undefined, done: true }));
        if (done) return null;
        buffer += decoder.decode(value, { stream: true });
      }
    },
    close: () => ac.abort(),
  };
}

/** A WebSocket, each frame a message; the key as a header or as the browser's subprotocol. */
function websocket(
  url: string,
  headers: Record<string, string>,
  asBrowser: boolean,
): Promise<Stream> {
  const key = headers.authorization?.slice("Bearer ".length);
  const ws = asBrowser
    ? new WebSocket(url.replace("http", "ws"), [
        "jobqueue.v1",
        ...(key ? [`jobqueue.bearer.${key}`] : []),
      ])
    : new WebSocket(url.replace("http", "ws"), { headers });
  const queue: (Msg | StreamError | null)[] = [];
  let wake: (() => void) | null = null;
  const put = (item: Msg | StreamError | null) => {
    queue.push(item);
    wake?.();
  };
  ws.on("message", (data) => {
    const json = JSON.parse(String(data));
    put(json.error ? new StreamError(json.error.code, json.error.message) : fromJson(json));
  });
  ws.on("close", () => put(null));
  return new Promise((resolve, reject) => {
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c));
      res.on("end", () => {
        const json = JSON.parse(body);
        reject(
          Object.assign(new StreamError(json.code, json.message), { httpStatus: res.statusCode }),
        );
      });
    });
    ws.on("error", reject);
    ws.on("open", () => {
      if (asBrowser) expect(ws.protocol).toBe("jobqueue.v1");
      resolve({
        async next() {
          while (queue.length === 0) await new Promise<void>((r) => (wake = r));
          const item = queue.shift()!;
          if (item instanceof StreamError) {
            queue.unshift(item);
            throw item;
          }
          if (item === null) queue.unshift(null);
          return item;
        },
        close: () => ws.close(),
      });
    });
  });
}

interface WatchRequest {
  job_ids?: string[];
  status?: string[];
  tag?: string[];
  after_cursor?: string;
}

function watchers(baseUrl: string) {
  const transports: Record<"connect" | "grpc-web" | "grpc", Transport> = {
    connect: createConnectTransport({ baseUrl, httpVersion: "1.1" }),
    "grpc-web": createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
    grpc: createGrpcTransport({ baseUrl }),
  };
  const query = (req: WatchRequest) => {
    const q = new URLSearchParams();
    for (const id of req.job_ids ?? []) q.append("job_ids", id);
    for (const s of req.status ?? []) q.append("status", s);
    for (const t of req.tag ?? []) q.append("tag", t);
    if (req.after_cursor) q.set("after_cursor", req.after_cursor);
    const s = q.toString();
    return s ? `?${s}` : "";
  };
  return {
    /** WatchJobs over `via`. */
    async jobs(via: Via, req: WatchRequest, headers: Record<string, string> = {}): Promise<Stream> {
      if (via === "sse") return sse(`${baseUrl}/events${query(req)}`, headers);
      if (via === "websocket") return websocket(`${baseUrl}/events${query(req)}`, headers, true);
      const ac = new AbortController();
      const client = createClient(JobQueueService, transports[via]);
      const it = client
        .watchJobs(
          {
            jobIds: req.job_ids ?? [],
            status: (req.status ?? []).map(
              (s) => JobStatus[s.toUpperCase() as keyof typeof JobStatus],
            ),
            tag: req.tag ?? [],
            afterCursor: req.after_cursor ?? "",
          },
          { signal: ac.signal, headers, timeoutMs: 0 },
        )
        [Symbol.asyncIterator]();
      return iterated(it, ac, (m) =>
        m.kind.case === "heartbeat"
          ? { kind: "heartbeat", cursor: m.kind.value.cursor }
          : {
              kind: "event",
              cursor: m.kind.value!.cursor,
              jobId: m.kind.value!.jobId,
              type: lower(JobEventType[m.kind.value!.type]),
              status: lower(JobStatus[m.kind.value!.status]),
            },
      );
    },
    /** WatchJob over `via`. */
    async job(via: Via, jobId: string, headers: Record<string, string> = {}): Promise<Stream> {
      if (via === "sse") return sse(`${baseUrl}/jobs/${jobId}/events`, headers);
      if (via === "websocket") return websocket(`${baseUrl}/jobs/${jobId}/events`, headers, false);
      const ac = new AbortController();
      const client = createClient(JobQueueService, transports[via]);
      const it = client
        .watchJob({ jobId }, { signal: ac.signal, headers, timeoutMs: 0 })
        [Symbol.asyncIterator]();
      return iterated(it, ac, (m) => ({
        kind: "job",
        cursor: m.event?.cursor ?? null,
        jobId: m.job!.jobId,
        type: m.event ? lower(JobEventType[m.event.type]) : undefined,
        status: lower(JobStatus[m.job!.status]),
        bytes: m.event?.progress?.bytes === undefined ? undefined : Number(m.event.progress.bytes),
      }));
    },
  };
}

/** Reads events (heartbeats skipped) until `until` says so; fails if the stream ends first. */
async function readUntil(stream: Stream, until: (m: Msg) => boolean): Promise<Msg[]> {
  const out: Msg[] = [];
  for (;;) {
    const m = await stream.next();
    if (m === null) throw new Error(`the stream ended after ${JSON.stringify(out)}`);
    if (m.kind === "heartbeat") continue;
    out.push(m);
    if (until(m)) return out;
  }
}

async function refusal(open: Promise<Stream>): Promise<StreamError & { httpStatus?: number }> {
  try {
    const stream = await open;
    // Connect-family streams fail at the first read.
    await stream.next();
  } catch (err) {
    if (err instanceof StreamError) return err;
    throw err;
  }
  throw new Error("the stream was not refused");
}

describe.each(STORES)("the event stream on %s", (storeKind) => {
  let t: TestApp;
  let target: Target;
  let schema: string | null = null;
  let w: ReturnType<typeof watchers>;
  const people = {
    ada: generateApiKey("ada", "admin"),
    sam: generateApiKey("sam", "submitter"),
    sue: generateApiKey("sue", "submitter"),
    rita: generateApiKey("rita", "reader"),
  };
  const as = (name: keyof typeof people) => ({ authorization: `Bearer ${people[name].key}` });

  beforeAll(async () => {
    target = await startTarget();
    target.on("/ok", (_req, res) => {
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
    target.on("/fail", (_req, res) => {
      res.writeHead(500).end("no");
    });
    const env: Record<string, string> = {
      JOBQUEUE_API_KEYS: Object.values(people)
        .map((p) => p.line)
        .join(","),
    };
    if (storeKind === "postgres") {
      schema = uniqueSchema("events");
      env.JOBQUEUE_DB_URL = dbUrlFor(schema);
      env.JOBQUEUE_SECRET_KEY = randomBytes(32).toString("base64");
    }
    t = await startTestApp(env, { eventHeartbeatMs: 200 });
    w = watchers(t.url);
  });

  afterAll(async () => {
    await t?.stop();
    await target?.close();
    if (schema) await dropSchema(schema);
  });

  async function enqueue(who: keyof typeof people, job: Record<string, unknown>): Promise<string> {
    const res = await fetch(`${t.url}/jobs`, {
      method: "POST",
      headers: { "content-type": "application/json", ...as(who) },
      body: JSON.stringify(job),
    });
    expect(res.status).toBe(200);
    return ((await res.json()) as { job_id: string }).job_id;
  }

  async function listCursor(who: keyof typeof people = "ada"): Promise<string> {
    const res = await fetch(`${t.url}/jobs?page_size=1`, { headers: as(who) });
    return ((await res.json()) as { watch_cursor: string }).watch_cursor;
  }

  describe.each(TRANSPORTS)("over %s", (via) => {
    it("list, then watch from the list's cursor: every change of a new job in order, each once", async () => {
      const from = await listCursor();
      const id = await enqueue("ada", { url: `${target.url}/ok`, tags: [`t-${via}`] });
      const stream = await w.jobs(via, { after_cursor: from, tag: [`t-${via}`] }, as("ada"));
      try {
        const first = await stream.next();
        expect(first).toEqual({ kind: "heartbeat", cursor: from });
        const seen = await readUntil(stream, (m) => m.type === "succeeded");
        expect(seen.map((m) => m.type)).toEqual([
          "queued",
          "running",
          "attempt_ended",
          "succeeded",
        ]);
        expect(seen.every((m) => m.jobId === id)).toBe(true);
        expect(seen.map((m) => m.status)).toEqual(["queued", "running", "running", "succeeded"]);
        const cursors = seen.map((m) => m.cursor!);
        expect([...cursors].sort()).toEqual(cursors);
        expect(new Set(cursors).size).toBe(cursors.length);
      } finally {
        stream.close();
      }
    });

    it("resumes after a disconnect from the last cursor: no gap, nothing twice", async () => {
      const from = await listCursor();
      const tag = `r-${via}`;
      const id = await enqueue("ada", {
        url: `${target.url}/fail`,
        tags: [tag],
        max_attempts: 2,
        backoff_seconds: 0.01,
        backoff_strategy: "fixed",
      });
      const whole = await w.jobs(via, { after_cursor: from, tag: [tag] }, as("ada"));
      const all = await readUntil(whole, (m) => m.type === "failed");
      whole.close();
      expect(all.map((m) => m.type)).toEqual([
        "queued",
        "running",
        "attempt_ended",
        "retry_scheduled",
        "running",
        "attempt_ended",
        "failed",
      ]);
      // The same story in two parts, cut after the first attempt's end.
      const part1 = await w.jobs(via, { after_cursor: from, tag: [tag] }, as("ada"));
      const head = await readUntil(part1, (m) => m.type === "attempt_ended");
      part1.close();
      const part2 = await w.jobs(
        via,
        { after_cursor: head.at(-1)!.cursor!, tag: [tag] },
        as("ada"),
      );
      const tail = await readUntil(part2, (m) => m.type === "failed");
      part2.close();
      expect([...head, ...tail]).toEqual(all);
      expect(all.every((m) => m.jobId === id)).toBe(true);
    });

    it("a submitter sees only its own jobs' events; heartbeats still move its cursor", async () => {
      const from = await listCursor();
      const stream = await w.jobs(via, { after_cursor: from }, as("sue"));
      try {
        await enqueue("sam", { url: `${target.url}/ok` });
        const mine = await enqueue("sue", { url: `${target.url}/ok` });
        const seen = await readUntil(stream, (m) => m.type === "succeeded");
        expect(new Set(seen.map((m) => m.jobId))).toEqual(new Set([mine]));
      } finally {
        stream.close();
      }
    });

    it("refuses a watcher without a key, and a cursor it never gave out, naming it", async () => {
      const none = await refusal(w.jobs(via, {}));
      expect(none.code).toBe("unauthenticated");
      if (via === "sse" || via === "websocket") expect(none.httpStatus).toBe(401);
      const bad = await refusal(w.jobs(via, { after_cursor: "not-a-cursor" }, as("rita")));
      expect(bad.code).toBe("invalid_argument");
      expect(bad.message).toContain("after_cursor");
    });

    it("WatchJob: the job now, then at each change, ending at its end", async () => {
      const id = await enqueue("ada", {
        url: `${target.url}/ok`,
        scheduled_at: new Date(Date.now() + 3_600_000).toISOString(),
      });
      const stream = await w.job(via, id, as("ada"));
      try {
        const first = await stream.next();
        expect(first).toMatchObject({ kind: "job", jobId: id, status: "queued", cursor: null });
        await fetch(`${t.url}/jobs/${id}/cancel`, { method: "POST", headers: as("ada") });
        const rest = await readUntil(stream, (m) => m.status === "canceled");
        expect(rest.at(-1)).toMatchObject({ type: "canceled", status: "canceled" });
        expect(await stream.next()).toBeNull();
      } finally {
        stream.close();
      }
    });
  });

  it("a long download is watched as it moves: progress events with the bytes read so far", async () => {
    let more!: () => void;
    target.on("/slow", async (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.write(Buffer.alloc(1000));
      await new Promise<void>((r) => {
        more = r;
      });
      res.end(Buffer.alloc(2000));
    });
    const id = await enqueue("ada", { url: `${target.url}/slow`, method: "GET" });
    const stream = await w.job("sse", id, as("ada"));
    try {
      const seen = await readUntil(stream, (m) => m.type === "progress" && m.bytes === 1000);
      expect(seen.at(-1)).toMatchObject({ status: "running", jobId: id });
      more();
      const rest = await readUntil(stream, (m) => m.status === "succeeded");
      expect(rest.at(-1)!.type).toBe("succeeded");
    } finally {
      stream.close();
    }
  });

  it("an expired cursor is 410 / OUT_OF_RANGE on every transport, the cursor named", async () => {
    const from = await listCursor();
    await enqueue("ada", { url: `${target.url}/ok` });
    await waitFor(async () => (await listCursor()) > from);
    await t.app.store.eventDeleteBefore({ before: Date.now() + 60_000, limit: 100_000 });
    for (const via of TRANSPORTS) {
      const err = await refusal(w.jobs(via, { after_cursor: from }, as("ada")));
      expect(err.code, via).toBe("out_of_range");
      expect(err.message).toContain(from);
      if (via === "sse" || via === "websocket") expect(err.httpStatus).toBe(410);
    }
  });
});

describe("WebSocket handshakes", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp({}, {});
  });
  afterAll(async () => {
    await t?.stop();
  });

  it("refuses a page of another site, and a path with no stream", async () => {
    const foreign = await refusal(
      new Promise<Stream>((resolve, reject) => {
        const ws = new WebSocket(`${t.url.replace("http", "ws")}/events`, {
          headers: { origin: "https://evil.example" },
        });
        ws.on("unexpected-response", (_req, res) => {
          let body = "";
          res.on("data", (c: Buffer) => (body += c));
          res.on("end", () => {
            const json = JSON.parse(body);
            reject(
              Object.assign(new StreamError(json.code, json.message), {
                httpStatus: res.statusCode,
              }),
            );
          });
        });
        ws.on("open", () => resolve({ next: async () => null, close: () => ws.close() }));
      }),
    );
    expect(foreign).toMatchObject({ code: "permission_denied", httpStatus: 403 });
    const same = await websocket(`${t.url}/events`, { origin: t.url }, false);
    expect((await same.next())?.kind).toBe("heartbeat");
    same.close();
    const nowhere = await refusal(websocket(`${t.url}/jobs`, {}, false));
    expect(nowhere).toMatchObject({ code: "not_found", httpStatus: 404 });
  });
});
