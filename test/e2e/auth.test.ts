import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { JsonObject } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "../../gen/grpc/health/v1/health_pb.js";
import { JobQueueService } from "../../gen/jobqueue/v1/job_queue_service_pb.js";
import type { StoredAuditEvent } from "../../src/audit/audit-event.js";
import { generateApiKey } from "../../src/auth/api-keys.js";
import type { Caller, Role } from "../../src/auth/principal.js";
import {
  AUDITED_PROTOCOL,
  apiKey,
  bearer,
  type CallResult,
  type Clients,
  createClients,
  PROTOCOLS,
  RPCS,
  type Rpc,
  SERVICES,
} from "../helpers/clients.js";
import {
  type SpawnedProcess,
  spawnServerProcess,
  whenListening,
} from "../helpers/server-process.js";
import { startTestApp, type TestApp, type TestAppOptions, testEnv } from "../helpers/test-app.js";
import { waitFor } from "../helpers/wait-for.js";

/**
 * API keys, roles, ownership and the audit log, end to end: every role against every RPC on every
 * protocol, with the outcome as data; who sees whose jobs; what stays open; what the audit log
 * records and how it is read; when the process refuses to start; how long the log is kept.
 */

const DAY_MS = 86_400_000;
/** Jobs are scheduled a day ahead: they stay queued, and this address is never called. */
const DEST = "http://127.0.0.1:9/never-called";
const tomorrow = () => new Date(Date.now() + DAY_MS).toISOString();
const LOOPBACK = expect.stringMatching(/^(::ffff:)?127\.0\.0\.1$/);
const NO_SUCH_JOB = "j_01ARZ3NDEKTSV4RRFFQ69G5FAV";

/** The principals every server in this file knows, and the roles their keys carry. */
const PEOPLE = { ada: "admin", sam: "submitter", sue: "submitter", rita: "reader" } as const;
type Person = keyof typeof PEOPLE;
const GENERATED = Object.fromEntries(
  Object.entries(PEOPLE).map(([name, role]) => [name, generateApiKey(name, role)]),
) as Record<Person, { key: string; line: string }>;
const KEY = Object.fromEntries(
  Object.entries(GENERATED).map(([name, g]) => [name, g.key]),
) as Record<Person, string>;
const KEYS_ENV = {
  JOBQUEUE_API_KEYS: Object.values(GENERATED)
    .map((g) => g.line)
    .join(","),
};
/** Well-formed, but configured nowhere. */
const UNKNOWN_KEY = generateApiKey("mallory", "admin").key;
const as = (person: Person) => bearer(KEY[person]);

/** A caller for jobs a test puts in place through the queue itself, as if `person` had sent them. */
function callerAs(person: string, role: Role = "submitter"): Caller {
  return { principal: { name: person, role }, remoteAddress: null, protocol: "internal" };
}

async function jobOwnedBy(t: TestApp, person: string): Promise<string> {
  const { job } = await t.app.queue.enqueue(
    { url: DEST, scheduledAt: Date.now() + DAY_MS },
    callerAs(person),
  );
  return job.id;
}

async function lastAuditId(t: TestApp): Promise<number> {
  return (await t.app.store.auditList({ limit: 1 })).events[0]?.id ?? 0;
}

/** Audit events recorded after `afterId`, oldest first. */
async function auditAfter(t: TestApp, afterId: number): Promise<StoredAuditEvent[]> {
  const { events } = await t.app.store.auditList({ limit: 1000 });
  return events.filter((e) => e.id > afterId).reverse();
}

/** A refusal says what kind it is, and nothing about who, which key or which role. */
function expectNothingLeaked(res: CallResult) {
  const text = `${res.message} ${JSON.stringify(res.body ?? "")}`;
  expect(text).not.toMatch(/\b(ada|sam|sue|rita|mallory|admin|submitter|reader|role|sha256)\b/i);
  expect(text).not.toMatch(/bearer|jq_/i);
  for (const key of [...Object.values(KEY), UNKNOWN_KEY]) expect(text).not.toContain(key);
  for (const g of Object.values(GENERATED)) expect(text).not.toContain(g.line.split(":")[1]);
  if (res.httpStatus !== undefined)
    expect(Object.keys(res.body).sort()).toEqual(["code", "message"]);
}

/** A server for a whole describe block (its world need not be fresh per test). */
function serverForBlock(env: Record<string, string> = {}, options: TestAppOptions = {}) {
  const world = {} as { t: TestApp; clients: Clients };
  beforeAll(async () => {
    world.t = await startTestApp({ ...KEYS_ENV, ...env }, {}, options);
    world.clients = createClients(world.t.url);
  });
  afterAll(async () => {
    world.clients?.close();
    await world.t?.stop();
  });
  return world;
}

/** A fresh server for each test. */
function serverForEachTest(env: Record<string, string> = {}) {
  const world = {} as { t: TestApp; clients: Clients };
  beforeEach(async () => {
    world.t = await startTestApp({ ...KEYS_ENV, ...env });
    world.clients = createClients(world.t.url);
  });
  afterEach(async () => {
    world.clients?.close();
    await world.t?.stop();
  });
  return world;
}

// ---------------------------------------------------------------------------------------------
// The matrix

type Who = "no key" | "invalid key" | "admin" | "submitter" | "reader";
const WHO: readonly Who[] = ["no key", "invalid key", "admin", "submitter", "reader"];
const PRINCIPAL_OF: Record<Who, Person | null> = {
  "no key": null,
  "invalid key": null,
  admin: "ada",
  submitter: "sam",
  reader: "rita",
};
const CREDENTIALS: Record<Who, Record<string, string>> = {
  "no key": {},
  "invalid key": bearer(UNKNOWN_KEY),
  admin: as("ada"),
  submitter: as("sam"),
  reader: as("rita"),
};

type Outcome = "ok" | "unauthenticated" | "permission_denied";
const OK: Outcome = "ok";
const UNAUTH: Outcome = "unauthenticated";
const DENIED: Outcome = "permission_denied";

