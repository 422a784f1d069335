import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, type AppDeps, createApp } from "../../src/app.js";
import { type Config, loadConfig } from "../../src/config.js";
import { openStore } from "../../src/store/open-store.js";
import { dbUrlFor, dropSchema, uniqueSchema } from "./postgres.js";
import { waitFor } from "./wait-for.js";

export interface Rest {
  get(path: string): Promise<{ status: number; json: any }>;
  post(path: string, body?: unknown): Promise<{ status: number; json: any }>;
  /** Sends a raw body (e.g. malformed JSON). */
  postRaw(path: string, body: string, contentType?: string): Promise<{ status: number; json: any }>;
}

export interface TestApp {
  app: App;
  config: Config;
  /** http://127.0.0.1:<port> */
  url: string;
  port: number;
  dir: string;
  /** The SQLite file ("" on PostgreSQL). */
  dbPath: string;
  /** Where this app keeps its jobs; pass it as `database` to start another app on them. */
  database: TestDatabase;
  rest: Rest;
  /** Enqueues over REST and returns the job id; fails the test on a non-200. */
  enqueue(job: Record<string, unknown>): Promise<string>;
  /** Polls GET /jobs/{id} until the status is one of `statuses`; returns the job. */
  waitForStatus(jobId: string, ...statuses: string[]): Promise<any>;
  /** Stops the app; the last app of a database to stop removes it (file or schema). */
  stop(): Promise<void>;
}

export const STORE_KINDS = ["sqlite", "postgres"] as const;
export type StoreKind = (typeof STORE_KINDS)[number];

/**
 * The store a test app uses when its test does not say: `JOBQUEUE_TEST_STORE=postgres npx vitest
 * run test/e2e/…` runs an e2e file against PostgreSQL (PG_URL, a schema per app) instead of SQLite.
 * Tests that read the SQLite file itself (dbPath) are SQLite-only.
 */
export function defaultStoreKind(): StoreKind {
  const kind = process.env.JOBQUEUE_TEST_STORE ?? "sqlite";
  if (!(STORE_KINDS as readonly string[]).includes(kind)) {
    throw new Error(`JOBQUEUE_TEST_STORE must be sqlite or postgres, not ${JSON.stringify(kind)}`);
  }
  return kind as StoreKind;
}

/**
 * A database of test apps: an SQLite file in a directory of its own, or a PostgreSQL schema of its
 * own (with the secret key every app on it must share). Several apps may use it one after another
 * (a restart) or at once (nodes); it is removed when the last of them stops.
 */
export interface TestDatabase {
  readonly kind: StoreKind;
  /** The directory of the SQLite file (and its secret.key); on PostgreSQL, an empty scratch dir. */
  readonly dir: string;
  /** The PostgreSQL schema ("" on SQLite). */
  readonly schema: string;
  /** The environment that points an app at it. */
  readonly env: Record<string, string>;
  /** Apps using it now. */
  users: number;
  remove(): Promise<void>;
}

export function createTestDatabase(kind: StoreKind = defaultStoreKind()): TestDatabase {
  const dir = mkdtempSync(join(tmpdir(), "jobqueue-test-"));
  const schema = kind === "postgres" ? uniqueSchema("e2e") : "";
  let removed: Promise<void> | null = null;
  return {
    kind,
    dir,
    schema,
    env:
      kind === "postgres"
        ? {
            JOBQUEUE_DB_URL: dbUrlFor(schema),
            JOBQUEUE_SECRET_KEY: randomBytes(32).toString("hex"),
            JOBQUEUE_DB_POOL_SIZE: "4",
          }
        : {},
    users: 0,
    remove() {
      removed ??= (async () => {
        rmSync(dir, { recursive: true, force: true });
        if (kind === "postgres") await dropSchema(schema);
      })();
      return removed;
    },
  };
}

export interface TestAppOptions {
  /** The store, when no `database` is given; default {@link defaultStoreKind}. */
  store?: StoreKind;
  /** Start on an existing database (another app's, to restart on its jobs). */
  database?: TestDatabase;
  /**
   * Another node holds the maintenance lead for a day, so this app runs none of the leader's
   * services: a bulk action it starts stays running (and cancelable) for as long as the test needs.
   */
  follower?: boolean;
}

/** The environment every test server starts from: its own SQLite file, an ephemeral port. */
export function testEnv(dir: string): Record<string, string> {
  return {
    JOBQUEUE_HOST: "127.0.0.1",
    JOBQUEUE_PORT: "0",
    JOBQUEUE_DB_URL: `sqlite:///${join(dir, "jobqueue.db")}`,
    JOBQUEUE_LOG_LEVEL: process.env.JOBQUEUE_TEST_LOG ?? "silent",
    JOBQUEUE_POLL_INTERVAL: "0.05",
    JOBQUEUE_SHUTDOWN_GRACE_SECONDS: "1",
    // Test targets listen on loopback, which the outbound policy refuses by default.
    JOBQUEUE_ALLOWED_HOSTS: "127.0.0.1",
  };
}

/**
 * Starts the real server in-process on an ephemeral port, on a database of its own (an SQLite
 * file, or a PostgreSQL schema: see {@link TestAppOptions}) or on the one given.
 */
export async function startTestApp(
  env: Record<string, string> = {},
  deps: AppDeps = {},
  options: TestAppOptions = {},
): Promise<TestApp> {
  const database = options.database ?? createTestDatabase(options.store);
  const dir = database.dir;
  database.users++;
  let app: App;
  let config: Config;
  let port: number;
  try {
    config = loadConfig({ ...testEnv(dir), ...database.env, ...env });
    if (options.follower) {
      const store = await openStore(config.db);
      try {
        if (!(await store.leaderAttemptElect({ node: "another-node", ttlMs: 86_400_000 }))) {
          throw new Error("another node already leads on this database");
        }
      } finally {
        await store.close();
      }
    }
    app = await createApp(config, deps);
    ({ port } = await app.start());
  } catch (err) {
    if (--database.users === 0) await database.remove();
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  const rest = restClient(url);
  let stopped: Promise<void> | null = null;
  return {
    app,
    config,
    url,
    port,
    dir,
    dbPath: config.db.kind === "sqlite" ? config.db.path : "",
    database,
    rest,
    async enqueue(job) {
      const res = await rest.post("/jobs", job);
      if (res.status !== 200) throw new Error(`enqueue: ${res.status} ${JSON.stringify(res.json)}`);
      return res.json.job_id as string;
    },
    waitForStatus(jobId, ...statuses) {
      return waitFor(
        async () => {
          const { json } = await rest.get(`/jobs/${jobId}`);
          return statuses.includes(json.status) ? json : undefined;
        },
        { what: `job ${jobId} to be ${statuses.join(" or ")}` },
      );
    },
    async stop() {
      if (stopped) return stopped;
      stopped = (async () => {
        await app.stop();
        if (--database.users === 0) await database.remove();
      })();
      return stopped;
    },
  };
}

export function restClient(base: string): Rest {
  const call = async (method: string, path: string, body?: string, contentType?: string) => {
    const res = await fetch(base + path, {
      method,
      headers: body === undefined ? {} : { "content-type": contentType ?? "application/json" },
      body,
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return { status: res.status, json: json as any };
  };
  return {
    get: (path) => call("GET", path),
    post: (path, body) => call("POST", path, body === undefined ? undefined : JSON.stringify(body)),
    postRaw: (path, body, contentType) => call("POST", path, body, contentType),
  };
}
