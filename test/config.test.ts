import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  type Config,
  ConfigError,
  editDistance,
  loadConfig,
  parseDbUrl,
  unknownVariables,
} from "../src/config.js";

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
      db: { kind: "sqlite", path: join(process.cwd(), "data", "jobqueue.db") },
      nodeId: `${hostname()}-${process.pid}`,
      dbPoolSize: 10,
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
      eventRetentionMs: 86_400_000,
      logLevel: "info",
      allowedHosts: [],
      deniedHosts: [],
      secretKeys: null,
      apiKeysFile: [],
      apiKeys: [],
      signingSecrets: [],
      callbackMaxBytes: 65_536,
      callbackMaxAttempts: 5,
      authMode: "auto",
      auditRetentionMs: 90 * 86_400_000,
      hostLimits: [],
      maxRequestBytes: 4_194_304,
      maxUrlLength: 8192,
      maxHeaders: 64,
      maxHeaderBytes: 16_384,
      maxTags: 20,
      maxTagLength: 64,
      maxPageSize: 1000,
      maxTtlMs: 31_536_000_000,
      maxBatchSize: 1000,
      auditRefusalsPerMinute: 10,
      authFailuresPerMinute: 300,
      corsOrigins: [],
      accessLog: false,
      minFreeDiskBytes: 64 * 1_048_576,
      metrics: "auto",
      otlpTracesUrl: null,
      auth: { enabled: false, keys: [] },
    } satisfies Config);
  });

  it.each<{ env: Record<string, string>; expected: Partial<Config> }>([
    { env: { JOBQUEUE_CONCURRENCY: "16" }, expected: { concurrency: 16 } },
    { env: { JOBQUEUE_CONCURRENCY: " 16 " }, expected: { concurrency: 16 } },
    { env: { JOBQUEUE_PORT: "0" }, expected: { port: 0 } },
    {
      env: { JOBQUEUE_CORS_ORIGINS: " https://a.example , http://b.example:8080/ " },
      expected: { corsOrigins: ["https://a.example", "http://b.example:8080"] },
    },
    { env: { JOBQUEUE_PORT: "65535" }, expected: { port: 65535 } },
    {
      env: { JOBQUEUE_HOST: " 0.0.0.0 ", JOBQUEUE_AUTH: "none" },
      expected: { host: "0.0.0.0", auth: { enabled: false, keys: [] } },
    },
    { env: { JOBQUEUE_POLL_INTERVAL: "1.5" }, expected: { pollIntervalMs: 1500 } },
    { env: { JOBQUEUE_LEASE_SECONDS: "0.25" }, expected: { leaseMs: 250 } },
    { env: { JOBQUEUE_LOG_LEVEL: "DEBUG" }, expected: { logLevel: "debug" } },
    {
      env: { JOBQUEUE_DEFAULT_BACKOFF_STRATEGY: "Linear" },
      expected: { defaultBackoffStrategy: "linear" },
    },
    {
      env: { JOBQUEUE_DB_URL: "sqlite:///:memory:" },
      expected: { db: { kind: "sqlite", path: ":memory:" } },
    },
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
    { name: "JOBQUEUE_DB_URL", value: "postgres://u@h/db?schema=Bad-Name", problem: "schema" },
    { name: "JOBQUEUE_CORS_ORIGINS", value: "app.example.com", problem: "is not an origin" },
    {
      name: "JOBQUEUE_CORS_ORIGINS",
      value: "https://a.example/path",
      problem: "scheme, host and port only",
    },
    { name: "JOBQUEUE_AUTH_FAILURES_PER_MINUTE", value: "-1", problem: "must be between" },
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
    expect(parseDbUrl(raw)).toEqual({ kind: "sqlite", path: expected });
  });

  it.each([
    {
      raw: "postgres://user@db.internal:5432/jobs",
      url: "postgres://user@db.internal:5432/jobs",
      schema: "jobqueue",
    },
    {
      raw: "postgresql://user:pw@localhost/jobs?schema=tenant_a&sslmode=require",
      url: "postgres://user:pw@localhost/jobs?sslmode=require",
      schema: "tenant_a",
    },
  ])("$raw → postgres, schema $schema", ({ raw, url, schema }) => {
    expect(parseDbUrl(raw)).toEqual({ kind: "postgres", url, schema });
  });

  it.each([
    { raw: "postgres://localhost/jobs?schema=1abc", message: /schema/ },
    { raw: "postgres://[oops/jobs", message: /not a valid/ },
    { raw: "mysql://x", message: /sqlite/ },
    { raw: "", message: /empty/ },
  ])("rejects $raw", ({ raw, message }) => {
    expect(() => parseDbUrl(raw)).toThrow(message);
  });
});