/** What each caller gets from each RPC, in the order of WHO. */
const EXPECTED: Record<Rpc, readonly Outcome[]> = {
  // ............... no key, invalid key, admin, submitter, reader
  EnqueueJob: [UNAUTH, UNAUTH, OK, OK, DENIED],
  EnqueueJobs: [UNAUTH, UNAUTH, OK, OK, DENIED],
  GetJob: [UNAUTH, UNAUTH, OK, OK, OK],
  GetJobResult: [UNAUTH, UNAUTH, OK, OK, OK],
  ListJobAttempts: [UNAUTH, UNAUTH, OK, OK, OK],
  ListJobs: [UNAUTH, UNAUTH, OK, OK, OK],
  CancelJob: [UNAUTH, UNAUTH, OK, OK, DENIED],
  WatchJob: [UNAUTH, UNAUTH, OK, OK, OK],
  WatchJobs: [UNAUTH, UNAUTH, OK, OK, OK],
  ListAuditEvents: [UNAUTH, UNAUTH, OK, DENIED, DENIED],
  // Operating jobs: submitters act on their own, readers read the counts.
  RetryJob: [UNAUTH, UNAUTH, OK, OK, DENIED],
  DeleteJob: [UNAUTH, UNAUTH, OK, OK, DENIED],
  CancelJobs: [UNAUTH, UNAUTH, OK, OK, DENIED],
  RetryJobs: [UNAUTH, UNAUTH, OK, OK, DENIED],
  DeleteJobs: [UNAUTH, UNAUTH, OK, OK, DENIED],
  GetOperation: [UNAUTH, UNAUTH, OK, OK, DENIED],
  ListOperations: [UNAUTH, UNAUTH, OK, OK, DENIED],
  CancelOperation: [UNAUTH, UNAUTH, OK, OK, DENIED],
  GetJobCounts: [UNAUTH, UNAUTH, OK, OK, OK],
  ListNodes: [UNAUTH, UNAUTH, OK, OK, OK],
  GetCaller: [UNAUTH, UNAUTH, OK, OK, OK],
  // Queues: admins manage them, everyone reads them.
  CreateQueue: [UNAUTH, UNAUTH, OK, DENIED, DENIED],
  UpdateQueue: [UNAUTH, UNAUTH, OK, DENIED, DENIED],
  GetQueue: [UNAUTH, UNAUTH, OK, OK, OK],
  ListQueues: [UNAUTH, UNAUTH, OK, OK, OK],
  PauseQueue: [UNAUTH, UNAUTH, OK, DENIED, DENIED],
  ResumeQueue: [UNAUTH, UNAUTH, OK, DENIED, DENIED],
  DeleteQueue: [UNAUTH, UNAUTH, OK, DENIED, DENIED],
  GetQueueStats: [UNAUTH, UNAUTH, OK, OK, OK],
};
const CODE: Record<Outcome, number> = { ok: 0, unauthenticated: 16, permission_denied: 7 };
const HTTP_STATUS: Record<Outcome, number> = {
  ok: 200,
  unauthenticated: 401,
  permission_denied: 403,
};

/** The RPCs that name one job: a refusal of them records it. */
const ADDRESSES_A_JOB = new Set<Rpc>([
  "GetJob",
  "GetJobResult",
  "ListJobAttempts",
  "CancelJob",
  "WatchJob",
  "RetryJob",
  "DeleteJob",
]);

const MATRIX = RPCS.flatMap((rpc) =>
  WHO.flatMap((who, i) =>
    PROTOCOLS.map((protocol) => ({ rpc, who, protocol, expected: EXPECTED[rpc][i]! })),
  ),
);

/** "OPERATION_STATE_CANCELED" (proto JSON) and "canceled" (REST) alike → "canceled". */
const short = (value: unknown) =>
  String(value)
    .toLowerCase()
    .replace(/^(operation_state|operation_kind|job_status)_/, "");

let queueNames = 0;

/** What one cell of the matrix works on, put in place before the call. */
interface Arranged {
  request: JsonObject;
  /** A job of the caller's (sam's when there is none), and one of sue's. */
  own: string;
  other: string;
  /** A bulk action of the caller's, running: the server leads no maintenance. */
  operationId?: string;
  queue?: string;
}

async function arrange(t: TestApp, rpc: Rpc, who: Who): Promise<Arranged> {
  const person = PRINCIPAL_OF[who] ?? "sam";
  const caller = callerAs(person, PEOPLE[person]);
  const own = await jobOwnedBy(t, person);
  const other = await jobOwnedBy(t, "sue");
  const job = { url: DEST, scheduled_at: tomorrow() };
  const arranged = { own, other };
  switch (rpc) {
    case "EnqueueJob":
      return { ...arranged, request: job };
    case "EnqueueJobs":
      return { ...arranged, request: { jobs: [job, { ...job, tags: ["second"] }] } };
    case "ListJobs":
      return { ...arranged, request: { page_size: 20 } };
    case "WatchJobs":
      return { ...arranged, request: { job_ids: [own] } };
    case "ListAuditEvents":
      return { ...arranged, request: { page_size: 5 } };
    case "RetryJob":
    case "DeleteJob":
    case "RetryJobs":
    case "DeleteJobs": {
      // Only a job that ended can be retried or deleted.
      for (const id of [own, other]) await t.app.queue.cancel(id, callerAs("ada", "admin"));
      if (rpc === "RetryJob")
        return { ...arranged, request: { job_id: own, scheduled_at: tomorrow() } };
      if (rpc === "DeleteJob") return { ...arranged, request: { job_id: own } };
      return { ...arranged, request: { filter: { job_ids: [own, other] } } };
    }
    case "CancelJobs":
      return { ...arranged, request: { filter: { job_ids: [own, other] } } };
    case "GetOperation":
    case "CancelOperation": {
      const op = await t.app.operator.startBulk("cancel", { jobIds: [own] }, null, caller);
      return { ...arranged, operationId: op.id, request: { operation_id: op.id } };
    }
    case "ListOperations":
      await t.app.operator.startBulk("cancel", { jobIds: [other] }, null, callerAs("sue"));
      await t.app.operator.startBulk("cancel", { jobIds: [own] }, null, caller);
      return { ...arranged, request: { page_size: 1000 } };
    case "GetJobCounts":
      return { ...arranged, request: { group_by: "JOB_COUNT_GROUPING_HOST" } };
    case "ListNodes":
    case "GetCaller":
    case "ListQueues":
      return { ...arranged, request: {} };
    case "CreateQueue":
      return {
        ...arranged,
        queue: `matrix-${++queueNames}`,
        request: { name: `matrix-${queueNames}`, settings: { concurrency: 2 } },
      };
    case "UpdateQueue":
    case "GetQueue":
    case "PauseQueue":
    case "ResumeQueue":
    case "DeleteQueue":
    case "GetQueueStats": {
      const queue = `matrix-${++queueNames}`;
      await t.app.operator.createQueue(queue, {}, callerAs("ada", "admin"));
      if (rpc === "ResumeQueue")
        await t.app.operator.setPaused(queue, true, callerAs("ada", "admin"));
      const request: JsonObject =
        rpc === "UpdateQueue" ? { name: queue, settings: { concurrency: 3 } } : { name: queue };
      return { ...arranged, queue, request };
    }
    default:
      return { ...arranged, request: { job_id: own } };
  }
}

