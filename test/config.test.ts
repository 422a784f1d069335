import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { type Config, ConfigError, loadConfig, parseDbUrl } from "../src/config.js";

/** Runs `fn` and returns the ConfigError it throws; fails the test otherwise. */
function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError, but nothing was thrown");
}

describe("loadConfig", () => {
  it("with no variables set, gives the seed's defaults in the units their names carry", () => {
    expect(loadConfig({})).toEqual({
      host: "127.0.0.1",
      port: 8080,
      dbPath: join(process.cwd(), "data", "jobqueue.db"),
      concurrency: 4,
      pollIntervalMs: 300,
      defaultTimeoutMs: 30_000,
      maxTimeoutMs: 3_600_000,
      resultMaxBytes: 1_048_576,
      maxBodyBytes: 1_048_576,
      leaseMs: 30_000,
      shutdownGraceMs: 10_000,
      defaultMaxAttempts: 3,
      defaultBackoffStrategy: "exponential",
      defaultBackoffBaseMs: 1000,
      backoffMaxMs: 3_600_000,
      retryAfterMaxMs: 3_600_000,
      defaultTtlMs: null,
      cleanupIntervalMs: 60_000,
      logLevel: "info",
    } satisfies Config);
  });

  it.each<{ env: Record<string, string>; expected: Partial<Config> }>([
    { env: { JOBQUEUE_CONCURRENCY: "16" }, expected: { concurrency: 16 } },
    { env: { JOBQUEUE_CONCURRENCY: " 16 " }, expected: { concurrency: 16 } },
    { env: { JOBQUEUE_PORT: "0" }, expected: { port: 0 } },
    { env: { JOBQUEUE_PORT: "65535" }, expected: { port: 65535 } },
    { env: { JOBQUEUE_HOST: " 0.0.0.0 " }, expected: { host: "0.0.0.0" } },
    { env: { JOBQUEUE_POLL_INTERVAL: "1.5" }, expected: { pollIntervalMs: 1500 } },
    { env: { JOBQUEUE_LEASE_SECONDS: "0.25" }, expected: { leaseMs: 250 } },
    { env: { JOBQUEUE_LOG_LEVEL: "DEBUG" }, expected: { logLevel: "debug" } },
    {
      env: { JOBQUEUE_DEFAULT_BACKOFF_STRATEGY: "Linear" },
      expected: { defaultBackoffStrategy: "linear" },
    },
    { env: { JOBQUEUE_DB_URL: "sqlite:///:memory:" }, expected: { dbPath: ":memory:" } },
    { env: { JOBQUEUE_DEFAULT_TTL_SECONDS: "60" }, expected: { defaultTtlMs: 60_000 } },
    { env: { JOBQUEUE_DEFAULT_TTL_SECONDS: "" }, expected: { defaultTtlMs: null } },
    { env: { JOBQUEUE_DEFAULT_TTL_SECONDS: "  " }, expected: { defaultTtlMs: null } },
  ])("reads $env", ({ env, expected }) => {
    expect(loadConfig(env)).toMatchObject(expected);
  });

  it("treats empty and blank strings as unset: every default applies", () => {
    const names = [
      "JOBQUEUE_HOST",
      "JOBQUEUE_PORT",
      "JOBQUEUE_DB_URL",
      "JOBQUEUE_CONCURRENCY",
      "JOBQUEUE_POLL_INTERVAL",
      "JOBQUEUE_DEFAULT_TIMEOUT",
      "JOBQUEUE_MAX_TIMEOUT",
      "JOBQUEUE_RESULT_MAX_BYTES",
      "JOBQUEUE_MAX_BODY_BYTES",
      "JOBQUEUE_LEASE_SECONDS",
      "JOBQUEUE_SHUTDOWN_GRACE_SECONDS",
      "JOBQUEUE_DEFAULT_MAX_ATTEMPTS",
      "JOBQUEUE_DEFAULT_BACKOFF_STRATEGY",
      "JOBQUEUE_DEFAULT_BACKOFF_SECONDS",
      "JOBQUEUE_BACKOFF_MAX_SECONDS",
      "JOBQUEUE_RETRY_AFTER_MAX_SECONDS",
      "JOBQUEUE_DEFAULT_TTL_SECONDS",
      "JOBQUEUE_CLEANUP_INTERVAL",
      "JOBQUEUE_LOG_LEVEL",
    ];
    const defaults = loadConfig({});
    expect(loadConfig(Object.fromEntries(names.map((n) => [n, ""])))).toEqual(defaults);
    expect(loadConfig(Object.fromEntries(names.map((n) => [n, "   "])))).toEqual(defaults);
  });

  it.each([
    { name: "JOBQUEUE_CONCURRENCY", value: "abc", problem: "must be an integer" },
    { name: "JOBQUEUE_CONCURRENCY", value: "0", problem: "must be between 1 and 10000" },
    { name: "JOBQUEUE_CONCURRENCY", value: "2.5", problem: "must be an integer" },
    { name: "JOBQUEUE_PORT", value: "70000", problem: "must be between 0 and 65535" },
    { name: "JOBQUEUE_PORT", value: "-1", problem: "must be between 0 and 65535" },
    { name: "JOBQUEUE_POLL_INTERVAL", value: "-1", problem: "must be between" },
    { name: "JOBQUEUE_POLL_INTERVAL", value: "fast", problem: "must be a number of seconds" },
    { name: "JOBQUEUE_POLL_INTERVAL", value: "Infinity", problem: "must be a number of seconds" },
    { name: "JOBQUEUE_LOG_LEVEL", value: "loud", problem: "must be one of" },
    { name: "JOBQUEUE_DEFAULT_BACKOFF_STRATEGY", value: "random", problem: "must be one of" },
    { name: "JOBQUEUE_DEFAULT_TTL_SECONDS", value: "0", problem: "must be between" },
    { name: "JOBQUEUE_DB_URL", value: "mysql://x", problem: "sqlite" },
    { name: "JOBQUEUE_DB_URL", value: "postgres://u@h/db", problem: "not supported yet" },
  ])("rejects $name=$value, naming the variable", ({ name, value, problem }) => {
    const err = configError(() => loadConfig({ [name]: value }));
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toContain(`${name}=${JSON.stringify(value)}`);
    expect(err.problems[0]).toContain(problem);
    expect(err.message).toContain(name);
  });

  it("lists every bad variable when several are bad", () => {
    const err = configError(() =>
      loadConfig({
        JOBQUEUE_CONCURRENCY: "abc",
        JOBQUEUE_PORT: "70000",
        JOBQUEUE_HOST: "10.0.0.1",
        JOBQUEUE_POLL_INTERVAL: "-1",
        JOBQUEUE_LOG_LEVEL: "loud",
        JOBQUEUE_DEFAULT_BACKOFF_STRATEGY: "random",
      }),
    );
    const bad = [
      "JOBQUEUE_CONCURRENCY",
      "JOBQUEUE_PORT",
      "JOBQUEUE_POLL_INTERVAL",
      "JOBQUEUE_LOG_LEVEL",
      "JOBQUEUE_DEFAULT_BACKOFF_STRATEGY",
    ];
    expect(err.problems).toHaveLength(bad.length);
    for (const name of bad) {
      expect(err.problems.some((p) => p.startsWith(`${name}=`))).toBe(true);
      expect(err.message).toContain(name);
    }
    expect(err.message).not.toContain("JOBQUEUE_HOST");
  });

  it("rejects a default timeout above the maximum timeout", () => {
    const err = configError(() =>
      loadConfig({ JOBQUEUE_DEFAULT_TIMEOUT: "120", JOBQUEUE_MAX_TIMEOUT: "60" }),
    );
    expect(err.message).toContain("JOBQUEUE_DEFAULT_TIMEOUT");
    expect(err.message).toContain("JOBQUEUE_MAX_TIMEOUT");
  });
});