describe("security settings", () => {
  const HASH = `sha256:${"ab".repeat(32)}`;

  it("refuses to listen beyond loopback without API keys, unless JOBQUEUE_AUTH=none says so", () => {
    for (const host of ["0.0.0.0", "10.1.2.3", "::"]) {
      const err = configError(() => loadConfig({ JOBQUEUE_HOST: host }));
      expect(err.message).toContain("JOBQUEUE_HOST");
      expect(err.message).toContain("JOBQUEUE_AUTH=none");
    }
    for (const host of ["127.0.0.1", "127.0.0.2", "::1", "localhost"]) {
      expect(loadConfig({ JOBQUEUE_HOST: host }).auth.enabled).toBe(false);
    }
    expect(loadConfig({ JOBQUEUE_HOST: "0.0.0.0", JOBQUEUE_AUTH: "none" }).auth.enabled).toBe(
      false,
    );
  });

  it("turns authentication on when keys are configured, on any address", () => {
    const config = loadConfig({
      JOBQUEUE_HOST: "0.0.0.0",
      JOBQUEUE_API_KEYS: `alice admin ${HASH}`,
    });
    expect(config.auth).toEqual({
      enabled: true,
      keys: [{ principal: "alice", role: "admin", sha256: "ab".repeat(32), signingSecrets: [] }],
    });
  });

  it("refuses the same key configured for two principals", () => {
    const err = configError(() =>
      loadConfig({ JOBQUEUE_API_KEYS: `alice admin ${HASH},bob reader ${HASH}` }),
    );
    expect(err.message).toContain("alice");
    expect(err.message).toContain("bob");
  });

  it("names the contradictions: keys with JOBQUEUE_AUTH=none, JOBQUEUE_AUTH=keys without keys", () => {
    expect(
      configError(() =>
        loadConfig({ JOBQUEUE_AUTH: "none", JOBQUEUE_API_KEYS: `a reader ${HASH}` }),
      ).message,
    ).toContain("JOBQUEUE_AUTH=none");
    expect(configError(() => loadConfig({ JOBQUEUE_AUTH: "keys" })).message).toContain(
      "JOBQUEUE_AUTH=keys",
    );
  });

  it("refuses plaintext API keys and unknown roles, without echoing the value", () => {
    const plain = configError(() =>
      loadConfig({ JOBQUEUE_API_KEYS: "alice admin hunter2-plaintext" }),
    );
    expect(plain.message).toContain("JOBQUEUE_API_KEYS");
    expect(plain.message).toContain("sha256:");
    expect(plain.message).not.toContain("hunter2-plaintext");
    expect(
      configError(() => loadConfig({ JOBQUEUE_API_KEYS: `alice root ${HASH}` })).message,
    ).toContain("role");
  });

  it("reads an API keys file and names an unreadable one", () => {
    const dir = mkdtempSync(join(tmpdir(), "jobqueue-config-"));
    try {
      const file = join(dir, "keys");
      writeFileSync(
        file,
        `# team keys\nalice admin ${HASH}\n\nbob reader sha256:${"cd".repeat(32)}  # ro\n`,
      );
      const config = loadConfig({ JOBQUEUE_API_KEYS_FILE: file });
      expect(config.auth.keys.map((k) => [k.principal, k.role])).toEqual([
        ["alice", "admin"],
        ["bob", "reader"],
      ]);
      expect(
        configError(() => loadConfig({ JOBQUEUE_API_KEYS_FILE: join(dir, "missing") })).message,
      ).toContain("JOBQUEUE_API_KEYS_FILE");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("reads JOBQUEUE_SECRET_KEY as hex or base64, several for rotation, and never echoes it", () => {
    const hex = "11".repeat(32);
    const b64 = Buffer.alloc(32, 7).toString("base64");
    const keys = loadConfig({ JOBQUEUE_SECRET_KEY: `${hex}, ${b64}` }).secretKeys!;
    expect(keys.map((k) => k.toString("hex"))).toEqual([hex, "07".repeat(32)]);
    const err = configError(() => loadConfig({ JOBQUEUE_SECRET_KEY: "too-short-secret" }));
    expect(err.message).toContain("JOBQUEUE_SECRET_KEY");
    expect(err.message).not.toContain("too-short-secret");
  });

  it("validates host lists and host limits, naming the variable", () => {
    expect(
      loadConfig({ JOBQUEUE_ALLOWED_HOSTS: "127.0.0.1, *.internal.test, 10.0.0.0/8" }).allowedHosts,
    ).toEqual(["127.0.0.1", "*.internal.test", "10.0.0.0/8"]);
    expect(
      configError(() => loadConfig({ JOBQUEUE_ALLOWED_HOSTS: "10.0.0.0/33" })).message,
    ).toContain("JOBQUEUE_ALLOWED_HOSTS");
    expect(configError(() => loadConfig({ JOBQUEUE_DENIED_HOSTS: "bad host!" })).message).toContain(
      "JOBQUEUE_DENIED_HOSTS",
    );
    expect(
      loadConfig({ JOBQUEUE_HOST_LIMITS: "api.example.com=10/s;concurrency=2,*.slow.io=1/m" })
        .hostLimits,
    ).toHaveLength(2);
    expect(
      configError(() => loadConfig({ JOBQUEUE_HOST_LIMITS: "api.example.com=fast" })).message,
    ).toContain("JOBQUEUE_HOST_LIMITS");
  });

  it("keeps JOBQUEUE_MAX_REQUEST_BYTES at least JOBQUEUE_MAX_BODY_BYTES", () => {
    expect(
      configError(() =>
        loadConfig({ JOBQUEUE_MAX_REQUEST_BYTES: "2048", JOBQUEUE_MAX_BODY_BYTES: "4096" }),
      ).message,
    ).toContain("JOBQUEUE_MAX_REQUEST_BYTES");
  });
});

describe("unknownVariables", () => {
  it("names JOBQUEUE_* variables no setting reads, with the closest setting, and nothing else", () => {
    expect(
      unknownVariables({
        JOBQUEUE_CONCURENCY: "8",
        JOBQUEUE_PORT: "1",
        JOBQUEUE_LOGLEVEL: "debug",
        JOBQUEUE_DATABASE_URL: "sqlite:///x.db",
        JOBQUEUE_WHATEVER: "1",
        PATH: "/bin",
        jobqueue_port: "1",
      }),
    ).toEqual([
      { name: "JOBQUEUE_CONCURENCY", closest: "JOBQUEUE_CONCURRENCY", likelyTypo: true },
      { name: "JOBQUEUE_DATABASE_URL", closest: "JOBQUEUE_DB_URL", likelyTypo: false },
      { name: "JOBQUEUE_LOGLEVEL", closest: "JOBQUEUE_LOG_LEVEL", likelyTypo: true },
      { name: "JOBQUEUE_WHATEVER", closest: expect.any(String), likelyTypo: false },
    ]);
  });

  it.each([
    ["", "", 0],
    ["abc", "abc", 0],
    ["abc", "acb", 1],
    ["abc", "ab", 1],
    ["kitten", "sitting", 3],
    ["JOBQUEUE_PROT", "JOBQUEUE_PORT", 1],
  ])("editDistance(%j, %j) = %i", (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });
});

describe("signing secrets on API key entries", () => {
  it("reads whsec_ secrets after the key, per principal, and refuses others naming the entry", async () => {
    const { parseApiKeys, signingSecretsOf } = await import("../src/auth/api-keys.js");
    const a = `whsec_${Buffer.alloc(32, 1).toString("base64")}`;
    const b = `whsec_${Buffer.alloc(32, 2).toString("base64")}`;
    const hash = `sha256:${"ab".repeat(32)}`;
    const entries = parseApiKeys(
      `alice submitter ${hash} ${a} ${b}\nbob reader sha256:${"cd".repeat(32)}\nalice admin sha256:${"ef".repeat(32)} ${b}`,
      "line",
    );
    const of = signingSecretsOf(entries, [a]);
    expect(of("alice")).toEqual([a, b]);
    expect(of("bob")).toEqual([]);
    expect(of(null)).toEqual([a]);
    expect(() => parseApiKeys(`alice submitter ${hash} secret-in-clear`, "line")).toThrow(
      /^line entry 1: after the key, only whsec_ signing secrets may follow/,
    );
    expect(() => parseApiKeys(`alice submitter ${hash} secret-in-clear`, "line")).not.toThrow(
      /secret-in-clear/,
    );
  });
});
