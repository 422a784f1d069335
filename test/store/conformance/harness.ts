import { monotonicFactory } from "ulid";
import { afterEach, beforeEach, describe, expect } from "vitest";
import type { Clock } from "../../../src/job/clock.js";
import type { AttemptEndRecord, Job, JobResult, NewJob } from "../../../src/job/types.js";
import type {
  ClaimedJob,
  JobListParams,
  JobStore,
  Lease,
  NextState,
  ResultRecord,
} from "../../../src/store/job-store.js";

/**
 * The world one conformance test runs in, as a driver provides it: a fresh, empty database of its
 * own (a temp file, a schema), and stores on it that read the given clock. `open` may be called
 * more than once per test: the stores share the database, as nodes do.
 */
export interface StoreDriver {
  name: string;
  /** Creates the test's database; returns how to open stores on it and how to throw it away. */
  createWorld(): Promise<{
    open: (clock: Clock) => Promise<JobStore>;
    cleanup: () => Promise<void>;
  }>;
  /** Whether stores on one database can race as separate nodes do (not so for SQLite). */
  concurrentNodes: boolean;
}

/** The origin of every time in the suite (2025-01-01T00:00:00Z); tests pass T0 + an offset. */
export const T0 = 1_735_689_600_000;
export const LEASE_MS = 30_000;

/** A claim's queues: the default queue, as much as the claim's limit allows. */
export const DEFAULT_QUEUE_CLAIM = [{ name: "default", limit: 10_000, rate: null }];

/** A clock a test sets. */
export interface TestClock extends Clock {
  set(ms: number): void;
}

export function testClock(start = T0): TestClock {
  let now = start;
  return {
    now: () => now,
    set(ms) {
      now = ms;
    },
  };
}

/**
 * A store whose methods take the time of the call as `now` in their params: the suite sets the
 * store's clock to it, then calls the store. Tests read as "at T, this happens", as before the
 * store read its own clock.
 */
export type TimedStore = {
  [K in keyof JobStore]: JobStore[K] extends (p: infer P, ...rest: infer R) => infer O
    ? [P] extends [object]
      ? (p: P & { now?: number }, ...rest: R) => O
      : JobStore[K]
    : JobStore[K];
};

export function timed(store: JobStore, clock: TestClock): TimedStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== "function") return value;
      return (first?: unknown, ...rest: unknown[]) => {
        if (first !== null && typeof first === "object" && "now" in first) {
          const { now, ...params } = first as { now: number };
          clock.set(now);
          return value.call(target, params, ...rest);
        }
        return value.call(target, first, ...rest);
      };
    },
  }) as unknown as TimedStore;
}

// Monotonic: ids sort in the order the jobs are built, as the queue's own ids do.
const nextUlid = monotonicFactory();

/** A valid {@link NewJob}, created at T0 and due at once unless overridden. */
export function newJob(overrides: Partial<NewJob> = {}): NewJob {
  const createdAt = overrides.createdAt ?? T0;
  const scheduledAt = overrides.scheduledAt ?? null;
  return {
    id: `j_${nextUlid(createdAt)}`,
    method: "POST",
    url: "https://example.test/hook",
    headers: {},
    params: {},
    body: null,
    timeoutMs: 10_000,
    priority: 0,
    maxAttempts: 3,
    backoffStrategy: "exponential",
    backoffBaseMs: 1_000,
    scheduledAt,
    ttlMs: null,
    tags: [],
    idempotencyKey: null,
    requestHash: null,
    secretHeaderNames: [],
    sealedHeaders: null,
    followRedirects: false,
    maxRedirects: 5,
    rateLimitKey: null,
    owner: null,
    bucket: "example.test",
    queue: "default",
    host: "example.test",
    callbackUrl: null,
    sign: false,
    sealedSigningSecret: null,
    callbackOf: null,
    createdAt,
    runAt: scheduledAt ?? createdAt,
    ...overrides,
  };
}

export function succeededEnd(durationMs = 40): AttemptEndRecord {
  return {
    outcome: "succeeded",
    responseStatus: 200,
    errorCode: null,
    error: null,
    retryable: false,
    durationMs,
  };
}

export function httpFailedEnd(status: number, retryable: boolean): AttemptEndRecord {
  return {
    outcome: "failed",
    responseStatus: status,
    errorCode: "http_status",
    error: `the target answered ${status}`,
    retryable,
    durationMs: 25,
  };
}

export const interruptedEnd: AttemptEndRecord = {
  outcome: "interrupted",
  responseStatus: null,
  errorCode: "interrupted",
  error: "the worker was stopped",
  retryable: true,
  durationMs: 5,
};

