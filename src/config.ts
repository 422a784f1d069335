import { resolve } from "node:path";
import { BACKOFF_STRATEGIES, type BackoffStrategy } from "./job/types.js";

/** Everything the process is told from outside, validated once, with units in the names. */
export interface Config {
  host: string;
  port: number;
  /** SQLite file path (or ":memory:"). */
  dbPath: string;
  concurrency: number;
  pollIntervalMs: number;
  defaultTimeoutMs: number;
  maxTimeoutMs: number;
  resultMaxBytes: number;
  maxBodyBytes: number;
  leaseMs: number;
  shutdownGraceMs: number;
  defaultMaxAttempts: number;
  defaultBackoffStrategy: BackoffStrategy;
  defaultBackoffBaseMs: number;
  backoffMaxMs: number;
  retryAfterMaxMs: number;
  /** null keeps finished jobs. */
  defaultTtlMs: number | null;
  cleanupIntervalMs: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

/** One documented setting: its variable, default, meaning and how to read it. */
interface Setting<K extends keyof Config> {
  env: string;
  key: K;
  default: string;
  doc: string;
  parse: (raw: string) => Config[K];
}

export class ConfigError extends Error {
  override readonly name = "ConfigError";
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  ${problems.join("\n  ")}`);
  }
}

class BadValue extends Error {}

const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function int(min: number, max: number) {
  return (raw: string): number => {
    if (!/^-?\d+$/.test(raw.trim())) throw new BadValue(`must be an integer`);
    const n = Number(raw);
    if (n < min || n > max) throw new BadValue(`must be between ${min} and ${max}`);
    return n;
  };
}

/** Seconds (fractions allowed) to milliseconds. */
function seconds(min: number, max: number) {
  return (raw: string): number => {
    if (!/^-?\d*\.?\d+$/.test(raw.trim())) throw new BadValue("must be a number of seconds");
    const n = Number(raw.trim());
    if (n < min || n > max) throw new BadValue(`must be between ${min} and ${max} seconds`);
    return Math.round(n * 1000);
  };
}

function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string): T => {
    const v = raw.trim().toLowerCase();
    if (!(values as readonly string[]).includes(v)) {
      throw new BadValue(`must be one of ${values.join(", ")}`);
    }
    return v as T;
  };
}

/**
 * Reads the seed's `sqlite+aiosqlite:///./data/jobqueue.db` spelling, `sqlite:` URLs in the
 * SQLAlchemy form (three slashes then a relative path, four for an absolute one) and plain paths.
 */
export function parseDbUrl(raw: string): string {
  const url = raw.trim();
  const sqlite = /^sqlite(?:\+[\w-]+)?:(?:\/\/\/?)?(.*)$/i.exec(url);
  if (sqlite) {
    const rest = sqlite[1]!.split("?")[0]!;
    if (rest === ":memory:" || rest === "") return ":memory:";
    return resolve(rest.startsWith("/") ? rest : `./${rest.replace(/^\.\//, "")}`);
  }
  if (/^postgres(?:ql)?(?:\+[\w-]+)?:/i.test(url)) {
    throw new BadValue("PostgreSQL is not supported yet; use a sqlite: URL or a file path");
  }
  if (/^[a-z][\w+.-]*:\/\//i.test(url)) {
    throw new BadValue("must be a sqlite: URL (sqlite:///./data/jobqueue.db) or a file path");
  }
  if (url === "") throw new BadValue("must not be empty");
  return resolve(url);
}

const DAY = 86_400;

/** The settings, in the order the README's table lists them. */
export const SETTINGS = [
  {
    env: "JOBQUEUE_HOST",
    key: "host",
    default: "127.0.0.1",
    doc: "Address to listen on.",
    parse: (raw: string) => {
      if (raw.trim() === "") throw new BadValue("must not be empty");
      return raw.trim();
    },
  } satisfies Setting<"host">,
  {
    env: "JOBQUEUE_PORT",
    key: "port",
    default: "8080",
    doc: "Port for every protocol (gRPC, gRPC-Web, Connect, REST); 0 picks a free one.",
    parse: int(0, 65535),
  } satisfies Setting<"port">,
  {
    env: "JOBQUEUE_DB_URL",
    key: "dbPath",
    default: "sqlite+aiosqlite:///./data/jobqueue.db",
    doc: "Where jobs are stored: a `sqlite:` URL (the seed's `sqlite+aiosqlite:` spelling too) or a file path.",
    parse: parseDbUrl,
  } satisfies Setting<"dbPath">,
  {
    env: "JOBQUEUE_CONCURRENCY",
    key: "concurrency",
    default: "4",
    doc: "HTTP calls in flight at most.",
    parse: int(1, 10_000),
  } satisfies Setting<"concurrency">,
  {
    env: "JOBQUEUE_POLL_INTERVAL",
    key: "pollIntervalMs",
    default: "0.3",
    doc: "Seconds between fallback checks for due jobs; enqueues wake workers at once regardless.",
    parse: seconds(0.01, 60),
  } satisfies Setting<"pollIntervalMs">,
  {
    env: "JOBQUEUE_DEFAULT_TIMEOUT",
    key: "defaultTimeoutMs",
    default: "30",
    doc: "Seconds one attempt may take (connect, headers and body) when the job sets no `timeout_sec`.",
    parse: seconds(0.001, 86_400),
  } satisfies Setting<"defaultTimeoutMs">,
  {
    env: "JOBQUEUE_MAX_TIMEOUT",
    key: "maxTimeoutMs",
    default: "3600",
    doc: "The largest `timeout_sec` a job may ask for, in seconds.",
    parse: seconds(0.001, 86_400),
  } satisfies Setting<"maxTimeoutMs">,
  {
    env: "JOBQUEUE_RESULT_MAX_BYTES",
    key: "resultMaxBytes",
    default: "1048576",
    doc: "Response bytes kept per attempt; the rest is not read (`truncated: true`).",
    parse: int(0, 1 << 30),
  } satisfies Setting<"resultMaxBytes">,
  {
    env: "JOBQUEUE_MAX_BODY_BYTES",
    key: "maxBodyBytes",
    default: "1048576",
    doc: "The largest request body a job may carry, in bytes.",
    parse: int(0, 1 << 30),
  } satisfies Setting<"maxBodyBytes">,
  {
    env: "JOBQUEUE_LEASE_SECONDS",
    key: "leaseMs",
    default: "30",
    doc: "How long a claim holds without renewal; a dead worker's jobs run again after it.",
    parse: seconds(0.1, DAY),
  } satisfies Setting<"leaseMs">,
  {
    env: "JOBQUEUE_SHUTDOWN_GRACE_SECONDS",
    key: "shutdownGraceMs",
    default: "10",
    doc: "On SIGTERM/SIGINT, how long calls in flight may finish before they are aborted and their jobs put back.",
    parse: seconds(0, DAY),
  } satisfies Setting<"shutdownGraceMs">,
  {
    env: "JOBQUEUE_DEFAULT_MAX_ATTEMPTS",
    key: "defaultMaxAttempts",
    default: "3",
    doc: "`max_attempts` when a job sets none.",
    parse: int(1, 100),
  } satisfies Setting<"defaultMaxAttempts">,
  {
    env: "JOBQUEUE_DEFAULT_BACKOFF_STRATEGY",
    key: "defaultBackoffStrategy",
    default: "exponential",
    doc: "`backoff_strategy` when a job sets none: fixed, linear or exponential.",
    parse: oneOf(BACKOFF_STRATEGIES),
  } satisfies Setting<"defaultBackoffStrategy">,
  {
    env: "JOBQUEUE_DEFAULT_BACKOFF_SECONDS",
    key: "defaultBackoffBaseMs",
    default: "1",
    doc: "`backoff_seconds` when a job sets none.",
    parse: seconds(0, DAY),
  } satisfies Setting<"defaultBackoffBaseMs">,
  {
    env: "JOBQUEUE_BACKOFF_MAX_SECONDS",
    key: "backoffMaxMs",
    default: "3600",
    doc: "Cap on any backoff delay.",
    parse: seconds(0, 7 * DAY),
  } satisfies Setting<"backoffMaxMs">,
  {
    env: "JOBQUEUE_RETRY_AFTER_MAX_SECONDS",
    key: "retryAfterMaxMs",
    default: "3600",
    doc: "Cap on a delay asked for by a target's `Retry-After` header.",
    parse: seconds(0, 7 * DAY),
  } satisfies Setting<"retryAfterMaxMs">,
  {
    env: "JOBQUEUE_DEFAULT_TTL_SECONDS",
    key: "defaultTtlMs",
    default: "",
    doc: "`ttl_seconds` when a job sets none; empty keeps finished jobs until deleted.",
    parse: (raw: string) => (raw.trim() === "" ? null : int(1, 3650 * DAY)(raw) * 1000),
  } satisfies Setting<"defaultTtlMs">,
  {
    env: "JOBQUEUE_CLEANUP_INTERVAL",
    key: "cleanupIntervalMs",
    default: "60",
    doc: "Longest pause, in seconds, between sweeps that delete expired jobs (expired jobs read as gone at once).",
    parse: seconds(0.01, DAY),
  } satisfies Setting<"cleanupIntervalMs">,
  {
    env: "JOBQUEUE_LOG_LEVEL",
    key: "logLevel",
    default: "info",
    doc: "fatal, error, warn, info, debug, trace or silent. Logs are JSON lines on stdout.",
    parse: oneOf(LOG_LEVELS),
  } satisfies Setting<"logLevel">,
] as const;

/**
 * Reads the configuration from environment variables, using each setting's default where a
 * variable is unset or empty. Throws a {@link ConfigError} naming every bad variable.
 */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const problems: string[] = [];
  const config: Partial<Record<keyof Config, unknown>> = {};
  for (const setting of SETTINGS) {
    const given = env[setting.env];
    const raw = given === undefined || given.trim() === "" ? setting.default : given;
    try {
      config[setting.key] = setting.parse(raw);
    } catch (err) {
      if (!(err instanceof BadValue)) throw err;
      problems.push(`${setting.env}=${JSON.stringify(given ?? "")}: ${err.message}`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  const result = config as Config;
  if (result.defaultTimeoutMs > result.maxTimeoutMs) {
    throw new ConfigError(["JOBQUEUE_DEFAULT_TIMEOUT: must not exceed JOBQUEUE_MAX_TIMEOUT"]);
  }
  return result;
}