describe("parseDbUrl", () => {
  it.each([
    {
      raw: "sqlite+aiosqlite:///./data/jobqueue.db",
      expected: join(process.cwd(), "data", "jobqueue.db"),
    },
    { raw: "sqlite:///rel/x.db", expected: join(process.cwd(), "rel", "x.db") },
    { raw: "sqlite:///./rel/x.db", expected: join(process.cwd(), "rel", "x.db") },
    { raw: "sqlite:////abs/x.db", expected: "/abs/x.db" },
    { raw: "sqlite+aiosqlite:////abs/x.db", expected: "/abs/x.db" },
    { raw: "sqlite:///rel/x.db?mode=rwc", expected: join(process.cwd(), "rel", "x.db") },
    { raw: "sqlite:///:memory:", expected: ":memory:" },
    { raw: "sqlite://", expected: ":memory:" },
    { raw: "  sqlite:///:memory:  ", expected: ":memory:" },
    { raw: "data/plain.db", expected: join(process.cwd(), "data", "plain.db") },
    { raw: "./plain.db", expected: join(process.cwd(), "plain.db") },
    { raw: "/var/lib/jobqueue/jobs.db", expected: "/var/lib/jobqueue/jobs.db" },
  ])("$raw → $expected", ({ raw, expected }) => {
    expect(parseDbUrl(raw)).toBe(expected);
  });

  it.each([
    { raw: "postgres://user:pw@localhost:5432/jobs", message: /not supported yet/ },
    { raw: "postgresql://localhost/jobs", message: /not supported yet/ },
    { raw: "mysql://x", message: /sqlite/ },
    { raw: "", message: /empty/ },
  ])("rejects $raw", ({ raw, message }) => {
    expect(() => parseDbUrl(raw)).toThrow(message);
  });
});