/** What a refused call must have left as it was. */
async function snapshot(t: TestApp, a: Arranged) {
  const admin = callerAs("ada", "admin");
  return {
    own: (await t.app.queue.get(a.own, admin)).status,
    other: (await t.app.queue.get(a.other, admin)).status,
    operation: a.operationId
      ? (await t.app.store.operationGet({ id: a.operationId }))?.state
      : null,
    queue: a.queue ? await t.app.store.queueGet({ name: a.queue }) : null,
    operations: (await t.app.store.operationList({ limit: 100_000 })).length,
  };
}

describe("every role, every RPC, every protocol", () => {
  // A follower: another node leads, so the bulk actions started here stay running.
  const w = serverForBlock({}, { follower: true });

  it("covers 5 callers × 29 RPCs × 5 protocols", () => {
    expect(MATRIX).toHaveLength(5 * 29 * 5);
    // Every method of every served service.
    expect([...RPCS].sort()).toEqual(SERVICES.flatMap((s) => s.methods.map((m) => m.name)).sort());
  });

  it.each(MATRIX)(
    "$rpc by $who over $protocol: $expected",
    async ({ rpc, who, protocol, expected }) => {
      const { t, clients } = w;
      const person = PRINCIPAL_OF[who];
      // Each test works on things of its own, owned by the caller (sam's when there is none).
      const arranged = await arrange(t, rpc, who);
      const { own, other } = arranged;
      const admin = callerAs("ada", "admin");
      const unchanged = await snapshot(t, arranged);
      const before = await lastAuditId(t);
      const startedAt = Date.now();
      const res = await clients.call(protocol, rpc, arranged.request, CREDENTIALS[who]);
      const endedAt = Date.now();

      expect({ code: res.code, message: res.message }).toMatchObject({ code: CODE[expected] });
      if (protocol === "rest") expect(res.httpStatus).toBe(HTTP_STATUS[expected]);

      const row = {
        id: expect.any(Number),
        at: expect.any(Number),
        principal: person,
        action: rpc,
        remoteAddress: LOOPBACK,
        protocol: AUDITED_PROTOCOL[protocol],
        detail: null,
      };
      const rows = await auditAfter(t, before);
      for (const r of rows) expect(r.at >= startedAt && r.at <= endedAt, `at ${r.at}`).toBe(true);

      if (expected !== OK) {
        expectNothingLeaked(res);
        // A refusal is recorded, naming the job it asked for.
        const jobId = ADDRESSES_A_JOB.has(rpc) ? own : null;
        expect(rows).toEqual([{ ...row, jobId, outcome: expected }]);
        expect(await snapshot(t, arranged)).toEqual(unchanged);
        return;
      }

      const body = res.body;
      /** What a bulk action by this caller applies to: its own job, or both for an admin. */
      const scoped = who === "admin" ? 2 : 1;
      switch (rpc) {
        case "EnqueueJob": {
          const job = await t.app.queue.get(body.job_id, admin);
          expect(job.owner).toBe(person);
          expect(rows).toEqual([{ ...row, jobId: body.job_id, outcome: "ok" }]);
          break;
        }
        case "EnqueueJobs": {
          const ids: string[] = body.jobs.map((j: any) => j.job_id);
          expect(ids).toHaveLength(2);
          for (const id of ids) {
            expect((await t.app.queue.get(id, admin)).owner).toBe(person);
          }
          expect(rows).toEqual(ids.map((jobId) => ({ ...row, jobId, outcome: "ok" })));
          break;
        }
        case "GetJob":
        case "WatchJob":
          expect(body.job).toMatchObject({ job_id: own, owner: person });
          expect(rows).toEqual([]);
          break;
        case "GetJobResult":
        case "ListJobAttempts":
          expect(body.job_id).toBe(own);
          expect(rows).toEqual([]);
          break;
        case "WatchJobs":
          // A stream starts with a heartbeat naming the cursor it watches from.
          expect(body.heartbeat.cursor).toMatch(/^\d+$/);
          expect(rows).toEqual([]);
          break;
        case "ListJobs": {
          const jobs: any[] = body.jobs;
          // sue's job is the newest: an admin sees it first, others see their own first.
          expect(jobs[0]?.job_id).toBe(who === "admin" ? other : own);
          if (who !== "admin") expect(jobs.filter((j) => j.owner !== person)).toEqual([]);
          expect(rows).toEqual([]);
          break;
        }
        case "CancelJob":
          expect(body.job).toMatchObject({ job_id: own, owner: person });
          expect((await t.app.queue.get(own, admin)).status).toBe("canceled");
          expect(rows).toEqual([{ ...row, jobId: own, outcome: "ok" }]);
          break;
        case "ListAuditEvents":
          expect(body.events.length).toBeGreaterThan(0);
          expect(body.events.length).toBeLessThanOrEqual(5);
          expect(rows).toEqual([]);
          break;
        case "RetryJob":
          expect(body.job).toMatchObject({ job_id: own, owner: person });
          expect(short(body.job.status)).toBe("queued");
          expect((await t.app.queue.get(own, admin)).status).toBe("queued");
          expect(rows).toEqual([{ ...row, jobId: own, outcome: "ok" }]);
          break;
        case "DeleteJob":
          expect(body).toEqual({});
          await expect(t.app.queue.get(own, admin)).rejects.toThrow(/not found/);
          expect(rows).toEqual([{ ...row, jobId: own, outcome: "ok" }]);
          break;
        case "CancelJobs":
        case "RetryJobs":
        case "DeleteJobs": {
          // The filter names sue's job too: a submitter's action leaves it out.
          expect(Number(body.count)).toBe(scoped);
          expect(body.operation).toMatchObject({ principal: person, estimate: expect.anything() });
          expect(Number(body.operation.estimate)).toBe(scoped);
          expect(short(body.operation.kind)).toBe(rpc.replace("Jobs", "").toLowerCase());
          expect(short(body.operation.state)).toBe("running");
          // The audit row is written when the operation ends.
          expect(rows).toEqual([]);
          break;
        }
        case "GetOperation":
          expect(body.operation).toMatchObject({ operation_id: arranged.operationId });
          expect(short(body.operation.state)).toBe("running");
          expect(rows).toEqual([]);
          break;
        case "ListOperations": {
          const ops: any[] = body.operations;
          expect(ops.length).toBeGreaterThan(0);
          expect(ops[0].principal).toBe(person);
          if (who !== "admin") expect(ops.filter((o) => o.principal !== person)).toEqual([]);
          else expect(ops[1].principal).toBe("sue");
          expect(rows).toEqual([]);
          break;
        }
        case "CancelOperation": {
          expect(body.operation).toMatchObject({ operation_id: arranged.operationId });
          expect(short(body.operation.state)).toBe("canceled");
          expect(rows).toEqual([
            {
              ...row,
              action: "CancelJobs",
              jobId: null,
              outcome: "ok",
              detail: expect.stringContaining(arranged.operationId!),
            },
          ]);
          break;
        }
        case "GetJobCounts":
          expect(Number(body.total.queued)).toBeGreaterThan(0);
          expect(body.groups).toEqual([expect.objectContaining({ key: "127.0.0.1" })]);
          expect(rows).toEqual([]);
          break;
        case "ListNodes":
          expect(body.nodes).toHaveLength(1);
          expect(rows).toEqual([]);
          break;
        case "GetCaller":
          // The key's principal and role (REST spells the enum lowercase without its prefix).
          expect(body.authentication_required).toBe(true);
          expect(body.principal).toBe(person);
          expect(
            String(body.role)
              .toLowerCase()
              .replace(/^role_/, ""),
          ).toBe(PEOPLE[person!]);
          expect(rows).toEqual([]);
          break;
        case "CreateQueue":
        case "UpdateQueue":
        case "PauseQueue":
        case "ResumeQueue": {
          expect(body.queue).toMatchObject({ name: arranged.queue });
          const stored = await t.app.store.queueGet({ name: arranged.queue! });
          expect(stored).toMatchObject(
            rpc === "CreateQueue"
              ? { concurrency: 2 }
              : rpc === "UpdateQueue"
                ? { concurrency: 3 }
                : { paused: rpc === "PauseQueue" },
          );
          expect(rows).toEqual([
            { ...row, jobId: null, outcome: "ok", detail: `queue ${arranged.queue}` },
          ]);
          break;
        }
        case "DeleteQueue":
          expect(body).toEqual({});
          expect(await t.app.store.queueGet({ name: arranged.queue! })).toBeNull();
          expect(rows).toEqual([
            { ...row, jobId: null, outcome: "ok", detail: `queue ${arranged.queue}` },
          ]);
          break;
        case "GetQueue":
          expect(body.queue).toMatchObject({ name: arranged.queue });
          // Proto JSON leaves a false out; REST says it.
          expect(body.queue.paused ?? false).toBe(false);
          expect(rows).toEqual([]);
          break;
        case "ListQueues":
          expect(body.queues.map((q: any) => q.name)).toContain("default");
          expect(rows).toEqual([]);
          break;
        case "GetQueueStats":
          expect(body.queue).toBe(arranged.queue);
          expect(rows).toEqual([]);
          break;
      }
    },
  );
});