/**
 * A result with a response, as the worker would write it for `job`'s current attempt, with the
 * job, attempt and time the store will record for it (a finish at `finishedAt`).
 */
export function responseResult(
  job: ClaimedJob,
  finishedAt: number,
  status = 200,
  text = '{"ok":true}',
): JobResult {
  return {
    jobId: job.id,
    attempt: job.attempt,
    response: {
      status,
      headers: { "content-type": "application/json", "x-request-id": `r-${job.attempt}` },
      body: new TextEncoder().encode(text),
      bodyEncoding: "json",
      truncated: false,
    },
    error: status >= 400 ? `the target answered ${status}` : null,
    durationMs: 40,
    finishedAt,
  };
}

export function leaseOf(job: ClaimedJob): Lease {
  return { jobId: job.id, token: job.leaseToken };
}

/** Bytes as a plain array, so comparisons do not depend on Buffer vs Uint8Array. */
export function bytesOf(body: Uint8Array | undefined): number[] | undefined {
  return body === undefined ? undefined : Array.from(body);
}

/** What each area of the suite gets: the test's store and the helpers that act on it. */
export interface StoreTest {
  readonly driver: StoreDriver;
  /** The test's store, read through its clock (see {@link TimedStore}). */
  readonly store: TimedStore;
  readonly clock: TestClock;
  /** Another store on the same database with its own clock: another node. */
  peer(): Promise<{ store: TimedStore; clock: TestClock }>;
  insert(overrides?: Partial<NewJob>): Promise<Job>;
  /** Claims as the worker pool does, after the scheduler has made due jobs available. */
  claim(now: number, limit?: number, node?: string, leaseMs?: number): Promise<ClaimedJob[]>;
  claimOne(now: number, node?: string, leaseMs?: number): Promise<ClaimedJob>;
  finish(
    job: ClaimedJob,
    now: number,
    next: NextState | null,
    end?: AttemptEndRecord,
    result?: ResultRecord | null,
    token?: string,
  ): Promise<boolean>;
  get(id: string, now: number): Promise<Job>;
  listIds(now: number, filters?: Omit<JobListParams, "limit">): Promise<string[]>;
}

/**
 * Registers `areas` for a driver: each test gets a fresh world and a store on it, closed and
 * thrown away afterwards (peers too).
 */
export function describeStore(driver: StoreDriver, areas: ((t: StoreTest) => void)[]): void {
  describe(driver.name, () => {
    let world: Awaited<ReturnType<StoreDriver["createWorld"]>>;
    let opened: JobStore[] = [];
    let current: { store: TimedStore; clock: TestClock };

    const open = async () => {
      const clock = testClock();
      const store = await world.open(clock);
      opened.push(store);
      return { store: timed(store, clock), clock };
    };

    beforeEach(async () => {
      world = await driver.createWorld();
      current = await open();
    });

    afterEach(async () => {
      for (const store of opened.splice(0)) await store.close();
      opened = [];
      await world.cleanup();
    });

    const t: StoreTest = {
      driver,
      get store() {
        return current.store;
      },
      get clock() {
        return current.clock;
      },
      peer: open,
      async insert(overrides = {}) {
        const { job, inserted } = await current.store.jobInsert(newJob(overrides));
        expect(inserted).toBe(true);
        return job;
      },
      async claim(now, limit = 100, node = "w1", leaseMs = LEASE_MS) {
        await current.store.jobPromoteScheduled({ now, limit: 10_000 });
        return (
          await current.store.jobClaim({ queues: DEFAULT_QUEUE_CLAIM, now, limit, leaseMs, node })
        ).jobs;
      },
      async claimOne(now, node = "w1", leaseMs = LEASE_MS) {
        const claimed = await t.claim(now, 1, node, leaseMs);
        expect(claimed).toHaveLength(1);
        return claimed[0]!;
      },
      finish(job, now, next, end = succeededEnd(), result = null, token = job.leaseToken) {
        return current.store.jobFinishAttempt({
          lease: { jobId: job.id, token },
          now,
          end,
          next,
          result,
        });
      },
      async get(id, now) {
        const job = await current.store.jobGet({ id, now });
        expect(job).not.toBeNull();
        return job!;
      },
      async listIds(now, filters = {}) {
        const { jobs, next } = await current.store.jobList({ now, limit: 100, ...filters });
        expect(next).toBeNull();
        return jobs.map((j) => j.id);
      },
    };

    for (const area of areas) area(t);
  });
}
