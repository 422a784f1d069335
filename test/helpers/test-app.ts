import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type App, type AppDeps, createApp } from "../../src/app.js";
import { type Config, loadConfig } from "../../src/config.js";
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
  dbPath: string;
  rest: Rest;
  /** Enqueues over REST and returns the job id; fails the test on a non-200. */
  enqueue(job: Record<string, unknown>): Promise<string>;
  /** Polls GET /jobs/{id} until the status is one of `statuses`; returns the job. */
  waitForStatus(jobId: string, ...statuses: string[]): Promise<any>;
  stop(): Promise<void>;
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

/** Starts the real server in-process on its own SQLite file and an ephemeral port. */
export async function startTestApp(
  env: Record<string, string> = {},
  deps: AppDeps = {},
): Promise<TestApp> {
  const dir = mkdtempSync(join(tmpdir(), "jobqueue-test-"));
  const config = loadConfig({ ...testEnv(dir), ...env });
  const app = await createApp(config, deps);
  const { port } = await app.start();
  const url = `http://127.0.0.1:${port}`;
  const rest = restClient(url);
  return {
    app,
    config,
    url,
    port,
    dir,
    dbPath: config.db.kind === "sqlite" ? config.db.path : "",
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
      await app.stop();
      rmSync(dir, { recursive: true, force: true });
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