// ---------------------------------------------------------------------------------------------

describe("how a key is sent", () => {
  const w = serverForBlock();

  it("answers REST's 401 with a WWW-Authenticate challenge", async () => {
    const res = await fetch(`${w.t.url}/jobs`);
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toBe('Bearer realm="jobqueue"');
  });

  it.each(PROTOCOLS)(
    "accepts Authorization: Bearer, any case of the scheme, and x-api-key over %s",
    async (protocol) => {
      const id = await jobOwnedBy(w.t, "sam");
      for (const headers of [
        { authorization: `Bearer ${KEY.sam}` },
        { authorization: `bearer ${KEY.sam}` },
        { authorization: `BEARER  ${KEY.sam}` },
        apiKey(KEY.sam),
      ]) {
        const res = await w.clients.call(protocol, "GetJob", { job_id: id }, headers);
        expect({ headers, code: res.code, message: res.message }).toEqual({
          headers,
          code: 0,
          message: "",
        });
        expect(res.body.job.job_id).toBe(id);
      }
    },
  );

  it.each(PROTOCOLS)(
    "answers UNAUTHENTICATED to a malformed or unknown key over %s",
    async (protocol) => {
      const id = await jobOwnedBy(w.t, "sam");
      const malformed: Record<string, string>[] = [
        { authorization: `Basic ${Buffer.from(`sam:${KEY.sam}`).toString("base64")}` },
        { authorization: "Bearer" },
        { authorization: `Bearer ${KEY.sam} ${KEY.sam}` },
        { authorization: `Token ${KEY.sam}` },
        { authorization: KEY.sam },
        // A malformed Authorization header is not overridden by a good x-api-key.
        { authorization: `Basic ${KEY.sam}`, "x-api-key": KEY.sam },
        { "x-api-key": UNKNOWN_KEY },
        { "x-api-key": KEY.sam.slice(0, -1) },
        { "x-api-key": "" },
        // The hash of a key is not a key.
        { "x-api-key": GENERATED.sam.line.split(" ")[2]! },
      ];
      for (const headers of malformed) {
        const res = await w.clients.call(protocol, "GetJob", { job_id: id }, headers);
        expect({ headers, code: res.code }).toEqual({ headers, code: 16 });
        if (protocol === "rest") expect(res.httpStatus).toBe(401);
        expectNothingLeaked(res);
      }
    },
  );

  it("answers every refusal of a kind with the same message, on every protocol", async () => {
    const id = await jobOwnedBy(w.t, "sam");
    const messages = new Map<string, Set<string>>();
    for (const protocol of PROTOCOLS) {
      for (const [kind, rpc, headers] of [
        ["unauthenticated", "GetJob", {}],
        ["unauthenticated", "CancelJob", bearer(UNKNOWN_KEY)],
        ["permission_denied", "CancelJob", as("rita")],
        ["permission_denied", "ListAuditEvents", as("sam")],
      ] as const) {
        const res = await w.clients.call(protocol, rpc, { job_id: id }, headers);
        expect(res.ok).toBe(false);
        const seen = messages.get(kind) ?? new Set();
        seen.add(res.message);
        messages.set(kind, seen);
      }
    }
    expect([...messages.values()].map((s) => s.size)).toEqual([1, 1]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("ownership", () => {
  const w = serverForBlock();

  it.each(PROTOCOLS)(
    "hides a submitter's job from another submitter and a reader over %s, shows it to its owner and admins",
    async (protocol) => {
      const { t, clients } = w;
      const call = (rpc: Rpc, person: Person, request: JsonObject) =>
        clients.call(protocol, rpc, request, as(person));
      const created = await call("EnqueueJob", "sam", { url: DEST, scheduled_at: tomorrow() });
      expect(created.code).toBe(0);
      const id: string = created.body.job_id;

      const byId: Rpc[] = ["GetJob", "GetJobResult", "ListJobAttempts", "CancelJob", "WatchJob"];
      for (const person of ["sue", "rita"] as const) {
        for (const rpc of byId) {
          const theirs = await call(rpc, person, { job_id: id });
          if (rpc === "CancelJob" && person === "rita") {
            // A reader may cancel nothing: the role is refused before any job is looked at.
            expect(theirs.code).toBe(7);
            continue;
          }
          const missing = await call(rpc, person, { job_id: NO_SUCH_JOB });
          // Exactly as if it did not exist: same code, same message but for the id.
          expect({ person, rpc, code: theirs.code }).toEqual({ person, rpc, code: 5 });
          if (protocol === "rest") expect(theirs.httpStatus).toBe(404);
          expect(theirs.message.replace(id, "<id>")).toBe(
            missing.message.replace(NO_SUCH_JOB, "<id>"),
          );
          expect(theirs.message).not.toMatch(/\bsam\b|owner/i);
        }
        const list = await call("ListJobs", person, { page_size: 1000 });
        expect(list.code).toBe(0);
        const listed: any[] = list.body.jobs ?? [];
        expect(listed.map((j) => j.job_id)).not.toContain(id);
        expect(listed.filter((j) => j.owner !== person)).toEqual([]);
      }
      // sue's cancel did not touch it.
      expect((await t.app.queue.get(id, callerAs("ada", "admin"))).status).toBe("queued");

      for (const person of ["sam", "ada"] as const) {
        const got = await call("GetJob", person, { job_id: id });
        expect(got.code).toBe(0);
        expect(got.body.job).toMatchObject({ job_id: id, owner: "sam" });
        for (const rpc of ["GetJobResult", "ListJobAttempts"] as const) {
          expect((await call(rpc, person, { job_id: id })).body.job_id).toBe(id);
        }
        expect((await call("WatchJob", person, { job_id: id })).body.job.job_id).toBe(id);
        const list = await call("ListJobs", person, { page_size: 1000 });
        expect(list.body.jobs.map((j: any) => j.job_id)).toContain(id);
      }
      // The owner may cancel it.
      const canceled = await call("CancelJob", "sam", { job_id: id });
      expect(canceled.body.job).toMatchObject({ job_id: id, owner: "sam" });
    },
  );

  it.each(PROTOCOLS)(
    "scopes a submitter's bulk actions and operations to its own jobs over %s",
    async (protocol) => {
      const { t, clients } = w;
      const call = (rpc: Rpc, person: Person, request: JsonObject) =>
        clients.call(protocol, rpc, request, as(person));
      const tag = `bulk-${protocol}`;
      const ids: Record<string, string[]> = { sam: [], sue: [] };
      for (const person of ["sam", "sam", "sue"] as const) {
        const { job } = await t.app.queue.enqueue(
          { url: DEST, scheduledAt: Date.now() + DAY_MS, tags: [tag] },
          callerAs(person),
        );
        await t.app.queue.cancel(job.id, callerAs(person));
        ids[person]!.push(job.id);
      }
      const filter = { tag: [tag] };
      const count = async (person: Person) =>
        Number((await call("RetryJobs", person, { filter, dry_run: true })).body.count);
      expect([await count("sam"), await count("sue"), await count("ada")]).toEqual([2, 1, 3]);

      const started = await call("RetryJobs", "sam", { filter, scheduled_at: tomorrow() });
      expect(started.code).toBe(0);
      const opId: string = started.body.operation.operation_id;
      const ended = await waitFor(async () => {
        const op = (await call("GetOperation", "sam", { operation_id: opId })).body.operation;
        return String(op.state).toLowerCase().endsWith("succeeded") && op;
      });
      expect(Number(ended.affected)).toBe(2);
      const admin = callerAs("ada", "admin");
      for (const id of ids.sam!) expect((await t.app.queue.get(id, admin)).status).toBe("queued");
      expect((await t.app.queue.get(ids.sue![0]!, admin)).status).toBe("canceled");

      // Another submitter's operation reads as missing; a reader may not look at operations.
      for (const rpc of ["GetOperation", "CancelOperation"] as const) {
        expect((await call(rpc, "sue", { operation_id: opId })).code).toBe(5);
        expect((await call(rpc, "rita", { operation_id: opId })).code).toBe(7);
      }
      const listed = async (person: Person) =>
        ((await call("ListOperations", person, { page_size: 1000 })).body.operations ?? []).map(
          (o: any) => o.operation_id,
        );
      expect(await listed("sam")).toContain(opId);
      expect(await listed("ada")).toContain(opId);
      expect(await listed("sue")).not.toContain(opId);
      // One job of another's: missing, whatever the action.
      for (const rpc of ["RetryJob", "DeleteJob"] as const) {
        const theirs = await call(rpc, "sue", { job_id: ids.sam![0]! });
        expect({ rpc, code: theirs.code }).toEqual({ rpc, code: 5 });
      }
      // sue's delete of everything finished under the tag deletes hers alone.
      const deleted = await call("DeleteJobs", "sue", { filter });
      expect(Number(deleted.body.count)).toBe(1);
      await waitFor(
        async () => (await t.app.queue.get(ids.sue![0]!, admin).catch(() => null)) === null,
      );
      for (const id of ids.sam!) expect((await t.app.queue.get(id, admin)).status).toBe("queued");
    },
  );

  it("keeps idempotency keys per principal", async () => {
    const job = { url: DEST, scheduled_at: tomorrow(), idempotency_key: "order-1" };
    const sams = await w.clients.call("rest", "EnqueueJob", job, as("sam"));
    const sues = await w.clients.call("rest", "EnqueueJob", job, as("sue"));
    expect([sams.code, sues.code]).toEqual([0, 0]);
    expect(sues.body.job_id).not.toBe(sams.body.job_id);
  });

  it("shows the owner as the REST field owner", async () => {
    const id = (
      await w.clients.call("rest", "EnqueueJob", { url: DEST, scheduled_at: tomorrow() }, as("sue"))
    ).body.job_id;
    const res = await fetch(`${w.t.url}/jobs/${id}`, { headers: as("ada") });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ job_id: id, owner: "sue" });
    const list = await fetch(`${w.t.url}/jobs?page_size=1000`, { headers: as("sue") });
    const jobs = ((await list.json()) as any).jobs;
    expect(jobs.find((j: any) => j.job_id === id)).toMatchObject({ owner: "sue" });
  });

  it("shows a reader only the jobs its own name owns", async () => {
    const { t, clients } = w;
    await jobOwnedBy(t, "sam");
    for (const protocol of PROTOCOLS) {
      const res = await clients.call(protocol, "ListJobs", { page_size: 1000 }, as("rita"));
      expect({ protocol, jobs: res.body.jobs ?? [] }).toEqual({ protocol, jobs: [] });
    }
    // A job that rita sent while her key was a submitter's is still hers.
    const hers = await jobOwnedBy(t, "rita");
    for (const protocol of PROTOCOLS) {
      const res = await clients.call(protocol, "ListJobs", { page_size: 1000 }, as("rita"));
      expect(res.body.jobs.map((j: any) => [j.job_id, j.owner])).toEqual([[hers, "rita"]]);
      const got = await clients.call(protocol, "GetJob", { job_id: hers }, as("rita"));
      expect(got.body.job).toMatchObject({ job_id: hers, owner: "rita" });
      // Reading it is not cancelling it.
      const cancel = await clients.call(protocol, "CancelJob", { job_id: hers }, as("rita"));
      expect(cancel.code).toBe(7);
    }
  });
});

// ---------------------------------------------------------------------------------------------

const ROOT = join(import.meta.dirname, "../..");
const BUF = join(ROOT, "node_modules/.bin/buf");
const run = promisify(execFile);

describe("what stays open while keys are required", () => {
  const w = serverForBlock();
  const grpcClients: grpc.Client[] = [];
  afterAll(() => {
    for (const c of grpcClients) c.close();
  });

  it("answers /healthz and grpc.health.v1 Check without a key, and records nothing", async () => {
    const before = await lastAuditId(w.t);
    const healthz = await fetch(`${w.t.url}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.json()).toEqual({ status: "serving" });

    const pkg: any = grpc.loadPackageDefinition(
      protoLoader.loadSync("grpc/health/v1/health.proto", {
        includeDirs: [join(ROOT, "proto")],
        enums: String,
        defaults: true,
      }),
    );
    const health = new pkg.grpc.health.v1.Health(
      `127.0.0.1:${w.t.port}`,
      grpc.credentials.createInsecure(),
    );
    grpcClients.push(health);
    const check = (service: string) =>
      new Promise((resolve, reject) =>
        health.Check({ service }, (err: Error | null, res: unknown) =>
          err ? reject(err) : resolve(res),
        ),
      );
    expect(await check("")).toEqual({ status: "SERVING" });
    expect(await check("jobqueue.v1.JobQueueService")).toEqual({ status: "SERVING" });

    const connectHealth = createClient(Health, createGrpcTransport({ baseUrl: w.t.url }));
    expect((await connectHealth.check({ service: "" })).status).toBe(ServingStatus.SERVING);
    expect(await auditAfter(w.t, before)).toEqual([]);
  });

  it("serves reflection to buf curl without a key, but not the JobQueueService", async () => {
    const bufCurl = (...args: string[]) =>
      run(BUF, ["curl", "--http2-prior-knowledge", "--protocol", "grpc", ...args]);
    const listed = (await bufCurl("--list-methods", w.t.url)).stdout.split("\n").filter(Boolean);
    expect(listed).toEqual(
      expect.arrayContaining(
        JobQueueService.methods.map((m) => `jobqueue.v1.JobQueueService/${m.name}`),
      ),
    );

    const method = `${w.t.url}/jobqueue.v1.JobQueueService/ListJobs`;
    const refused = await bufCurl("-d", "{}", method).then(
      () => null,
      (err: { stderr: string }) => err,
    );
    expect(refused?.stderr).toMatch(/unauthenticated/i);
    const { stdout } = await bufCurl("-H", `Authorization: Bearer ${KEY.ada}`, "-d", "{}", method);
    expect(JSON.parse(stdout)).toEqual(expect.any(Object));
  });
});

// ---------------------------------------------------------------------------------------------

/** GET /audit as ada, all pages of `pageSize`, following next_page_token; returns each page. */
async function auditPages(t: TestApp, query: Record<string, string>, pageSize: number) {
  const pages: any[][] = [];
  let token: string | null = null;
  do {
    const params = new URLSearchParams({
      ...query,
      page_size: String(pageSize),
      ...(token ? { page_token: token } : {}),
    });
    const res = await fetch(`${t.url}/audit?${params}`, { headers: as("ada") });
    const json = (await res.json()) as any;
    expect(res.status, JSON.stringify(json)).toBe(200);
    pages.push(json.events);
    token = json.next_page_token;
    expect(pages.length).toBeLessThan(1000);
  } while (token);
  return pages;
}

describe("the audit log", () => {
  const w = serverForEachTest();

  it("records accepted, refused and failed calls: time, principal, action, job, address, protocol, outcome", async () => {
    const { t, clients } = w;
    const startedAt = Date.now();
    const enqueued = await clients.call(
      "connect",
      "EnqueueJob",
      { url: DEST, scheduled_at: tomorrow() },
      as("sam"),
    );
    const id: string = enqueued.body.job_id;
    expect((await clients.call("grpc", "CancelJob", { job_id: id }, as("sam"))).code).toBe(0);
    expect((await clients.call("grpc-js", "CancelJob", { job_id: id }, as("sam"))).code).toBe(9);
    expect(
      (await clients.call("grpc-web", "CancelJob", { job_id: NO_SUCH_JOB }, as("sam"))).code,
    ).toBe(5);
    expect((await clients.call("grpc-web", "EnqueueJob", { url: DEST }, as("rita"))).code).toBe(7);
    expect((await clients.call("rest", "ListJobs", {}, {})).httpStatus).toBe(401);
    expect(
      (await clients.call("connect", "CancelJob", { job_id: id }, bearer(UNKNOWN_KEY))).code,
    ).toBe(16);
    const bad = await clients.call("rest", "EnqueueJob", { url: "ftp://example.com/x" }, as("sam"));
    expect(bad.httpStatus).toBe(400);
    // Reads are not audited.
    expect((await clients.call("rest", "GetJob", { job_id: id }, as("sam"))).code).toBe(0);
    const endedAt = Date.now();

    const res = await fetch(`${t.url}/audit`, { headers: apiKey(KEY.ada) });
    expect(res.status).toBe(200);
    const { events, next_page_token } = (await res.json()) as any;
    expect(next_page_token).toBeNull();
    expect(
      events.map((e: any) => [e.principal, e.action, e.job_id, e.protocol, e.outcome, e.detail]),
    ).toEqual([
      ["sam", "EnqueueJob", null, "rest", "invalid_argument", "url"],
      [null, "CancelJob", id, "connect", "unauthenticated", null],
      [null, "ListJobs", null, "rest", "unauthenticated", null],
      ["rita", "EnqueueJob", null, "grpc-web", "permission_denied", null],
      ["sam", "CancelJob", NO_SUCH_JOB, "grpc-web", "not_found", null],
      ["sam", "CancelJob", id, "grpc", "failed_precondition", null],
      ["sam", "CancelJob", id, "grpc", "ok", null],
      ["sam", "EnqueueJob", id, "connect", "ok", null],
    ]);
    for (const e of events) {
      expect(e).toEqual({
        id: expect.any(Number),
        time: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/),
        principal: e.principal,
        action: e.action,
        job_id: e.job_id,
        remote_address: LOOPBACK,
        protocol: e.protocol,
        outcome: e.outcome,
        detail: e.detail,
      });
      expect(Date.parse(e.time)).toBeGreaterThanOrEqual(startedAt);
      expect(Date.parse(e.time)).toBeLessThanOrEqual(endedAt);
    }
    const ids = events.map((e: any) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
  });

  it("filters by principal, action, job_id, outcome, since and until, and pages newest first", async () => {
    const { t, clients } = w;
    const ids: string[] = [];
    for (const [protocol, person] of [
      ["rest", "sam"],
      ["connect", "sue"],
      ["grpc-web", "ada"],
      ["grpc", "sam"],
      ["grpc-js", "sue"],
    ] as const) {
      const res = await clients.call(
        protocol,
        "EnqueueJob",
        { url: DEST, scheduled_at: tomorrow() },
        as(person),
      );
      ids.push(res.body.job_id);
      await clients.call(protocol, "CancelJob", { job_id: res.body.job_id }, as("rita"));
      await clients.call(protocol, "ListAuditEvents", {}, as(person === "ada" ? "rita" : person));
    }
    await clients.call("grpc", "CancelJob", { job_id: ids[0]! }, as("sam"));
    await clients.call("rest", "CancelJob", { job_id: ids[0]! }, as("sam"));
    await clients.call("grpc-js", "EnqueueJob", { url: DEST }, {});

    const [all] = await auditPages(t, {}, 1000);
    expect(all!.length).toBe(5 * 3 + 3);
    const allIds = all!.map((e) => e.id);
    expect(new Set(allIds).size).toBe(allIds.length);
    expect(allIds).toEqual([...allIds].sort((a, b) => b - a));
    const times = all!.map((e) => Date.parse(e.time));
    expect(times).toEqual([...times].sort((a, b) => b - a));

    // Every page size walks every row once, in the same order.
    for (const size of [1, 2, 5, 17, 18, 19]) {
      const pages = await auditPages(t, {}, size);
      expect(pages.flat().map((e) => e.id)).toEqual(allIds);
      expect(pages).toHaveLength(Math.max(1, Math.ceil(all!.length / size)));
    }

    // A time some rows share and some are older than: the split of since and until.
    const distinct = [...new Set(all!.map((e) => e.time as string))];
    expect(distinct.length, "the premise: the calls took more than a millisecond").toBeGreaterThan(
      1,
    );
    const mid = distinct[Math.floor(distinct.length / 2)]!;
    const filters: [Record<string, string>, (e: any) => boolean][] = [
      [{ principal: "sam" }, (e) => e.principal === "sam"],
      [{ principal: "rita" }, (e) => e.principal === "rita"],
      [{ action: "CancelJob" }, (e) => e.action === "CancelJob"],
      [{ job_id: ids[0]! }, (e) => e.job_id === ids[0]],
      [{ outcome: "permission_denied" }, (e) => e.outcome === "permission_denied"],
      [{ outcome: "unauthenticated" }, (e) => e.outcome === "unauthenticated"],
      [{ outcome: "failed_precondition" }, (e) => e.outcome === "failed_precondition"],
      [{ since: mid }, (e) => Date.parse(e.time) >= Date.parse(mid)],
      [{ until: mid }, (e) => Date.parse(e.time) < Date.parse(mid)],
      [
        { principal: "sam", action: "CancelJob", outcome: "ok" },
        (e) => e.principal === "sam" && e.action === "CancelJob" && e.outcome === "ok",
      ],
      [
        { since: all!.at(-1).time, until: all![0].time },
        (e) => Date.parse(e.time) < Date.parse(all![0].time),
      ],
    ];
    for (const [query, keep] of filters) {
      const expected = all!.filter(keep).map((e) => e.id);
      expect({ query, empty: expected.length === 0 }).toEqual({ query, empty: false });
      const pages = await auditPages(t, query, 2);
      expect({ query, ids: pages.flat().map((e) => e.id) }).toEqual({ query, ids: expected });
    }
    // since and until split the log exactly.
    const since = (await auditPages(t, { since: mid }, 1000)).flat();
    const until = (await auditPages(t, { until: mid }, 1000)).flat();
    expect([...since, ...until].map((e) => e.id)).toEqual(allIds);
    expect(until.length).toBeGreaterThan(0);

    // The RPC reads the same log.
    for (const protocol of ["connect", "grpc-web", "grpc", "grpc-js"] as const) {
      const res = await clients.call(
        protocol,
        "ListAuditEvents",
        { principal: "sam", page_size: 1000 },
        as("ada"),
      );
      expect(res.body.events.map((e: any) => Number(e.id))).toEqual(
        all!.filter((e) => e.principal === "sam").map((e) => e.id),
      );
      const paged = await clients.call(protocol, "ListAuditEvents", { page_size: 3 }, as("ada"));
      expect(paged.body.events.map((e: any) => Number(e.id))).toEqual(allIds.slice(0, 3));
      const next = await clients.call(
        protocol,
        "ListAuditEvents",
        { page_size: 3, page_token: paged.body.next_page_token },
        as("ada"),
      );
      expect(next.body.events.map((e: any) => Number(e.id))).toEqual(allIds.slice(3, 6));
    }
  });

  it("is for admins only, and validates its filters", async () => {
    const { t } = w;
    const get = (query: string, headers: Record<string, string>) =>
      fetch(`${t.url}/audit${query}`, { headers }).then(async (r) => ({
        status: r.status,
        json: (await r.json()) as any,
      }));
    expect((await get("", as("sam"))).status).toBe(403);
    expect((await get("", as("rita"))).status).toBe(403);
    expect((await get("?principal=sam", apiKey(KEY.sue))).status).toBe(403);
    expect((await get("", {})).status).toBe(401);
    const bad = await get("?outcome=bogus", as("ada"));
    expect(bad.status).toBe(400);
    expect(bad.json.field).toBe("outcome");
    expect((await get("?page_token=bm9wZQ", as("ada"))).json.field).toBe("page_token");
    expect((await get("?page_size=0", as("ada"))).status).toBe(200);
    expect((await get("?page_size=100000", as("ada"))).json.field).toBe("page_size");
    // The refusals are in the log, and the validation failures are not mutations.
    const { json } = await get("?page_size=1000", as("ada"));
    expect(json.events.map((e: any) => [e.principal, e.action, e.outcome])).toEqual([
      [null, "ListAuditEvents", "unauthenticated"],
      ["sue", "ListAuditEvents", "permission_denied"],
      ["rita", "ListAuditEvents", "permission_denied"],
      ["sam", "ListAuditEvents", "permission_denied"],
    ]);
  });

  it("records a batch as one row per job, and a refused batch as one row", async () => {
    const { t, clients } = w;
    const job = { url: DEST, scheduled_at: tomorrow() };
    const batch = await clients.call("grpc", "EnqueueJobs", { jobs: [job, job, job] }, as("sam"));
    const ids: string[] = batch.body.jobs.map((j: any) => j.job_id);
    expect(new Set(ids).size).toBe(3);

    const invalid = await clients.call(
      "rest",
      "EnqueueJobs",
      { jobs: [job, { url: "not a url" }, job] },
      as("sue"),
    );
    expect(invalid.httpStatus).toBe(400);
    expect(invalid.body.field).toBe("jobs[1].url");
    const denied = await clients.call("grpc-js", "EnqueueJobs", { jobs: [job, job] }, as("rita"));
    expect(denied.code).toBe(7);

    const [events] = await auditPages(t, {}, 1000);
    expect(
      events!.map((e) => [e.principal, e.action, e.job_id, e.protocol, e.outcome, e.detail]),
    ).toEqual([
      ["rita", "EnqueueJobs", null, "grpc", "permission_denied", null],
      ["sue", "EnqueueJobs", null, "rest", "invalid_argument", "jobs[1].url"],
      ...[...ids].reverse().map((id) => ["sam", "EnqueueJobs", id, "grpc", "ok", null]),
    ]);
    // All or none: sue's batch stored nothing.
    const list = await clients.call("rest", "ListJobs", { page_size: 1000 }, as("sue"));
    expect(list.body.jobs).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("audit retention", () => {
  const w = serverForEachTest({
    JOBQUEUE_CLEANUP_INTERVAL: "0.05",
    JOBQUEUE_AUDIT_RETENTION_DAYS: "90",
  });

  it("deletes audit events older than JOBQUEUE_AUDIT_RETENTION_DAYS and keeps the rest", async () => {
    const { t } = w;
    const event = (at: number, principal: string) => ({
      at,
      principal,
      action: "CancelJob",
      jobId: NO_SUCH_JOB,
      remoteAddress: "127.0.0.1",
      protocol: "rest",
      outcome: "not_found" as const,
      detail: null,
    });
    const now = Date.now();
    await t.app.store.auditInsert([
      event(now - 100 * DAY_MS, "old"),
      event(now - 91 * DAY_MS, "just-past"),
      event(now - 89 * DAY_MS, "kept"),
      event(now, "recent"),
    ]);
    const principals = async () =>
      (await t.app.store.auditList({ limit: 1000 })).events.map((e) => e.principal);
    await waitFor(async () => !(await principals()).includes("just-past"), {
      what: "the cleaner to delete the events older than 90 days",
    });
    expect(await principals()).toEqual(["recent", "kept"]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("start-up", () => {
  let dir: string;
  let spawned: SpawnedProcess[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "jobqueue-auth-"));
    spawned = [];
  });

  afterEach(async () => {
    for (const proc of spawned) proc.kill("SIGKILL");
    await Promise.all(spawned.map((proc) => proc.exited.catch(() => {})));
    rmSync(dir, { recursive: true, force: true });
  });

  function spawnServer(extra: Record<string, string>): SpawnedProcess {
    const proc = spawnServerProcess({ ...testEnv(dir), JOBQUEUE_LOG_LEVEL: "info", ...extra });
    spawned.push(proc);
    return proc;
  }

  it.each([
    [{}, "JOBQUEUE_AUTH=none"],
    [{ JOBQUEUE_AUTH: "keys" }, "JOBQUEUE_AUTH=keys"],
  ])(
    "refuses to listen on 0.0.0.0 without keys (%o): exit code 2, naming %s",
    async (env, named) => {
      const proc = spawnServer({ JOBQUEUE_HOST: "0.0.0.0", ...env });
      expect(await proc.exited).toEqual({ code: 2, signal: null });
      expect(proc.stderr).toContain(named);
      expect(proc.logs.some((l) => l.msg === "jobqueue listening")).toBe(false);
    },
  );

  it("listens on 0.0.0.0 without keys when JOBQUEUE_AUTH=none says so", async () => {
    const proc = await whenListening(
      spawnServer({ JOBQUEUE_HOST: "0.0.0.0", JOBQUEUE_AUTH: "none" }),
    );
    // Stopped at once: an open server on every interface is not left running.
    proc.kill("SIGTERM");
    const listening = proc.logs.find((l) => l.msg === "jobqueue listening")!;
    expect(listening).toMatchObject({ host: "0.0.0.0", auth: "none" });
    expect(await proc.exited).toEqual({ code: 0, signal: null });
  });

  it("listens on 0.0.0.0 with keys from JOBQUEUE_API_KEYS_FILE, and requires them", async () => {
    const file = join(dir, "api-keys");
    // Commas inside comments are part of the comment (they separate entries only outside one).
    writeFileSync(
      file,
      `# the team, rotated yearly\n${GENERATED.ada.line}\n${GENERATED.rita.line}  # read-only, for dashboards\n`,
    );
    const proc = await whenListening(
      spawnServer({ JOBQUEUE_HOST: "0.0.0.0", JOBQUEUE_API_KEYS_FILE: file }),
    );
    expect(proc.logs.find((l) => l.msg === "jobqueue listening")).toMatchObject({
      host: "0.0.0.0",
      auth: "2 API keys",
    });
    expect((await proc.rest.get("/jobs")).status).toBe(401);
    const res = await fetch(`${proc.url}/jobs`, { headers: as("rita") });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      jobs: [],
      next_page_token: null,
      watch_cursor: expect.stringMatching(/^\d{16}$/),
    });
    const denied = await fetch(`${proc.url}/jobs`, {
      method: "POST",
      headers: { ...as("rita"), "content-type": "application/json" },
      body: JSON.stringify({ url: DEST }),
    });
    expect(denied.status).toBe(403);
    // The file's keys, not the environment's: sam's key is not in it.
    expect((await fetch(`${proc.url}/jobs`, { headers: as("sam") })).status).toBe(401);
    expect((await proc.rest.get("/healthz")).status).toBe(200);
    proc.kill("SIGTERM");
    expect(await proc.exited).toEqual({ code: 0, signal: null });
  });
});
